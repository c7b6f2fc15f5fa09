//! The settings' SQL in SQLite.

use rusqlite::{Connection, params};

use super::session::{first, run};
use crate::store::StoreResult;
use crate::store::shared::settings::SettingRows;

impl SettingRows for Connection {
    async fn insert_setting(&mut self, name: &str, value: &str) -> StoreResult<()> {
        run(
            self,
            "INSERT INTO settings (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
            params![name, value],
        )?;
        Ok(())
    }

    async fn setting(&mut self, name: &str) -> StoreResult<Option<String>> {
        first(
            self,
            "SELECT value FROM settings WHERE name = ?1",
            params![name],
            |row| row.text(0),
        )
    }
}
