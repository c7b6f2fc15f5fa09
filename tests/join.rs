//! The join plane, driven by a native Rust signaling client: handshake, refused tokens and
//! their close codes, ping, roster deltas, kick on DeleteAttendee, meeting end, second device;
//! and what a hostile client meets: size limits, the JOIN deadline, protocol errors, data
//! message rules, slow consumers and the caps on sockets and sessions.

mod common;

use carillon::join::frames::proto::sdk_signal_frame::Type;
use carillon::join::frames::proto::*;
use std::time::{Duration, Instant};

use carillon::join::JoinLimits;
use carillon::join::frames::{audio_status, close_code};
use common::TestServer;
use common::signal::{
    LimitedPlane, SignalClient, attendee, client_frame, data_frame, meeting, ping_frame,
};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

#[tokio::test]
async fn a_join_token_admits_its_attendee() {
    let server = TestServer::start().await;
    let m = meeting(&server).await;
    let (_, token) = attendee(&server, &m, "alice").await;
    let mut alice = SignalClient::connect(&m.signaling_url, &token).await;
    let (ack, index) = alice.join().await;
    assert!(ack.joinack.is_some());
    assert!(
        ack.timestamp_ms > 1_600_000_000_000,
        "wall-clock milliseconds"
    );
    let index = index.index.expect("index");
    assert_eq!(index.at_capacity, Some(false));
    assert_eq!(index.num_participants, Some(1));

    let answer = alice.subscribe().await;
    assert!(answer.contains("a=ice-lite"), "{answer}");
    assert!(answer.contains("a=fingerprint:sha-256"), "{answer}");
    assert!(answer.contains(
        &format!("{}", server.running.as_ref().expect("running").boot.media_addr.port())
    ));
    let roster = alice.roster().await;
    assert_eq!(roster.len(), 1);
    assert_eq!(roster[0].external_user_id.as_deref(), Some("alice"));

    // PING → PONG with the same id; metrics are ignored without closing.
    alice.send(client_frame(Type::ClientMetric)).await;
    alice
        .send(SdkSignalFrame {
            ping_pong: Some(SdkPingPongFrame {
                r#type: SdkPingPongType::Ping as i32,
                ping_id: 77,
            }),
            ..client_frame(Type::PingPong)
        })
        .await;
    let pong = alice.expect(Type::PingPong).await.ping_pong.expect("pong");
    assert_eq!(
        (pong.r#type, pong.ping_id),
        (SdkPingPongType::Pong as i32, 77)
    );

    alice.send(client_frame(Type::Leave)).await;
    alice.expect(Type::LeaveAck).await;
}

#[tokio::test]
async fn refused_tokens_close_with_the_codes_the_client_knows() {
    let server = TestServer::start().await;
    let m = meeting(&server).await;
    let (bob_id, bob_token) = attendee(&server, &m, "bob").await;

    let mut garbage = SignalClient::connect(&m.signaling_url, "not-a-token").await;
    garbage.send(client_frame(Type::Join)).await;
    assert_eq!(
        garbage.closed().await,
        (
            close_code::ATTENDEE_UNAVAILABLE,
            "attendee unavailable".into()
        )
    );

    let other = meeting(&server).await;
    let mut wrong_meeting = SignalClient::connect(&other.signaling_url, &bob_token).await;
    wrong_meeting.send(client_frame(Type::Join)).await;
    assert_eq!(
        wrong_meeting.closed().await.0,
        close_code::ATTENDEE_UNAVAILABLE
    );

    server
        .client()
        .delete_attendee()
        .meeting_id(&m.id)
        .attendee_id(&bob_id)
        .send()
        .await
        .expect("delete");
    let mut deleted = SignalClient::connect(&m.signaling_url, &bob_token).await;
    deleted.send(client_frame(Type::Join)).await;
    assert_eq!(deleted.closed().await.0, close_code::ATTENDEE_UNAVAILABLE);

    let (_, carol_token) = attendee(&server, &m, "carol").await;
    server
        .client()
        .delete_meeting()
        .meeting_id(&m.id)
        .send()
        .await
        .expect("delete meeting");
    let mut ended = SignalClient::connect(&m.signaling_url, &carol_token).await;
    ended.send(client_frame(Type::Join)).await;
    assert_eq!(
        ended.closed().await,
        (close_code::MEETING_ENDED, "meeting ended".into())
    );
}

#[tokio::test]
async fn roster_deltas_mute_and_leave() {
    let server = TestServer::start().await;
    let m = meeting(&server).await;
    let (alice_id, alice_token) = attendee(&server, &m, "alice").await;
    let (bob_id, bob_token) = attendee(&server, &m, "bob").await;

    let mut alice = SignalClient::connect(&m.signaling_url, &alice_token).await;
    alice.join().await;
    alice.subscribe().await;
    let roster = alice.roster().await;
    let alice_stream = roster[0].audio_stream_id.expect("stream id");

    let mut bob = SignalClient::connect(&m.signaling_url, &bob_token).await;
    let (_, index) = bob.join().await;
    assert_eq!(index.index.and_then(|i| i.num_participants), Some(2));
    bob.subscribe().await;
    let full: Vec<_> = bob
        .roster()
        .await
        .into_iter()
        .filter_map(|s| s.attendee_id)
        .collect();
    assert_eq!(full.len(), 2, "the newcomer gets the whole roster");
    assert!(full.contains(&alice_id) && full.contains(&bob_id));
    let delta = alice.roster().await;
    assert_eq!(delta.len(), 1, "the others get the delta");
    assert_eq!(delta[0].attendee_id.as_deref(), Some(bob_id.as_str()));
    let bob_stream = delta[0].audio_stream_id.expect("stream id");

    alice
        .send(SdkSignalFrame {
            audio_control: Some(SdkAudioControlFrame { muted: Some(true) }),
            ..client_frame(Type::AudioControl)
        })
        .await;
    let mute = bob.roster().await;
    assert_eq!(
        (mute[0].audio_stream_id, mute[0].muted),
        (Some(alice_stream), Some(true))
    );
    assert_eq!(
        mute[0].attendee_id, None,
        "a mute update is not a presence change"
    );
    let own = alice.roster().await;
    assert_eq!(
        (own[0].audio_stream_id, own[0].muted),
        (Some(alice_stream), Some(true)),
        "alice sees her own mute state"
    );

    bob.send(client_frame(Type::Leave)).await;
    bob.expect(Type::LeaveAck).await;
    let left = alice.roster().await;
    assert_eq!(left[0].audio_stream_id, Some(bob_stream));
    assert_eq!(
        (left[0].attendee_id.as_ref(), left[0].muted),
        (None, None),
        "stream id only: departed"
    );

    let store = &server.running.as_ref().expect("running").join.store;
    let (joined, joined_at, left_at) = store.presence(&m.id, &bob_id).await.expect("presence");
    assert_eq!(joined, Some(false));
    assert!(joined_at.is_some() && left_at.is_some());
    assert_eq!(
        store.presence(&m.id, &alice_id).await.expect("presence").0,
        Some(true)
    );
}

#[tokio::test]
async fn delete_attendee_removes_a_connected_client() {
    let server = TestServer::start().await;
    let m = meeting(&server).await;
    let (_, alice_token) = attendee(&server, &m, "alice").await;
    let (bob_id, bob_token) = attendee(&server, &m, "bob").await;
    let mut alice = SignalClient::connect(&m.signaling_url, &alice_token).await;
    alice.join().await;
    alice.subscribe().await;
    alice.roster().await;
    let mut bob = SignalClient::connect(&m.signaling_url, &bob_token).await;
    bob.join().await;
    bob.subscribe().await;
    let bob_stream = alice.roster().await[0].audio_stream_id;

    server
        .client()
        .delete_attendee()
        .meeting_id(&m.id)
        .attendee_id(&bob_id)
        .send()
        .await
        .expect("delete");
    let status = bob
        .expect(Type::AudioStatus)
        .await
        .audio_status
        .and_then(|s| s.audio_status);
    assert_eq!(status, Some(audio_status::ATTENDEE_REMOVED));
    bob.closed().await;
    let gone = alice.roster().await;
    assert_eq!(
        (gone[0].audio_stream_id, gone[0].attendee_id.as_ref()),
        (bob_stream, None)
    );

    let mut again = SignalClient::connect(&m.signaling_url, &bob_token).await;
    again.send(client_frame(Type::Join)).await;
    assert_eq!(
        again.closed().await.0,
        close_code::ATTENDEE_UNAVAILABLE,
        "the old token is refused"
    );
}

#[tokio::test]
async fn delete_meeting_ends_every_session() {
    let server = TestServer::start().await;
    let m = meeting(&server).await;
    let (_, a) = attendee(&server, &m, "alice").await;
    let (_, b) = attendee(&server, &m, "bob").await;
    let mut alice = SignalClient::connect(&m.signaling_url, &a).await;
    alice.join().await;
    let mut bob = SignalClient::connect(&m.signaling_url, &b).await;
    bob.join().await;
    server
        .client()
        .delete_meeting()
        .meeting_id(&m.id)
        .send()
        .await
        .expect("delete meeting");
    for client in [&mut alice, &mut bob] {
        let status = client
            .expect(Type::AudioStatus)
            .await
            .audio_status
            .and_then(|s| s.audio_status);
        assert_eq!(status, Some(audio_status::MEETING_ENDED));
        client.closed().await;
    }
    let mut late = SignalClient::connect(&m.signaling_url, &a).await;
    late.send(client_frame(Type::Join)).await;
    assert_eq!(late.closed().await.0, close_code::MEETING_ENDED);
    assert_released(&server).await;
}

/// Sessions and their peer connections are released once their sockets end.
async fn assert_released(server: &TestServer) {
    let join = &server.running.as_ref().expect("running").join;
    for _ in 0..100 {
        if join.rooms.session_count() == 0 && join.media.peer_count().await == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!(
        "{} sessions and {} peers still held",
        join.rooms.session_count(),
        join.media.peer_count().await
    );
}

#[tokio::test]
async fn a_second_device_replaces_the_first() {
    let server = TestServer::start().await;
    let m = meeting(&server).await;
    let (attendee_id, token) = attendee(&server, &m, "alice").await;
    let mut first = SignalClient::connect(&m.signaling_url, &token).await;
    first.join().await;
    let mut second = SignalClient::connect(&m.signaling_url, &token).await;
    second.join().await;
    let status = first
        .expect(Type::AudioStatus)
        .await
        .audio_status
        .and_then(|s| s.audio_status);
    assert_eq!(status, Some(audio_status::JOINED_FROM_ANOTHER_DEVICE));
    first.closed().await;
    // The first device's departure does not mark the attendee as gone: it is still there.
    let join = &server.running.as_ref().expect("running").join;
    for _ in 0..100 {
        if join.rooms.session_count() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        join.rooms.session_count(),
        1,
        "the first device's session is released"
    );
    let store = &join.store;
    assert_eq!(
        store
            .presence(&m.id, &attendee_id)
            .await
            .expect("presence")
            .0,
        Some(true)
    );
    // The second device keeps working.
    second
        .send(SdkSignalFrame {
            ping_pong: Some(SdkPingPongFrame {
                r#type: SdkPingPongType::Ping as i32,
                ping_id: 1,
            }),
            ..client_frame(Type::PingPong)
        })
        .await;
    second.expect(Type::PingPong).await;
}

#[tokio::test]
async fn client_events_are_accepted_with_a_live_join_token_and_answered_with_json() {
    let server = TestServer::start().await;
    let m = meeting(&server).await;
    let (attendee_id, token) = attendee(&server, &m, "alice").await;
    let raw = server.raw();
    let bearer = format!("Bearer {token}");
    let post = |auth: String| {
        let raw = common::Raw { addr: raw.addr };
        async move {
            raw.send_with(
                "POST",
                "/v1/client-events",
                b"{}",
                common::Signing::Unsigned,
                &[("authorization", auth.as_str())],
            )
            .await
        }
    };
    let accepted = post(bearer.clone()).await;
    assert_eq!(accepted.status, 200);
    assert_eq!(accepted.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        accepted.header("cross-origin-resource-policy"),
        Some("cross-origin")
    );
    assert_eq!(accepted.header("content-type"), Some("application/json"));
    // The SDK runs `response.json()` on every OK answer.
    let parsed: serde_json::Value = serde_json::from_str(&accepted.body).expect("a JSON body");
    assert!(parsed.is_object(), "{parsed}");

    // sendBeacon cannot set headers: the token comes in the body, to `?beacon=1`.
    let beacon = |token: &str| {
        let raw = common::Raw { addr: raw.addr };
        let body = serde_json::json!({
            "metadata": { "attendeeName": "Zoë" },
            "events": [],
            "authorization": token,
        })
        .to_string();
        async move {
            raw.send_with(
                "POST",
                "/v1/client-events?beacon=1",
                body.as_bytes(),
                common::Signing::Unsigned,
                &[("content-type", "text/plain;charset=UTF-8")],
            )
            .await
        }
    };
    let beaconed = beacon(&token).await;
    assert_eq!(beaconed.status, 200, "{}", beaconed.body);
    assert_eq!(
        beaconed.header("cross-origin-resource-policy"),
        Some("cross-origin")
    );
    assert_eq!(beacon("forged").await.status, 403);
    // The body limit holds here as everywhere.
    let huge = vec![b' '; 300 * 1024];
    let too_big = raw
        .send_with(
            "POST",
            "/v1/client-events",
            &huge,
            common::Signing::Unsigned,
            &[("authorization", bearer.as_str())],
        )
        .await;
    assert!(too_big.status >= 400, "{}", too_big.status);
    let preflight = raw
        .send(
            "OPTIONS",
            "/v1/client-events",
            b"",
            common::Signing::Unsigned,
        )
        .await;
    assert_eq!(preflight.status, 204);
    assert!(
        preflight
            .header("access-control-allow-headers")
            .is_some_and(|h| h.contains("authorization"))
    );
    assert_eq!(
        preflight.header("cross-origin-resource-policy"),
        Some("cross-origin")
    );
    assert_eq!(post("Bearer forged".into()).await.status, 403);
    server
        .client()
        .delete_attendee()
        .meeting_id(&m.id)
        .attendee_id(&attendee_id)
        .send()
        .await
        .expect("delete");
    assert_eq!(
        post(bearer).await.status,
        403,
        "a deleted attendee's token no longer posts events"
    );
}

#[tokio::test]
async fn stopping_the_server_ends_its_sessions_cleanly_by_default() {
    let mut server = TestServer::start().await;
    let m = meeting(&server).await;
    let (_, token) = attendee(&server, &m, "alice").await;
    let mut alice = SignalClient::connect(&m.signaling_url, &token).await;
    alice.join().await;
    let running = server.running.take().expect("running");
    running
        .stop()
        .await
        .expect("stops without waiting on the open socket");
    // The SDK stops with MeetingEnded: no reconnect attempts, no signaling error.
    let status = alice.expect(Type::AudioStatus).await.audio_status;
    assert_eq!(
        status.and_then(|s| s.audio_status),
        Some(audio_status::MEETING_ENDED)
    );
    assert_eq!(alice.closed().await.0, close_code::MEETING_ENDED);
}

#[tokio::test]
async fn with_on_shutdown_reconnect_sessions_are_closed_with_a_retryable_code() {
    let mut server = TestServer::start_with(|config| {
        config.on_shutdown = carillon::config::ShutdownMode::Reconnect;
    })
    .await;
    let m = meeting(&server).await;
    let (_, token) = attendee(&server, &m, "alice").await;
    let mut alice = SignalClient::connect(&m.signaling_url, &token).await;
    alice.join().await;
    let running = server.running.take().expect("running");
    running
        .stop()
        .await
        .expect("stops without waiting on the open socket");
    assert_eq!(alice.closed().await.0, close_code::SERVER_GOING_AWAY);
}

#[tokio::test]
async fn data_messages_reach_the_others_stamped_with_their_sender() {
    let server = TestServer::start().await;
    let m = meeting(&server).await;
    let (alice_id, a) = attendee(&server, &m, "alice").await;
    let (_, b) = attendee(&server, &m, "bob").await;
    let mut alice = SignalClient::connect(&m.signaling_url, &a).await;
    alice.join().await;
    let mut bob = SignalClient::connect(&m.signaling_url, &b).await;
    bob.join().await;
    alice
        .send(SdkSignalFrame {
            data_message: Some(SdkDataMessageFrame {
                messages: vec![SdkDataMessagePayload {
                    topic: Some("chat".into()),
                    data: Some(b"hello".to_vec()),
                    lifetime_ms: Some(0),
                    ..Default::default()
                }],
            }),
            ..client_frame(Type::DataMessage)
        })
        .await;
    let received = bob
        .expect(Type::DataMessage)
        .await
        .data_message
        .expect("data");
    let message = &received.messages[0];
    assert_eq!(message.topic.as_deref(), Some("chat"));
    assert_eq!(message.data.as_deref(), Some(&b"hello"[..]));
    assert_eq!(
        message.sender_attendee_id.as_deref(),
        Some(alice_id.as_str())
    );
    assert_eq!(message.sender_external_user_id.as_deref(), Some("alice"));
    assert!(
        message.ingest_time_ns.unwrap_or_default() > 0,
        "not throttled"
    );
}

/// The data messages in a frame, or none for other frames.
fn data_messages(frame: &SdkSignalFrame) -> Vec<SdkDataMessagePayload> {
    frame
        .data_message
        .as_ref()
        .map(|d| d.messages.clone())
        .unwrap_or_default()
}

/// The next data message the client receives.
async fn next_data_message(client: &mut SignalClient) -> SdkDataMessagePayload {
    let frame = client.expect(Type::DataMessage).await;
    data_messages(&frame).into_iter().next().expect("a message")
}

#[tokio::test]
async fn a_socket_that_pings_but_never_joins_is_closed_at_the_join_deadline() {
    let server = TestServer::start().await;
    let limited = LimitedPlane::start(
        &server,
        JoinLimits {
            join_timeout: Duration::from_secs(1),
            ..JoinLimits::default()
        },
    )
    .await;
    let m = meeting(&server).await;
    let (_, token) = attendee(&server, &m, "José").await;
    let mut client = SignalClient::connect(&limited.signaling_url(&m), &token).await;
    let start = Instant::now();
    let mut pongs = 0;
    let closed = loop {
        client.send(ping_frame(pongs)).await;
        match client.recv().await {
            common::signal::Received::Frame(frame) => {
                assert_eq!(frame.r#type, Type::PingPong as i32);
                pongs += 1;
            }
            common::signal::Received::Closed(code, reason) => break (code, reason),
        }
        assert!(start.elapsed() < Duration::from_secs(5), "still open");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(closed, (1000, "no JOIN in time".to_string()));
    assert!(pongs >= 3, "pings were answered meanwhile ({pongs})");
    assert!(start.elapsed() >= Duration::from_millis(900));
    for _ in 0..100 {
        if limited.plane.unjoined_count() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the socket still counts as waiting to join");
}

#[tokio::test]
async fn an_oversized_message_before_join_closes_with_1009() {
    let server = TestServer::start().await;
    let m = meeting(&server).await;
    let mut client = SignalClient::connect(&m.signaling_url, "not-a-token").await;
    // 5 KB: under the 64 KiB cap of any message, over the 4 KiB allowed before JOIN.
    client
        .send_message(Message::Binary(vec![0x05; 5 * 1024].into()))
        .await;
    assert_eq!(
        client.closed().await,
        (
            close_code::MESSAGE_TOO_BIG,
            "message too big before JOIN".into()
        )
    );
}

#[tokio::test]
async fn an_oversized_fragmented_message_is_refused_with_a_close_frame() {
    let server = TestServer::start().await;
    let m = meeting(&server).await;
    let mut client = SignalClient::connect(&m.signaling_url, "not-a-token").await;
    // Five unfinished 16 KiB fragments: each frame is small, but the message passes 64 KiB on
    // the fifth, which the server refuses without waiting for (or buffering) the rest.
    let fragment = vec![0u8; 16 * 1024];
    client
        .send_message(Message::Frame(Frame::message(
            fragment.clone(),
            OpCode::Data(Data::Binary),
            false,
        )))
        .await;
    for _ in 0..4 {
        client
            .send_message(Message::Frame(Frame::message(
                fragment.clone(),
                OpCode::Data(Data::Continue),
                false,
            )))
            .await;
    }
    assert_eq!(
        client.closed().await,
        (close_code::MESSAGE_TOO_BIG, "message too big".into())
    );
}

#[tokio::test]
async fn an_undecodable_binary_frame_closes_with_1007() {
    let server = TestServer::start().await;
    let m = meeting(&server).await;
    let (_, token) = attendee(&server, &m, "Zoë").await;
    let mut client = SignalClient::connect(&m.signaling_url, &token).await;
    client.join().await;
    client
        .send_message(Message::Binary(vec![0x05, 0xff, 0xff].into()))
        .await;
    assert_eq!(
        client.closed().await,
        (
            close_code::INVALID_PAYLOAD,
            "undecodable signaling frame".into()
        )
    );
}

/// Text frames are not part of the protocol: a valid one gets 1003 (unsupported data, the kind
/// of data is wrong), one with invalid UTF-8 gets 1007 (invalid payload), as RFC 6455 has them.
#[tokio::test]
async fn text_frames_close_with_1003_and_invalid_utf8_with_1007() {
    let server = TestServer::start().await;
    let m = meeting(&server).await;
    let (_, token) = attendee(&server, &m, "José").await;
    let mut client = SignalClient::connect(&m.signaling_url, &token).await;
    client.join().await;
    client.send_message(Message::text("¡hola, Zoë!")).await;
    assert_eq!(
        client.closed().await,
        (
            close_code::UNSUPPORTED_DATA,
            "text frames are not part of the protocol".into()
        )
    );

    let mut raw = SignalClient::connect(&m.signaling_url, &token).await;
    raw.send_message(Message::Frame(Frame::message(
        vec![b'J', b'o', b's', 0xc3, 0x28],
        OpCode::Data(Data::Text),
        true,
    )))
    .await;
    assert_eq!(
        raw.closed().await,
        (close_code::INVALID_PAYLOAD, "invalid UTF-8".into())
    );
}

/// Joins José and Zoë to a new meeting.
async fn two_attendees(server: &TestServer) -> (String, SignalClient, SignalClient) {
    let m = meeting(server).await;
    let (jose_id, a) = attendee(server, &m, "José").await;
    let (_, b) = attendee(server, &m, "Zoë").await;
    let mut jose = SignalClient::connect(&m.signaling_url, &a).await;
    jose.join().await;
    let mut zoe = SignalClient::connect(&m.signaling_url, &b).await;
    zoe.join().await;
    (jose_id, jose, zoe)
}

#[tokio::test]
async fn a_3_kb_data_message_comes_back_throttled_and_is_not_relayed() {
    let server = TestServer::start().await;
    let (jose_id, mut jose, mut zoe) = two_attendees(&server).await;
    jose.send(data_frame("chat", &[b'x'; 3 * 1024])).await;
    let back = next_data_message(&mut jose).await;
    assert_eq!(
        back.ingest_time_ns,
        Some(0),
        "the client reports it throttled"
    );
    assert_eq!(back.topic.as_deref(), Some("chat"));
    assert_eq!(back.data.as_ref().map(Vec::len), Some(3 * 1024));
    assert_eq!(back.sender_attendee_id.as_deref(), Some(jose_id.as_str()));
    assert_eq!(back.sender_external_user_id.as_deref(), Some("José"));

    // 2048 bytes is still allowed; Zoë's first data message is that one, not the 3 KB one.
    jose.send(data_frame("chat", &[b'y'; 2048])).await;
    let relayed = next_data_message(&mut zoe).await;
    assert_eq!(relayed.data.as_ref().map(Vec::len), Some(2048));
    assert!(relayed.ingest_time_ns.unwrap_or_default() > 0);
    assert_eq!(relayed.sender_external_user_id.as_deref(), Some("José"));
}

#[tokio::test]
async fn a_topic_of_37_characters_comes_back_throttled_and_is_not_relayed() {
    let server = TestServer::start().await;
    let (_, mut jose, mut zoe) = two_attendees(&server).await;
    let long = "t".repeat(37);
    jose.send(data_frame(&long, b"hi")).await;
    let back = next_data_message(&mut jose).await;
    assert_eq!(
        (back.topic.as_deref(), back.ingest_time_ns),
        (Some(long.as_str()), Some(0))
    );
    // Outside the SDK's [A-Za-z0-9_-] pattern, short as it is.
    jose.send(data_frame("Zoë", b"hi")).await;
    let back = next_data_message(&mut jose).await;
    assert_eq!(
        (back.topic.as_deref(), back.ingest_time_ns),
        (Some("Zoë"), Some(0))
    );

    let longest = "t".repeat(36);
    jose.send(data_frame(&longest, b"hi")).await;
    let relayed = next_data_message(&mut zoe).await;
    assert_eq!(relayed.topic.as_deref(), Some(longest.as_str()));
    assert!(relayed.ingest_time_ns.unwrap_or_default() > 0);
}

#[tokio::test]
async fn a_burst_of_300_data_messages_is_cut_at_the_bucket() {
    let server = TestServer::start().await;
    let (_, mut jose, mut zoe) = two_attendees(&server).await;
    let start = Instant::now();
    let mut throttled = 0;
    for i in 0..300u32 {
        for frame in jose
            .send_and_drain(data_frame("burst", &i.to_be_bytes()))
            .await
        {
            throttled += data_messages(&frame).len();
        }
    }
    // Once the PONG is back, every throttled message has come back before it.
    for frame in jose.ping(1).await {
        let messages = data_messages(&frame);
        assert!(messages.iter().all(|m| m.ingest_time_ns == Some(0)));
        throttled += messages.len();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let relayed = 300 - throttled;
    let refill = (elapsed * 100.0).ceil() as usize;
    assert!(
        (200..=200 + refill).contains(&relayed),
        "{relayed} relayed in {elapsed:.2} s, {throttled} throttled"
    );
    // Within the first second the refill is under 100, so the bound above leaves some throttled.
    for _ in 0..relayed {
        let message = next_data_message(&mut zoe).await;
        assert!(message.ingest_time_ns.unwrap_or_default() > 0);
    }
    // Nothing more is on its way to Zoë: her PONG comes with no data message before it.
    assert!(zoe.ping(2).await.is_empty());
}

#[tokio::test]
async fn a_receiver_that_does_not_read_is_dropped_as_a_slow_consumer() {
    let server = TestServer::start().await;
    // The default rate (100/s) would take tens of seconds to fill the kernel's socket buffers
    // (megabytes on loopback) and then the 512-frame queue; the queue is what is tested here.
    let limited = LimitedPlane::start(
        &server,
        JoinLimits {
            data_messages_per_second: 1_000_000.0,
            data_message_burst: 1_000_000.0,
            send_timeout: Duration::from_secs(30),
            ..JoinLimits::default()
        },
    )
    .await;
    let m = meeting(&server).await;
    let (_, a) = attendee(&server, &m, "José").await;
    let (_, b) = attendee(&server, &m, "Zoë").await;
    let url = limited.signaling_url(&m);
    let mut jose = SignalClient::connect(&url, &a).await;
    jose.join().await;
    let mut zoe = SignalClient::connect_with_receive_buffer(&url, &b, 4096).await;
    zoe.join().await;

    let rooms = &limited.plane.rooms;
    let payload = vec![b'z'; 2000];
    let mut sent = 0;
    while rooms.slow_consumers(&m.id).await == 0 {
        assert!(sent < 20_000, "Zoë was never dropped");
        jose.send(data_frame("flood", &payload)).await;
        sent += 1;
        if sent % 100 == 0 {
            // Let the server catch up with José before looking again.
            jose.ping(sent).await;
        }
    }
    // José keeps working while Zoë is on her way out.
    assert!(jose.ping(0).await.is_empty(), "nothing came back throttled");
    jose.send(data_frame("after", b"still here")).await;

    // Zoë reads again: what was already on the wire, then the close.
    let mut received = 0;
    let closed = loop {
        match zoe.recv().await {
            common::signal::Received::Frame(_) => received += 1,
            common::signal::Received::Closed(code, reason) => break (code, reason),
        }
    };
    assert_eq!(
        closed,
        (close_code::SLOW_CONSUMER, "slow consumer".to_string())
    );
    assert!(
        received < sent,
        "{received} of {sent} reached Zoë before the drop"
    );
    for _ in 0..100 {
        if rooms.session_count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(rooms.session_count(), 1, "Zoë's session is released");
    assert!(jose.ping(1).await.is_empty());
}

#[tokio::test]
async fn a_full_meeting_refuses_the_next_join_with_at_capacity() {
    let server = TestServer::start().await;
    let limited = LimitedPlane::start(
        &server,
        JoinLimits {
            max_sessions_per_meeting: 2,
            ..JoinLimits::default()
        },
    )
    .await;
    let m = meeting(&server).await;
    let url = limited.signaling_url(&m);
    let (_, a) = attendee(&server, &m, "José").await;
    let (_, b) = attendee(&server, &m, "Zoë").await;
    let (_, c) = attendee(&server, &m, "Renée").await;
    let mut jose = SignalClient::connect(&url, &a).await;
    jose.join().await;
    let mut zoe = SignalClient::connect(&url, &b).await;
    zoe.join().await;

    let mut renee = SignalClient::connect(&url, &c).await;
    renee.send(client_frame(Type::Join)).await;
    let status = renee
        .expect(Type::AudioStatus)
        .await
        .audio_status
        .and_then(|s| s.audio_status);
    assert_eq!(status, Some(audio_status::CALL_AT_CAPACITY));
    assert_eq!(
        renee.closed().await,
        (
            close_code::MEETING_AT_CAPACITY,
            "meeting at capacity".into()
        )
    );

    // José on a second device replaces his first session instead of needing a third place.
    let mut jose_again = SignalClient::connect(&url, &a).await;
    let (_, index) = jose_again.join().await;
    assert_eq!(
        index.index.and_then(|i| i.num_participants),
        Some(2),
        "attendees, not sessions: José's two devices count once"
    );
    jose.closed().await;
}

#[tokio::test]
async fn sockets_waiting_to_join_are_capped_with_a_retryable_code() {
    let server = TestServer::start().await;
    let limited = LimitedPlane::start(
        &server,
        JoinLimits {
            max_unjoined_sockets: 1,
            ..JoinLimits::default()
        },
    )
    .await;
    let m = meeting(&server).await;
    let url = limited.signaling_url(&m);
    let (_, a) = attendee(&server, &m, "José").await;
    let (_, b) = attendee(&server, &m, "Zoë").await;
    let mut waiting = SignalClient::connect(&url, &a).await;
    // The PONG shows the first socket's session is running (and holds the one place).
    assert!(waiting.ping(1).await.is_empty());
    let mut refused = SignalClient::connect(&url, &b).await;
    let closed = refused.closed().await;
    assert_eq!(closed, (close_code::SERVER_BUSY, "server busy".into()));
    assert!((4500..4600).contains(&closed.0), "the client retries 45xx");

    // Joining frees the place.
    waiting.join().await;
    let mut zoe = SignalClient::connect(&url, &b).await;
    zoe.join().await;
    assert_eq!(limited.plane.unjoined_count(), 0);
}

#[tokio::test]
async fn a_close_from_the_client_is_answered_with_a_close_frame() {
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    let server = TestServer::start().await;
    let m = meeting(&server).await;
    let (_, token) = attendee(&server, &m, "Zoë").await;
    let mut client = SignalClient::connect(&m.signaling_url, &token).await;
    client.join().await;
    client
        .send_message(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "adiós".into(),
        })))
        .await;
    // Without the server's reply the client would see the TCP end first (1006).
    assert_eq!(client.closed().await, (1000, "adiós".into()));
}

#[tokio::test]
async fn a_websocket_protocol_error_closes_with_1002() {
    let server = TestServer::start().await;
    let m = meeting(&server).await;
    let (_, token) = attendee(&server, &m, "José").await;
    let mut client = SignalClient::connect(&m.signaling_url, &token).await;
    client.join().await;
    // RSV1 set without a negotiated extension: the server must fail the connection, and now
    // says so in a close frame instead of dropping TCP.
    let mut frame = Frame::message(vec![0x05], OpCode::Data(Data::Binary), true);
    frame.header_mut().rsv1 = true;
    client.send_message(Message::Frame(frame)).await;
    assert_eq!(
        client.closed().await,
        (close_code::PROTOCOL_ERROR, "protocol error".into())
    );
}

#[tokio::test]
async fn leave_is_acknowledged_then_closed_with_1000() {
    let server = TestServer::start().await;
    let m = meeting(&server).await;
    let (_, token) = attendee(&server, &m, "José").await;
    let mut client = SignalClient::connect(&m.signaling_url, &token).await;
    client.join().await;
    client.send(client_frame(Type::Leave)).await;
    client.expect(Type::LeaveAck).await;
    // A close frame with 1000 right after LEAVE_ACK, not the end of TCP (which the client
    // reads as 1006 and reports as SignalingChannelClosedUnexpectedly).
    assert_eq!(client.closed().await, (1000, "left".into()));
}

fn data_with_lifetime(topic: &str, data: &str, lifetime_ms: u32) -> SdkDataMessagePayload {
    SdkDataMessagePayload {
        topic: Some(topic.into()),
        data: Some(data.as_bytes().to_vec()),
        lifetime_ms: Some(lifetime_ms),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_late_joiner_gets_the_data_messages_still_alive_and_not_the_expired_ones() {
    let server =
        TestServer::start_with(|config| config.clock = carillon::config::ClockMode::Manual).await;
    let clock = server.running.as_ref().expect("running").join.clock.clone();
    let manual = clock.as_manual().expect("a manual clock");
    let m = meeting(&server).await;
    let (jose_id, a) = attendee(&server, &m, "José").await;
    let (_, b) = attendee(&server, &m, "Zoë").await;
    let (_, c) = attendee(&server, &m, "Renée").await;
    let mut jose = SignalClient::connect(&m.signaling_url, &a).await;
    jose.join().await;
    let mut zoe = SignalClient::connect(&m.signaling_url, &b).await;
    zoe.join().await;

    let sent_at_ns = clock.now_ms() * 1_000_000;
    for message in [
        data_with_lifetime("chat", "¿sigues ahí?", 60_000),
        data_with_lifetime("chat", "gone soon", 1_000),
        data_with_lifetime("chat", "live only", 0),
    ] {
        jose.send(SdkSignalFrame {
            data_message: Some(SdkDataMessageFrame {
                messages: vec![message],
            }),
            ..client_frame(Type::DataMessage)
        })
        .await;
    }
    // Zoë, there when they were sent, gets all three live.
    for _ in 0..3 {
        next_data_message(&mut zoe).await;
    }
    manual.advance_ms(5_000);

    let mut renee = SignalClient::connect(&m.signaling_url, &c).await;
    renee.join().await;
    // Right after JOIN_ACK and INDEX: one DATA_MESSAGE with what is still alive.
    let replay = renee.frame().await;
    assert_eq!(replay.r#type, Type::DataMessage as i32);
    let replayed = data_messages(&replay);
    assert_eq!(replayed.len(), 1, "{replayed:?}");
    let kept = &replayed[0];
    assert_eq!(kept.data.as_deref(), Some("¿sigues ahí?".as_bytes()));
    assert_eq!(kept.sender_attendee_id.as_deref(), Some(jose_id.as_str()));
    assert_eq!(kept.sender_external_user_id.as_deref(), Some("José"));
    assert_eq!(
        kept.ingest_time_ns,
        Some(sent_at_ns),
        "the original ingest time"
    );
    assert_eq!(kept.lifetime_ms, Some(60_000));
    let before_pong = renee.ping(1).await;
    assert!(
        before_pong.iter().all(|f| data_messages(f).is_empty()),
        "nothing else is replayed"
    );

    // Past its lifetime nobody gets it any more.
    manual.advance_ms(60_000);
    renee.send(client_frame(Type::Leave)).await;
    renee.expect(Type::LeaveAck).await;
    let mut again = SignalClient::connect(&m.signaling_url, &c).await;
    again.join().await;
    let after = again.ping(2).await;
    assert!(after.iter().all(|f| data_messages(f).is_empty()));
}

/// After End Meeting the SDK sends its last client-event batch and a beacon with a token that no
/// longer names an attendee: accepted for five minutes after the session ended, refused after.
#[tokio::test]
async fn client_events_are_accepted_for_five_minutes_after_the_session_ended() {
    let server =
        TestServer::start_with(|config| config.clock = carillon::config::ClockMode::Manual).await;
    let m = meeting(&server).await;
    let (_, token) = attendee(&server, &m, "Zoë").await;
    let mut zoe = SignalClient::connect(&m.signaling_url, &token).await;
    zoe.join().await;
    let post = || async {
        server
            .raw()
            .send_with(
                "POST",
                "/v1/client-events",
                br#"{"events":[]}"#,
                common::Signing::Unsigned,
                &[("authorization", format!("Bearer {token}").as_str())],
            )
            .await
            .status
    };
    server
        .client()
        .delete_meeting()
        .meeting_id(&m.id)
        .send()
        .await
        .expect("End Meeting");
    assert_eq!(zoe.closed().await.0, 4410);
    // The farewell is written as the session task ends, just after the close handshake.
    let mut status = 0;
    for _ in 0..50 {
        status = post().await;
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "the last batch after the meeting ended");
    let answer = server
        .raw()
        .post("/_carillon/clock", r#"{"advance_seconds": 299}"#)
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(post().await, 200, "still within five minutes");
    server
        .raw()
        .post("/_carillon/clock", r#"{"advance_seconds": 2}"#)
        .await;
    assert_eq!(post().await, 403, "refused five minutes after");
}
