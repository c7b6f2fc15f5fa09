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

/// A TCP proxy to the database that the test can cut (closing every connection through it and
/// refusing new ones) and restore, as a network partition would.
struct CuttableProxy {
    addr: std::net::SocketAddr,
    open: tokio::sync::watch::Sender<bool>,
}

impl CuttableProxy {
    async fn start(target: String) -> CuttableProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("proxy listens");
        let addr = listener.local_addr().expect("addr");
        let (open, watch) = tokio::sync::watch::channel(true);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !*watch.borrow() {
                    continue; // dropped: the database is unreachable
                }
                let (target, mut cut) = (target.clone(), watch.clone());
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.wait_for(|open| !*open) => {}
                    }
                });
            }
        });
        CuttableProxy { addr, open }
    }

    fn cut(&self) {
        self.open.send_replace(false);
    }

    fn restore(&self) {
        self.open.send_replace(true);
    }
}

/// While the database cannot be reached, calls are answered at once with 503
/// ServiceUnavailableException and Retry-After (never a 500 or a hang), and the node serves
/// again by itself once the database is back.
#[tokio::test]
async fn a_database_outage_is_503_and_the_node_recovers() {
    let Some(url) = test_database_url("a_database_outage_is_503_and_the_node_recovers") else {
        return;
    };
    let scratch = ScratchSchema::create(&url).await.expect("a scratch schema");
    let parsed: tokio_postgres::Config = scratch.url.parse().expect("a PostgreSQL URL");
    let (host, port) = match (parsed.get_hosts().first(), parsed.get_ports().first()) {
        (Some(tokio_postgres::config::Host::Tcp(host)), Some(port)) => (host.clone(), *port),
        _ => panic!("the test database must be reached over TCP: {url}"),
    };
    let proxy = CuttableProxy::start(format!("{host}:{port}")).await;
    let through_proxy = scratch
        .url
        .replacen(&format!("{host}:{port}"), &proxy.addr.to_string(), 1);
    assert_ne!(through_proxy, scratch.url, "the URL names {host}:{port}");
    let node = TestServer::start_with(|c| c.store = Some(through_proxy.clone())).await;
    let client = node.client();
    let id = common::create_meeting_id(&client, "outage").await;

    proxy.cut();
    for _ in 0..3 {
        let call = client.get_meeting().meeting_id(&id).send();
        let error = tokio::time::timeout(std::time::Duration::from_secs(20), call)
            .await
            .expect("answered, not hung")
            .expect_err("the database is unreachable");
        let raw = error.raw_response().expect("an HTTP answer");
        assert_eq!(raw.status().as_u16(), 503);
        assert_eq!(raw.headers().get("retry-after"), Some("1"));
        assert_eq!(
            error.into_service_error().meta().code(),
            Some("ServiceUnavailableException")
        );
    }
    let write = client
        .create_attendee()
        .meeting_id(&id)
        .external_user_id("José")
        .send();
    let error = tokio::time::timeout(std::time::Duration::from_secs(20), write)
        .await
        .expect("answered, not hung")
        .expect_err("the database is unreachable");
    assert_eq!(error.raw_response().map(|r| r.status().as_u16()), Some(503));

    proxy.restore();
    let mut recovered = false;
    for _ in 0..100 {
        if client.get_meeting().meeting_id(&id).send().await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(recovered, "the node serves again once the database is back");
    let zoe = client
        .create_attendee()
        .meeting_id(&id)
        .external_user_id("Zoë")
        .send()
        .await
        .expect("writes work again");
    assert_eq!(
        zoe.attendee.and_then(|a| a.external_user_id).as_deref(),
        Some("Zoë")
    );
    if let Some(running) = node.running {
        running.stop().await.expect("stops");
    }
    drop(proxy);
    scratch.remove().await.expect("the scratch schema goes");
}
