//! The tags' SQL in PostgreSQL.

use super::session::{Tx, TxResult, each};
use crate::store::Tag;
use crate::store::shared::tags::{TagRows, tag_from};
use crate::store::shared::{AttendeeKey, Columns};

impl TagRows for Tx {
    async fn upsert_tags(&mut self, owner: AttendeeKey<'_>, tags: &[Tag]) -> TxResult<()> {
        for tag in tags {
            self.execute(
                "INSERT INTO tags (meeting_id, attendee_id, key, value) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (meeting_id, attendee_id, key) DO UPDATE SET value = EXCLUDED.value",
                &[&owner.meeting_id, &owner.attendee_id, &tag.key, &tag.value],
            )
            .await?;
        }
        Ok(())
    }

    async fn count_tags(&mut self, owner: AttendeeKey<'_>) -> TxResult<usize> {
        let total = self
            .query_one(
                "SELECT COUNT(*) FROM tags WHERE meeting_id = $1 AND attendee_id = $2",
                &[&owner.meeting_id, &owner.attendee_id],
            )
            .await?
            .int(0)?;
        Ok(usize::try_from(total).unwrap_or(usize::MAX))
    }

    /// In one statement.
    async fn delete_tags(&mut self, owner: AttendeeKey<'_>, keys: &[String]) -> TxResult<()> {
        self.execute(
            "DELETE FROM tags WHERE meeting_id = $1 AND attendee_id = $2 \
             AND key = ANY ($3::TEXT[])",
            &[&owner.meeting_id, &owner.attendee_id, &keys],
        )
        .await?;
        Ok(())
    }

    async fn clear_tags(&mut self, owner: AttendeeKey<'_>) -> TxResult<()> {
        self.execute(
            "DELETE FROM tags WHERE meeting_id = $1 AND attendee_id = $2",
            &[&owner.meeting_id, &owner.attendee_id],
        )
        .await?;
        Ok(())
    }

    async fn tags_of(&mut self, owner: AttendeeKey<'_>) -> TxResult<Vec<Tag>> {
        let rows = self
            .query(
                "SELECT key, value FROM tags WHERE meeting_id = $1 AND attendee_id = $2 \
                 ORDER BY key",
                &[&owner.meeting_id, &owner.attendee_id],
            )
            .await?;
        each(&rows, tag_from)
    }
}
