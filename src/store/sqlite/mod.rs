//! The embedded default store: one SQLite database in the data directory.
//!
//! WAL journal with `synchronous=FULL`, so a committed transaction is on disk before the call
//! returns and survives `kill -9` or a power cut. One writer thread owns the write connection and
//! serialises the writes, which is what makes the attendee cap and the idempotency checks
//! race-free. It commits in groups (`writer.rs`): the writes queued while the previous group was
//! committing share one transaction and one fsync, each in a savepoint of its own, so one that
//! fails (or whose request timed out) is rolled back alone; none is answered before the group is
//! on disk. Reads go to a small pool of read-only connections, which WAL lets run beside the
//! writer and each other; a short read runs on the calling thread when a reader is free, else on
//! tokio's blocking pool.
//!
//! The backend-neutral logic (`store/shared/`) runs on those connections: every step of it is a
//! call into SQLite that is done when it returns, so its future is polled once, on the thread
//! that holds the connection (`now`).

mod attendee_counts;
mod attendees;
mod media_pipelines;
mod meetings;
mod nodes;
mod outbox;
mod presence;
mod schema;
mod session;
mod settings;
mod tags;
mod versions;
mod writer;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use rusqlite::Connection;

use self::attendee_counts::AttendeeCounts;
use self::versions::AttendeeVersions;
use self::writer::{Job, Ran};
use super::shared::{Answer, Args, Backend, Step, Work, backend};
use super::{StoreError, StoreResult};

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

/// Prepared statements kept per connection. The store runs some forty distinct statements
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
        schema::migrate(&mut conn)?;
        let conn = Arc::new(Mutex::new(conn));
        let (jobs, queue) = std::sync::mpsc::channel();
        let writer_conn = conn.clone();
        let writer_versions = versions.clone();
        std::thread::Builder::new()
            .name("carillon-store-writer".into())
            .spawn(move || {
                counts.install();
                writer::writer(writer_conn, queue, &writer_versions)
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

    /// Runs `work` on the writer thread, in a savepoint of the group transaction, and answers
    /// once the group has committed. When `work` returns an error, or the request's commit gate
    /// is closed, nothing it wrote is kept; the other writes of the group are.
    async fn write_now<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let started = std::time::Instant::now();
        let gate = super::gate::CommitGate::current();
        let (done, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = match work(conn) {
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

    async fn read_now<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let started = std::time::Instant::now();
        let read = self.read_untimed(work).await;
        crate::metrics::record_store("sqlite", "read", started);
        read
    }

    async fn read_untimed<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let turn = self
            .next_reader
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // A read connection free right now serves the read on this thread: under WAL a reader
        // never waits for the writer, and every read is a few indexed lookups or one bounded
        // page (tens of microseconds), less than a hop to the blocking pool and back.
        let n = self.readers.len();
        for i in 0..n {
            if let Some(Ok(mut guard)) = self.readers.get((turn + i) % n).map(Mutex::try_lock) {
                return work(&mut guard);
            }
        }
        let (writer, readers) = (self.conn.clone(), self.readers.clone());
        tokio::task::spawn_blocking(move || {
            let conn = match readers.len() {
                0 => &*writer,
                n => readers.get(turn % n).unwrap_or(&*writer),
            };
            let mut guard = conn.lock().map_err(|_| backend("store mutex poisoned"))?;
            work(&mut guard)
        })
        .await
        .map_err(backend)?
    }
}

/// Runs a step of the backend-neutral logic to its end on this thread. Each of its SQLite steps
/// is done when it returns, so one poll finishes it; one that waited (none does) would be
/// reported as a backend error rather than block the writer.
fn now<T>(mut step: Step<'_, T, StoreError>) -> StoreResult<T> {
    match step.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => result,
        Poll::Pending => Err(backend("a step of an SQLite store call waited")),
    }
}

impl Backend for SqliteStore {
    type Session = Connection;

    async fn read<A: Args, T: Answer>(
        &self,
        args: A,
        work: Work<Connection, A, T>,
    ) -> StoreResult<T> {
        self.read_now(move |conn| now(work(conn, &args))).await
    }

    async fn write<A: Args, T: Answer>(
        &self,
        args: A,
        work: Work<Connection, A, T>,
    ) -> StoreResult<T> {
        self.write_now(move |conn| now(work(conn, &args))).await
    }
}

#[cfg(test)]
mod group_tests;
