//! The media pipelines' SQL in PostgreSQL.

use super::session::{Params, Tx, TxError, TxResult, each, maybe};
use crate::store::MediaPipelineRecord;
use crate::store::shared::media_pipelines::{
    ACTIVE_CAPTURE, PIPELINE_COLUMNS, PipelineKey, PipelinePage, PipelineRows, StatusChange,
    UNFINISHED, pipeline_from,
};
use crate::store::shared::to_json;

/// The pipeline that `condition` selects, if any.
async fn pipeline_where(
    tx: &Tx,
    condition: &str,
    params: Params<'_>,
) -> TxResult<Option<MediaPipelineRecord>> {
    let sql = format!("SELECT {PIPELINE_COLUMNS} FROM media_pipelines WHERE {condition}");
    maybe(tx.query_opt(&sql, params).await?, pipeline_from)
}

impl PipelineRows for Tx {
    async fn pipeline_by_token(
        &mut self,
        account_id: &str,
        token: &str,
    ) -> TxResult<Option<MediaPipelineRecord>> {
        let condition = "account_id = $1 AND client_request_token = $2";
        pipeline_where(self, condition, &[&account_id, &token]).await
    }

    async fn active_capture(
        &mut self,
        account_id: &str,
        meeting_id: &str,
    ) -> TxResult<Option<MediaPipelineRecord>> {
        let condition = format!("account_id = $1 AND meeting_id = $2 AND {ACTIVE_CAPTURE}");
        pipeline_where(self, &condition, &[&account_id, &meeting_id]).await
    }

    /// `ON CONFLICT DO NOTHING`: a concurrent create (perhaps on another node) of the same token
    /// or of an active capture of the same meeting makes this insert wait for its COMMIT, then
    /// insert nothing. The write then runs again, and its checks find that pipeline.
    async fn insert_pipeline(&mut self, pipeline: &MediaPipelineRecord) -> TxResult<()> {
        let inserted = self
            .execute(
                &format!(
                    "INSERT INTO media_pipelines ({PIPELINE_COLUMNS}) VALUES \
                     ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING"
                ),
                &[
                    &pipeline.account_id,
                    &pipeline.media_pipeline_id,
                    &pipeline.kind,
                    &pipeline.client_request_token,
                    &pipeline.control_region,
                    &pipeline.source_arn,
                    &pipeline.meeting_id,
                    &pipeline.sink_arn,
                    &pipeline.status,
                    &to_json(&pipeline.configuration)?,
                    &pipeline.created_at,
                    &pipeline.updated_at,
                ],
            )
            .await?;
        if inserted == 0 {
            return Err(TxError::Retry(
                "a concurrent create committed this token or an active capture of this meeting",
            ));
        }
        Ok(())
    }

    async fn find_pipeline(
        &mut self,
        key: PipelineKey<'_>,
    ) -> TxResult<Option<MediaPipelineRecord>> {
        let condition = "media_pipeline_id = $1 AND account_id = $2";
        pipeline_where(self, condition, &[&key.media_pipeline_id, &key.account_id]).await
    }

    /// `SELECT ... FOR UPDATE`: concurrent changes of the pipeline's configuration, on any
    /// node, queue on its row.
    async fn lock_pipeline(
        &mut self,
        key: PipelineKey<'_>,
    ) -> TxResult<Option<MediaPipelineRecord>> {
        let condition = "media_pipeline_id = $1 AND account_id = $2 FOR UPDATE";
        pipeline_where(self, condition, &[&key.media_pipeline_id, &key.account_id]).await
    }

    async fn update_pipeline_configuration(
        &mut self,
        key: PipelineKey<'_>,
        configuration: &serde_json::Value,
    ) -> TxResult<bool> {
        let changed = self
            .execute(
                "UPDATE media_pipelines SET configuration = $3 \
                 WHERE media_pipeline_id = $1 AND account_id = $2",
                &[
                    &key.media_pipeline_id,
                    &key.account_id,
                    &to_json(configuration)?,
                ],
            )
            .await?;
        Ok(changed > 0)
    }

    async fn pipelines_page(
        &mut self,
        page: PipelinePage<'_>,
    ) -> TxResult<Vec<MediaPipelineRecord>> {
        let rows = self
            .query(
                &format!(
                    "SELECT {PIPELINE_COLUMNS} FROM media_pipelines \
                     WHERE account_id = $1 AND (created_at, media_pipeline_id) > ($2, $3) \
                       AND ($4::TEXT IS NULL OR kind = $4) \
                     ORDER BY created_at, media_pipeline_id LIMIT $5"
                ),
                &[
                    &page.account_id,
                    &page.created_at,
                    &page.after_id,
                    &page.kind,
                    &page.sql_limit(),
                ],
            )
            .await?;
        each(&rows, pipeline_from)
    }

    async fn update_pipeline_status(&mut self, change: StatusChange<'_>) -> TxResult<bool> {
        let changed = self
            .execute(
                "UPDATE media_pipelines SET status = $3, updated_at = $4 \
                 WHERE media_pipeline_id = $1 AND account_id = $2",
                &[
                    &change.key.media_pipeline_id,
                    &change.key.account_id,
                    &change.status,
                    &change.updated_at,
                ],
            )
            .await?;
        Ok(changed > 0)
    }

    async fn remove_pipeline(
        &mut self,
        key: PipelineKey<'_>,
    ) -> TxResult<Option<MediaPipelineRecord>> {
        let row = self
            .query_opt(
                &format!(
                    "DELETE FROM media_pipelines WHERE media_pipeline_id = $1 AND account_id = $2 \
                     RETURNING {PIPELINE_COLUMNS}"
                ),
                &[&key.media_pipeline_id, &key.account_id],
            )
            .await?;
        maybe(row, pipeline_from)
    }

    async fn unfinished_pipelines(&mut self) -> TxResult<Vec<MediaPipelineRecord>> {
        let rows = self
            .query(
                &format!(
                    "SELECT {PIPELINE_COLUMNS} FROM media_pipelines WHERE {UNFINISHED} \
                     ORDER BY created_at, media_pipeline_id"
                ),
                &[],
            )
            .await?;
        each(&rows, pipeline_from)
    }
}
