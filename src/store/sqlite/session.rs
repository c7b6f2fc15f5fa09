//! The embedded store's session: a connection, the writer's inside its group transaction or a
//! reader. What every aggregate reads through it, and the helpers its SQL goes through.

use rusqlite::types::ValueRef;
use rusqlite::{Connection, Params, Row, params};

use crate::domain::capabilities::MediaCapability;
use crate::store::shared::{
    ATTENDEE_COLUMNS, AttendeeKey, Columns, EventRow, MEETING_COLUMNS, MeetingKey, Session, Value,
    attendee_from, backend, capability, meeting_from,
};
use crate::store::{AttendeeRecord, MeetingRecord, StoreError, StoreResult};

impl Columns for Row<'_> {
    fn value(&self, i: usize) -> StoreResult<Value> {
        Ok(match self.get_ref(i).map_err(backend)? {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(n) => Value::Int(n),
            ValueRef::Text(text) => Value::Text(std::str::from_utf8(text).map_err(backend)?.into()),
            ValueRef::Real(_) | ValueRef::Blob(_) => {
                return Err(backend(format!(
                    "column {i} is neither text nor an integer"
                )));
            }
        })
    }

    /// Read in place, without copying the text.
    fn capability(&self, i: usize) -> StoreResult<MediaCapability> {
        match self.get_ref(i).map_err(backend)? {
            ValueRef::Text(text) => capability(std::str::from_utf8(text).map_err(backend)?),
            _ => Err(backend(format!("column {i} is not a media capability"))),
        }
    }
}

/// Runs a statement through the connection's statement cache; how many rows it changed.
pub fn run(conn: &Connection, sql: &str, params: impl Params) -> StoreResult<usize> {
    conn.prepare_cached(sql)
        .map_err(backend)?
        .execute(params)
        .map_err(backend)
}

/// The rows a cached query returns, each through `map`.
pub fn all<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    mut map: impl FnMut(&dyn Columns) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    let mut statement = conn.prepare_cached(sql).map_err(backend)?;
    let mut rows = statement.query(params).map_err(backend)?;
    let mut all = Vec::new();
    while let Some(row) = rows.next().map_err(backend)? {
        all.push(map(row)?);
    }
    Ok(all)
}

/// The first row a cached query returns, through `map`.
pub fn first<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    map: impl FnOnce(&dyn Columns) -> StoreResult<T>,
) -> StoreResult<Option<T>> {
    let mut statement = conn.prepare_cached(sql).map_err(backend)?;
    let mut rows = statement.query(params).map_err(backend)?;
    match rows.next().map_err(backend)? {
        Some(row) => map(row).map(Some),
        None => Ok(None),
    }
}

/// The account's meeting.
pub fn find_meeting(conn: &Connection, key: MeetingKey<'_>) -> StoreResult<Option<MeetingRecord>> {
    first(
        conn,
        &format!(
            "SELECT {MEETING_COLUMNS} FROM meetings WHERE account_id = ?1 AND meeting_id = ?2"
        ),
        params![key.account_id, key.meeting_id],
        meeting_from,
    )
}

/// One attendee of a meeting.
pub fn find_attendee(
    conn: &Connection,
    key: AttendeeKey<'_>,
) -> StoreResult<Option<AttendeeRecord>> {
    first(
        conn,
        &format!(
            "SELECT {ATTENDEE_COLUMNS} FROM attendees WHERE meeting_id = ?1 AND attendee_id = ?2"
        ),
        params![key.meeting_id, key.attendee_id],
        attendee_from,
    )
}

impl Session for Connection {
    type Error = StoreError;

    async fn append_event(&mut self, row: EventRow) -> StoreResult<()> {
        run(
            self,
            "INSERT INTO events (meeting_id, targets, body, recorded_at_ms) \
             VALUES (?1, ?2, ?3, ?4)",
            params![row.meeting_id, row.targets, row.body, row.recorded_at_ms],
        )?;
        Ok(())
    }

    async fn find_meeting(&mut self, key: MeetingKey<'_>) -> StoreResult<Option<MeetingRecord>> {
        find_meeting(self, key)
    }

    /// The writer thread runs one write at a time: reading the meeting is holding it.
    async fn lock_meeting(&mut self, key: MeetingKey<'_>) -> StoreResult<Option<MeetingRecord>> {
        find_meeting(self, key)
    }

    async fn find_attendee(&mut self, key: AttendeeKey<'_>) -> StoreResult<Option<AttendeeRecord>> {
        find_attendee(self, key)
    }
}
