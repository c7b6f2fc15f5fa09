//! Attendees: created one by one under their meeting's cap, deleted, their capabilities changed,
//! and read with the attendee version that cached answers are checked against.

use std::future::Future;

use super::tags::TagRows;
use super::{AttendeeKey, Backend, MeetingKey, Page, Session, record_event};
use crate::domain::capabilities::Capabilities;
use crate::domain::meeting_events::EventType;
use crate::store::{
    AttendeeOutcome, AttendeePage, AttendeeRecord, AttendeeStore, MeetingRecord, NewAttendee,
    StoreError, StoreResult, VersionedAttendee,
};

/// The steps of the attendees' logic that each backend writes in its own SQL.
pub trait AttendeeRows: Session {
    /// How many attendees the meeting has.
    fn attendee_count(
        &mut self,
        meeting_id: &str,
    ) -> impl Future<Output = Result<usize, Self::Error>> + Send;

    /// The meeting's number of attendees, when the backend remembers it without counting them
    /// (SQLite's writer does, see `sqlite/attendee_counts.rs`).
    fn known_attendee_count(&self, _meeting_id: &str) -> Option<u32> {
        None
    }

    /// Tells a backend that remembers counts the meeting's number of attendees after a create.
    fn attendees_counted(&mut self, _meeting_id: &str, _count: u32) {}

    /// The meeting's attendee of this ExternalUserId, if any.
    fn attendee_by_user(
        &mut self,
        meeting_id: &str,
        external_user_id: &str,
    ) -> impl Future<Output = Result<Option<AttendeeRecord>, Self::Error>> + Send;

    /// Inserts the attendee. Another transaction that inserted one of the same ExternalUserId
    /// first (possible only without the meeting's lock) makes this insert nothing and return
    /// that one.
    fn insert_attendee(
        &mut self,
        meeting_id: &str,
        new: &NewAttendee,
    ) -> impl Future<Output = Result<Option<AttendeeRecord>, Self::Error>> + Send;

    /// Deletes the attendee, returning its ExternalUserId (None when there was none).
    fn remove_attendee(
        &mut self,
        key: AttendeeKey<'_>,
    ) -> impl Future<Output = Result<Option<String>, Self::Error>> + Send;

    /// Sets the attendee's capabilities, returning it as updated (None when there is none).
    fn set_capabilities(
        &mut self,
        key: AttendeeKey<'_>,
        capabilities: Capabilities,
    ) -> impl Future<Output = Result<Option<AttendeeRecord>, Self::Error>> + Send;

    /// Sets the capabilities of the meeting's attendees but the excluded ones, returning how many
    /// rows changed.
    fn set_capabilities_except(
        &mut self,
        update: &CapabilitiesUpdate,
    ) -> impl Future<Output = Result<u64, Self::Error>> + Send;

    /// Moves the meeting's attendee version, in the transaction of the change to its attendees,
    /// so that every cached ListAttendees page and GetAttendee answer of the meeting stops
    /// matching when it commits.
    fn bump_attendees_version(
        &mut self,
        meeting_id: &str,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// The reads each backend answers its own way, outside the logic: the attendee version (SQLite
/// keeps it in memory, so that checking a cached answer reads no database; PostgreSQL reads it
/// with the rows in one statement), and the attendee a JoinToken belongs to.
pub trait AttendeeLookups {
    /// The account's meeting's attendee version (see `AttendeeStore::attendees_version`).
    fn current_version(&self, key: MeetingKey<'_>)
    -> impl Future<Output = StoreResult<i64>> + Send;

    /// The attendee, with an attendee version of its meeting taken no later than it was read.
    fn versioned_attendee(
        &self,
        key: MeetingKey<'_>,
        attendee_id: &str,
    ) -> impl Future<Output = StoreResult<VersionedAttendee>> + Send;

    /// A page of the meeting's attendees in id order, with an attendee version taken no later
    /// than they were read.
    fn versioned_page(
        &self,
        key: MeetingKey<'_>,
        page: Page<'_>,
    ) -> impl Future<Output = StoreResult<AttendeePage>> + Send;

    /// The attendee the JoinToken belongs to: only the stored token, compared whole, admits it.
    fn attendee_by_token(
        &self,
        join_token: &str,
    ) -> impl Future<Output = StoreResult<Option<AttendeeRecord>>> + Send;
}

/// UpdateAttendeeCapabilitiesExcept's arguments.
pub struct CapabilitiesUpdate {
    pub account_id: String,
    pub meeting_id: String,
    pub excluded: Vec<String>,
    pub capabilities: Capabilities,
}

/// Inserts attendees one by one under the meeting's cap. The caller holds the meeting's lock (or
/// created the meeting in this transaction), so the count cannot change underneath.
pub async fn insert_attendees<S: AttendeeRows + TagRows>(
    session: &mut S,
    meeting: &MeetingRecord,
    attendees: &[NewAttendee],
) -> Result<Vec<AttendeeOutcome>, S::Error> {
    let meeting_id = meeting.meeting_id.as_str();
    let mut count = match session.known_attendee_count(meeting_id) {
        Some(count) => count,
        None => u32::try_from(session.attendee_count(meeting_id).await?).unwrap_or(u32::MAX),
    };
    let mut outcomes = Vec::with_capacity(attendees.len());
    for new in attendees {
        let user = new.external_user_id.as_str();
        if let Some(existing) = session.attendee_by_user(meeting_id, user).await? {
            outcomes.push(AttendeeOutcome::Existing(existing));
            continue;
        }
        if count >= meeting.max_attendees {
            outcomes.push(AttendeeOutcome::MeetingFull {
                external_user_id: new.external_user_id.clone(),
                cap: meeting.max_attendees,
            });
            continue;
        }
        if let Some(first) = session.insert_attendee(meeting_id, new).await? {
            outcomes.push(AttendeeOutcome::Existing(first));
            continue;
        }
        let key = AttendeeKey {
            meeting_id,
            attendee_id: &new.attendee_id,
        };
        session.upsert_tags(key, &new.tags).await?;
        let attendee = Some((new.attendee_id.as_str(), user));
        record_event(
            session,
            EventType::AttendeeAdded,
            meeting,
            attendee,
            new.created_at,
        )
        .await?;
        count += 1;
        outcomes.push(AttendeeOutcome::Created(AttendeeRecord {
            meeting_id: meeting.meeting_id.clone(),
            attendee_id: new.attendee_id.clone(),
            external_user_id: new.external_user_id.clone(),
            join_token: new.join_token.clone(),
            capabilities: new.capabilities,
            created_at: new.created_at,
        }));
    }
    // Existing attendees and a full meeting change nothing a listing shows.
    if outcomes
        .iter()
        .any(|o| matches!(o, AttendeeOutcome::Created(_)))
    {
        session.bump_attendees_version(meeting_id).await?;
    }
    // After the version's bump, which may forget a remembered count: this one is exact.
    session.attendees_counted(meeting_id, count);
    Ok(outcomes)
}

/// The account's meeting, locked (see `Session::lock_meeting`): MeetingNotFound without one.
async fn locked<S: Session>(
    session: &mut S,
    key: MeetingKey<'_>,
) -> Result<MeetingRecord, S::Error> {
    Ok(session
        .lock_meeting(key)
        .await?
        .ok_or(StoreError::MeetingNotFound)?)
}

async fn create_attendees<S: AttendeeRows + TagRows>(
    session: &mut S,
    key: MeetingKey<'_>,
    attendees: &[NewAttendee],
) -> Result<Vec<AttendeeOutcome>, S::Error> {
    let meeting = locked(session, key).await?;
    insert_attendees(session, &meeting, attendees).await
}

async fn delete_attendee<S: AttendeeRows + TagRows>(
    session: &mut S,
    key: MeetingKey<'_>,
    attendee_id: &str,
    at: i64,
) -> Result<(), S::Error> {
    let meeting = locked(session, key).await?;
    let attendee = AttendeeKey {
        meeting_id: key.meeting_id,
        attendee_id,
    };
    let external_user_id = session
        .remove_attendee(attendee)
        .await?
        .ok_or(StoreError::AttendeeNotFound)?;
    session.clear_tags(attendee).await?;
    session.bump_attendees_version(key.meeting_id).await?;
    let attendee = Some((attendee_id, external_user_id.as_str()));
    record_event(session, EventType::AttendeeDeleted, &meeting, attendee, at).await
}

async fn update_capabilities<S: AttendeeRows>(
    session: &mut S,
    key: MeetingKey<'_>,
    attendee_id: &str,
    capabilities: Capabilities,
) -> Result<AttendeeRecord, S::Error> {
    locked(session, key).await?;
    let attendee = AttendeeKey {
        meeting_id: key.meeting_id,
        attendee_id,
    };
    let updated = session
        .set_capabilities(attendee, capabilities)
        .await?
        .ok_or(StoreError::AttendeeNotFound)?;
    session.bump_attendees_version(key.meeting_id).await?;
    Ok(updated)
}

async fn update_capabilities_except<S: AttendeeRows>(
    session: &mut S,
    update: &CapabilitiesUpdate,
) -> Result<(), S::Error> {
    let key = MeetingKey {
        account_id: &update.account_id,
        meeting_id: &update.meeting_id,
    };
    locked(session, key).await?;
    if session.set_capabilities_except(update).await? > 0 {
        session.bump_attendees_version(&update.meeting_id).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl<B> AttendeeStore for B
where
    B: Backend + AttendeeLookups,
    B::Session: AttendeeRows + TagRows,
{
    async fn create_attendees(
        &self,
        account_id: &str,
        meeting_id: &str,
        attendees: Vec<NewAttendee>,
    ) -> StoreResult<Vec<AttendeeOutcome>> {
        let args = (account_id.to_owned(), meeting_id.to_owned(), attendees);
        self.write(args, |session, (account_id, meeting_id, attendees)| {
            let key = MeetingKey {
                account_id,
                meeting_id,
            };
            Box::pin(create_attendees(session, key, attendees))
        })
        .await
    }

    async fn get_attendee_versioned(
        &self,
        account_id: &str,
        meeting_id: &str,
        attendee_id: &str,
    ) -> StoreResult<VersionedAttendee> {
        let key = MeetingKey {
            account_id,
            meeting_id,
        };
        self.versioned_attendee(key, attendee_id).await
    }

    async fn attendees_version(&self, account_id: &str, meeting_id: &str) -> StoreResult<i64> {
        let key = MeetingKey {
            account_id,
            meeting_id,
        };
        self.current_version(key).await
    }

    async fn list_attendees_versioned(
        &self,
        account_id: &str,
        meeting_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<AttendeePage> {
        let key = MeetingKey {
            account_id,
            meeting_id,
        };
        let page = Page {
            after: after.unwrap_or(""),
            limit,
        };
        self.versioned_page(key, page).await
    }

    async fn delete_attendee(
        &self,
        account_id: &str,
        meeting_id: &str,
        attendee_id: &str,
        at: i64,
    ) -> StoreResult<()> {
        let ids = (
            account_id.to_owned(),
            meeting_id.to_owned(),
            attendee_id.to_owned(),
        );
        self.write(
            (ids, at),
            |session, ((account_id, meeting_id, attendee_id), at)| {
                let key = MeetingKey {
                    account_id,
                    meeting_id,
                };
                Box::pin(delete_attendee(session, key, attendee_id, *at))
            },
        )
        .await
    }

    async fn update_capabilities(
        &self,
        account_id: &str,
        meeting_id: &str,
        attendee_id: &str,
        capabilities: Capabilities,
    ) -> StoreResult<AttendeeRecord> {
        let ids = (
            account_id.to_owned(),
            meeting_id.to_owned(),
            attendee_id.to_owned(),
        );
        self.write((ids, capabilities), |session, (ids, capabilities)| {
            let (account_id, meeting_id, attendee_id) = ids;
            let key = MeetingKey {
                account_id,
                meeting_id,
            };
            Box::pin(update_capabilities(
                session,
                key,
                attendee_id,
                *capabilities,
            ))
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
        let update = CapabilitiesUpdate {
            account_id: account_id.to_owned(),
            meeting_id: meeting_id.to_owned(),
            excluded: excluded.to_vec(),
            capabilities,
        };
        self.write(update, |session, update| {
            Box::pin(update_capabilities_except(session, update))
        })
        .await
    }

    async fn find_attendee_by_join_token(
        &self,
        join_token: &str,
    ) -> StoreResult<Option<AttendeeRecord>> {
        self.attendee_by_token(join_token).await
    }
}
