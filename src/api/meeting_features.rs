//! The MeetingFeatures of recently used meetings, so that CreateAttendee, BatchCreateAttendee
//! and UpdateAttendeeCapabilities check requested capabilities without a store read each.
//!
//! Under a stream of creates that read was a tenth of the server's CPU: every commit moves the
//! database on, so each read connection drops its page cache and reads the meeting's pages
//! again (`pread`), for a record whose features cannot have changed.
//!
//! Why an entry is always right: a meeting's features are fixed by CreateMeeting, and a
//! MeetingId is never given to another meeting. An entry can outlive its meeting; nothing here
//! says whether a meeting exists, though: the write that follows finds the meeting (and checks
//! its account) in the store, where a meeting that is gone is NotFound.
//!
//! Memory is bounded: a shard that outgrows its share is emptied, which costs only misses.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard};

use crate::domain::capabilities::MeetingFeatures;

const SHARDS: usize = 16;

/// Meetings remembered at most (over all shards), a few hundred bytes each.
const CAPACITY: usize = 65_536;

struct Entry {
    account_id: String,
    features: MeetingFeatures,
}

pub struct MeetingFeaturesCache {
    shards: Box<[Mutex<HashMap<String, Entry>>]>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for MeetingFeaturesCache {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: Default::default(),
        }
    }
}

impl MeetingFeaturesCache {
    /// The meeting's shard, locked. A poisoned shard (nothing here panics under the lock) only
    /// makes every lookup miss.
    fn shard(&self, meeting_id: &str) -> Option<MutexGuard<'_, HashMap<String, Entry>>> {
        let index = self.hasher.hash_one(meeting_id) as usize % SHARDS;
        self.shards.get(index)?.lock().ok()
    }

    /// The features of the account's meeting, if remembered. A meeting remembered under another
    /// account is a miss, so that the caller's store read answers it (NotFound).
    pub fn get(&self, account_id: &str, meeting_id: &str) -> Option<MeetingFeatures> {
        self.shard(meeting_id)?
            .get(meeting_id)
            .filter(|entry| entry.account_id == account_id)
            .map(|entry| entry.features.clone())
    }

    pub fn insert(&self, account_id: &str, meeting_id: &str, features: MeetingFeatures) {
        let Some(mut shard) = self.shard(meeting_id) else {
            return;
        };
        if shard.len() >= CAPACITY / SHARDS {
            shard.clear();
        }
        shard.insert(
            meeting_id.to_string(),
            Entry {
                account_id: account_id.to_string(),
                features,
            },
        );
    }

    /// Forgets a deleted meeting (only to free its entry early: see the module's note).
    pub fn remove(&self, meeting_id: &str) {
        if let Some(mut shard) = self.shard(meeting_id) {
            shard.remove(meeting_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::capabilities::ResolutionFeatures;

    fn no_video() -> MeetingFeatures {
        MeetingFeatures {
            video: Some(ResolutionFeatures {
                max_resolution: Some("None".into()),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn remembers_features_per_account() {
        let cache = MeetingFeaturesCache::default();
        assert_eq!(cache.get("111122223333", "m-1"), None);
        cache.insert("111122223333", "m-1", no_video());
        assert_eq!(cache.get("111122223333", "m-1"), Some(no_video()));
        // Another account's call misses, so its store read says NotFound.
        assert_eq!(cache.get("444455556666", "m-1"), None);
        cache.remove("m-1");
        assert_eq!(cache.get("111122223333", "m-1"), None);
    }

    #[test]
    fn stays_within_its_capacity() {
        let cache = MeetingFeaturesCache::default();
        for i in 0..(CAPACITY * 2) {
            cache.insert(
                "111122223333",
                &format!("m-{i}"),
                MeetingFeatures::default(),
            );
        }
        let held: usize = cache
            .shards
            .iter()
            .map(|s| s.lock().map(|m| m.len()).unwrap_or(0))
            .sum();
        assert!(held <= CAPACITY, "{held} entries");
        assert!(held > 0);
    }
}
