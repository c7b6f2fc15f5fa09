//! The presence SQL in SQLite.

use rusqlite::{Connection, params};

use super::session::{all, first, run};
use crate::store::shared::presence::{
    LastPresence, PresenceRows, PresenceUpdate, last_presence_from, presence_from,
};
use crate::store::shared::{AttendeeKey, MEETING_COLUMNS, meeting_from, presence_columns};
use crate::store::{AttendeePresence, MeetingRecord, StoreResult};

impl PresenceRows for Connection {
    async fn meeting_by_id(&mut self, meeting_id: &str) -> StoreResult<Option<MeetingRecord>> {
        first(
            self,
            &format!("SELECT {MEETING_COLUMNS} FROM meetings WHERE meeting_id = ?1"),
            params![meeting_id],
            meeting_from,
        )
    }

    /// The writer thread runs one write at a time: reading the meeting is holding it.
    async fn lock_meeting_by_id(&mut self, meeting_id: &str) -> StoreResult<Option<MeetingRecord>> {
        self.meeting_by_id(meeting_id).await
    }

    async fn external_user_id(&mut self, key: AttendeeKey<'_>) -> StoreResult<Option<String>> {
        first(
            self,
            "SELECT external_user_id FROM attendees WHERE meeting_id = ?1 AND attendee_id = ?2",
            params![key.meeting_id, key.attendee_id],
            |row| row.text(0),
        )
    }

    async fn set_presence(&mut self, update: &PresenceUpdate) -> StoreResult<Option<String>> {
        let (joined, dropped, column) = presence_columns(update.change);
        let changed = run(
            self,
            &format!(
                "UPDATE attendees SET joined = ?3, dropped = ?4, {column} = ?5 \
                 WHERE meeting_id = ?1 AND attendee_id = ?2"
            ),
            params![
                update.meeting_id,
                update.attendee_id,
                joined,
                dropped,
                update.at
            ],
        )?;
        if changed != 1 {
            return Ok(None);
        }
        let key = AttendeeKey {
            meeting_id: &update.meeting_id,
            attendee_id: &update.attendee_id,
        };
        self.external_user_id(key).await
    }

    async fn refresh_connected(&mut self, meeting_id: &str, at: i64) -> StoreResult<()> {
        // Every right-hand side reads the row as it was, so `connected = 1` is the old state.
        run(
            self,
            "UPDATE meetings SET \
               idle_since = CASE \
                 WHEN EXISTS (SELECT 1 FROM attendees WHERE meeting_id = ?1 AND joined = 1) \
                   THEN idle_since \
                 WHEN connected = 1 THEN ?2 \
                 ELSE idle_since END, \
               connected = EXISTS (SELECT 1 FROM attendees WHERE meeting_id = ?1 AND joined = 1) \
             WHERE meeting_id = ?1",
            params![meeting_id, at],
        )?;
        Ok(())
    }

    async fn connected_attendees(
        &mut self,
        meeting_id: &str,
    ) -> StoreResult<Vec<(String, String)>> {
        all(
            self,
            "SELECT attendee_id, external_user_id FROM attendees \
             WHERE meeting_id = ?1 AND joined = 1 ORDER BY attendee_id",
            params![meeting_id],
            |row| Ok((row.text(0)?, row.text(1)?)),
        )
    }

    /// On a single node, nobody is connected when the server starts.
    async fn reset_presence(&mut self, at: i64) -> StoreResult<()> {
        run(
            self,
            "UPDATE attendees SET joined = 0, dropped = 1, left_at = ?1 WHERE joined = 1",
            params![at],
        )?;
        run(
            self,
            "UPDATE meetings SET connected = 0, idle_since = ?1 WHERE connected = 1",
            params![at],
        )?;
        Ok(())
    }

    async fn presence_rows(&mut self, meeting_id: &str) -> StoreResult<Vec<AttendeePresence>> {
        all(
            self,
            "SELECT attendee_id, external_user_id, joined, dropped, joined_at, left_at \
             FROM attendees WHERE meeting_id = ?1 ORDER BY attendee_id",
            params![meeting_id],
            presence_from,
        )
    }

    async fn presence_of(&mut self, key: AttendeeKey<'_>) -> StoreResult<Option<LastPresence>> {
        first(
            self,
            "SELECT joined, joined_at, left_at FROM attendees \
             WHERE meeting_id = ?1 AND attendee_id = ?2",
            params![key.meeting_id, key.attendee_id],
            last_presence_from,
        )
    }
}
