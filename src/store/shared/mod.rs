//! What the backends share, written once: the interface a backend implements, and over it every
//! `Store` method's logic (one file per aggregate), the outbox rows and how a row's columns
//! become records.
//!
//! A backend is a [`Backend`]: it runs a piece of [`Work`] on its [`Session`] (a connection), as
//! a read or inside one write transaction that it commits. The session offers the primitive
//! steps: the reads every aggregate needs ([`Session`] itself), and one trait per aggregate
//! (`MeetingRows`, `AttendeeRows`, ... beside the logic that uses them). The logic decides what to
//! read and write, in which order, and what to answer; each backend's steps are its own SQL.
//!
//! The logic is async because PostgreSQL's steps are: each is a round trip. SQLite's steps are
//! calls into SQLite on the thread that runs them (its writer thread, or a reader), which finish
//! before they return, so the SQLite backend polls the logic's future once and it is done.

pub mod attendees;
pub mod media_pipelines;
pub mod meetings;
pub mod nodes;
pub mod outbox;
pub mod presence;
pub mod settings;
pub mod tags;

use std::future::Future;
use std::pin::Pin;

use super::{
    AttendeeRecord, ConnectionState, EndRules, MeetingRecord, PresenceChange, StoreError,
    StoreResult,
};
use crate::domain::capabilities::{Capabilities, MediaCapability};
use crate::domain::meeting_events::{self, AttendeeFacts, EventType, MeetingFacts, envelope};

/// A store backend: where the logic's [`Work`] runs.
pub trait Backend: Send + Sync + 'static {
    type Session: Session;

    /// Runs `work` with `args` on one of the backend's connections, outside a write transaction.
    fn read<A: Args, T: Answer>(
        &self,
        args: A,
        work: Work<Self::Session, A, T>,
    ) -> impl Future<Output = StoreResult<T>> + Send;

    /// Runs `work` with `args` in one write transaction and commits it, durable before this
    /// returns. When `work` fails, or the request's commit gate (`store/gate.rs`) is closed when
    /// it is about to commit (`StoreError::Abandoned`), nothing it wrote is kept. A backend may run
    /// `work` again when its transaction conflicted with another, which is why `work` is a plain
    /// function that gets its arguments by reference.
    fn write<A: Args, T: Answer>(
        &self,
        args: A,
        work: Work<Self::Session, A, T>,
    ) -> impl Future<Output = StoreResult<T>> + Send;
}

/// What a read or a write can take as its arguments: they go with it to the thread or task that
/// runs it.
pub trait Args: Send + Sync + 'static {}

impl<A: Send + Sync + 'static> Args for A {}

/// What a read or a write can answer: it comes back from that thread or task.
pub trait Answer: Send + 'static {}

impl<T: Send + 'static> Answer for T {}

/// What a read or a write runs: the logic, given the session and its arguments.
pub type Work<S, A, T> = for<'a> fn(&'a mut S, &'a A) -> Step<'a, T, <S as Session>::Error>;

/// A running piece of the logic.
pub type Step<'a, T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'a>>;

/// A backend's connection, inside a write transaction or not: the reads that the logic of every
/// aggregate needs, and the outbox that writes append their events to.
pub trait Session: Send {
    /// The backend's errors: a `StoreError`, or (PostgreSQL) a database error, which may ask for
    /// the transaction again.
    type Error: From<StoreError> + Send;

    /// Appends one event to the outbox in this transaction (see [`record_event`]).
    fn append_event(
        &mut self,
        row: EventRow,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// The account's meeting, if it exists.
    fn find_meeting(
        &mut self,
        key: MeetingKey<'_>,
    ) -> impl Future<Output = Result<Option<MeetingRecord>, Self::Error>> + Send;

    /// The account's meeting, locked until the transaction ends: every write that touches a
    /// meeting's attendees, tags or presence takes this lock first, so they run one at a time
    /// per meeting.
    fn lock_meeting(
        &mut self,
        key: MeetingKey<'_>,
    ) -> impl Future<Output = Result<Option<MeetingRecord>, Self::Error>> + Send;

    /// One attendee of a meeting, if it exists.
    fn find_attendee(
        &mut self,
        key: AttendeeKey<'_>,
    ) -> impl Future<Output = Result<Option<AttendeeRecord>, Self::Error>> + Send;
}

/// An account's meeting.
#[derive(Debug, Clone, Copy)]
pub struct MeetingKey<'a> {
    pub account_id: &'a str,
    pub meeting_id: &'a str,
}

/// An attendee of a meeting; with an empty attendee id, where tags are concerned, the meeting
/// itself (the `attendee_id` column of a meeting's own tags is '').
#[derive(Debug, Clone, Copy)]
pub struct AttendeeKey<'a> {
    pub meeting_id: &'a str,
    pub attendee_id: &'a str,
}

/// A keyset page: the rows after `after` (in id order), at most `limit`.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    pub after: &'a str,
    pub limit: usize,
}

impl Page<'_> {
    /// The limit as an SQL integer.
    pub fn sql_limit(&self) -> i64 {
        sql_limit(self.limit)
    }
}

/// A row limit as an SQL integer (one beyond `i64` is no limit at all).
pub fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

pub fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Serialises a value to JSON text for a TEXT column.
pub fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(backend)
}

/// One outbox row, ready to insert: everything but its sequence number, which the backend
/// assigns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub meeting_id: String,
    /// The meeting's notification targets, as a JSON array.
    pub targets: String,
    /// The EventBridge-shaped envelope, as JSON text.
    pub body: String,
    /// Real milliseconds since the epoch (for delivery latency).
    pub recorded_at_ms: i64,
}

/// The outbox row announcing `kind` for the meeting (and attendee: id, ExternalUserId) at `at`
/// (seconds, the server's clock).
pub fn event_row(
    kind: EventType,
    meeting: &MeetingRecord,
    attendee: Option<(&str, &str)>,
    at: i64,
) -> StoreResult<EventRow> {
    let facts = meeting_facts(meeting);
    let attendee = attendee.map(|(attendee_id, external_user_id)| AttendeeFacts {
        attendee_id,
        external_user_id,
    });
    let body = envelope(kind, &facts, attendee.as_ref(), at.saturating_mul(1000));
    let targets = meeting_events::targets(meeting.notifications.as_ref());
    Ok(EventRow {
        meeting_id: meeting.meeting_id.clone(),
        targets: to_json(&targets)?,
        body,
        recorded_at_ms: real_now_ms(),
    })
}

/// What an event says about its meeting.
pub fn meeting_facts(meeting: &MeetingRecord) -> MeetingFacts<'_> {
    MeetingFacts {
        account_id: &meeting.account_id,
        control_region: &meeting.control_region,
        meeting_id: &meeting.meeting_id,
        external_meeting_id: meeting.external_meeting_id.as_deref(),
        media_region: &meeting.media_region,
    }
}

/// Real milliseconds since the epoch, as an outbox row records when it was written (delivery
/// latency is measured from it, whatever the server's own clock says).
pub fn real_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Records the event `kind` of the meeting (and attendee: id, ExternalUserId) at `at` in the
/// outbox, in the session's transaction, so that it is kept exactly when the change it announces
/// is.
pub async fn record_event<S: Session>(
    session: &mut S,
    kind: EventType,
    meeting: &MeetingRecord,
    attendee: Option<(&str, &str)>,
    at: i64,
) -> Result<(), S::Error> {
    let row = event_row(kind, meeting, attendee, at)?;
    session.append_event(row).await
}

/// The events a presence change announces, in order.
pub fn presence_events(change: PresenceChange) -> &'static [EventType] {
    match change {
        // The token was accepted, then the attendee joined: both, in that order.
        PresenceChange::Joined => &[EventType::AttendeeAuthorized, EventType::AttendeeJoined],
        PresenceChange::Left => &[EventType::AttendeeLeft],
        PresenceChange::Dropped => &[EventType::AttendeeDropped],
    }
}

/// What a presence change writes to the attendee: (joined, dropped, the time column it sets).
pub fn presence_columns(change: PresenceChange) -> (bool, bool, &'static str) {
    match change {
        PresenceChange::Joined => (true, false, "joined_at"),
        PresenceChange::Left => (false, false, "left_at"),
        PresenceChange::Dropped => (false, true, "left_at"),
    }
}

/// An attendee's connection state from its stored `joined` (NULL: never) and `dropped`.
pub fn connection_state(joined: Option<bool>, dropped: bool) -> ConnectionState {
    match (joined, dropped) {
        (None, _) => ConnectionState::NeverJoined,
        (Some(true), _) => ConnectionState::Connected,
        (Some(false), true) => ConnectionState::Dropped,
        (Some(false), false) => ConnectionState::Left,
    }
}

/// The most due meetings one `end_due_meetings` call looks at. Meetings without attendees cost
/// almost nothing to end, so many end together; the attendee budget bounds the rest.
pub const DUE_MEETINGS_PER_CALL: i64 = 64;

/// Whether a sweep that has already ended meetings holding `removed` attendees may end one more
/// holding `next`: the first meeting always (however large, it ends atomically), then more only
/// within `budget`.
pub fn within_budget(ended_any: bool, removed: usize, next: usize, budget: usize) -> bool {
    !ended_any || removed.saturating_add(next) <= budget
}

/// The bounds the due-meeting sweep compares with at `now`: a meeting created at or before the
/// first is past its maximum duration; one idle since at or before the second has idled out.
pub fn due_bounds(now: i64, rules: EndRules) -> (i64, i64) {
    (
        now.saturating_sub(rules.max_seconds),
        now.saturating_sub(rules.idle_seconds),
    )
}

/// One column's value, as the row mappings read it: the column types both backends store
/// (TEXT, integers, and booleans, which SQLite keeps as integers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Bool(bool),
}

/// A result row of either backend, read by column position (from 0).
pub trait Columns {
    fn value(&self, i: usize) -> StoreResult<Value>;

    fn text(&self, i: usize) -> StoreResult<String> {
        self.optional_text(i)?
            .ok_or_else(|| backend(format!("column {i} is NULL")))
    }

    fn optional_text(&self, i: usize) -> StoreResult<Option<String>> {
        match self.value(i)? {
            Value::Null => Ok(None),
            Value::Text(text) => Ok(Some(text)),
            other => Err(unexpected(i, "text", &other)),
        }
    }

    fn int(&self, i: usize) -> StoreResult<i64> {
        self.optional_int(i)?
            .ok_or_else(|| backend(format!("column {i} is NULL")))
    }

    fn optional_int(&self, i: usize) -> StoreResult<Option<i64>> {
        match self.value(i)? {
            Value::Null => Ok(None),
            Value::Int(n) => Ok(Some(n)),
            other => Err(unexpected(i, "an integer", &other)),
        }
    }

    /// A media capability column (`SendReceive`, ...). A backend that can lend the text in place
    /// overrides this: it is read three times per attendee row, on every uncached ListAttendees
    /// page.
    fn capability(&self, i: usize) -> StoreResult<MediaCapability> {
        capability(&self.text(i)?)
    }

    fn flag(&self, i: usize) -> StoreResult<bool> {
        self.optional_flag(i)?
            .ok_or_else(|| backend(format!("column {i} is NULL")))
    }

    fn optional_flag(&self, i: usize) -> StoreResult<Option<bool>> {
        match self.value(i)? {
            Value::Null => Ok(None),
            Value::Bool(flag) => Ok(Some(flag)),
            Value::Int(n) => Ok(Some(n != 0)),
            other => Err(unexpected(i, "a boolean", &other)),
        }
    }
}

fn unexpected(i: usize, wanted: &str, found: &Value) -> StoreError {
    backend(format!("column {i}: {wanted} expected, found {found:?}"))
}

/// A JSON column.
fn json_column<T: serde::de::DeserializeOwned>(name: &str, text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| backend(format!("column {name}: {e}")))
}

/// The meeting columns, in the order [`meeting_from`] reads them.
pub const MEETING_COLUMNS: &str = "account_id, meeting_id, client_request_token, \
    control_region, media_region, external_meeting_id, meeting_host_id, primary_meeting_id, \
    tenant_ids, features, notifications, network_type, media_base_url, max_attendees, created_at";

/// The attendee columns, in the order [`attendee_from`] reads them.
pub const ATTENDEE_COLUMNS: &str =
    "meeting_id, attendee_id, external_user_id, join_token, audio, video, content, created_at";

/// A meeting from a row of [`MEETING_COLUMNS`].
pub fn meeting_from(row: &dyn Columns) -> StoreResult<MeetingRecord> {
    Ok(MeetingRecord {
        account_id: row.text(0)?,
        meeting_id: row.text(1)?,
        client_request_token: row.text(2)?,
        control_region: row.text(3)?,
        media_region: row.text(4)?,
        external_meeting_id: row.optional_text(5)?,
        meeting_host_id: row.optional_text(6)?,
        primary_meeting_id: row.optional_text(7)?,
        tenant_ids: json_column("tenant_ids", &row.text(8)?)?,
        features: row
            .optional_text(9)?
            .map(|f| json_column("features", &f))
            .transpose()?,
        notifications: row
            .optional_text(10)?
            .map(|n| json_column("notifications", &n))
            .transpose()?,
        network_type: row.optional_text(11)?,
        media_base_url: row.text(12)?,
        max_attendees: u32::try_from(row.int(13)?).map_err(backend)?,
        created_at: row.int(14)?,
    })
}

pub fn capability(text: &str) -> StoreResult<MediaCapability> {
    MediaCapability::parse(text).ok_or_else(|| backend(format!("unknown media capability {text}")))
}

/// An attendee from a row that starts with [`ATTENDEE_COLUMNS`].
pub fn attendee_from(row: &dyn Columns) -> StoreResult<AttendeeRecord> {
    Ok(AttendeeRecord {
        meeting_id: row.text(0)?,
        attendee_id: row.text(1)?,
        external_user_id: row.text(2)?,
        join_token: row.text(3)?,
        capabilities: Capabilities {
            audio: row.capability(4)?,
            video: row.capability(5)?,
            content: row.capability(6)?,
        },
        created_at: row.int(7)?,
    })
}
