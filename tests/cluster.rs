//! Three `carillon serve` processes on one PostgreSQL database with NATS between them, started
//! as docs/scale-out.md starts them, driven by the official SDK spread over all
//! three: one meeting lifecycle across nodes, the cap and both idempotency keys under concurrent
//! calls to every node, placement on live nodes, a client kicked through another node, and a
//! `kill -9` in the middle of a storm of creates.
//!
//! Needs `CARILLON_TEST_POSTGRES_URL` and `CARILLON_TEST_NATS_URL` (`scripts/test` sets both);
//! without them each test prints a NOTE and passes.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_sdk_chimesdkmeetings as meetings;
use aws_sdk_chimesdkmeetings::types::{AttendeeFeatures, MeetingFeaturesConfiguration};
use carillon::join::frames::close_code;
use carillon::join::frames::proto::sdk_signal_frame::Type;
use carillon::store::postgres::{ScratchSchema, test_database_url};
use common::signal::{SignalClient, data_frame};
use common::{ACCESS_KEY_ID, ACCOUNT_ID, SECRET_ACCESS_KEY, sdk_client};

struct Node {
    child: tokio::process::Child,
    addr: String,
    client: meetings::Client,
    _dir: tempfile::TempDir,
}

struct Cluster {
    nodes: Vec<Node>,
    _scratch: ScratchSchema,
}

/// Starts three nodes on a scratch schema and a bus subject of their own, or None (with a NOTE)
/// when the machine has no test database or NATS.
async fn three_nodes(test: &str) -> Option<Cluster> {
    let database = test_database_url(test)?;
    let Ok(nats) = std::env::var("CARILLON_TEST_NATS_URL") else {
        eprintln!("NOTE: {test} skipped: set CARILLON_TEST_NATS_URL (scripts/test does)");
        return None;
    };
    let scratch = ScratchSchema::create(&database)
        .await
        .expect("a scratch schema");
    let subject = format!("carillontest.cluster.{}", uuid::Uuid::new_v4().simple());
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            probe.local_addr().expect("addr").port()
        };
        let addr = format!("127.0.0.1:{port}");
        let dir = tempfile::tempdir().expect("temp dir");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_carillon"))
            .args(["serve", "--listen", &addr, "--admin-listen", "off"])
            .args([
                "--store",
                &scratch.url,
                "--bus",
                &nats,
                "--bus-subject",
                &subject,
            ])
            .args(["--node-timeout", "2s"])
            .arg("--data-dir")
            .arg(dir.path())
            .env("CARILLON_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("CARILLON_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
            .env("CARILLON_ACCOUNT_ID", ACCOUNT_ID)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the binary starts");
        common::wait_ready(port).await;
        nodes.push(Node {
            child,
            client: sdk_client(&format!("http://{addr}"), "us-east-1"),
            addr,
            _dir: dir,
        });
    }
    // Every node has beaten and read the others' first beats (a quarter of the timeout).
    tokio::time::sleep(Duration::from_millis(700)).await;
    Some(Cluster {
        nodes,
        _scratch: scratch,
    })
}

impl Cluster {
    /// A connection to the cluster's scratch schema, to read what the nodes stored.
    async fn database(&self) -> tokio_postgres::Client {
        let (client, connection) =
            tokio_postgres::connect(&self._scratch.url, tokio_postgres::NoTls)
                .await
                .expect("the scratch schema");
        tokio::spawn(connection);
        client
    }

    /// The node hosting the meeting, as the store says (its `--public-url`).
    async fn stored_host(&self, meeting_id: &str) -> Option<String> {
        self.database()
            .await
            .query_opt(
                "SELECT media_base_url FROM meetings WHERE meeting_id = $1",
                &[&meeting_id],
            )
            .await
            .expect("query")
            .map(|row| row.get(0))
    }

    /// How many carillon:MeetingMoved events the outbox holds for the meeting.
    async fn moves_recorded(&self, meeting_id: &str) -> i64 {
        self.database()
            .await
            .query_one(
                "SELECT count(*) FROM events WHERE meeting_id = $1 \
                 AND body LIKE '%\"carillon:MeetingMoved\"%'",
                &[&meeting_id],
            )
            .await
            .expect("query")
            .get(0)
    }

    fn client(&self, i: usize) -> &meetings::Client {
        &self.nodes[i % self.nodes.len()].client
    }

    /// The index of the node a SignalingUrl names.
    fn host_of(&self, signaling_url: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| signaling_url.starts_with(&format!("ws://{}/", n.addr)))
            .unwrap_or_else(|| panic!("{signaling_url} names none of the nodes"))
    }

    /// The SignalingUrl, pointed at node `i` instead of the node it names.
    fn signaling_url_on(&self, signaling_url: &str, i: usize) -> String {
        let host = &self.nodes[self.host_of(signaling_url)].addr;
        signaling_url.replacen(host.as_str(), &self.nodes[i].addr, 1)
    }
}

struct Placed {
    id: String,
    signaling_url: String,
}

async fn create_meeting(client: &meetings::Client, cap: i32) -> Placed {
    let meeting = client
        .create_meeting()
        .media_region("us-east-1")
        .external_meeting_id("cluster")
        .meeting_features(
            MeetingFeaturesConfiguration::builder()
                .attendee(AttendeeFeatures::builder().max_count(cap).build())
                .build(),
        )
        .send()
        .await
        .expect("CreateMeeting")
        .meeting
        .expect("a Meeting");
    Placed {
        id: meeting.meeting_id.expect("id"),
        signaling_url: meeting
            .media_placement
            .and_then(|p| p.signaling_url)
            .expect("a SignalingUrl"),
    }
}

async fn create_attendee(client: &meetings::Client, meeting: &str, user: &str) -> (String, String) {
    let attendee = client
        .create_attendee()
        .meeting_id(meeting)
        .external_user_id(user)
        .send()
        .await
        .expect("CreateAttendee")
        .attendee
        .expect("an Attendee");
    (
        attendee.attendee_id.expect("id"),
        attendee.join_token.expect("token"),
    )
}

/// Every attendee id of the meeting, paging through `client` `page` at a time.
async fn all_attendees(clients: &[&meetings::Client], meeting: &str, page: i32) -> Vec<String> {
    let mut ids = Vec::new();
    let mut token: Option<String> = None;
    for i in 0.. {
        // Each page through the next node: a NextToken from one node pages on another.
        let out = clients[i % clients.len()]
            .list_attendees()
            .meeting_id(meeting)
            .max_results(page)
            .set_next_token(token.take())
            .send()
            .await
            .expect("ListAttendees");
        ids.extend(
            out.attendees()
                .iter()
                .map(|a| a.attendee_id().expect("id").to_string()),
        );
        match out.next_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    ids
}

#[tokio::test]
async fn three_nodes_serve_one_service() {
    let Some(cluster) = three_nodes("three_nodes_serve_one_service").await else {
        return;
    };

    // Meetings created through one node are placed on all three.
    let mut hosts = HashMap::new();
    for _ in 0..24 {
        let placed = create_meeting(cluster.client(0), 250).await;
        *hosts
            .entry(cluster.host_of(&placed.signaling_url))
            .or_insert(0) += 1;
    }
    assert_eq!(hosts.len(), 3, "placed on every live node: {hosts:?}");

    // One lifecycle over three nodes: create on the first, page on all, delete on the third.
    let meeting = create_meeting(cluster.client(0), 250).await;
    let mut created = BTreeSet::new();
    for i in 0..75 {
        let user = ["José", "Zoë", "«Ana»"][i % 3].to_string() + &format!(" {i}");
        created.insert(
            create_attendee(cluster.client(i), &meeting.id, &user)
                .await
                .0,
        );
    }
    let clients: Vec<&meetings::Client> = (0..3).map(|i| cluster.client(i)).collect();
    let listed = all_attendees(&clients, &meeting.id, 10).await;
    assert_eq!(listed.len(), 75, "eight pages, each on the next node");
    assert_eq!(listed.iter().cloned().collect::<BTreeSet<_>>(), created);
    assert!(
        listed.windows(2).all(|w| w[0] < w[1]),
        "in id order, once each"
    );
    cluster
        .client(2)
        .delete_meeting()
        .meeting_id(&meeting.id)
        .send()
        .await
        .expect("DeleteMeeting on the third node");
    let gone = cluster
        .client(0)
        .get_meeting()
        .meeting_id(&meeting.id)
        .send()
        .await
        .expect_err("gone on the first");
    assert_eq!(
        gone.into_service_error().meta().code(),
        Some("NotFoundException")
    );

    // Thirty distinct people at once, ten per node, against a cap of ten: ten get in.
    let capped = create_meeting(cluster.client(1), 10).await;
    let joins = (0..30).map(|i| {
        cluster
            .client(i)
            .create_attendee()
            .meeting_id(&capped.id)
            .external_user_id(format!("person {i}"))
            .send()
    });
    let results = futures_util::future::join_all(joins).await;
    let admitted = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(admitted, 10, "the cap holds across nodes");
    assert_eq!(all_attendees(&clients, &capped.id, 100).await.len(), 10);

    // The same ExternalUserId from every node at once: one attendee.
    let open = create_meeting(cluster.client(2), 250).await;
    let same = (0..9).map(|i| create_attendee(cluster.client(i), &open.id, "Zoë"));
    let ids: BTreeSet<String> = futures_util::future::join_all(same)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");

    // The same ClientRequestToken from every node at once: one meeting.
    let token = uuid::Uuid::new_v4().to_string();
    let same = (0..9).map(|i| {
        cluster
            .client(i)
            .create_meeting()
            .media_region("us-east-1")
            .external_meeting_id("one of nine")
            .client_request_token(&token)
            .send()
    });
    let ids: BTreeSet<String> = futures_util::future::join_all(same)
        .await
        .into_iter()
        .map(|r| {
            r.expect("CreateMeeting")
                .meeting
                .and_then(|m| m.meeting_id)
                .expect("id")
        })
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
}

#[tokio::test]
async fn a_join_that_reaches_another_node_is_served_by_the_meetings_host() {
    let Some(cluster) =
        three_nodes("a_join_that_reaches_another_node_is_served_by_the_meetings_host").await
    else {
        return;
    };
    let meeting = create_meeting(cluster.client(0), 250).await;
    let host = cluster.host_of(&meeting.signaling_url);
    let (elsewhere, third) = ((host + 1) % 3, (host + 2) % 3);
    let (jose_id, jose_token) = create_attendee(cluster.client(0), &meeting.id, "José").await;
    let (_, zoe_token) = create_attendee(cluster.client(1), &meeting.id, "Zoë").await;

    // A join that reaches a live node not hosting the meeting is carried to the host: José,
    // through another node, and Zoë, on the host, are in one room.
    let misdirected = cluster.signaling_url_on(&meeting.signaling_url, elsewhere);
    let mut jose = SignalClient::connect(&misdirected, &jose_token).await;
    jose.join().await;
    let mut zoe = SignalClient::connect(&meeting.signaling_url, &zoe_token).await;
    zoe.join().await;
    jose.send(data_frame("chat", "¡Hola, Zoë!".as_bytes()))
        .await;
    let heard = zoe
        .expect(Type::DataMessage)
        .await
        .data_message
        .expect("data");
    assert_eq!(
        heard.messages[0].sender_attendee_id.as_deref(),
        Some(jose_id.as_str()),
        "the relayed client shares the host's room"
    );
    assert_eq!(
        heard.messages[0].data.as_deref(),
        Some("¡Hola, Zoë!".as_bytes())
    );

    // A DeleteAttendee sent to another node kicks at once, over the bus, and the host's
    // AUDIO_STATUS and close come back through the relay.
    let started = std::time::Instant::now();
    cluster
        .client(elsewhere)
        .delete_attendee()
        .meeting_id(&meeting.id)
        .attendee_id(&jose_id)
        .send()
        .await
        .expect("DeleteAttendee on another node");
    let status = jose.expect(Type::AudioStatus).await;
    assert_eq!(status.audio_status.and_then(|s| s.audio_status), Some(411));
    jose.closed().await;
    // Over the bus this takes milliseconds; the hosting node's own store check would take up to
    // its --presence-check of 30 s. The bound tells the two apart with room for a slow machine.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "kicked in {:?}: not over the bus",
        started.elapsed()
    );

    // And a DeleteMeeting sent to the third ends the meeting for everyone on the host.
    cluster
        .client(third)
        .delete_meeting()
        .meeting_id(&meeting.id)
        .send()
        .await
        .expect("DeleteMeeting on the third node");
    let status = zoe.expect(Type::AudioStatus).await;
    assert_eq!(status.audio_status.and_then(|s| s.audio_status), Some(410));
    assert_eq!(zoe.closed().await.0, close_code::MEETING_ENDED);
}

#[tokio::test]
async fn kill_9_of_one_node_mid_storm_loses_no_acknowledged_create() {
    let Some(mut cluster) =
        three_nodes("kill_9_of_one_node_mid_storm_loses_no_acknowledged_create").await
    else {
        return;
    };
    const VICTIM: usize = 2;
    // A meeting hosted on the node about to die, with an attendee who will try to join it.
    let doomed = loop {
        let placed = create_meeting(cluster.client(0), 250).await;
        if cluster.host_of(&placed.signaling_url) == VICTIM {
            break placed;
        }
    };
    let (_, doomed_token) = create_attendee(cluster.client(0), &doomed.id, "Zoë").await;

    // Eight writers, each into a meeting of its own, round-robin over the three nodes.
    let mut storm_meetings = Vec::new();
    for i in 0..8 {
        storm_meetings.push(create_meeting(cluster.client(i), 250).await.id);
    }
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let clients: Vec<meetings::Client> = (0..3).map(|i| cluster.client(i).clone()).collect();
    let writers: Vec<_> = storm_meetings
        .iter()
        .enumerate()
        .map(|(w, meeting)| {
            let (clients, meeting, acknowledged) =
                (clients.clone(), meeting.clone(), acknowledged.clone());
            tokio::spawn(async move {
                let mut mine = Vec::new();
                let mut after_kill_on_survivors = 0;
                for i in 0..200 {
                    let node = (w + i) % 3;
                    let killed = acknowledged.load(Ordering::SeqCst) >= 400;
                    let sent = clients[node]
                        .create_attendee()
                        .meeting_id(&meeting)
                        .external_user_id(format!("writer {w} #{i}"))
                        .send()
                        .await;
                    if let Ok(out) = sent {
                        mine.push(out.attendee.and_then(|a| a.attendee_id).expect("id"));
                        acknowledged.fetch_add(1, Ordering::SeqCst);
                        if killed && node != VICTIM {
                            after_kill_on_survivors += 1;
                        }
                    }
                }
                (meeting, mine, after_kill_on_survivors)
            })
        })
        .collect();
    while acknowledged.load(Ordering::SeqCst) < 400 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let victim = &mut cluster.nodes[VICTIM].child;
    victim.start_kill().expect("SIGKILL");
    victim.wait().await.expect("killed");

    let mut total = 0;
    let mut served_after_kill = 0;
    let survivors: Vec<&meetings::Client> = vec![cluster.client(0), cluster.client(1)];
    for writer in writers {
        let (meeting, mine, after) = writer.await.expect("writer");
        total += mine.len();
        served_after_kill += after;
        let stored: BTreeSet<String> = all_attendees(&survivors, &meeting, 100)
            .await
            .into_iter()
            .collect();
        for id in &mine {
            assert!(stored.contains(id), "acknowledged attendee {id} is stored");
        }
    }
    eprintln!(
        "storm: {total} acknowledged creates, {served_after_kill} on the survivors after the kill"
    );
    assert!(
        total > 400 && served_after_kill > 0,
        "the survivors kept serving"
    );

    // Once the dead node's beats are older than the timeout, nothing is placed on it, and a
    // join for its meeting that reaches a survivor moves the meeting there (failover).
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    for i in 0..12 {
        let placed = create_meeting(cluster.client(i % 2), 250).await;
        assert_ne!(cluster.host_of(&placed.signaling_url), VICTIM);
    }
    let rerouted = cluster.signaling_url_on(&doomed.signaling_url, 0);
    let mut zoe = SignalClient::connect(&rerouted, &doomed_token).await;
    zoe.join().await;
    assert_eq!(
        cluster.stored_host(&doomed.id).await.as_deref(),
        Some(format!("http://{}", cluster.nodes[0].addr).as_str()),
        "the survivor the join reached hosts the meeting now"
    );
}

/// Two survivors taking reconnects for the same orphaned meeting at once end with one host:
/// José's join reaches one, Zoë's the other, in the same instant; one moves the meeting, the
/// other relays to it, and the two share a room. The move is recorded once.
#[tokio::test]
async fn two_survivors_joined_at_once_for_an_orphaned_meeting_end_with_one_host() {
    let Some(mut cluster) =
        three_nodes("two_survivors_joined_at_once_for_an_orphaned_meeting_end_with_one_host").await
    else {
        return;
    };
    const VICTIM: usize = 2;
    let orphan = loop {
        let placed = create_meeting(cluster.client(0), 250).await;
        if cluster.host_of(&placed.signaling_url) == VICTIM {
            break placed;
        }
    };
    let (jose_id, jose_token) = create_attendee(cluster.client(0), &orphan.id, "José").await;
    let (_, zoe_token) = create_attendee(cluster.client(1), &orphan.id, "Zoë").await;
    let victim = &mut cluster.nodes[VICTIM].child;
    victim.start_kill().expect("SIGKILL");
    victim.wait().await.expect("killed");
    // Both survivors count the host gone (--node-timeout 2s, beats every 0.5 s).
    tokio::time::sleep(Duration::from_millis(2_700)).await;

    let (on_0, on_1) = (
        cluster.signaling_url_on(&orphan.signaling_url, 0),
        cluster.signaling_url_on(&orphan.signaling_url, 1),
    );
    let (mut jose, mut zoe) = tokio::join!(
        async {
            let mut jose = SignalClient::connect(&on_0, &jose_token).await;
            jose.join().await;
            jose
        },
        async {
            let mut zoe = SignalClient::connect(&on_1, &zoe_token).await;
            zoe.join().await;
            zoe
        },
    );
    let host = cluster.stored_host(&orphan.id).await.expect("a host");
    let survivors = [0, 1].map(|i| format!("http://{}", cluster.nodes[i].addr));
    assert!(survivors.contains(&host), "{host} is a survivor");

    jose.send(data_frame("chat", "¿Me oyes, Zoë?".as_bytes()))
        .await;
    let heard = zoe
        .expect(Type::DataMessage)
        .await
        .data_message
        .expect("data");
    assert_eq!(
        heard.messages[0].sender_attendee_id.as_deref(),
        Some(jose_id.as_str()),
        "one room, whichever survivor each join reached"
    );
    assert_eq!(
        cluster.moves_recorded(&orphan.id).await,
        1,
        "one carillon:MeetingMoved"
    );
}
