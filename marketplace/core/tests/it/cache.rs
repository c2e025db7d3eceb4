//! The cache tiers: counters, promotion, eviction, corruption handling and cleanup.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use market_core::cache::{Cache, CacheError, CacheStats, FetchError, Fetcher, Tier};
use market_core::record::{ContentId, Metadata, Unsigned};
use market_core::store::{Store, StoreError};
use market_core::{Release, SigningKey};

fn release_for(bytes: &[u8]) -> Release {
    Unsigned {
        name: "tpl".into(),
        version: "1.0.0".parse().unwrap(),
        checksum: ContentId::of(bytes),
        size: bytes.len() as u64,
        dependencies: Default::default(),
        meta: Metadata::default(),
        published_at: 0,
    }
    .sign(&SigningKey::from_seed([3; 32]))
}

/// A cold tier that serves fixed bytes and counts calls.
struct Fixed {
    bytes: Vec<u8>,
    calls: AtomicU64,
}

impl Fetcher for Fixed {
    fn fetch(&self, _release: &Release) -> Result<Vec<u8>, FetchError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(self.bytes.clone())
    }
}

#[test]
fn each_tier_is_tried_in_turn_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = b"archive bytes".to_vec();
    let release = release_for(&bytes);
    let fetcher = Arc::new(Fixed {
        bytes: bytes.clone(),
        calls: AtomicU64::new(0),
    });
    let cache = Cache::new(Store::new(tmp.path()), 1024).with_fetcher(fetcher.clone());

    let first = cache.get(&release).unwrap();
    assert_eq!((first.tier, &first.bytes[..]), (Tier::Cold, &bytes[..]));
    let second = cache.get(&release).unwrap();
    assert_eq!(second.tier, Tier::Hot);
    cache.clear_hot();
    let third = cache.get(&release).unwrap();
    assert_eq!(third.tier, Tier::Warm);
    assert_eq!(
        cache.get(&release).unwrap().tier,
        Tier::Hot,
        "warm hits are promoted"
    );
    assert_eq!(fetcher.calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        cache.stats(),
        CacheStats {
            hot_hits: 2,
            hot_misses: 2,
            warm_hits: 1,
            warm_misses: 1,
            cold_fetches: 1,
            evictions: 0,
            quarantined: 0,
            bytes: bytes.len() as u64,
        }
    );
}

#[test]
fn without_a_cold_tier_a_miss_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::new(Store::new(tmp.path()), 1024);
    let err = cache.get(&release_for(b"nowhere")).unwrap_err();
    assert!(matches!(err, CacheError::Unavailable { .. }), "{err}");
    assert!(err.to_string().contains("tpl@1.0.0"), "{err}");
}

#[test]
fn the_hot_tier_is_bounded_and_evicts_the_least_recently_used() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::new(Store::new(tmp.path()), 100);
    let a = cache.insert(&[1; 40]).unwrap();
    let b = cache.insert(&[2; 40]).unwrap();
    assert!(
        cache.get_hot(&a).is_some(),
        "touch a so that b is the oldest"
    );
    let c = cache.insert(&[3; 40]).unwrap();
    assert!(cache.get_hot(&b).is_none(), "b should have been evicted");
    assert!(cache.get_hot(&a).is_some() && cache.get_hot(&c).is_some());
    let stats = cache.stats();
    assert_eq!((stats.evictions, stats.bytes), (1, 80));
    // Larger than the whole hot tier: kept on disk only.
    let huge = cache.insert(&[4; 500]).unwrap();
    assert!(cache.get_hot(&huge).is_none());
    assert!(cache.store().contains(&huge));
}

#[test]
fn bad_bytes_from_the_cold_tier_are_refused_and_not_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let release = release_for(b"the real archive");
    let fetcher = Arc::new(Fixed {
        bytes: b"something else".to_vec(),
        calls: AtomicU64::new(0),
    });
    let cache = Cache::new(Store::new(tmp.path()), 1024).with_fetcher(fetcher);
    let err = cache.get(&release).unwrap_err();
    assert!(matches!(err, CacheError::ChecksumMismatch { .. }), "{err}");
    assert!(Store::new(tmp.path()).list().unwrap().is_empty());
    assert_eq!(cache.stats().bytes, 0);
}

#[test]
fn a_corrupt_warm_copy_is_replaced_from_the_cold_tier() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(tmp.path());
    let bytes = b"good archive".to_vec();
    let id = store.put(&bytes).unwrap();
    std::fs::write(store.path_of(&id), b"bad archive!").unwrap();
    assert!(matches!(store.get(&id), Err(StoreError::Tampered { .. })));

    let fetcher = Arc::new(Fixed {
        bytes: bytes.clone(),
        calls: AtomicU64::new(0),
    });
    let cache = Cache::new(store.clone(), 1024).with_fetcher(fetcher);
    let got = cache.get(&release_for(&bytes)).unwrap();
    assert_eq!((got.tier, &got.bytes[..]), (Tier::Cold, &bytes[..]));
    assert_eq!(
        store.get(&id).unwrap().unwrap(),
        bytes,
        "the store copy is repaired"
    );
}

#[test]
fn cleanup_trims_the_warm_tier_oldest_first() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(tmp.path());
    let ids: Vec<ContentId> = (0..4u8).map(|i| store.put(&[i; 1000]).unwrap()).collect();
    // Ages: ids[2] oldest, then ids[0], ids[3], ids[1] newest.
    let base = SystemTime::now() - Duration::from_secs(3600);
    for (i, age) in [(2, 0), (0, 10), (3, 20), (1, 30)] {
        let f = std::fs::File::options()
            .write(true)
            .open(store.path_of(&ids[i]))
            .unwrap();
        f.set_modified(base + Duration::from_secs(age)).unwrap();
    }
    let cache = Cache::new(store.clone(), 0).with_warm_budget(2500);
    let done = cache.cleanup().unwrap();
    assert_eq!(done.removed, [ids[2].clone(), ids[0].clone()]);
    assert_eq!(done.remaining_bytes, 2000);
    assert_eq!(store.total_size().unwrap(), 2000);
    assert_eq!(cache.stats().evictions, 2);
    assert!(
        cache.cleanup().unwrap().removed.is_empty(),
        "within budget: nothing to do"
    );
}

#[test]
fn the_store_verifies_and_lists_what_it_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(tmp.path().join("store"));
    assert!(store.list().unwrap().is_empty());
    let id = store.put(b"abc").unwrap();
    assert_eq!(id, ContentId::of(b"abc"));
    assert_eq!(store.put(b"abc").unwrap(), id, "storing twice is one entry");
    std::fs::write(store.dir().join("not-a-content-id.tmp"), "x").unwrap();
    let listed = store.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].id.clone(), listed[0].size), (id.clone(), 3));
    assert!(store.contains(&id));
    assert!(store.remove(&id).unwrap());
    assert!(!store.remove(&id).unwrap());
    assert_eq!(store.get(&id).unwrap(), None);
}

#[test]
fn the_cache_is_shared_between_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = vec![9u8; 4096];
    let release = release_for(&bytes);
    let fetcher = Arc::new(Fixed {
        bytes: bytes.clone(),
        calls: AtomicU64::new(0),
    });
    let cache = Arc::new(Cache::new(Store::new(tmp.path()), 1 << 20).with_fetcher(fetcher));
    cache.get(&release).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (cache, release) = (cache.clone(), release.clone());
            std::thread::spawn(move || {
                (0..100)
                    .filter(|_| cache.get(&release).unwrap().tier == Tier::Hot)
                    .count()
            })
        })
        .collect();
    let hot: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(hot, 400);
    assert_eq!(cache.stats().hot_hits, 400);
}
