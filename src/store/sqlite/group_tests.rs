//! Group commit: writes queued together share a transaction, yet each keeps or loses only its own
//! changes.

use std::sync::Arc;

use rusqlite::params;

use super::schema::MIGRATIONS;
use super::*;
use crate::domain::capabilities::{Capabilities, MediaCapability};
use crate::store::gate::CommitGate;
use crate::store::{
    AttendeeOutcome, AttendeeStore, MeetingRecord, MeetingStore, NewAttendee, Tag, TagStore,
    TagTarget,
};

fn meeting(account: &str, token: &str) -> MeetingRecord {
    MeetingRecord {
        account_id: account.into(),
        meeting_id: crate::domain::ids::new_id(),
        client_request_token: token.into(),
        control_region: "us-east-1".into(),
        media_region: "us-east-1".into(),
        external_meeting_id: None,
        meeting_host_id: None,
        primary_meeting_id: None,
        tenant_ids: vec![],
        features: None,
        notifications: None,
        network_type: None,
        media_base_url: "http://127.0.0.1:8080".into(),
        max_attendees: 1000,
        created_at: 1,
    }
}

/// An attendee of `user`, audio only.
fn new_attendee(user: String) -> NewAttendee {
    NewAttendee {
        join_token: crate::domain::ids::new_id(),
        attendee_id: crate::domain::ids::new_id(),
        external_user_id: user,
        capabilities: Capabilities {
            audio: MediaCapability::SendReceive,
            video: MediaCapability::None,
            content: MediaCapability::None,
        },
        tags: vec![],
        created_at: 1,
    }
}

/// Creates account "a"'s meeting admitting at most `cap` attendees; returns its MeetingId.
async fn capped_meeting(store: &SqliteStore, cap: u32) -> String {
    let mut m = meeting("a", "t");
    m.max_attendees = cap;
    store
        .create_meeting(m, vec![], vec![])
        .await
        .expect("meeting")
        .meeting
        .meeting_id
}

fn count(store: &SqliteStore, sql: &'static str) -> i64 {
    let conn = store.conn.lock().expect("lock");
    conn.query_row(sql, [], |r| r.get(0)).expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_write_is_rolled_back_alone() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Arc::new(SqliteStore::open(&dir.path().join("db")).expect("open"));
    let m = store
        .create_meeting(meeting("a", "t"), vec![], vec![])
        .await
        .expect("meeting")
        .meeting;
    let target = TagTarget::Meeting(m.meeting_id.clone());
    let mut tasks = Vec::new();
    for i in 0..300 {
        let (store, target) = (store.clone(), target.clone());
        tasks.push(tokio::spawn(async move {
            match i % 5 {
                // Writes two tags, then fails on the limit after writing them.
                0 => {
                    let tags = vec![
                        Tag {
                            key: format!("bad{i}a"),
                            value: "v".into(),
                        },
                        Tag {
                            key: format!("bad{i}b"),
                            value: "v".into(),
                        },
                    ];
                    let result = store.tag("a", &target, tags, 1).await;
                    assert!(matches!(result, Err(StoreError::TooManyTags { .. })));
                }
                // Its request timed out first: nothing is kept.
                1 => {
                    let gate = CommitGate::new();
                    assert!(gate.close());
                    let result = gate
                        .scope(store.create_meeting(
                            meeting("a", &format!("late{i}")),
                            vec![],
                            vec![],
                        ))
                        .await;
                    assert!(matches!(result, Err(StoreError::Abandoned)));
                }
                // Panics after writing: an error for it alone.
                2 => {
                    let result: StoreResult<()> = store
                        .write_now(move |conn| {
                            conn.execute(
                                "INSERT INTO settings (name, value) VALUES (?1, 'x')",
                                params![format!("panic{i}")],
                            )
                            .map_err(backend)?;
                            panic!("a write panics");
                        })
                        .await;
                    assert!(result.is_err());
                }
                _ => {
                    store
                        .create_meeting(meeting("a", &format!("ok{i}")), vec![], vec![])
                        .await
                        .expect("a good write commits");
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    assert_eq!(count(&store, "SELECT COUNT(*) FROM tags"), 0);
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM meetings WHERE client_request_token LIKE 'late%'"
        ),
        0
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM settings WHERE name LIKE 'panic%'"
        ),
        0
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM meetings WHERE client_request_token LIKE 'ok%'"
        ),
        120
    );
    // And the writer goes on after all that.
    store
        .create_meeting(meeting("a", "after"), vec![], vec![])
        .await
        .expect("still writing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_hold_the_cap_and_are_durable_when_answered() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("db");
    let store = Arc::new(SqliteStore::open(&path).expect("open"));
    let id = capped_meeting(&store, 50).await;
    let mut tasks = Vec::new();
    for i in 0..120 {
        let (store, id) = (store.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            store
                .create_attendees("a", &id, vec![new_attendee(format!("user-{}", i % 100))])
                .await
                .expect("create")
        }));
    }
    let mut created = 0;
    for task in tasks {
        if let Some(AttendeeOutcome::Created(_)) = task.await.expect("task").first() {
            created += 1;
        }
    }
    assert_eq!(created, 50, "the cap holds across a group");
    // Every answered write is visible to a new connection (it is in the WAL, committed).
    let other = Connection::open(&path).expect("open");
    let stored: i64 = other
        .query_row("SELECT COUNT(*) FROM attendees", [], |r| r.get(0))
        .expect("count");
    assert_eq!(stored, 50);
}

/// The cap counts attendees the writers remember (`attendee_counts.rs`): creates abandoned
/// after they ran (rolled back to their savepoint, in groups with kept creates), deletions, and
/// creates through a second store on the same file must all leave the count SQLite would give.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_remembered_count_holds_the_cap_through_rollbacks_deletes_and_two_writers() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("db");
    let store = Arc::new(SqliteStore::open(&path).expect("open"));
    let second = Arc::new(SqliteStore::open(&path).expect("a second store on the file"));
    let id = capped_meeting(&store, 30).await;
    let stored = |path: &std::path::Path| -> i64 {
        Connection::open(path)
            .expect("open")
            .query_row("SELECT COUNT(*) FROM attendees", [], |r| r.get(0))
            .expect("count")
    };
    let mut tasks = Vec::new();
    for i in 0..90 {
        let store = if i % 2 == 0 {
            store.clone()
        } else {
            second.clone()
        };
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            let create = store.create_attendees("a", &id, vec![new_attendee(format!("user-{i}"))]);
            if i % 3 == 0 {
                // Abandoned: the write runs, then finds its request timed out.
                let gate = CommitGate::new();
                assert!(gate.close());
                let result = gate.scope(create).await;
                assert!(matches!(result, Err(StoreError::Abandoned)), "{result:?}");
                None
            } else {
                create.await.expect("create").into_iter().next()
            }
        }));
    }
    let mut created = Vec::new();
    for task in tasks {
        if let Some(AttendeeOutcome::Created(a)) = task.await.expect("task") {
            created.push(a.attendee_id);
        }
    }
    assert_eq!(created.len(), 30, "the cap holds");
    assert_eq!(stored(&path), 30);

    // A deletion through one store frees a place for a create through the other, once.
    store
        .delete_attendee("a", &id, &created[0], 5)
        .await
        .expect("delete");
    for (n, writer) in [second.clone(), store.clone(), second.clone()]
        .iter()
        .enumerate()
    {
        let outcome = writer
            .create_attendees("a", &id, vec![new_attendee(format!("late-{n}"))])
            .await
            .expect("create");
        match (n, &outcome[..]) {
            (0, [AttendeeOutcome::Created(_)]) => {}
            (_, [AttendeeOutcome::MeetingFull { cap: 30, .. }]) if n > 0 => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(stored(&path), 30);
}

/// A database written before AttendeeIds carried their creation time (random ids, JoinTokens in
/// a unique index) upgrades in place: its attendees are all still there, and their JoinTokens
/// still admit them, found now through the index of attendees by id.
#[tokio::test]
async fn an_older_database_upgrades_and_its_join_tokens_still_admit() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("db");
    let meeting_id = crate::domain::ids::new_id();
    let old_attendees: Vec<(String, String, String)> = ["José", "Zoë"]
        .iter()
        .map(|user| {
            let attendee_id = crate::domain::ids::new_id();
            let token = crate::domain::tokens::new_join_token(&attendee_id);
            (attendee_id, user.to_string(), token)
        })
        .collect();
    {
        let mut conn = Connection::open(&path).expect("open the old database");
        let tx = conn.transaction().expect("tx");
        for sql in &MIGRATIONS[..7] {
            tx.execute_batch(sql).expect("an old migration");
        }
        tx.pragma_update(None, "user_version", 7).expect("version");
        tx.execute(
            "INSERT INTO meetings (meeting_id, account_id, client_request_token, control_region, \
             media_region, tenant_ids, media_base_url, max_attendees, created_at) \
             VALUES (?1, 'a', 't', 'us-east-1', 'us-east-1', '[]', 'http://127.0.0.1:8080', 250, 1)",
            params![meeting_id],
        )
        .expect("old meeting");
        for (attendee_id, user, token) in &old_attendees {
            tx.execute(
                "INSERT INTO attendees (meeting_id, attendee_id, external_user_id, join_token, \
                 audio, video, content, created_at) \
                 VALUES (?1, ?2, ?3, ?4, 'SendReceive', 'SendReceive', 'SendReceive', 1)",
                params![meeting_id, attendee_id, user, token],
            )
            .expect("old attendee");
        }
        tx.commit().expect("commit");
    }

    let store = SqliteStore::open(&path).expect("open and upgrade");
    assert_eq!(
        count(&store, "PRAGMA user_version"),
        MIGRATIONS.len() as i64
    );
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM sqlite_master WHERE name = 'attendees_by_id'"
        ),
        1
    );
    for (attendee_id, user, token) in &old_attendees {
        let found = store
            .find_attendee_by_join_token(token)
            .await
            .expect("lookup")
            .expect("an old JoinToken still admits its attendee");
        assert_eq!(
            (&found.attendee_id, &found.external_user_id),
            (attendee_id, user)
        );
    }
    // The id a token names only finds the attendee; the whole token must match.
    let (jose_id, ..) = &old_attendees[0];
    let forged = crate::domain::tokens::new_join_token(jose_id);
    assert_eq!(
        store
            .find_attendee_by_join_token(&forged)
            .await
            .expect("lookup"),
        None
    );
    assert_eq!(
        store
            .find_attendee_by_join_token("not a token")
            .await
            .expect("lookup"),
        None
    );

    // New attendees join the old ones, and sort after them only by their ids.
    let attendee_id = crate::domain::ids::new_attendee_id();
    let join_token = crate::domain::tokens::new_join_token(&attendee_id);
    let outcomes = store
        .create_attendees(
            "a",
            &meeting_id,
            vec![NewAttendee {
                attendee_id: attendee_id.clone(),
                external_user_id: "«Ana»".into(),
                join_token: join_token.clone(),
                capabilities: Capabilities {
                    audio: MediaCapability::SendReceive,
                    video: MediaCapability::SendReceive,
                    content: MediaCapability::SendReceive,
                },
                tags: vec![],
                created_at: 2,
            }],
        )
        .await
        .expect("create after the upgrade");
    assert!(matches!(outcomes[0], AttendeeOutcome::Created(_)));
    let listed = store
        .list_attendees("a", &meeting_id, None, 10)
        .await
        .expect("list");
    assert_eq!(listed.len(), 3);
    let ana = store
        .find_attendee_by_join_token(&join_token)
        .await
        .expect("lookup")
        .expect("a new JoinToken admits");
    assert_eq!(ana.attendee_id, attendee_id);
}
