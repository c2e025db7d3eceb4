//! The archive cache: three tiers in front of every archive read (DESIGN §4).
//!
//! * **hot**: in memory, bounded by bytes, least recently used evicted first;
//! * **warm**: the on-disk content-addressed [`Store`], which re-hashes what it reads;
//! * **cold**: a [`Fetcher`], in practice the P2P network.
//!
//! A miss in one tier falls through to the next, and what a lower tier returns is promoted into the
//! tiers above it. Archives are addressed by content id, so whatever a tier holds is the archive
//! the release names; bytes from the cold tier are hashed before they are kept.
//!
//! A warm file whose contents are not its name was tampered with (or damaged): it is moved to the
//! quarantine folder, never deleted and never used, and fetched again from the cold tier when there
//! is one. Without one, the error says so: the file's path, the hash its name promises, the hash
//! it has, and where it went ([`CacheError::Tampered`]).
//!
//! Hits and misses are counted with relaxed atomics (nanoseconds each) and no spans: a cache probe
//! sits inside request-level operations that carry the spans (DESIGN §6).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::record::{ContentId, Release};
use crate::store::{Store, StoreError};

/// Default size of the hot tier.
pub const DEFAULT_HOT_BYTES: u64 = 64 * 1024 * 1024;
/// Default size budget of the warm tier, applied by [`Cache::cleanup`].
pub const DEFAULT_WARM_BUDGET: u64 = 1024 * 1024 * 1024;

/// Why the cold tier could not deliver an archive.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("no source provides {release}")]
    NotFound { release: String },
    #[error("fetching {release} failed: {reason}")]
    Failed { release: String, reason: String },
}

/// The cold tier: fetches an archive from somewhere else (the network). Implementations need not
/// verify the bytes; the cache hashes them before use.
pub trait Fetcher: Send + Sync {
    fn fetch(&self, release: &Release) -> Result<Vec<u8>, FetchError>;
}

/// Which tier served an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    Hot,
    Warm,
    Cold,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Hot => "hot",
            Tier::Warm => "warm",
            Tier::Cold => "cold",
        }
    }
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{release}: archive not in the cache or store, and no network fetcher is configured")]
    Unavailable { release: String },
    #[error("{file}{}", after_tamper(.refetch))]
    Tampered {
        /// Boxed: the error travels in every `Result` of the install path.
        file: Box<TamperedFile>,
        refetch: Refetch,
    },
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("{release}: fetched archive hashes to {actual}, but the release names {expected}")]
    ChecksumMismatch {
        release: String,
        expected: ContentId,
        actual: ContentId,
    },
    #[error("{release}: fetched archive is {actual} bytes, but the release states {expected}")]
    SizeMismatch {
        release: String,
        expected: u64,
        actual: u64,
    },
}

/// What happened after a tampered store file was quarantined.
#[derive(Debug)]
pub enum Refetch {
    /// [`Cache::get_local`] does not use the network.
    NotAttempted,
    /// The cache has no cold tier.
    NoFetcher,
    /// The cold tier was asked and failed.
    Failed(Box<CacheError>),
}

fn after_tamper(refetch: &Refetch) -> String {
    match refetch {
        Refetch::NotAttempted => String::new(),
        Refetch::NoFetcher => "; no network fetcher is configured to fetch it again".into(),
        Refetch::Failed(e) => format!("; fetching it again failed: {e}"),
    }
}

/// A store file that failed its hash check, now in quarantine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "store file {path} was tampered with: its name says {expected}, its contents hash to \
     {found}; moved to {quarantined} for inspection"
)]
pub struct TamperedFile {
    pub path: PathBuf,
    pub expected: ContentId,
    pub found: ContentId,
    pub quarantined: PathBuf,
}

type Quarantined = TamperedFile;

impl TamperedFile {
    fn error(self, refetch: Refetch) -> CacheError {
        CacheError::Tampered {
            file: Box::new(self),
            refetch,
        }
    }
}

/// What the hot and warm tiers have for an id.
enum Local {
    Hit(Fetched),
    Miss,
    Tampered(Quarantined),
}

/// A snapshot of the cache counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    pub hot_hits: u64,
    pub hot_misses: u64,
    pub warm_hits: u64,
    pub warm_misses: u64,
    pub cold_fetches: u64,
    /// Entries evicted from the hot tier plus archives removed from the warm tier by cleanup.
    pub evictions: u64,
    /// Warm files found tampered with and quarantined.
    pub quarantined: u64,
    /// Bytes currently held in the hot tier.
    pub bytes: u64,
}

#[derive(Default)]
struct Counters {
    hot_hits: AtomicU64,
    hot_misses: AtomicU64,
    warm_hits: AtomicU64,
    warm_misses: AtomicU64,
    cold_fetches: AtomicU64,
    evictions: AtomicU64,
    quarantined: AtomicU64,
    bytes: AtomicU64,
}

/// Process-wide cache metrics (exported with the `otel` feature of the binaries); the per-cache
/// counters above stay for [`Cache::stats`]. Both are relaxed atomics: a probe costs nanoseconds.
mod global {
    use market_telemetry::metrics::{Counter, names};
    pub static HOT_HITS: Counter = Counter::new(names::CACHE_HITS).label("tier", "hot");
    pub static HOT_MISSES: Counter = Counter::new(names::CACHE_MISSES).label("tier", "hot");
    pub static WARM_HITS: Counter = Counter::new(names::CACHE_HITS).label("tier", "warm");
    pub static WARM_MISSES: Counter = Counter::new(names::CACHE_MISSES).label("tier", "warm");
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The in-memory tier: entries plus a recency order (tick -> id) for eviction in O(log n).
#[derive(Default)]
struct Hot {
    entries: HashMap<ContentId, (Arc<[u8]>, u64)>,
    order: BTreeMap<u64, ContentId>,
    tick: u64,
    bytes: u64,
}

/// An archive and the tier it came from.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Arc<[u8]>,
    pub tier: Tier,
}

/// What [`Cache::cleanup`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cleanup {
    pub removed: Vec<ContentId>,
    pub remaining_bytes: u64,
}

/// The three-tier archive cache. Shareable between threads.
pub struct Cache {
    hot: Mutex<Hot>,
    hot_capacity: u64,
    warm_budget: u64,
    store: Store,
    fetcher: Option<Arc<dyn Fetcher>>,
    counters: Counters,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("store", &self.store)
            .field("hot_capacity", &self.hot_capacity)
            .field("warm_budget", &self.warm_budget)
            .field("fetcher", &self.fetcher.is_some())
            .field("stats", &self.stats())
            .finish()
    }
}

impl Cache {
    /// A cache over `store` with a hot tier of `hot_capacity` bytes and no cold tier.
    pub fn new(store: Store, hot_capacity: u64) -> Cache {
        Cache {
            hot: Mutex::new(Hot::default()),
            hot_capacity,
            warm_budget: DEFAULT_WARM_BUDGET,
            store,
            fetcher: None,
            counters: Counters::default(),
        }
    }

    /// Adds the cold tier.
    pub fn with_fetcher(mut self, fetcher: Arc<dyn Fetcher>) -> Cache {
        self.fetcher = Some(fetcher);
        self
    }

    /// Sets the byte budget [`Cache::cleanup`] trims the warm tier to.
    pub fn with_warm_budget(mut self, budget: u64) -> Cache {
        self.warm_budget = budget;
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The archive of `release`, from the first tier that has it. A tampered warm copy is
    /// quarantined and replaced from the cold tier; without one, the error names the file.
    pub fn get(&self, release: &Release) -> Result<Fetched, CacheError> {
        let tampered = match self.probe_local(&release.checksum)? {
            Local::Hit(f) => return Ok(f),
            Local::Miss => None,
            Local::Tampered(q) => Some(q),
        };
        let Some(fetcher) = &self.fetcher else {
            return Err(match tampered {
                Some(q) => q.error(Refetch::NoFetcher),
                None => CacheError::Unavailable {
                    release: release.id(),
                },
            });
        };
        match self.fetch_cold(fetcher.as_ref(), release) {
            Ok(fetched) => {
                if let Some(q) = tampered {
                    tracing::warn!(
                        path = %q.path.display(),
                        expected = %q.expected,
                        found = %q.found,
                        quarantined = %q.quarantined.display(),
                        "tampered store file quarantined and fetched again"
                    );
                }
                Ok(fetched)
            }
            Err(e) => Err(match tampered {
                Some(q) => q.error(Refetch::Failed(Box::new(e))),
                None => e,
            }),
        }
    }

    fn fetch_cold(&self, fetcher: &dyn Fetcher, release: &Release) -> Result<Fetched, CacheError> {
        bump(&self.counters.cold_fetches);
        let bytes = fetcher.fetch(release)?;
        let actual = ContentId::of(&bytes);
        if actual != release.checksum {
            return Err(CacheError::ChecksumMismatch {
                release: release.id(),
                expected: release.checksum.clone(),
                actual,
            });
        }
        if bytes.len() as u64 != release.size {
            return Err(CacheError::SizeMismatch {
                release: release.id(),
                expected: release.size,
                actual: bytes.len() as u64,
            });
        }
        self.store.put(&bytes)?;
        let bytes: Arc<[u8]> = bytes.into();
        self.hot_insert(actual, bytes.clone());
        Ok(Fetched {
            bytes,
            tier: Tier::Cold,
        })
    }

    /// The archive `id` from the hot or warm tier, without touching the network. A warm copy that
    /// fails its hash check is quarantined and reported ([`CacheError::Tampered`]); the next
    /// [`Cache::get`] then misses it and asks the cold tier.
    pub fn get_local(&self, id: &ContentId) -> Result<Option<Fetched>, CacheError> {
        match self.probe_local(id)? {
            Local::Hit(f) => Ok(Some(f)),
            Local::Miss => Ok(None),
            Local::Tampered(q) => Err(q.error(Refetch::NotAttempted)),
        }
    }

    fn probe_local(&self, id: &ContentId) -> Result<Local, CacheError> {
        if let Some(bytes) = self.get_hot(id) {
            return Ok(Local::Hit(Fetched {
                bytes,
                tier: Tier::Hot,
            }));
        }
        match self.store.get(id) {
            Ok(Some(bytes)) => {
                bump(&self.counters.warm_hits);
                global::WARM_HITS.inc();
                let bytes: Arc<[u8]> = bytes.into();
                self.hot_insert(id.clone(), bytes.clone());
                Ok(Local::Hit(Fetched {
                    bytes,
                    tier: Tier::Warm,
                }))
            }
            Ok(None) => {
                bump(&self.counters.warm_misses);
                global::WARM_MISSES.inc();
                Ok(Local::Miss)
            }
            Err(StoreError::Tampered {
                path,
                expected,
                found,
            }) => {
                let quarantined = self.store.quarantine(&expected, &found)?;
                tracing::warn!(path = %path.display(), %expected, %found,
                    quarantined = %quarantined.display(), "tampered store file quarantined");
                bump(&self.counters.warm_misses);
                bump(&self.counters.quarantined);
                global::WARM_MISSES.inc();
                Ok(Local::Tampered(Quarantined {
                    path,
                    expected,
                    found,
                    quarantined,
                }))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The hot tier only: the cheapest probe, counted as a hot hit or miss.
    pub fn get_hot(&self, id: &ContentId) -> Option<Arc<[u8]>> {
        let mut hot = self.hot.lock().unwrap_or_else(|p| p.into_inner());
        hot.tick += 1;
        let tick = hot.tick;
        let Some((bytes, last)) = hot.entries.get_mut(id) else {
            drop(hot);
            bump(&self.counters.hot_misses);
            global::HOT_MISSES.inc();
            return None;
        };
        let bytes = bytes.clone();
        let old = std::mem::replace(last, tick);
        hot.order.remove(&old);
        hot.order.insert(tick, id.clone());
        drop(hot);
        bump(&self.counters.hot_hits);
        global::HOT_HITS.inc();
        Some(bytes)
    }

    /// Stores `bytes` in the warm and hot tiers; returns their content id.
    pub fn insert(&self, bytes: &[u8]) -> Result<ContentId, CacheError> {
        let id = self.store.put(bytes)?;
        self.hot_insert(id.clone(), Arc::from(bytes));
        Ok(id)
    }

    fn hot_insert(&self, id: ContentId, bytes: Arc<[u8]>) {
        let len = bytes.len() as u64;
        if len > self.hot_capacity {
            return;
        }
        let mut hot = self.hot.lock().unwrap_or_else(|p| p.into_inner());
        hot.tick += 1;
        let tick = hot.tick;
        if let Some((_, old)) = hot.entries.insert(id.clone(), (bytes, tick)) {
            hot.order.remove(&old);
            hot.bytes -= len;
        }
        hot.order.insert(tick, id);
        hot.bytes += len;
        let mut evicted = 0;
        while hot.bytes > self.hot_capacity {
            let Some((_, victim)) = hot.order.pop_first() else {
                break;
            };
            if let Some((b, _)) = hot.entries.remove(&victim) {
                hot.bytes -= b.len() as u64;
                evicted += 1;
            }
        }
        self.counters.bytes.store(hot.bytes, Ordering::Relaxed);
        drop(hot);
        if evicted > 0 {
            self.counters
                .evictions
                .fetch_add(evicted, Ordering::Relaxed);
        }
    }

    /// Empties the hot tier (the counters stay).
    pub fn clear_hot(&self) {
        let mut hot = self.hot.lock().unwrap_or_else(|p| p.into_inner());
        *hot = Hot::default();
        self.counters.bytes.store(0, Ordering::Relaxed);
    }

    /// Trims the warm tier to the configured budget, least recently used first.
    pub fn cleanup(&self) -> Result<Cleanup, CacheError> {
        self.cleanup_to(self.warm_budget)
    }

    /// Trims the warm tier to `budget` bytes, least recently used first.
    pub fn cleanup_to(&self, budget: u64) -> Result<Cleanup, CacheError> {
        let removed = self.store.trim(budget)?;
        self.counters
            .evictions
            .fetch_add(removed.len() as u64, Ordering::Relaxed);
        let remaining_bytes = self.store.total_size()?;
        Ok(Cleanup {
            removed,
            remaining_bytes,
        })
    }

    /// The counters now.
    pub fn stats(&self) -> CacheStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CacheStats {
            hot_hits: get(&c.hot_hits),
            hot_misses: get(&c.hot_misses),
            warm_hits: get(&c.warm_hits),
            warm_misses: get(&c.warm_misses),
            cold_fetches: get(&c.cold_fetches),
            evictions: get(&c.evictions),
            quarantined: get(&c.quarantined),
            bytes: get(&c.bytes),
        }
    }
}
