//! The meetings' SQL in SQLite.

use rusqlite::{Connection, params};

use super::session::{all, first, run};
use super::writer::touch;
use crate::store::shared::meetings::MeetingRows;
use crate::store::shared::{
    DUE_MEETINGS_PER_CALL, MEETING_COLUMNS, Page, due_bounds, meeting_from, sql_limit, to_json,
};
use crate::store::{EndRules, MeetingRecord, StoreResult};

impl MeetingRows for Connection {
    async fn insert_meeting(
        &mut self,
        meeting: &MeetingRecord,
    ) -> StoreResult<Option<MeetingRecord>> {
        let earlier = first(
            self,
            &format!(
                "SELECT {MEETING_COLUMNS} FROM meetings \
                 WHERE account_id = ?1 AND client_request_token = ?2"
            ),
            params![meeting.account_id, meeting.client_request_token],
            meeting_from,
        )?;
        if earlier.is_some() {
            return Ok(earlier);
        }
        run(
            self,
            &format!(
                "INSERT INTO meetings ({MEETING_COLUMNS}) VALUES \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
            ),
            params![
                meeting.account_id,
                meeting.meeting_id,
                meeting.client_request_token,
                meeting.control_region,
                meeting.media_region,
                meeting.external_meeting_id,
                meeting.meeting_host_id,
                meeting.primary_meeting_id,
                to_json(&meeting.tenant_ids)?,
                meeting.features.as_ref().map(to_json).transpose()?,
                meeting.notifications.as_ref().map(to_json).transpose()?,
                meeting.network_type,
                meeting.media_base_url,
                meeting.max_attendees,
                meeting.created_at,
            ],
        )?;
        Ok(None)
    }

    async fn lock_replicas(&mut self, meeting_id: &str) -> StoreResult<Vec<MeetingRecord>> {
        all(
            self,
            &format!("SELECT {MEETING_COLUMNS} FROM meetings WHERE primary_meeting_id = ?1"),
            params![meeting_id],
            meeting_from,
        )
    }

    async fn remove_meeting(&mut self, meeting_id: &str) -> StoreResult<()> {
        run(
            self,
            "DELETE FROM meetings WHERE meeting_id = ?1",
            params![meeting_id],
        )?;
        touch(meeting_id);
        Ok(())
    }

    async fn due_meetings(
        &mut self,
        now: i64,
        rules: EndRules,
    ) -> StoreResult<Vec<(String, String)>> {
        // Each arm reads only what is due through its own index (a scan of every meeting, once a
        // second on the writer thread, grew with the store). Replicas never end by their own
        // clocks, only with their primary; one whose primary is gone (it raced the primary's
        // end) ends now. A meeting both too old and idle is listed twice.
        let (created_by, idle_since_by) = due_bounds(now, rules);
        all(
            self,
            "SELECT account_id, meeting_id FROM meetings INDEXED BY meetings_by_age \
             WHERE created_at <= ?1 AND +primary_meeting_id IS NULL \
             UNION ALL \
             SELECT account_id, meeting_id FROM meetings INDEXED BY meetings_idle_due \
             WHERE connected = 0 AND COALESCE(idle_since, created_at) <= ?2 \
               AND +primary_meeting_id IS NULL \
             UNION ALL \
             SELECT m.account_id, m.meeting_id \
             FROM meetings AS m INDEXED BY meetings_by_primary \
             WHERE m.primary_meeting_id > '' AND NOT EXISTS \
               (SELECT 1 FROM meetings AS p WHERE p.meeting_id = m.primary_meeting_id) \
             LIMIT ?3",
            params![created_by, idle_since_by, DUE_MEETINGS_PER_CALL],
            |row| Ok((row.text(0)?, row.text(1)?)),
        )
    }

    async fn meetings_page(
        &mut self,
        account_id: &str,
        page: Page<'_>,
    ) -> StoreResult<Vec<MeetingRecord>> {
        all(
            self,
            &format!(
                "SELECT {MEETING_COLUMNS} FROM meetings WHERE account_id = ?1 AND meeting_id > ?2 \
                 ORDER BY meeting_id LIMIT ?3"
            ),
            params![account_id, page.after, page.sql_limit()],
            meeting_from,
        )
    }

    async fn newest_meetings(&mut self, limit: usize) -> StoreResult<Vec<MeetingRecord>> {
        all(
            self,
            &format!(
                "SELECT {MEETING_COLUMNS} FROM meetings \
                 ORDER BY created_at DESC, meeting_id LIMIT ?1"
            ),
            params![sql_limit(limit)],
            meeting_from,
        )
    }

    async fn has_meeting(&mut self, meeting_id: &str) -> StoreResult<bool> {
        let exists = first(
            self,
            "SELECT EXISTS (SELECT 1 FROM meetings WHERE meeting_id = ?1)",
            params![meeting_id],
            |row| row.flag(0),
        )?;
        Ok(exists.unwrap_or(false))
    }
}
