//! The node registry's SQL in PostgreSQL.

use super::session::{Tx, TxResult, each};
use crate::store::NodeBeat;
use crate::store::shared::Columns;
use crate::store::shared::nodes::{NodeRows, node_from};

impl NodeRows for Tx {
    async fn upsert_node(&mut self, beat: &NodeBeat) -> TxResult<()> {
        self.execute(
            "INSERT INTO nodes (url, beat_at_ms, sessions, stopped) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (url) DO UPDATE SET beat_at_ms = EXCLUDED.beat_at_ms, \
               sessions = EXCLUDED.sessions, stopped = EXCLUDED.stopped",
            &[&beat.url, &beat.beat_at_ms, &beat.sessions, &beat.stopped],
        )
        .await?;
        Ok(())
    }

    async fn forget_nodes(&mut self, before_ms: i64, keep_url: &str) -> TxResult<()> {
        self.execute(
            "DELETE FROM nodes WHERE beat_at_ms < $1 AND url <> $2",
            &[&before_ms, &keep_url],
        )
        .await?;
        Ok(())
    }

    async fn nodes(&mut self) -> TxResult<Vec<NodeBeat>> {
        let rows = self
            .query(
                "SELECT url, beat_at_ms, sessions, stopped FROM nodes ORDER BY url",
                &[],
            )
            .await?;
        each(&rows, node_from)
    }

    async fn host_of(&mut self, meeting_id: &str) -> TxResult<Option<String>> {
        let row = self
            .query_opt(
                "SELECT media_base_url FROM meetings WHERE meeting_id = $1",
                &[&meeting_id],
            )
            .await?;
        Ok(row.map(|row| row.text(0)).transpose()?)
    }

    async fn rehost(&mut self, meeting_id: &str, from: &str, to: &str) -> TxResult<u64> {
        self.execute(
            "UPDATE meetings SET media_base_url = $3 WHERE meeting_id = $1 AND media_base_url = $2",
            &[&meeting_id, &from, &to],
        )
        .await
    }
}
