//! Media pipelines (issue 26): created idempotently on their ClientRequestToken, at most one
//! unfinished capture pipeline per meeting of an account, read, paged in creation order, their
//! status moved, deleted, and those left unfinished found again when a server starts.

use std::future::Future;

use super::{Backend, Columns, EventRow, Session, backend, json_column, real_now_ms, to_json};
use crate::domain::meeting_events::{self, MeetingFacts, PipelineEventType};
use crate::store::{
    MediaPipelineRecord, MediaPipelineStore, PipelineCreated, StoreError, StoreResult, Tag,
    parse_pipeline_cursor,
};

/// The pipeline columns, in the order [`pipeline_from`] reads them.
pub const PIPELINE_COLUMNS: &str = "account_id, media_pipeline_id, kind, client_request_token, \
    control_region, source_arn, meeting_id, sink_arn, status, configuration, created_at, \
    updated_at";

/// The condition an unfinished pipeline meets ([`MediaPipelineRecord::FINISHED`] in SQL). The
/// migrations' partial indexes state it in these very words: SQLite uses a partial index only
/// for a query whose WHERE clause contains the index's own terms.
pub const UNFINISHED: &str = "status NOT IN ('Stopped', 'Failed')";

/// The condition an active capture pipeline meets: what the unique index of one active capture
/// per meeting covers.
pub const ACTIVE_CAPTURE: &str =
    "kind = 'MediaCapturePipeline' AND status NOT IN ('Stopped', 'Failed')";

/// An account's pipeline.
#[derive(Debug, Clone, Copy)]
pub struct PipelineKey<'a> {
    pub account_id: &'a str,
    pub media_pipeline_id: &'a str,
}

/// A page of an account's pipelines: those of `kind` (all when None) after the position
/// (`created_at`, `after_id`) in (created_at, media_pipeline_id) order, at most `limit`.
#[derive(Debug, Clone, Copy)]
pub struct PipelinePage<'a> {
    pub account_id: &'a str,
    pub kind: Option<&'a str>,
    pub created_at: i64,
    pub after_id: &'a str,
    pub limit: usize,
}

/// A pipeline's new status, as of `updated_at`.
#[derive(Debug, Clone, Copy)]
pub struct StatusChange<'a> {
    pub key: PipelineKey<'a>,
    pub status: &'a str,
    pub updated_at: i64,
}

impl<'a> PipelineKey<'a> {
    /// The key of owned (account_id, media_pipeline_id), as the calls' arguments hold them.
    fn of((account_id, media_pipeline_id): &'a (String, String)) -> Self {
        Self {
            account_id,
            media_pipeline_id,
        }
    }
}

impl PipelinePage<'_> {
    /// The limit as an SQL integer.
    pub fn sql_limit(&self) -> i64 {
        super::sql_limit(self.limit)
    }
}

/// The steps of the media pipelines' logic that each backend writes in its own SQL.
pub trait PipelineRows: Session {
    /// The account's pipeline created with this ClientRequestToken, if any.
    fn pipeline_by_token(
        &mut self,
        account_id: &str,
        token: &str,
    ) -> impl Future<Output = Result<Option<MediaPipelineRecord>, Self::Error>> + Send;

    /// The account's unfinished capture pipeline of this meeting, if it has one.
    fn active_capture(
        &mut self,
        account_id: &str,
        meeting_id: &str,
    ) -> impl Future<Output = Result<Option<MediaPipelineRecord>, Self::Error>> + Send;

    /// Inserts the pipeline, which the checks before found neither a replay nor a second active
    /// capture. Unique indexes hold both; where a concurrent transaction can have committed such
    /// a pipeline since those checks, the backend fails with an error that runs the whole write
    /// again, and the checks then find it.
    fn insert_pipeline(
        &mut self,
        pipeline: &MediaPipelineRecord,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// The account's pipeline, if it exists.
    fn find_pipeline(
        &mut self,
        key: PipelineKey<'_>,
    ) -> impl Future<Output = Result<Option<MediaPipelineRecord>, Self::Error>> + Send;

    /// The account's pipeline, if it exists, locked until the transaction ends: writes that
    /// read its configuration and write it back run one at a time, on any node.
    fn lock_pipeline(
        &mut self,
        key: PipelineKey<'_>,
    ) -> impl Future<Output = Result<Option<MediaPipelineRecord>, Self::Error>> + Send;

    /// Replaces the pipeline's configuration; false when it does not exist.
    fn update_pipeline_configuration(
        &mut self,
        key: PipelineKey<'_>,
        configuration: &serde_json::Value,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send;

    /// A page of the account's pipelines.
    fn pipelines_page(
        &mut self,
        page: PipelinePage<'_>,
    ) -> impl Future<Output = Result<Vec<MediaPipelineRecord>, Self::Error>> + Send;

    /// Sets the pipeline's status and updated_at; false when it does not exist.
    fn update_pipeline_status(
        &mut self,
        change: StatusChange<'_>,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send;

    /// Deletes the pipeline and returns it, if it existed.
    fn remove_pipeline(
        &mut self,
        key: PipelineKey<'_>,
    ) -> impl Future<Output = Result<Option<MediaPipelineRecord>, Self::Error>> + Send;

    /// Every unfinished pipeline of every account, in (created_at, media_pipeline_id) order.
    fn unfinished_pipelines(
        &mut self,
    ) -> impl Future<Output = Result<Vec<MediaPipelineRecord>, Self::Error>> + Send;
}

/// A pipeline from a row of [`PIPELINE_COLUMNS`].
pub fn pipeline_from(row: &dyn Columns) -> StoreResult<MediaPipelineRecord> {
    Ok(MediaPipelineRecord {
        account_id: row.text(0)?,
        media_pipeline_id: row.text(1)?,
        kind: row.text(2)?,
        client_request_token: row.optional_text(3)?,
        control_region: row.text(4)?,
        source_arn: row.text(5)?,
        meeting_id: row.optional_text(6)?,
        sink_arn: row.text(7)?,
        status: row.text(8)?,
        configuration: json_column("configuration", &row.text(9)?)?,
        created_at: row.int(10)?,
        updated_at: row.int(11)?,
    })
}

/// The meeting whose one active capture the pipeline takes (or would, unfinished).
fn captured_meeting(pipeline: &MediaPipelineRecord) -> Option<&str> {
    if pipeline.kind == MediaPipelineRecord::CAPTURE {
        pipeline.meeting_id.as_deref()
    } else {
        None
    }
}

/// The pipeline other than `pipeline` that is its meeting's active capture, if any.
async fn capture_taken<S: PipelineRows>(
    session: &mut S,
    pipeline: &MediaPipelineRecord,
) -> Result<Option<MediaPipelineRecord>, S::Error> {
    let Some(meeting_id) = captured_meeting(pipeline) else {
        return Ok(None);
    };
    let active = session
        .active_capture(&pipeline.account_id, meeting_id)
        .await?;
    Ok(active.filter(|active| active.media_pipeline_id != pipeline.media_pipeline_id))
}

async fn create_pipeline<S: PipelineRows>(
    session: &mut S,
    pipeline: &MediaPipelineRecord,
) -> Result<PipelineCreated, S::Error> {
    if let Some(token) = &pipeline.client_request_token
        && let Some(earlier) = session
            .pipeline_by_token(&pipeline.account_id, token)
            .await?
    {
        return Ok(PipelineCreated::Existing(earlier));
    }
    if let Some(active) = capture_taken(session, pipeline).await? {
        // Each statement of a READ COMMITTED transaction reads what has committed by then: a
        // replay of this request committed between the token check and this one shows here.
        if pipeline.client_request_token.is_some()
            && active.client_request_token == pipeline.client_request_token
        {
            return Ok(PipelineCreated::Existing(active));
        }
        return Err(StoreError::PipelineConflict.into());
    }
    session.insert_pipeline(pipeline).await?;
    Ok(PipelineCreated::New(pipeline.clone()))
}

async fn set_status<S: PipelineRows>(
    session: &mut S,
    (ids, status, updated_at): &((String, String), String, i64),
) -> Result<(), S::Error> {
    let key = PipelineKey::of(ids);
    let pipeline = session
        .find_pipeline(key)
        .await?
        .ok_or(StoreError::PipelineNotFound)?;
    // A finished capture going again would be its meeting's second active capture: refused as
    // a create would be, rather than by the unique index as a backend error.
    if !MediaPipelineRecord::is_finished(status)
        && capture_taken(session, &pipeline).await?.is_some()
    {
        return Err(StoreError::PipelineConflict.into());
    }
    let change = StatusChange {
        key,
        status,
        updated_at: *updated_at,
    };
    if !session.update_pipeline_status(change).await? {
        return Err(StoreError::PipelineNotFound.into());
    }
    // The move is announced in the same transaction, so that the event is kept exactly when
    // the status is.
    if pipeline.status != *status
        && let Some(kind) = PipelineEventType::for_status(status)
        && let Some(row) = pipeline_event_row(kind, &pipeline, *updated_at)?
    {
        session.append_event(row).await?;
    }
    Ok(())
}

/// What [`MediaPipelineStore::change_media_pipeline_tags`] takes: the pipeline, the tags to
/// set, the keys to remove and the limit.
type TagChange = ((String, String), Vec<Tag>, Vec<String>, usize);

async fn change_tags<S: PipelineRows>(
    session: &mut S,
    (ids, tag, untag, limit): &TagChange,
) -> Result<(), S::Error> {
    let key = PipelineKey::of(ids);
    // Locked, so that two changes at once (on two nodes) each build on the other's tags.
    let mut pipeline = session
        .lock_pipeline(key)
        .await?
        .ok_or(StoreError::PipelineNotFound)?;
    let mut tags = pipeline.tags();
    tags.retain(|old| !untag.contains(&old.key));
    for new in tag {
        match tags.iter_mut().find(|old| old.key == new.key) {
            Some(old) => old.value.clone_from(&new.value),
            None => tags.push(new.clone()),
        }
    }
    if tags.len() > *limit {
        return Err(StoreError::TooManyTags { limit: *limit }.into());
    }
    let Some(fields) = pipeline.configuration.as_object_mut() else {
        return Err(backend("a media pipeline's stored configuration is not a JSON object").into());
    };
    if tags.is_empty() {
        fields.remove(MediaPipelineRecord::TAGS);
    } else {
        fields.insert(
            MediaPipelineRecord::TAGS.into(),
            MediaPipelineRecord::tags_json(&tags),
        );
    }
    if !session
        .update_pipeline_configuration(key, &pipeline.configuration)
        .await?
    {
        return Err(StoreError::PipelineNotFound.into());
    }
    Ok(())
}

/// The outbox row of a pipeline event, at `at_ms`; none for a pipeline without a meeting.
fn pipeline_event_row(
    kind: PipelineEventType,
    pipeline: &MediaPipelineRecord,
    at_ms: i64,
) -> StoreResult<Option<EventRow>> {
    let Some(meeting_id) = pipeline.meeting_id.as_deref() else {
        return Ok(None);
    };
    let facts = pipeline
        .configuration
        .get(MediaPipelineRecord::MEETING_FACTS);
    let text = |member: &str| {
        facts
            .and_then(|facts| facts.get(member))
            .and_then(serde_json::Value::as_str)
    };
    let meeting = MeetingFacts {
        account_id: &pipeline.account_id,
        control_region: &pipeline.control_region,
        meeting_id,
        external_meeting_id: text("ExternalMeetingId"),
        media_region: text("MediaRegion").unwrap_or(&pipeline.control_region),
    };
    let body =
        meeting_events::pipeline_envelope(kind, &meeting, &pipeline.media_pipeline_id, at_ms);
    let notifications = facts.and_then(|facts| facts.get("NotificationsConfiguration"));
    Ok(Some(EventRow {
        meeting_id: meeting_id.to_string(),
        targets: to_json(&meeting_events::targets(notifications))?,
        body,
        recorded_at_ms: real_now_ms(),
    }))
}

async fn list_pipelines<S: PipelineRows>(
    session: &mut S,
    (account_id, kind, after, limit): &(String, Option<String>, Option<String>, usize),
) -> Result<Vec<MediaPipelineRecord>, S::Error> {
    // Before every position: ids are never empty.
    let (created_at, after_id) = match after {
        None => (i64::MIN, ""),
        Some(cursor) => parse_pipeline_cursor(cursor)
            .ok_or_else(|| backend(format!("unreadable media pipeline cursor {cursor:?}")))?,
    };
    let page = PipelinePage {
        account_id,
        kind: kind.as_deref(),
        created_at,
        after_id,
        limit: *limit,
    };
    session.pipelines_page(page).await
}

#[async_trait::async_trait]
impl<B> MediaPipelineStore for B
where
    B: Backend,
    B::Session: PipelineRows,
{
    async fn create_media_pipeline(
        &self,
        record: MediaPipelineRecord,
    ) -> StoreResult<PipelineCreated> {
        self.write(record, |session, record| {
            Box::pin(create_pipeline(session, record))
        })
        .await
    }

    async fn get_media_pipeline(
        &self,
        account_id: &str,
        media_pipeline_id: &str,
    ) -> StoreResult<MediaPipelineRecord> {
        let ids = (account_id.to_owned(), media_pipeline_id.to_owned());
        self.read(ids, |session, ids| {
            Box::pin(async move {
                let found = session.find_pipeline(PipelineKey::of(ids)).await?;
                Ok(found.ok_or(StoreError::PipelineNotFound)?)
            })
        })
        .await
    }

    async fn list_media_pipelines(
        &self,
        account_id: &str,
        kind: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<MediaPipelineRecord>> {
        let args = (
            account_id.to_owned(),
            kind.map(str::to_owned),
            after.map(str::to_owned),
            limit,
        );
        self.read(args, |session, args| {
            Box::pin(list_pipelines(session, args))
        })
        .await
    }

    async fn set_media_pipeline_status(
        &self,
        account_id: &str,
        media_pipeline_id: &str,
        status: &str,
        updated_at: i64,
    ) -> StoreResult<()> {
        let ids = (account_id.to_owned(), media_pipeline_id.to_owned());
        let args = (ids, status.to_owned(), updated_at);
        self.write(args, |session, args| Box::pin(set_status(session, args)))
            .await
    }

    async fn announce_media_pipeline(
        &self,
        account_id: &str,
        media_pipeline_id: &str,
        kind: PipelineEventType,
        at_ms: i64,
    ) -> StoreResult<()> {
        let args = (
            (account_id.to_owned(), media_pipeline_id.to_owned()),
            kind,
            at_ms,
        );
        self.write(args, |session, (ids, kind, at_ms)| {
            Box::pin(async move {
                let pipeline = session
                    .find_pipeline(PipelineKey::of(ids))
                    .await?
                    .ok_or(StoreError::PipelineNotFound)?;
                if let Some(row) = pipeline_event_row(*kind, &pipeline, *at_ms)? {
                    session.append_event(row).await?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn delete_media_pipeline(
        &self,
        account_id: &str,
        media_pipeline_id: &str,
    ) -> StoreResult<MediaPipelineRecord> {
        let ids = (account_id.to_owned(), media_pipeline_id.to_owned());
        self.write(ids, |session, ids| {
            Box::pin(async move {
                let removed = session.remove_pipeline(PipelineKey::of(ids)).await?;
                Ok(removed.ok_or(StoreError::PipelineNotFound)?)
            })
        })
        .await
    }

    async fn unfinished_media_pipelines(&self) -> StoreResult<Vec<MediaPipelineRecord>> {
        self.read((), |session, ()| Box::pin(session.unfinished_pipelines()))
            .await
    }

    async fn change_media_pipeline_tags(
        &self,
        account_id: &str,
        media_pipeline_id: &str,
        tag: Vec<Tag>,
        untag: Vec<String>,
        limit: usize,
    ) -> StoreResult<()> {
        let ids = (account_id.to_owned(), media_pipeline_id.to_owned());
        self.write((ids, tag, untag, limit), |session, change| {
            Box::pin(change_tags(session, change))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SQL conditions say what the record's constants say.
    #[test]
    fn sql_conditions_match_the_constants() {
        let finished = MediaPipelineRecord::FINISHED.map(|status| format!("'{status}'"));
        assert_eq!(
            UNFINISHED,
            format!("status NOT IN ({})", finished.join(", "))
        );
        assert_eq!(
            ACTIVE_CAPTURE,
            format!("kind = '{}' AND {UNFINISHED}", MediaPipelineRecord::CAPTURE)
        );
    }
}
