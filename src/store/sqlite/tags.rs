//! The tags' SQL in SQLite.

use rusqlite::{Connection, params};

use super::session::{all, first, run};
use crate::store::shared::AttendeeKey;
use crate::store::shared::tags::{TagRows, tag_from};
use crate::store::{StoreResult, Tag};

impl TagRows for Connection {
    async fn upsert_tags(&mut self, owner: AttendeeKey<'_>, tags: &[Tag]) -> StoreResult<()> {
        for tag in tags {
            run(
                self,
                "INSERT INTO tags (meeting_id, attendee_id, key, value) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (meeting_id, attendee_id, key) DO UPDATE SET value = excluded.value",
                params![owner.meeting_id, owner.attendee_id, tag.key, tag.value],
            )?;
        }
        Ok(())
    }

    async fn count_tags(&mut self, owner: AttendeeKey<'_>) -> StoreResult<usize> {
        let total = first(
            self,
            "SELECT COUNT(*) FROM tags WHERE meeting_id = ?1 AND attendee_id = ?2",
            params![owner.meeting_id, owner.attendee_id],
            |row| row.int(0),
        )?;
        Ok(total.map_or(0, |total| usize::try_from(total).unwrap_or(usize::MAX)))
    }

    async fn delete_tags(&mut self, owner: AttendeeKey<'_>, keys: &[String]) -> StoreResult<()> {
        for key in keys {
            run(
                self,
                "DELETE FROM tags WHERE meeting_id = ?1 AND attendee_id = ?2 AND key = ?3",
                params![owner.meeting_id, owner.attendee_id, key],
            )?;
        }
        Ok(())
    }

    async fn clear_tags(&mut self, owner: AttendeeKey<'_>) -> StoreResult<()> {
        run(
            self,
            "DELETE FROM tags WHERE meeting_id = ?1 AND attendee_id = ?2",
            params![owner.meeting_id, owner.attendee_id],
        )?;
        Ok(())
    }

    async fn tags_of(&mut self, owner: AttendeeKey<'_>) -> StoreResult<Vec<Tag>> {
        all(
            self,
            "SELECT key, value FROM tags WHERE meeting_id = ?1 AND attendee_id = ?2 ORDER BY key",
            params![owner.meeting_id, owner.attendee_id],
            tag_from,
        )
    }
}
