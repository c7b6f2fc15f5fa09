//! The real server on PostgreSQL (`--store postgres://...`), driven by the official SDK: two
//! nodes sharing one database serve the same meetings, agree on the generated page-token key and
//! hand each other's NextTokens on. Skipped with a NOTE unless CARILLON_TEST_POSTGRES_URL is set.

mod common;

use std::collections::BTreeSet;

use aws_sdk_chimesdkmeetings::types::CreateAttendeeRequestItem;
use carillon::store::postgres::{ScratchSchema, test_database_url};
use common::TestServer;

fn item(user: &str) -> CreateAttendeeRequestItem {
    CreateAttendeeRequestItem::builder()
        .external_user_id(user)
        .build()
        .expect("item")
}

#[tokio::test]
async fn two_nodes_on_postgres_serve_one_meeting_lifecycle() {
    let Some(url) = test_database_url("two_nodes_on_postgres_serve_one_meeting_lifecycle") else {
        return;
    };
    let scratch = ScratchSchema::create(&url).await.expect("a scratch schema");
    let node_a = TestServer::start_with(|c| c.store = Some(scratch.url.clone())).await;
    let node_b = TestServer::start_with(|c| c.store = Some(scratch.url.clone())).await;
    let (a, b) = (node_a.client(), node_b.client());

    let id = common::create_meeting_id(&a, "on-postgres").await;
    let meeting = b
        .get_meeting()
        .meeting_id(&id)
        .send()
        .await
        .expect("the other node sees the meeting")
        .meeting
        .expect("a Meeting");
    assert_eq!(meeting.external_meeting_id(), Some("on-postgres"));

    // Names beyond ASCII round-trip; a repeated ExternalUserId from the other node returns the
    // same attendee.
    let mut created = BTreeSet::new();
    for (client, name) in [(&a, "José"), (&b, "Zoë")] {
        let attendee = client
            .create_attendee()
            .meeting_id(&id)
            .external_user_id(name)
            .send()
            .await
            .expect("CreateAttendee")
            .attendee
            .expect("an Attendee");
        assert_eq!(attendee.external_user_id(), Some(name));
        created.insert(attendee.attendee_id().expect("id").to_string());
    }
    let again = b
        .create_attendee()
        .meeting_id(&id)
        .external_user_id("José")
        .send()
        .await
        .expect("CreateAttendee again")
        .attendee
        .expect("an Attendee");
    assert!(created.contains(again.attendee_id().expect("id")));

    // 120 more in two batches, one per node: 122 attendees, more than one page.
    for (client, batch) in [(&a, 0), (&b, 1)] {
        let items = (0..60)
            .map(|i| item(&format!("user-{batch}-{i}")))
            .collect();
        let out = client
            .batch_create_attendee()
            .meeting_id(&id)
            .set_attendees(Some(items))
            .send()
            .await
            .expect("BatchCreateAttendee");
        assert!(out.errors().is_empty());
        created.extend(
            out.attendees()
                .iter()
                .filter_map(|a| a.attendee_id().map(String::from)),
        );
    }
    assert_eq!(created.len(), 122);

    // Pages alternate between the nodes: a NextToken from one is good on the other, because
    // both read the page-token key from the shared store.
    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    for turn in 0.. {
        let client = if turn % 2 == 0 { &a } else { &b };
        let page = client
            .list_attendees()
            .meeting_id(&id)
            .max_results(50)
            .set_next_token(next.clone())
            .send()
            .await
            .expect("ListAttendees page");
        seen.extend(
            page.attendees()
                .iter()
                .map(|a| a.attendee_id().expect("id").to_string()),
        );
        match page.next_token() {
            Some(token) => next = Some(token.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 122, "no attendee twice, none missed");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in id (byte) order");
    assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), created);

    // Deleting on one node is final on both.
    b.delete_attendee()
        .meeting_id(&id)
        .attendee_id(again.attendee_id().expect("id"))
        .send()
        .await
        .expect("DeleteAttendee");
    let err = a
        .get_attendee()
        .meeting_id(&id)
        .attendee_id(again.attendee_id().expect("id"))
        .send()
        .await
        .expect_err("deleted")
        .into_service_error();
    assert!(err.is_not_found_exception(), "{err:?}");
    a.delete_meeting()
        .meeting_id(&id)
        .send()
        .await
        .expect("DeleteMeeting");
    let err = b
        .get_meeting()
        .meeting_id(&id)
        .send()
        .await
        .expect_err("ended")
        .into_service_error();
    assert!(err.is_not_found_exception(), "{err:?}");

    // A restarted node finds everything where it was.
    let mut node_a = node_a;
    node_a.restart().await;
    let id = common::create_meeting_id(&node_a.client(), "after-restart").await;
    b.get_meeting()
        .meeting_id(&id)
        .send()
        .await
        .expect("seen from the other node");

    for node in [node_a, node_b] {
        if let Some(running) = node.running {
            running.stop().await.expect("stops");
        }
    }
    scratch.remove().await.expect("the scratch schema goes");
}

/// Nodes started at once on one database generate one root key between them, kept in the store.
#[tokio::test]
async fn nodes_starting_together_agree_on_generated_credentials() {
    let Some(url) = test_database_url("nodes_starting_together_agree_on_generated_credentials")
    else {
        return;
    };
    let scratch = ScratchSchema::create(&url).await.expect("a scratch schema");
    let generated = |c: &mut carillon::config::Config| {
        c.store = Some(scratch.url.clone());
        c.access_key_id = None;
        c.secret_access_key = None;
        c.account_id = None;
    };
    let (a, b) = tokio::join!(
        TestServer::start_with(generated),
        TestServer::start_with(generated)
    );
    let key = |node: &TestServer| {
        let boot = &node.running.as_ref().expect("running").boot;
        assert!(boot.generated_credentials);
        (
            boot.root_key.access_key_id.clone(),
            boot.root_key.secret_access_key.clone(),
            boot.root_key.account_id.clone(),
        )
    };
    assert_eq!(key(&a), key(&b));
    for node in [a, b] {
        if let Some(running) = node.running {
            running.stop().await.expect("stops");
        }
    }
    scratch.remove().await.expect("the scratch schema goes");
}

/// A store URL that is neither absent nor postgres:// is refused at start, without echoing it.
#[tokio::test]
async fn an_unknown_store_url_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = common::config_for(dir.path());
    config.store = Some("mysql://root:hunter2@db/carillon".into());
    let error = match carillon::server::start(&config).await {
        Ok(_) => panic!("a mysql:// store must be refused"),
        Err(error) => format!("{error:#}"),
    };
    assert!(error.contains("postgres://"), "{error}");
    assert!(
        !error.contains("hunter2"),
        "the URL is not repeated: {error}"
    );
}
