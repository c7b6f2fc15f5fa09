//! The settings' SQL in PostgreSQL.

use super::session::{Tx, TxResult};
use crate::store::shared::Columns;
use crate::store::shared::settings::SettingRows;

impl SettingRows for Tx {
    /// A concurrent first start's insert makes this one wait for its COMMIT, then insert nothing,
    /// so both read the value that won.
    async fn insert_setting(&mut self, name: &str, value: &str) -> TxResult<()> {
        self.execute(
            "INSERT INTO settings (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO NOTHING",
            &[&name, &value],
        )
        .await?;
        Ok(())
    }

    async fn setting(&mut self, name: &str) -> TxResult<Option<String>> {
        let row = self
            .query_opt("SELECT value FROM settings WHERE name = $1", &[&name])
            .await?;
        Ok(row.map(|row| row.text(0)).transpose()?)
    }
}
