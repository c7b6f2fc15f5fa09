//! Who is connected: attendees' joins, leaves and drops, with their events and the meeting's idle
//! clock, and the media events of their live sessions.

use std::future::Future;

use super::{
    AttendeeKey, Backend, Columns, MeetingKey, Session, connection_state, presence_events,
    record_event,
};
use crate::domain::meeting_events::{self, EventType, TranscriptionEvent};
use crate::store::{
    AttendeePresence, MeetingRecord, PresenceChange, PresenceStore, StoreError, StoreResult,
};

/// The steps of the presence logic that each backend writes in its own SQL.
pub trait PresenceRows: Session {
    /// The meeting of this id in any account (the join plane knows no account), if it exists.
    fn meeting_by_id(
        &mut self,
        meeting_id: &str,
    ) -> impl Future<Output = Result<Option<MeetingRecord>, Self::Error>> + Send;

    /// `meeting_by_id`, the meeting locked as by `Session::lock_meeting`.
    fn lock_meeting_by_id(
        &mut self,
        meeting_id: &str,
    ) -> impl Future<Output = Result<Option<MeetingRecord>, Self::Error>> + Send;

    /// The attendee's ExternalUserId, if the attendee exists.
    fn external_user_id(
        &mut self,
        key: AttendeeKey<'_>,
    ) -> impl Future<Output = Result<Option<String>, Self::Error>> + Send;

    /// Writes the change to the attendee's presence columns (see `presence_columns`), returning
    /// its ExternalUserId (None when there is no such attendee).
    fn set_presence(
        &mut self,
        update: &PresenceUpdate,
    ) -> impl Future<Output = Result<Option<String>, Self::Error>> + Send;

    /// Recomputes whether anyone is connected to the meeting; when the last one went, its idle
    /// clock starts at `at`.
    fn refresh_connected(
        &mut self,
        meeting_id: &str,
        at: i64,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// The meeting's connected attendees (id, ExternalUserId) in id order.
    fn connected_attendees(
        &mut self,
        meeting_id: &str,
    ) -> impl Future<Output = Result<Vec<(String, String)>, Self::Error>> + Send;

    /// Marks the connected attendees (of every meeting this backend's node answers for) as
    /// dropped at `at`, and their meetings as idle since then.
    fn reset_presence(&mut self, at: i64) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// The meeting's attendees with their presence, in id order.
    fn presence_rows(
        &mut self,
        meeting_id: &str,
    ) -> impl Future<Output = Result<Vec<AttendeePresence>, Self::Error>> + Send;

    /// The attendee's (joined, joined_at, left_at), if the attendee exists.
    fn presence_of(
        &mut self,
        key: AttendeeKey<'_>,
    ) -> impl Future<Output = Result<Option<LastPresence>, Self::Error>> + Send;
}

/// An attendee's last recorded presence: (joined, joined_at, left_at).
pub type LastPresence = (Option<bool>, Option<i64>, Option<i64>);

/// RecordPresence's arguments.
pub struct PresenceUpdate {
    pub meeting_id: String,
    pub attendee_id: String,
    pub change: PresenceChange,
    pub at: i64,
}

/// An attendee's presence from a row of (attendee_id, external_user_id, joined, dropped,
/// joined_at, left_at).
pub fn presence_from(row: &dyn Columns) -> StoreResult<AttendeePresence> {
    Ok(AttendeePresence {
        attendee_id: row.text(0)?,
        external_user_id: row.text(1)?,
        state: connection_state(row.optional_flag(2)?, row.flag(3)?),
        joined_at: row.optional_int(4)?,
        left_at: row.optional_int(5)?,
    })
}

/// The last presence from a row of (joined, joined_at, left_at).
pub fn last_presence_from(row: &dyn Columns) -> StoreResult<LastPresence> {
    Ok((
        row.optional_flag(0)?,
        row.optional_int(1)?,
        row.optional_int(2)?,
    ))
}

async fn record_presence<S: PresenceRows>(
    session: &mut S,
    update: &PresenceUpdate,
) -> Result<(), S::Error> {
    // The meeting first, as every writer locks it (and a meeting that is gone has nobody to
    // record).
    let Some(meeting) = session.lock_meeting_by_id(&update.meeting_id).await? else {
        return Ok(());
    };
    if let Some(external_user_id) = session.set_presence(update).await? {
        let attendee = Some((update.attendee_id.as_str(), external_user_id.as_str()));
        for kind in presence_events(update.change) {
            record_event(session, *kind, &meeting, attendee, update.at).await?;
        }
    }
    session
        .refresh_connected(&update.meeting_id, update.at)
        .await
}

/// RecordMediaEvent's arguments: the attendee whose session it is, and the name it is shown by.
struct MediaEvent {
    meeting_id: String,
    attendee_id: String,
    shown_attendee_id: String,
    kind: EventType,
    at: i64,
}

async fn record_media_event<S: PresenceRows>(
    session: &mut S,
    event: &MediaEvent,
) -> Result<(), S::Error> {
    let Some(meeting) = session.meeting_by_id(&event.meeting_id).await? else {
        return Ok(());
    };
    let key = AttendeeKey {
        meeting_id: &event.meeting_id,
        attendee_id: &event.attendee_id,
    };
    if let Some(external_user_id) = session.external_user_id(key).await? {
        let shown = Some((event.shown_attendee_id.as_str(), external_user_id.as_str()));
        record_event(session, event.kind, &meeting, shown, event.at).await?;
    }
    Ok(())
}

/// The outbox row of a transcription event of `meeting`.
fn transcription_event_row(
    meeting: &MeetingRecord,
    event: &TranscriptionEvent,
) -> StoreResult<super::EventRow> {
    let facts = super::meeting_facts(meeting);
    Ok(super::EventRow {
        meeting_id: meeting.meeting_id.clone(),
        targets: super::to_json(&meeting_events::targets(meeting.notifications.as_ref()))?,
        body: meeting_events::transcription_envelope(&facts, event),
        recorded_at_ms: super::real_now_ms(),
    })
}

async fn meeting_presence<S: PresenceRows>(
    session: &mut S,
    key: MeetingKey<'_>,
) -> Result<Vec<AttendeePresence>, S::Error> {
    session
        .find_meeting(key)
        .await?
        .ok_or(StoreError::MeetingNotFound)?;
    session.presence_rows(key.meeting_id).await
}

#[async_trait::async_trait]
impl<B> PresenceStore for B
where
    B: Backend,
    B::Session: PresenceRows,
{
    async fn record_media_event(
        &self,
        meeting_id: &str,
        attendee_id: &str,
        shown_attendee_id: &str,
        kind: EventType,
        at: i64,
    ) -> StoreResult<()> {
        let event = MediaEvent {
            meeting_id: meeting_id.to_owned(),
            attendee_id: attendee_id.to_owned(),
            shown_attendee_id: shown_attendee_id.to_owned(),
            kind,
            at,
        };
        self.write(event, |session, event| {
            Box::pin(record_media_event(session, event))
        })
        .await
    }

    async fn record_transcription_event(
        &self,
        meeting_id: &str,
        event: TranscriptionEvent,
    ) -> StoreResult<()> {
        let args = (meeting_id.to_owned(), event);
        self.write(args, |session, (meeting_id, event)| {
            Box::pin(async move {
                let Some(meeting) = session.meeting_by_id(meeting_id).await? else {
                    return Ok(());
                };
                session
                    .append_event(transcription_event_row(&meeting, event)?)
                    .await
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
        let update = PresenceUpdate {
            meeting_id: meeting_id.to_owned(),
            attendee_id: attendee_id.to_owned(),
            change,
            at,
        };
        self.write(update, |session, update| {
            Box::pin(record_presence(session, update))
        })
        .await
    }

    async fn meeting_presence(
        &self,
        account_id: &str,
        meeting_id: &str,
    ) -> StoreResult<Vec<AttendeePresence>> {
        let ids = (account_id.to_owned(), meeting_id.to_owned());
        self.read(ids, |session, (account_id, meeting_id)| {
            let key = MeetingKey {
                account_id,
                meeting_id,
            };
            Box::pin(meeting_presence(session, key))
        })
        .await
    }

    async fn reset_presence(&self, at: i64) -> StoreResult<()> {
        self.write(at, |session, at| Box::pin(session.reset_presence(*at)))
            .await
    }

    async fn presence(&self, meeting_id: &str, attendee_id: &str) -> StoreResult<LastPresence> {
        let ids = (meeting_id.to_owned(), attendee_id.to_owned());
        self.read(ids, |session, (meeting_id, attendee_id)| {
            Box::pin(async move {
                let key = AttendeeKey {
                    meeting_id,
                    attendee_id,
                };
                Ok(session
                    .presence_of(key)
                    .await?
                    .ok_or(StoreError::AttendeeNotFound)?)
            })
        })
        .await
    }
}
