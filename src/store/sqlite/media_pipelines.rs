//! The media pipelines' SQL in SQLite.

use rusqlite::{Connection, Params, params};

use super::session::{all, first, run};
use crate::store::shared::media_pipelines::{
    ACTIVE_CAPTURE, PIPELINE_COLUMNS, PipelineKey, PipelinePage, PipelineRows, StatusChange,
    UNFINISHED, pipeline_from,
};
use crate::store::shared::to_json;
use crate::store::{MediaPipelineRecord, StoreResult};

/// The pipeline that `condition` selects, if any.
fn pipeline_where(
    conn: &Connection,
    condition: &str,
    params: impl Params,
) -> StoreResult<Option<MediaPipelineRecord>> {
    first(
        conn,
        &format!("SELECT {PIPELINE_COLUMNS} FROM media_pipelines WHERE {condition}"),
        params,
        pipeline_from,
    )
}

impl PipelineRows for Connection {
    async fn pipeline_by_token(
        &mut self,
        account_id: &str,
        token: &str,
    ) -> StoreResult<Option<MediaPipelineRecord>> {
        pipeline_where(
            self,
            "account_id = ?1 AND client_request_token = ?2",
            params![account_id, token],
        )
    }

    async fn active_capture(
        &mut self,
        account_id: &str,
        meeting_id: &str,
    ) -> StoreResult<Option<MediaPipelineRecord>> {
        pipeline_where(
            self,
            &format!("account_id = ?1 AND meeting_id = ?2 AND {ACTIVE_CAPTURE}"),
            params![account_id, meeting_id],
        )
    }

    /// Writes to the file run one at a time (each group in an IMMEDIATE transaction), so what
    /// the checks before read still holds.
    async fn insert_pipeline(&mut self, pipeline: &MediaPipelineRecord) -> StoreResult<()> {
        run(
            self,
            &format!(
                "INSERT INTO media_pipelines ({PIPELINE_COLUMNS}) VALUES \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
            ),
            params![
                pipeline.account_id,
                pipeline.media_pipeline_id,
                pipeline.kind,
                pipeline.client_request_token,
                pipeline.control_region,
                pipeline.source_arn,
                pipeline.meeting_id,
                pipeline.sink_arn,
                pipeline.status,
                to_json(&pipeline.configuration)?,
                pipeline.created_at,
                pipeline.updated_at,
            ],
        )?;
        Ok(())
    }

    async fn find_pipeline(
        &mut self,
        key: PipelineKey<'_>,
    ) -> StoreResult<Option<MediaPipelineRecord>> {
        pipeline_where(
            self,
            "media_pipeline_id = ?1 AND account_id = ?2",
            params![key.media_pipeline_id, key.account_id],
        )
    }

    /// Writes to the file run one at a time, so what this reads stays as it is until the write
    /// commits: nothing to lock.
    async fn lock_pipeline(
        &mut self,
        key: PipelineKey<'_>,
    ) -> StoreResult<Option<MediaPipelineRecord>> {
        self.find_pipeline(key).await
    }

    async fn update_pipeline_configuration(
        &mut self,
        key: PipelineKey<'_>,
        configuration: &serde_json::Value,
    ) -> StoreResult<bool> {
        let changed = run(
            self,
            "UPDATE media_pipelines SET configuration = ?3 \
             WHERE media_pipeline_id = ?1 AND account_id = ?2",
            params![
                key.media_pipeline_id,
                key.account_id,
                to_json(configuration)?
            ],
        )?;
        Ok(changed > 0)
    }

    async fn pipelines_page(
        &mut self,
        page: PipelinePage<'_>,
    ) -> StoreResult<Vec<MediaPipelineRecord>> {
        all(
            self,
            &format!(
                "SELECT {PIPELINE_COLUMNS} FROM media_pipelines \
                 WHERE account_id = ?1 AND (created_at, media_pipeline_id) > (?2, ?3) \
                   AND (?4 IS NULL OR kind = ?4) \
                 ORDER BY created_at, media_pipeline_id LIMIT ?5"
            ),
            params![
                page.account_id,
                page.created_at,
                page.after_id,
                page.kind,
                page.sql_limit()
            ],
            pipeline_from,
        )
    }

    async fn update_pipeline_status(&mut self, change: StatusChange<'_>) -> StoreResult<bool> {
        let StatusChange {
            key,
            status,
            updated_at,
        } = change;
        let changed = run(
            self,
            "UPDATE media_pipelines SET status = ?3, updated_at = ?4 \
             WHERE media_pipeline_id = ?1 AND account_id = ?2",
            params![key.media_pipeline_id, key.account_id, status, updated_at],
        )?;
        Ok(changed > 0)
    }

    async fn remove_pipeline(
        &mut self,
        key: PipelineKey<'_>,
    ) -> StoreResult<Option<MediaPipelineRecord>> {
        first(
            self,
            &format!(
                "DELETE FROM media_pipelines WHERE media_pipeline_id = ?1 AND account_id = ?2 \
                 RETURNING {PIPELINE_COLUMNS}"
            ),
            params![key.media_pipeline_id, key.account_id],
            pipeline_from,
        )
    }

    async fn unfinished_pipelines(&mut self) -> StoreResult<Vec<MediaPipelineRecord>> {
        all(
            self,
            &format!(
                "SELECT {PIPELINE_COLUMNS} FROM media_pipelines WHERE {UNFINISHED} \
                 ORDER BY created_at, media_pipeline_id"
            ),
            [],
            pipeline_from,
        )
    }
}
