//! One suite run against every store backend, so that each keeps the same promises: idempotency,
//! account isolation, the atomic attendee cap, keyset pages, cascading deletes, tag limits.

use super::*;
use crate::domain::capabilities::MediaCapability;

fn meeting(account: &str, token: &str, cap: u32) -> MeetingRecord {
    MeetingRecord {
        account_id: account.into(),
        meeting_id: crate::domain::ids::new_id(),
        client_request_token: token.into(),
        control_region: "us-east-1".into(),
        media_region: "us-east-1".into(),
        external_meeting_id: Some("ext".into()),
        meeting_host_id: None,
        primary_meeting_id: None,
        tenant_ids: vec!["t1".into()],
        features: Some(MeetingFeatures::default()),
        notifications: Some(serde_json::json!({"SnsTopicArn": "arn:aws:sns:x"})),
        network_type: None,
        media_base_url: "http://127.0.0.1:8080".into(),
        max_attendees: cap,
        created_at: 1,
    }
}

fn attendee(user: &str) -> NewAttendee {
    let id = crate::domain::ids::new_id();
    NewAttendee {
        join_token: crate::domain::tokens::new_join_token(&id),
        attendee_id: id,
        external_user_id: user.into(),
        capabilities: Capabilities {
            audio: MediaCapability::SendReceive,
            video: MediaCapability::SendReceive,
            content: MediaCapability::None,
        },
        tags: vec![],
        created_at: 2,
    }
}

fn tag(key: &str) -> Tag {
    Tag {
        key: key.into(),
        value: "v".into(),
    }
}

async fn suite(store: &dyn Store) {
    // Idempotent creation per account and token; other accounts are separate.
    let first = store
        .create_meeting(
            meeting("a1", "tok", 3),
            vec![tag("k")],
            vec![attendee("u1")],
        )
        .await
        .expect("create");
    assert!(first.created);
    let id = first.meeting.meeting_id.clone();
    let replay = store
        .create_meeting(meeting("a1", "tok", 3), vec![], vec![])
        .await
        .expect("replay");
    assert!(!replay.created);
    assert_eq!(
        replay.meeting, first.meeting,
        "stored meeting round-trips exactly"
    );
    let other = store
        .create_meeting(meeting("a2", "tok", 3), vec![], vec![])
        .await
        .expect("other account");
    assert!(other.created);
    assert!(matches!(
        store.get_meeting("a2", &id).await,
        Err(StoreError::MeetingNotFound)
    ));

    // The cap counts existing attendees; a known ExternalUserId returns its attendee.
    let outcomes = store
        .create_attendees(
            "a1",
            &id,
            vec![
                attendee("u1"),
                attendee("u2"),
                attendee("u3"),
                attendee("u4"),
            ],
        )
        .await
        .expect("create attendees");
    assert!(matches!(outcomes[0], AttendeeOutcome::Existing(_)));
    assert!(matches!(outcomes[1], AttendeeOutcome::Created(_)));
    assert!(matches!(outcomes[2], AttendeeOutcome::Created(_)));
    assert!(matches!(
        outcomes[3],
        AttendeeOutcome::MeetingFull { cap: 3, .. }
    ));

    // Keyset pages in id order.
    let all = store
        .list_attendees("a1", &id, None, 10)
        .await
        .expect("list");
    assert_eq!(all.len(), 3);
    assert!(all.windows(2).all(|w| w[0].attendee_id < w[1].attendee_id));
    let after = store
        .list_attendees("a1", &id, Some(&all[0].attendee_id), 10)
        .await
        .expect("page");
    assert_eq!(after, all[1..].to_vec());

    // JoinTokens resolve to their attendee; presence is recorded.
    let by_token = store
        .find_attendee_by_join_token(&all[1].join_token)
        .await
        .expect("token lookup");
    assert_eq!(by_token.as_ref(), Some(&all[1]));
    assert_eq!(
        store
            .find_attendee_by_join_token("nope")
            .await
            .expect("lookup"),
        None
    );
    assert!(store.meeting_exists(&id).await.expect("exists"));
    assert_eq!(
        store
            .presence(&id, &all[1].attendee_id)
            .await
            .expect("presence"),
        (None, None, None)
    );
    store
        .record_presence(&id, &all[1].attendee_id, true, 10)
        .await
        .expect("joined");
    store
        .record_presence(&id, &all[1].attendee_id, false, 20)
        .await
        .expect("left");
    assert_eq!(
        store
            .presence(&id, &all[1].attendee_id)
            .await
            .expect("presence"),
        (Some(false), Some(10), Some(20))
    );

    // Capabilities.
    let none = Capabilities {
        audio: MediaCapability::None,
        video: MediaCapability::None,
        content: MediaCapability::None,
    };
    store
        .update_capabilities_except("a1", &id, std::slice::from_ref(&all[0].attendee_id), none)
        .await
        .expect("update except");
    let listed = store
        .list_attendees("a1", &id, None, 10)
        .await
        .expect("list");
    assert_eq!(listed[0].capabilities, all[0].capabilities);
    assert!(listed[1..].iter().all(|a| a.capabilities == none));

    // Tags: the limit rolls the whole call back.
    let target = TagTarget::Meeting(id.clone());
    store
        .tag("a1", &target, vec![tag("a"), tag("b")], 3)
        .await
        .expect("tag");
    assert!(matches!(
        store.tag("a1", &target, vec![tag("c"), tag("d")], 3).await,
        Err(StoreError::TooManyTags { limit: 3 })
    ));
    let keys: Vec<String> = store
        .list_tags("a1", &target)
        .await
        .expect("tags")
        .into_iter()
        .map(|t| t.key)
        .collect();
    assert_eq!(keys, vec!["a", "b", "k"]);
    store
        .untag("a1", &target, vec!["a".into()])
        .await
        .expect("untag");
    let attendee_target = TagTarget::Attendee(id.clone(), all[0].attendee_id.clone());
    store
        .tag("a1", &attendee_target, vec![tag("x")], 10)
        .await
        .expect("attendee tag");

    // Deletes cascade and are final.
    store
        .delete_attendee("a1", &id, &all[0].attendee_id)
        .await
        .expect("delete attendee");
    assert!(matches!(
        store.list_tags("a1", &attendee_target).await,
        Err(StoreError::AttendeeNotFound)
    ));
    assert!(matches!(
        store.delete_attendee("a1", &id, &all[0].attendee_id).await,
        Err(StoreError::AttendeeNotFound)
    ));
    store
        .delete_meeting("a1", &id)
        .await
        .expect("delete meeting");
    assert!(matches!(
        store.list_attendees("a1", &id, None, 10).await,
        Err(StoreError::MeetingNotFound)
    ));
    assert!(matches!(
        store.delete_meeting("a1", &id).await,
        Err(StoreError::MeetingNotFound)
    ));

    // Meetings list per account.
    let listed = store
        .list_meetings("a2", None, 10)
        .await
        .expect("list meetings");
    assert_eq!(listed.len(), 1);

    // Settings keep their first value.
    assert_eq!(
        store.setting_or_insert("k", "one").await.expect("setting"),
        "one"
    );
    assert_eq!(
        store.setting_or_insert("k", "two").await.expect("setting"),
        "one"
    );
}

/// A write inside a request whose gate was closed (the request timed out) keeps nothing; one
/// that passed the gate keeps its write and the gate can no longer be closed.
async fn commit_gate(store: &dyn Store) {
    let closed = gate::CommitGate::new();
    assert!(closed.close());
    let abandoned = meeting("gate", "late", 3);
    let outcome = closed
        .clone()
        .scope(store.create_meeting(abandoned.clone(), vec![], vec![]))
        .await;
    assert!(matches!(outcome, Err(StoreError::Abandoned)));
    assert!(matches!(
        store.get_meeting("gate", &abandoned.meeting_id).await,
        Err(StoreError::MeetingNotFound)
    ));

    let open = gate::CommitGate::new();
    let kept = meeting("gate", "in-time", 3);
    open.clone()
        .scope(store.create_meeting(kept.clone(), vec![], vec![]))
        .await
        .expect("an open gate commits");
    assert!(!open.close(), "a committed request cannot be abandoned");
    store
        .get_meeting("gate", &kept.meeting_id)
        .await
        .expect("kept");
}

#[tokio::test]
async fn sqlite_in_memory() {
    let store = sqlite::SqliteStore::open_in_memory().expect("open");
    suite(&store).await;
    commit_gate(&store).await;
}

#[tokio::test]
async fn sqlite_on_disk_and_reopened() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("carillon.db");
    suite(&sqlite::SqliteStore::open(&path).expect("open")).await;
    // Migrations are idempotent across reopenings, and the data is still there.
    let reopened = sqlite::SqliteStore::open(&path).expect("reopen");
    assert_eq!(
        reopened
            .setting_or_insert("k", "three")
            .await
            .expect("setting"),
        "one"
    );
}
