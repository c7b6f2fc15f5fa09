//! Serialized ListAttendees pages and GetAttendee answers, reused while the meeting's attendees
//! have not changed.
//!
//! A page's body is a pure function of the request shape (account, namespace, meeting, cursor,
//! page size) and of the meeting's attendees: NextTokens are deterministic HMACs of the cursor.
//! A GetAttendee body is one of the account, namespace, meeting and attendee.
//! Each entry records a meeting's attendee version (`Store::attendees_version`) its rows are not
//! older than, and is served only after the store confirms that version is still current, so a
//! write through any node sharing the store (which moves the version before it is answered) is
//! seen by the very next request. The cache only saves stepping rows and serializing JSON, never
//! the check.
//!
//! Memory is bounded by a byte budget and an entry cap, split evenly over shards (each a mutex
//! around an LRU-ordered map) so that concurrent requests rarely contend.

use std::hash::{BuildHasher, Hash};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use hashlink::LinkedHashMap;

use super::namespace::Namespace;

/// Everything a ListAttendees body depends on besides the meeting's attendees.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageKey {
    pub account_id: String,
    /// The legacy namespace lists attendees without Capabilities and at most 99 to a page.
    pub namespace: Namespace,
    pub meeting_id: String,
    /// The keyset cursor the NextToken carried (None for the first page).
    pub after: Option<String>,
    pub limit: usize,
}

/// Everything a GetAttendee body depends on besides the attendee's row.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttendeeKey {
    pub account_id: String,
    /// The legacy namespace shows no Capabilities.
    pub namespace: Namespace,
    pub meeting_id: String,
    pub attendee_id: String,
}

/// A key of a [`PageCache`].
pub trait CacheKey: Hash + Eq + Clone {
    /// The account and meeting whose attendee version the entry is checked against.
    fn meeting(&self) -> (&str, &str);

    /// What an entry costs against the byte budget besides its body: the key's strings and a
    /// rough allowance for the map's node and the entry itself.
    fn overhead(&self) -> usize;
}

/// The map node, the entry and the key's fixed part, roughly.
const ENTRY_OVERHEAD: usize = 160;

impl CacheKey for PageKey {
    fn meeting(&self) -> (&str, &str) {
        (&self.account_id, &self.meeting_id)
    }

    fn overhead(&self) -> usize {
        ENTRY_OVERHEAD
            + self.account_id.len()
            + self.meeting_id.len()
            + self.after.as_ref().map_or(0, String::len)
    }
}

impl CacheKey for AttendeeKey {
    fn meeting(&self) -> (&str, &str) {
        (&self.account_id, &self.meeting_id)
    }

    fn overhead(&self) -> usize {
        ENTRY_OVERHEAD + self.account_id.len() + self.meeting_id.len() + self.attendee_id.len()
    }
}

/// A cached body and the attendee version it shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedPage {
    pub version: i64,
    pub body: Bytes,
}

struct Entry {
    page: CachedPage,
    cost: usize,
}

struct Shard<K> {
    /// Least recently used first.
    entries: LinkedHashMap<K, Entry>,
    bytes: usize,
}

impl<K: CacheKey> Default for Shard<K> {
    fn default() -> Self {
        Self {
            entries: LinkedHashMap::new(),
            bytes: 0,
        }
    }
}

impl<K: CacheKey> Shard<K> {
    fn remove(&mut self, key: &K) {
        if let Some(entry) = self.entries.remove(key) {
            self.bytes = self.bytes.saturating_sub(entry.cost);
        }
    }
}

/// How much a [`PageCache`] may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageCacheLimits {
    /// Bodies, keys and bookkeeping together, in bytes. Zero turns the cache off.
    pub bytes: usize,
    pub entries: usize,
}

impl PageCacheLimits {
    /// For ListAttendees, 64 MiB: about 2,500 full pages of 100 attendees (some 25 KiB each),
    /// or many more short ones up to the entry cap.
    pub const PAGES: Self = Self {
        bytes: 64 << 20,
        entries: 65_536,
    };

    /// For GetAttendee, 32 MiB: some 50,000 answers (about 500 bytes with their keys).
    pub const ATTENDEES: Self = Self {
        bytes: 32 << 20,
        entries: 65_536,
    };
}

const SHARDS: usize = 16;

pub struct PageCache<K: CacheKey = PageKey> {
    shards: Box<[Mutex<Shard<K>>]>,
    hasher: std::collections::hash_map::RandomState,
    shard_bytes: usize,
    shard_entries: usize,
    hits: AtomicU64,
    misses: AtomicU64,
    /// The process-wide counter of hits and misses (`result` label).
    metric: &'static str,
}

impl<K: CacheKey> PageCache<K> {
    pub fn new(limits: PageCacheLimits, metric: &'static str) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: Default::default(),
            shard_bytes: limits.bytes / SHARDS,
            shard_entries: limits.entries.div_ceil(SHARDS),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            metric,
        }
    }

    /// Counts a request served from the cache (`hit`) or from the store, in this cache and in
    /// the process's counter (`carillon_list_cache_total`, `carillon_attendee_cache_total`).
    pub fn count(&self, hit: bool) {
        let (counter, result) = match hit {
            true => (&self.hits, "hit"),
            false => (&self.misses, "miss"),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(self.metric, "result" => result).increment(1);
    }

    /// Requests served from the cache and from the store since this cache was made.
    pub fn hits_and_misses(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    fn shard(&self, key: &K) -> Option<std::sync::MutexGuard<'_, Shard<K>>> {
        let index = self.hasher.hash_one(key) as usize % self.shards.len();
        // A poisoned shard (a panic mid-update, which nothing here should cause) is skipped:
        // the request is served from the store instead.
        self.shards.get(index)?.lock().ok()
    }

    /// The cached page for `key`, whatever its version: the caller checks that against the
    /// store before serving it.
    pub fn get(&self, key: &K) -> Option<CachedPage> {
        let mut shard = self.shard(key)?;
        shard.entries.to_back(key).map(|entry| entry.page.clone())
    }

    /// Keeps `page` for `key`, unless the cache already holds a newer version of it (two fills
    /// racing), then evicts the least recently used entries of the shard until it fits.
    pub fn insert(&self, key: K, page: CachedPage) {
        let cost = key.overhead() + page.body.len();
        if cost > self.shard_bytes {
            return;
        }
        let Some(mut shard) = self.shard(&key) else {
            return;
        };
        if shard
            .entries
            .get(&key)
            .is_some_and(|held| held.page.version > page.version)
        {
            return;
        }
        if let Some(replaced) = shard.entries.insert(key, Entry { page, cost }) {
            shard.bytes = shard.bytes.saturating_sub(replaced.cost);
        }
        shard.bytes += cost;
        while shard.bytes > self.shard_bytes || shard.entries.len() > self.shard_entries {
            let Some((_, evicted)) = shard.entries.pop_front() else {
                break;
            };
            shard.bytes = shard.bytes.saturating_sub(evicted.cost);
        }
    }

    /// Forgets `key` (its meeting is gone, or its page is stale).
    pub fn remove(&self, key: &K) {
        if let Some(mut shard) = self.shard(key) {
            shard.remove(key);
        }
    }

    /// Entries held and the bytes they are counted at.
    #[cfg(test)]
    fn usage(&self) -> (usize, usize) {
        self.shards
            .iter()
            .filter_map(|shard| shard.lock().ok())
            .fold((0, 0), |(entries, bytes), shard| {
                (entries + shard.entries.len(), bytes + shard.bytes)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(meeting: &str, after: Option<&str>) -> PageKey {
        PageKey {
            account_id: "111122223333".into(),
            namespace: Namespace::Meetings,
            meeting_id: meeting.into(),
            after: after.map(str::to_string),
            limit: 100,
        }
    }

    fn page(version: i64, body: &str) -> CachedPage {
        CachedPage {
            version,
            body: Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    #[test]
    fn every_part_of_the_request_shape_is_its_own_entry() {
        let cache = PageCache::new(PageCacheLimits::PAGES, "test");
        let base = key("m1", None);
        cache.insert(base.clone(), page(1, "base"));
        let others = [
            PageKey {
                account_id: "444455556666".into(),
                ..base.clone()
            },
            PageKey {
                namespace: Namespace::Legacy,
                ..base.clone()
            },
            key("m2", None),
            key("m1", Some("a1")),
            PageKey {
                limit: 99,
                ..base.clone()
            },
        ];
        for other in &others {
            assert_eq!(cache.get(other), None, "{other:?}");
        }
        assert_eq!(cache.get(&base), Some(page(1, "base")));
        cache.remove(&base);
        assert_eq!(cache.get(&base), None);
    }

    #[test]
    fn an_older_fill_does_not_replace_a_newer_one() {
        let cache = PageCache::new(PageCacheLimits::PAGES, "test");
        cache.insert(key("m1", None), page(5, "new"));
        cache.insert(key("m1", None), page(4, "old"));
        assert_eq!(cache.get(&key("m1", None)), Some(page(5, "new")));
        cache.insert(key("m1", None), page(6, "newer"));
        assert_eq!(cache.get(&key("m1", None)), Some(page(6, "newer")));
        assert_eq!(cache.usage().0, 1);
    }

    #[test]
    fn the_byte_budget_holds_and_the_least_recently_used_go_first() {
        let body = "x".repeat(1_000);
        let keys: Vec<PageKey> = (0..2_000).map(|i| key(&format!("m{i:05}"), None)).collect();
        // Room for exactly ten entries a shard.
        let limits = PageCacheLimits {
            bytes: SHARDS * 10 * (body.len() + keys[0].overhead()),
            entries: 1_000_000,
        };
        let cache = PageCache::new(limits, "test");
        cache.insert(keys[0].clone(), page(1, &body));
        for (i, k) in keys.iter().enumerate().skip(1) {
            cache.insert(k.clone(), page(1, &body));
            // The first key stays the most recently used of its shard, so it is never evicted.
            assert!(cache.get(&keys[0]).is_some(), "evicted after {i} inserts");
        }
        // 2,000 keys fill every shard (each gets some 125 of them).
        assert_eq!(cache.usage(), (SHARDS * 10, limits.bytes));
    }

    #[test]
    fn the_entry_cap_holds() {
        let limits = PageCacheLimits {
            bytes: 64 << 20,
            entries: 64,
        };
        let cache = PageCache::new(limits, "test");
        for i in 0..1_000 {
            cache.insert(key(&format!("m{i}"), None), page(1, "{}"));
        }
        assert!(cache.usage().0 <= 64, "{:?}", cache.usage());
    }

    #[test]
    fn a_body_larger_than_a_shard_is_not_kept_and_zero_turns_it_off() {
        let cache = PageCache::new(
            PageCacheLimits {
                bytes: SHARDS * 1_000,
                entries: 100,
            },
            "test",
        );
        cache.insert(key("m1", None), page(1, &"x".repeat(2_000)));
        assert_eq!(cache.get(&key("m1", None)), None);
        let off: PageCache = PageCache::new(
            PageCacheLimits {
                bytes: 0,
                entries: 100,
            },
            "test",
        );
        off.insert(key("m1", None), page(1, "{}"));
        assert_eq!(off.get(&key("m1", None)), None);
    }
}
