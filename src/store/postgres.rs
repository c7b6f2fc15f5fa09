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

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use super::gate::CommitGate;
use super::shared::{
    DUE_MEETINGS_PER_CALL, EventRow, backend, connection_state, due_bounds, event_row,
    presence_columns, presence_events, to_json, within_budget,
};
use super::{
    AttendeeOutcome, AttendeePage, AttendeePresence, AttendeeRecord, CreatedMeeting, DeadLetter,
    EndRules, MeetingRecord, NewAttendee, NodeBeat, OutboxEvent, PresenceChange, Store, StoreError,
    StoreResult, Tag, TagTarget, VersionedAttendee,
};
use crate::domain::capabilities::{Capabilities, MediaCapability};
use crate::domain::meeting_events::EventType;

/// Schema migrations, applied in order; `schema_migrations` records which have run.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE IF NOT EXISTS settings (
    name  TEXT COLLATE "C" PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meetings (
    meeting_id           TEXT COLLATE "C" PRIMARY KEY,
    account_id           TEXT COLLATE "C" NOT NULL,
    client_request_token TEXT COLLATE "C" NOT NULL,
    control_region       TEXT NOT NULL,
    media_region         TEXT NOT NULL,
    external_meeting_id  TEXT,
    meeting_host_id      TEXT,
    primary_meeting_id   TEXT COLLATE "C",
    tenant_ids           TEXT NOT NULL,
    features             TEXT,
    notifications        TEXT,
    network_type         TEXT,
    media_base_url       TEXT NOT NULL,
    max_attendees        BIGINT NOT NULL,
    created_at           BIGINT NOT NULL,
    connected            BOOLEAN NOT NULL DEFAULT FALSE,
    idle_since           BIGINT,
    UNIQUE (account_id, client_request_token)
);
CREATE INDEX IF NOT EXISTS meetings_by_account ON meetings (account_id, meeting_id);
CREATE INDEX IF NOT EXISTS meetings_by_primary ON meetings (primary_meeting_id);
CREATE INDEX IF NOT EXISTS meetings_by_age ON meetings (created_at);
CREATE TABLE IF NOT EXISTS attendees (
    meeting_id       TEXT COLLATE "C" NOT NULL REFERENCES meetings (meeting_id) ON DELETE CASCADE,
    attendee_id      TEXT COLLATE "C" NOT NULL,
    external_user_id TEXT COLLATE "C" NOT NULL,
    join_token       TEXT COLLATE "C" NOT NULL UNIQUE,
    audio            TEXT NOT NULL,
    video            TEXT NOT NULL,
    content          TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    joined           BOOLEAN,
    joined_at        BIGINT,
    left_at          BIGINT,
    dropped          BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (meeting_id, attendee_id),
    UNIQUE (meeting_id, external_user_id)
);
CREATE TABLE IF NOT EXISTS tags (
    meeting_id  TEXT COLLATE "C" NOT NULL REFERENCES meetings (meeting_id) ON DELETE CASCADE,
    attendee_id TEXT COLLATE "C" NOT NULL DEFAULT '',
    key         TEXT COLLATE "C" NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (meeting_id, attendee_id, key)
);
CREATE TABLE IF NOT EXISTS events (
    seq            BIGINT PRIMARY KEY,
    meeting_id     TEXT NOT NULL,
    targets        TEXT NOT NULL,
    body           TEXT NOT NULL,
    recorded_at_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS event_counter (
    id       INT PRIMARY KEY,
    last_seq BIGINT NOT NULL
);
INSERT INTO event_counter (id, last_seq) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
CREATE TABLE IF NOT EXISTS event_sinks (
    sink          TEXT COLLATE "C" PRIMARY KEY,
    delivered_seq BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    sink  TEXT COLLATE "C" NOT NULL,
    seq   BIGINT NOT NULL,
    error TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    body  TEXT NOT NULL,
    PRIMARY KEY (sink, seq)
);
"#,
    // Which node delivers each sink, until when (one deliverer per sink across nodes).
    r#"
ALTER TABLE event_sinks ADD COLUMN IF NOT EXISTS owner TEXT;
ALTER TABLE event_sinks ADD COLUMN IF NOT EXISTS lease_until BIGINT NOT NULL DEFAULT 0;
"#,
    // The node registry: each node's latest heartbeat (placement, and the join plane's check
    // that a meeting's node is alive).
    r#"
CREATE TABLE IF NOT EXISTS nodes (
    url        TEXT COLLATE "C" PRIMARY KEY,
    beat_at_ms BIGINT NOT NULL,
    sessions   BIGINT NOT NULL,
    stopped    BOOLEAN NOT NULL
);
"#,
    // A per-meeting version of what ListAttendees returns, moved in the transaction of every
    // change to it, so that any node can check a cached page with one primary-key read.
    r#"
ALTER TABLE meetings ADD COLUMN IF NOT EXISTS attendees_version BIGINT NOT NULL DEFAULT 0;
"#,
    // The lifecycle sweep finds idle meetings through this index instead of walking every
    // meeting each second on every node (`end_due_meetings`). Only primaries nobody is connected
    // to can idle out.
    r#"
CREATE INDEX IF NOT EXISTS meetings_idle_due ON meetings (COALESCE(idle_since, created_at))
    WHERE NOT connected AND primary_meeting_id IS NULL;
"#,
];

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

/// What a statement inside a transaction can fail with: the store's own verdicts, or the
/// database's, some of which (serialization failures, deadlocks) ask for the transaction again.
enum TxError {
    Store(StoreError),
    Db(tokio_postgres::Error),
    /// A state that a concurrent transaction can cause and a rerun resolves.
    Retry(&'static str),
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<tokio_postgres::Error> for TxError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Db(e)
    }
}

impl From<TxError> for StoreError {
    fn from(e: TxError) -> Self {
        match e {
            TxError::Store(e) => e,
            TxError::Db(e) if unreachable(&e) => StoreError::Unavailable(describe(&e)),
            TxError::Db(e) => StoreError::Backend(describe(&e)),
            TxError::Retry(why) => StoreError::Backend(why.into()),
        }
    }
}

type TxResult<T> = Result<T, TxError>;

/// The driver's error with the database's message, when it has one.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

/// Whether the error says the database cannot be reached or refuses work for now, rather than
/// that the statement or a column was wrong: the connection closed or broke (an I/O error
/// underneath), or a database error of class 08 (connection exception), 53 (insufficient
/// resources) or 57P0x (the server is shutting down or starting). A value that does not convert
/// to or from its column also has no database error, but it is a bug, not an outage: it stays a
/// 500.
fn unreachable(e: &tokio_postgres::Error) -> bool {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        return code.starts_with("08") || code.starts_with("53") || code.starts_with("57P0");
    }
    e.is_closed()
        || std::error::Error::source(e).is_some_and(|source| source.is::<std::io::Error>())
}

fn retryable(e: &TxError) -> bool {
    match e {
        TxError::Db(e) => matches!(
            e.code(),
            Some(&SqlState::T_R_SERIALIZATION_FAILURE) | Some(&SqlState::T_R_DEADLOCK_DETECTED)
        ),
        TxError::Retry(_) => true,
        TxError::Store(_) => false,
    }
}

/// One pooled connection, with the statement helpers every query goes through (statements are
/// prepared once per connection).
struct Conn(deadpool_postgres::Object);

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

impl Conn {
    async fn query(&self, sql: &str, params: Params<'_>) -> TxResult<Vec<Row>> {
        let statement = self.0.prepare_cached(sql).await?;
        Ok(self.0.query(&statement, params).await?)
    }

    async fn query_opt(&self, sql: &str, params: Params<'_>) -> TxResult<Option<Row>> {
        let statement = self.0.prepare_cached(sql).await?;
        Ok(self.0.query_opt(&statement, params).await?)
    }

    async fn query_one(&self, sql: &str, params: Params<'_>) -> TxResult<Row> {
        let statement = self.0.prepare_cached(sql).await?;
        Ok(self.0.query_one(&statement, params).await?)
    }

    async fn execute(&self, sql: &str, params: Params<'_>) -> TxResult<u64> {
        let statement = self.0.prepare_cached(sql).await?;
        Ok(self.0.execute(&statement, params).await?)
    }
}

/// An open transaction: its connection, and the events it will append to the outbox at COMMIT.
struct Tx {
    conn: Conn,
    events: Vec<EventRow>,
}

impl std::ops::Deref for Tx {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.conn
    }
}

impl Tx {
    /// Queues one event for the outbox; it is written, numbered, with the transaction's COMMIT.
    fn record_event(
        &mut self,
        kind: EventType,
        meeting: &MeetingRecord,
        attendee: Option<(&str, &str)>,
        at: i64,
    ) -> TxResult<()> {
        self.events.push(event_row(kind, meeting, attendee, at)?);
        Ok(())
    }

    /// Numbers the queued events from the counter row and inserts them, in one statement. The
    /// counter row stays locked until COMMIT, which is what makes sequence order commit order.
    async fn flush_events(&mut self) -> TxResult<()> {
        if self.events.is_empty() {
            return Ok(());
        }
        let count = self.events.len() as i64;
        let (mut meeting_ids, mut targets, mut bodies, mut recorded) = (
            Vec::with_capacity(self.events.len()),
            Vec::with_capacity(self.events.len()),
            Vec::with_capacity(self.events.len()),
            Vec::with_capacity(self.events.len()),
        );
        for event in self.events.drain(..) {
            meeting_ids.push(event.meeting_id);
            targets.push(event.targets);
            bodies.push(event.body);
            recorded.push(event.recorded_at_ms);
        }
        self.conn
            .execute(
                "WITH counter AS (\
                   UPDATE event_counter SET last_seq = last_seq + $1 WHERE id = 1 \
                   RETURNING last_seq) \
                 INSERT INTO events (seq, meeting_id, targets, body, recorded_at_ms) \
                 SELECT counter.last_seq - $1 + e.ord, e.meeting_id, e.targets, e.body, e.recorded_at_ms \
                 FROM counter, unnest($2::TEXT[], $3::TEXT[], $4::TEXT[], $5::BIGINT[]) \
                   WITH ORDINALITY AS e (meeting_id, targets, body, recorded_at_ms, ord)",
                &[&count, &meeting_ids, &targets, &bodies, &recorded],
            )
            .await?;
        Ok(())
    }
}

/// The work of one write transaction. It may run more than once (after a serialization failure
/// or deadlock), so it clones what it needs from its captures on each run.
type TxFuture<'a, T> = Pin<Box<dyn Future<Output = TxResult<T>> + Send + 'a>>;

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

    /// Scopes [`Store::reset_presence`] to the meetings this node hosts, those whose media
    /// (and so signaling) URL is `public_url`: with several nodes on one database, a node that
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

    /// Runs `work` in one transaction and commits it, unless it fails, in which case nothing it
    /// wrote is kept. Serialization failures and deadlocks run it again, at most [`ATTEMPTS`]
    /// times. It runs on its own task, so a caller that stops waiting cannot leave a
    /// transaction half-done on a pooled connection.
    async fn write<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'a> Fn(&'a mut Tx) -> TxFuture<'a, T> + Send + Sync + 'static,
    {
        let started = std::time::Instant::now();
        let gate = CommitGate::current();
        let pool = self.pool.clone();
        let written = tokio::spawn(async move {
            let mut attempt = 1;
            loop {
                match Self::attempt(&pool, gate.as_ref(), &work).await {
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

    async fn attempt<T, F>(pool: &Pool, gate: Option<&Arc<CommitGate>>, work: &F) -> TxResult<T>
    where
        F: for<'a> Fn(&'a mut Tx) -> TxFuture<'a, T>,
    {
        let mut tx = Tx {
            conn: Self::conn(pool).await?,
            events: Vec::new(),
        };
        tx.conn.0.batch_execute("BEGIN").await?;
        let outcome = async {
            let value = work(&mut tx).await?;
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

    /// Runs `read` on a pooled connection, outside any explicit transaction.
    async fn read<T>(&self, read: impl AsyncFnOnce(&Conn) -> TxResult<T>) -> StoreResult<T> {
        let started = std::time::Instant::now();
        let conn = Self::conn(&self.pool).await?;
        let value = read(&conn).await?;
        crate::metrics::record_store("postgres", "read", started);
        Ok(value)
    }

    async fn migrate(&self) -> StoreResult<()> {
        // The ledger itself. Two nodes creating it at once can collide in the catalog even with
        // IF NOT EXISTS (on the table's name, its row type or its index: 23505, 42P07, 42710);
        // the loser tries again and finds it.
        let conn = Self::conn(&self.pool).await?;
        let mut attempt = 1;
        while let Err(e) = conn
            .0
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (\
                   version BIGINT PRIMARY KEY, applied_at_ms BIGINT NOT NULL)",
            )
            .await
        {
            let racing = matches!(
                e.code(),
                Some(&SqlState::UNIQUE_VIOLATION)
                    | Some(&SqlState::DUPLICATE_TABLE)
                    | Some(&SqlState::DUPLICATE_OBJECT)
                    | Some(&SqlState::T_R_SERIALIZATION_FAILURE)
            );
            if !racing || attempt >= ATTEMPTS {
                return Err(StoreError::Backend(format!(
                    "creating schema_migrations: {}",
                    describe(&e)
                )));
            }
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(conn);
        for (index, sql) in MIGRATIONS.iter().enumerate() {
            let version = index as i64 + 1;
            self.write(move |tx| {
                Box::pin(async move {
                    let now_ms = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_millis() as i64)
                        .unwrap_or_default();
                    // Claims the version; a concurrent node's claim makes this one wait for its
                    // COMMIT, then insert nothing.
                    let claimed = tx
                        .execute(
                            "INSERT INTO schema_migrations (version, applied_at_ms) \
                             VALUES ($1, $2) ON CONFLICT (version) DO NOTHING",
                            &[&version, &now_ms],
                        )
                        .await?;
                    if claimed == 1 {
                        tx.conn.0.batch_execute(sql).await?;
                    }
                    Ok(())
                })
            })
            .await
            .map_err(|e| StoreError::Backend(format!("schema migration {version}: {e}")))?;
        }
        Ok(())
    }
}

const MEETING_COLUMNS: &str = "account_id, meeting_id, client_request_token, control_region, \
    media_region, external_meeting_id, meeting_host_id, primary_meeting_id, tenant_ids, features, \
    notifications, network_type, media_base_url, max_attendees, created_at";

const ATTENDEE_COLUMNS: &str =
    "meeting_id, attendee_id, external_user_id, join_token, audio, video, content, created_at";

fn json_column<T: serde::de::DeserializeOwned>(name: &str, text: &str) -> TxResult<T> {
    serde_json::from_str(text)
        .map_err(|e| TxError::Store(StoreError::Backend(format!("column {name}: {e}"))))
}

fn meeting_from_row(row: &Row) -> TxResult<MeetingRecord> {
    let tenant_ids: String = row.try_get(8)?;
    let features: Option<String> = row.try_get(9)?;
    let notifications: Option<String> = row.try_get(10)?;
    let max_attendees: i64 = row.try_get(13)?;
    Ok(MeetingRecord {
        account_id: row.try_get(0)?,
        meeting_id: row.try_get(1)?,
        client_request_token: row.try_get(2)?,
        control_region: row.try_get(3)?,
        media_region: row.try_get(4)?,
        external_meeting_id: row.try_get(5)?,
        meeting_host_id: row.try_get(6)?,
        primary_meeting_id: row.try_get(7)?,
        tenant_ids: json_column("tenant_ids", &tenant_ids)?,
        features: features.map(|f| json_column("features", &f)).transpose()?,
        notifications: notifications
            .map(|n| json_column("notifications", &n))
            .transpose()?,
        network_type: row.try_get(11)?,
        media_base_url: row.try_get(12)?,
        max_attendees: u32::try_from(max_attendees).map_err(backend)?,
        created_at: row.try_get(14)?,
    })
}

fn capability(text: &str) -> TxResult<MediaCapability> {
    MediaCapability::parse(text).ok_or_else(|| {
        TxError::Store(StoreError::Backend(format!(
            "unknown media capability {text}"
        )))
    })
}

fn attendee_from_row(row: &Row) -> TxResult<AttendeeRecord> {
    Ok(AttendeeRecord {
        meeting_id: row.try_get(0)?,
        attendee_id: row.try_get(1)?,
        external_user_id: row.try_get(2)?,
        join_token: row.try_get(3)?,
        capabilities: Capabilities {
            audio: capability(row.try_get(4)?)?,
            video: capability(row.try_get(5)?)?,
            content: capability(row.try_get(6)?)?,
        },
        created_at: row.try_get(7)?,
    })
}

async fn find_meeting(conn: &Conn, account_id: &str, meeting_id: &str) -> TxResult<MeetingRecord> {
    let row = conn
        .query_opt(
            &format!(
                "SELECT {MEETING_COLUMNS} FROM meetings WHERE account_id = $1 AND meeting_id = $2"
            ),
            &[&account_id, &meeting_id],
        )
        .await?;
    match row {
        Some(row) => meeting_from_row(&row),
        None => Err(StoreError::MeetingNotFound.into()),
    }
}

/// The account's meeting, its row locked until the transaction ends: every write that touches
/// a meeting's attendees, tags or presence takes this lock first, so they run one at a time per
/// meeting on every node.
async fn lock_meeting(tx: &Tx, account_id: &str, meeting_id: &str) -> TxResult<MeetingRecord> {
    let row = tx
        .query_opt(
            &format!(
                "SELECT {MEETING_COLUMNS} FROM meetings WHERE account_id = $1 AND meeting_id = $2 \
                 FOR UPDATE"
            ),
            &[&account_id, &meeting_id],
        )
        .await?;
    match row {
        Some(row) => meeting_from_row(&row),
        None => Err(StoreError::MeetingNotFound.into()),
    }
}

async fn find_attendee(
    conn: &Conn,
    meeting_id: &str,
    attendee_id: &str,
) -> TxResult<AttendeeRecord> {
    let row = conn
        .query_opt(
            &format!(
                "SELECT {ATTENDEE_COLUMNS} FROM attendees WHERE meeting_id = $1 AND attendee_id = $2"
            ),
            &[&meeting_id, &attendee_id],
        )
        .await?;
    match row {
        Some(row) => attendee_from_row(&row),
        None => Err(StoreError::AttendeeNotFound.into()),
    }
}

/// Moves the meeting's attendee version, in the transaction of the change to its attendees (the
/// caller holds the meeting's row lock, or created it), so that every node's cached
/// ListAttendees pages of the meeting stop matching when it commits.
async fn bump_attendees_version(tx: &Tx, meeting_id: &str) -> TxResult<()> {
    tx.execute(
        "UPDATE meetings SET attendees_version = attendees_version + 1 WHERE meeting_id = $1",
        &[&meeting_id],
    )
    .await?;
    Ok(())
}

/// The account's meeting's attendee version: one primary-key read, which is also the account
/// check.
async fn attendees_version(conn: &Conn, account_id: &str, meeting_id: &str) -> TxResult<i64> {
    let row = conn
        .query_opt(
            "SELECT attendees_version FROM meetings WHERE meeting_id = $1 AND account_id = $2",
            &[&meeting_id, &account_id],
        )
        .await?;
    match row {
        Some(row) => Ok(row.try_get(0)?),
        None => Err(StoreError::MeetingNotFound.into()),
    }
}

async fn insert_tags(tx: &Tx, meeting_id: &str, attendee_id: &str, tags: &[Tag]) -> TxResult<()> {
    for tag in tags {
        tx.execute(
            "INSERT INTO tags (meeting_id, attendee_id, key, value) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (meeting_id, attendee_id, key) DO UPDATE SET value = EXCLUDED.value",
            &[&meeting_id, &attendee_id, &tag.key, &tag.value],
        )
        .await?;
    }
    Ok(())
}

/// How many attendees the meeting has.
async fn attendee_count(tx: &Tx, meeting_id: &str) -> TxResult<i64> {
    Ok(tx
        .query_one(
            "SELECT COUNT(*) FROM attendees WHERE meeting_id = $1",
            &[&meeting_id],
        )
        .await?
        .try_get(0)?)
}

/// Inserts attendees one by one under the meeting's cap. The caller holds the meeting's row lock
/// (or created the meeting in this transaction), so the count cannot change underneath.
async fn insert_attendees(
    tx: &mut Tx,
    meeting: &MeetingRecord,
    attendees: Vec<NewAttendee>,
) -> TxResult<Vec<AttendeeOutcome>> {
    let select_existing = format!(
        "SELECT {ATTENDEE_COLUMNS} FROM attendees WHERE meeting_id = $1 AND external_user_id = $2"
    );
    let mut count =
        u32::try_from(attendee_count(tx, &meeting.meeting_id).await?).map_err(backend)?;
    let mut outcomes = Vec::with_capacity(attendees.len());
    for new in attendees {
        let existing = tx
            .query_opt(
                &select_existing,
                &[&meeting.meeting_id, &new.external_user_id],
            )
            .await?;
        if let Some(existing) = existing {
            outcomes.push(AttendeeOutcome::Existing(attendee_from_row(&existing)?));
            continue;
        }
        if count >= meeting.max_attendees {
            outcomes.push(AttendeeOutcome::MeetingFull {
                external_user_id: new.external_user_id,
                cap: meeting.max_attendees,
            });
            continue;
        }
        let inserted = tx
            .execute(
                &format!(
                    "INSERT INTO attendees ({ATTENDEE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     ON CONFLICT (meeting_id, external_user_id) DO NOTHING"
                ),
                &[
                    &meeting.meeting_id,
                    &new.attendee_id,
                    &new.external_user_id,
                    &new.join_token,
                    &new.capabilities.audio.as_str(),
                    &new.capabilities.video.as_str(),
                    &new.capabilities.content.as_str(),
                    &new.created_at,
                ],
            )
            .await?;
        if inserted == 0 {
            // Only reachable without the meeting lock; the row that won is the answer.
            let existing = tx
                .query_opt(
                    &select_existing,
                    &[&meeting.meeting_id, &new.external_user_id],
                )
                .await?
                .ok_or(TxError::Retry("an attendee vanished while being created"))?;
            outcomes.push(AttendeeOutcome::Existing(attendee_from_row(&existing)?));
            continue;
        }
        insert_tags(tx, &meeting.meeting_id, &new.attendee_id, &new.tags).await?;
        tx.record_event(
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
        bump_attendees_version(tx, &meeting.meeting_id).await?;
    }
    Ok(outcomes)
}

/// Checks that a tag target exists, locking its meeting, and returns its attendee column value
/// ('' for a meeting).
async fn lock_tag_target(
    tx: &Tx,
    account_id: &str,
    target: &TagTarget,
) -> TxResult<(String, String)> {
    match target {
        TagTarget::Meeting(meeting_id) => {
            lock_meeting(tx, account_id, meeting_id).await?;
            Ok((meeting_id.clone(), String::new()))
        }
        TagTarget::Attendee(meeting_id, attendee_id) => {
            lock_meeting(tx, account_id, meeting_id).await?;
            find_attendee(tx, meeting_id, attendee_id).await?;
            Ok((meeting_id.clone(), attendee_id.clone()))
        }
    }
}

/// Ends a meeting of the account and its replicas at `at`: attendees still connected are
/// announced as left, then the meeting as ended, and the rows go. Returns the ids that ended
/// (none when the account has no such meeting, or another node just ended it).
async fn end_meeting(
    tx: &mut Tx,
    account_id: &str,
    meeting_id: &str,
    at: i64,
) -> TxResult<Vec<String>> {
    let primary = match lock_meeting(tx, account_id, meeting_id).await {
        Ok(meeting) => meeting,
        Err(TxError::Store(StoreError::MeetingNotFound)) => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let replicas = tx
        .query(
            &format!(
                "SELECT {MEETING_COLUMNS} FROM meetings WHERE primary_meeting_id = $1 \
                 ORDER BY meeting_id FOR UPDATE"
            ),
            &[&meeting_id],
        )
        .await?
        .iter()
        .map(meeting_from_row)
        .collect::<TxResult<Vec<_>>>()?;
    let mut ended = Vec::with_capacity(1 + replicas.len());
    for meeting in std::iter::once(primary).chain(replicas) {
        let connected = tx
            .query(
                "SELECT attendee_id, external_user_id FROM attendees \
                 WHERE meeting_id = $1 AND joined ORDER BY attendee_id",
                &[&meeting.meeting_id],
            )
            .await?;
        for row in &connected {
            let (attendee_id, external_user_id): (String, String) =
                (row.try_get(0)?, row.try_get(1)?);
            tx.record_event(
                EventType::AttendeeLeft,
                &meeting,
                Some((&attendee_id, &external_user_id)),
                at,
            )?;
        }
        tx.record_event(EventType::MeetingEnded, &meeting, None, at)?;
        tx.execute(
            "DELETE FROM meetings WHERE meeting_id = $1",
            &[&meeting.meeting_id],
        )
        .await?;
        ended.push(meeting.meeting_id);
    }
    Ok(ended)
}

async fn advance_cursor(tx: &Tx, sink: &str, seq: i64) -> TxResult<()> {
    tx.execute(
        "INSERT INTO event_sinks (sink, delivered_seq) VALUES ($1, $2) \
         ON CONFLICT (sink) DO UPDATE SET \
           delivered_seq = GREATEST(event_sinks.delivered_seq, EXCLUDED.delivered_seq)",
        &[&sink, &seq],
    )
    .await?;
    Ok(())
}

/// Recomputes whether anyone is connected to the meeting; when the last one went, its idle
/// clock starts at `at`.
async fn refresh_connected(tx: &Tx, meeting_id: &str, at: i64) -> TxResult<()> {
    // Every right-hand side reads the row as it was, so `connected` is the old state.
    tx.execute(
        "UPDATE meetings SET \
           idle_since = CASE \
             WHEN EXISTS (SELECT 1 FROM attendees WHERE meeting_id = $1 AND joined) THEN idle_since \
             WHEN connected THEN $2 \
             ELSE idle_since END, \
           connected = EXISTS (SELECT 1 FROM attendees WHERE meeting_id = $1 AND joined) \
         WHERE meeting_id = $1",
        &[&meeting_id, &at],
    )
    .await?;
    Ok(())
}

fn insert_meeting_sql() -> String {
    format!(
        "INSERT INTO meetings ({MEETING_COLUMNS}) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
         ON CONFLICT (account_id, client_request_token) DO NOTHING"
    )
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn create_meeting(
        &self,
        meeting: MeetingRecord,
        tags: Vec<Tag>,
        attendees: Vec<NewAttendee>,
    ) -> StoreResult<CreatedMeeting> {
        let tenant_ids = to_json(&meeting.tenant_ids)?;
        let features = meeting.features.as_ref().map(to_json).transpose()?;
        let notifications = meeting.notifications.as_ref().map(to_json).transpose()?;
        self.write(move |tx| {
            let (meeting, tags, attendees) = (meeting.clone(), tags.clone(), attendees.clone());
            let (tenant_ids, features, notifications) =
                (tenant_ids.clone(), features.clone(), notifications.clone());
            Box::pin(async move {
                let max_attendees = i64::from(meeting.max_attendees);
                let inserted = tx
                    .execute(
                        &insert_meeting_sql(),
                        &[
                            &meeting.account_id,
                            &meeting.meeting_id,
                            &meeting.client_request_token,
                            &meeting.control_region,
                            &meeting.media_region,
                            &meeting.external_meeting_id,
                            &meeting.meeting_host_id,
                            &meeting.primary_meeting_id,
                            &tenant_ids,
                            &features,
                            &notifications,
                            &meeting.network_type,
                            &meeting.media_base_url,
                            &max_attendees,
                            &meeting.created_at,
                        ],
                    )
                    .await?;
                if inserted == 0 {
                    // The account already used this ClientRequestToken (perhaps a moment ago on
                    // another node, whose COMMIT this insert waited for): return that meeting.
                    let earlier = tx
                        .query_opt(
                            &format!(
                                "SELECT {MEETING_COLUMNS} FROM meetings \
                                 WHERE account_id = $1 AND client_request_token = $2"
                            ),
                            &[&meeting.account_id, &meeting.client_request_token],
                        )
                        .await?
                        .ok_or(TxError::Retry("a meeting vanished while being created"))?;
                    return Ok(CreatedMeeting {
                        meeting: meeting_from_row(&earlier)?,
                        created: false,
                        attendees: Vec::new(),
                    });
                }
                tx.record_event(
                    EventType::MeetingStarted,
                    &meeting,
                    None,
                    meeting.created_at,
                )?;
                insert_tags(tx, &meeting.meeting_id, "", &tags).await?;
                let attendees = insert_attendees(tx, &meeting, attendees).await?;
                Ok(CreatedMeeting {
                    meeting,
                    created: true,
                    attendees,
                })
            })
        })
        .await
    }

    async fn get_meeting(&self, account_id: &str, meeting_id: &str) -> StoreResult<MeetingRecord> {
        self.read(async |conn| find_meeting(conn, account_id, meeting_id).await)
            .await
    }

    async fn list_meetings(
        &self,
        account_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<MeetingRecord>> {
        let (after, limit) = (after.unwrap_or(""), limit as i64);
        self.read(async |conn| {
            conn.query(
                &format!(
                    "SELECT {MEETING_COLUMNS} FROM meetings WHERE account_id = $1 AND meeting_id > $2 \
                     ORDER BY meeting_id LIMIT $3"
                ),
                &[&account_id, &after, &limit],
            )
            .await?
            .iter()
            .map(meeting_from_row)
            .collect()
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
            let (account_id, meeting_id) = (account_id.clone(), meeting_id.clone());
            Box::pin(async move {
                let ended = end_meeting(tx, &account_id, &meeting_id, at).await?;
                if ended.is_empty() {
                    return Err(StoreError::MeetingNotFound.into());
                }
                Ok(ended)
            })
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
            Box::pin(async move {
                let (created_by, idle_since_by) = due_bounds(now, rules);
                // Replicas never end by their own clocks, only with their primary. Candidates
                // come from three indexed arms (too old, idle, orphaned replicas), each stopping
                // at the limit, so a sweep that finds nothing reads a few index pages instead of
                // every meeting (measured on 50,000 meetings: 23 ms -> 0.3 ms, every second on
                // every node). The candidates are locked in id order and the whole condition
                // is checked again on each locked row, so two nodes sweeping at once end each
                // meeting once.
                let due = tx
                    .query(
                        "SELECT m.account_id, m.meeting_id FROM meetings AS m \
                         WHERE m.meeting_id IN ( \
                            (SELECT meeting_id FROM meetings \
                             WHERE primary_meeting_id IS NULL AND created_at <= $1 \
                             ORDER BY created_at LIMIT $3) \
                            UNION ALL \
                            (SELECT meeting_id FROM meetings \
                             WHERE NOT connected AND primary_meeting_id IS NULL \
                               AND COALESCE(idle_since, created_at) <= $2 \
                             ORDER BY COALESCE(idle_since, created_at) LIMIT $3) \
                            UNION ALL \
                            (SELECT c.meeting_id FROM meetings AS c \
                             WHERE c.primary_meeting_id IS NOT NULL AND NOT EXISTS \
                               (SELECT 1 FROM meetings AS p WHERE p.meeting_id = c.primary_meeting_id) \
                             LIMIT $3)) \
                         AND ((m.primary_meeting_id IS NULL AND (m.created_at <= $1 \
                            OR (NOT m.connected AND COALESCE(m.idle_since, m.created_at) <= $2))) \
                         OR (m.primary_meeting_id IS NOT NULL AND NOT EXISTS \
                            (SELECT 1 FROM meetings AS p WHERE p.meeting_id = m.primary_meeting_id))) \
                         ORDER BY m.meeting_id LIMIT $3 FOR UPDATE OF m",
                        &[&created_by, &idle_since_by, &DUE_MEETINGS_PER_CALL],
                    )
                    .await?;
                let mut ended: Vec<String> = Vec::new();
                let mut removed = 0;
                for row in &due {
                    let (account_id, meeting_id): (String, String) =
                        (row.try_get(0)?, row.try_get(1)?);
                    let attendees =
                        usize::try_from(attendee_count(tx, &meeting_id).await?).unwrap_or(0);
                    if !within_budget(!ended.is_empty(), removed, attendees, attendee_budget) {
                        break;
                    }
                    removed += attendees;
                    ended.extend(end_meeting(tx, &account_id, &meeting_id, now).await?);
                }
                Ok(ended)
            })
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
            let (account_id, meeting_id, attendees) =
                (account_id.clone(), meeting_id.clone(), attendees.clone());
            Box::pin(async move {
                let meeting = lock_meeting(tx, &account_id, &meeting_id).await?;
                insert_attendees(tx, &meeting, attendees).await
            })
        })
        .await
    }

    async fn get_attendee_versioned(
        &self,
        account_id: &str,
        meeting_id: &str,
        attendee_id: &str,
    ) -> StoreResult<VersionedAttendee> {
        self.read(async |conn| {
            // The account check, the attendee and the version in one statement (one snapshot,
            // one round trip): no row when the account has no such meeting, a row of NULL
            // attendee columns when the attendee is gone.
            let row = conn
                .query_opt(
                    &format!(
                        "SELECT a.*, m.attendees_version FROM meetings AS m LEFT JOIN LATERAL (\
                           SELECT {ATTENDEE_COLUMNS} FROM attendees \
                           WHERE meeting_id = m.meeting_id AND attendee_id = $3) AS a ON TRUE \
                         WHERE m.meeting_id = $1 AND m.account_id = $2"
                    ),
                    &[&meeting_id, &account_id, &attendee_id],
                )
                .await?
                .ok_or(StoreError::MeetingNotFound)?;
            match row.try_get::<_, Option<String>>(1)? {
                Some(_) => Ok(VersionedAttendee {
                    // After the attendee columns, which attendee_from_row reads from 0.
                    version: row.try_get(8)?,
                    attendee: attendee_from_row(&row)?,
                }),
                None => Err(StoreError::AttendeeNotFound.into()),
            }
        })
        .await
    }

    async fn attendees_version(&self, account_id: &str, meeting_id: &str) -> StoreResult<i64> {
        self.read(async |conn| attendees_version(conn, account_id, meeting_id).await)
            .await
    }

    async fn list_attendees_versioned(
        &self,
        account_id: &str,
        meeting_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<AttendeePage> {
        let (after, limit) = (after.unwrap_or(""), limit as i64);
        self.read(async |conn| {
            // One statement, so the version and the page come from one snapshot (at any
            // isolation level) in one round trip. The meeting's row is there even with no
            // attendee after the cursor: the LEFT JOIN then yields one row of NULLs.
            let rows = conn
                .query(
                    &format!(
                        "SELECT a.*, m.attendees_version FROM meetings AS m LEFT JOIN LATERAL (\
                           SELECT {ATTENDEE_COLUMNS} FROM attendees \
                           WHERE meeting_id = m.meeting_id AND attendee_id > $3 \
                           ORDER BY attendee_id LIMIT $4) AS a ON TRUE \
                         WHERE m.meeting_id = $1 AND m.account_id = $2 \
                         ORDER BY a.attendee_id"
                    ),
                    &[&meeting_id, &account_id, &after, &limit],
                )
                .await?;
            let Some(first) = rows.first() else {
                return Err(StoreError::MeetingNotFound.into());
            };
            // The version follows the attendee columns, which attendee_from_row reads from 0.
            let version: i64 = first.try_get(8)?;
            let mut attendees = Vec::with_capacity(rows.len());
            for row in &rows {
                if row.try_get::<_, Option<&str>>(1)?.is_some() {
                    attendees.push(attendee_from_row(row)?);
                }
            }
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
            let (account_id, meeting_id, attendee_id) =
                (account_id.clone(), meeting_id.clone(), attendee_id.clone());
            Box::pin(async move {
                let meeting = lock_meeting(tx, &account_id, &meeting_id).await?;
                let deleted = tx
                    .query_opt(
                        "DELETE FROM attendees WHERE meeting_id = $1 AND attendee_id = $2 \
                         RETURNING external_user_id",
                        &[&meeting_id, &attendee_id],
                    )
                    .await?;
                let Some(deleted) = deleted else {
                    return Err(StoreError::AttendeeNotFound.into());
                };
                let external_user_id: String = deleted.try_get(0)?;
                tx.execute(
                    "DELETE FROM tags WHERE meeting_id = $1 AND attendee_id = $2",
                    &[&meeting_id, &attendee_id],
                )
                .await?;
                bump_attendees_version(tx, &meeting_id).await?;
                tx.record_event(
                    EventType::AttendeeDeleted,
                    &meeting,
                    Some((&attendee_id, &external_user_id)),
                    at,
                )
            })
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
            let (account_id, meeting_id, attendee_id) =
                (account_id.clone(), meeting_id.clone(), attendee_id.clone());
            Box::pin(async move {
                lock_meeting(tx, &account_id, &meeting_id).await?;
                let updated = tx
                    .query_opt(
                        &format!(
                            "UPDATE attendees SET audio = $3, video = $4, content = $5 \
                             WHERE meeting_id = $1 AND attendee_id = $2 RETURNING {ATTENDEE_COLUMNS}"
                        ),
                        &[
                            &meeting_id,
                            &attendee_id,
                            &capabilities.audio.as_str(),
                            &capabilities.video.as_str(),
                            &capabilities.content.as_str(),
                        ],
                    )
                    .await?;
                let Some(row) = updated else {
                    return Err(StoreError::AttendeeNotFound.into());
                };
                bump_attendees_version(tx, &meeting_id).await?;
                attendee_from_row(&row)
            })
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
            excluded.to_vec(),
        );
        self.write(move |tx| {
            let (account_id, meeting_id, excluded) =
                (account_id.clone(), meeting_id.clone(), excluded.clone());
            Box::pin(async move {
                lock_meeting(tx, &account_id, &meeting_id).await?;
                let updated = tx
                    .execute(
                        "UPDATE attendees SET audio = $3, video = $4, content = $5 \
                         WHERE meeting_id = $1 AND attendee_id <> ALL ($2::TEXT[])",
                        &[
                            &meeting_id,
                            &excluded,
                            &capabilities.audio.as_str(),
                            &capabilities.video.as_str(),
                            &capabilities.content.as_str(),
                        ],
                    )
                    .await?;
                if updated > 0 {
                    bump_attendees_version(tx, &meeting_id).await?;
                }
                Ok(())
            })
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
            let (account_id, target, tags) = (account_id.clone(), target.clone(), tags.clone());
            Box::pin(async move {
                let (meeting_id, attendee_id) = lock_tag_target(tx, &account_id, &target).await?;
                insert_tags(tx, &meeting_id, &attendee_id, &tags).await?;
                let total: i64 = tx
                    .query_one(
                        "SELECT COUNT(*) FROM tags WHERE meeting_id = $1 AND attendee_id = $2",
                        &[&meeting_id, &attendee_id],
                    )
                    .await?
                    .try_get(0)?;
                if usize::try_from(total).map_or(true, |total| total > limit) {
                    // The transaction rolls back, so the new tags are not kept.
                    return Err(StoreError::TooManyTags { limit }.into());
                }
                Ok(())
            })
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
            let (account_id, target, keys) = (account_id.clone(), target.clone(), keys.clone());
            Box::pin(async move {
                let (meeting_id, attendee_id) = lock_tag_target(tx, &account_id, &target).await?;
                tx.execute(
                    "DELETE FROM tags WHERE meeting_id = $1 AND attendee_id = $2 \
                     AND key = ANY ($3::TEXT[])",
                    &[&meeting_id, &attendee_id, &keys],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn list_tags(&self, account_id: &str, target: &TagTarget) -> StoreResult<Vec<Tag>> {
        self.read(async |conn| {
            let (meeting_id, attendee_id) = match target {
                TagTarget::Meeting(meeting_id) => {
                    find_meeting(conn, account_id, meeting_id).await?;
                    (meeting_id.as_str(), "")
                }
                TagTarget::Attendee(meeting_id, attendee_id) => {
                    find_meeting(conn, account_id, meeting_id).await?;
                    find_attendee(conn, meeting_id, attendee_id).await?;
                    (meeting_id.as_str(), attendee_id.as_str())
                }
            };
            conn.query(
                "SELECT key, value FROM tags WHERE meeting_id = $1 AND attendee_id = $2 ORDER BY key",
                &[&meeting_id, &attendee_id],
            )
            .await?
            .iter()
            .map(|row| {
                Ok(Tag {
                    key: row.try_get(0)?,
                    value: row.try_get(1)?,
                })
            })
            .collect()
        })
        .await
    }

    async fn find_attendee_by_join_token(
        &self,
        join_token: &str,
    ) -> StoreResult<Option<AttendeeRecord>> {
        self.read(async |conn| {
            conn.query_opt(
                &format!("SELECT {ATTENDEE_COLUMNS} FROM attendees WHERE join_token = $1"),
                &[&join_token],
            )
            .await?
            .as_ref()
            .map(attendee_from_row)
            .transpose()
        })
        .await
    }

    async fn meeting_exists(&self, meeting_id: &str) -> StoreResult<bool> {
        self.read(async |conn| {
            Ok(conn
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM meetings WHERE meeting_id = $1)",
                    &[&meeting_id],
                )
                .await?
                .try_get(0)?)
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
            let (meeting_id, attendee_id, shown) =
                (meeting_id.clone(), attendee_id.clone(), shown.clone());
            Box::pin(async move {
                let Some(meeting) = tx
                    .query_opt(
                        &format!("SELECT {MEETING_COLUMNS} FROM meetings WHERE meeting_id = $1"),
                        &[&meeting_id],
                    )
                    .await?
                else {
                    return Ok(());
                };
                let meeting = meeting_from_row(&meeting)?;
                let attendee = tx
                    .query_opt(
                        "SELECT external_user_id FROM attendees \
                         WHERE meeting_id = $1 AND attendee_id = $2",
                        &[&meeting_id, &attendee_id],
                    )
                    .await?;
                if let Some(attendee) = attendee {
                    let external_user_id: String = attendee.try_get(0)?;
                    tx.record_event(kind, &meeting, Some((&shown, &external_user_id)), at)?;
                }
                Ok(())
            })
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
            let (meeting_id, attendee_id) = (meeting_id.clone(), attendee_id.clone());
            Box::pin(async move {
                // The meeting first, as every writer locks it (and a meeting that is gone has
                // nobody to record).
                let Some(meeting) = tx
                    .query_opt(
                        &format!(
                            "SELECT {MEETING_COLUMNS} FROM meetings WHERE meeting_id = $1 FOR UPDATE"
                        ),
                        &[&meeting_id],
                    )
                    .await?
                else {
                    return Ok(());
                };
                let meeting = meeting_from_row(&meeting)?;
                let (joined, dropped, column) = presence_columns(change);
                let changed = tx
                    .query_opt(
                        &format!(
                            "UPDATE attendees SET joined = $3, dropped = $4, {column} = $5 \
                             WHERE meeting_id = $1 AND attendee_id = $2 RETURNING external_user_id"
                        ),
                        &[&meeting_id, &attendee_id, &joined, &dropped, &at],
                    )
                    .await?;
                if let Some(changed) = changed {
                    let external_user_id: String = changed.try_get(0)?;
                    for kind in presence_events(change) {
                        tx.record_event(
                            *kind,
                            &meeting,
                            Some((&attendee_id, &external_user_id)),
                            at,
                        )?;
                    }
                }
                refresh_connected(tx, &meeting_id, at).await
            })
        })
        .await
    }

    async fn meeting_presence(
        &self,
        account_id: &str,
        meeting_id: &str,
    ) -> StoreResult<Vec<AttendeePresence>> {
        self.read(async |conn| {
            find_meeting(conn, account_id, meeting_id).await?;
            conn.query(
                "SELECT attendee_id, external_user_id, joined, dropped, joined_at, left_at \
                 FROM attendees WHERE meeting_id = $1 ORDER BY attendee_id",
                &[&meeting_id],
            )
            .await?
            .iter()
            .map(|row| {
                Ok(AttendeePresence {
                    attendee_id: row.try_get(0)?,
                    external_user_id: row.try_get(1)?,
                    state: connection_state(row.try_get(2)?, row.try_get(3)?),
                    joined_at: row.try_get(4)?,
                    left_at: row.try_get(5)?,
                })
            })
            .collect()
        })
        .await
    }

    async fn reset_presence(&self, at: i64) -> StoreResult<()> {
        let node = self.node.as_deref().map(str::to_string);
        self.write(move |tx| {
            let node = node.clone();
            Box::pin(async move {
                // Meetings before attendees: the lock order of every other writer.
                match &node {
                    None => {
                        tx.execute(
                            "UPDATE meetings SET connected = FALSE, idle_since = $1 \
                             WHERE connected",
                            &[&at],
                        )
                        .await?;
                        tx.execute(
                            "UPDATE attendees SET joined = FALSE, dropped = TRUE, left_at = $1 \
                             WHERE joined",
                            &[&at],
                        )
                        .await?;
                    }
                    Some(node) => {
                        tx.execute(
                            "UPDATE meetings SET connected = FALSE, idle_since = $1 \
                             WHERE connected AND media_base_url = $2",
                            &[&at, node],
                        )
                        .await?;
                        tx.execute(
                            "UPDATE attendees SET joined = FALSE, dropped = TRUE, left_at = $1 \
                             WHERE joined AND meeting_id IN \
                               (SELECT meeting_id FROM meetings WHERE media_base_url = $2)",
                            &[&at, node],
                        )
                        .await?;
                    }
                }
                Ok(())
            })
        })
        .await
    }

    async fn presence(
        &self,
        meeting_id: &str,
        attendee_id: &str,
    ) -> StoreResult<(Option<bool>, Option<i64>, Option<i64>)> {
        self.read(async |conn| {
            let row = conn
                .query_opt(
                    "SELECT joined, joined_at, left_at FROM attendees \
                     WHERE meeting_id = $1 AND attendee_id = $2",
                    &[&meeting_id, &attendee_id],
                )
                .await?
                .ok_or(StoreError::AttendeeNotFound)?;
            Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
        })
        .await
    }

    async fn outbox_after(&self, after: i64, limit: usize) -> StoreResult<Vec<OutboxEvent>> {
        let limit = limit as i64;
        self.read(async |conn| {
            conn.query(
                "SELECT seq, meeting_id, targets, body, recorded_at_ms FROM events \
                 WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&after, &limit],
            )
            .await?
            .iter()
            .map(|row| {
                let targets: String = row.try_get(2)?;
                Ok(OutboxEvent {
                    seq: row.try_get(0)?,
                    meeting_id: row.try_get(1)?,
                    targets: serde_json::from_str(&targets).unwrap_or_default(),
                    body: row.try_get(3)?,
                    recorded_at_ms: row.try_get(4)?,
                })
            })
            .collect()
        })
        .await
    }

    async fn sink_cursor(&self, sink: &str) -> StoreResult<i64> {
        self.read(async |conn| {
            match conn
                .query_opt(
                    "SELECT delivered_seq FROM event_sinks WHERE sink = $1",
                    &[&sink],
                )
                .await?
            {
                Some(row) => Ok(row.try_get(0)?),
                None => Ok(0),
            }
        })
        .await
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
            let (sink, node) = (sink.clone(), node.clone());
            Box::pin(async move {
                let until = now_ms.saturating_add(ttl_ms);
                tx.execute(
                    "INSERT INTO event_sinks (sink, delivered_seq, owner, lease_until) \
                     VALUES ($1, 0, $2, $3) \
                     ON CONFLICT (sink) DO UPDATE SET owner = EXCLUDED.owner, \
                       lease_until = EXCLUDED.lease_until \
                     WHERE event_sinks.owner IS NULL OR event_sinks.owner = EXCLUDED.owner \
                       OR event_sinks.lease_until < $4",
                    &[&sink, &node, &until, &now_ms],
                )
                .await?;
                let owner: Option<String> = tx
                    .query_one("SELECT owner FROM event_sinks WHERE sink = $1", &[&sink])
                    .await?
                    .try_get(0)?;
                Ok(owner.as_deref() == Some(node.as_str()))
            })
        })
        .await
    }

    async fn latest_event_seq(&self) -> StoreResult<i64> {
        self.read(async |conn| {
            let row = conn
                .query_one("SELECT COALESCE(MAX(seq), 0)::BIGINT FROM events", &[])
                .await?;
            Ok(row.try_get(0)?)
        })
        .await
    }

    async fn prune_events(&self, before_ms: i64, limit: usize) -> StoreResult<usize> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.write(move |tx| {
            Box::pin(async move {
                // The oldest event first, so that a store with nothing to prune reads one row.
                let oldest = tx
                    .query_opt(
                        "SELECT recorded_at_ms FROM events ORDER BY seq LIMIT 1",
                        &[],
                    )
                    .await?;
                let oldest: Option<i64> = oldest.map(|row| row.try_get(0)).transpose()?;
                if oldest.is_none_or(|recorded| recorded >= before_ms) {
                    return Ok(0);
                }
                let removed = tx
                    .execute(
                        "DELETE FROM events WHERE seq IN \
                           (SELECT seq FROM events ORDER BY seq LIMIT $2) \
                         AND recorded_at_ms < $1",
                        &[&before_ms, &limit],
                    )
                    .await?;
                Ok(usize::try_from(removed).unwrap_or(usize::MAX))
            })
        })
        .await
    }

    async fn recent_meetings(&self, limit: usize) -> StoreResult<Vec<MeetingRecord>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(async |conn| {
            conn.query(
                &format!(
                    "SELECT {MEETING_COLUMNS} FROM meetings \
                     ORDER BY created_at DESC, meeting_id LIMIT $1"
                ),
                &[&limit],
            )
            .await?
            .iter()
            .map(meeting_from_row)
            .collect()
        })
        .await
    }

    async fn advance_sink(&self, sink: &str, seq: i64) -> StoreResult<()> {
        let sink = sink.to_string();
        self.write(move |tx| {
            let sink = sink.clone();
            Box::pin(async move { advance_cursor(tx, &sink, seq).await })
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
            let (sink, event, error) = (sink.clone(), event.clone(), error.clone());
            Box::pin(async move {
                tx.execute(
                    "INSERT INTO dead_letters (sink, seq, error, at_ms, body) \
                     VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (sink, seq) DO UPDATE SET \
                       error = EXCLUDED.error, at_ms = EXCLUDED.at_ms, body = EXCLUDED.body",
                    &[&sink, &event.seq, &error, &at_ms, &event.body],
                )
                .await?;
                advance_cursor(tx, &sink, event.seq).await
            })
        })
        .await
    }

    async fn dead_letters(&self) -> StoreResult<Vec<DeadLetter>> {
        self.read(async |conn| {
            conn.query(
                "SELECT sink, seq, error, at_ms, body FROM dead_letters ORDER BY at_ms, seq",
                &[],
            )
            .await?
            .iter()
            .map(|row| {
                Ok(DeadLetter {
                    sink: row.try_get(0)?,
                    seq: row.try_get(1)?,
                    error: row.try_get(2)?,
                    at_ms: row.try_get(3)?,
                    body: row.try_get(4)?,
                })
            })
            .collect()
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
            let beat = beat.clone();
            Box::pin(async move {
                tx.execute(
                    "INSERT INTO nodes (url, beat_at_ms, sessions, stopped) \
                     VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (url) DO UPDATE SET beat_at_ms = EXCLUDED.beat_at_ms, \
                       sessions = EXCLUDED.sessions, stopped = EXCLUDED.stopped",
                    &[&beat.url, &beat.beat_at_ms, &beat.sessions, &beat.stopped],
                )
                .await?;
                tx.execute(
                    "DELETE FROM nodes WHERE beat_at_ms < $1 AND url <> $2",
                    &[&forget_before_ms, &beat.url],
                )
                .await?;
                let rows = tx
                    .query(
                        "SELECT url, beat_at_ms, sessions, stopped FROM nodes ORDER BY url",
                        &[],
                    )
                    .await?;
                rows.iter()
                    .map(|row| {
                        Ok(NodeBeat {
                            url: row.try_get(0)?,
                            beat_at_ms: row.try_get(1)?,
                            sessions: row.try_get(2)?,
                            stopped: row.try_get(3)?,
                        })
                    })
                    .collect()
            })
        })
        .await
    }

    async fn meeting_host(&self, meeting_id: &str) -> StoreResult<Option<String>> {
        self.read(async |conn| {
            Ok(conn
                .query_opt(
                    "SELECT media_base_url FROM meetings WHERE meeting_id = $1",
                    &[&meeting_id],
                )
                .await?
                .map(|row| row.try_get(0))
                .transpose()?)
        })
        .await
    }

    async fn setting_or_insert(&self, name: &str, value: &str) -> StoreResult<String> {
        let (name, value) = (name.to_string(), value.to_string());
        self.write(move |tx| {
            let (name, value) = (name.clone(), value.clone());
            Box::pin(async move {
                // A concurrent first start's insert makes this one wait for its COMMIT, then
                // insert nothing and read the value that won.
                tx.execute(
                    "INSERT INTO settings (name, value) VALUES ($1, $2) \
                     ON CONFLICT (name) DO NOTHING",
                    &[&name, &value],
                )
                .await?;
                Ok(tx
                    .query_one("SELECT value FROM settings WHERE name = $1", &[&name])
                    .await?
                    .try_get(0)?)
            })
        })
        .await
    }
}

/// A schema of its own in an existing database, for tests and benchmarks, so that parallel runs
/// never meet. [`ScratchSchema::remove`] drops it; so does dropping the value, as a fallback.
pub struct ScratchSchema {
    admin_url: String,
    name: String,
    removed: bool,
    /// The URL of the same database with `search_path` set to the scratch schema.
    pub url: String,
}

/// Drops the schema over a connection of its own. The lock wait is bounded: a transaction that
/// never ends (its runtime is blocked) makes this fail rather than hang.
async fn drop_schema(admin_url: &str, name: &str, lock_timeout: &str) -> StoreResult<()> {
    let (client, connection) = tokio_postgres::connect(admin_url, NoTls)
        .await
        .map_err(|e| StoreError::Backend(describe(&e)))?;
    let task = tokio::spawn(connection);
    let dropped = client
        .batch_execute(&format!(
            "SET lock_timeout = '{lock_timeout}'; DROP SCHEMA IF EXISTS {name} CASCADE"
        ))
        .await
        .map_err(|e| StoreError::Backend(describe(&e)));
    drop(client);
    let _ = task.await;
    dropped
}

impl ScratchSchema {
    /// Creates `carillon_test_<random>` in the database `admin_url` names (a `postgres://`
    /// URL without an `options` parameter).
    pub async fn create(admin_url: &str) -> StoreResult<Self> {
        let name = format!(
            "carillon_test_{}",
            crate::domain::ids::random_string(b"abcdefghijklmnopqrstuvwxyz0123456789", 16)
        );
        let (client, connection) = tokio_postgres::connect(admin_url, NoTls)
            .await
            .map_err(|e| StoreError::Backend(describe(&e)))?;
        let task = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .map_err(|e| StoreError::Backend(describe(&e)))?;
        drop(client);
        let _ = task.await;
        let separator = if admin_url.contains('?') { '&' } else { '?' };
        Ok(Self {
            url: format!("{admin_url}{separator}options=-csearch_path%3D{name}"),
            admin_url: admin_url.to_string(),
            name,
            removed: false,
        })
    }

    /// Drops the schema with everything in it. The runtime keeps running meanwhile, so a
    /// server's background work still in a transaction there can finish and let go.
    pub async fn remove(mut self) -> StoreResult<()> {
        self.removed = true;
        drop_schema(&self.admin_url, &self.name, "30s").await
    }
}

impl Drop for ScratchSchema {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        // Drop may run inside a runtime (or while a test unwinds): a thread of its own with a
        // runtime of its own does the round trip. It blocks the caller's thread, so a
        // transaction that thread's runtime was running cannot finish: the lock wait is short,
        // and past it the schema is left behind (with a warning) rather than the test hung.
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(backend)?;
            runtime.block_on(drop_schema(&url, &name, "3s"))
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!(
                "NOTE: could not drop the scratch schema {} (busy); drop it by hand",
                self.name
            );
        }
    }
}

/// The database the PostgreSQL tests use: `CARILLON_TEST_POSTGRES_URL`, or None (after printing
/// a NOTE that they were skipped) when it is not set.
pub fn test_database_url(test: &str) -> Option<String> {
    match std::env::var("CARILLON_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!(
                "NOTE: {test} skipped: set CARILLON_TEST_POSTGRES_URL (e.g. \
                 postgres://postgres@127.0.0.1:5432/test) to run it against PostgreSQL"
            );
            None
        }
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
        let counted = runs.clone();
        let outcome: StoreResult<()> = store
            .write(move |tx| {
                let runs = counted.clone();
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
