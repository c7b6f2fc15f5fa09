//! The outbox's SQL in PostgreSQL. Events are numbered at COMMIT from the counter row
//! (`Tx::flush_events`), so that sequence order is commit order across nodes.

use super::session::{Tx, TxResult, each};
use crate::store::shared::outbox::{Lease, OutboxRows, dead_letter_from, event_from};
use crate::store::shared::{Columns, sql_limit};
use crate::store::{DeadLetter, OutboxEvent};

impl OutboxRows for Tx {
    async fn events_after(&mut self, after: i64, limit: usize) -> TxResult<Vec<OutboxEvent>> {
        let limit = sql_limit(limit);
        let rows = self
            .query(
                "SELECT seq, meeting_id, targets, body, recorded_at_ms FROM events \
                 WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&after, &limit],
            )
            .await?;
        each(&rows, event_from)
    }

    async fn last_seq(&mut self) -> TxResult<i64> {
        let row = self
            .query_one("SELECT COALESCE(MAX(seq), 0)::BIGINT FROM events", &[])
            .await?;
        Ok(row.int(0)?)
    }

    async fn oldest_event_at(&mut self) -> TxResult<Option<i64>> {
        let oldest = self
            .query_opt(
                "SELECT recorded_at_ms FROM events ORDER BY seq LIMIT 1",
                &[],
            )
            .await?;
        Ok(oldest.map(|row| row.int(0)).transpose()?)
    }

    async fn delete_events(&mut self, before_ms: i64, limit: usize) -> TxResult<usize> {
        let limit = sql_limit(limit);
        let removed = self
            .execute(
                "DELETE FROM events WHERE seq IN \
                   (SELECT seq FROM events ORDER BY seq LIMIT $2) \
                 AND recorded_at_ms < $1",
                &[&before_ms, &limit],
            )
            .await?;
        Ok(usize::try_from(removed).unwrap_or(usize::MAX))
    }

    async fn cursor_of(&mut self, sink: &str) -> TxResult<Option<i64>> {
        let row = self
            .query_opt(
                "SELECT delivered_seq FROM event_sinks WHERE sink = $1",
                &[&sink],
            )
            .await?;
        Ok(row.map(|row| row.int(0)).transpose()?)
    }

    async fn advance_cursor(&mut self, sink: &str, seq: i64) -> TxResult<()> {
        self.execute(
            "INSERT INTO event_sinks (sink, delivered_seq) VALUES ($1, $2) \
             ON CONFLICT (sink) DO UPDATE SET \
               delivered_seq = GREATEST(event_sinks.delivered_seq, EXCLUDED.delivered_seq)",
            &[&sink, &seq],
        )
        .await?;
        Ok(())
    }

    async fn claim_sink(&mut self, lease: &Lease) -> TxResult<()> {
        self.execute(
            "INSERT INTO event_sinks (sink, delivered_seq, owner, lease_until) \
             VALUES ($1, 0, $2, $3) \
             ON CONFLICT (sink) DO UPDATE SET owner = EXCLUDED.owner, \
               lease_until = EXCLUDED.lease_until \
             WHERE event_sinks.owner IS NULL OR event_sinks.owner = EXCLUDED.owner \
               OR event_sinks.lease_until < $4",
            &[&lease.sink, &lease.node, &lease.until(), &lease.now_ms],
        )
        .await?;
        Ok(())
    }

    async fn sink_owner(&mut self, sink: &str) -> TxResult<Option<String>> {
        let row = self
            .query_one("SELECT owner FROM event_sinks WHERE sink = $1", &[&sink])
            .await?;
        Ok(row.optional_text(0)?)
    }

    async fn insert_dead_letter(&mut self, letter: &DeadLetter) -> TxResult<()> {
        self.execute(
            "INSERT INTO dead_letters (sink, seq, error, at_ms, body) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (sink, seq) DO UPDATE SET \
               error = EXCLUDED.error, at_ms = EXCLUDED.at_ms, body = EXCLUDED.body",
            &[
                &letter.sink,
                &letter.seq,
                &letter.error,
                &letter.at_ms,
                &letter.body,
            ],
        )
        .await?;
        Ok(())
    }

    async fn all_dead_letters(&mut self) -> TxResult<Vec<DeadLetter>> {
        let rows = self
            .query(
                "SELECT sink, seq, error, at_ms, body FROM dead_letters ORDER BY at_ms, seq",
                &[],
            )
            .await?;
        each(&rows, dead_letter_from)
    }
}
