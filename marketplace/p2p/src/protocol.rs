//! Wire names, DHT keys and request-response messages.
//!
//! Every protocol name is the marketplace's own, so a node never joins (or pollutes) the IPFS DHT or
//! its pubsub mesh. Identify's stream protocol is fixed by the spec (`/ipfs/id/1.0.0`); what
//! identifies our network there is the protocol version string, [`IDENTIFY_VERSION`], and peers that
//! announce another one are not added to the routing table.

use std::collections::{BTreeMap, BTreeSet};

use libp2p::StreamProtocol;
use libp2p::kad::RecordKey;
use market_core::record::{MAX_RELEASE_BYTES, validate_name};
use market_core::{ContentId, Release};
use serde::{Deserialize, Serialize};

/// Kademlia protocol: our own DHT, never IPFS's `/ipfs/kad/1.0.0`.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/market/kad/1.0.0");
/// Archive retrieval by content id.
pub const FETCH_PROTOCOL: StreamProtocol = StreamProtocol::new("/market/fetch/1");
/// Remote search over a peer's release set.
pub const SEARCH_PROTOCOL: StreamProtocol = StreamProtocol::new("/market/search/1");
/// Index digest exchange and pulls, for reconciliation after a partition.
pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/market/sync/1");
/// Identify's protocol version string.
pub const IDENTIFY_VERSION: &str = "/market/id/1";
/// Gossipsub protocol prefix (`/market/meshsub/1.1.0`), so our mesh stays apart from IPFS pubsub.
pub const GOSSIP_PREFIX: &str = "/market/meshsub";
/// The one announcement topic.
pub const ANNOUNCE_TOPIC: &str = "market/announce/1";

/// Most versions a per-name index record lists. At about 12 bytes per version this keeps the record
/// under [`MAX_RELEASE_BYTES`] and far below Kademlia's 16 KiB packet; when a name has more, the
/// newest are kept (older ones stay reachable by their own version records).
pub const MAX_INDEX_VERSIONS: usize = 400;
/// Largest `limit` a remote search honours.
pub const MAX_SEARCH_LIMIT: usize = 100;
/// Longest search query accepted from a peer.
pub const MAX_QUERY_LEN: usize = 256;
/// Most (name, version) pairs in one pull request or one digest.
pub const MAX_SYNC_ITEMS: usize = 4096;
/// Most releases one pull response carries.
pub const MAX_PULL_RELEASES: usize = 100;

/// What a DHT key stands for. Keys are readable strings; Kademlia places them by their SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    /// `pkg/<name>/<version>`: one signed [`Release`].
    Version {
        name: String,
        version: semver::Version,
    },
    /// `pkg/<name>`: the merged set of versions published under a name ([`VersionIndex`]).
    Index { name: String },
    /// `cid/<hex>`: provider records of an archive.
    Content(ContentId),
}

pub fn version_key(name: &str, version: &semver::Version) -> RecordKey {
    RecordKey::new(&format!("pkg/{name}/{version}"))
}
pub fn index_key(name: &str) -> RecordKey {
    RecordKey::new(&format!("pkg/{name}"))
}
pub fn content_key(id: &ContentId) -> RecordKey {
    RecordKey::new(&format!("cid/{id}"))
}

/// Classifies a key; `None` for anything that is not one of ours.
pub fn parse_key(key: &RecordKey) -> Option<KeyKind> {
    let s = std::str::from_utf8(key.as_ref()).ok()?;
    if let Some(rest) = s.strip_prefix("cid/") {
        return rest.parse().ok().map(KeyKind::Content);
    }
    let rest = s.strip_prefix("pkg/")?;
    match rest.split_once('/') {
        Some((name, version)) => {
            validate_name(name).ok()?;
            Some(KeyKind::Version {
                name: name.to_owned(),
                version: version.parse().ok()?,
            })
        }
        None => {
            validate_name(rest).ok()?;
            Some(KeyKind::Index {
                name: rest.to_owned(),
            })
        }
    }
}

/// The value of a per-name index record: which versions exist. It is unsigned on purpose: it only
/// tells a reader which version records to look up, and each of those is verified on its own, so a
/// forged entry costs one failed lookup and nothing else. Stores merge index records (set union),
/// which is what keeps concurrent publishes of different versions from overwriting each other.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionIndex {
    pub name: String,
    pub versions: BTreeSet<semver::Version>,
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("version index is {0} bytes; at most {MAX_RELEASE_BYTES} are allowed")]
    TooLarge(usize),
    #[error("version index is not valid JSON: {0}")]
    Decode(String),
    #[error("version index names {found:?} but is stored under {expected:?}")]
    WrongName { expected: String, found: String },
}

impl VersionIndex {
    pub fn single(name: &str, version: semver::Version) -> VersionIndex {
        VersionIndex {
            name: name.to_owned(),
            versions: [version].into(),
        }
    }

    /// Union with `other`, then trims to the newest [`MAX_INDEX_VERSIONS`].
    pub fn merge(&mut self, other: &VersionIndex) {
        self.versions.extend(other.versions.iter().cloned());
        while self.versions.len() > MAX_INDEX_VERSIONS {
            self.versions.pop_first();
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut trimmed = self.clone();
        loop {
            let bytes = serde_json::to_vec(&trimmed).expect("plain data serialises");
            if bytes.len() <= MAX_RELEASE_BYTES || trimmed.versions.is_empty() {
                return bytes;
            }
            // Pathologically long pre-release tags: drop the oldest until the record fits.
            trimmed.versions.pop_first();
        }
    }

    pub fn decode(bytes: &[u8], expected_name: &str) -> Result<VersionIndex, IndexError> {
        if bytes.len() > MAX_RELEASE_BYTES {
            return Err(IndexError::TooLarge(bytes.len()));
        }
        let mut idx: VersionIndex =
            serde_json::from_slice(bytes).map_err(|e| IndexError::Decode(e.to_string()))?;
        if idx.name != expected_name {
            return Err(IndexError::WrongName {
                expected: expected_name.to_owned(),
                found: idx.name,
            });
        }
        while idx.versions.len() > MAX_INDEX_VERSIONS {
            idx.versions.pop_first();
        }
        Ok(idx)
    }
}

/// Raw bytes that CBOR carries as one byte string (serde would otherwise write an array of integers,
/// doubling an archive's size on the wire).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Bytes(pub Vec<u8>);

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bytes({} bytes)", self.0.len())
    }
}

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Bytes, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(Bytes(out))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// `/market/fetch/1` request: the archive with this content id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FetchRequest {
    pub id: ContentId,
}

/// `/market/fetch/1` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FetchResponse {
    Found(Bytes),
    NotFound,
    /// The provider is serving as many requests as it allows; try another.
    Busy,
}

/// `/market/search/1` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchRequest {
    pub query: String,
    pub limit: usize,
}

/// `/market/search/1` response: encoded releases, each verified by the receiver.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchResponse {
    pub releases: Vec<Bytes>,
}

/// `/market/sync/1` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SyncRequest {
    /// Which names and versions do you hold?
    Digest,
    /// Send me these releases.
    Pull(Vec<(String, semver::Version)>),
}

/// `/market/sync/1` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SyncResponse {
    Digest(BTreeMap<String, BTreeSet<semver::Version>>),
    Releases(Vec<Bytes>),
}

/// Encodes releases for a response.
pub fn encode_releases<'a>(releases: impl IntoIterator<Item = &'a Release>) -> Vec<Bytes> {
    releases.into_iter().map(|r| Bytes(r.encode())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let v: semver::Version = "1.2.3-beta.1".parse().unwrap();
        assert_eq!(
            parse_key(&version_key("web-framework", &v)),
            Some(KeyKind::Version {
                name: "web-framework".into(),
                version: v
            })
        );
        assert_eq!(
            parse_key(&index_key("a")),
            Some(KeyKind::Index { name: "a".into() })
        );
        let id = ContentId::of(b"x");
        assert_eq!(parse_key(&content_key(&id)), Some(KeyKind::Content(id)));
        assert_eq!(parse_key(&RecordKey::new(&"pkg/Bad/1.0.0")), None);
        assert_eq!(parse_key(&RecordKey::new(&"/ipfs/whatever")), None);
    }

    #[test]
    fn index_merge_is_a_union_and_bounded() {
        let mut a = VersionIndex::single("p", "1.0.0".parse().unwrap());
        a.merge(&VersionIndex::single("p", "1.1.0".parse().unwrap()));
        assert_eq!(a.versions.len(), 2);
        for i in 0..(MAX_INDEX_VERSIONS as u64 + 10) {
            a.merge(&VersionIndex::single("p", semver::Version::new(2, 0, i)));
        }
        assert_eq!(a.versions.len(), MAX_INDEX_VERSIONS);
        assert_eq!(
            a.versions.last().unwrap(),
            &semver::Version::new(2, 0, MAX_INDEX_VERSIONS as u64 + 9)
        );
        let bytes = a.encode();
        assert!(bytes.len() <= MAX_RELEASE_BYTES);
        assert!(VersionIndex::decode(&bytes, "p").is_ok());
        assert!(matches!(
            VersionIndex::decode(&bytes, "q"),
            Err(IndexError::WrongName { .. })
        ));
    }
}
