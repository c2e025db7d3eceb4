//! Who may publish a name: trust on first use, with signed key rotation (DESIGN §4).
//!
//! The first validly signed release of a name pins its publisher key as the owner. Later releases
//! must be signed by the owner, or by a key the owner handed the name to in a signed [`Rotation`].
//! The same book is consulted for local publishes, index loads, DHT records and announcements, so a
//! release signed by a stranger is refused wherever it arrives.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::record::{Release, ReleaseError, validate_name};
use crate::sign::{PublicKey, SignError, Signature, SigningKey};

pub const ROTATION_DOMAIN: &str = "market-rotation-v1";

/// The owner of `name` hands it from `old` to `new`; signed by `old`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    pub name: String,
    pub old: PublicKey,
    pub new: PublicKey,
    pub signature: Signature,
}

impl Rotation {
    pub fn sign(name: &str, old: &SigningKey, new: PublicKey) -> Rotation {
        let old_pub = old.public();
        Rotation {
            name: name.to_owned(),
            old: old_pub,
            new,
            signature: old.sign(ROTATION_DOMAIN, &rotation_bytes(name, &old_pub, &new)),
        }
    }

    pub fn verify(&self) -> Result<(), SignError> {
        self.old.verify(
            ROTATION_DOMAIN,
            &rotation_bytes(&self.name, &self.old, &self.new),
            &self.signature,
        )
    }
}

fn rotation_bytes(name: &str, old: &PublicKey, new: &PublicKey) -> Vec<u8> {
    let mut m = Vec::with_capacity(name.len() + 65);
    m.extend_from_slice(name.as_bytes());
    m.push(0);
    m.extend_from_slice(&old.0);
    m.extend_from_slice(&new.0);
    m
}

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error(transparent)]
    Invalid(#[from] ReleaseError),
    #[error(
        "{release} is signed by key {signer}, but {name} is owned by key {owner}; \
         only the owner (or a key it rotated to) may publish new versions"
    )]
    NotOwner {
        release: String,
        name: String,
        signer: String,
        owner: String,
    },
    #[error("rotation of {name}: {reason}")]
    BadRotation { name: String, reason: String },
}

/// Owner keys by package name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustBook {
    owners: BTreeMap<String, PublicKey>,
}

impl TrustBook {
    /// Records `key` as the owner of `name` without a release to show for it: for books assembled
    /// from the persistent store, whose rows were checked when they were written.
    pub(crate) fn set_owner(&mut self, name: &str, key: PublicKey) {
        self.owners.insert(name.to_owned(), key);
    }

    /// Every (name, owner key) pair, in name order.
    pub fn owners(&self) -> impl Iterator<Item = (&str, &PublicKey)> + '_ {
        self.owners.iter().map(|(n, k)| (n.as_str(), k))
    }

    pub fn owner(&self, name: &str) -> Option<&PublicKey> {
        self.owners.get(name)
    }

    /// Verifies `release` and checks that its signer may publish its name, without changing the book.
    pub fn check(&self, release: &Release) -> Result<(), TrustError> {
        release.verify()?;
        match self.owners.get(&release.name) {
            Some(owner) if *owner != release.publisher => Err(TrustError::NotOwner {
                release: release.id(),
                name: release.name.clone(),
                signer: release.publisher.short(),
                owner: owner.short(),
            }),
            _ => Ok(()),
        }
    }

    /// [`TrustBook::check`], then pins the signer as owner if the name was unknown.
    pub fn admit(&mut self, release: &Release) -> Result<(), TrustError> {
        self.check(release)?;
        self.owners
            .entry(release.name.clone())
            .or_insert(release.publisher);
        Ok(())
    }

    /// Applies a rotation signed by the current owner.
    pub fn rotate(&mut self, rotation: &Rotation) -> Result<(), TrustError> {
        let bad = |reason: String| TrustError::BadRotation {
            name: rotation.name.clone(),
            reason,
        };
        validate_name(&rotation.name).map_err(|r| bad(format!("name {r}")))?;
        rotation.verify().map_err(|e| bad(e.to_string()))?;
        match self.owners.get(&rotation.name) {
            Some(owner) if *owner == rotation.old => {
                self.owners.insert(rotation.name.clone(), rotation.new);
                Ok(())
            }
            Some(owner) => Err(bad(format!(
                "signed by key {}, but the owner is key {}",
                rotation.old.short(),
                owner.short()
            ))),
            None => Err(bad(
                "the name has no owner yet; publish a version first".into()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{ContentId, Metadata, Unsigned};

    fn release(name: &str, version: &str, key: &SigningKey) -> Release {
        Unsigned {
            name: name.into(),
            version: version.parse().unwrap(),
            checksum: ContentId::of(version.as_bytes()),
            size: 1,
            dependencies: Default::default(),
            meta: Metadata::default(),
            published_at: 0,
        }
        .sign(key)
    }

    #[test]
    fn first_signer_owns_the_name() {
        let alice = SigningKey::from_seed([1; 32]);
        let mallory = SigningKey::from_seed([2; 32]);
        let mut book = TrustBook::default();
        book.admit(&release("tpl", "1.0.0", &alice)).unwrap();
        book.admit(&release("tpl", "1.1.0", &alice)).unwrap();
        let err = book.admit(&release("tpl", "2.0.0", &mallory)).unwrap_err();
        assert!(matches!(err, TrustError::NotOwner { .. }), "{err}");
        assert_eq!(book.owner("tpl"), Some(&alice.public()));
    }

    #[test]
    fn rotation_hands_over_the_name() {
        let alice = SigningKey::from_seed([1; 32]);
        let bob = SigningKey::from_seed([2; 32]);
        let mut book = TrustBook::default();
        book.admit(&release("tpl", "1.0.0", &alice)).unwrap();
        // Bob cannot rotate a name he does not own.
        assert!(
            book.rotate(&Rotation::sign("tpl", &bob, bob.public()))
                .is_err()
        );
        book.rotate(&Rotation::sign("tpl", &alice, bob.public()))
            .unwrap();
        book.admit(&release("tpl", "2.0.0", &bob)).unwrap();
        assert!(book.admit(&release("tpl", "2.1.0", &alice)).is_err());
    }
}
