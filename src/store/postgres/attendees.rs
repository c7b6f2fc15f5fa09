//! The attendees' SQL in PostgreSQL, where the attendee version is a column of the meeting's row,
//! read with the attendees in one statement.

use super::PostgresStore;
use super::session::{Tx, TxError, TxResult, maybe};
use crate::domain::capabilities::Capabilities;
use crate::store::shared::attendees::{AttendeeLookups, AttendeeRows, CapabilitiesUpdate};
use crate::store::shared::{
    ATTENDEE_COLUMNS, AttendeeKey, Backend, Columns, MeetingKey, Page, attendee_from,
};
use crate::store::{
    AttendeePage, AttendeeRecord, NewAttendee, StoreError, StoreResult, VersionedAttendee,
};

impl AttendeeRows for Tx {
    async fn attendee_count(&mut self, meeting_id: &str) -> TxResult<usize> {
        let row = self
            .query_one(
                "SELECT COUNT(*) FROM attendees WHERE meeting_id = $1",
                &[&meeting_id],
            )
            .await?;
        Ok(usize::try_from(row.int(0)?).unwrap_or(0))
    }

    async fn attendee_by_user(
        &mut self,
        meeting_id: &str,
        external_user_id: &str,
    ) -> TxResult<Option<AttendeeRecord>> {
        let row = self
            .query_opt(
                &format!(
                    "SELECT {ATTENDEE_COLUMNS} FROM attendees \
                     WHERE meeting_id = $1 AND external_user_id = $2"
                ),
                &[&meeting_id, &external_user_id],
            )
            .await?;
        maybe(row, attendee_from)
    }

    /// `ON CONFLICT DO NOTHING`; a conflict is only reachable without the meeting lock, and the
    /// row that won is the answer.
    async fn insert_attendee(
        &mut self,
        meeting_id: &str,
        new: &NewAttendee,
    ) -> TxResult<Option<AttendeeRecord>> {
        let inserted = self
            .execute(
                &format!(
                    "INSERT INTO attendees ({ATTENDEE_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     ON CONFLICT (meeting_id, external_user_id) DO NOTHING"
                ),
                &[
                    &meeting_id,
                    &new.attendee_id,
                    &new.external_user_id,
                    &new.join_token,
                    &new.capabilities.audio.as_str(),
                    &new.capabilities.video.as_str(),
                    &new.capabilities.content.as_str(),
                    &new.created_at,
                ],
            )
            .await?;
        if inserted != 0 {
            return Ok(None);
        }
        let first = self
            .attendee_by_user(meeting_id, &new.external_user_id)
            .await?
            .ok_or(TxError::Retry("an attendee vanished while being created"))?;
        Ok(Some(first))
    }

    async fn remove_attendee(&mut self, key: AttendeeKey<'_>) -> TxResult<Option<String>> {
        let deleted = self
            .query_opt(
                "DELETE FROM attendees WHERE meeting_id = $1 AND attendee_id = $2 \
                 RETURNING external_user_id",
                &[&key.meeting_id, &key.attendee_id],
            )
            .await?;
        Ok(deleted.map(|row| row.text(0)).transpose()?)
    }

    async fn set_capabilities(
        &mut self,
        key: AttendeeKey<'_>,
        capabilities: Capabilities,
    ) -> TxResult<Option<AttendeeRecord>> {
        let updated = self
            .query_opt(
                &format!(
                    "UPDATE attendees SET audio = $3, video = $4, content = $5 \
                     WHERE meeting_id = $1 AND attendee_id = $2 RETURNING {ATTENDEE_COLUMNS}"
                ),
                &[
                    &key.meeting_id,
                    &key.attendee_id,
                    &capabilities.audio.as_str(),
                    &capabilities.video.as_str(),
                    &capabilities.content.as_str(),
                ],
            )
            .await?;
        maybe(updated, attendee_from)
    }

    async fn set_capabilities_except(&mut self, update: &CapabilitiesUpdate) -> TxResult<u64> {
        let capabilities = update.capabilities;
        self.execute(
            "UPDATE attendees SET audio = $3, video = $4, content = $5 \
             WHERE meeting_id = $1 AND attendee_id <> ALL ($2::TEXT[])",
            &[
                &update.meeting_id,
                &update.excluded,
                &capabilities.audio.as_str(),
                &capabilities.video.as_str(),
                &capabilities.content.as_str(),
            ],
        )
        .await
    }

    /// The caller holds the meeting's row lock (or created it), so every node's cached pages of
    /// the meeting stop matching when this commits.
    async fn bump_attendees_version(&mut self, meeting_id: &str) -> TxResult<()> {
        self.execute(
            "UPDATE meetings SET attendees_version = attendees_version + 1 WHERE meeting_id = $1",
            &[&meeting_id],
        )
        .await?;
        Ok(())
    }
}

impl AttendeeLookups for PostgresStore {
    /// One primary-key read, which is also the account check.
    async fn current_version(&self, key: MeetingKey<'_>) -> StoreResult<i64> {
        let ids = (key.account_id.to_owned(), key.meeting_id.to_owned());
        self.read(ids, |tx, (account_id, meeting_id)| {
            Box::pin(async move {
                let row = tx
                    .query_opt(
                        "SELECT attendees_version FROM meetings \
                         WHERE meeting_id = $1 AND account_id = $2",
                        &[meeting_id, account_id],
                    )
                    .await?
                    .ok_or(StoreError::MeetingNotFound)?;
                Ok(row.int(0)?)
            })
        })
        .await
    }

    /// The account check, the attendee and the version in one statement (one snapshot, one round
    /// trip): no row when the account has no such meeting, a row of NULL attendee columns when
    /// the attendee is gone.
    async fn versioned_attendee(
        &self,
        key: MeetingKey<'_>,
        attendee_id: &str,
    ) -> StoreResult<VersionedAttendee> {
        let ids = (
            key.account_id.to_owned(),
            key.meeting_id.to_owned(),
            attendee_id.to_owned(),
        );
        self.read(ids, |tx, (account_id, meeting_id, attendee_id)| {
            Box::pin(async move {
                let row = tx
                    .query_opt(
                        &format!(
                            "SELECT a.*, m.attendees_version FROM meetings AS m LEFT JOIN LATERAL (\
                               SELECT {ATTENDEE_COLUMNS} FROM attendees \
                               WHERE meeting_id = m.meeting_id AND attendee_id = $3) AS a ON TRUE \
                             WHERE m.meeting_id = $1 AND m.account_id = $2"
                        ),
                        &[meeting_id, account_id, attendee_id],
                    )
                    .await?
                    .ok_or(StoreError::MeetingNotFound)?;
                if row.optional_text(1)?.is_none() {
                    return Err(StoreError::AttendeeNotFound.into());
                }
                Ok(VersionedAttendee {
                    // After the attendee columns, which attendee_from reads from 0.
                    version: row.int(8)?,
                    attendee: attendee_from(&row)?,
                })
            })
        })
        .await
    }

    /// One statement, so the version and the page come from one snapshot (at any isolation
    /// level) in one round trip. The meeting's row is there even with no attendee after the
    /// cursor: the LEFT JOIN then yields one row of NULLs.
    async fn versioned_page(
        &self,
        key: MeetingKey<'_>,
        page: Page<'_>,
    ) -> StoreResult<AttendeePage> {
        let args = (
            key.account_id.to_owned(),
            key.meeting_id.to_owned(),
            page.after.to_owned(),
            page.sql_limit(),
        );
        self.read(args, |tx, (account_id, meeting_id, after, limit)| {
            Box::pin(async move {
                let rows = tx
                    .query(
                        &format!(
                            "SELECT a.*, m.attendees_version FROM meetings AS m LEFT JOIN LATERAL (\
                               SELECT {ATTENDEE_COLUMNS} FROM attendees \
                               WHERE meeting_id = m.meeting_id AND attendee_id > $3 \
                               ORDER BY attendee_id LIMIT $4) AS a ON TRUE \
                             WHERE m.meeting_id = $1 AND m.account_id = $2 \
                             ORDER BY a.attendee_id"
                        ),
                        &[meeting_id, account_id, after, limit],
                    )
                    .await?;
                let Some(first) = rows.first() else {
                    return Err(StoreError::MeetingNotFound.into());
                };
                // The version follows the attendee columns, which attendee_from reads from 0.
                let version = first.int(8)?;
                let mut attendees = Vec::with_capacity(rows.len());
                for row in &rows {
                    if row.optional_text(1)?.is_some() {
                        attendees.push(attendee_from(row)?);
                    }
                }
                Ok(AttendeePage { version, attendees })
            })
        })
        .await
    }

    /// Through the unique index of JoinTokens.
    async fn attendee_by_token(&self, join_token: &str) -> StoreResult<Option<AttendeeRecord>> {
        self.read(join_token.to_owned(), |tx, join_token| {
            Box::pin(async move {
                let row = tx
                    .query_opt(
                        &format!("SELECT {ATTENDEE_COLUMNS} FROM attendees WHERE join_token = $1"),
                        &[join_token],
                    )
                    .await?;
                maybe(row, attendee_from)
            })
        })
        .await
    }
}
