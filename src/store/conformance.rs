//! One suite run against every store backend, so that each keeps the same promises: idempotency,
//! account isolation, the atomic attendee cap, keyset pages, cascading deletes, tag limits.
//!
//! A new backend gets it whole: call [`check_store`] with a way to open fresh, empty stores, and
//! [`check_two_nodes`] with two stores on one database if several nodes can share it. Outside
//! this crate's own tests the module is compiled with the `conformance` feature.

use super::*;
use crate::domain::capabilities::MediaCapability;
use crate::domain::meeting_events::EventType;

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
    // Read again (a store may now answer from memory), the same meeting, and still not
    // another account's.
    for _ in 0..2 {
        assert_eq!(
            store.get_meeting("a1", &id).await.expect("get meeting"),
            first.meeting
        );
    }
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
        .record_presence(&id, &all[1].attendee_id, PresenceChange::Joined, 10)
        .await
        .expect("joined");
    store
        .record_presence(&id, &all[1].attendee_id, PresenceChange::Left, 20)
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
        .delete_attendee("a1", &id, &all[0].attendee_id, 30)
        .await
        .expect("delete attendee");
    assert!(matches!(
        store.list_tags("a1", &attendee_target).await,
        Err(StoreError::AttendeeNotFound)
    ));
    assert!(matches!(
        store
            .delete_attendee("a1", &id, &all[0].attendee_id, 30)
            .await,
        Err(StoreError::AttendeeNotFound)
    ));
    store
        .delete_meeting("a1", &id, 40)
        .await
        .expect("delete meeting");
    assert!(matches!(
        store.list_attendees("a1", &id, None, 10).await,
        Err(StoreError::MeetingNotFound)
    ));
    assert!(matches!(
        store.get_meeting("a1", &id).await,
        Err(StoreError::MeetingNotFound)
    ));
    assert!(matches!(
        store.delete_meeting("a1", &id, 40).await,
        Err(StoreError::MeetingNotFound)
    ));

    // The operator's view spans accounts, newest first.
    let recent = store.recent_meetings(100).await.expect("recent");
    assert!(
        recent
            .windows(2)
            .all(|w| w[0].created_at >= w[1].created_at)
    );
    assert!(!recent.is_empty());

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

/// The attendee version moves with every committed write that changes what ListAttendees returns
/// (attendees created or deleted, capabilities updated), and with nothing else: not reads,
/// presence, tags, a create that created nobody, or a write that failed. It is read with the
/// account check. Versions are only compared for equality: the embedded store's are generations
/// handed out in memory, PostgreSQL's a counter in the meeting's row.
async fn attendee_version(store: &dyn Store) {
    let version = async |id: &str| {
        store
            .attendees_version("ver", id)
            .await
            .expect("attendees_version")
    };
    let empty = store_meeting(store, "ver", "empty", 4).await;
    let id = store
        .create_meeting(
            meeting("ver", "with-attendees", 4),
            vec![],
            vec![attendee("José"), attendee("Zoë")],
        )
        .await
        .expect("create with attendees")
        .meeting
        .meeting_id;
    let mut seen = version(&id).await;
    assert_ne!(
        seen,
        version(&empty).await,
        "a meeting created with attendees is not at the version of an empty one"
    );
    assert!(matches!(
        store.attendees_version("other-account", &id).await,
        Err(StoreError::MeetingNotFound)
    ));
    assert!(matches!(
        store
            .list_attendees_versioned("other-account", &id, None, 10)
            .await,
        Err(StoreError::MeetingNotFound)
    ));
    let page = store
        .list_attendees_versioned("ver", &id, None, 10)
        .await
        .expect("versioned list");
    assert_eq!(page.version, seen);
    assert_eq!(
        page.attendees,
        store
            .list_attendees("ver", &id, None, 10)
            .await
            .expect("list")
    );
    let jose = page.attendees[0].clone();
    let past_the_end = store
        .list_attendees_versioned("ver", &id, Some(&page.attendees[1].attendee_id), 10)
        .await
        .expect("a page after the last attendee");
    assert_eq!(
        (past_the_end.version, past_the_end.attendees.len()),
        (seen, 0)
    );

    // GetAttendee's versioned read pairs the row with the same version, checks the account.
    assert_eq!(
        store
            .get_attendee_versioned("ver", &id, &jose.attendee_id)
            .await
            .expect("versioned get"),
        VersionedAttendee {
            version: seen,
            attendee: jose.clone(),
        }
    );
    assert!(matches!(
        store
            .get_attendee_versioned("other-account", &id, &jose.attendee_id)
            .await,
        Err(StoreError::MeetingNotFound)
    ));
    assert!(matches!(
        store
            .get_attendee_versioned("ver", &id, "no-such-attendee")
            .await,
        Err(StoreError::AttendeeNotFound)
    ));

    // Reads, presence, media events and tags leave it alone.
    store.get_meeting("ver", &id).await.expect("get meeting");
    store
        .get_attendee("ver", &id, &jose.attendee_id)
        .await
        .expect("get attendee");
    store
        .find_attendee_by_join_token(&jose.join_token)
        .await
        .expect("token lookup");
    store.meeting_presence("ver", &id).await.expect("presence");
    for change in [PresenceChange::Joined, PresenceChange::Dropped] {
        store
            .record_presence(&id, &jose.attendee_id, change, 5)
            .await
            .expect("presence");
    }
    store
        .record_media_event(
            &id,
            &jose.attendee_id,
            &jose.attendee_id,
            EventType::AttendeeVideoStarted,
            6,
        )
        .await
        .expect("media event");
    let jose_target = TagTarget::Attendee(id.clone(), jose.attendee_id.clone());
    store
        .tag("ver", &jose_target, vec![tag("team")], 10)
        .await
        .expect("tag");
    store
        .untag("ver", &jose_target, vec!["team".into()])
        .await
        .expect("untag");
    assert_eq!(version(&id).await, seen, "reads, presence and tags");

    // Creating moves it; an ExternalUserId that already has its attendee, or a full meeting,
    // does not.
    let outcomes = store
        .create_attendees("ver", &id, vec![attendee("«Ana»")])
        .await
        .expect("create");
    assert!(matches!(outcomes[0], AttendeeOutcome::Created(_)));
    let now = version(&id).await;
    assert_ne!(now, seen, "CreateAttendee: {now} after {seen}");
    seen = now;
    store
        .create_attendees("ver", &id, vec![attendee("José")])
        .await
        .expect("create again");
    assert_eq!(version(&id).await, seen, "an existing attendee");
    let outcomes = store
        .create_attendees("ver", &id, vec![attendee("Bob"), attendee("Eve")])
        .await
        .expect("batch create");
    assert!(matches!(outcomes[1], AttendeeOutcome::MeetingFull { .. }));
    let now = version(&id).await;
    assert_ne!(now, seen, "BatchCreateAttendee: {now} after {seen}");
    seen = now;
    store
        .create_attendees("ver", &id, vec![attendee("Eve")])
        .await
        .expect("create in a full meeting");
    assert_eq!(version(&id).await, seen, "a full meeting");

    // Capabilities.
    let receive = Capabilities {
        audio: MediaCapability::Receive,
        video: MediaCapability::None,
        content: MediaCapability::None,
    };
    store
        .update_capabilities("ver", &id, &jose.attendee_id, receive)
        .await
        .expect("update capabilities");
    let now = version(&id).await;
    assert_ne!(now, seen, "UpdateAttendeeCapabilities: {now} after {seen}");
    seen = now;
    assert!(matches!(
        store
            .update_capabilities("ver", &id, &crate::domain::ids::new_id(), receive)
            .await,
        Err(StoreError::AttendeeNotFound)
    ));
    assert_eq!(version(&id).await, seen, "a failed update");
    store
        .update_capabilities_except("ver", &id, std::slice::from_ref(&jose.attendee_id), receive)
        .await
        .expect("update except");
    let now = version(&id).await;
    assert_ne!(
        now, seen,
        "BatchUpdateAttendeeCapabilitiesExcept: {now} after {seen}"
    );
    seen = now;

    // Deleting moves it; deleting what is not there does not.
    store
        .delete_attendee("ver", &id, &jose.attendee_id, 7)
        .await
        .expect("delete attendee");
    let now = version(&id).await;
    assert_ne!(now, seen, "DeleteAttendee: {now} after {seen}");
    seen = now;
    assert!(matches!(
        store
            .delete_attendee("ver", &id, &jose.attendee_id, 7)
            .await,
        Err(StoreError::AttendeeNotFound)
    ));
    assert_eq!(version(&id).await, seen, "a failed delete");
    let page = store
        .list_attendees_versioned("ver", &id, None, 10)
        .await
        .expect("versioned list");
    assert_eq!(page.version, seen);
    assert!(
        page.attendees
            .iter()
            .all(|a| a.attendee_id != jose.attendee_id)
    );

    // A deleted meeting has no version at all.
    store
        .delete_meeting("ver", &id, 8)
        .await
        .expect("delete meeting");
    assert!(matches!(
        store.attendees_version("ver", &id).await,
        Err(StoreError::MeetingNotFound)
    ));
    assert!(matches!(
        store.list_attendees_versioned("ver", &id, None, 10).await,
        Err(StoreError::MeetingNotFound)
    ));
}

/// The sweep ends due meetings in bounded transactions: each call the first due meeting whatever
/// its size, then more only while their attendees stay within the budget, until a call ends
/// none. Every due meeting ends exactly once; one that is not due stays.
async fn sweep_in_bounded_batches(store: &dyn Store) {
    let rules = EndRules {
        idle_seconds: 300,
        max_seconds: 86_400,
    };
    let mut sizes = std::collections::BTreeMap::new();
    for (i, size) in [3, 3, 0, 3, 0].into_iter().enumerate() {
        let mut due = meeting("sweep", &format!("due-{i}"), 10);
        due.created_at = 1_000;
        sizes.insert(due.meeting_id.clone(), size);
        let attendees = (0..size)
            .map(|j| attendee(&format!("Zoë-{i}-{j}")))
            .collect();
        store
            .create_meeting(due, vec![], attendees)
            .await
            .expect("due meeting");
    }
    let mut later = meeting("sweep", "later", 10);
    later.created_at = 1_200;
    let later_id = later.meeting_id.clone();
    store
        .create_meeting(later, vec![], vec![attendee("José")])
        .await
        .expect("later meeting");

    let budget = 4;
    let mut ended_all = Vec::new();
    let mut calls = 0;
    loop {
        let ended = store
            .end_due_meetings(1_300, rules, budget)
            .await
            .expect("sweep");
        if ended.is_empty() {
            break;
        }
        calls += 1;
        assert!(
            calls <= sizes.len(),
            "the sweep does not stop: {calls} calls"
        );
        let removed: usize = ended.iter().map(|id| sizes[id]).sum();
        assert!(
            ended.len() == 1 || removed <= budget,
            "one call ended {ended:?}, {removed} attendees over a budget of {budget}"
        );
        ended_all.extend(ended);
    }
    ended_all.sort();
    assert_eq!(ended_all, sizes.keys().cloned().collect::<Vec<_>>());
    assert!(
        calls >= 3,
        "three meetings of 3 share no budget of 4: {calls} calls"
    );
    for id in sizes.keys() {
        assert!(matches!(
            store.get_meeting("sweep", id).await,
            Err(StoreError::MeetingNotFound)
        ));
    }
    store
        .get_meeting("sweep", &later_id)
        .await
        .expect("the meeting that is not due stays");
}

/// Meetings end when idle (from creation, and from when the last attendee went) or past their
/// maximum duration; replicas end with their primary and never by their own clock; presence
/// shows each attendee's connection state; a restart marks connected attendees as dropped.
async fn lifecycle(store: &dyn Store) {
    let rules = EndRules {
        idle_seconds: 300,
        max_seconds: 86_400,
    };
    let mut primary = meeting("life", "primary", 5);
    primary.created_at = 1_000;
    let primary_id = primary.meeting_id.clone();
    let joiner = attendee("José");
    let joiner_id = joiner.attendee_id.clone();
    store
        .create_meeting(primary, vec![], vec![joiner, attendee("Zoë")])
        .await
        .expect("primary");
    let mut replica = meeting("life", "replica", 5);
    replica.created_at = 1_000;
    replica.primary_meeting_id = Some(primary_id.clone());
    let replica_id = replica.meeting_id.clone();
    store
        .create_meeting(replica, vec![], vec![])
        .await
        .expect("replica");

    // Not yet idle for five minutes.
    assert!(
        store
            .end_due_meetings(1_299, rules, usize::MAX)
            .await
            .expect("sweep")
            .is_empty()
    );
    // Someone connects at 1,200: the idle clock stops, whatever the time.
    store
        .record_presence(&primary_id, &joiner_id, PresenceChange::Joined, 1_200)
        .await
        .expect("joined");
    assert!(
        store
            .end_due_meetings(5_000, rules, usize::MAX)
            .await
            .expect("sweep")
            .is_empty()
    );
    let presence = store
        .meeting_presence("life", &primary_id)
        .await
        .expect("presence");
    let states: Vec<_> = presence
        .iter()
        .map(|p| (p.external_user_id.as_str(), p.state))
        .collect();
    assert!(states.contains(&("José", ConnectionState::Connected)));
    assert!(states.contains(&("Zoë", ConnectionState::NeverJoined)));
    assert!(matches!(
        store.meeting_presence("other", &primary_id).await,
        Err(StoreError::MeetingNotFound)
    ));

    // The last one drops at 6,000: idle from then on.
    store
        .record_presence(&primary_id, &joiner_id, PresenceChange::Dropped, 6_000)
        .await
        .expect("dropped");
    let presence = store
        .meeting_presence("life", &primary_id)
        .await
        .expect("presence");
    let jose = presence
        .iter()
        .find(|p| p.attendee_id == joiner_id)
        .expect("José");
    assert_eq!(
        (jose.state, jose.joined_at, jose.left_at),
        (ConnectionState::Dropped, Some(1_200), Some(6_000))
    );
    assert!(
        store
            .end_due_meetings(6_299, rules, usize::MAX)
            .await
            .expect("sweep")
            .is_empty()
    );
    let mut ended = store
        .end_due_meetings(6_300, rules, usize::MAX)
        .await
        .expect("sweep");
    ended.sort();
    let mut expected = vec![primary_id.clone(), replica_id.clone()];
    expected.sort();
    assert_eq!(ended, expected, "the replica ends with its primary");
    assert!(!store.meeting_exists(&replica_id).await.expect("exists"));

    // Past the maximum duration a meeting ends even with someone connected.
    let mut busy = meeting("life", "busy", 5);
    busy.created_at = 10_000;
    let busy_id = busy.meeting_id.clone();
    let present = attendee("«Ana»");
    let present_id = present.attendee_id.clone();
    store
        .create_meeting(busy, vec![], vec![present])
        .await
        .expect("busy");
    store
        .record_presence(&busy_id, &present_id, PresenceChange::Joined, 10_001)
        .await
        .expect("joined");
    assert!(
        store
            .end_due_meetings(96_399, rules, usize::MAX)
            .await
            .expect("sweep")
            .is_empty()
    );
    assert_eq!(
        store
            .end_due_meetings(96_400, rules, usize::MAX)
            .await
            .expect("sweep"),
        vec![busy_id]
    );

    // A restart: whoever the store remembers as connected is dropped, and idle from then.
    let mut remembered = meeting("life", "remembered", 5);
    remembered.created_at = 100_000;
    let remembered_id = remembered.meeting_id.clone();
    let someone = attendee("someone");
    let someone_id = someone.attendee_id.clone();
    store
        .create_meeting(remembered, vec![], vec![someone])
        .await
        .expect("meeting");
    store
        .record_presence(&remembered_id, &someone_id, PresenceChange::Joined, 100_001)
        .await
        .expect("joined");
    store.reset_presence(150_000).await.expect("reset");
    let presence = store
        .meeting_presence("life", &remembered_id)
        .await
        .expect("presence");
    assert_eq!(
        presence.first().map(|p| p.state),
        Some(ConnectionState::Dropped)
    );
    assert!(
        store
            .end_due_meetings(150_299, rules, usize::MAX)
            .await
            .expect("sweep")
            .is_empty()
    );
    assert_eq!(
        store
            .end_due_meetings(150_300, rules, usize::MAX)
            .await
            .expect("sweep"),
        vec![remembered_id]
    );

    // A replica whose primary is gone (it raced the primary's end) ends at the next sweep.
    let mut orphan = meeting("life", "orphan", 5);
    orphan.primary_meeting_id = Some(crate::domain::ids::new_id());
    orphan.created_at = 200_000;
    let orphan_id = orphan.meeting_id.clone();
    store
        .create_meeting(orphan, vec![], vec![])
        .await
        .expect("orphan");
    assert_eq!(
        store
            .end_due_meetings(200_001, rules, usize::MAX)
            .await
            .expect("sweep"),
        vec![orphan_id]
    );

    // DeleteMeeting of a primary takes its replicas along.
    let primary = meeting("life", "primary-2", 5);
    let primary_id = primary.meeting_id.clone();
    store
        .create_meeting(primary, vec![], vec![])
        .await
        .expect("primary");
    let mut replica = meeting("life", "replica-2", 5);
    replica.primary_meeting_id = Some(primary_id.clone());
    let replica_id = replica.meeting_id.clone();
    store
        .create_meeting(replica, vec![], vec![])
        .await
        .expect("replica");
    let mut deleted = store
        .delete_meeting("life", &primary_id, 50)
        .await
        .expect("delete");
    deleted.sort();
    let mut expected = vec![primary_id, replica_id];
    expected.sort();
    assert_eq!(deleted, expected);
}

/// Every change writes its event in its own transaction, in the real order; each sink has a
/// cursor that only moves forward, and a dead letter moves it past the event it gave up on.
async fn outbox(store: &dyn Store) {
    let mut m = meeting("events", "outbox", 5);
    m.notifications = Some(serde_json::json!({"SqsQueueArn": "arn:aws:sqs:us-east-1:1:q"}));
    let id = m.meeting_id.clone();
    let new = attendee("José");
    let attendee_id = new.attendee_id.clone();
    store
        .create_meeting(m, vec![], vec![new])
        .await
        .expect("create");
    store
        .record_presence(&id, &attendee_id, PresenceChange::Joined, 10)
        .await
        .expect("joined");
    // Media events name the session's attendee id (a content share's carries `#content`) and
    // need the meeting and the attendee to exist.
    let content_id = format!("{attendee_id}#content");
    for (shown, kind) in [
        (&attendee_id, EventType::AttendeeVideoStarted),
        (&content_id, EventType::AttendeeContentJoined),
    ] {
        store
            .record_media_event(&id, &attendee_id, shown, kind, 15)
            .await
            .expect("media event");
    }
    store
        .record_media_event(&id, "nobody", "nobody", EventType::AttendeeVideoStarted, 15)
        .await
        .expect("an unknown attendee records nothing");
    let transcription = |at_ms| crate::domain::meeting_events::TranscriptionEvent {
        event_type: "chime:TranscriptionStarted",
        region: "us-east-1".into(),
        configuration: r#"{"EngineTranscribeSettings":{"LanguageCode":"en-US"}}"#.into(),
        message: None,
        at_ms,
    };
    store
        .record_transcription_event(&id, transcription(16_000))
        .await
        .expect("transcription event");
    store
        .record_transcription_event(
            "00000000-0000-4000-8000-000000000000",
            transcription(16_000),
        )
        .await
        .expect("a meeting that is not there records nothing");
    store
        .record_presence(&id, &attendee_id, PresenceChange::Left, 20)
        .await
        .expect("left");
    store
        .delete_attendee("events", &id, &attendee_id, 30)
        .await
        .expect("deleted");
    store
        .delete_meeting("events", &id, 40)
        .await
        .expect("ended");
    let events = store.outbox_after(0, 100).await.expect("outbox");
    let types: Vec<String> = events
        .iter()
        .map(|e| {
            let body: serde_json::Value = serde_json::from_str(&e.body).expect("json");
            body["detail"]["eventType"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(
        types,
        [
            "chime:MeetingStarted",
            "chime:AttendeeAdded",
            "chime:AttendeeAuthorized",
            "chime:AttendeeJoined",
            "chime:AttendeeVideoStarted",
            "chime:AttendeeContentJoined",
            "chime:TranscriptionStarted",
            "chime:AttendeeLeft",
            "chime:AttendeeDeleted",
            "chime:MeetingEnded"
        ]
    );
    let content: serde_json::Value = serde_json::from_str(&events[5].body).expect("json");
    assert_eq!(content["detail"]["attendeeId"], content_id.as_str());
    assert_eq!(content["detail"]["externalUserId"], "José");
    assert_eq!(content["detail"]["networkType"], "Voip");
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(
        store.latest_event_seq().await.expect("latest"),
        events.last().map(|e| e.seq).unwrap_or_default()
    );
    assert!(
        events
            .iter()
            .all(|e| e.meeting_id == id && e.targets == ["arn:aws:sqs:us-east-1:1:q"])
    );
    let joined: serde_json::Value = serde_json::from_str(&events[3].body).expect("json");
    assert_eq!(joined["detail"]["externalUserId"], "José");
    assert_eq!(joined["detail"]["timestamp"], 10_000);
    let started: serde_json::Value = serde_json::from_str(&events[6].body).expect("json");
    assert_eq!(started["detail-type"], "Chime Meeting State Change");
    assert_eq!(started["detail"]["meetingId"], id.as_str());
    assert_eq!(started["detail"]["transcriptionRegion"], "us-east-1");
    assert_eq!(
        started["detail"]["transcriptionConfiguration"],
        r#"{"EngineTranscribeSettings":{"LanguageCode":"en-US"}}"#
    );
    assert_eq!(started["detail"]["timestamp"], 16_000);

    // One node at a time holds a sink; another takes it over once the lease runs out.
    assert!(
        store
            .lease_sink("hook", "node-a", 1_000, 10_000)
            .await
            .expect("lease")
    );
    assert!(
        !store
            .lease_sink("hook", "node-b", 5_000, 10_000)
            .await
            .expect("lease")
    );
    assert!(
        store
            .lease_sink("hook", "node-a", 9_000, 10_000)
            .await
            .expect("renewed")
    );
    assert!(
        !store
            .lease_sink("hook", "node-b", 18_999, 10_000)
            .await
            .expect("lease")
    );
    assert!(
        store
            .lease_sink("hook", "node-b", 19_001, 10_000)
            .await
            .expect("taken over")
    );
    assert!(
        !store
            .lease_sink("hook", "node-a", 19_002, 10_000)
            .await
            .expect("lease")
    );

    assert_eq!(store.sink_cursor("hook").await.expect("cursor"), 0);
    store
        .advance_sink("hook", events[2].seq)
        .await
        .expect("advance");
    store
        .advance_sink("hook", events[1].seq)
        .await
        .expect("never back");
    assert_eq!(
        store.sink_cursor("hook").await.expect("cursor"),
        events[2].seq
    );
    store
        .dead_letter("hook", &events[3], "HTTP 500", 99)
        .await
        .expect("dead letter");
    assert_eq!(
        store.sink_cursor("hook").await.expect("cursor"),
        events[3].seq
    );
    let dead = store.dead_letters().await.expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].seq, dead[0].error.as_str()),
        (events[3].seq, "HTTP 500")
    );
    assert_eq!(
        store
            .outbox_after(events[events.len() - 2].seq, 100)
            .await
            .expect("tail")
            .len(),
        1
    );

    // Retention: nothing recorded before the oldest event goes; then the oldest two of the
    // ten, whatever the cutoff (the limit bounds one call); then the rest. Numbers go on.
    let oldest = events.iter().map(|e| e.recorded_at_ms).min().unwrap_or(0);
    assert_eq!(store.prune_events(oldest, 100).await.expect("prune"), 0);
    assert_eq!(store.prune_events(i64::MAX, 2).await.expect("prune"), 2);
    let left = store.outbox_after(0, 100).await.expect("outbox");
    assert_eq!(
        left.iter().map(|e| e.seq).collect::<Vec<_>>(),
        events[2..].iter().map(|e| e.seq).collect::<Vec<_>>()
    );
    assert_eq!(store.prune_events(i64::MAX, 100).await.expect("prune"), 8);
    assert!(store.outbox_after(0, 100).await.expect("outbox").is_empty());
    assert_eq!(store.prune_events(i64::MAX, 100).await.expect("prune"), 0);
    let mut later = meeting("events", "after the prune", 5);
    later.notifications = None;
    store
        .create_meeting(later, vec![], vec![])
        .await
        .expect("create");
    let after = store.outbox_after(0, 100).await.expect("outbox");
    assert_eq!(after.len(), 1);
    assert!(
        after[0].seq > events[events.len() - 1].seq,
        "sequence numbers are not reused"
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

/// GetAttendee finds an attendee only through its own account's meeting, and tells a missing
/// meeting from a missing attendee.
async fn attendee_lookups(store: &dyn Store) {
    let created = store
        .create_meeting(
            meeting("owner", "lookups", 5),
            vec![],
            vec![attendee("José")],
        )
        .await
        .expect("create");
    let id = created.meeting.meeting_id;
    let AttendeeOutcome::Created(jose) = &created.attendees[0] else {
        panic!("José is created");
    };
    let found = store
        .get_attendee("owner", &id, &jose.attendee_id)
        .await
        .expect("found");
    assert_eq!(found, *jose);
    assert!(matches!(
        store.get_attendee("stranger", &id, &jose.attendee_id).await,
        Err(StoreError::MeetingNotFound)
    ));
    assert!(matches!(
        store.get_attendee("owner", &id, "no-such-attendee").await,
        Err(StoreError::AttendeeNotFound)
    ));
    assert!(matches!(
        store
            .get_attendee("owner", "no-such-meeting", &jose.attendee_id)
            .await,
        Err(StoreError::MeetingNotFound)
    ));
}

/// The node registry keeps each node's latest beat, forgets nodes silent since before the cutoff
/// (never the node beating), and tells where a meeting is hosted.
async fn node_registry(store: &dyn Store) {
    let beat = |url: &str, at: i64, sessions: i64| NodeBeat {
        url: url.into(),
        beat_at_ms: at,
        sessions,
        stopped: false,
    };
    let nodes = store
        .beat_node(&beat("http://a", 1_000, 3), 0)
        .await
        .expect("beat");
    assert_eq!(nodes, vec![beat("http://a", 1_000, 3)]);
    store
        .beat_node(&beat("http://b", 1_500, 0), 0)
        .await
        .expect("beat");
    // A newer beat replaces the older; a node that stops says so in its last beat.
    let stopped = NodeBeat {
        stopped: true,
        ..beat("http://b", 1_500, 0)
    };
    store.beat_node(&stopped, 0).await.expect("beat");
    let nodes = store
        .beat_node(&beat("http://a", 2_000, 7), 0)
        .await
        .expect("beat");
    assert_eq!(nodes, vec![beat("http://a", 2_000, 7), stopped]);
    // b has been silent since 1500: a cutoff after it forgets b, not the beating node.
    let nodes = store
        .beat_node(&beat("http://a", 3_000, 1), 1_600)
        .await
        .expect("beat");
    assert_eq!(nodes, vec![beat("http://a", 3_000, 1)]);

    let id = store_meeting(store, "registry", "hosted", 3).await;
    assert_eq!(
        store.meeting_host(&id).await.expect("host").as_deref(),
        Some("http://127.0.0.1:8080")
    );
    // Failover: a move from a node that no longer hosts the meeting changes nothing; of two
    // survivors moving it at once, one wins and both read the winner.
    let moved = store
        .move_meeting(&id, "http://not-the-host", "http://a")
        .await
        .expect("move");
    assert_eq!(moved.as_deref(), Some("http://127.0.0.1:8080"));
    let (by_a, by_b) = tokio::join!(
        store.move_meeting(&id, "http://127.0.0.1:8080", "http://a"),
        store.move_meeting(&id, "http://127.0.0.1:8080", "http://b"),
    );
    let (by_a, by_b) = (by_a.expect("move"), by_b.expect("move"));
    assert_eq!(by_a, by_b, "both survivors read one host");
    assert!(
        matches!(by_a.as_deref(), Some("http://a" | "http://b")),
        "{by_a:?}"
    );
    assert_eq!(store.meeting_host(&id).await.expect("host"), by_a);
    // The winner's move, and only it, is in the outbox as carillon:MeetingMoved.
    let moves: Vec<serde_json::Value> = store
        .outbox_after(0, 1000)
        .await
        .expect("outbox")
        .iter()
        .filter(|e| e.meeting_id == id)
        .map(|e| serde_json::from_str(&e.body).expect("json"))
        .filter(|body: &serde_json::Value| body["detail"]["eventType"] == "carillon:MeetingMoved")
        .collect();
    assert_eq!(moves.len(), 1, "one move recorded: {moves:?}");
    assert_eq!(moves[0]["source"], "carillon");
    assert_eq!(moves[0]["detail"]["fromNode"], "http://127.0.0.1:8080");
    assert_eq!(moves[0]["detail"]["toNode"].as_str(), by_a.as_deref());
    assert_eq!(
        store
            .move_meeting("no-such-meeting", "http://a", "http://b")
            .await
            .expect("move"),
        None
    );
    store
        .delete_meeting("registry", &id, 5)
        .await
        .expect("delete");
    assert_eq!(store.meeting_host(&id).await.expect("host"), None);
}

fn pipeline(
    account: &str,
    token: Option<&str>,
    meeting_id: Option<&str>,
    created_at: i64,
) -> MediaPipelineRecord {
    MediaPipelineRecord {
        account_id: account.into(),
        media_pipeline_id: crate::domain::ids::new_id(),
        kind: MediaPipelineRecord::CAPTURE.into(),
        client_request_token: token.map(Into::into),
        control_region: "us-east-1".into(),
        source_arn: format!(
            "arn:aws:chime::{account}:meeting:{}",
            meeting_id.unwrap_or("none")
        ),
        meeting_id: meeting_id.map(Into::into),
        sink_arn: "arn:aws:s3:::recordings/calls".into(),
        status: "Initializing".into(),
        configuration: serde_json::json!({
            "SinkIamRoleArn": "arn:aws:iam::111122223333:role/Recorder",
            "ChimeSdkMeetingConfiguration": {
                "ArtifactsConfiguration": {"Audio": {"MuxType": "AudioOnly"}}
            }
        }),
        created_at,
        updated_at: created_at,
    }
}

/// Stores a pipeline that must be new, and returns it.
async fn new_pipeline(store: &dyn Store, record: MediaPipelineRecord) -> MediaPipelineRecord {
    match store.create_media_pipeline(record.clone()).await {
        Ok(PipelineCreated::New(stored)) => {
            assert_eq!(stored, record, "stored as given");
            stored
        }
        other => panic!("a new pipeline expected, got {other:?}"),
    }
}

/// Media pipelines: idempotent creation per account and token, one active capture per meeting
/// of an account, exact round trips, account isolation, status changes, deletes, keyset pages
/// that survive a deleted cursor, the unfinished ones of every account, and tags.
async fn media_pipelines(store: &dyn Store) {
    pipeline_creation(store).await;
    pipeline_status(store).await;
    pipeline_pages(store).await;
    unfinished_pipelines(store).await;
    pipeline_tags(store).await;
}

fn tagged(key: &str, value: &str) -> Tag {
    Tag {
        key: key.into(),
        value: value.into(),
    }
}

/// A pipeline's tags: set (a key already there takes the new value, in its place), removed,
/// kept within the limit as a whole, in the configuration beside what was there, and only in
/// the caller's account.
async fn pipeline_tags(store: &dyn Store) {
    let created = new_pipeline(store, pipeline("t1", None, Some("m1"), 1_000)).await;
    let id = created.media_pipeline_id.as_str();
    let tags_of = async |id: &str| {
        store
            .get_media_pipeline("t1", id)
            .await
            .expect("get")
            .tags()
    };
    assert_eq!(tags_of(id).await, vec![]);
    store
        .change_media_pipeline_tags(
            "t1",
            id,
            vec![tagged("team", "Zoë"), tagged("room", "«Ana»")],
            vec![],
            3,
        )
        .await
        .expect("tag");
    store
        .change_media_pipeline_tags(
            "t1",
            id,
            vec![tagged("team", "Zoë & Ana"), tagged("cost", "")],
            vec![],
            3,
        )
        .await
        .expect("retag");
    assert_eq!(
        tags_of(id).await,
        vec![
            tagged("team", "Zoë & Ana"),
            tagged("room", "«Ana»"),
            tagged("cost", "")
        ]
    );
    // The rest of the configuration is as it was, and so is the rest of the pipeline.
    let got = store.get_media_pipeline("t1", id).await.expect("get");
    assert_eq!(
        got.configuration.get("SinkIamRoleArn"),
        created.configuration.get("SinkIamRoleArn")
    );
    assert_eq!(
        (got.status.as_str(), got.updated_at),
        (created.status.as_str(), created.updated_at)
    );

    // One more would make four: refused whole, even with a removal in the same change.
    let too_many = store
        .change_media_pipeline_tags(
            "t1",
            id,
            vec![tagged("a", "1"), tagged("b", "2")],
            vec!["cost".into()],
            3,
        )
        .await;
    assert!(
        matches!(too_many, Err(StoreError::TooManyTags { limit: 3 })),
        "{too_many:?}"
    );
    assert_eq!(tags_of(id).await.len(), 3);
    // Removing keys, one of them absent, then tagging in the room made.
    store
        .change_media_pipeline_tags(
            "t1",
            id,
            vec![tagged("a", "1")],
            vec!["cost".into(), "nope".into(), "room".into()],
            3,
        )
        .await
        .expect("untag and tag");
    assert_eq!(
        tags_of(id).await,
        vec![tagged("team", "Zoë & Ana"), tagged("a", "1")]
    );
    store
        .change_media_pipeline_tags("t1", id, vec![], vec!["team".into(), "a".into()], 3)
        .await
        .expect("untag all");
    assert_eq!(tags_of(id).await, vec![]);

    for (account, id) in [("t2", id), ("t1", "no-such-pipeline")] {
        let missing = store
            .change_media_pipeline_tags(account, id, vec![tagged("k", "v")], vec![], 3)
            .await;
        assert!(
            matches!(missing, Err(StoreError::PipelineNotFound)),
            "{account} {id}: {missing:?}"
        );
    }
}

async fn pipeline_creation(store: &dyn Store) {
    let first = new_pipeline(store, pipeline("p1", Some("tok"), Some("m1"), 1_000)).await;
    // A replay (a new id minted for it, other fields too) returns the first, unchanged, and
    // comes before the one-capture check that it would otherwise fail.
    let mut replay = pipeline("p1", Some("tok"), Some("m2"), 2_000);
    replay.sink_arn = "arn:aws:s3:::elsewhere".into();
    assert_eq!(
        store.create_media_pipeline(replay.clone()).await.ok(),
        Some(PipelineCreated::Existing(first.clone()))
    );
    assert!(matches!(
        store
            .get_media_pipeline("p1", &replay.media_pipeline_id)
            .await,
        Err(StoreError::PipelineNotFound)
    ));
    // Exact round trips, twice (a store may answer from memory), and not for another account.
    for _ in 0..2 {
        let got = store
            .get_media_pipeline("p1", &first.media_pipeline_id)
            .await;
        assert_eq!(got.ok().as_ref(), Some(&first));
    }
    assert!(matches!(
        store
            .get_media_pipeline("p2", &first.media_pipeline_id)
            .await,
        Err(StoreError::PipelineNotFound)
    ));
    // A second capture of the meeting is refused and keeps nothing, with or without a token.
    for token in [Some("other"), None] {
        let second = pipeline("p1", token, Some("m1"), 1_001);
        assert!(matches!(
            store.create_media_pipeline(second.clone()).await,
            Err(StoreError::PipelineConflict)
        ));
        assert!(matches!(
            store
                .get_media_pipeline("p1", &second.media_pipeline_id)
                .await,
            Err(StoreError::PipelineNotFound)
        ));
    }
    // The token and the meeting are another account's own; without a token nothing is a
    // replay; a pipeline without a meeting takes no meeting's capture.
    new_pipeline(store, pipeline("p2", Some("tok"), Some("m1"), 1_000)).await;
    new_pipeline(store, pipeline("p1", None, Some("m3"), 1_000)).await;
    new_pipeline(store, pipeline("p1", None, Some("m4"), 1_000)).await;
    for _ in 0..2 {
        let mut bare = pipeline("p1", None, None, 1_000);
        bare.configuration = serde_json::json!({});
        let bare = new_pipeline(store, bare).await;
        let got = store
            .get_media_pipeline("p1", &bare.media_pipeline_id)
            .await;
        assert_eq!(got.ok(), Some(bare));
    }
}

/// Status changes, the meeting's capture freed by a finished one, and deletes.
async fn pipeline_status(store: &dyn Store) {
    let first = new_pipeline(store, pipeline("s1", Some("a"), Some("m1"), 1_000)).await;
    let id = first.media_pipeline_id.as_str();
    store
        .set_media_pipeline_status("s1", id, "InProgress", 1_500)
        .await
        .expect("in progress");
    let got = store.get_media_pipeline("s1", id).await.expect("get");
    assert_eq!((got.status.as_str(), got.updated_at), ("InProgress", 1_500));
    assert_eq!(got.created_at, 1_000);
    for missing in [("s2", id), ("s1", "no-such-pipeline")] {
        assert!(matches!(
            store
                .set_media_pipeline_status(missing.0, missing.1, "Stopped", 2_000)
                .await,
            Err(StoreError::PipelineNotFound)
        ));
    }
    // Stopped, it no longer holds its meeting's capture; going again while another capture
    // records the meeting is refused.
    store
        .set_media_pipeline_status("s1", id, "Stopped", 2_000)
        .await
        .expect("stopped");
    let next = new_pipeline(store, pipeline("s1", Some("b"), Some("m1"), 2_500)).await;
    assert!(matches!(
        store
            .set_media_pipeline_status("s1", id, "InProgress", 3_000)
            .await,
        Err(StoreError::PipelineConflict)
    ));
    let got = store.get_media_pipeline("s1", id).await.expect("get");
    assert_eq!((got.status.as_str(), got.updated_at), ("Stopped", 2_000));
    // Deleted: returned as it was, then gone, and never another account's to delete.
    assert!(matches!(
        store
            .delete_media_pipeline("s2", &next.media_pipeline_id)
            .await,
        Err(StoreError::PipelineNotFound)
    ));
    let deleted = store
        .delete_media_pipeline("s1", &next.media_pipeline_id)
        .await
        .expect("delete");
    assert_eq!(deleted, next);
    for _ in 0..2 {
        assert!(matches!(
            store
                .delete_media_pipeline("s1", &next.media_pipeline_id)
                .await,
            Err(StoreError::PipelineNotFound)
        ));
    }
    assert!(matches!(
        store
            .get_media_pipeline("s1", &next.media_pipeline_id)
            .await,
        Err(StoreError::PipelineNotFound)
    ));
    // A deleted capture frees its meeting too; the stopped one can go again.
    store
        .set_media_pipeline_status("s1", id, "InProgress", 4_000)
        .await
        .expect("in progress again");
}

/// Keyset pages in (created_at, id) order, by kind, continuing after a deleted cursor.
async fn pipeline_pages(store: &dyn Store) {
    // Five pipelines, two of them created in the same millisecond, stored out of order.
    let mut made = Vec::new();
    for (i, created_at) in [30, 10, 20, 20, 40].into_iter().enumerate() {
        let meeting = format!("m{i}");
        made.push(new_pipeline(store, pipeline("l1", None, Some(&meeting), created_at)).await);
    }
    let mut concatenation = pipeline("l1", None, None, 25);
    concatenation.kind = "MediaConcatenationPipeline".into();
    let concatenation = new_pipeline(store, concatenation).await;
    new_pipeline(store, pipeline("l2", None, Some("m0"), 5)).await;
    made.sort_by(|x, y| {
        (x.created_at, &x.media_pipeline_id).cmp(&(y.created_at, &y.media_pipeline_id))
    });
    let list = |kind, after: Option<String>, limit| async move {
        store
            .list_media_pipelines("l1", kind, after.as_deref(), limit)
            .await
            .expect("list")
    };
    // Every kind: the concatenation pipeline in its place.
    let all = list(None, None, 100).await;
    let mut expected = made.clone();
    expected.insert(3, concatenation.clone());
    assert_eq!(all, expected);
    assert_eq!(
        list(Some("MediaConcatenationPipeline"), None, 100).await,
        vec![concatenation]
    );
    assert!(list(Some("NoSuchKind"), None, 100).await.is_empty());
    // Pages of two through the captures.
    let capture = Some(MediaPipelineRecord::CAPTURE);
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = list(capture, after.clone(), 2).await;
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.list_cursor());
        paged.extend(page);
    }
    assert_eq!(paged, made);
    // The cursor's pipeline deleted: the next page starts where it would have.
    let cursor = made[1].list_cursor();
    store
        .delete_media_pipeline("l1", &made[1].media_pipeline_id)
        .await
        .expect("delete");
    assert_eq!(list(capture, Some(cursor), 2).await, made[2..4].to_vec());
    assert!(matches!(
        store
            .list_media_pipelines("l1", None, Some("not a cursor"), 2)
            .await,
        Err(StoreError::Backend(_))
    ));
}

/// The unfinished pipelines of every account, in (created_at, id) order; finished ones are
/// left out.
async fn unfinished_pipelines(store: &dyn Store) {
    let mut expected = Vec::new();
    for (account, status) in [
        ("u1", "Initializing"),
        ("u2", "InProgress"),
        ("u1", "Stopping"),
        ("u1", "Stopped"),
        ("u2", "Failed"),
    ] {
        let mut record = pipeline(account, None, None, 7_000);
        record.status = status.into();
        let record = new_pipeline(store, record).await;
        if !MediaPipelineRecord::is_finished(status) {
            expected.push(record);
        }
    }
    // Unfinished when created, Failed since.
    let failed = new_pipeline(store, pipeline("u2", None, None, 6_000)).await;
    store
        .set_media_pipeline_status("u2", &failed.media_pipeline_id, "Failed", 7_500)
        .await
        .expect("failed");
    expected.sort_by(|x, y| x.media_pipeline_id.cmp(&y.media_pipeline_id));
    let unfinished = store
        .unfinished_media_pipelines()
        .await
        .expect("unfinished");
    assert!(
        unfinished
            .iter()
            .all(|p| !MediaPipelineRecord::is_finished(&p.status))
    );
    assert!(unfinished.windows(2).all(|w| {
        (w[0].created_at, &w[0].media_pipeline_id) < (w[1].created_at, &w[1].media_pipeline_id)
    }));
    let ours: Vec<_> = unfinished
        .into_iter()
        .filter(|p| ["u1", "u2"].contains(&p.account_id.as_str()))
        .collect();
    assert_eq!(ours, expected);
}

/// Two nodes creating pipelines at once: one per token, one active capture per meeting.
async fn pipelines_on_two_nodes(a: &dyn Store, b: &dyn Store) {
    let nodes = [a, b];
    let template = pipeline("nodes", Some("same-token"), Some("m1"), 1_000);
    let creates = (0..8).map(|i| {
        let mut p = template.clone();
        p.media_pipeline_id = crate::domain::ids::new_id();
        nodes[i % 2].create_media_pipeline(p)
    });
    let created: Vec<PipelineCreated> = futures_util::future::join_all(creates)
        .await
        .into_iter()
        .map(|c| c.expect("create"))
        .collect();
    let new: Vec<_> = created
        .iter()
        .filter_map(|c| match c {
            PipelineCreated::New(p) => Some(p.clone()),
            PipelineCreated::Existing(_) => None,
        })
        .collect();
    assert_eq!(new.len(), 1, "one pipeline per token: {created:?}");
    assert!(created.iter().all(|c| match c {
        PipelineCreated::New(p) | PipelineCreated::Existing(p) => *p == new[0],
    }));

    // Captures of one meeting under different tokens (or none) at once: one.
    let creates = (0..8).map(|i| {
        let token = format!("token-{i}");
        let token = (i % 4 != 0).then_some(token.as_str());
        nodes[i % 2].create_media_pipeline(pipeline("nodes", token, Some("m2"), 1_000))
    });
    let outcomes = futures_util::future::join_all(creates).await;
    let new = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(PipelineCreated::New(_))))
        .count();
    let refused = outcomes
        .iter()
        .filter(|o| matches!(o, Err(StoreError::PipelineConflict)))
        .count();
    assert_eq!(
        (new, refused),
        (1, 7),
        "one capture per meeting: {outcomes:?}"
    );

    // Tags of one pipeline changed from both nodes at once: every change is kept.
    let tagged = new_pipeline(a, pipeline("nodes", None, None, 2_000)).await;
    let changes = (0..8).map(|i| {
        nodes[i % 2].change_media_pipeline_tags(
            "nodes",
            &tagged.media_pipeline_id,
            vec![tag(&format!("key-{i}"))],
            vec![],
            50,
        )
    });
    for outcome in futures_util::future::join_all(changes).await {
        outcome.expect("tag");
    }
    let mut keys: Vec<String> = b
        .get_media_pipeline("nodes", &tagged.media_pipeline_id)
        .await
        .expect("get")
        .tags()
        .into_iter()
        .map(|tag| tag.key)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        (0..8).map(|i| format!("key-{i}")).collect::<Vec<_>>(),
        "no change lost"
    );
}

/// Every promise one store must keep. `fresh` opens a new, empty store each time it is called:
/// the lifecycle sweep ends every due meeting of its store and the outbox checks count every
/// event, so they get stores of their own.
pub async fn check_store<S, F, Fut>(mut fresh: F)
where
    S: Store,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = S>,
{
    let store = fresh().await;
    suite(&store).await;
    attendee_version(&store).await;
    commit_gate(&store).await;
    node_registry(&store).await;
    attendee_lookups(&store).await;
    media_pipelines(&store).await;
    lifecycle(&fresh().await).await;
    sweep_in_bounded_batches(&fresh().await).await;
    outbox(&fresh().await).await;
}

/// The promises two nodes on one database keep together (concurrent duplicates, the cap, the
/// outbox order), for backends that several nodes can share.
pub async fn check_two_nodes(a: &dyn Store, b: &dyn Store) {
    two_nodes(a, b).await;
    pipelines_on_two_nodes(a, b).await;
}

#[tokio::test]
async fn sqlite_in_memory() {
    check_store(async || sqlite::SqliteStore::open_in_memory().expect("open")).await;
}

#[tokio::test]
async fn sqlite_on_disk_and_reopened() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("carillon.db");
    let store = sqlite::SqliteStore::open(&path).expect("open");
    suite(&store).await;
    // With its separate read connections, whose pages must be one snapshot.
    attendee_version(&store).await;
    media_pipelines(&store).await;
    lifecycle(&sqlite::SqliteStore::open(&dir.path().join("lifecycle.db")).expect("open")).await;
    sweep_in_bounded_batches(
        &sqlite::SqliteStore::open(&dir.path().join("sweep.db")).expect("open"),
    )
    .await;
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

/// Two stores on one database, as two nodes have them: concurrent duplicates resolve to one row,
/// concurrent CreateAttendee calls never overshoot the cap, and the outbox numbers events in
/// commit order with no gaps.
async fn two_nodes(a: &dyn Store, b: &dyn Store) {
    let nodes = [a, b];

    // The same ClientRequestToken from both nodes at once: one meeting.
    let template = meeting("nodes", "same-token", 10);
    let creates = (0..8).map(|i| {
        let mut m = template.clone();
        m.meeting_id = crate::domain::ids::new_id();
        nodes[i % 2].create_meeting(m, vec![], vec![])
    });
    let created = futures_util::future::join_all(creates).await;
    let created: Vec<CreatedMeeting> = created.into_iter().map(|c| c.expect("create")).collect();
    assert_eq!(created.iter().filter(|c| c.created).count(), 1);
    let id = created[0].meeting.meeting_id.clone();
    assert!(created.iter().all(|c| c.meeting.meeting_id == id));

    // Thirty distinct users against a cap of ten.
    let joins = (0..30)
        .map(|i| nodes[i % 2].create_attendees("nodes", &id, vec![attendee(&format!("user-{i}"))]));
    let outcomes: Vec<AttendeeOutcome> = futures_util::future::join_all(joins)
        .await
        .into_iter()
        .flat_map(|o| o.expect("create attendees"))
        .collect();
    let created = outcomes
        .iter()
        .filter(|o| matches!(o, AttendeeOutcome::Created(_)))
        .count();
    let full = outcomes
        .iter()
        .filter(|o| matches!(o, AttendeeOutcome::MeetingFull { cap: 10, .. }))
        .count();
    assert_eq!((created, full), (10, 20), "the cap holds across nodes");
    let listed = a
        .list_attendees("nodes", &id, None, 100)
        .await
        .expect("list");
    assert_eq!(listed.len(), 10);

    // The same ExternalUserId from both nodes at once: one attendee.
    let other = store_meeting(a, "nodes", "dupes", 10).await;
    let dupes =
        (0..8).map(|i| nodes[i % 2].create_attendees("nodes", &other, vec![attendee("Zoë")]));
    let ids: Vec<String> = futures_util::future::join_all(dupes)
        .await
        .into_iter()
        .flat_map(|o| o.expect("create attendees"))
        .map(|o| match o {
            AttendeeOutcome::Created(a) | AttendeeOutcome::Existing(a) => a.attendee_id,
            AttendeeOutcome::MeetingFull { .. } => panic!("not full"),
        })
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "one attendee: {ids:?}");

    // Settings: concurrent first starts agree.
    let settings = (0..6).map(|i| nodes[i % 2].setting_or_insert("shared", ["x", "y", "z"][i % 3]));
    let values: Vec<String> = futures_util::future::join_all(settings)
        .await
        .into_iter()
        .map(|v| v.expect("setting"))
        .collect();
    assert!(values.iter().all(|v| *v == values[0]));

    // Every event so far, numbered without gaps in commit order; each meeting's own events in
    // the order its changes happened.
    let events = b.outbox_after(0, 1_000).await.expect("outbox");
    assert!(
        events.windows(2).all(|w| w[1].seq == w[0].seq + 1),
        "gap-free"
    );
    assert_eq!(
        events.iter().filter(|e| e.meeting_id == id).count(),
        1 + 10,
        "MeetingStarted and ten AttendeeAdded"
    );

    // A write through one node moves the attendee version the other reads.
    let before = a.attendees_version("nodes", &id).await.expect("version");
    b.delete_attendee("nodes", &id, &listed[0].attendee_id, 3)
        .await
        .expect("delete through b");
    let page = a
        .list_attendees_versioned("nodes", &id, None, 100)
        .await
        .expect("list through a");
    assert_ne!(page.version, before, "{} after {before}", page.version);
    assert_eq!(page.attendees.len(), 9);
}

async fn store_meeting(store: &dyn Store, account: &str, token: &str, cap: u32) -> String {
    store
        .create_meeting(meeting(account, token, cap), vec![], vec![])
        .await
        .expect("create")
        .meeting
        .meeting_id
}

#[tokio::test]
async fn sqlite_two_connections_to_one_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("carillon.db");
    let a = sqlite::SqliteStore::open(&path).expect("open");
    let b = sqlite::SqliteStore::open(&path).expect("open again");
    check_two_nodes(&a, &b).await;
}

/// A store in a fresh schema of the test database, or None when there is none.
#[cfg(test)]
async fn postgres_store(test: &str) -> Option<(postgres::ScratchSchema, postgres::PostgresStore)> {
    let url = postgres::test_database_url(test)?;
    let scratch = postgres::ScratchSchema::create(&url)
        .await
        .expect("a scratch schema");
    let store = postgres::PostgresStore::connect(&scratch.url)
        .await
        .expect("connects and migrates");
    Some((scratch, store))
}

#[tokio::test]
async fn postgres_suite() {
    let Some((scratch, store)) = postgres_store("postgres_suite").await else {
        return;
    };
    suite(&store).await;
    attendee_version(&store).await;
    commit_gate(&store).await;
    node_registry(&store).await;
    attendee_lookups(&store).await;
    media_pipelines(&store).await;
    // Migrations are idempotent across reconnections, and the data is still there.
    let reopened = postgres::PostgresStore::connect(&scratch.url)
        .await
        .expect("reconnect");
    assert_eq!(
        reopened
            .setting_or_insert("k", "three")
            .await
            .expect("setting"),
        "one"
    );
}

#[tokio::test]
async fn postgres_lifecycle() {
    let Some((_scratch, store)) = postgres_store("postgres_lifecycle").await else {
        return;
    };
    lifecycle(&store).await;
}

#[tokio::test]
async fn postgres_sweep_in_bounded_batches() {
    let Some((_scratch, store)) = postgres_store("postgres_sweep").await else {
        return;
    };
    sweep_in_bounded_batches(&store).await;
}

#[tokio::test]
async fn postgres_outbox() {
    let Some((_scratch, store)) = postgres_store("postgres_outbox").await else {
        return;
    };
    outbox(&store).await;
}

#[tokio::test]
async fn postgres_two_nodes() {
    let Some((scratch, a)) = postgres_store("postgres_two_nodes").await else {
        return;
    };
    let b = postgres::PostgresStore::connect(&scratch.url)
        .await
        .expect("a second node");
    check_two_nodes(&a, &b).await;
}

/// Nodes starting at once on an empty schema apply each migration once, and all come up.
#[tokio::test]
async fn postgres_concurrent_first_starts() {
    let Some(url) = postgres::test_database_url("postgres_concurrent_first_starts") else {
        return;
    };
    let scratch = postgres::ScratchSchema::create(&url)
        .await
        .expect("a scratch schema");
    let starts = (0..4).map(|_| postgres::PostgresStore::connect(&scratch.url));
    let stores: Vec<_> = futures_util::future::join_all(starts)
        .await
        .into_iter()
        .map(|s| s.expect("every node starts"))
        .collect();
    let id = store_meeting(&stores[0], "start", "t", 3).await;
    assert!(stores[3].meeting_exists(&id).await.expect("exists"));
}

/// On a shared database, a node's presence reset covers the meetings it hosts, not the others'.
#[tokio::test]
async fn postgres_presence_reset_is_per_node() {
    let Some((scratch, _)) = postgres_store("postgres_presence_reset_is_per_node").await else {
        return;
    };
    let connect = |node: &'static str| {
        let url = scratch.url.clone();
        async move {
            postgres::PostgresStore::connect(&url)
                .await
                .expect("connect")
                .for_node(node)
        }
    };
    let (a, b) = (
        connect("http://a:8080").await,
        connect("http://b:8080").await,
    );
    let mut ids = Vec::new();
    for (node, url) in [(&a, "http://a:8080"), (&b, "http://b:8080")] {
        let mut m = meeting("nodes", url, 5);
        m.media_base_url = url.into();
        let meeting_id = m.meeting_id.clone();
        let new = attendee("José");
        let attendee_id = new.attendee_id.clone();
        node.create_meeting(m, vec![], vec![new])
            .await
            .expect("create");
        node.record_presence(&meeting_id, &attendee_id, PresenceChange::Joined, 10)
            .await
            .expect("joined");
        ids.push((meeting_id, attendee_id));
    }
    a.reset_presence(20).await.expect("node a restarts");
    let state = |i: usize| {
        let (meeting_id, _) = ids[i].clone();
        let a = a.clone();
        async move {
            a.meeting_presence("nodes", &meeting_id)
                .await
                .expect("presence")[0]
                .state
        }
    };
    assert_eq!(
        state(0).await,
        ConnectionState::Dropped,
        "node a's attendee"
    );
    assert_eq!(
        state(1).await,
        ConnectionState::Connected,
        "node b's attendee"
    );
    // Node b's meeting is not idle, so it does not end; node a's idles from the reset.
    let rules = EndRules {
        idle_seconds: 300,
        max_seconds: 86_400,
    };
    assert_eq!(
        a.end_due_meetings(320, rules, usize::MAX)
            .await
            .expect("sweep"),
        vec![ids[0].0.clone()]
    );
}

/// The same two nodes with every transaction SERIALIZABLE (CockroachDB's only level): lock
/// waits turn into serialization failures, which the store reruns.
#[tokio::test]
async fn postgres_two_nodes_serializable() {
    let Some((scratch, _)) = postgres_store("postgres_two_nodes_serializable").await else {
        return;
    };
    // The scratch URL ends in its `options` parameter; one more setting joins it.
    let url = format!(
        "{}%20-cdefault_transaction_isolation%3Dserializable",
        scratch.url
    );
    let a = postgres::PostgresStore::connect(&url)
        .await
        .expect("node a");
    let b = postgres::PostgresStore::connect(&url)
        .await
        .expect("node b");
    check_two_nodes(&a, &b).await;
}
