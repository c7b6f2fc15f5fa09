//! The outbox's SQL in SQLite: events numbered by `AUTOINCREMENT`, which the single writer hands
//! out in commit order.

use rusqlite::{Connection, params};

use super::session::{all, first, run};
use crate::store::shared::outbox::{Lease, OutboxRows, dead_letter_from, event_from};
use crate::store::shared::sql_limit;
use crate::store::{DeadLetter, OutboxEvent, StoreResult};

impl OutboxRows for Connection {
    async fn events_after(&mut self, after: i64, limit: usize) -> StoreResult<Vec<OutboxEvent>> {
        all(
            self,
            "SELECT seq, meeting_id, targets, body, recorded_at_ms FROM events \
             WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            params![after, sql_limit(limit)],
            event_from,
        )
    }

    async fn last_seq(&mut self) -> StoreResult<i64> {
        let seq = first(
            self,
            "SELECT COALESCE(MAX(seq), 0) FROM events",
            [],
            |row| row.int(0),
        )?;
        Ok(seq.unwrap_or(0))
    }

    async fn oldest_event_at(&mut self) -> StoreResult<Option<i64>> {
        first(
            self,
            "SELECT recorded_at_ms FROM events ORDER BY seq LIMIT 1",
            [],
            |row| row.int(0),
        )
    }

    async fn delete_events(&mut self, before_ms: i64, limit: usize) -> StoreResult<usize> {
        run(
            self,
            "DELETE FROM events WHERE seq IN (SELECT seq FROM events ORDER BY seq LIMIT ?2) \
             AND recorded_at_ms < ?1",
            params![before_ms, sql_limit(limit)],
        )
    }

    async fn cursor_of(&mut self, sink: &str) -> StoreResult<Option<i64>> {
        first(
            self,
            "SELECT delivered_seq FROM event_sinks WHERE sink = ?1",
            params![sink],
            |row| row.int(0),
        )
    }

    async fn advance_cursor(&mut self, sink: &str, seq: i64) -> StoreResult<()> {
        run(
            self,
            "INSERT INTO event_sinks (sink, delivered_seq) VALUES (?1, ?2) \
             ON CONFLICT (sink) DO UPDATE SET \
               delivered_seq = MAX(delivered_seq, excluded.delivered_seq)",
            params![sink, seq],
        )?;
        Ok(())
    }

    async fn claim_sink(&mut self, lease: &Lease) -> StoreResult<()> {
        run(
            self,
            "INSERT INTO event_sinks (sink, delivered_seq, owner, lease_until) \
             VALUES (?1, 0, ?2, ?3) \
             ON CONFLICT (sink) DO UPDATE SET owner = excluded.owner, \
               lease_until = excluded.lease_until \
             WHERE event_sinks.owner IS NULL OR event_sinks.owner = excluded.owner \
               OR event_sinks.lease_until < ?4",
            params![lease.sink, lease.node, lease.until(), lease.now_ms],
        )?;
        Ok(())
    }

    async fn sink_owner(&mut self, sink: &str) -> StoreResult<Option<String>> {
        let owner = first(
            self,
            "SELECT owner FROM event_sinks WHERE sink = ?1",
            params![sink],
            |row| row.optional_text(0),
        )?;
        Ok(owner.flatten())
    }

    async fn insert_dead_letter(&mut self, letter: &DeadLetter) -> StoreResult<()> {
        run(
            self,
            "INSERT OR REPLACE INTO dead_letters (sink, seq, error, at_ms, body) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                letter.sink,
                letter.seq,
                letter.error,
                letter.at_ms,
                letter.body
            ],
        )?;
        Ok(())
    }

    async fn all_dead_letters(&mut self) -> StoreResult<Vec<DeadLetter>> {
        all(
            self,
            "SELECT sink, seq, error, at_ms, body FROM dead_letters ORDER BY at_ms, seq",
            [],
            dead_letter_from,
        )
    }
}
