//! Tags of a meeting, or (legacy API only) of one of its attendees, under a limit per target.

use std::future::Future;

use super::{AttendeeKey, Backend, Columns, MeetingKey, Session};
use crate::store::{StoreError, StoreResult, Tag, TagStore, TagTarget};

/// The steps of the tags' logic that each backend writes in its own SQL. The tags belong to
/// `owner`: a meeting's attendee, or with an empty attendee id the meeting itself.
pub trait TagRows: Session {
    /// Adds the tags, overwriting the values of keys the owner already has.
    fn upsert_tags(
        &mut self,
        owner: AttendeeKey<'_>,
        tags: &[Tag],
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// How many tags the owner has.
    fn count_tags(
        &mut self,
        owner: AttendeeKey<'_>,
    ) -> impl Future<Output = Result<usize, Self::Error>> + Send;

    /// Deletes the owner's tags of these keys.
    fn delete_tags(
        &mut self,
        owner: AttendeeKey<'_>,
        keys: &[String],
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Deletes all the owner's tags.
    fn clear_tags(
        &mut self,
        owner: AttendeeKey<'_>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// The owner's tags in key order.
    fn tags_of(
        &mut self,
        owner: AttendeeKey<'_>,
    ) -> impl Future<Output = Result<Vec<Tag>, Self::Error>> + Send;
}

/// A tag from a row of (key, value).
pub fn tag_from(row: &dyn Columns) -> StoreResult<Tag> {
    Ok(Tag {
        key: row.text(0)?,
        value: row.text(1)?,
    })
}

/// Checks that the account's tag target exists, its meeting locked when `lock` (for a write),
/// and returns whose tags it addresses.
async fn owner_of<'t, S: Session>(
    session: &mut S,
    account_id: &str,
    target: &'t TagTarget,
    lock: bool,
) -> Result<AttendeeKey<'t>, S::Error> {
    let (meeting_id, attendee_id) = match target {
        TagTarget::Meeting(meeting_id) => (meeting_id.as_str(), None),
        TagTarget::Attendee(meeting_id, attendee_id) => {
            (meeting_id.as_str(), Some(attendee_id.as_str()))
        }
    };
    let key = MeetingKey {
        account_id,
        meeting_id,
    };
    let meeting = if lock {
        session.lock_meeting(key).await?
    } else {
        session.find_meeting(key).await?
    };
    meeting.ok_or(StoreError::MeetingNotFound)?;
    let Some(attendee_id) = attendee_id else {
        return Ok(AttendeeKey {
            meeting_id,
            attendee_id: "",
        });
    };
    let owner = AttendeeKey {
        meeting_id,
        attendee_id,
    };
    session
        .find_attendee(owner)
        .await?
        .ok_or(StoreError::AttendeeNotFound)?;
    Ok(owner)
}

async fn tag<S: TagRows>(
    session: &mut S,
    (account_id, target, tags, limit): &(String, TagTarget, Vec<Tag>, usize),
) -> Result<(), S::Error> {
    let owner = owner_of(session, account_id, target, true).await?;
    session.upsert_tags(owner, tags).await?;
    if session.count_tags(owner).await? > *limit {
        // The write fails, so the new tags are not kept.
        return Err(StoreError::TooManyTags { limit: *limit }.into());
    }
    Ok(())
}

async fn untag<S: TagRows>(
    session: &mut S,
    (account_id, target, keys): &(String, TagTarget, Vec<String>),
) -> Result<(), S::Error> {
    let owner = owner_of(session, account_id, target, true).await?;
    session.delete_tags(owner, keys).await
}

async fn list_tags<S: TagRows>(
    session: &mut S,
    (account_id, target): &(String, TagTarget),
) -> Result<Vec<Tag>, S::Error> {
    let owner = owner_of(session, account_id, target, false).await?;
    session.tags_of(owner).await
}

#[async_trait::async_trait]
impl<B> TagStore for B
where
    B: Backend,
    B::Session: TagRows,
{
    async fn tag(
        &self,
        account_id: &str,
        target: &TagTarget,
        tags: Vec<Tag>,
        limit: usize,
    ) -> StoreResult<()> {
        let args = (account_id.to_owned(), target.clone(), tags, limit);
        self.write(args, |session, args| Box::pin(tag(session, args)))
            .await
    }

    async fn untag(
        &self,
        account_id: &str,
        target: &TagTarget,
        keys: Vec<String>,
    ) -> StoreResult<()> {
        let args = (account_id.to_owned(), target.clone(), keys);
        self.write(args, |session, args| Box::pin(untag(session, args)))
            .await
    }

    async fn list_tags(&self, account_id: &str, target: &TagTarget) -> StoreResult<Vec<Tag>> {
        let args = (account_id.to_owned(), target.clone());
        self.read(args, |session, args| Box::pin(list_tags(session, args)))
            .await
    }
}
