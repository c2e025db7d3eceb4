//! The Kademlia record store: libp2p's memory store, with per-name index records merged on write.
//!
//! A plain store overwrites a record with the last one written. For the per-name version index that
//! would lose a version whenever two publishers write at once (each writes the set it knows), so
//! [`MergingStore::put`] unions an incoming index record with the stored one. Version records are
//! immutable: the node validates them before they reach the store (see `node.rs`), and a second,
//! different record for the same version is refused there.

use std::borrow::Cow;

use libp2p::PeerId;
use libp2p::kad::store::{MemoryStore, MemoryStoreConfig, RecordStore, Result};
use libp2p::kad::{ProviderRecord, Record, RecordKey};

use crate::protocol::{KeyKind, VersionIndex, parse_key};

#[derive(Debug, Clone)]
pub struct StoreLimits {
    /// Most value records held (versions plus index records).
    pub max_records: usize,
    /// Most archives this node provides itself.
    pub max_provided_keys: usize,
    /// Most providers remembered per archive.
    pub max_providers_per_key: usize,
}

impl Default for StoreLimits {
    /// libp2p's default of 1024 records and provided keys is too small for a node that seeds a
    /// catalogue of thousands of versions; these bounds still cap memory at a few tens of MB.
    fn default() -> Self {
        StoreLimits {
            max_records: 65_536,
            max_provided_keys: 65_536,
            max_providers_per_key: 20,
        }
    }
}

pub struct MergingStore {
    inner: MemoryStore,
}

impl MergingStore {
    pub fn new(local: PeerId, limits: &StoreLimits) -> MergingStore {
        let config = MemoryStoreConfig {
            max_records: limits.max_records,
            max_value_bytes: market_core::record::MAX_RELEASE_BYTES,
            max_provided_keys: limits.max_provided_keys,
            max_providers_per_key: limits.max_providers_per_key,
        };
        MergingStore {
            inner: MemoryStore::with_config(local, config),
        }
    }

    /// Number of value records held.
    pub fn len(&self) -> usize {
        self.inner.records().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl RecordStore for MergingStore {
    type RecordsIter<'a> = <MemoryStore as RecordStore>::RecordsIter<'a>;
    type ProvidedIter<'a> = <MemoryStore as RecordStore>::ProvidedIter<'a>;

    fn get(&self, k: &RecordKey) -> Option<Cow<'_, Record>> {
        self.inner.get(k)
    }

    fn put(&mut self, mut r: Record) -> Result<()> {
        if let Some(KeyKind::Index { name }) = parse_key(&r.key)
            && let Some(existing) = self.inner.get(&r.key)
            && let Ok(mut merged) = VersionIndex::decode(&existing.value, &name)
        {
            // An undecodable incoming value is stored as is only if nothing valid was there;
            // the node validates index records before they get here, so that is a local write.
            if let Ok(incoming) = VersionIndex::decode(&r.value, &name) {
                merged.merge(&incoming);
                r.value = merged.encode();
                r.expires = match (r.expires, existing.expires) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
            } else {
                return Ok(());
            }
        }
        self.inner.put(r)
    }

    fn remove(&mut self, k: &RecordKey) {
        self.inner.remove(k)
    }

    fn records(&self) -> Self::RecordsIter<'_> {
        self.inner.records()
    }

    fn add_provider(&mut self, record: ProviderRecord) -> Result<()> {
        self.inner.add_provider(record)
    }

    fn providers(&self, key: &RecordKey) -> Vec<ProviderRecord> {
        self.inner.providers(key)
    }

    fn provided(&self) -> Self::ProvidedIter<'_> {
        self.inner.provided()
    }

    fn remove_provider(&mut self, k: &RecordKey, p: &PeerId) {
        self.inner.remove_provider(k, p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::index_key;

    #[test]
    fn index_records_merge_instead_of_overwriting() {
        let mut store = MergingStore::new(PeerId::random(), &StoreLimits::default());
        let key = index_key("pkg");
        for v in ["1.0.0", "1.1.0"] {
            let idx = VersionIndex::single("pkg", v.parse().unwrap());
            store.put(Record::new(key.clone(), idx.encode())).unwrap();
        }
        let stored = store.get(&key).unwrap();
        let idx = VersionIndex::decode(&stored.value, "pkg").unwrap();
        assert_eq!(idx.versions.len(), 2);
    }
}
