//! The embedded store's memory of each meeting's attendee version (and owning account), so
//! that checking a cached ListAttendees page (or GetAttendee answer) costs no SQLite read
//! transaction: those cost more than the rest of the request under load (shared-memory WAL
//! locks, `fcntl`, a mutex both worker threads contend for).
//!
//! It is only valid because one process owns the database (the lock beside it, see
//! `SqliteStore::open`) and every store of that process on the file shares one
//! `AttendeeVersions`, which each store's writer thread keeps true:
//! - the writer forgets a meeting once a group that moved its version (or removed it) has
//!   committed, before any caller of that group is answered, so a write is seen by the very
//!   next read;
//! - a reader remembers the version it read from SQLite only if nothing was forgotten in the
//!   meeting's shard since before its read began (the shard's epoch), so a read that raced a
//!   commit can never put back an old version.
//!
//! Memory is bounded: a shard that outgrows its share is emptied (and its epoch moved), which
//! costs only a few reads from SQLite.

use std::collections::HashMap;
use std::hash::BuildHasher;
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
}

/// What [`AttendeeVersions::lookup`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Known(KnownVersion),
    /// Not remembered: read the version from SQLite, then hand it back with this ticket.
    Unknown(Ticket),
}

/// A reader's ticket, taken before it reads the version from SQLite.
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

    /// Remembers what a reader read after taking `ticket`, unless a commit touched the shard
    /// since.
    pub fn remember(&self, ticket: Ticket, meeting_id: &str, known: KnownVersion) {
        let Some(mut shard) = self.shard(ticket.shard) else {
            return;
        };
        if shard.epoch != ticket.epoch {
            return;
        }
        if shard.meetings.len() >= CAPACITY / SHARDS {
            shard.meetings.clear();
            shard.epoch += 1;
            return;
        }
        shard.meetings.insert(meeting_id.to_string(), known);
    }

    /// Forgets meetings whose version moved (or which were removed) in a commit. Called by the
    /// writer after the commit and before answering its callers.
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

    fn known(version: i64) -> KnownVersion {
        KnownVersion {
            account_id: "111122223333".into(),
            version,
        }
    }

    fn ticket(versions: &AttendeeVersions, meeting_id: &str) -> Ticket {
        match versions.lookup(meeting_id) {
            Lookup::Unknown(ticket) => ticket,
            Lookup::Known(known) => panic!("{meeting_id} is remembered at {known:?}"),
        }
    }

    #[test]
    fn a_read_is_remembered_until_a_commit_forgets_it() {
        let versions = AttendeeVersions::default();
        versions.remember(ticket(&versions, "m1"), "m1", known(3));
        assert_eq!(versions.lookup("m1"), Lookup::Known(known(3)));
        versions.forget(["m1"]);
        ticket(&versions, "m1");
    }

    #[test]
    fn a_read_that_raced_a_commit_is_not_remembered() {
        let versions = AttendeeVersions::default();
        let raced = ticket(&versions, "m1");
        // The reader's SQLite read saw version 3; a commit moved it to 4 before the reader
        // got back.
        versions.forget(["m1"]);
        versions.remember(raced, "m1", known(3));
        let fresh = ticket(&versions, "m1");
        versions.remember(fresh, "m1", known(4));
        assert_eq!(versions.lookup("m1"), Lookup::Known(known(4)));
    }

    #[test]
    fn memory_stays_bounded() {
        let versions = AttendeeVersions::default();
        for i in 0..(CAPACITY + 1_000) {
            let meeting = format!("m{i}");
            if let Lookup::Unknown(ticket) = versions.lookup(&meeting) {
                versions.remember(ticket, &meeting, known(1));
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
