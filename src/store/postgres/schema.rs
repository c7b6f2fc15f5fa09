//! The PostgreSQL store's schema: its migrations, and applying those the database has not had,
//! once even when several nodes start at once.

use std::time::Duration;

use tokio_postgres::error::SqlState;

use super::session::describe;
use super::{ATTEMPTS, PostgresStore};
use crate::store::shared::Backend;
use crate::store::{StoreError, StoreResult};

/// Schema migrations, applied in order; `schema_migrations` records which have run.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE IF NOT EXISTS settings (
    name  TEXT COLLATE "C" PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meetings (
    meeting_id           TEXT COLLATE "C" PRIMARY KEY,
    account_id           TEXT COLLATE "C" NOT NULL,
    client_request_token TEXT COLLATE "C" NOT NULL,
    control_region       TEXT NOT NULL,
    media_region         TEXT NOT NULL,
    external_meeting_id  TEXT,
    meeting_host_id      TEXT,
    primary_meeting_id   TEXT COLLATE "C",
    tenant_ids           TEXT NOT NULL,
    features             TEXT,
    notifications        TEXT,
    network_type         TEXT,
    media_base_url       TEXT NOT NULL,
    max_attendees        BIGINT NOT NULL,
    created_at           BIGINT NOT NULL,
    connected            BOOLEAN NOT NULL DEFAULT FALSE,
    idle_since           BIGINT,
    UNIQUE (account_id, client_request_token)
);
CREATE INDEX IF NOT EXISTS meetings_by_account ON meetings (account_id, meeting_id);
CREATE INDEX IF NOT EXISTS meetings_by_primary ON meetings (primary_meeting_id);
CREATE INDEX IF NOT EXISTS meetings_by_age ON meetings (created_at);
CREATE TABLE IF NOT EXISTS attendees (
    meeting_id       TEXT COLLATE "C" NOT NULL REFERENCES meetings (meeting_id) ON DELETE CASCADE,
    attendee_id      TEXT COLLATE "C" NOT NULL,
    external_user_id TEXT COLLATE "C" NOT NULL,
    join_token       TEXT COLLATE "C" NOT NULL UNIQUE,
    audio            TEXT NOT NULL,
    video            TEXT NOT NULL,
    content          TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    joined           BOOLEAN,
    joined_at        BIGINT,
    left_at          BIGINT,
    dropped          BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (meeting_id, attendee_id),
    UNIQUE (meeting_id, external_user_id)
);
CREATE TABLE IF NOT EXISTS tags (
    meeting_id  TEXT COLLATE "C" NOT NULL REFERENCES meetings (meeting_id) ON DELETE CASCADE,
    attendee_id TEXT COLLATE "C" NOT NULL DEFAULT '',
    key         TEXT COLLATE "C" NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (meeting_id, attendee_id, key)
);
CREATE TABLE IF NOT EXISTS events (
    seq            BIGINT PRIMARY KEY,
    meeting_id     TEXT NOT NULL,
    targets        TEXT NOT NULL,
    body           TEXT NOT NULL,
    recorded_at_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS event_counter (
    id       INT PRIMARY KEY,
    last_seq BIGINT NOT NULL
);
INSERT INTO event_counter (id, last_seq) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
CREATE TABLE IF NOT EXISTS event_sinks (
    sink          TEXT COLLATE "C" PRIMARY KEY,
    delivered_seq BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    sink  TEXT COLLATE "C" NOT NULL,
    seq   BIGINT NOT NULL,
    error TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    body  TEXT NOT NULL,
    PRIMARY KEY (sink, seq)
);
"#,
    // Which node delivers each sink, until when (one deliverer per sink across nodes).
    r#"
ALTER TABLE event_sinks ADD COLUMN IF NOT EXISTS owner TEXT;
ALTER TABLE event_sinks ADD COLUMN IF NOT EXISTS lease_until BIGINT NOT NULL DEFAULT 0;
"#,
    // The node registry: each node's latest heartbeat (placement, and the join plane's check
    // that a meeting's node is alive).
    r#"
CREATE TABLE IF NOT EXISTS nodes (
    url        TEXT COLLATE "C" PRIMARY KEY,
    beat_at_ms BIGINT NOT NULL,
    sessions   BIGINT NOT NULL,
    stopped    BOOLEAN NOT NULL
);
"#,
    // A per-meeting version of what ListAttendees returns, moved in the transaction of every
    // change to it, so that any node can check a cached page with one primary-key read.
    r#"
ALTER TABLE meetings ADD COLUMN IF NOT EXISTS attendees_version BIGINT NOT NULL DEFAULT 0;
"#,
    // The lifecycle sweep finds idle meetings through this index instead of walking every
    // meeting each second on every node (`end_due_meetings`). Only primaries nobody is connected
    // to can idle out.
    r#"
CREATE INDEX IF NOT EXISTS meetings_idle_due ON meetings (COALESCE(idle_since, created_at))
    WHERE NOT connected AND primary_meeting_id IS NULL;
"#,
    // Media pipelines (issue 26). Not tied to the meetings table: a pipeline outlives the
    // meeting it recorded. A NULL token is never a replay, so only tokens that were given are
    // unique. One unfinished capture per meeting of an account is a unique index: two nodes
    // creating captures of one meeting at once cannot both insert (the loser's create runs
    // again and is refused), and the same index serves the check before the insert.
    r#"
CREATE TABLE IF NOT EXISTS media_pipelines (
    media_pipeline_id    TEXT COLLATE "C" PRIMARY KEY,
    account_id           TEXT COLLATE "C" NOT NULL,
    kind                 TEXT COLLATE "C" NOT NULL,
    client_request_token TEXT COLLATE "C",
    control_region       TEXT NOT NULL,
    source_arn           TEXT NOT NULL,
    meeting_id           TEXT COLLATE "C",
    sink_arn             TEXT NOT NULL,
    status               TEXT COLLATE "C" NOT NULL,
    configuration        TEXT NOT NULL,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS media_pipelines_by_token
    ON media_pipelines (account_id, client_request_token)
    WHERE client_request_token IS NOT NULL;
CREATE INDEX IF NOT EXISTS media_pipelines_by_account
    ON media_pipelines (account_id, created_at, media_pipeline_id);
CREATE UNIQUE INDEX IF NOT EXISTS media_pipelines_active_capture
    ON media_pipelines (account_id, meeting_id)
    WHERE kind = 'MediaCapturePipeline' AND status NOT IN ('Stopped', 'Failed');
CREATE INDEX IF NOT EXISTS media_pipelines_unfinished
    ON media_pipelines (created_at, media_pipeline_id)
    WHERE status NOT IN ('Stopped', 'Failed');
"#,
];

impl PostgresStore {
    /// Applies the migrations the database has not had yet, each in a transaction of its own.
    pub(super) async fn migrate(&self) -> StoreResult<()> {
        // The ledger itself. Two nodes creating it at once can collide in the catalog even with
        // IF NOT EXISTS (on the table's name, its row type or its index: 23505, 42P07, 42710);
        // the loser tries again and finds it.
        let conn = Self::conn(&self.pool).await?;
        let mut attempt = 1;
        while let Err(e) = conn
            .0
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (\
                   version BIGINT PRIMARY KEY, applied_at_ms BIGINT NOT NULL)",
            )
            .await
        {
            let racing = matches!(
                e.code(),
                Some(&SqlState::UNIQUE_VIOLATION)
                    | Some(&SqlState::DUPLICATE_TABLE)
                    | Some(&SqlState::DUPLICATE_OBJECT)
                    | Some(&SqlState::T_R_SERIALIZATION_FAILURE)
            );
            if !racing || attempt >= ATTEMPTS {
                return Err(StoreError::Backend(format!(
                    "creating schema_migrations: {}",
                    describe(&e)
                )));
            }
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(conn);
        for (index, sql) in MIGRATIONS.iter().enumerate() {
            let version = index as i64 + 1;
            self.write((version, *sql), |tx, (version, sql)| {
                Box::pin(async move {
                    let now_ms = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_millis() as i64)
                        .unwrap_or_default();
                    // Claims the version; a concurrent node's claim makes this one wait for its
                    // COMMIT, then insert nothing.
                    let claimed = tx
                        .execute(
                            "INSERT INTO schema_migrations (version, applied_at_ms) \
                             VALUES ($1, $2) ON CONFLICT (version) DO NOTHING",
                            &[version, &now_ms],
                        )
                        .await?;
                    if claimed == 1 {
                        tx.conn.0.batch_execute(sql).await?;
                    }
                    Ok(())
                })
            })
            .await
            .map_err(|e| StoreError::Backend(format!("schema migration {version}: {e}")))?;
        }
        Ok(())
    }
}
