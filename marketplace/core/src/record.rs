//! A [`Release`]: one signed version of one package.
//!
//! This one record is what the registry index stores per version, what the DHT stores under the
//! package name, and what a gossipsub announcement carries. Keeping a single type means a release is
//! verified the same way wherever it came from.
//!
//! The signature covers every field a consumer acts on before downloading (name, version, content id,
//! size, dependencies, metadata, publish time), not only (name, version, content id): the resolver
//! reads dependencies from the record, so an unsigned dependency list would let any relay rewrite a
//! package's dependency graph. Mutable facts (yanked, downloads, stars) live beside the record in the
//! index, not in it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::sign::{PublicKey, SignError, Signature, SigningKey};

/// Domain tag of release signatures.
pub const RELEASE_DOMAIN: &str = "market-release-v1";

/// Upper bound of one encoded release. Kademlia packets are capped at 16 KiB and a record travels
/// with its key and framing, so a release must stay well below that.
pub const MAX_RELEASE_BYTES: usize = 8 * 1024;

/// Longest package name (DESIGN §4).
pub const MAX_NAME_LEN: usize = 64;

/// SHA-256 of an archive, as 64 lowercase hex characters: the archive's identity everywhere.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContentId(String);

impl ContentId {
    /// The content id of `bytes`.
    pub fn of(bytes: &[u8]) -> ContentId {
        use sha2::Digest;
        ContentId(hex::encode(sha2::Sha256::digest(bytes)))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ContentId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(ContentId(s))
        } else {
            Err(format!(
                "content id must be 64 lowercase hex characters, found {s:?}"
            ))
        }
    }
}
impl std::str::FromStr for ContentId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ContentId::try_from(s.to_owned())
    }
}
impl From<ContentId> for String {
    fn from(c: ContentId) -> String {
        c.0
    }
}
impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentId({}…)", &self.0[..12.min(self.0.len())])
    }
}

/// Checks a package name: lowercase `[a-z0-9-]`, 1 to 64 characters, starting with a letter or digit.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "is {} characters long; at most {MAX_NAME_LEN} are allowed",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "contains {c:?}; only lowercase letters, digits and '-' are allowed"
        ));
    }
    if name.starts_with('-') {
        return Err("must not start with '-'".into());
    }
    Ok(())
}

/// The descriptive part of a release, as its manifest states it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub authors: Vec<String>,
    #[serde(default)]
    pub license: Option<String>,
    #[serde(default)]
    pub keywords: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub categories: Vec<String>,
}

/// One signed version of one package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub name: String,
    pub version: semver::Version,
    /// SHA-256 of the archive.
    pub checksum: ContentId,
    /// Archive size in bytes; fetchers refuse to read more.
    pub size: u64,
    #[serde(default)]
    pub dependencies: BTreeMap<String, semver::VersionReq>,
    #[serde(flatten)]
    pub meta: Metadata,
    /// Seconds since the Unix epoch, as the publisher stated it.
    pub published_at: u64,
    pub publisher: PublicKey,
    pub signature: Signature,
}

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("package name {name:?} {reason}")]
    BadName { name: String, reason: String },
    #[error("dependency name {name:?} of {package} {reason}")]
    BadDependency {
        package: String,
        name: String,
        reason: String,
    },
    #[error(
        "release {name}@{version} is {size} bytes encoded; at most {MAX_RELEASE_BYTES} are allowed"
    )]
    TooLarge {
        name: String,
        version: String,
        size: usize,
    },
    #[error("release {name}@{version}: {source}")]
    Signature {
        name: String,
        version: String,
        source: SignError,
    },
    #[error("release record is not valid JSON: {0}")]
    Decode(String),
}

/// The fields a signature covers, in a fixed order, serialised as JSON. Dependencies are a BTreeMap,
/// so the encoding is canonical without a canonicalisation step.
#[derive(Serialize)]
struct SignedPart<'a> {
    name: &'a str,
    version: &'a semver::Version,
    checksum: &'a ContentId,
    size: u64,
    dependencies: &'a BTreeMap<String, semver::VersionReq>,
    meta: &'a Metadata,
    published_at: u64,
    publisher: &'a PublicKey,
}

/// What a publisher states about a version before signing it.
#[derive(Debug, Clone)]
pub struct Unsigned {
    pub name: String,
    pub version: semver::Version,
    pub checksum: ContentId,
    pub size: u64,
    pub dependencies: BTreeMap<String, semver::VersionReq>,
    pub meta: Metadata,
    pub published_at: u64,
}

impl Unsigned {
    pub fn sign(self, key: &SigningKey) -> Release {
        let publisher = key.public();
        let msg = signed_bytes(&SignedPart {
            name: &self.name,
            version: &self.version,
            checksum: &self.checksum,
            size: self.size,
            dependencies: &self.dependencies,
            meta: &self.meta,
            published_at: self.published_at,
            publisher: &publisher,
        });
        Release {
            name: self.name,
            version: self.version,
            checksum: self.checksum,
            size: self.size,
            dependencies: self.dependencies,
            meta: self.meta,
            published_at: self.published_at,
            publisher,
            signature: key.sign(RELEASE_DOMAIN, &msg),
        }
    }
}

fn signed_bytes(part: &SignedPart<'_>) -> Vec<u8> {
    serde_json::to_vec(part).expect("serialising plain data to JSON cannot fail")
}

impl Release {
    /// `name@version`, for messages.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    fn signed_part(&self) -> SignedPart<'_> {
        SignedPart {
            name: &self.name,
            version: &self.version,
            checksum: &self.checksum,
            size: self.size,
            dependencies: &self.dependencies,
            meta: &self.meta,
            published_at: self.published_at,
            publisher: &self.publisher,
        }
    }

    /// Checks everything that can be checked from the record alone: names, encoded size, and that
    /// the publisher key named in it signed it. Whether that key may publish this name is the
    /// [`crate::trust`] book's decision.
    pub fn verify(&self) -> Result<(), ReleaseError> {
        validate_name(&self.name).map_err(|reason| ReleaseError::BadName {
            name: self.name.clone(),
            reason,
        })?;
        for dep in self.dependencies.keys() {
            validate_name(dep).map_err(|reason| ReleaseError::BadDependency {
                package: self.name.clone(),
                name: dep.clone(),
                reason,
            })?;
        }
        let size = self.encode().len();
        if size > MAX_RELEASE_BYTES {
            return Err(ReleaseError::TooLarge {
                name: self.name.clone(),
                version: self.version.to_string(),
                size,
            });
        }
        self.publisher
            .verify(
                RELEASE_DOMAIN,
                &signed_bytes(&self.signed_part()),
                &self.signature,
            )
            .map_err(|source| ReleaseError::Signature {
                name: self.name.clone(),
                version: self.version.to_string(),
                source,
            })
    }

    /// The wire encoding (JSON): used for DHT records and announcements.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("serialising plain data to JSON cannot fail")
    }

    /// Decodes and bounds a wire record; does not verify it (call [`Release::verify`]).
    pub fn decode(bytes: &[u8]) -> Result<Release, ReleaseError> {
        if bytes.len() > MAX_RELEASE_BYTES {
            return Err(ReleaseError::TooLarge {
                name: "?".into(),
                version: "?".into(),
                size: bytes.len(),
            });
        }
        serde_json::from_slice(bytes).map_err(|e| ReleaseError::Decode(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(key: &SigningKey) -> Release {
        Unsigned {
            name: "web-framework".into(),
            version: "1.2.3".parse().unwrap(),
            checksum: ContentId::of(b"archive"),
            size: 7,
            dependencies: [("http-core".to_string(), "^1".parse().unwrap())].into(),
            meta: Metadata {
                description: "A web framework".into(),
                ..Default::default()
            },
            published_at: 1_700_000_000,
        }
        .sign(key)
    }

    #[test]
    fn signed_release_verifies_and_round_trips() {
        let key = SigningKey::from_seed([3; 32]);
        let r = sample(&key);
        r.verify().unwrap();
        let back = Release::decode(&r.encode()).unwrap();
        assert_eq!(back, r);
        back.verify().unwrap();
    }

    #[test]
    fn any_tampered_field_breaks_the_signature() {
        let key = SigningKey::from_seed([3; 32]);
        let mut r = sample(&key);
        r.dependencies.insert("evil".into(), "*".parse().unwrap());
        assert!(matches!(r.verify(), Err(ReleaseError::Signature { .. })));
        let mut r = sample(&key);
        r.checksum = ContentId::of(b"other");
        assert!(r.verify().is_err());
        let mut r = sample(&key);
        r.publisher = SigningKey::from_seed([4; 32]).public();
        assert!(r.verify().is_err());
    }

    #[test]
    fn names_are_checked() {
        for bad in ["", "Web", "a_b", "-x", &"a".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad:?} should be refused");
        }
        for good in ["a", "web-framework-2", &"a".repeat(64)] {
            assert!(validate_name(good).is_ok(), "{good:?} should be accepted");
        }
    }
}
