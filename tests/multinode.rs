//! Two nodes on one store: a client connected to one node is kicked by a DeleteAttendee or
//! DeleteMeeting sent to the other, at once over the NATS bus (needs `CARILLON_TEST_NATS_URL`,
//! set by `scripts/test`, which starts NATS when it is not running), and without a bus by the
//! hosting node's own periodic check against the store.

mod common;

use carillon::join::frames::proto::sdk_signal_frame::Type;
use common::TestServer;
use common::signal::{SignalClient, attendee, meeting};

#[tokio::test]
async fn a_client_on_one_node_is_kicked_by_a_call_to_another() {
    let Ok(nats) = std::env::var("CARILLON_TEST_NATS_URL") else {
        eprintln!(
            "NOTE: CARILLON_TEST_NATS_URL is not set, so the cross-node bus is not tested here; scripts/test sets it"
        );
        return;
    };
    let subject = format!("carillontest.bus.{}", uuid::Uuid::new_v4().simple());
    let first = TestServer::start_with(|config| {
        config.bus = Some(nats.clone());
        config.bus_subject = subject.clone();
    })
    .await;
    kicked_through_the_other_node(&first).await;
}

/// Without a bus (or when a notice is lost), the node hosting the meeting finds out by itself:
/// it checks its connected attendees against the shared store every `--presence-check`.
#[tokio::test]
async fn without_a_bus_the_hosting_node_disconnects_what_the_store_no_longer_has() {
    let first = TestServer::start_with(|config| config.presence_check = 1).await;
    kicked_through_the_other_node(&first).await;
}

/// Starts a second node on `first`'s store, connects José and Zoë to a meeting created through
/// `first` (and placed on either node), and checks that a DeleteAttendee and then a DeleteMeeting
/// sent to the node not hosting it end their sessions on the one that does (411, then 410 and
/// 4410).
async fn kicked_through_the_other_node(first: &TestServer) {
    let second = first.second_node().await;
    let second_url = format!("http://{}", second.boot.addr);

    // The SignalingUrl names the node hosting the meeting; the calls go to the other one.
    let m = meeting(first).await;
    let other = if m.signaling_url.starts_with(&second_url) {
        first.client()
    } else {
        assert!(
            m.signaling_url.contains(&first.addr.to_string()),
            "{}",
            m.signaling_url
        );
        common::sdk_client(&second_url, "us-east-1")
    };
    let (jose_id, jose_token) = attendee(first, &m, "José").await;
    let (_, zoe_token) = attendee(first, &m, "Zoë").await;
    let mut jose = SignalClient::connect(&m.signaling_url, &jose_token).await;
    jose.join().await;
    let mut zoe = SignalClient::connect(&m.signaling_url, &zoe_token).await;
    zoe.join().await;

    other
        .delete_attendee()
        .meeting_id(&m.id)
        .attendee_id(&jose_id)
        .send()
        .await
        .expect("DeleteAttendee through the other node");
    let status = jose.expect(Type::AudioStatus).await;
    assert_eq!(
        status.audio_status.and_then(|s| s.audio_status),
        Some(411),
        "AudioAttendeeRemoved, on the other node"
    );
    jose.closed().await;

    other
        .delete_meeting()
        .meeting_id(&m.id)
        .send()
        .await
        .expect("DeleteMeeting through the other node");
    let status = zoe.expect(Type::AudioStatus).await;
    assert_eq!(status.audio_status.and_then(|s| s.audio_status), Some(410));
    assert_eq!(zoe.closed().await.0, 4410);
    second.stop().await.expect("stops");
}

/// A node whose meeting another node took over (it was counted gone: paused, or cut off from
/// the store, while its clients stayed) closes its sessions there with a code the client
/// reconnects on, at its next presence check; the reconnect reaches the meeting's new host.
#[tokio::test]
async fn a_node_hands_over_the_sessions_of_a_meeting_another_node_took_over() {
    let first = TestServer::start_with(|config| config.presence_check = 1).await;
    let second = first.second_node().await;
    let second_url = format!("http://{}", second.boot.addr);
    let first_url = first.url();
    let m = meeting(&first).await;
    let (_, jose_token) = attendee(&first, &m, "José").await;
    // Connected to the meeting's host, whichever node that is.
    let (host, other) = if m.signaling_url.contains(&second.boot.addr.to_string()) {
        (second_url.clone(), first_url.clone())
    } else {
        (first_url.clone(), second_url.clone())
    };
    let mut jose = SignalClient::connect(&m.signaling_url, &jose_token).await;
    jose.join().await;

    // The other node takes the meeting over, as failover does.
    let store = &first.running.as_ref().expect("running").join.store;
    let moved = store
        .move_meeting(&m.id, &host, &other)
        .await
        .expect("move");
    assert_eq!(moved.as_deref(), Some(other.as_str()));
    let (code, reason) = jose.closed().await;
    assert_eq!(
        (code, reason.as_str()),
        (
            carillon::join::frames::close_code::SERVER_GOING_AWAY,
            "the meeting moved to another node"
        ),
        "closed with a code the SDK reconnects on"
    );
}

/// A NATS server of the test's own, with JetStream, that it can stop and start again.
struct OwnNats {
    binary: String,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<tokio::process::Child>,
}

impl OwnNats {
    /// Starts `$CARILLON_TEST_NATS_SERVER` (`scripts/test` installs it and sets it), or None
    /// when that is not set.
    async fn start() -> Option<OwnNats> {
        let binary = std::env::var("CARILLON_TEST_NATS_SERVER").ok()?;
        let mut nats = OwnNats {
            binary,
            port: common::free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
        };
        nats.up().await.then_some(nats)
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn up(&mut self) -> bool {
        let Ok(child) = tokio::process::Command::new(&self.binary)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
        else {
            return false;
        };
        self.child = Some(child);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("nats-server did not start");
    }

    async fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("nats-server stops");
        }
    }
}

/// Notices are delivered at least once: a DeleteAttendee sent to one node while NATS is down
/// still kicks the client on the other once NATS is back, over the bus (the presence check,
/// which would also catch it, is an hour away here).
#[tokio::test]
async fn a_delete_attendee_sent_while_nats_restarts_still_kicks_its_client() {
    let Some(mut nats) = OwnNats::start().await else {
        eprintln!(
            "NOTE: CARILLON_TEST_NATS_SERVER is not set, so a NATS restart is not tested here; scripts/test sets it"
        );
        return;
    };
    let subject = format!("carillontest.restart.{}", uuid::Uuid::new_v4().simple());
    let first = TestServer::start_with(|config| {
        config.bus = Some(nats.url());
        config.bus_subject = subject.clone();
        config.presence_check = 3600;
    })
    .await;
    let second = first.second_node().await;
    let second_url = format!("http://{}", second.boot.addr);
    let m = meeting(&first).await;
    let other = if m.signaling_url.starts_with(&second_url) {
        first.client()
    } else {
        common::sdk_client(&second_url, "us-east-1")
    };
    let (jose_id, jose_token) = attendee(&first, &m, "José").await;
    let mut jose = SignalClient::connect(&m.signaling_url, &jose_token).await;
    jose.join().await;

    nats.down().await;
    other
        .delete_attendee()
        .meeting_id(&m.id)
        .attendee_id(&jose_id)
        .send()
        .await
        .expect("DeleteAttendee while NATS is down");
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert!(nats.up().await, "nats-server starts again");
    let back = std::time::Instant::now();
    // Read in short waits: a quiet socket is not a failure here, only no kick within 30 s is.
    let deadline = back + std::time::Duration::from_secs(30);
    let kicked = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "kicked within 30 s of NATS coming back"
        );
        let wait = std::time::Duration::from_millis(250);
        if let Ok(frame) = tokio::time::timeout(wait, jose.frame()).await
            && frame.r#type == Type::AudioStatus as i32
        {
            break frame.audio_status.and_then(|s| s.audio_status);
        }
    };
    assert_eq!(kicked, Some(411), "AudioAttendeeRemoved");
    println!("kicked {:?} after NATS was back", back.elapsed());
}
