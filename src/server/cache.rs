//! The key/value cache of the Python seed report (`GET|PUT /cache/{key}`, `GET /info`), in its two
//! versions: `unbounded`, a plain map that keeps every key it was ever given (the leaky cache), and
//! `bounded`, which holds at most `max_items` entries for at most `ttl` each (the well-behaved
//! one, as `expiringdict` does: the oldest write goes first).
//!
//! Both are one [`lru::LruCache`]. Reads never reorder it (`peek`), so its order is the order of
//! writes and the oldest entry is always at the end that expires first. A bounded cache evicts
//! past `max_items` itself and keeps its table sized for twice that: an evicting map leaves
//! tombstones, and a table sized for exactly `max_items` fills up with them and doubles once,
//! some thousands of writes in — a 68 KiB step in the live heap of a cache that holds still. Values are copied into blocks of exactly their size,
//! never kept as slices of a request buffer, so the live heap grows by what the cache holds and
//! nothing else: the figure the leak verdict divides by the number of requests.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use lru::LruCache;
use serde::{Deserialize, Serialize};

use crate::observe::sampler::{SourceError, StateReading, StateSource};
pub use crate::scenario::{CacheConfig, CacheMode};

/// What `GET /info` reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheInfo {
    /// Entries held.
    pub items: u64,
    /// Bytes of keys and values held.
    pub bytes: u64,
}

struct Entry {
    value: Box<[u8]>,
    written: Instant,
}

struct Store {
    entries: LruCache<Box<str>, Entry>,
    bytes: u64,
}

/// The cache, shared by every connection of one server instance.
pub struct Cache {
    config: CacheConfig,
    store: Mutex<Store>,
}

impl Cache {
    /// An empty cache.
    pub fn new(config: CacheConfig) -> Self {
        let entries = match config.mode {
            CacheMode::Bounded => {
                LruCache::new(NonZeroUsize::new(config.max_items.saturating_mul(2)).unwrap_or(NonZeroUsize::MIN))
            }
            CacheMode::Unbounded => LruCache::unbounded(),
        };
        Self {
            config,
            store: Mutex::new(Store { entries, bytes: 0 }),
        }
    }

    /// The settings it was made with.
    pub fn config(&self) -> CacheConfig {
        self.config
    }

    /// A copy of the value at `key`, if one is held and has not expired.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.get_at(key, Instant::now())
    }

    /// Stores a copy of `value` at `key`, replacing what was there.
    pub fn put(&self, key: &str, value: &[u8]) {
        self.put_at(key, value, Instant::now());
    }

    /// Items and bytes held now (expired entries are dropped first).
    pub fn info(&self) -> CacheInfo {
        let mut store = self.lock();
        self.expire(&mut store, Instant::now());
        CacheInfo {
            items: store.entries.len() as u64,
            bytes: store.bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get_at(&self, key: &str, now: Instant) -> Option<Vec<u8>> {
        let mut store = self.lock();
        self.expire(&mut store, now);
        store.entries.peek(key).map(|entry| entry.value.to_vec())
    }

    fn put_at(&self, key: &str, value: &[u8], now: Instant) {
        let mut store = self.lock();
        self.expire(&mut store, now);
        let entry = Entry {
            value: value.into(),
            written: now,
        };
        let added = (key.len() + value.len()) as u64;
        if let Some((old_key, old)) = store.entries.push(key.into(), entry) {
            store.bytes -= (old_key.len() + old.value.len()) as u64;
        }
        store.bytes += added;
        if self.config.mode == CacheMode::Bounded {
            while store.entries.len() > self.config.max_items {
                if let Some((key, entry)) = store.entries.pop_lru() {
                    store.bytes -= (key.len() + entry.value.len()) as u64;
                }
            }
        }
    }

    /// Drops entries past their TTL, oldest first (bounded only).
    fn expire(&self, store: &mut Store, now: Instant) {
        if self.config.mode != CacheMode::Bounded {
            return;
        }
        while let Some((_, entry)) = store.entries.peek_lru() {
            if now.duration_since(entry.written) < self.config.ttl {
                break;
            }
            if let Some((key, entry)) = store.entries.pop_lru() {
                store.bytes -= (key.len() + entry.value.len()) as u64;
            }
        }
    }
}

/// The caches of every server instance as a state source: `cache_items` and `cache_bytes`, summed,
/// the figures `/info` serves. A bounded cache that is full holds them still; an unbounded one
/// grows with every new key, which the leak verdict reports as state never released.
pub struct CacheSource {
    caches: Vec<Arc<Cache>>,
}

impl CacheSource {
    /// A source over `caches`.
    pub fn new(caches: Vec<Arc<Cache>>) -> Self {
        Self { caches }
    }
}

#[async_trait::async_trait]
impl StateSource for CacheSource {
    async fn read(&self) -> Result<StateReading, SourceError> {
        let (items, bytes) = self
            .caches
            .iter()
            .map(|c| c.info())
            .fold((0, 0), |(items, bytes), info| (items + info.items, bytes + info.bytes));
        Ok(StateReading {
            state: BTreeMap::from([("cache_items".to_string(), items), ("cache_bytes".to_string(), bytes)]),
            info: BTreeMap::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn bounded(max_items: usize, ttl: Duration) -> Cache {
        Cache::new(CacheConfig {
            mode: CacheMode::Bounded,
            max_items,
            ttl,
            max_body: 1024,
        })
    }

    #[test]
    fn values_come_back_and_replacing_one_keeps_the_byte_count_exact() {
        let cache = bounded(10, Duration::from_secs(60));
        assert_eq!(cache.get("a"), None);
        cache.put("a", b"hello");
        cache.put("bb", b"xyz");
        assert_eq!(cache.get("a").as_deref(), Some(&b"hello"[..]));
        assert_eq!(cache.info(), CacheInfo { items: 2, bytes: 6 + 5 });
        cache.put("a", b"h");
        assert_eq!(cache.info(), CacheInfo { items: 2, bytes: 2 + 5 });
    }

    #[test]
    fn a_bounded_cache_drops_the_oldest_write_first_and_reads_do_not_reorder_it() {
        let cache = bounded(3, Duration::from_secs(60));
        for key in ["k1", "k2", "k3"] {
            cache.put(key, b"v");
        }
        assert!(cache.get("k1").is_some());
        cache.put("k4", b"v");
        assert_eq!(
            cache.get("k1"),
            None,
            "the oldest write goes, although it was just read"
        );
        assert!(cache.get("k2").is_some());
        assert_eq!(cache.info(), CacheInfo { items: 3, bytes: 9 });
    }

    #[test]
    fn entries_expire_after_their_ttl() {
        let cache = bounded(10, Duration::from_secs(60));
        let start = Instant::now();
        cache.put_at("old", b"1234", start);
        cache.put_at("new", b"5678", start + Duration::from_secs(30));
        assert!(cache.get_at("old", start + Duration::from_secs(59)).is_some());
        assert_eq!(cache.get_at("old", start + Duration::from_secs(61)), None);
        assert!(cache.get_at("new", start + Duration::from_secs(61)).is_some());
        assert_eq!(cache.lock().bytes, 7);
    }

    #[test]
    fn an_unbounded_cache_keeps_everything_for_ever() {
        let cache = Cache::new(CacheConfig {
            mode: CacheMode::Unbounded,
            max_items: 1,
            ttl: Duration::from_millis(1),
            max_body: 1024,
        });
        let start = Instant::now();
        for i in 0..100 {
            cache.put_at(&format!("k{i:02}"), b"value", start);
        }
        assert!(cache.get_at("k00", start + Duration::from_secs(3600)).is_some());
        assert_eq!(
            cache.info(),
            CacheInfo {
                items: 100,
                bytes: 100 * 8
            }
        );
    }
}
