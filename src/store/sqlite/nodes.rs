//! The node registry's SQL in SQLite.

use rusqlite::{Connection, params};

use super::session::{all, first, run};
use crate::store::shared::nodes::{NodeRows, node_from};
use crate::store::{NodeBeat, StoreResult};

impl NodeRows for Connection {
    async fn upsert_node(&mut self, beat: &NodeBeat) -> StoreResult<()> {
        run(
            self,
            "INSERT INTO nodes (url, beat_at_ms, sessions, stopped) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (url) DO UPDATE SET beat_at_ms = excluded.beat_at_ms, \
               sessions = excluded.sessions, stopped = excluded.stopped",
            params![beat.url, beat.beat_at_ms, beat.sessions, beat.stopped],
        )?;
        Ok(())
    }

    async fn forget_nodes(&mut self, before_ms: i64, keep_url: &str) -> StoreResult<()> {
        run(
            self,
            "DELETE FROM nodes WHERE beat_at_ms < ?1 AND url <> ?2",
            params![before_ms, keep_url],
        )?;
        Ok(())
    }

    async fn nodes(&mut self) -> StoreResult<Vec<NodeBeat>> {
        all(
            self,
            "SELECT url, beat_at_ms, sessions, stopped FROM nodes ORDER BY url",
            [],
            node_from,
        )
    }

    async fn host_of(&mut self, meeting_id: &str) -> StoreResult<Option<String>> {
        first(
            self,
            "SELECT media_base_url FROM meetings WHERE meeting_id = ?1",
            params![meeting_id],
            |row| row.text(0),
        )
    }

    async fn rehost(&mut self, meeting_id: &str, from: &str, to: &str) -> StoreResult<u64> {
        let changed = run(
            self,
            "UPDATE meetings SET media_base_url = ?3 WHERE meeting_id = ?1 AND media_base_url = ?2",
            params![meeting_id, from, to],
        )?;
        Ok(changed as u64)
    }
}
