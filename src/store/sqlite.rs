//! The embedded default store: one SQLite database in the data directory.
//!
//! WAL journal with `synchronous=FULL`, so a committed transaction is on disk before the call
//! returns and survives `kill -9` or a power cut. One writer thread owns the write connection and
//! serialises the writes, which is what makes the attendee cap and the idempotency checks
//! race-free. It commits in groups: the writes queued while the previous group was committing
//! share one transaction and one fsync, each in a savepoint of its own, so one that fails (or
//! whose request timed out) is rolled back alone; none is answered before the group is on disk.
//! Reads go to a small pool of read-only connections, which WAL lets run beside the writer and
//! each other; a short read runs on the calling thread when a reader is free, else on tokio's
//! blocking pool.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::attendee_counts::{self, AttendeeCounts};
use super::shared::{
    DUE_MEETINGS_PER_CALL, backend, connection_state, due_bounds, event_row, presence_columns,
    presence_events, to_json, within_budget,
};
use super::versions::{AttendeeVersions, Lookup};
use super::{
    AttendeeOutcome, AttendeePage, AttendeePresence, AttendeeRecord, CreatedMeeting, DeadLetter,
    EndRules, MeetingRecord, NewAttendee, NodeBeat, OutboxEvent, PresenceChange, Store, StoreError,
    StoreResult, Tag, TagTarget, VersionedAttendee,
};
use crate::domain::capabilities::{Capabilities, MediaCapability};
use crate::domain::meeting_events::EventType;

/// Schema migrations, applied in order; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE meetings (
    meeting_id           TEXT PRIMARY KEY,
    account_id           TEXT NOT NULL,
    client_request_token TEXT NOT NULL,
    control_region       TEXT NOT NULL,
    media_region         TEXT NOT NULL,
    external_meeting_id  TEXT,
    meeting_host_id      TEXT,
    primary_meeting_id   TEXT,
    tenant_ids           TEXT NOT NULL,
    features             TEXT,
    notifications        TEXT,
    network_type         TEXT,
    media_base_url       TEXT NOT NULL,
    max_attendees        INTEGER NOT NULL,
    created_at           INTEGER NOT NULL,
    UNIQUE (account_id, client_request_token)
);
CREATE INDEX meetings_by_account ON meetings (account_id, meeting_id);
CREATE TABLE attendees (
    meeting_id       TEXT NOT NULL REFERENCES meetings (meeting_id) ON DELETE CASCADE,
    attendee_id      TEXT NOT NULL,
    external_user_id TEXT NOT NULL,
    join_token       TEXT NOT NULL UNIQUE,
    audio            TEXT NOT NULL,
    video            TEXT NOT NULL,
    content          TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    PRIMARY KEY (meeting_id, attendee_id),
    UNIQUE (meeting_id, external_user_id)
);
CREATE TABLE tags (
    meeting_id  TEXT NOT NULL REFERENCES meetings (meeting_id) ON DELETE CASCADE,
    attendee_id TEXT NOT NULL DEFAULT '',
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (meeting_id, attendee_id, key)
);
"#,
    r#"
ALTER TABLE attendees ADD COLUMN joined INTEGER;
ALTER TABLE attendees ADD COLUMN joined_at INTEGER;
ALTER TABLE attendees ADD COLUMN left_at INTEGER;
"#,
    // The meeting lifecycle: whether anyone is connected, and since when nobody has been (NULL:
    // since creation). The due-meeting sweep reads both through its own index.
    r#"
ALTER TABLE attendees ADD COLUMN dropped INTEGER NOT NULL DEFAULT 0;
ALTER TABLE meetings ADD COLUMN connected INTEGER NOT NULL DEFAULT 0;
ALTER TABLE meetings ADD COLUMN idle_since INTEGER;
CREATE INDEX meetings_by_primary ON meetings (primary_meeting_id);
CREATE INDEX meetings_by_age ON meetings (created_at);
"#,
    // The transactional outbox of meeting events, each sink's delivery cursor, dead letters.
    r#"
CREATE TABLE events (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    meeting_id     TEXT NOT NULL,
    targets        TEXT NOT NULL,
    body           TEXT NOT NULL,
    recorded_at_ms INTEGER NOT NULL
);
CREATE TABLE event_sinks (
    sink          TEXT PRIMARY KEY,
    delivered_seq INTEGER NOT NULL
);
CREATE TABLE dead_letters (
    sink  TEXT NOT NULL,
    seq   INTEGER NOT NULL,
    error TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    body  TEXT NOT NULL,
    PRIMARY KEY (sink, seq)
);
"#,
    // Which node delivers each sink, until when.
    r#"
ALTER TABLE event_sinks ADD COLUMN owner TEXT;
ALTER TABLE event_sinks ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
"#,
    // The node registry: each node's latest heartbeat (placement and the join plane's check
    // that a meeting's node is alive).
    r#"
CREATE TABLE nodes (
    url        TEXT PRIMARY KEY,
    beat_at_ms INTEGER NOT NULL,
    sessions   INTEGER NOT NULL,
    stopped    INTEGER NOT NULL
);
"#,
    // A per-meeting version of what ListAttendees returns, moved in the transaction of every
    // change to it, so that a cached page can be checked with one primary-key read. (No longer
    // read or written: the versions now live in memory, see `versions.rs`.)
    r#"
ALTER TABLE meetings ADD COLUMN attendees_version INTEGER NOT NULL DEFAULT 0;
"#,
    // The join plane finds an attendee by the AttendeeId its JoinToken names (and then compares
    // the whole token), through an index of attendees by id: AttendeeIds now sort in creation
    // order, so the index grows at its end, where the unique index of random JoinTokens cost a
    // random page per attendee created (a quarter of what CreateAttendee wrote). SQLite drops a
    // UNIQUE constraint only by rebuilding the table.
    r#"
CREATE TABLE attendees_rebuilt (
    meeting_id       TEXT NOT NULL REFERENCES meetings (meeting_id) ON DELETE CASCADE,
    attendee_id      TEXT NOT NULL,
    external_user_id TEXT NOT NULL,
    join_token       TEXT NOT NULL,
    audio            TEXT NOT NULL,
    video            TEXT NOT NULL,
    content          TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    joined           INTEGER,
    joined_at        INTEGER,
    left_at          INTEGER,
    dropped          INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (meeting_id, attendee_id),
    UNIQUE (meeting_id, external_user_id)
);
INSERT INTO attendees_rebuilt
    SELECT meeting_id, attendee_id, external_user_id, join_token, audio, video, content,
           created_at, joined, joined_at, left_at, dropped
    FROM attendees;
DROP TABLE attendees;
ALTER TABLE attendees_rebuilt RENAME TO attendees;
CREATE INDEX attendees_by_id ON attendees (attendee_id);
"#,
    // The lifecycle sweep finds idle meetings through this index instead of scanning every
    // meeting each second (`end_due_meetings`). Only meetings nobody is connected to can idle out.
    r#"
CREATE INDEX meetings_idle_due ON meetings (COALESCE(idle_since, created_at)) WHERE connected = 0;
"#,
];

#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    /// The writer thread's queue (it stops when the last clone of the store is dropped).
    jobs: std::sync::mpsc::Sender<Job>,
    readers: Arc<[Mutex<Connection>]>,
    next_reader: Arc<std::sync::atomic::AtomicUsize>,
    /// Each meeting's attendee version as of the last commit, so that checking a cached answer
    /// reads memory, not SQLite. Shared by every store of this process on the same file.
    versions: Arc<AttendeeVersions>,
    /// Keeps the database's lock (and its entry in [`OPEN_DATABASES`]) while the store is open.
    _database: Option<Arc<OpenDatabase>>,
}

/// What every store of this process on one database file shares: the lock that keeps other
/// processes out, and the attendee versions all their writers keep true.
struct OpenDatabase {
    versions: Arc<AttendeeVersions>,
    counts: Arc<AttendeeCounts>,
    _lock: std::fs::File,
}

/// The database files this process has open, by canonical path. Stores opened on one file
/// (a restart in place, two nodes in one test process) share one [`OpenDatabase`].
static OPEN_DATABASES: Mutex<Vec<(std::path::PathBuf, std::sync::Weak<OpenDatabase>)>> =
    Mutex::new(Vec::new());

/// The file's shared state in this process, locking the file when this process has not yet.
fn open_database(path: &Path) -> StoreResult<Arc<OpenDatabase>> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let canonical = std::fs::canonicalize(directory)
        .map_err(|e| backend(format!("cannot open {}: {e}", directory.display())))?
        .join(path.file_name().unwrap_or_default());
    let mut open = OPEN_DATABASES
        .lock()
        .map_err(|_| backend("the open-database registry is poisoned"))?;
    open.retain(|(_, database)| database.strong_count() > 0);
    if let Some(database) = open
        .iter()
        .find(|(held, _)| *held == canonical)
        .and_then(|(_, database)| database.upgrade())
    {
        return Ok(database);
    }
    let database = Arc::new(OpenDatabase {
        versions: Arc::default(),
        counts: Arc::default(),
        _lock: lock_database(path)?,
    });
    open.push((canonical, Arc::downgrade(&database)));
    Ok(database)
}

/// Prepared statements kept per connection. The store runs some thirty distinct statements
/// through `prepare_cached`; rusqlite keeps 16 by default, so a mixed load (creates, deletes,
/// the lifecycle's sweep, heartbeats) evicted and parsed again the statements of the hot paths.
const STATEMENT_CACHE: usize = 64;

/// Read connections per file-backed store.
const READERS: usize = 4;

impl SqliteStore {
    pub fn open(path: &Path) -> StoreResult<Self> {
        let database = open_database(path)?;
        let mut store = Self::init(
            Connection::open(path).map_err(backend)?,
            database.versions.clone(),
            database.counts.clone(),
        )?;
        store._database = Some(database);
        let readers = (0..READERS)
            .map(|_| {
                let reader = Connection::open(path).map_err(backend)?;
                reader
                    .pragma_update(None, "query_only", "ON")
                    .map_err(backend)?;
                reader.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
                reader
                    .busy_timeout(std::time::Duration::from_secs(5))
                    .map_err(backend)?;
                Ok(Mutex::new(reader))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        store.readers = readers.into();
        Ok(store)
    }

    /// An in-memory database, for unit tests of the layers above. It has no separate readers:
    /// another connection would open another, empty, database.
    pub fn open_in_memory() -> StoreResult<Self> {
        Self::init(
            Connection::open_in_memory().map_err(backend)?,
            Arc::default(),
            Arc::default(),
        )
    }

    fn init(
        mut conn: Connection,
        versions: Arc<AttendeeVersions>,
        counts: Arc<AttendeeCounts>,
    ) -> StoreResult<Self> {
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(backend)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(backend)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(backend)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        migrate(&mut conn)?;
        let conn = Arc::new(Mutex::new(conn));
        let (jobs, queue) = std::sync::mpsc::channel();
        let writer_conn = conn.clone();
        let writer_versions = versions.clone();
        std::thread::Builder::new()
            .name("carillon-store-writer".into())
            .spawn(move || {
                counts.install();
                writer(writer_conn, queue, &writer_versions)
            })
            .map_err(backend)?;
        Ok(Self {
            conn,
            jobs,
            readers: Arc::new([]),
            next_reader: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            versions,
            _database: None,
        })
    }

    /// The account's meeting's attendee version: a generation kept in memory (see
    /// [`AttendeeVersions`]), after checking the meeting's account in SQLite when it is not
    /// remembered. A meeting of another account is not found, as in SQLite. Callers pairing it
    /// with rows must read the rows after this returns, so the rows are never older than it.
    async fn known_attendees_version(
        &self,
        account_id: &str,
        meeting_id: &str,
    ) -> StoreResult<i64> {
        let ticket = match self.versions.lookup(meeting_id) {
            Lookup::Known(known) if known.account_id == account_id => return Ok(known.version),
            Lookup::Known(_) => return Err(StoreError::MeetingNotFound),
            Lookup::Unknown(ticket) => ticket,
        };
        let (account, meeting) = (account_id.to_string(), meeting_id.to_string());
        self.read(move |conn| check_meeting_account(conn, &account, &meeting))
            .await?;
        Ok(self
            .versions
            .remember(ticket, meeting_id, account_id)
            .version)
    }

    /// Runs `work` on the writer thread, in a savepoint of the group transaction, and answers
    /// once the group has committed. When `work` returns an error, or the request's commit gate
    /// is closed, nothing it wrote is kept; the other writes of the group are.
    async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Transaction<'_>) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let started = std::time::Instant::now();
        let gate = super::gate::CommitGate::current();
        let (done, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |tx| {
            let result = match work(tx) {
                // The request timed out and its caller was told so: its savepoint is rolled
                // back.
                Ok(_) if gate.is_some_and(|gate| !gate.pass()) => Err(StoreError::Abandoned),
                other => other,
            };
            Ran {
                keep: result.is_ok(),
                deliver: Box::new(move |committed: StoreResult<()>| {
                    let _ = done.send(committed.and(result));
                }),
            }
        });
        self.jobs
            .send(job)
            .map_err(|_| backend("the store writer has stopped"))?;
        let committed = answer
            .await
            .map_err(|_| backend("the write was not carried out"))?;
        crate::metrics::record_store("sqlite", "write", started);
        committed
    }

    async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let started = std::time::Instant::now();
        let read = self.read_untimed(work).await;
        crate::metrics::record_store("sqlite", "read", started);
        read
    }

    async fn read_untimed<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let turn = self
            .next_reader
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // A read connection free right now serves the read on this thread: under WAL a reader
        // never waits for the writer, and every read is a few indexed lookups or one bounded
        // page (tens of microseconds), less than a hop to the blocking pool and back.
        let n = self.readers.len();
        for i in 0..n {
            if let Some(Ok(guard)) = self.readers.get((turn + i) % n).map(Mutex::try_lock) {
                return work(&guard);
            }
        }
        let (writer, readers) = (self.conn.clone(), self.readers.clone());
        tokio::task::spawn_blocking(move || {
            let conn = match readers.len() {
                0 => &*writer,
                n => readers.get(turn % n).unwrap_or(&*writer),
            };
            let guard = conn.lock().map_err(|_| backend("store mutex poisoned"))?;
            work(&guard)
        })
        .await
        .map_err(backend)?
    }
}

/// A write job, run by the writer thread inside its own savepoint of a group transaction.
type Job = Box<dyn FnOnce(&Transaction<'_>) -> Ran + Send>;

/// What a job left behind: whether its changes are kept, and how to tell its caller once the
/// group's fate is known (the commit's result for a kept write).
struct Ran {
    keep: bool,
    deliver: Box<dyn FnOnce(StoreResult<()>) + Send>,
}

/// Takes the lock file beside the database, so that a server in another process on the same data
/// directory stops at once instead of sharing it: the store keeps state in memory (attendee
/// versions, the node registry's view of earlier runs) that only one process may own.
fn lock_database(path: &Path) -> StoreResult<std::fs::File> {
    let lock_path = path.with_extension("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| backend(format!("cannot open {}: {e}", lock_path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(backend(format!(
            "{} is in use by another carillon process (it holds {}); give each server its own \
             --data-dir, or share one PostgreSQL database (--store postgres://…) between nodes",
            path.display(),
            lock_path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(backend(format!("cannot lock {}: {e}", lock_path.display())))
        }
    }
}

thread_local! {
    /// The meetings whose attendee version the writer thread's current group moved (or which it
    /// removed), forgotten by [`AttendeeVersions`] once the group commits.
    static TOUCHED: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Records, on the writer thread, that this transaction changes what the meeting's attendee
/// version stands for.
fn touch(meeting_id: &str) {
    TOUCHED.with_borrow_mut(|touched| touched.push(meeting_id.to_string()));
    attendee_counts::unknown(meeting_id);
}

/// Most writes one group transaction carries.
const MAX_GROUP: usize = 512;

/// The writer thread: takes every write queued since its last commit, runs each in a savepoint
/// of one IMMEDIATE transaction, and commits them together (one fsync for the group). A write
/// that fails, panics or finds its commit gate closed is rolled back to its savepoint alone.
fn writer(
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
fn run_cached(tx: &Transaction<'_>, sql: &str) -> rusqlite::Result<()> {
    tx.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn run_group(conn: &mut Connection, group: Vec<Job>, versions: &AttendeeVersions) {
    TOUCHED.with_borrow_mut(Vec::clear);
    attendee_counts::start_group();
    let counts = AttendeeCounts::of_this_writer();
    let _one_group_at_a_time = counts.as_deref().map(AttendeeCounts::begin_group);
    let tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            // Dropping the jobs answers their callers with an error; nothing ran.
            tracing::error!(error = %e, "store writer: cannot begin a transaction");
            return;
        }
    };
    let mut ran = Vec::with_capacity(group.len());
    let mut jobs = group.into_iter();
    for job in jobs.by_ref() {
        if run_cached(&tx, "SAVEPOINT write").is_err() {
            break;
        }
        let touched_before = TOUCHED.with_borrow(Vec::len);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&tx)));
        if !matches!(outcome, Ok(Ran { keep: true, .. })) {
            // Rolled back: what it touched is unchanged (forgetting it too would be harmless).
            TOUCHED.with_borrow_mut(|touched| touched.truncate(touched_before));
            attendee_counts::rolled_back();
        }
        if tx.is_autocommit() {
            // SQLite rolled the whole transaction back (e.g. on a full disk): nothing of the
            // group is kept, and the kept writes hear it from the failed commit below.
            if let Ok(outcome) = outcome {
                ran.push(outcome);
            }
            break;
        }
        let end = match &outcome {
            Ok(Ran { keep: true, .. }) => run_cached(&tx, "RELEASE write"),
            _ => {
                run_cached(&tx, "ROLLBACK TO write").and_then(|()| run_cached(&tx, "RELEASE write"))
            }
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
    // Jobs left after a broken transaction are dropped: their callers get an error.
    drop(jobs);
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

#[cfg(test)]
#[path = "sqlite_group_tests.rs"]
mod group_tests;

fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let applied: usize = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(backend)?;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = conn.transaction().map_err(backend)?;
        tx.execute_batch(sql).map_err(backend)?;
        tx.pragma_update(None, "user_version", index + 1)
            .map_err(backend)?;
        tx.commit().map_err(backend)?;
    }
    Ok(())
}

/// Ends a meeting of the account and its replicas at `at`: attendees still connected are
/// announced as left, then the meeting as ended, and the rows go. Returns the ids that ended
/// (none when the account has no such meeting).
fn end_meeting(
    tx: &Transaction<'_>,
    account_id: &str,
    meeting_id: &str,
    at: i64,
) -> StoreResult<Vec<String>> {
    let primary = match find_meeting(tx, account_id, meeting_id) {
        Ok(meeting) => meeting,
        Err(StoreError::MeetingNotFound) => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let replicas: Vec<MeetingRecord> = {
        let mut statement = tx
            .prepare_cached(&format!(
                "SELECT {MEETING_COLUMNS} FROM meetings WHERE primary_meeting_id = ?1"
            ))
            .map_err(backend)?;
        let rows = statement
            .query_map(params![meeting_id], meeting_from_row)
            .map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)?
    };
    let mut ended = Vec::with_capacity(1 + replicas.len());
    for meeting in std::iter::once(primary).chain(replicas) {
        let connected: Vec<(String, String)> = {
            let mut statement = tx
                .prepare_cached(
                    "SELECT attendee_id, external_user_id FROM attendees \
                     WHERE meeting_id = ?1 AND joined = 1 ORDER BY attendee_id",
                )
                .map_err(backend)?;
            let rows = statement
                .query_map(params![meeting.meeting_id], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)?
        };
        for (attendee_id, external_user_id) in &connected {
            record_event(
                tx,
                EventType::AttendeeLeft,
                &meeting,
                Some((attendee_id, external_user_id)),
                at,
            )?;
        }
        record_event(tx, EventType::MeetingEnded, &meeting, None, at)?;
        tx.execute(
            "DELETE FROM meetings WHERE meeting_id = ?1",
            params![meeting.meeting_id],
        )
        .map_err(backend)?;
        touch(&meeting.meeting_id);
        ended.push(meeting.meeting_id);
    }
    Ok(ended)
}

/// Appends one event to the outbox, inside the caller's transaction.
fn record_event(
    tx: &Transaction<'_>,
    kind: EventType,
    meeting: &MeetingRecord,
    attendee: Option<(&str, &str)>,
    at: i64,
) -> StoreResult<()> {
    let row = event_row(kind, meeting, attendee, at)?;
    tx.prepare_cached(
        "INSERT INTO events (meeting_id, targets, body, recorded_at_ms) VALUES (?1, ?2, ?3, ?4)",
    )
    .map_err(backend)?
    .execute(params![
        row.meeting_id,
        row.targets,
        row.body,
        row.recorded_at_ms
    ])
    .map_err(backend)?;
    Ok(())
}

fn advance_cursor(tx: &Transaction<'_>, sink: &str, seq: i64) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO event_sinks (sink, delivered_seq) VALUES (?1, ?2) \
         ON CONFLICT (sink) DO UPDATE SET delivered_seq = MAX(delivered_seq, excluded.delivered_seq)",
        params![sink, seq],
    )
    .map_err(backend)?;
    Ok(())
}

/// Recomputes whether anyone is connected to the meeting; when the last one went, its idle
/// clock starts at `at`.
fn refresh_connected(tx: &Transaction<'_>, meeting_id: &str, at: i64) -> StoreResult<()> {
    // Every right-hand side reads the row as it was, so `connected = 1` is the old state.
    tx.execute(
        "UPDATE meetings SET \
           idle_since = CASE \
             WHEN EXISTS (SELECT 1 FROM attendees WHERE meeting_id = ?1 AND joined = 1) THEN idle_since \
             WHEN connected = 1 THEN ?2 \
             ELSE idle_since END, \
           connected = EXISTS (SELECT 1 FROM attendees WHERE meeting_id = ?1 AND joined = 1) \
         WHERE meeting_id = ?1",
        params![meeting_id, at],
    )
    .map_err(backend)?;
    Ok(())
}

/// Moves the meeting's attendee version: the writer forgets the meeting's generation once this
/// transaction commits, before its callers are answered, so every cached ListAttendees page and
/// GetAttendee answer of the meeting stops matching. Nothing is written: the version lives in
/// memory (see [`AttendeeVersions`]).
fn bump_attendees_version(meeting_id: &str) {
    touch(meeting_id);
}

const MEETING_COLUMNS: &str = "account_id, meeting_id, client_request_token, control_region, \
    media_region, external_meeting_id, meeting_host_id, primary_meeting_id, tenant_ids, features, \
    notifications, network_type, media_base_url, max_attendees, created_at";

const ATTENDEE_COLUMNS: &str =
    "meeting_id, attendee_id, external_user_id, join_token, audio, video, content, created_at";

fn meeting_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<MeetingRecord> {
    let json_err = |i: usize, e: serde_json::Error| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    };
    let tenant_ids: String = row.get(8)?;
    let features: Option<String> = row.get(9)?;
    let notifications: Option<String> = row.get(10)?;
    Ok(MeetingRecord {
        account_id: row.get(0)?,
        meeting_id: row.get(1)?,
        client_request_token: row.get(2)?,
        control_region: row.get(3)?,
        media_region: row.get(4)?,
        external_meeting_id: row.get(5)?,
        meeting_host_id: row.get(6)?,
        primary_meeting_id: row.get(7)?,
        tenant_ids: serde_json::from_str(&tenant_ids).map_err(|e| json_err(8, e))?,
        features: features
            .map(|f| serde_json::from_str(&f))
            .transpose()
            .map_err(|e| json_err(9, e))?,
        notifications: notifications
            .map(|n| serde_json::from_str(&n))
            .transpose()
            .map_err(|e| json_err(10, e))?,
        network_type: row.get(11)?,
        media_base_url: row.get(12)?,
        max_attendees: row.get(13)?,
        created_at: row.get(14)?,
    })
}

fn capability_from(i: usize, s: String) -> rusqlite::Result<MediaCapability> {
    MediaCapability::parse(&s).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("unknown media capability {s}").into(),
        )
    })
}

fn attendee_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<AttendeeRecord> {
    Ok(AttendeeRecord {
        meeting_id: row.get(0)?,
        attendee_id: row.get(1)?,
        external_user_id: row.get(2)?,
        join_token: row.get(3)?,
        capabilities: Capabilities {
            audio: capability_from(4, row.get(4)?)?,
            video: capability_from(5, row.get(5)?)?,
            content: capability_from(6, row.get(6)?)?,
        },
        created_at: row.get(7)?,
    })
}

fn find_meeting(
    conn: &Connection,
    account_id: &str,
    meeting_id: &str,
) -> StoreResult<MeetingRecord> {
    conn.prepare_cached(&format!(
        "SELECT {MEETING_COLUMNS} FROM meetings WHERE account_id = ?1 AND meeting_id = ?2"
    ))
    .map_err(backend)?
    .query_row(params![account_id, meeting_id], meeting_from_row)
    .optional()
    .map_err(backend)?
    .ok_or(StoreError::MeetingNotFound)
}

/// Whether the account's meeting exists: one primary-key read.
fn check_meeting_account(conn: &Connection, account_id: &str, meeting_id: &str) -> StoreResult<()> {
    conn.prepare_cached("SELECT 1 FROM meetings WHERE meeting_id = ?1 AND account_id = ?2")
        .map_err(backend)?
        .query_row(params![meeting_id, account_id], |_| Ok(()))
        .optional()
        .map_err(backend)?
        .ok_or(StoreError::MeetingNotFound)
}

fn find_attendee(
    conn: &Connection,
    meeting_id: &str,
    attendee_id: &str,
) -> StoreResult<AttendeeRecord> {
    conn.prepare_cached(&format!(
        "SELECT {ATTENDEE_COLUMNS} FROM attendees WHERE meeting_id = ?1 AND attendee_id = ?2"
    ))
    .map_err(backend)?
    .query_row(params![meeting_id, attendee_id], attendee_from_row)
    .optional()
    .map_err(backend)?
    .ok_or(StoreError::AttendeeNotFound)
}

fn insert_tags(
    tx: &Transaction<'_>,
    meeting_id: &str,
    attendee_id: &str,
    tags: &[Tag],
) -> StoreResult<()> {
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO tags (meeting_id, attendee_id, key, value) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (meeting_id, attendee_id, key) DO UPDATE SET value = excluded.value",
        )
        .map_err(backend)?;
    for tag in tags {
        stmt.execute(params![meeting_id, attendee_id, tag.key, tag.value])
            .map_err(backend)?;
    }
    Ok(())
}

/// How many attendees the meeting has (through the primary key's meeting prefix).
fn attendee_count(tx: &Transaction<'_>, meeting_id: &str) -> StoreResult<usize> {
    let count: i64 = tx
        .prepare_cached("SELECT COUNT(*) FROM attendees WHERE meeting_id = ?1")
        .map_err(backend)?
        .query_row(params![meeting_id], |row| row.get(0))
        .map_err(backend)?;
    Ok(usize::try_from(count).unwrap_or(0))
}

/// Inserts attendees one by one under the meeting's cap; the caller holds the write transaction,
/// so the count cannot change underneath.
fn insert_attendees(
    tx: &Transaction<'_>,
    meeting: &MeetingRecord,
    attendees: Vec<NewAttendee>,
) -> StoreResult<Vec<AttendeeOutcome>> {
    // Statements come from the connection's cache: this runs once per attendee created. The
    // count is remembered by the writer when it can be (`attendee_counts.rs`).
    let mut count = match attendee_counts::known(&meeting.meeting_id) {
        Some(count) => count,
        None => u32::try_from(attendee_count(tx, &meeting.meeting_id)?).unwrap_or(u32::MAX),
    };
    let mut outcomes = Vec::with_capacity(attendees.len());
    for new in attendees {
        let existing = tx
            .prepare_cached(&format!(
                "SELECT {ATTENDEE_COLUMNS} FROM attendees WHERE meeting_id = ?1 AND external_user_id = ?2"
            ))
            .map_err(backend)?
            .query_row(
                params![meeting.meeting_id, new.external_user_id],
                attendee_from_row,
            )
            .optional()
            .map_err(backend)?;
        if let Some(existing) = existing {
            outcomes.push(AttendeeOutcome::Existing(existing));
            continue;
        }
        if count >= meeting.max_attendees {
            outcomes.push(AttendeeOutcome::MeetingFull {
                external_user_id: new.external_user_id,
                cap: meeting.max_attendees,
            });
            continue;
        }
        tx.prepare_cached(&format!(
            "INSERT INTO attendees ({ATTENDEE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        ))
        .map_err(backend)?
        .execute(params![
            meeting.meeting_id,
            new.attendee_id,
            new.external_user_id,
            new.join_token,
            new.capabilities.audio.as_str(),
            new.capabilities.video.as_str(),
            new.capabilities.content.as_str(),
            new.created_at,
        ])
        .map_err(backend)?;
        insert_tags(tx, &meeting.meeting_id, &new.attendee_id, &new.tags)?;
        record_event(
            tx,
            EventType::AttendeeAdded,
            meeting,
            Some((&new.attendee_id, &new.external_user_id)),
            new.created_at,
        )?;
        count += 1;
        outcomes.push(AttendeeOutcome::Created(AttendeeRecord {
            meeting_id: meeting.meeting_id.clone(),
            attendee_id: new.attendee_id,
            external_user_id: new.external_user_id,
            join_token: new.join_token,
            capabilities: new.capabilities,
            created_at: new.created_at,
        }));
    }
    // Existing attendees and a full meeting change nothing a listing shows.
    if outcomes
        .iter()
        .any(|o| matches!(o, AttendeeOutcome::Created(_)))
    {
        bump_attendees_version(&meeting.meeting_id);
    }
    // After the version's bump, which marks the count unknown: this one is exact.
    attendee_counts::set(&meeting.meeting_id, count);
    Ok(outcomes)
}

/// Checks that a tag target exists and returns its attendee column value ('' for a meeting).
fn tag_target_key(
    tx: &Connection,
    account_id: &str,
    target: &TagTarget,
) -> StoreResult<(String, String)> {
    match target {
        TagTarget::Meeting(meeting_id) => {
            find_meeting(tx, account_id, meeting_id)?;
            Ok((meeting_id.clone(), String::new()))
        }
        TagTarget::Attendee(meeting_id, attendee_id) => {
            find_meeting(tx, account_id, meeting_id)?;
            find_attendee(tx, meeting_id, attendee_id)?;
            Ok((meeting_id.clone(), attendee_id.clone()))
        }
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn create_meeting(
        &self,
        meeting: MeetingRecord,
        tags: Vec<Tag>,
        attendees: Vec<NewAttendee>,
    ) -> StoreResult<CreatedMeeting> {
        self.write(move |tx| {
            let earlier = tx
                .query_row(
                    &format!(
                        "SELECT {MEETING_COLUMNS} FROM meetings WHERE account_id = ?1 AND client_request_token = ?2"
                    ),
                    params![meeting.account_id, meeting.client_request_token],
                    meeting_from_row,
                )
                .optional()
                .map_err(backend)?;
            if let Some(earlier) = earlier {
                return Ok(CreatedMeeting {
                    meeting: earlier,
                    created: false,
                    attendees: Vec::new(),
                });
            }
            tx.execute(
                &format!(
                    "INSERT INTO meetings ({MEETING_COLUMNS}) VALUES \
                     (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
                ),
                params![
                    meeting.account_id,
                    meeting.meeting_id,
                    meeting.client_request_token,
                    meeting.control_region,
                    meeting.media_region,
                    meeting.external_meeting_id,
                    meeting.meeting_host_id,
                    meeting.primary_meeting_id,
                    to_json(&meeting.tenant_ids)?,
                    meeting.features.as_ref().map(to_json).transpose()?,
                    meeting.notifications.as_ref().map(to_json).transpose()?,
                    meeting.network_type,
                    meeting.media_base_url,
                    meeting.max_attendees,
                    meeting.created_at,
                ],
            )
            .map_err(backend)?;
            record_event(
                tx,
                EventType::MeetingStarted,
                &meeting,
                None,
                meeting.created_at,
            )?;
            insert_tags(tx, &meeting.meeting_id, "", &tags)?;
            let attendees = insert_attendees(tx, &meeting, attendees)?;
            Ok(CreatedMeeting {
                meeting,
                created: true,
                attendees,
            })
        })
        .await
    }

    async fn get_meeting(&self, account_id: &str, meeting_id: &str) -> StoreResult<MeetingRecord> {
        let (account_id, meeting_id) = (account_id.to_string(), meeting_id.to_string());
        self.read(move |conn| find_meeting(conn, &account_id, &meeting_id))
            .await
    }

    async fn list_meetings(
        &self,
        account_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<MeetingRecord>> {
        let (account_id, after) = (account_id.to_string(), after.unwrap_or("").to_string());
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {MEETING_COLUMNS} FROM meetings WHERE account_id = ?1 AND meeting_id > ?2 \
                     ORDER BY meeting_id LIMIT ?3"
                ))
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![account_id, after, limit as i64], meeting_from_row)
                .map_err(backend)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(backend)
        })
        .await
    }

    async fn recent_meetings(&self, limit: usize) -> StoreResult<Vec<MeetingRecord>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {MEETING_COLUMNS} FROM meetings ORDER BY created_at DESC, meeting_id LIMIT ?1"
                ))
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![limit as i64], meeting_from_row)
                .map_err(backend)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(backend)
        })
        .await
    }

    async fn delete_meeting(
        &self,
        account_id: &str,
        meeting_id: &str,
        at: i64,
    ) -> StoreResult<Vec<String>> {
        let (account_id, meeting_id) = (account_id.to_string(), meeting_id.to_string());
        self.write(move |tx| {
            let ended = end_meeting(tx, &account_id, &meeting_id, at)?;
            if ended.is_empty() {
                return Err(StoreError::MeetingNotFound);
            }
            Ok(ended)
        })
        .await
    }

    async fn end_due_meetings(
        &self,
        now: i64,
        rules: EndRules,
        attendee_budget: usize,
    ) -> StoreResult<Vec<String>> {
        self.write(move |tx| {
            // Each arm reads only what is due through its own index (a scan of every meeting,
            // once a second on the writer thread, grew with the store). Replicas never end by
            // their own clocks, only with their primary; one whose primary is gone (it raced
            // the primary's end) ends now. A meeting both too old and idle is listed twice.
            let due: Vec<(String, String)> = {
                let mut statement = tx
                    .prepare_cached(
                        "SELECT account_id, meeting_id FROM meetings INDEXED BY meetings_by_age \
                         WHERE created_at <= ?1 AND +primary_meeting_id IS NULL \
                         UNION ALL \
                         SELECT account_id, meeting_id FROM meetings INDEXED BY meetings_idle_due \
                         WHERE connected = 0 AND COALESCE(idle_since, created_at) <= ?2 \
                           AND +primary_meeting_id IS NULL \
                         UNION ALL \
                         SELECT m.account_id, m.meeting_id \
                         FROM meetings AS m INDEXED BY meetings_by_primary \
                         WHERE m.primary_meeting_id > '' AND NOT EXISTS \
                           (SELECT 1 FROM meetings AS p WHERE p.meeting_id = m.primary_meeting_id) \
                         LIMIT ?3",
                    )
                    .map_err(backend)?;
                let (created_by, idle_since_by) = due_bounds(now, rules);
                let rows = statement
                    .query_map(
                        params![created_by, idle_since_by, DUE_MEETINGS_PER_CALL],
                        |row| Ok((row.get(0)?, row.get(1)?)),
                    )
                    .map_err(backend)?;
                rows.collect::<Result<_, _>>().map_err(backend)?
            };
            let mut ended: Vec<String> = Vec::new();
            let mut removed = 0;
            for (account_id, meeting_id) in due {
                if ended.contains(&meeting_id) {
                    continue;
                }
                let attendees = attendee_count(tx, &meeting_id)?;
                if !within_budget(!ended.is_empty(), removed, attendees, attendee_budget) {
                    break;
                }
                removed += attendees;
                ended.extend(end_meeting(tx, &account_id, &meeting_id, now)?);
            }
            Ok(ended)
        })
        .await
    }

    async fn create_attendees(
        &self,
        account_id: &str,
        meeting_id: &str,
        attendees: Vec<NewAttendee>,
    ) -> StoreResult<Vec<AttendeeOutcome>> {
        let (account_id, meeting_id) = (account_id.to_string(), meeting_id.to_string());
        self.write(move |tx| {
            let meeting = find_meeting(tx, &account_id, &meeting_id)?;
            insert_attendees(tx, &meeting, attendees)
        })
        .await
    }

    async fn get_attendee_versioned(
        &self,
        account_id: &str,
        meeting_id: &str,
        attendee_id: &str,
    ) -> StoreResult<VersionedAttendee> {
        let (account_id, meeting_id, attendee_id) = (
            account_id.to_string(),
            meeting_id.to_string(),
            attendee_id.to_string(),
        );
        // The version first (with the account check), then the row: never older than it.
        let version = self
            .known_attendees_version(&account_id, &meeting_id)
            .await?;
        let attendee = self
            .read(move |conn| find_attendee(conn, &meeting_id, &attendee_id))
            .await?;
        Ok(VersionedAttendee { version, attendee })
    }

    async fn attendees_version(&self, account_id: &str, meeting_id: &str) -> StoreResult<i64> {
        self.known_attendees_version(account_id, meeting_id).await
    }

    async fn list_attendees_versioned(
        &self,
        account_id: &str,
        meeting_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<AttendeePage> {
        let (account_id, meeting_id, after) = (
            account_id.to_string(),
            meeting_id.to_string(),
            after.unwrap_or("").to_string(),
        );
        // The version first (with the account check), then the rows: never older than it.
        let version = self
            .known_attendees_version(&account_id, &meeting_id)
            .await?;
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {ATTENDEE_COLUMNS} FROM attendees WHERE meeting_id = ?1 AND attendee_id > ?2 \
                     ORDER BY attendee_id LIMIT ?3"
                ))
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![meeting_id, after, limit as i64], attendee_from_row)
                .map_err(backend)?;
            let attendees = rows.collect::<Result<Vec<_>, _>>().map_err(backend)?;
            Ok(AttendeePage { version, attendees })
        })
        .await
    }

    async fn delete_attendee(
        &self,
        account_id: &str,
        meeting_id: &str,
        attendee_id: &str,
        at: i64,
    ) -> StoreResult<()> {
        let (account_id, meeting_id, attendee_id) = (
            account_id.to_string(),
            meeting_id.to_string(),
            attendee_id.to_string(),
        );
        self.write(move |tx| {
            let meeting = find_meeting(tx, &account_id, &meeting_id)?;
            // Cached statements, as in `insert_attendees`: this runs once per attendee deleted.
            let external_user_id: Option<String> = tx
                .prepare_cached(
                    "SELECT external_user_id FROM attendees WHERE meeting_id = ?1 AND attendee_id = ?2",
                )
                .map_err(backend)?
                .query_row(params![meeting_id, attendee_id], |row| row.get(0))
                .optional()
                .map_err(backend)?;
            let Some(external_user_id) = external_user_id else {
                return Err(StoreError::AttendeeNotFound);
            };
            tx.prepare_cached("DELETE FROM attendees WHERE meeting_id = ?1 AND attendee_id = ?2")
                .map_err(backend)?
                .execute(params![meeting_id, attendee_id])
                .map_err(backend)?;
            tx.prepare_cached("DELETE FROM tags WHERE meeting_id = ?1 AND attendee_id = ?2")
                .map_err(backend)?
                .execute(params![meeting_id, attendee_id])
                .map_err(backend)?;
            bump_attendees_version(&meeting_id);
            record_event(
                tx,
                EventType::AttendeeDeleted,
                &meeting,
                Some((&attendee_id, &external_user_id)),
                at,
            )
        })
        .await
    }

    async fn update_capabilities(
        &self,
        account_id: &str,
        meeting_id: &str,
        attendee_id: &str,
        capabilities: Capabilities,
    ) -> StoreResult<AttendeeRecord> {
        let (account_id, meeting_id, attendee_id) = (
            account_id.to_string(),
            meeting_id.to_string(),
            attendee_id.to_string(),
        );
        self.write(move |tx| {
            find_meeting(tx, &account_id, &meeting_id)?;
            let updated = tx
                .execute(
                    "UPDATE attendees SET audio = ?3, video = ?4, content = ?5 \
                     WHERE meeting_id = ?1 AND attendee_id = ?2",
                    params![
                        meeting_id,
                        attendee_id,
                        capabilities.audio.as_str(),
                        capabilities.video.as_str(),
                        capabilities.content.as_str()
                    ],
                )
                .map_err(backend)?;
            if updated == 0 {
                return Err(StoreError::AttendeeNotFound);
            }
            bump_attendees_version(&meeting_id);
            find_attendee(tx, &meeting_id, &attendee_id)
        })
        .await
    }

    async fn update_capabilities_except(
        &self,
        account_id: &str,
        meeting_id: &str,
        excluded: &[String],
        capabilities: Capabilities,
    ) -> StoreResult<()> {
        let (account_id, meeting_id, excluded) = (
            account_id.to_string(),
            meeting_id.to_string(),
            serde_json::to_string(excluded).map_err(backend)?,
        );
        self.write(move |tx| {
            find_meeting(tx, &account_id, &meeting_id)?;
            let updated = tx
                .execute(
                    "UPDATE attendees SET audio = ?3, video = ?4, content = ?5 WHERE meeting_id = ?1 \
                     AND attendee_id NOT IN (SELECT value FROM json_each(?2))",
                    params![
                        meeting_id,
                        excluded,
                        capabilities.audio.as_str(),
                        capabilities.video.as_str(),
                        capabilities.content.as_str()
                    ],
                )
                .map_err(backend)?;
            if updated > 0 {
                bump_attendees_version(&meeting_id);
            }
            Ok(())
        })
        .await
    }

    async fn tag(
        &self,
        account_id: &str,
        target: &TagTarget,
        tags: Vec<Tag>,
        limit: usize,
    ) -> StoreResult<()> {
        let (account_id, target) = (account_id.to_string(), target.clone());
        self.write(move |tx| {
            let (meeting_id, attendee_id) = tag_target_key(tx, &account_id, &target)?;
            insert_tags(tx, &meeting_id, &attendee_id, &tags)?;
            let total: usize = tx
                .query_row(
                    "SELECT COUNT(*) FROM tags WHERE meeting_id = ?1 AND attendee_id = ?2",
                    params![meeting_id, attendee_id],
                    |row| row.get(0),
                )
                .map_err(backend)?;
            if total > limit {
                // Returning an error drops the transaction, so the new tags are not kept.
                return Err(StoreError::TooManyTags { limit });
            }
            Ok(())
        })
        .await
    }

    async fn untag(
        &self,
        account_id: &str,
        target: &TagTarget,
        keys: Vec<String>,
    ) -> StoreResult<()> {
        let (account_id, target) = (account_id.to_string(), target.clone());
        self.write(move |tx| {
            let (meeting_id, attendee_id) = tag_target_key(tx, &account_id, &target)?;
            let mut stmt = tx
                .prepare_cached(
                    "DELETE FROM tags WHERE meeting_id = ?1 AND attendee_id = ?2 AND key = ?3",
                )
                .map_err(backend)?;
            for key in keys {
                stmt.execute(params![meeting_id, attendee_id, key])
                    .map_err(backend)?;
            }
            Ok(())
        })
        .await
    }

    async fn list_tags(&self, account_id: &str, target: &TagTarget) -> StoreResult<Vec<Tag>> {
        let (account_id, target) = (account_id.to_string(), target.clone());
        self.read(move |conn| {
            let (meeting_id, attendee_id) = tag_target_key(conn, &account_id, &target)?;
            let mut stmt = conn
                .prepare_cached(
                    "SELECT key, value FROM tags WHERE meeting_id = ?1 AND attendee_id = ?2 ORDER BY key",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![meeting_id, attendee_id], |row| {
                    Ok(Tag {
                        key: row.get(0)?,
                        value: row.get(1)?,
                    })
                })
                .map_err(backend)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(backend)
        })
        .await
    }

    async fn find_attendee_by_join_token(
        &self,
        join_token: &str,
    ) -> StoreResult<Option<AttendeeRecord>> {
        // The token names its attendee; only the stored token, compared whole, admits it.
        let Some(attendee_id) = crate::domain::tokens::join_token_attendee(join_token) else {
            return Ok(None);
        };
        let join_token = join_token.to_string();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {ATTENDEE_COLUMNS} FROM attendees WHERE attendee_id = ?1"
                ))
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![attendee_id], attendee_from_row)
                .map_err(backend)?;
            for attendee in rows {
                let attendee = attendee.map_err(backend)?;
                if crate::domain::digest::constant_time_eq(
                    attendee.join_token.as_bytes(),
                    join_token.as_bytes(),
                ) {
                    return Ok(Some(attendee));
                }
            }
            Ok(None)
        })
        .await
    }

    async fn meeting_exists(&self, meeting_id: &str) -> StoreResult<bool> {
        let meeting_id = meeting_id.to_string();
        self.read(move |conn| {
            conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM meetings WHERE meeting_id = ?1)",
                params![meeting_id],
                |row| row.get(0),
            )
            .map_err(backend)
        })
        .await
    }

    async fn record_presence(
        &self,
        meeting_id: &str,
        attendee_id: &str,
        change: PresenceChange,
        at: i64,
    ) -> StoreResult<()> {
        let (meeting_id, attendee_id) = (meeting_id.to_string(), attendee_id.to_string());
        self.write(move |tx| {
            let (joined, dropped, column) = presence_columns(change);
            let changed = tx
                .execute(
                    &format!(
                        "UPDATE attendees SET joined = ?3, dropped = ?4, {column} = ?5 \
                         WHERE meeting_id = ?1 AND attendee_id = ?2"
                    ),
                    params![meeting_id, attendee_id, joined, dropped, at],
                )
                .map_err(backend)?;
            if changed == 1 {
                let meeting = tx
                    .query_row(
                        &format!("SELECT {MEETING_COLUMNS} FROM meetings WHERE meeting_id = ?1"),
                        params![meeting_id],
                        meeting_from_row,
                    )
                    .map_err(backend)?;
                let external_user_id: String = tx
                    .query_row(
                        "SELECT external_user_id FROM attendees WHERE meeting_id = ?1 AND attendee_id = ?2",
                        params![meeting_id, attendee_id],
                        |row| row.get(0),
                    )
                    .map_err(backend)?;
                for kind in presence_events(change) {
                    record_event(
                        tx,
                        *kind,
                        &meeting,
                        Some((&attendee_id, &external_user_id)),
                        at,
                    )?;
                }
            }
            refresh_connected(tx, &meeting_id, at)
        })
        .await
    }

    async fn record_media_event(
        &self,
        meeting_id: &str,
        attendee_id: &str,
        shown_attendee_id: &str,
        kind: EventType,
        at: i64,
    ) -> StoreResult<()> {
        let (meeting_id, attendee_id, shown) = (
            meeting_id.to_string(),
            attendee_id.to_string(),
            shown_attendee_id.to_string(),
        );
        self.write(move |tx| {
            let meeting = tx
                .query_row(
                    &format!("SELECT {MEETING_COLUMNS} FROM meetings WHERE meeting_id = ?1"),
                    params![meeting_id],
                    meeting_from_row,
                )
                .optional()
                .map_err(backend)?;
            let external_user_id: Option<String> = tx
                .query_row(
                    "SELECT external_user_id FROM attendees WHERE meeting_id = ?1 AND attendee_id = ?2",
                    params![meeting_id, attendee_id],
                    |row| row.get(0),
                )
                .optional()
                .map_err(backend)?;
            if let (Some(meeting), Some(external_user_id)) = (meeting, external_user_id) {
                record_event(tx, kind, &meeting, Some((&shown, &external_user_id)), at)?;
            }
            Ok(())
        })
        .await
    }

    async fn meeting_presence(
        &self,
        account_id: &str,
        meeting_id: &str,
    ) -> StoreResult<Vec<AttendeePresence>> {
        let (account_id, meeting_id) = (account_id.to_string(), meeting_id.to_string());
        self.read(move |conn| {
            find_meeting(conn, &account_id, &meeting_id)?;
            let mut statement = conn
                .prepare_cached(
                    "SELECT attendee_id, external_user_id, joined, dropped, joined_at, left_at \
                     FROM attendees WHERE meeting_id = ?1 ORDER BY attendee_id",
                )
                .map_err(backend)?;
            let rows = statement
                .query_map(params![meeting_id], |row| {
                    let joined: Option<bool> = row.get(2)?;
                    let dropped: bool = row.get(3)?;
                    let state = connection_state(joined, dropped);
                    Ok(AttendeePresence {
                        attendee_id: row.get(0)?,
                        external_user_id: row.get(1)?,
                        state,
                        joined_at: row.get(4)?,
                        left_at: row.get(5)?,
                    })
                })
                .map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
        .await
    }

    async fn reset_presence(&self, at: i64) -> StoreResult<()> {
        self.write(move |tx| {
            tx.execute(
                "UPDATE attendees SET joined = 0, dropped = 1, left_at = ?1 WHERE joined = 1",
                params![at],
            )
            .map_err(backend)?;
            tx.execute(
                "UPDATE meetings SET connected = 0, idle_since = ?1 WHERE connected = 1",
                params![at],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn presence(
        &self,
        meeting_id: &str,
        attendee_id: &str,
    ) -> StoreResult<(Option<bool>, Option<i64>, Option<i64>)> {
        let (meeting_id, attendee_id) = (meeting_id.to_string(), attendee_id.to_string());
        self.read(move |conn| {
            conn.query_row(
                "SELECT joined, joined_at, left_at FROM attendees WHERE meeting_id = ?1 AND attendee_id = ?2",
                params![meeting_id, attendee_id],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()
            .map_err(backend)?
            .ok_or(StoreError::AttendeeNotFound)
        })
        .await
    }

    async fn outbox_after(&self, after: i64, limit: usize) -> StoreResult<Vec<OutboxEvent>> {
        self.read(move |conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT seq, meeting_id, targets, body, recorded_at_ms FROM events \
                     WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )
                .map_err(backend)?;
            let rows = statement
                .query_map(params![after, limit as i64], |row| {
                    let targets: String = row.get(2)?;
                    Ok(OutboxEvent {
                        seq: row.get(0)?,
                        meeting_id: row.get(1)?,
                        targets: serde_json::from_str(&targets).unwrap_or_default(),
                        body: row.get(3)?,
                        recorded_at_ms: row.get(4)?,
                    })
                })
                .map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
        .await
    }

    async fn latest_event_seq(&self) -> StoreResult<i64> {
        self.read(move |conn| {
            conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |row| {
                row.get(0)
            })
            .map_err(backend)
        })
        .await
    }

    async fn prune_events(&self, before_ms: i64, limit: usize) -> StoreResult<usize> {
        self.write(move |tx| {
            // The oldest event first, so that a store with nothing to prune reads one row.
            let oldest: Option<i64> = tx
                .prepare_cached("SELECT recorded_at_ms FROM events ORDER BY seq LIMIT 1")
                .map_err(backend)?
                .query_row([], |row| row.get(0))
                .optional()
                .map_err(backend)?;
            if oldest.is_none_or(|recorded| recorded >= before_ms) {
                return Ok(0);
            }
            tx.prepare_cached(
                "DELETE FROM events WHERE seq IN (SELECT seq FROM events ORDER BY seq LIMIT ?2) \
                 AND recorded_at_ms < ?1",
            )
            .map_err(backend)?
            .execute(params![before_ms, i64::try_from(limit).unwrap_or(i64::MAX)])
            .map_err(backend)
        })
        .await
    }

    async fn sink_cursor(&self, sink: &str) -> StoreResult<i64> {
        let sink = sink.to_string();
        self.read(move |conn| {
            conn.query_row(
                "SELECT delivered_seq FROM event_sinks WHERE sink = ?1",
                params![sink],
                |row| row.get(0),
            )
            .optional()
            .map(Option::unwrap_or_default)
            .map_err(backend)
        })
        .await
    }

    async fn advance_sink(&self, sink: &str, seq: i64) -> StoreResult<()> {
        let sink = sink.to_string();
        self.write(move |tx| advance_cursor(tx, &sink, seq)).await
    }

    async fn lease_sink(
        &self,
        sink: &str,
        node: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> StoreResult<bool> {
        let (sink, node) = (sink.to_string(), node.to_string());
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO event_sinks (sink, delivered_seq, owner, lease_until) \
                 VALUES (?1, 0, ?2, ?3) \
                 ON CONFLICT (sink) DO UPDATE SET owner = excluded.owner, \
                   lease_until = excluded.lease_until \
                 WHERE event_sinks.owner IS NULL OR event_sinks.owner = excluded.owner \
                   OR event_sinks.lease_until < ?4",
                params![sink, node, now_ms.saturating_add(ttl_ms), now_ms],
            )
            .map_err(backend)?;
            let owner: Option<String> = tx
                .query_row(
                    "SELECT owner FROM event_sinks WHERE sink = ?1",
                    params![sink],
                    |row| row.get(0),
                )
                .map_err(backend)?;
            Ok(owner.as_deref() == Some(node.as_str()))
        })
        .await
    }

    async fn dead_letter(
        &self,
        sink: &str,
        event: &OutboxEvent,
        error: &str,
        at_ms: i64,
    ) -> StoreResult<()> {
        let (sink, event, error) = (sink.to_string(), event.clone(), error.to_string());
        self.write(move |tx| {
            tx.execute(
                "INSERT OR REPLACE INTO dead_letters (sink, seq, error, at_ms, body) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![sink, event.seq, error, at_ms, event.body],
            )
            .map_err(backend)?;
            advance_cursor(tx, &sink, event.seq)
        })
        .await
    }

    async fn dead_letters(&self) -> StoreResult<Vec<DeadLetter>> {
        self.read(move |conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT sink, seq, error, at_ms, body FROM dead_letters ORDER BY at_ms, seq",
                )
                .map_err(backend)?;
            let rows = statement
                .query_map([], |row| {
                    Ok(DeadLetter {
                        sink: row.get(0)?,
                        seq: row.get(1)?,
                        error: row.get(2)?,
                        at_ms: row.get(3)?,
                        body: row.get(4)?,
                    })
                })
                .map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
        .await
    }

    async fn setting_or_insert(&self, name: &str, value: &str) -> StoreResult<String> {
        let (name, value) = (name.to_string(), value.to_string());
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO settings (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
                params![name, value],
            )
            .map_err(backend)?;
            tx.query_row(
                "SELECT value FROM settings WHERE name = ?1",
                params![name],
                |row| row.get(0),
            )
            .map_err(backend)
        })
        .await
    }

    async fn beat_node(
        &self,
        beat: &NodeBeat,
        forget_before_ms: i64,
    ) -> StoreResult<Vec<NodeBeat>> {
        let beat = beat.clone();
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO nodes (url, beat_at_ms, sessions, stopped) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (url) DO UPDATE SET beat_at_ms = excluded.beat_at_ms, \
                   sessions = excluded.sessions, stopped = excluded.stopped",
                params![beat.url, beat.beat_at_ms, beat.sessions, beat.stopped],
            )
            .map_err(backend)?;
            tx.execute(
                "DELETE FROM nodes WHERE beat_at_ms < ?1 AND url <> ?2",
                params![forget_before_ms, beat.url],
            )
            .map_err(backend)?;
            let mut query = tx
                .prepare("SELECT url, beat_at_ms, sessions, stopped FROM nodes ORDER BY url")
                .map_err(backend)?;
            let nodes = query
                .query_map([], |row| {
                    Ok(NodeBeat {
                        url: row.get(0)?,
                        beat_at_ms: row.get(1)?,
                        sessions: row.get(2)?,
                        stopped: row.get(3)?,
                    })
                })
                .map_err(backend)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(backend)?;
            Ok(nodes)
        })
        .await
    }

    async fn meeting_host(&self, meeting_id: &str) -> StoreResult<Option<String>> {
        let meeting_id = meeting_id.to_string();
        self.read(move |conn| {
            conn.query_row(
                "SELECT media_base_url FROM meetings WHERE meeting_id = ?1",
                params![meeting_id],
                |row| row.get(0),
            )
            .optional()
            .map_err(backend)
        })
        .await
    }
}
