//! The DHT-result cache in front of Kademlia lookups: bounded, with a TTL and hit/miss counters.
//!
//! A hit costs a mutex and a hash lookup, never a span or a message to the swarm task, so it stays
//! in the microseconds. Callers that must measure the network (benches) bypass it per call.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Whether a lookup may be answered from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CachePolicy {
    /// Answer from the cache when fresh; store network answers.
    #[default]
    Use,
    /// Always ask the network; leave the cache untouched.
    Bypass,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub entries: usize,
}

struct Inner<K, V> {
    map: HashMap<K, (V, Instant)>,
    /// Insertion order, for evicting the oldest entry when full. May hold keys already removed or
    /// re-inserted; those are skipped on eviction.
    order: VecDeque<(K, Instant)>,
}

pub struct TtlCache<K, V> {
    ttl: Duration,
    capacity: usize,
    inner: Mutex<Inner<K, V>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    pub fn new(ttl: Duration, capacity: usize) -> TtlCache<K, V> {
        TtlCache {
            ttl,
            capacity: capacity.max(1),
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                order: VecDeque::new(),
            }),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match inner.map.get(key) {
            Some((v, at)) if now.duration_since(*at) < self.ttl => {
                let v = v.clone();
                drop(inner);
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(v)
            }
            Some(_) => {
                inner.map.remove(key);
                drop(inner);
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
            None => {
                drop(inner);
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    pub fn insert(&self, key: K, value: V) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        inner.map.insert(key.clone(), (value, now));
        inner.order.push_back((key, now));
        while inner.map.len() > self.capacity {
            let Some((k, at)) = inner.order.pop_front() else {
                break;
            };
            if inner.map.get(&k).is_some_and(|(_, t)| *t == at) {
                inner.map.remove(&k);
            }
        }
        // Stale order entries (keys re-inserted later) are bounded by the same capacity.
        while inner.order.len() > self.capacity * 2 {
            inner.order.pop_front();
        }
    }

    pub fn invalidate(&self, key: &K) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.map.remove(key);
    }

    pub fn stats(&self) -> CacheStats {
        let entries = self
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map
            .len();
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_misses_capacity_and_ttl() {
        let c: TtlCache<u32, u32> = TtlCache::new(Duration::from_secs(60), 2);
        assert_eq!(c.get(&1), None);
        c.insert(1, 10);
        c.insert(2, 20);
        assert_eq!(c.get(&1), Some(10));
        c.insert(3, 30);
        assert_eq!(c.get(&1), None, "oldest entry evicted at capacity");
        assert_eq!(c.get(&3), Some(30));
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.entries), (2, 2, 2));

        let expired: TtlCache<u32, u32> = TtlCache::new(Duration::ZERO, 2);
        expired.insert(1, 1);
        assert_eq!(expired.get(&1), None);
    }
}
