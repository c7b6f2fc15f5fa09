//! The embedded store's count of each meeting's attendees, kept in memory for the cap check of
//! CreateAttendee. Counting them in SQLite (`COUNT(*)` over the meeting's index entries, once per
//! create) was a tenth of the writer thread's time per create, and the writer is the store's one
//! serial resource.
//!
//! Why a count here is always the one SQLite would give:
//! - **Only writers use it, one group at a time.** A writer holds [`AttendeeCounts::serial`]
//!   from before its group's BEGIN until the group's counts are applied after COMMIT, so two
//!   stores of this process on one file (each with its own writer) never interleave groups, and
//!   every group starts from counts that include every earlier commit.
//! - **A group's own changes stay apart until they commit** ([`GROUP`], on the writer thread):
//!   a create records the meeting's new count; every other change to a meeting's attendees goes
//!   through the writer's `touch`, which marks the meeting unknown (counted again in SQLite, and
//!   forgotten at commit). A write rolled back to its savepoint marks every meeting of the group
//!   unknown, since its own changes are not told apart. A failed commit forgets them all.
//! - Anything not remembered is counted in SQLite, inside the writer's transaction.
//!
//! Memory is bounded: the map is emptied when it outgrows [`CAPACITY`], which costs only counts.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Meetings whose count is remembered at most, about 100 bytes each.
const CAPACITY: usize = 262_144;

/// Shared by every store of this process on one database file.
#[derive(Default)]
pub struct AttendeeCounts {
    serial: Mutex<()>,
    committed: Mutex<HashMap<String, u32>>,
}

thread_local! {
    /// The counts the writer thread running this code uses (None elsewhere: count in SQLite).
    static WRITER: RefCell<Option<Arc<AttendeeCounts>>> = const { RefCell::new(None) };
    /// This group's changes: Some(count) after a create, None when unknown.
    static GROUP: RefCell<HashMap<String, Option<u32>>> = RefCell::new(HashMap::new());
}

impl AttendeeCounts {
    /// Makes the calling thread (a store's writer) use these counts.
    pub fn install(self: &Arc<Self>) {
        WRITER.with_borrow_mut(|writer| *writer = Some(self.clone()));
    }

    /// The counts installed on this thread, if it is a writer.
    pub fn of_this_writer() -> Option<Arc<Self>> {
        WRITER.with_borrow(Clone::clone)
    }

    /// Starts a group: waits until any other writer's group on the same file has finished.
    /// Hold the guard until [`AttendeeCounts::finish_group`] has run.
    pub fn begin_group(&self) -> MutexGuard<'_, ()> {
        // A poisoned lock (nothing panics under it) still serializes.
        self.serial
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies the group's changes once its COMMIT has returned (`committed`: whether it
    /// succeeded).
    pub fn finish_group(&self, committed: bool) {
        let changes = GROUP.with_borrow_mut(std::mem::take);
        let Ok(mut known) = self.committed.lock() else {
            return;
        };
        for (meeting_id, count) in changes {
            match count {
                Some(count) if committed => {
                    if known.len() >= CAPACITY {
                        known.clear();
                    }
                    known.insert(meeting_id, count);
                }
                _ => {
                    known.remove(&meeting_id);
                }
            }
        }
    }
}

/// Forgets what the last group on this thread recorded (a writer without counts installed
/// still records, and must not keep it).
pub fn start_group() {
    GROUP.with_borrow_mut(HashMap::clear);
}

/// The meeting's number of attendees in the writer's transaction, if known without SQLite.
pub fn known(meeting_id: &str) -> Option<u32> {
    if let Some(in_group) = GROUP.with_borrow(|group| group.get(meeting_id).copied()) {
        return in_group;
    }
    let counts = AttendeeCounts::of_this_writer()?;
    let known = counts.committed.lock().ok()?;
    known.get(meeting_id).copied()
}

/// Records the meeting's number of attendees after a create in the writer's transaction.
pub fn set(meeting_id: &str, count: u32) {
    GROUP.with_borrow_mut(|group| group.insert(meeting_id.to_string(), Some(count)));
}

/// The meeting's attendees changed in a way not counted here: count them in SQLite again.
pub fn unknown(meeting_id: &str) {
    GROUP.with_borrow_mut(|group| group.insert(meeting_id.to_string(), None));
}

/// A write of the group was rolled back to its savepoint: whatever it counted is void.
pub fn rolled_back() {
    GROUP.with_borrow_mut(|group| group.values_mut().for_each(|count| *count = None));
}
