//! The attendees' SQL in SQLite, the attendee counts and versions its writer keeps in memory,
//! and its lookups by version and by JoinToken.

use rusqlite::{Connection, params};

use super::session::{all, find_attendee, first, run};
use super::versions::Lookup;
use super::writer::touch;
use super::{SqliteStore, attendee_counts};
use crate::domain::capabilities::Capabilities;
use crate::store::shared::attendees::{AttendeeLookups, AttendeeRows, CapabilitiesUpdate};
use crate::store::shared::{
    ATTENDEE_COLUMNS, AttendeeKey, MeetingKey, Page, attendee_from, to_json,
};
use crate::store::{
    AttendeePage, AttendeeRecord, NewAttendee, StoreError, StoreResult, VersionedAttendee,
};

impl AttendeeRows for Connection {
    /// Through the primary key's meeting prefix.
    async fn attendee_count(&mut self, meeting_id: &str) -> StoreResult<usize> {
        let count = first(
            self,
            "SELECT COUNT(*) FROM attendees WHERE meeting_id = ?1",
            params![meeting_id],
            |row| row.int(0),
        )?;
        Ok(count
            .and_then(|count| usize::try_from(count).ok())
            .unwrap_or(0))
    }

    /// Remembered by the writer when it can be (`attendee_counts.rs`): counting in SQLite once
    /// per create was a tenth of the writer's time.
    fn known_attendee_count(&self, meeting_id: &str) -> Option<u32> {
        attendee_counts::known(meeting_id)
    }

    fn attendees_counted(&mut self, meeting_id: &str, count: u32) {
        attendee_counts::set(meeting_id, count);
    }

    async fn attendee_by_user(
        &mut self,
        meeting_id: &str,
        external_user_id: &str,
    ) -> StoreResult<Option<AttendeeRecord>> {
        first(
            self,
            &format!(
                "SELECT {ATTENDEE_COLUMNS} FROM attendees \
                 WHERE meeting_id = ?1 AND external_user_id = ?2"
            ),
            params![meeting_id, external_user_id],
            attendee_from,
        )
    }

    /// The writer runs one write at a time: no other insert can come first.
    async fn insert_attendee(
        &mut self,
        meeting_id: &str,
        new: &NewAttendee,
    ) -> StoreResult<Option<AttendeeRecord>> {
        run(
            self,
            &format!(
                "INSERT INTO attendees ({ATTENDEE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ),
            params![
                meeting_id,
                new.attendee_id,
                new.external_user_id,
                new.join_token,
                new.capabilities.audio.as_str(),
                new.capabilities.video.as_str(),
                new.capabilities.content.as_str(),
                new.created_at,
            ],
        )?;
        Ok(None)
    }

    async fn remove_attendee(&mut self, key: AttendeeKey<'_>) -> StoreResult<Option<String>> {
        let external_user_id = first(
            self,
            "SELECT external_user_id FROM attendees WHERE meeting_id = ?1 AND attendee_id = ?2",
            params![key.meeting_id, key.attendee_id],
            |row| row.text(0),
        )?;
        if external_user_id.is_some() {
            run(
                self,
                "DELETE FROM attendees WHERE meeting_id = ?1 AND attendee_id = ?2",
                params![key.meeting_id, key.attendee_id],
            )?;
        }
        Ok(external_user_id)
    }

    async fn set_capabilities(
        &mut self,
        key: AttendeeKey<'_>,
        capabilities: Capabilities,
    ) -> StoreResult<Option<AttendeeRecord>> {
        let updated = run(
            self,
            "UPDATE attendees SET audio = ?3, video = ?4, content = ?5 \
             WHERE meeting_id = ?1 AND attendee_id = ?2",
            params![
                key.meeting_id,
                key.attendee_id,
                capabilities.audio.as_str(),
                capabilities.video.as_str(),
                capabilities.content.as_str()
            ],
        )?;
        if updated == 0 {
            return Ok(None);
        }
        find_attendee(self, key)
    }

    async fn set_capabilities_except(&mut self, update: &CapabilitiesUpdate) -> StoreResult<u64> {
        let capabilities = update.capabilities;
        let updated = run(
            self,
            "UPDATE attendees SET audio = ?3, video = ?4, content = ?5 WHERE meeting_id = ?1 \
             AND attendee_id NOT IN (SELECT value FROM json_each(?2))",
            params![
                update.meeting_id,
                to_json(&update.excluded)?,
                capabilities.audio.as_str(),
                capabilities.video.as_str(),
                capabilities.content.as_str()
            ],
        )?;
        Ok(u64::try_from(updated).unwrap_or(u64::MAX))
    }

    /// Nothing is written: the version lives in memory (see `versions.rs`), and the writer
    /// forgets the meeting's generation once this transaction commits, before its callers are
    /// answered.
    async fn bump_attendees_version(&mut self, meeting_id: &str) -> StoreResult<()> {
        touch(meeting_id);
        Ok(())
    }
}

/// Whether the account's meeting exists: one primary-key read.
fn check_meeting_account(conn: &Connection, key: MeetingKey<'_>) -> StoreResult<()> {
    first(
        conn,
        "SELECT 1 FROM meetings WHERE meeting_id = ?1 AND account_id = ?2",
        params![key.meeting_id, key.account_id],
        |_| Ok(()),
    )?
    .ok_or(StoreError::MeetingNotFound)
}

impl AttendeeLookups for SqliteStore {
    /// A generation kept in memory (see `versions.rs`), after checking the meeting's account in
    /// SQLite when it is not remembered. A meeting of another account is not found, as in
    /// SQLite. Callers pairing it with rows must read the rows after this returns, so the rows
    /// are never older than it.
    async fn current_version(&self, key: MeetingKey<'_>) -> StoreResult<i64> {
        let ticket = match self.versions.lookup(key.meeting_id) {
            Lookup::Known(known) if known.account_id == key.account_id => {
                return Ok(known.version);
            }
            Lookup::Known(_) => return Err(StoreError::MeetingNotFound),
            Lookup::Unknown(ticket) => ticket,
        };
        let ids = (key.account_id.to_owned(), key.meeting_id.to_owned());
        self.read_now(move |conn| {
            let (account_id, meeting_id) = &ids;
            check_meeting_account(
                conn,
                MeetingKey {
                    account_id,
                    meeting_id,
                },
            )
        })
        .await?;
        Ok(self
            .versions
            .remember(ticket, key.meeting_id, key.account_id)
            .version)
    }

    async fn versioned_attendee(
        &self,
        key: MeetingKey<'_>,
        attendee_id: &str,
    ) -> StoreResult<VersionedAttendee> {
        // The version first (with the account check), then the row: never older than it.
        let version = self.current_version(key).await?;
        let ids = (key.meeting_id.to_owned(), attendee_id.to_owned());
        let attendee = self
            .read_now(move |conn| {
                let (meeting_id, attendee_id) = &ids;
                let key = AttendeeKey {
                    meeting_id,
                    attendee_id,
                };
                find_attendee(conn, key)?.ok_or(StoreError::AttendeeNotFound)
            })
            .await?;
        Ok(VersionedAttendee { version, attendee })
    }

    async fn versioned_page(
        &self,
        key: MeetingKey<'_>,
        page: Page<'_>,
    ) -> StoreResult<AttendeePage> {
        // The version first (with the account check), then the rows: never older than it.
        let version = self.current_version(key).await?;
        let args = (
            key.meeting_id.to_owned(),
            page.after.to_owned(),
            page.sql_limit(),
        );
        let attendees = self
            .read_now(move |conn| {
                let (meeting_id, after, limit) = &args;
                all(
                    conn,
                    &format!(
                        "SELECT {ATTENDEE_COLUMNS} FROM attendees \
                         WHERE meeting_id = ?1 AND attendee_id > ?2 \
                         ORDER BY attendee_id LIMIT ?3"
                    ),
                    params![meeting_id, after, limit],
                    attendee_from,
                )
            })
            .await?;
        Ok(AttendeePage { version, attendees })
    }

    /// Through the index of attendees by the id the token names (see `schema.rs`).
    async fn attendee_by_token(&self, join_token: &str) -> StoreResult<Option<AttendeeRecord>> {
        let Some(attendee_id) = crate::domain::tokens::join_token_attendee(join_token) else {
            return Ok(None);
        };
        let join_token = join_token.to_string();
        self.read_now(move |conn| {
            let named = all(
                conn,
                &format!("SELECT {ATTENDEE_COLUMNS} FROM attendees WHERE attendee_id = ?1"),
                params![attendee_id],
                attendee_from,
            )?;
            Ok(named.into_iter().find(|attendee| {
                crate::domain::digest::constant_time_eq(
                    attendee.join_token.as_bytes(),
                    join_token.as_bytes(),
                )
            }))
        })
        .await
    }
}
