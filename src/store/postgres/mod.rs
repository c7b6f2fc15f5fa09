//! The PostgreSQL-compatible store, for several Carillon nodes sharing one database
//! (`carillon serve --store postgres://...`).
//!
//! It keeps every promise of the embedded SQLite store (the conformance suite runs against both):
//!
//! - **Durability**: a call returns only after its transaction's COMMIT was acknowledged.
//! - **The attendee cap and per-meeting consistency**: every write that changes a meeting's
//!   attendees, tags or presence first locks the meeting row (`SELECT ... FOR UPDATE`), so
//!   concurrent CreateAttendee calls on any number of nodes queue on that row and count what the
//!   previous one committed. Rows are locked in one order everywhere (meeting, then its
//!   attendees, then the outbox counter), and the rare deadlock or serialization failure
//!   (SQLSTATE 40P01, 40001) reruns the whole transaction, at most [`ATTEMPTS`] times, before it
//!   becomes a typed [`StoreError::Backend`].
//! - **Idempotency**: `UNIQUE (account_id, client_request_token)` and
//!   `UNIQUE (meeting_id, external_user_id)` with `INSERT ... ON CONFLICT DO NOTHING`: a
//!   concurrent duplicate waits for the first one's commit, then reads and returns its row.
//!   Media pipelines have partial unique indexes instead (on given tokens, and on each meeting's
//!   one active capture): an insert that finds a concurrent one's row inserts nothing, and the
//!   transaction runs again to find that row.
//! - **Keyset pages in byte order**: the id and tag-key columns are `COLLATE "C"`, so
//!   `ORDER BY attendee_id` and `attendee_id > $cursor` compare bytes, as SQLite does, whatever
//!   the database's default collation.
//! - **The commit gate**: a write passes [`CommitGate`] right before COMMIT and rolls back with
//!   [`StoreError::Abandoned`] if its request already timed out.
//! - **The outbox in commit order**: a transaction buffers its events and, just before COMMIT,
//!   takes their sequence numbers from the single row of `event_counter` (`UPDATE ... RETURNING`,
//!   in the same statement that inserts them). The row lock is held until COMMIT, so the next
//!   transaction can only number its events after this one committed: sequence order is commit
//!   order, with no gaps, even with many writers. (A `BIGSERIAL` would not give that: sequence
//!   values are handed out at INSERT, and a later-numbered transaction can commit first, so a
//!   delivery worker reading `seq > cursor` would skip the earlier one for good.) The price is
//!   that event-writing transactions commit one at a time; the lock is held only for that last
//!   statement and the COMMIT.
//! - **Migrations** are tracked in `schema_migrations`. Each runs in its own transaction that
//!   first claims its version (`INSERT ... ON CONFLICT DO NOTHING`): a node starting beside
//!   another waits on that row, finds it claimed and moves on, so concurrent starts apply each
//!   migration once. Every statement is also written to be re-runnable (`IF NOT EXISTS`).
//! - **The attendee version**: every write that changes what ListAttendees returns bumps
//!   `meetings.attendees_version` under the meeting's row lock, in the same transaction, so a page
//!   a node cached is checked against the store with one primary-key read, whichever node wrote.
//! - **Settings** (`setting_or_insert`): `INSERT ... ON CONFLICT DO NOTHING`, then `SELECT`, so
//!   nodes starting at once agree on one generated root key and page-token key.
//!
//! Portability: plain SQL that PostgreSQL, CockroachDB and YugabyteDB all accept: `ON CONFLICT`,
//! `SELECT ... FOR UPDATE`, `UPDATE ... RETURNING` in a data-modifying `WITH`, `unnest(...) WITH
//! ORDINALITY`, `LEFT JOIN LATERAL`, `GREATEST`, `COLLATE "C"`, arrays as parameters,
//! `BIGINT`/`BOOLEAN`/`TEXT` columns (timestamps are BIGINT seconds, JSON is TEXT, as in SQLite).
//! No advisory locks, PL/pgSQL, LISTEN/NOTIFY, sequences or triggers. Correctness rests on row
//! locks and unique constraints, which hold under READ COMMITTED (PostgreSQL's default) as under
//! SERIALIZABLE (CockroachDB's), where the bounded retry absorbs the serialization failures the
//! engine reports. The schema migration relies on transactional DDL (PostgreSQL, YugabyteDB;
//! CockroachDB runs schema changes in explicit transactions with caveats): on an engine where a
//! migration half-applies, its statements are re-runnable, so deleting its `schema_migrations`
//! row and restarting finishes it.
//!
//! The connection string is a libpq-style URL (`postgres://user:pass@host:port/db`); its
//! `options` parameter can select a schema (`?options=-csearch_path%3Dcarillon`). Connections are
//! made without TLS: reach the database over a trusted network or a local TLS proxy.
//!
//! The backend-neutral logic (`store/shared/`) runs on a `Tx` session (`session.rs`); the SQL
//! of each aggregate is in its own file, the schema in `schema.rs`.

mod attendees;
mod media_pipelines;
mod meetings;
mod nodes;
mod outbox;
mod presence;
mod schema;
mod scratch;
mod session;
mod settings;
mod tags;

pub use self::scratch::{ScratchSchema, test_database_url};

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use self::session::{Conn, Tx, TxError, TxResult, retryable};
use super::gate::CommitGate;
use super::shared::{Answer, Args, Backend, Work, backend};
use super::{StoreError, StoreResult};

/// Connections per node.
const POOL_SIZE: usize = 16;

/// Runs of one write transaction before a serialization failure or deadlock is reported.
pub const ATTEMPTS: u32 = 10;

/// How long a call waits for a free connection, or for a new one, before failing.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// The public URL of the node this store serves, when it is scoped to one (see
    /// [`PostgresStore::for_node`]).
    node: Option<Arc<str>>,
}

impl PostgresStore {
    /// Connects to the database the URL names and brings its schema up to date.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Backend(format!("the PostgreSQL URL: {e}")))?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECTION_TIMEOUT))
            .create_timeout(Some(CONNECTION_TIMEOUT))
            .build()
            .map_err(backend)?;
        let store = Self { pool, node: None };
        store.migrate().await?;
        Ok(store)
    }

    /// Scopes `reset_presence` to the meetings this node hosts, those whose media (and so
    /// signaling) URL is `public_url`: with several nodes on one database, a node that
    /// (re)starts drops only the attendees that were connected to it, not those of the others.
    pub fn for_node(mut self, public_url: &str) -> Self {
        self.node = Some(public_url.into());
        self
    }

    async fn conn(pool: &Pool) -> TxResult<Conn> {
        pool.get().await.map(Conn).map_err(|e| {
            TxError::Store(StoreError::Unavailable(format!(
                "PostgreSQL connection: {e}"
            )))
        })
    }

    async fn attempt<A, T>(
        pool: &Pool,
        node: Option<Arc<str>>,
        gate: Option<&Arc<CommitGate>>,
        work: Work<Tx, A, T>,
        args: &A,
    ) -> TxResult<T> {
        let mut tx = Tx {
            conn: Self::conn(pool).await?,
            events: Vec::new(),
            node,
        };
        tx.conn.0.batch_execute("BEGIN").await?;
        let outcome = async {
            let value = work(&mut tx, args).await?;
            tx.flush_events().await?;
            if gate.is_some_and(|gate| !gate.pass()) {
                // The request timed out and its caller was told so.
                return Err(TxError::Store(StoreError::Abandoned));
            }
            tx.conn.0.batch_execute("COMMIT").await?;
            Ok(value)
        }
        .await;
        if outcome.is_err() && tx.conn.0.batch_execute("ROLLBACK").await.is_err() {
            // The connection is in an unknown state: close it rather than pool it.
            drop(deadpool_postgres::Object::take(tx.conn.0));
        }
        outcome
    }
}

impl Backend for PostgresStore {
    type Session = Tx;

    /// On a pooled connection, outside any explicit transaction.
    async fn read<A: Args, T: Answer>(&self, args: A, work: Work<Tx, A, T>) -> StoreResult<T> {
        let started = std::time::Instant::now();
        let mut session = Tx {
            conn: Self::conn(&self.pool).await?,
            events: Vec::new(),
            node: self.node.clone(),
        };
        let value = work(&mut session, &args).await?;
        crate::metrics::record_store("postgres", "read", started);
        Ok(value)
    }

    /// Serialization failures and deadlocks run `work` again, at most [`ATTEMPTS`] times. It
    /// runs on its own task, so a caller that stops waiting cannot leave a transaction half-done
    /// on a pooled connection.
    async fn write<A: Args, T: Answer>(&self, args: A, work: Work<Tx, A, T>) -> StoreResult<T> {
        let started = std::time::Instant::now();
        let gate = CommitGate::current();
        let (pool, node) = (self.pool.clone(), self.node.clone());
        let written = tokio::spawn(async move {
            let mut attempt = 1;
            loop {
                match Self::attempt(&pool, node.clone(), gate.as_ref(), work, &args).await {
                    Err(e) if retryable(&e) && attempt < ATTEMPTS => {
                        let jitter = rand::random_range(0..=5u64 << attempt.min(6));
                        tokio::time::sleep(Duration::from_millis(jitter)).await;
                        attempt += 1;
                    }
                    // Still conflicting: the caller may try again later (503, not 500).
                    Err(e) if retryable(&e) => {
                        let e = StoreError::from(e);
                        return Err(StoreError::Unavailable(format!(
                            "gave up after {ATTEMPTS} attempts: {e}"
                        )));
                    }
                    other => return other.map_err(StoreError::from),
                }
            }
        })
        .await
        .map_err(backend)?;
        crate::metrics::record_store("postgres", "write", started);
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A transaction that keeps failing with a serialization failure is run [`ATTEMPTS`] times,
    /// then reported as a typed backend error, not retried forever.
    #[tokio::test]
    async fn retries_are_bounded() {
        let Some(url) = test_database_url("postgres::tests::retries_are_bounded") else {
            return;
        };
        let scratch = ScratchSchema::create(&url).await.expect("a scratch schema");
        let store = PostgresStore::connect(&scratch.url).await.expect("connect");
        let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let outcome: StoreResult<()> = store
            .write(runs.clone(), |tx, runs| {
                Box::pin(async move {
                    runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    // A genuine 40001 from the server, every time.
                    tx.conn
                        .0
                        .batch_execute(
                            "DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$",
                        )
                        .await?;
                    Ok(())
                })
            })
            .await;
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), ATTEMPTS);
        match outcome {
            // Retryable later: the API answers 503, not 500.
            Err(StoreError::Unavailable(message)) => {
                assert!(
                    message.contains(&format!("gave up after {ATTEMPTS} attempts")),
                    "{message}"
                );
                assert!(message.contains("40001"), "{message}");
            }
            other => panic!("expected an unavailable store, got {other:?}"),
        }
    }
}
