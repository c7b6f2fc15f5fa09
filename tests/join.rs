//! The join plane, driven by a native Rust signaling client: handshake, refused tokens and
//! their close codes, ping, roster deltas, kick on DeleteAttendee, meeting end, second device.

mod common;

use std::time::Duration;

use carillon::join::frames::proto::sdk_signal_frame::Type;
use carillon::join::frames::proto::*;
use carillon::join::frames::{self, audio_status, close_code};
use common::TestServer;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[derive(Debug)]
enum Received {
    Frame(Box<SdkSignalFrame>),
    Closed(u16, String),
}

struct SignalClient {
    socket: Socket,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

fn client_frame(kind: Type) -> SdkSignalFrame {
    SdkSignalFrame {
        timestamp_ms: now_ms(),
        r#type: kind as i32,
        ..Default::default()
    }
}

impl SignalClient {
    /// Opens the WebSocket the way amazon-chime-sdk-js does: the SignalingUrl plus its query
    /// string, with `_aws_wt_session` and the JoinToken as subprotocols.
    async fn connect(signaling_url: &str, token: &str) -> SignalClient {
        let url = format!(
            "{signaling_url}?X-Chime-Control-Protocol-Version=3&X-Amzn-Chime-Send-Close-On-Error=1"
        );
        let mut request = url.into_client_request().expect("request");
        request.headers_mut().insert(
            "sec-websocket-protocol",
            format!("_aws_wt_session, {token}").parse().expect("header"),
        );
        let (socket, response) = tokio_tungstenite::connect_async(request).await.expect("upgrade");
        assert_eq!(
            response.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()),
            Some("_aws_wt_session"),
            "the server echoes the session subprotocol"
        );
        SignalClient { socket }
    }

    async fn send(&mut self, frame: SdkSignalFrame) {
        self.socket
            .send(Message::Binary(frames::encode(&frame).into()))
            .await
            .expect("send");
    }

    async fn recv(&mut self) -> Received {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(5), self.socket.next())
                .await
                .expect("a frame within 5 s");
            match message {
                Some(Ok(Message::Binary(bytes))) => {
                    assert_eq!(bytes[0], frames::FRAME_TYPE_RTC);
                    return Received::Frame(Box::new(frames::decode(&bytes).expect("decodes")));
                }
                Some(Ok(Message::Close(frame))) => {
                    return match frame {
                        Some(f) => Received::Closed(f.code.into(), f.reason.to_string()),
                        None => Received::Closed(1005, String::new()),
                    };
                }
                Some(Ok(_)) => continue,
                None | Some(Err(_)) => return Received::Closed(1006, String::new()),
            }
        }
    }

    async fn frame(&mut self) -> SdkSignalFrame {
        match self.recv().await {
            Received::Frame(frame) => *frame,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// The next frame of this type, skipping others (the roster may interleave).
    async fn expect(&mut self, kind: Type) -> SdkSignalFrame {
        loop {
            let frame = self.frame().await;
            if frame.r#type == kind as i32 {
                return frame;
            }
        }
    }

    async fn join(&mut self) -> (SdkSignalFrame, SdkSignalFrame) {
        self.send(SdkSignalFrame {
            join: Some(SdkJoinFrame {
                protocol_version: Some(2),
                ..Default::default()
            }),
            ..client_frame(Type::Join)
        })
        .await;
        let ack = self.frame().await;
        assert_eq!(ack.r#type, Type::JoinAck as i32);
        let index = self.frame().await;
        assert_eq!(index.r#type, Type::Index as i32, "INDEX follows JOIN_ACK");
        (ack, index)
    }

    /// Sends SUBSCRIBE with an audio offer and the audio check-in, returns the SDP answer.
    async fn subscribe(&mut self) -> String {
        let mut rtc = str0m::Rtc::builder().build(std::time::Instant::now());
        let mut api = rtc.sdp_api();
        api.add_media(str0m::media::MediaKind::Audio, str0m::media::Direction::SendRecv, None, None, None);
        let (offer, _pending) = api.apply().expect("an offer");
        self.send(SdkSignalFrame {
            sub: Some(SdkSubscribeFrame {
                duplex: Some(SdkStreamServiceType::Duplex as i32),
                sdp_offer: Some(offer.to_sdp_string()),
                audio_host: Some("127.0.0.1:3478".into()),
                audio_checkin: Some(false),
                ..Default::default()
            }),
            ..client_frame(Type::Subscribe)
        })
        .await;
        let ack = self.expect(Type::SubscribeAck).await;
        let suback = ack.suback.expect("suback");
        assert_eq!(suback.duplex, Some(SdkStreamServiceType::Duplex as i32));
        suback.sdp_answer.expect("an SDP answer")
    }

    async fn roster(&mut self) -> Vec<SdkAudioStreamIdInfo> {
        self.expect(Type::AudioStreamIdInfo)
            .await
            .audio_stream_id_info
            .expect("stream info")
            .streams
    }

    async fn closed(&mut self) -> (u16, String) {
        loop {
            if let Received::Closed(code, reason) = self.recv().await {
                return (code, reason);
            }
        }
    }
}

struct Meeting {
    id: String,
    signaling_url: String,
}

async fn meeting(server: &TestServer) -> Meeting {
    let meeting = server
        .client()
        .create_meeting()
        .media_region("us-east-1")
        .external_meeting_id("join-test")
        .send()
        .await
        .expect("CreateMeeting")
        .meeting
        .expect("meeting");
    Meeting {
        id: meeting.meeting_id.clone().expect("id"),
        signaling_url: meeting
            .media_placement()
            .and_then(|p| p.signaling_url())
            .expect("SignalingUrl")
            .to_string(),
    }
}

async fn attendee(server: &TestServer, meeting: &Meeting, user: &str) -> (String, String) {
    let attendee = server
        .client()
        .create_attendee()
        .meeting_id(&meeting.id)
        .external_user_id(user)
        .send()
        .await
        .expect("CreateAttendee")
        .attendee
        .expect("attendee");
    (attendee.attendee_id.expect("id"), attendee.join_token.expect("token"))
}

#[tokio::test]
async fn a_join_token_admits_its_attendee() {
    let server = TestServer::start().await;
    let m = meeting(&server).await;
    let (_, token) = attendee(&server, &m, "alice").await;
    let mut alice = SignalClient::connect(&m.signaling_url, &token).await;
    let (ack, index) = alice.join().await;
    assert!(ack.joinack.is_some());
    assert!(ack.timestamp_ms > 1_600_000_000_000, "wall-clock milliseconds");
    let index = index.index.expect("index");
    assert_eq!(index.at_capacity, Some(false));
    assert_eq!(index.num_participants, Some(1));

    let answer = alice.subscribe().await;
    assert!(answer.contains("a=ice-lite"), "{answer}");
    assert!(answer.contains("a=fingerprint:sha-256"), "{answer}");
    assert!(answer.contains(&format!("{}", server.running.as_ref().expect("running").boot.media_addr.port())));
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
    assert_eq!((pong.r#type, pong.ping_id), (SdkPingPongType::Pong as i32, 77));

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
    assert_eq!(garbage.closed().await, (close_code::ATTENDEE_UNAVAILABLE, "attendee unavailable".into()));

    let other = meeting(&server).await;
    let mut wrong_meeting = SignalClient::connect(&other.signaling_url, &bob_token).await;
    wrong_meeting.send(client_frame(Type::Join)).await;
    assert_eq!(wrong_meeting.closed().await.0, close_code::ATTENDEE_UNAVAILABLE);

    server.client().delete_attendee().meeting_id(&m.id).attendee_id(&bob_id).send().await.expect("delete");
    let mut deleted = SignalClient::connect(&m.signaling_url, &bob_token).await;
    deleted.send(client_frame(Type::Join)).await;
    assert_eq!(deleted.closed().await.0, close_code::ATTENDEE_UNAVAILABLE);

    let (_, carol_token) = attendee(&server, &m, "carol").await;
    server.client().delete_meeting().meeting_id(&m.id).send().await.expect("delete meeting");
    let mut ended = SignalClient::connect(&m.signaling_url, &carol_token).await;
    ended.send(client_frame(Type::Join)).await;
    assert_eq!(ended.closed().await, (close_code::MEETING_ENDED, "meeting ended".into()));
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
    let full: Vec<_> = bob.roster().await.into_iter().filter_map(|s| s.attendee_id).collect();
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
    assert_eq!((mute[0].audio_stream_id, mute[0].muted), (Some(alice_stream), Some(true)));
    assert_eq!(mute[0].attendee_id, None, "a mute update is not a presence change");
    let own = alice.roster().await;
    assert_eq!((own[0].audio_stream_id, own[0].muted), (Some(alice_stream), Some(true)), "alice sees her own mute state");

    bob.send(client_frame(Type::Leave)).await;
    bob.expect(Type::LeaveAck).await;
    let left = alice.roster().await;
    assert_eq!(left[0].audio_stream_id, Some(bob_stream));
    assert_eq!((left[0].attendee_id.as_ref(), left[0].muted), (None, None), "stream id only: departed");

    let store = &server.running.as_ref().expect("running").join.store;
    let (joined, joined_at, left_at) = store.presence(&m.id, &bob_id).await.expect("presence");
    assert_eq!(joined, Some(false));
    assert!(joined_at.is_some() && left_at.is_some());
    assert_eq!(store.presence(&m.id, &alice_id).await.expect("presence").0, Some(true));
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

    server.client().delete_attendee().meeting_id(&m.id).attendee_id(&bob_id).send().await.expect("delete");
    let status = bob.expect(Type::AudioStatus).await.audio_status.and_then(|s| s.audio_status);
    assert_eq!(status, Some(audio_status::ATTENDEE_REMOVED));
    bob.closed().await;
    let gone = alice.roster().await;
    assert_eq!((gone[0].audio_stream_id, gone[0].attendee_id.as_ref()), (bob_stream, None));

    let mut again = SignalClient::connect(&m.signaling_url, &bob_token).await;
    again.send(client_frame(Type::Join)).await;
    assert_eq!(again.closed().await.0, close_code::ATTENDEE_UNAVAILABLE, "the old token is refused");
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
    server.client().delete_meeting().meeting_id(&m.id).send().await.expect("delete meeting");
    for client in [&mut alice, &mut bob] {
        let status = client.expect(Type::AudioStatus).await.audio_status.and_then(|s| s.audio_status);
        assert_eq!(status, Some(audio_status::MEETING_ENDED));
        client.closed().await;
    }
    let mut late = SignalClient::connect(&m.signaling_url, &a).await;
    late.send(client_frame(Type::Join)).await;
    assert_eq!(late.closed().await.0, close_code::MEETING_ENDED);
}

#[tokio::test]
async fn a_second_device_replaces_the_first() {
    let server = TestServer::start().await;
    let m = meeting(&server).await;
    let (_, token) = attendee(&server, &m, "alice").await;
    let mut first = SignalClient::connect(&m.signaling_url, &token).await;
    first.join().await;
    let mut second = SignalClient::connect(&m.signaling_url, &token).await;
    second.join().await;
    let status = first.expect(Type::AudioStatus).await.audio_status.and_then(|s| s.audio_status);
    assert_eq!(status, Some(audio_status::JOINED_FROM_ANOTHER_DEVICE));
    first.closed().await;
    // The second device keeps working.
    second
        .send(SdkSignalFrame {
            ping_pong: Some(SdkPingPongFrame { r#type: SdkPingPongType::Ping as i32, ping_id: 1 }),
            ..client_frame(Type::PingPong)
        })
        .await;
    second.expect(Type::PingPong).await;
}
