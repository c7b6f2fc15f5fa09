//! What the SQL backends share, so that SQLite and PostgreSQL build the same outbox rows and read
//! presence the same way: one function each, called by both.

use super::{ConnectionState, EndRules, MeetingRecord, PresenceChange, StoreError, StoreResult};
use crate::domain::meeting_events::{self, AttendeeFacts, EventType, MeetingFacts, envelope};

pub(crate) fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Serialises a value to JSON text for a TEXT column.
pub(crate) fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(backend)
}

/// One outbox row, ready to insert: everything but its sequence number, which the backend
/// assigns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EventRow {
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
pub(crate) fn event_row(
    kind: EventType,
    meeting: &MeetingRecord,
    attendee: Option<(&str, &str)>,
    at: i64,
) -> StoreResult<EventRow> {
    let facts = MeetingFacts {
        account_id: &meeting.account_id,
        control_region: &meeting.control_region,
        meeting_id: &meeting.meeting_id,
        external_meeting_id: meeting.external_meeting_id.as_deref(),
        media_region: &meeting.media_region,
    };
    let attendee = attendee.map(|(attendee_id, external_user_id)| AttendeeFacts {
        attendee_id,
        external_user_id,
    });
    let body = envelope(kind, &facts, attendee.as_ref(), at.saturating_mul(1000));
    let targets = meeting_events::targets(meeting.notifications.as_ref());
    let recorded_at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    Ok(EventRow {
        meeting_id: meeting.meeting_id.clone(),
        targets: to_json(&targets)?,
        body,
        recorded_at_ms,
    })
}

/// The events a presence change announces, in order.
pub(crate) fn presence_events(change: PresenceChange) -> &'static [EventType] {
    match change {
        // The token was accepted, then the attendee joined: both, in that order.
        PresenceChange::Joined => &[EventType::AttendeeAuthorized, EventType::AttendeeJoined],
        PresenceChange::Left => &[EventType::AttendeeLeft],
        PresenceChange::Dropped => &[EventType::AttendeeDropped],
    }
}

/// What a presence change writes to the attendee: (joined, dropped, the time column it sets).
pub(crate) fn presence_columns(change: PresenceChange) -> (bool, bool, &'static str) {
    match change {
        PresenceChange::Joined => (true, false, "joined_at"),
        PresenceChange::Left => (false, false, "left_at"),
        PresenceChange::Dropped => (false, true, "left_at"),
    }
}

/// An attendee's connection state from its stored `joined` (NULL: never) and `dropped`.
pub(crate) fn connection_state(joined: Option<bool>, dropped: bool) -> ConnectionState {
    match (joined, dropped) {
        (None, _) => ConnectionState::NeverJoined,
        (Some(true), _) => ConnectionState::Connected,
        (Some(false), true) => ConnectionState::Dropped,
        (Some(false), false) => ConnectionState::Left,
    }
}

/// The most due meetings one `end_due_meetings` call looks at. Meetings without attendees cost
/// almost nothing to end, so many end together; the attendee budget bounds the rest.
pub(crate) const DUE_MEETINGS_PER_CALL: i64 = 64;

/// Whether a sweep that has already ended meetings holding `removed` attendees may end one more
/// holding `next`: the first meeting always (however large, it ends atomically), then more only
/// within `budget`.
pub(crate) fn within_budget(ended_any: bool, removed: usize, next: usize, budget: usize) -> bool {
    !ended_any || removed.saturating_add(next) <= budget
}

/// The bounds the due-meeting sweep compares with at `now`: a meeting created at or before the
/// first is past its maximum duration; one idle since at or before the second has idled out.
pub(crate) fn due_bounds(now: i64, rules: EndRules) -> (i64, i64) {
    (
        now.saturating_sub(rules.max_seconds),
        now.saturating_sub(rules.idle_seconds),
    )
}
