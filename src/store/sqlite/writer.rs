//! The writer thread: every write of a store runs there, in group commits. The writes queued
//! while the previous group was committing share one transaction and one fsync, each in a
//! savepoint of its own, so one that fails (or whose request timed out) is rolled back alone;
//! none is answered before the group is on disk.

use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use super::attendee_counts::{self, AttendeeCounts};
use super::versions::AttendeeVersions;
use crate::store::StoreResult;
use crate::store::shared::backend;

/// A write job, run by the writer thread inside its own savepoint of a group transaction.
pub type Job = Box<dyn FnOnce(&mut Connection) -> Ran + Send>;

/// What a job left behind: whether its changes are kept, and how to tell its caller once the
/// group's fate is known (the commit's result for a kept write).
pub struct Ran {
    pub keep: bool,
    pub deliver: Box<dyn FnOnce(StoreResult<()>) + Send>,
}

thread_local! {
    /// The meetings whose attendee version the writer thread's current group moved (or which it
    /// removed), forgotten by [`AttendeeVersions`] once the group commits.
    static TOUCHED: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Records, on the writer thread, that this transaction changes what the meeting's attendee
/// version stands for.
pub fn touch(meeting_id: &str) {
    TOUCHED.with_borrow_mut(|touched| touched.push(meeting_id.to_string()));
    attendee_counts::unknown(meeting_id);
}

/// Most writes one group transaction carries.
const MAX_GROUP: usize = 512;

/// The writer thread: takes every write queued since its last commit, runs each in a savepoint
/// of one IMMEDIATE transaction, and commits them together (one fsync for the group). A write
/// that fails, panics or finds its commit gate closed is rolled back to its savepoint alone.
pub fn writer(
    conn: Arc<Mutex<Connection>>,
    jobs: std::sync::mpsc::Receiver<Job>,
    versions: &AttendeeVersions,
) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let Ok(mut conn) = conn.lock() else {
            // Unreachable (jobs never panic under the lock); dropping the jobs fails them.
            tracing::error!("store writer: connection mutex poisoned");
            return;
        };
        run_group(&mut conn, group, versions);
    }
}

/// Runs a statement without parameters or rows through the connection's statement cache: the
/// writer opens and ends a savepoint per write, and parsing them each time showed in its profile.
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// The group's transaction. Jobs get the connection itself, `&mut`, as the backend-neutral logic
/// needs (it must be `Send`, which a shared `&Connection`, all that rusqlite's `Transaction`
/// lends, is not); like that `Transaction`, this one rolls back if it is dropped still open.
struct GroupTransaction<'c>(&'c mut Connection);

impl<'c> GroupTransaction<'c> {
    fn begin(conn: &'c mut Connection) -> rusqlite::Result<Self> {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(Self(conn))
    }

    fn commit(self) -> rusqlite::Result<()> {
        self.0.execute_batch("COMMIT")
    }
}

impl Drop for GroupTransaction<'_> {
    fn drop(&mut self) {
        if !self.0.is_autocommit() {
            let _ = self.0.execute_batch("ROLLBACK");
        }
    }
}

fn run_group(conn: &mut Connection, group: Vec<Job>, versions: &AttendeeVersions) {
    TOUCHED.with_borrow_mut(Vec::clear);
    attendee_counts::start_group();
    let counts = AttendeeCounts::of_this_writer();
    let _one_group_at_a_time = counts.as_deref().map(AttendeeCounts::begin_group);
    let tx = match GroupTransaction::begin(conn) {
        Ok(tx) => tx,
        Err(e) => {
            // Dropping the jobs answers their callers with an error; nothing ran.
            tracing::error!(error = %e, "store writer: cannot begin a transaction");
            return;
        }
    };
    let ran = run_jobs(tx.0, group);
    let committed = tx.commit();
    if let Err(e) = &committed {
        tracing::error!(error = %e, "store writer: a group commit failed");
    }
    if let Some(counts) = &counts {
        counts.finish_group(committed.is_ok());
    }
    // Before any caller hears of the commit, so that its next read sees its write.
    TOUCHED.with_borrow_mut(|touched| {
        versions.forget(touched.iter().map(String::as_str));
        touched.clear();
    });
    for Ran { keep, deliver } in ran {
        deliver(match (&committed, keep) {
            (Err(e), true) => Err(backend(e)),
            _ => Ok(()),
        });
    }
}

/// Runs the group's jobs, each in its savepoint, and returns what each left behind. Jobs left
/// after a broken transaction are dropped: their callers get an error.
fn run_jobs(conn: &mut Connection, group: Vec<Job>) -> Vec<Ran> {
    let mut ran = Vec::with_capacity(group.len());
    for job in group {
        if run_cached(conn, "SAVEPOINT write").is_err() {
            break;
        }
        let touched_before = TOUCHED.with_borrow(Vec::len);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(conn)));
        if !matches!(outcome, Ok(Ran { keep: true, .. })) {
            // Rolled back: what it touched is unchanged (forgetting it too would be harmless).
            TOUCHED.with_borrow_mut(|touched| touched.truncate(touched_before));
            attendee_counts::rolled_back();
        }
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back (e.g. on a full disk): nothing of the
            // group is kept, and the kept writes hear it from the failed commit below.
            if let Ok(outcome) = outcome {
                ran.push(outcome);
            }
            break;
        }
        let end = match &outcome {
            Ok(Ran { keep: true, .. }) => run_cached(conn, "RELEASE write"),
            _ => run_cached(conn, "ROLLBACK TO write")
                .and_then(|()| run_cached(conn, "RELEASE write")),
        };
        if let Err(e) = end {
            tracing::error!(error = %e, "store writer: cannot end a savepoint");
            if let Ok(outcome) = outcome {
                ran.push(outcome);
            }
            break;
        }
        match outcome {
            Ok(outcome) => ran.push(outcome),
            Err(_) => tracing::error!("store writer: a write panicked; rolled back alone"),
        }
    }
    ran
}
