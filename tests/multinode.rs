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
