//! A node's own release set: every release it has accepted (published locally, announced, found in
//! the DHT, returned by a peer), keyed by name and version and admitted through one [`TrustBook`].
//!
//! Whatever the source, a release enters only through [`ReleaseSet::admit`], so the trust decision
//! (signature, owner key, size) is made the same way for all of them.

use std::collections::{BTreeMap, BTreeSet};

use market_core::Release;
use market_core::search::{Query, SearchIndex};
use market_core::trust::{TrustBook, TrustError};

/// What admitting a release did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    /// A version this node did not know.
    New,
    /// The identical record was already held.
    Known,
}

#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    #[error(transparent)]
    Trust(#[from] TrustError),
    #[error(
        "{release} is already held with content {held}; a different record ({offered}) for the same version is refused"
    )]
    Conflict {
        release: String,
        held: String,
        offered: String,
    },
}

#[derive(Debug, Default)]
pub struct ReleaseSet {
    trust: TrustBook,
    releases: BTreeMap<String, BTreeMap<semver::Version, Release>>,
    count: usize,
    /// market-core's ranked, typo-tolerant index over the newest version of each name.
    index: SearchIndex,
}

impl ReleaseSet {
    pub fn with_trust(trust: TrustBook) -> ReleaseSet {
        ReleaseSet {
            trust,
            ..Default::default()
        }
    }

    pub fn trust(&self) -> &TrustBook {
        &self.trust
    }

    /// Checks `release` without admitting it.
    pub fn check(&self, release: &Release) -> Result<(), AdmitError> {
        self.trust.check(release)?;
        if let Some(held) = self.get(&release.name, &release.version)
            && held != release
        {
            return Err(AdmitError::Conflict {
                release: release.id(),
                held: held.checksum.to_string(),
                offered: release.checksum.to_string(),
            });
        }
        Ok(())
    }

    /// Verifies `release`, checks its owner key, and stores it.
    pub fn admit(&mut self, release: Release) -> Result<Admitted, AdmitError> {
        self.check(&release)?;
        self.trust.admit(&release)?;
        let versions = self.releases.entry(release.name.clone()).or_default();
        if versions.contains_key(&release.version) {
            return Ok(Admitted::Known);
        }
        self.index.offer(&release);
        versions.insert(release.version.clone(), release);
        self.count += 1;
        Ok(Admitted::New)
    }

    pub fn get(&self, name: &str, version: &semver::Version) -> Option<&Release> {
        self.releases.get(name)?.get(version)
    }

    pub fn versions(&self, name: &str) -> BTreeSet<semver::Version> {
        self.releases
            .get(name)
            .map(|v| v.keys().cloned().collect())
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = &Release> {
        self.releases.values().flat_map(|v| v.values())
    }

    /// Names and versions held, for reconciliation.
    pub fn digest(&self) -> BTreeMap<String, BTreeSet<semver::Version>> {
        self.releases
            .iter()
            .map(|(n, v)| (n.clone(), v.keys().cloned().collect()))
            .collect()
    }

    /// Ranked search (market-core's index: BM25-style relevance, prefix and typo-tolerant
    /// matching) over the newest version of each name, at most `limit` results, best first.
    pub fn search(&self, query: &str, limit: usize) -> Vec<Release> {
        let results = self.index.search(&Query::new(query).limit(limit));
        results
            .hits
            .iter()
            .filter_map(|h| self.get(&h.doc.name, &h.doc.version).cloned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use market_core::SigningKey;
    use market_core::record::{Metadata, Unsigned};

    fn release(name: &str, version: &str, desc: &str, key: &SigningKey) -> Release {
        Unsigned {
            name: name.into(),
            version: version.parse().unwrap(),
            checksum: market_core::ContentId::of(format!("{name}{version}").as_bytes()),
            size: 1,
            dependencies: Default::default(),
            meta: Metadata {
                description: desc.into(),
                ..Default::default()
            },
            published_at: 0,
        }
        .sign(key)
    }

    #[test]
    fn prefix_tokens_find_packages_and_strangers_are_refused() {
        let k = SigningKey::from_seed([1; 32]);
        let mut set = ReleaseSet::default();
        set.admit(release("web-framework-core", "1.0.0", "HTTP server", &k))
            .unwrap();
        set.admit(release("web-framework-core", "1.1.0", "HTTP server", &k))
            .unwrap();
        set.admit(release("cli-tool", "0.1.0", "command line", &k))
            .unwrap();
        let hits = set.search("web fram", 10);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].version, semver::Version::new(1, 1, 0));
        assert!(set.search("nothing", 10).is_empty());
        // market-core's index forgives a typo.
        assert_eq!(set.search("web framwork", 10).len(), 1);
        let stranger = SigningKey::from_seed([2; 32]);
        assert!(
            set.admit(release("cli-tool", "0.2.0", "x", &stranger))
                .is_err()
        );
        assert_eq!(set.len(), 3);
    }

    #[test]
    fn a_different_record_for_a_held_version_is_a_conflict() {
        let k = SigningKey::from_seed([1; 32]);
        let mut set = ReleaseSet::default();
        set.admit(release("a", "1.0.0", "one", &k)).unwrap();
        assert_eq!(
            set.admit(release("a", "1.0.0", "one", &k)).unwrap(),
            Admitted::Known
        );
        assert!(matches!(
            set.admit(release("a", "1.0.0", "two", &k)),
            Err(AdmitError::Conflict { .. })
        ));
    }
}
