//! Meetings: created with their tags and first attendees in one transaction, read, and ended
//! with their replicas, by a call or by the clock.

use std::future::Future;

use super::attendees::{AttendeeRows, insert_attendees};
use super::presence::PresenceRows;
use super::tags::TagRows;
use super::{AttendeeKey, Backend, MeetingKey, Page, Session, record_event, within_budget};
use crate::domain::meeting_events::EventType;
use crate::store::{
    CreatedMeeting, EndRules, MeetingRecord, MeetingStore, NewAttendee, StoreError, StoreResult,
    Tag,
};

/// The steps of the meetings' logic that each backend writes in its own SQL.
pub trait MeetingRows: Session {
    /// Inserts the meeting, unless its account already used its ClientRequestToken: then nothing
    /// is written and the meeting that did is returned.
    fn insert_meeting(
        &mut self,
        meeting: &MeetingRecord,
    ) -> impl Future<Output = Result<Option<MeetingRecord>, Self::Error>> + Send;

    /// The meeting's replicas, locked like their primary.
    fn lock_replicas(
        &mut self,
        meeting_id: &str,
    ) -> impl Future<Output = Result<Vec<MeetingRecord>, Self::Error>> + Send;

    /// Deletes the meeting's row; its attendees and tags go with it.
    fn remove_meeting(
        &mut self,
        meeting_id: &str,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Up to `DUE_MEETINGS_PER_CALL` meetings (account, meeting id) that `rules` say are over at
    /// `now`: primaries past their maximum duration or idle too long, and replicas whose primary
    /// is gone. One may be listed twice.
    fn due_meetings(
        &mut self,
        now: i64,
        rules: EndRules,
    ) -> impl Future<Output = Result<Vec<(String, String)>, Self::Error>> + Send;

    /// A page of the account's meetings, in id order.
    fn meetings_page(
        &mut self,
        account_id: &str,
        page: Page<'_>,
    ) -> impl Future<Output = Result<Vec<MeetingRecord>, Self::Error>> + Send;

    /// The newest meetings of every account, newest first.
    fn newest_meetings(
        &mut self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<MeetingRecord>, Self::Error>> + Send;

    /// Whether a meeting of any account has this id.
    fn has_meeting(
        &mut self,
        meeting_id: &str,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send;
}

async fn create_meeting<S: MeetingRows + AttendeeRows + TagRows>(
    session: &mut S,
    meeting: &MeetingRecord,
    tags: &[Tag],
    attendees: &[NewAttendee],
) -> Result<CreatedMeeting, S::Error> {
    if let Some(earlier) = session.insert_meeting(meeting).await? {
        return Ok(CreatedMeeting {
            meeting: earlier,
            created: false,
            attendees: Vec::new(),
        });
    }
    record_event(
        session,
        EventType::MeetingStarted,
        meeting,
        None,
        meeting.created_at,
    )
    .await?;
    let own_tags = AttendeeKey {
        meeting_id: &meeting.meeting_id,
        attendee_id: "",
    };
    session.upsert_tags(own_tags, tags).await?;
    let attendees = insert_attendees(session, meeting, attendees).await?;
    Ok(CreatedMeeting {
        meeting: meeting.clone(),
        created: true,
        attendees,
    })
}

/// Ends a meeting of the account and its replicas at `at`: attendees still connected are
/// announced as left, then the meeting as ended, and the rows go. Returns the ids that ended
/// (none when the account has no such meeting, or another node just ended it).
async fn end_meeting<S: MeetingRows + PresenceRows>(
    session: &mut S,
    key: MeetingKey<'_>,
    at: i64,
) -> Result<Vec<String>, S::Error> {
    let Some(primary) = session.lock_meeting(key).await? else {
        return Ok(Vec::new());
    };
    let replicas = session.lock_replicas(key.meeting_id).await?;
    let mut ended = Vec::with_capacity(1 + replicas.len());
    for meeting in std::iter::once(primary).chain(replicas) {
        for (attendee_id, external_user_id) in
            session.connected_attendees(&meeting.meeting_id).await?
        {
            let attendee = Some((attendee_id.as_str(), external_user_id.as_str()));
            record_event(session, EventType::AttendeeLeft, &meeting, attendee, at).await?;
        }
        record_event(session, EventType::MeetingEnded, &meeting, None, at).await?;
        session.remove_meeting(&meeting.meeting_id).await?;
        ended.push(meeting.meeting_id);
    }
    Ok(ended)
}

async fn delete_meeting<S: MeetingRows + PresenceRows>(
    session: &mut S,
    key: MeetingKey<'_>,
    at: i64,
) -> Result<Vec<String>, S::Error> {
    let ended = end_meeting(session, key, at).await?;
    if ended.is_empty() {
        return Err(StoreError::MeetingNotFound.into());
    }
    Ok(ended)
}

async fn end_due_meetings<S: MeetingRows + AttendeeRows + PresenceRows>(
    session: &mut S,
    now: i64,
    rules: EndRules,
    attendee_budget: usize,
) -> Result<Vec<String>, S::Error> {
    let due = session.due_meetings(now, rules).await?;
    let mut ended: Vec<String> = Vec::new();
    let mut removed = 0;
    for (account_id, meeting_id) in due {
        // Listed twice, or a replica that ended with its primary.
        if ended.contains(&meeting_id) {
            continue;
        }
        let attendees = session.attendee_count(&meeting_id).await?;
        if !within_budget(!ended.is_empty(), removed, attendees, attendee_budget) {
            break;
        }
        removed += attendees;
        let key = MeetingKey {
            account_id: &account_id,
            meeting_id: &meeting_id,
        };
        ended.extend(end_meeting(session, key, now).await?);
    }
    Ok(ended)
}

#[async_trait::async_trait]
impl<B> MeetingStore for B
where
    B: Backend,
    B::Session: MeetingRows + AttendeeRows + TagRows + PresenceRows,
{
    async fn create_meeting(
        &self,
        meeting: MeetingRecord,
        tags: Vec<Tag>,
        attendees: Vec<NewAttendee>,
    ) -> StoreResult<CreatedMeeting> {
        self.write(
            (meeting, tags, attendees),
            |session, (meeting, tags, new)| Box::pin(create_meeting(session, meeting, tags, new)),
        )
        .await
    }

    async fn get_meeting(&self, account_id: &str, meeting_id: &str) -> StoreResult<MeetingRecord> {
        let ids = (account_id.to_owned(), meeting_id.to_owned());
        self.read(ids, |session, (account_id, meeting_id)| {
            Box::pin(async move {
                let key = MeetingKey {
                    account_id,
                    meeting_id,
                };
                Ok(session
                    .find_meeting(key)
                    .await?
                    .ok_or(StoreError::MeetingNotFound)?)
            })
        })
        .await
    }

    async fn list_meetings(
        &self,
        account_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<MeetingRecord>> {
        let args = (account_id.to_owned(), after.unwrap_or("").to_owned(), limit);
        self.read(args, |session, (account_id, after, limit)| {
            let page = Page {
                after,
                limit: *limit,
            };
            Box::pin(session.meetings_page(account_id, page))
        })
        .await
    }

    async fn recent_meetings(&self, limit: usize) -> StoreResult<Vec<MeetingRecord>> {
        self.read(limit, |session, limit| {
            Box::pin(session.newest_meetings(*limit))
        })
        .await
    }

    async fn delete_meeting(
        &self,
        account_id: &str,
        meeting_id: &str,
        at: i64,
    ) -> StoreResult<Vec<String>> {
        let args = (account_id.to_owned(), meeting_id.to_owned(), at);
        self.write(args, |session, (account_id, meeting_id, at)| {
            let key = MeetingKey {
                account_id,
                meeting_id,
            };
            Box::pin(delete_meeting(session, key, *at))
        })
        .await
    }

    async fn end_due_meetings(
        &self,
        now: i64,
        rules: EndRules,
        attendee_budget: usize,
    ) -> StoreResult<Vec<String>> {
        self.write(
            (now, rules, attendee_budget),
            |session, (now, rules, budget)| {
                Box::pin(end_due_meetings(session, *now, *rules, *budget))
            },
        )
        .await
    }

    async fn meeting_exists(&self, meeting_id: &str) -> StoreResult<bool> {
        self.read(meeting_id.to_owned(), |session, meeting_id| {
            Box::pin(session.has_meeting(meeting_id))
        })
        .await
    }
}
