//! Property tests (proptest) of what peers send: release records and announcements (both a
//! [`Release`]'s JSON, decoded and then admitted through a [`ReleaseSet`], as the gossip handler and
//! the record validator do), DHT keys, per-name version index records, and the merging record
//! store. Thousands of generated and mutated inputs; none may panic, a mutated release is accepted
//! only if it is the signed one, and a name's owner is never displaced.
//!
//! Cases per property: `PROPTEST_CASES` if set, else a modest default; a long run is
//! `PROPTEST_CASES=100000000 timeout 600 cargo test -p market-p2p --test it props::`. Failing
//! cases are kept in `tests/it/proptest-regressions/` (committed, replayed first).

use std::collections::{BTreeMap, BTreeSet};

use libp2p::kad::store::RecordStore;
use libp2p::kad::{Record, RecordKey};
use market_core::record::{MAX_RELEASE_BYTES, Metadata, Unsigned};
use market_core::trust::TrustError;
use market_core::{ContentId, Release, SigningKey};
use market_p2p::protocol::{
    KeyKind, MAX_INDEX_VERSIONS, VersionIndex, content_key, index_key, parse_key, version_key,
};
use market_p2p::releases::ReleaseSet;
use market_p2p::store::{MergingStore, StoreLimits};
use market_p2p::{AdmitError, PeerId};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

fn config(cases: u32, file: &'static str) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config.failure_persistence = Some(Box::new(FileFailurePersistence::Direct(file)));
    config
}

const RELEASE_REGRESSIONS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/it/proptest-regressions/releases.txt"
);
const RECORD_REGRESSIONS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/it/proptest-regressions/records.txt"
);

fn name() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9-]{0,20}"
}

fn version() -> impl Strategy<Value = semver::Version> {
    (
        0u64..20,
        0u64..20,
        0u64..20,
        proptest::option::weighted(0.2, "[a-z][a-z0-9]{0,6}"),
    )
        .prop_map(|(a, b, c, pre)| {
            let text = match pre {
                Some(p) => format!("{a}.{b}.{c}-{p}"),
                None => format!("{a}.{b}.{c}"),
            };
            text.parse().unwrap()
        })
}

/// A validly signed release with generated fields, and its key's seed.
fn signed_release() -> impl Strategy<Value = (Release, u8)> {
    (
        name(),
        version(),
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::collection::btree_map(
            name(),
            "(\\^|~|=|>=)?(0|[1-9][0-9]?)(\\.(0|[1-9][0-9]?)){0,2}",
            0..4,
        ),
        "[ -~]{0,60}",
        proptest::collection::vec("[a-z]{1,8}", 0..4),
        any::<u64>(),
        any::<u8>(),
    )
        .prop_map(
            |(name, version, archive, deps, description, tags, published_at, seed)| {
                let dependencies = deps
                    .into_iter()
                    .filter(|(d, _)| *d != name)
                    .map(|(d, r)| (d, r.parse().unwrap()))
                    .collect();
                let release = Unsigned {
                    name,
                    version,
                    checksum: ContentId::of(&archive),
                    size: archive.len() as u64,
                    dependencies,
                    meta: Metadata {
                        description,
                        tags,
                        ..Default::default()
                    },
                    published_at,
                }
                .sign(&SigningKey::from_seed([seed; 32]));
                (release, seed)
            },
        )
}

/// A JSON value of any shape, to put where a field was.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        any::<f64>().prop_map(|n| serde_json::json!(n)),
        any::<String>().prop_map(serde_json::Value::String),
        "[0-9a-f]{60,70}".prop_map(serde_json::Value::String),
        "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Changes to a release's JSON: a field replaced, removed or added, or raw bytes edited.
#[derive(Debug, Clone)]
enum Mutation {
    Replace(prop::sample::Index, serde_json::Value),
    Remove(prop::sample::Index),
    Add(String, serde_json::Value),
    Bytes(Vec<(prop::sample::Index, u8, u8)>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<prop::sample::Index>(), json_value()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        1 => any::<prop::sample::Index>().prop_map(Mutation::Remove),
        1 => ("[a-z_]{1,12}", json_value()).prop_map(|(k, v)| Mutation::Add(k, v)),
        3 => proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6)
            .prop_map(Mutation::Bytes),
    ]
}

fn mutate(release: &Release, mutation: &Mutation) -> Vec<u8> {
    let mut value: serde_json::Value = serde_json::from_slice(&release.encode()).unwrap();
    let object = value.as_object_mut().unwrap();
    let keys: Vec<String> = object.keys().cloned().collect();
    match mutation {
        Mutation::Replace(i, v) => {
            object.insert(keys[i.index(keys.len())].clone(), v.clone());
        }
        Mutation::Remove(i) => {
            object.remove(&keys[i.index(keys.len())]);
        }
        Mutation::Add(k, v) => {
            object.insert(k.clone(), v.clone());
        }
        Mutation::Bytes(edits) => {
            let mut bytes = release.encode();
            for (at, byte, how) in edits {
                let i = at.index(bytes.len() + 1);
                match how {
                    0 if i < bytes.len() => bytes[i] = *byte,
                    1 => bytes.insert(i, *byte),
                    _ if i < bytes.len() => {
                        bytes.remove(i);
                    }
                    _ => {}
                }
            }
            return bytes;
        }
    }
    serde_json::to_vec(&value).unwrap()
}

/// What a node does with bytes that arrive as an announcement or a version record: bound, decode,
/// admit. Checks what must hold of the outcome and returns whether the release was admitted.
fn receive(set: &mut ReleaseSet, bytes: &[u8]) -> Result<Option<Release>, TestCaseError> {
    if bytes.len() > MAX_RELEASE_BYTES {
        prop_assert!(
            Release::decode(bytes).is_err(),
            "an oversized record decoded"
        );
        return Ok(None);
    }
    let Ok(release) = Release::decode(bytes) else {
        return Ok(None);
    };
    let verified = release.verify().is_ok();
    match set.admit(release.clone()) {
        Ok(_) => {
            prop_assert!(verified, "admitted a release that does not verify");
            prop_assert_eq!(set.get(&release.name, &release.version), Some(&release));
            Ok(Some(release))
        }
        Err(AdmitError::Trust(TrustError::Invalid(_))) => {
            prop_assert!(!verified, "refused as invalid, but it verifies");
            Ok(None)
        }
        Err(_) => Ok(None),
    }
}

proptest! {
    #![proptest_config(config(256, RELEASE_REGRESSIONS))]

    /// Arbitrary bytes as a record or an announcement.
    #[test]
    fn release_decoding_takes_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        receive(&mut ReleaseSet::default(), &bytes)?;
    }

    /// A signed release with a field replaced, removed or added, or its bytes edited: if it is still
    /// admitted, it is the release that was signed (the signature covers every field a consumer
    /// acts on), and the one signed before it stays.
    #[test]
    fn a_mutated_release_is_admitted_only_as_signed((release, _) in signed_release(), mutation in mutation()) {
        let bytes = mutate(&release, &mutation);
        if let Some(admitted) = receive(&mut ReleaseSet::default(), &bytes)? {
            prop_assert_eq!(&admitted, &release, "a mutated release verified: {:?}", mutation);
        }
    }

    /// Announcements for a name someone owns: a release of another key (a forgery, or a fresh
    /// signature over the same fields) is never admitted, and the owner's releases stay.
    #[test]
    fn announcements_never_displace_an_owner(
        (owned, seed) in signed_release(),
        others in proptest::collection::vec((signed_release(), proptest::option::of(mutation())), 1..8),
    ) {
        let mut set = ReleaseSet::default();
        set.admit(owned.clone()).unwrap();
        let owner = SigningKey::from_seed([seed; 32]).public();
        for ((other, other_seed), mutation) in others {
            // The same name under another key, perhaps mutated on the way.
            let forged = Unsigned {
                name: owned.name.clone(),
                version: other.version.clone(),
                checksum: other.checksum.clone(),
                size: other.size,
                dependencies: BTreeMap::new(),
                meta: other.meta.clone(),
                published_at: other.published_at,
            }
            .sign(&SigningKey::from_seed([other_seed; 32]));
            let bytes = match &mutation {
                Some(m) => mutate(&forged, m),
                None => forged.encode(),
            };
            if let Some(admitted) = receive(&mut set, &bytes)? && admitted.name == owned.name {
                prop_assert_eq!(&admitted.publisher, &owner, "another key took the name");
            }
            prop_assert_eq!(set.trust().owner(&owned.name), Some(&owner));
            prop_assert_eq!(set.get(&owned.name, &owned.version), Some(&owned));
        }
    }
}

fn raw_key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => (name(), version()).prop_map(|(n, v)| format!("pkg/{n}/{v}").into_bytes()),
        2 => name().prop_map(|n| format!("pkg/{n}").into_bytes()),
        1 => "[0-9a-fA-F]{62,66}".prop_map(|h| format!("cid/{h}").into_bytes()),
        2 => "(pkg|cid|/ipfs)?/?[ -~]{0,40}".prop_map(String::into_bytes),
        1 => proptest::collection::vec(any::<u8>(), 0..80),
    ]
}

fn version_set() -> impl Strategy<Value = BTreeSet<semver::Version>> {
    proptest::collection::btree_set(version(), 0..60)
}

proptest! {
    #![proptest_config(config(256, RECORD_REGRESSIONS))]

    /// Any key: classified without panicking, and a key we accept is exactly the key we would
    /// write for what it names (so one thing has one key).
    #[test]
    fn keys_parse_only_as_they_are_written(key in raw_key()) {
        let key = RecordKey::new(&key);
        match parse_key(&key) {
            Some(KeyKind::Version { name, version }) => prop_assert_eq!(version_key(&name, &version), key),
            Some(KeyKind::Index { name }) => prop_assert_eq!(index_key(&name), key),
            Some(KeyKind::Content(id)) => prop_assert_eq!(content_key(&id), key),
            None => {}
        }
    }

    /// Any bytes as a version index record: decoded within bounds and under its own name, and
    /// what decodes encodes and decodes again to the same thing.
    #[test]
    fn version_index_decoding_takes_any_bytes(
        bytes in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..2048),
            (name(), version_set(), json_value()).prop_map(|(n, v, extra)| {
                serde_json::to_vec(&serde_json::json!({"name": n, "versions": v, "extra": extra})).unwrap()
            }),
        ],
        expected in name(),
    ) {
        if let Ok(index) = VersionIndex::decode(&bytes, &expected) {
            prop_assert_eq!(&index.name, &expected);
            prop_assert!(index.versions.len() <= MAX_INDEX_VERSIONS);
            let again = index.encode();
            prop_assert!(again.len() <= MAX_RELEASE_BYTES);
            prop_assert_eq!(VersionIndex::decode(&again, &expected).unwrap(), index);
        }
    }

    /// Index records merge in the store: after any sequence of writes of one name's version sets
    /// (and stray invalid values), the record holds the newest versions of their union.
    #[test]
    fn the_store_merges_index_records(
        name in name(),
        writes in proptest::collection::vec(prop_oneof![
            4 => version_set().prop_map(Ok),
            1 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(Err),
        ], 1..12),
        noise in proptest::collection::vec((raw_key(), proptest::collection::vec(any::<u8>(), 0..256)), 0..8),
    ) {
        let mut store = MergingStore::new(PeerId::random(), &StoreLimits::default());
        for (key, value) in noise {
            let _ = store.put(Record::new(RecordKey::new(&key), value));
        }
        let key = index_key(&name);
        store.remove(&key);
        // The model: nothing valid stored yet, or the set the record must hold.
        let mut held: Option<BTreeSet<semver::Version>> = None;
        for write in writes {
            let value = match write {
                Ok(versions) => {
                    let bytes = VersionIndex { name: name.clone(), versions }.encode();
                    let incoming = VersionIndex::decode(&bytes, &name).unwrap().versions;
                    let mut merged = held.take().unwrap_or_default();
                    merged.extend(incoming);
                    while merged.len() > MAX_INDEX_VERSIONS {
                        merged.pop_first();
                    }
                    // Encoding trims the oldest further if the record would not fit.
                    let fitted = VersionIndex { name: name.clone(), versions: merged }.encode();
                    held = Some(VersionIndex::decode(&fitted, &name).unwrap().versions);
                    bytes
                }
                // Junk is dropped when a valid record is there, and stored when none is.
                Err(junk) => junk,
            };
            let _ = store.put(Record::new(key.clone(), value));
        }
        if let Some(held) = held {
            let stored = store.get(&key).unwrap();
            let index = VersionIndex::decode(&stored.value, &name);
            prop_assert!(index.is_ok(), "the stored index record does not decode");
            prop_assert_eq!(index.unwrap().versions, held);
        }
    }
}
