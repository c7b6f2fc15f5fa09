//! The embedded store's attendee versions: each meeting's version (and owning account) lives
//! only in memory. Checking a cached ListAttendees page (or GetAttendee answer) then costs no
//! SQLite read transaction (those cost more than the rest of the request under load:
//! shared-memory WAL locks, `fcntl`, a mutex both worker threads contend for), and a write to a
//! meeting's attendees dirties no page of the meeting's row (on disk, that page was a tenth of
//! what CreateAttendee wrote).
//!
//! A version is a generation: a number this process hands out once, to a meeting it does not
//! remember. A cached entry is labelled with the version its reader took *before* reading the
//! rows, so the rows are never older than their label. It is only valid because one process owns
//! the database (the lock beside it, see `SqliteStore::open`), and every store of that process on
//! the file shares one `AttendeeVersions`, which each store's writer thread keeps true:
//! - the writer forgets a meeting once a group that changed its attendees (or removed it) has
//!   committed, before any caller of that group is answered, so the next reader gets a new
//!   generation, which no entry read before the write carries;
//! - a reader remembers the generation it was given only if nothing was forgotten in the
//!   meeting's shard since before it looked (the shard's epoch), so a reader that raced a commit
//!   can never put back a generation older than the write.
//!
//! Memory is bounded: a shard that outgrows its share is emptied (and its epoch moved), which
//! costs only new generations, so cache misses. A restart starts from nothing, as the caches do.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// A meeting as the version check sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownVersion {
    pub account_id: String,
    pub version: i64,
}

#[derive(Default)]
struct Shard {
    /// Moves on every forget, so a reader can tell whether its read raced one.
    epoch: u64,
    meetings: HashMap<String, KnownVersion>,
}

const SHARDS: usize = 16;

/// Meetings remembered at most (over all shards), about 150 bytes each.
const CAPACITY: usize = 262_144;

pub struct AttendeeVersions {
    shards: Box<[Mutex<Shard>]>,
    hasher: std::collections::hash_map::RandomState,
    /// The last generation handed out.
    generation: AtomicI64,
}

/// What [`AttendeeVersions::lookup`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Known(KnownVersion),
    /// Not remembered: check the meeting's account in SQLite, then [`AttendeeVersions::remember`]
    /// it with this ticket.
    Unknown(Ticket),
}

/// A reader's ticket, taken before it reads the meeting from SQLite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    shard: usize,
    epoch: u64,
}

impl Default for AttendeeVersions {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: Default::default(),
            generation: AtomicI64::new(0),
        }
    }
}

impl AttendeeVersions {
    fn shard_index(&self, meeting_id: &str) -> usize {
        self.hasher.hash_one(meeting_id) as usize % SHARDS
    }

    fn shard(&self, index: usize) -> Option<MutexGuard<'_, Shard>> {
        // A poisoned shard (nothing here panics under the lock) only makes every lookup miss.
        self.shards.get(index)?.lock().ok()
    }

    /// The remembered version of the meeting, or a ticket to remember the one about to be read.
    pub fn lookup(&self, meeting_id: &str) -> Lookup {
        let index = self.shard_index(meeting_id);
        let Some(shard) = self.shard(index) else {
            // Epoch u64::MAX never matches a live shard's, so nothing is remembered.
            return Lookup::Unknown(Ticket {
                shard: index,
                epoch: u64::MAX,
            });
        };
        match shard.meetings.get(meeting_id) {
            Some(known) => Lookup::Known(known.clone()),
            None => Lookup::Unknown(Ticket {
                shard: index,
                epoch: shard.epoch,
            }),
        }
    }

    /// Gives the meeting of `account_id` (as read from SQLite after taking `ticket`) a new
    /// generation, and remembers it unless a commit touched the shard since. Either way the
    /// generation is new, so no entry cached before matches it.
    pub fn remember(&self, ticket: Ticket, meeting_id: &str, account_id: &str) -> KnownVersion {
        let known = KnownVersion {
            account_id: account_id.to_string(),
            version: self.generation.fetch_add(1, Ordering::Relaxed) + 1,
        };
        let Some(mut shard) = self.shard(ticket.shard) else {
            return known;
        };
        if shard.epoch != ticket.epoch {
            return known;
        }
        if shard.meetings.len() >= CAPACITY / SHARDS {
            shard.meetings.clear();
            shard.epoch += 1;
            return known;
        }
        shard.meetings.insert(meeting_id.to_string(), known.clone());
        known
    }

    /// Forgets meetings whose attendees changed (or which were removed) in a commit. Called by
    /// the writer after the commit and before answering its callers.
    pub fn forget<'a>(&self, meeting_ids: impl IntoIterator<Item = &'a str>) {
        for meeting_id in meeting_ids {
            if let Some(mut shard) = self.shard(self.shard_index(meeting_id)) {
                shard.meetings.remove(meeting_id);
                shard.epoch += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: &str = "111122223333";

    fn ticket(versions: &AttendeeVersions, meeting_id: &str) -> Ticket {
        match versions.lookup(meeting_id) {
            Lookup::Unknown(ticket) => ticket,
            Lookup::Known(known) => panic!("{meeting_id} is remembered at {known:?}"),
        }
    }

    #[test]
    fn a_generation_is_remembered_until_a_commit_forgets_it() {
        let versions = AttendeeVersions::default();
        let first = versions.remember(ticket(&versions, "m1"), "m1", ACCOUNT);
        assert_eq!(versions.lookup("m1"), Lookup::Known(first.clone()));
        versions.forget(["m1"]);
        let second = versions.remember(ticket(&versions, "m1"), "m1", ACCOUNT);
        assert_ne!(
            first.version, second.version,
            "a write gives a new generation"
        );
        assert_eq!(versions.lookup("m1"), Lookup::Known(second));
    }

    #[test]
    fn a_reader_that_raced_a_commit_is_not_remembered() {
        let versions = AttendeeVersions::default();
        let raced = ticket(&versions, "m1");
        // The reader checked the meeting in SQLite; a commit changed its attendees before the
        // reader got back.
        versions.forget(["m1"]);
        let stale = versions.remember(raced, "m1", ACCOUNT);
        let fresh = versions.remember(ticket(&versions, "m1"), "m1", ACCOUNT);
        assert_ne!(stale.version, fresh.version);
        assert_eq!(versions.lookup("m1"), Lookup::Known(fresh));
    }

    #[test]
    fn memory_stays_bounded() {
        let versions = AttendeeVersions::default();
        for i in 0..(CAPACITY + 1_000) {
            let meeting = format!("m{i}");
            if let Lookup::Unknown(ticket) = versions.lookup(&meeting) {
                versions.remember(ticket, &meeting, ACCOUNT);
            }
        }
        let held: usize = versions
            .shards
            .iter()
            .map(|shard| shard.lock().map_or(0, |s| s.meetings.len()))
            .sum();
        assert!(held <= CAPACITY, "{held} remembered");
    }
}
