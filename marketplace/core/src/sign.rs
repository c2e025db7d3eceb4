//! Publisher keys and signatures (ed25519).
//!
//! Keys and signatures travel as lowercase hex in JSON (the index, DHT records, announcements), so a
//! person can read and compare them. Every message signed here starts with a domain tag, so a
//! signature made for one purpose (a release) can never be replayed as another (a key rotation).

use std::fmt;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, Verifier};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("invalid public key: {0}")]
    BadPublicKey(String),
    #[error("invalid signature encoding: {0}")]
    BadSignatureEncoding(String),
    #[error("signature does not verify with key {key}")]
    Mismatch { key: PublicKey },
    #[error("cannot read key file {path}: {source}")]
    ReadKey {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {path} is malformed: {reason}")]
    MalformedKey { path: PathBuf, reason: String },
    #[error("cannot write key file {path}: {source}")]
    WriteKey {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {path} already exists; refusing to overwrite a publisher key")]
    KeyExists { path: PathBuf },
}

/// A publisher's secret key. Never serialised except by [`SigningKey::save`].
pub struct SigningKey(ed25519_dalek::SigningKey);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey(public: {})", self.public())
    }
}

impl Clone for SigningKey {
    fn clone(&self) -> Self {
        SigningKey(ed25519_dalek::SigningKey::from_bytes(&self.0.to_bytes()))
    }
}

impl SigningKey {
    pub fn generate() -> SigningKey {
        SigningKey(ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// A key derived from a seed: for synthetic catalogues and tests, where runs must repeat.
    pub fn from_seed(seed: [u8; 32]) -> SigningKey {
        SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// Signs `message` under the domain tag `domain` (see [`domain_message`]).
    pub fn sign(&self, domain: &str, message: &[u8]) -> Signature {
        Signature(self.0.sign(&domain_message(domain, message)).to_bytes())
    }

    /// Writes the seed as hex, readable by the owner only. Refuses to overwrite: losing a publisher
    /// key means losing the name it owns.
    pub fn save(&self, path: &Path) -> Result<(), SignError> {
        if path.exists() {
            return Err(SignError::KeyExists {
                path: path.to_owned(),
            });
        }
        let text = format!("{}\n", hex::encode(self.0.to_bytes()));
        crate::fsutil::write_atomic(path, text.as_bytes()).map_err(|source| {
            SignError::WriteKey {
                path: path.to_owned(),
                source,
            }
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
                |source| SignError::WriteKey {
                    path: path.to_owned(),
                    source,
                },
            )?;
        }
        Ok(())
    }

    pub fn load(path: &Path) -> Result<SigningKey, SignError> {
        let text = std::fs::read_to_string(path).map_err(|source| SignError::ReadKey {
            path: path.to_owned(),
            source,
        })?;
        let bytes = hex::decode(text.trim()).map_err(|e| SignError::MalformedKey {
            path: path.to_owned(),
            reason: format!("not hex: {e}"),
        })?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| SignError::MalformedKey {
                path: path.to_owned(),
                reason: format!("expected 32 bytes, found {}", b.len()),
            })?;
        Ok(SigningKey::from_seed(seed))
    }
}

/// An ed25519 public key; identifies a publisher.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    pub fn verify(&self, domain: &str, message: &[u8], sig: &Signature) -> Result<(), SignError> {
        let key = ed25519_dalek::VerifyingKey::from_bytes(&self.0)
            .map_err(|e| SignError::BadPublicKey(e.to_string()))?;
        let sig = ed25519_dalek::Signature::from_bytes(&sig.0);
        key.verify(&domain_message(domain, message), &sig)
            .map_err(|_| SignError::Mismatch { key: *self })
    }

    /// The first 8 bytes in hex: enough for a person to compare keys in a table.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..8])
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}
impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.short())
    }
}
impl std::str::FromStr for PublicKey {
    type Err = SignError;
    fn from_str(s: &str) -> Result<Self, SignError> {
        let bytes = hex::decode(s).map_err(|e| SignError::BadPublicKey(e.to_string()))?;
        let arr: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            SignError::BadPublicKey(format!("expected 32 bytes, found {}", b.len()))
        })?;
        Ok(PublicKey(arr))
    }
}

/// An ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}
impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}…)", hex::encode(&self.0[..8]))
    }
}
impl std::str::FromStr for Signature {
    type Err = SignError;
    fn from_str(s: &str) -> Result<Self, SignError> {
        let bytes = hex::decode(s).map_err(|e| SignError::BadSignatureEncoding(e.to_string()))?;
        let arr: [u8; 64] = bytes.try_into().map_err(|b: Vec<u8>| {
            SignError::BadSignatureEncoding(format!("expected 64 bytes, found {}", b.len()))
        })?;
        Ok(Signature(arr))
    }
}

macro_rules! hex_serde {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
hex_serde!(PublicKey);
hex_serde!(Signature);

/// `domain || 0x00 || message`. Domains are fixed ASCII tags such as `market-release-v1`.
fn domain_message(domain: &str, message: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(domain.len() + 1 + message.len());
    m.extend_from_slice(domain.as_bytes());
    m.push(0);
    m.extend_from_slice(message);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_binds_domain_and_message() {
        let k = SigningKey::from_seed([7; 32]);
        let sig = k.sign("a", b"hello");
        assert!(k.public().verify("a", b"hello", &sig).is_ok());
        assert!(k.public().verify("b", b"hello", &sig).is_err());
        assert!(k.public().verify("a", b"hellO", &sig).is_err());
        let other = SigningKey::from_seed([8; 32]);
        assert!(other.public().verify("a", b"hello", &sig).is_err());
    }

    #[test]
    fn hex_round_trip() {
        let k = SigningKey::from_seed([1; 32]).public();
        let json = serde_json::to_string(&k).unwrap();
        let back: PublicKey = serde_json::from_str(&json).unwrap();
        assert_eq!(k, back);
        assert!(serde_json::from_str::<PublicKey>("\"abcd\"").is_err());
    }
}
