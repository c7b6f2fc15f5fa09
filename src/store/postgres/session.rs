//! The PostgreSQL store's session: a pooled connection, inside a transaction for a write (with
//! the events it will append to the outbox at COMMIT), and what can go wrong on it.

use std::sync::Arc;

use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Row, Statement};

use crate::store::shared::{
    ATTENDEE_COLUMNS, AttendeeKey, Columns, EventRow, MEETING_COLUMNS, MeetingKey, Session, Value,
    attendee_from, backend, meeting_from,
};
use crate::store::{AttendeeRecord, MeetingRecord, StoreError, StoreResult};

/// What a statement inside a transaction can fail with: the store's own verdicts, or the
/// database's, some of which (serialization failures, deadlocks) ask for the transaction again.
pub enum TxError {
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

pub type TxResult<T> = Result<T, TxError>;

/// The driver's error with the database's message, when it has one.
pub fn describe(e: &tokio_postgres::Error) -> String {
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

pub fn retryable(e: &TxError) -> bool {
    match e {
        TxError::Db(e) => matches!(
            e.code(),
            Some(&SqlState::T_R_SERIALIZATION_FAILURE) | Some(&SqlState::T_R_DEADLOCK_DETECTED)
        ),
        TxError::Retry(_) => true,
        TxError::Store(_) => false,
    }
}

impl Columns for Row {
    fn value(&self, i: usize) -> StoreResult<Value> {
        let column = self
            .columns()
            .get(i)
            .ok_or_else(|| backend(format!("no column {i}")))?;
        let ty = column.type_();
        let value = if *ty == Type::BOOL {
            self.try_get::<_, Option<bool>>(i)
                .map(|v| v.map(Value::Bool))
        } else if *ty == Type::INT8 {
            self.try_get::<_, Option<i64>>(i).map(|v| v.map(Value::Int))
        } else if *ty == Type::INT4 {
            self.try_get::<_, Option<i32>>(i)
                .map(|v| v.map(|n| Value::Int(n.into())))
        } else {
            self.try_get::<_, Option<String>>(i)
                .map(|v| v.map(Value::Text))
        };
        Ok(value
            .map_err(|e| backend(describe(&e)))?
            .unwrap_or(Value::Null))
    }
}

/// Every row, through `map`.
pub fn each<T>(rows: &[Row], map: fn(&dyn Columns) -> StoreResult<T>) -> TxResult<Vec<T>> {
    Ok(rows
        .iter()
        .map(|row| map(row))
        .collect::<StoreResult<_>>()?)
}

/// The row, if there is one, through `map`.
pub fn maybe<T>(row: Option<Row>, map: fn(&dyn Columns) -> StoreResult<T>) -> TxResult<Option<T>> {
    Ok(row.map(|row| map(&row)).transpose()?)
}

/// One pooled connection, with the statement helpers every query goes through (statements are
/// prepared once per connection).
pub struct Conn(pub deadpool_postgres::Object);

pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

impl Conn {
    async fn prepare(&self, sql: &str) -> TxResult<Statement> {
        Ok(self.0.prepare_cached(sql).await?)
    }

    pub async fn query(&self, sql: &str, params: Params<'_>) -> TxResult<Vec<Row>> {
        let statement = self.prepare(sql).await?;
        Ok(self.0.query(&statement, params).await?)
    }

    pub async fn query_opt(&self, sql: &str, params: Params<'_>) -> TxResult<Option<Row>> {
        let statement = self.prepare(sql).await?;
        Ok(self.0.query_opt(&statement, params).await?)
    }

    pub async fn query_one(&self, sql: &str, params: Params<'_>) -> TxResult<Row> {
        let statement = self.prepare(sql).await?;
        Ok(self.0.query_one(&statement, params).await?)
    }

    pub async fn execute(&self, sql: &str, params: Params<'_>) -> TxResult<u64> {
        let statement = self.prepare(sql).await?;
        Ok(self.0.execute(&statement, params).await?)
    }
}

/// A session: its connection (in a transaction, for a write), the events it will append to the
/// outbox at COMMIT, and the node the store serves, if it is scoped to one.
pub struct Tx {
    pub conn: Conn,
    pub events: Vec<EventRow>,
    pub node: Option<Arc<str>>,
}

impl std::ops::Deref for Tx {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.conn
    }
}

impl Tx {
    /// Numbers the queued events from the counter row and inserts them, in one statement. The
    /// counter row stays locked until COMMIT, which is what makes sequence order commit order.
    pub async fn flush_events(&mut self) -> TxResult<()> {
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

    async fn meeting_where(
        &self,
        condition: &str,
        key: MeetingKey<'_>,
    ) -> TxResult<Option<MeetingRecord>> {
        let row = self
            .query_opt(
                &format!("SELECT {MEETING_COLUMNS} FROM meetings WHERE {condition}"),
                &[&key.account_id, &key.meeting_id],
            )
            .await?;
        maybe(row, meeting_from)
    }
}

impl Session for Tx {
    type Error = TxError;

    /// Queued: the events are written, numbered, with the transaction's COMMIT.
    async fn append_event(&mut self, row: EventRow) -> TxResult<()> {
        self.events.push(row);
        Ok(())
    }

    async fn find_meeting(&mut self, key: MeetingKey<'_>) -> TxResult<Option<MeetingRecord>> {
        self.meeting_where("account_id = $1 AND meeting_id = $2", key)
            .await
    }

    /// `SELECT ... FOR UPDATE`: concurrent writers to the meeting, on any node, queue on its row.
    async fn lock_meeting(&mut self, key: MeetingKey<'_>) -> TxResult<Option<MeetingRecord>> {
        self.meeting_where("account_id = $1 AND meeting_id = $2 FOR UPDATE", key)
            .await
    }

    async fn find_attendee(&mut self, key: AttendeeKey<'_>) -> TxResult<Option<AttendeeRecord>> {
        let row = self
            .query_opt(
                &format!(
                    "SELECT {ATTENDEE_COLUMNS} FROM attendees \
                     WHERE meeting_id = $1 AND attendee_id = $2"
                ),
                &[&key.meeting_id, &key.attendee_id],
            )
            .await?;
        maybe(row, attendee_from)
    }
}
