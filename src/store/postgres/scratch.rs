//! Scratch schemas for tests and benchmarks, and the database the PostgreSQL tests use.

use tokio_postgres::NoTls;

use super::session::describe;
use crate::store::shared::backend;
use crate::store::{StoreError, StoreResult};

/// A schema of its own in an existing database, for tests and benchmarks, so that parallel runs
/// never meet. [`ScratchSchema::remove`] drops it; so does dropping the value, as a fallback.
pub struct ScratchSchema {
    admin_url: String,
    name: String,
    removed: bool,
    /// The URL of the same database with `search_path` set to the scratch schema.
    pub url: String,
}

/// Drops the schema over a connection of its own. The lock wait is bounded: a transaction that
/// never ends (its runtime is blocked) makes this fail rather than hang.
async fn drop_schema(admin_url: &str, name: &str, lock_timeout: &str) -> StoreResult<()> {
    let (client, connection) = tokio_postgres::connect(admin_url, NoTls)
        .await
        .map_err(|e| StoreError::Backend(describe(&e)))?;
    let task = tokio::spawn(connection);
    let dropped = client
        .batch_execute(&format!(
            "SET lock_timeout = '{lock_timeout}'; DROP SCHEMA IF EXISTS {name} CASCADE"
        ))
        .await
        .map_err(|e| StoreError::Backend(describe(&e)));
    drop(client);
    let _ = task.await;
    dropped
}

impl ScratchSchema {
    /// Creates `carillon_test_<random>` in the database `admin_url` names (a `postgres://`
    /// URL without an `options` parameter).
    pub async fn create(admin_url: &str) -> StoreResult<Self> {
        let name = format!(
            "carillon_test_{}",
            crate::domain::ids::random_string(b"abcdefghijklmnopqrstuvwxyz0123456789", 16)
        );
        let (client, connection) = tokio_postgres::connect(admin_url, NoTls)
            .await
            .map_err(|e| StoreError::Backend(describe(&e)))?;
        let task = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .map_err(|e| StoreError::Backend(describe(&e)))?;
        drop(client);
        let _ = task.await;
        let separator = if admin_url.contains('?') { '&' } else { '?' };
        Ok(Self {
            url: format!("{admin_url}{separator}options=-csearch_path%3D{name}"),
            admin_url: admin_url.to_string(),
            name,
            removed: false,
        })
    }

    /// Drops the schema with everything in it. The runtime keeps running meanwhile, so a
    /// server's background work still in a transaction there can finish and let go.
    pub async fn remove(mut self) -> StoreResult<()> {
        self.removed = true;
        drop_schema(&self.admin_url, &self.name, "30s").await
    }
}

impl Drop for ScratchSchema {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        // Drop may run inside a runtime (or while a test unwinds): a thread of its own with a
        // runtime of its own does the round trip. It blocks the caller's thread, so a
        // transaction that thread's runtime was running cannot finish: the lock wait is short,
        // and past it the schema is left behind (with a warning) rather than the test hung.
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(backend)?;
            runtime.block_on(drop_schema(&url, &name, "3s"))
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!(
                "NOTE: could not drop the scratch schema {} (busy); drop it by hand",
                self.name
            );
        }
    }
}

/// The database the PostgreSQL tests use: `CARILLON_TEST_POSTGRES_URL`, or None (after printing
/// a NOTE that they were skipped) when it is not set.
pub fn test_database_url(test: &str) -> Option<String> {
    match std::env::var("CARILLON_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!(
                "NOTE: {test} skipped: set CARILLON_TEST_POSTGRES_URL (e.g. \
                 postgres://postgres@127.0.0.1:5432/test) to run it against PostgreSQL"
            );
            None
        }
    }
}
