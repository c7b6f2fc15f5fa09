//! The join plane, driven by a native Rust signaling client: handshake, refused tokens and
//! their close codes, ping, roster deltas, kick on DeleteAttendee, meeting end, second device.

mod common;

use carillon::join::frames::proto::sdk_signal_frame::Type;
use carillon::join::frames::proto::*;
use carillon::join::frames::{audio_status, close_code};
use common::TestServer;
use common::signal::{SignalClient, attendee, client_frame, meeting};

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
async fn client_events_are_accepted_with_a_live_join_token() {
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
    assert_eq!(accepted.status, 204);
    assert_eq!(accepted.header("access-control-allow-origin"), Some("*"));
    let preflight = raw
        .send(
            "OPTIONS",
            "/v1/client-events",
            b"",
            common::Signing::Unsigned,
        )
        .await;
    assert_eq!(preflight.status, 204);
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
async fn stopping_the_server_closes_sessions_with_a_retryable_code() {
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
