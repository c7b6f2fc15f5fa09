//! The embedded store's schema: its migrations, and applying those a database has not had.

use rusqlite::Connection;

use crate::store::StoreResult;
use crate::store::shared::backend;

/// Schema migrations, applied in order; `PRAGMA user_version` records how many have run.
pub const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE meetings (
    meeting_id           TEXT PRIMARY KEY,
    account_id           TEXT NOT NULL,
    client_request_token TEXT NOT NULL,
    control_region       TEXT NOT NULL,
    media_region         TEXT NOT NULL,
    external_meeting_id  TEXT,
    meeting_host_id      TEXT,
    primary_meeting_id   TEXT,
    tenant_ids           TEXT NOT NULL,
    features             TEXT,
    notifications        TEXT,
    network_type         TEXT,
    media_base_url       TEXT NOT NULL,
    max_attendees        INTEGER NOT NULL,
    created_at           INTEGER NOT NULL,
    UNIQUE (account_id, client_request_token)
);
CREATE INDEX meetings_by_account ON meetings (account_id, meeting_id);
CREATE TABLE attendees (
    meeting_id       TEXT NOT NULL REFERENCES meetings (meeting_id) ON DELETE CASCADE,
    attendee_id      TEXT NOT NULL,
    external_user_id TEXT NOT NULL,
    join_token       TEXT NOT NULL UNIQUE,
    audio            TEXT NOT NULL,
    video            TEXT NOT NULL,
    content          TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    PRIMARY KEY (meeting_id, attendee_id),
    UNIQUE (meeting_id, external_user_id)
);
CREATE TABLE tags (
    meeting_id  TEXT NOT NULL REFERENCES meetings (meeting_id) ON DELETE CASCADE,
    attendee_id TEXT NOT NULL DEFAULT '',
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (meeting_id, attendee_id, key)
);
"#,
    r#"
ALTER TABLE attendees ADD COLUMN joined INTEGER;
ALTER TABLE attendees ADD COLUMN joined_at INTEGER;
ALTER TABLE attendees ADD COLUMN left_at INTEGER;
"#,
    // The meeting lifecycle: whether anyone is connected, and since when nobody has been (NULL:
    // since creation). The due-meeting sweep reads both through its own index.
    r#"
ALTER TABLE attendees ADD COLUMN dropped INTEGER NOT NULL DEFAULT 0;
ALTER TABLE meetings ADD COLUMN connected INTEGER NOT NULL DEFAULT 0;
ALTER TABLE meetings ADD COLUMN idle_since INTEGER;
CREATE INDEX meetings_by_primary ON meetings (primary_meeting_id);
CREATE INDEX meetings_by_age ON meetings (created_at);
"#,
    // The transactional outbox of meeting events, each sink's delivery cursor, dead letters.
    r#"
CREATE TABLE events (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    meeting_id     TEXT NOT NULL,
    targets        TEXT NOT NULL,
    body           TEXT NOT NULL,
    recorded_at_ms INTEGER NOT NULL
);
CREATE TABLE event_sinks (
    sink          TEXT PRIMARY KEY,
    delivered_seq INTEGER NOT NULL
);
CREATE TABLE dead_letters (
    sink  TEXT NOT NULL,
    seq   INTEGER NOT NULL,
    error TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    body  TEXT NOT NULL,
    PRIMARY KEY (sink, seq)
);
"#,
    // Which node delivers each sink, until when.
    r#"
ALTER TABLE event_sinks ADD COLUMN owner TEXT;
ALTER TABLE event_sinks ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
"#,
    // The node registry: each node's latest heartbeat (placement and the join plane's check
    // that a meeting's node is alive).
    r#"
CREATE TABLE nodes (
    url        TEXT PRIMARY KEY,
    beat_at_ms INTEGER NOT NULL,
    sessions   INTEGER NOT NULL,
    stopped    INTEGER NOT NULL
);
"#,
    // A per-meeting version of what ListAttendees returns, moved in the transaction of every
    // change to it, so that a cached page can be checked with one primary-key read. (No longer
    // read or written: the versions now live in memory, see `versions.rs`.)
    r#"
ALTER TABLE meetings ADD COLUMN attendees_version INTEGER NOT NULL DEFAULT 0;
"#,
    // The join plane finds an attendee by the AttendeeId its JoinToken names (and then compares
    // the whole token), through an index of attendees by id: AttendeeIds now sort in creation
    // order, so the index grows at its end, where the unique index of random JoinTokens cost a
    // random page per attendee created (a quarter of what CreateAttendee wrote). SQLite drops a
    // UNIQUE constraint only by rebuilding the table.
    r#"
CREATE TABLE attendees_rebuilt (
    meeting_id       TEXT NOT NULL REFERENCES meetings (meeting_id) ON DELETE CASCADE,
    attendee_id      TEXT NOT NULL,
    external_user_id TEXT NOT NULL,
    join_token       TEXT NOT NULL,
    audio            TEXT NOT NULL,
    video            TEXT NOT NULL,
    content          TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    joined           INTEGER,
    joined_at        INTEGER,
    left_at          INTEGER,
    dropped          INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (meeting_id, attendee_id),
    UNIQUE (meeting_id, external_user_id)
);
INSERT INTO attendees_rebuilt
    SELECT meeting_id, attendee_id, external_user_id, join_token, audio, video, content,
           created_at, joined, joined_at, left_at, dropped
    FROM attendees;
DROP TABLE attendees;
ALTER TABLE attendees_rebuilt RENAME TO attendees;
CREATE INDEX attendees_by_id ON attendees (attendee_id);
"#,
    // The lifecycle sweep finds idle meetings through this index instead of scanning every
    // meeting each second (`end_due_meetings`). Only meetings nobody is connected to can idle out.
    r#"
CREATE INDEX meetings_idle_due ON meetings (COALESCE(idle_since, created_at)) WHERE connected = 0;
"#,
    // Media pipelines (issue 26). Not tied to the meetings table: a pipeline outlives the
    // meeting it recorded. The partial indexes' WHERE clauses are `shared::media_pipelines`'
    // UNFINISHED and ACTIVE_CAPTURE word for word, which is what lets SQLite use them. A NULL
    // token is never a replay, so only tokens that were given are unique; one unfinished capture
    // per meeting of an account is a unique index, so no write can make a second.
    r#"
CREATE TABLE media_pipelines (
    media_pipeline_id    TEXT PRIMARY KEY,
    account_id           TEXT NOT NULL,
    kind                 TEXT NOT NULL,
    client_request_token TEXT,
    control_region       TEXT NOT NULL,
    source_arn           TEXT NOT NULL,
    meeting_id           TEXT,
    sink_arn             TEXT NOT NULL,
    status               TEXT NOT NULL,
    configuration        TEXT NOT NULL,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
);
CREATE UNIQUE INDEX media_pipelines_by_token ON media_pipelines (account_id, client_request_token)
    WHERE client_request_token IS NOT NULL;
CREATE INDEX media_pipelines_by_account ON media_pipelines
    (account_id, created_at, media_pipeline_id);
CREATE UNIQUE INDEX media_pipelines_active_capture ON media_pipelines (account_id, meeting_id)
    WHERE kind = 'MediaCapturePipeline' AND status NOT IN ('Stopped', 'Failed');
CREATE INDEX media_pipelines_unfinished ON media_pipelines (created_at, media_pipeline_id)
    WHERE status NOT IN ('Stopped', 'Failed');
"#,
];

/// Applies the migrations the database has not had yet, each in a transaction of its own.
pub fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let applied: usize = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(backend)?;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = conn.transaction().map_err(backend)?;
        tx.execute_batch(sql).map_err(backend)?;
        tx.pragma_update(None, "user_version", index + 1)
            .map_err(backend)?;
        tx.commit().map_err(backend)?;
    }
    Ok(())
}
