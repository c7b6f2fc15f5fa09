//! The presence SQL in PostgreSQL.

use super::session::{Tx, TxResult, each, maybe};
use crate::store::shared::presence::{
    LastPresence, PresenceRows, PresenceUpdate, last_presence_from, presence_from,
};
use crate::store::shared::{AttendeeKey, Columns, MEETING_COLUMNS, meeting_from, presence_columns};
use crate::store::{AttendeePresence, MeetingRecord, StoreResult};

impl Tx {
    async fn meeting_of_id(&self, meeting_id: &str, lock: &str) -> TxResult<Option<MeetingRecord>> {
        let row = self
            .query_opt(
                &format!("SELECT {MEETING_COLUMNS} FROM meetings WHERE meeting_id = $1{lock}"),
                &[&meeting_id],
            )
            .await?;
        maybe(row, meeting_from)
    }
}

impl PresenceRows for Tx {
    async fn meeting_by_id(&mut self, meeting_id: &str) -> TxResult<Option<MeetingRecord>> {
        self.meeting_of_id(meeting_id, "").await
    }

    async fn lock_meeting_by_id(&mut self, meeting_id: &str) -> TxResult<Option<MeetingRecord>> {
        self.meeting_of_id(meeting_id, " FOR UPDATE").await
    }

    async fn external_user_id(&mut self, key: AttendeeKey<'_>) -> TxResult<Option<String>> {
        let row = self
            .query_opt(
                "SELECT external_user_id FROM attendees \
                 WHERE meeting_id = $1 AND attendee_id = $2",
                &[&key.meeting_id, &key.attendee_id],
            )
            .await?;
        Ok(row.map(|row| row.text(0)).transpose()?)
    }

    async fn set_presence(&mut self, update: &PresenceUpdate) -> TxResult<Option<String>> {
        let (joined, dropped, column) = presence_columns(update.change);
        let changed = self
            .query_opt(
                &format!(
                    "UPDATE attendees SET joined = $3, dropped = $4, {column} = $5 \
                     WHERE meeting_id = $1 AND attendee_id = $2 RETURNING external_user_id"
                ),
                &[
                    &update.meeting_id,
                    &update.attendee_id,
                    &joined,
                    &dropped,
                    &update.at,
                ],
            )
            .await?;
        Ok(changed.map(|row| row.text(0)).transpose()?)
    }

    async fn refresh_connected(&mut self, meeting_id: &str, at: i64) -> TxResult<()> {
        // Every right-hand side reads the row as it was, so `connected` is the old state.
        self.execute(
            "UPDATE meetings SET \
               idle_since = CASE \
                 WHEN EXISTS (SELECT 1 FROM attendees WHERE meeting_id = $1 AND joined) \
                   THEN idle_since \
                 WHEN connected THEN $2 \
                 ELSE idle_since END, \
               connected = EXISTS (SELECT 1 FROM attendees WHERE meeting_id = $1 AND joined) \
             WHERE meeting_id = $1",
            &[&meeting_id, &at],
        )
        .await?;
        Ok(())
    }

    async fn connected_attendees(&mut self, meeting_id: &str) -> TxResult<Vec<(String, String)>> {
        let rows = self
            .query(
                "SELECT attendee_id, external_user_id FROM attendees \
                 WHERE meeting_id = $1 AND joined ORDER BY attendee_id",
                &[&meeting_id],
            )
            .await?;
        let pairs = rows.iter().map(|row| Ok((row.text(0)?, row.text(1)?)));
        Ok(pairs.collect::<StoreResult<_>>()?)
    }

    /// With several nodes on one database, a node resets only the meetings it hosts (see
    /// `PostgresStore::for_node`). Meetings before attendees: the lock order of every other
    /// writer.
    async fn reset_presence(&mut self, at: i64) -> TxResult<()> {
        match self.node.clone() {
            None => {
                self.execute(
                    "UPDATE meetings SET connected = FALSE, idle_since = $1 WHERE connected",
                    &[&at],
                )
                .await?;
                self.execute(
                    "UPDATE attendees SET joined = FALSE, dropped = TRUE, left_at = $1 \
                     WHERE joined",
                    &[&at],
                )
                .await?;
            }
            Some(node) => {
                let node: &str = &node;
                self.execute(
                    "UPDATE meetings SET connected = FALSE, idle_since = $1 \
                     WHERE connected AND media_base_url = $2",
                    &[&at, &node],
                )
                .await?;
                self.execute(
                    "UPDATE attendees SET joined = FALSE, dropped = TRUE, left_at = $1 \
                     WHERE joined AND meeting_id IN \
                       (SELECT meeting_id FROM meetings WHERE media_base_url = $2)",
                    &[&at, &node],
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn presence_rows(&mut self, meeting_id: &str) -> TxResult<Vec<AttendeePresence>> {
        let rows = self
            .query(
                "SELECT attendee_id, external_user_id, joined, dropped, joined_at, left_at \
                 FROM attendees WHERE meeting_id = $1 ORDER BY attendee_id",
                &[&meeting_id],
            )
            .await?;
        each(&rows, presence_from)
    }

    async fn presence_of(&mut self, key: AttendeeKey<'_>) -> TxResult<Option<LastPresence>> {
        let row = self
            .query_opt(
                "SELECT joined, joined_at, left_at FROM attendees \
                 WHERE meeting_id = $1 AND attendee_id = $2",
                &[&key.meeting_id, &key.attendee_id],
            )
            .await?;
        maybe(row, last_presence_from)
    }
}
