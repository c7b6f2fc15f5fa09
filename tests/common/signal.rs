//! A native signaling client that speaks to /control/<MeetingId> the way amazon-chime-sdk-js
//! does, plus helpers to create the meeting and attendees it joins with.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use carillon::join::frames;
use carillon::join::frames::proto::sdk_signal_frame::Type;
use carillon::join::frames::proto::*;
use carillon::join::media::Media;
use carillon::join::{JoinLimits, JoinPlane};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;

use super::TestServer;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[derive(Debug)]
pub enum Received {
    Frame(Box<SdkSignalFrame>),
    Closed(u16, String),
}

pub struct SignalClient {
    socket: Socket,
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

pub fn client_frame(kind: Type) -> SdkSignalFrame {
    SdkSignalFrame {
        timestamp_ms: now_ms(),
        r#type: kind as i32,
        ..Default::default()
    }
}

/// A data message as the SDK's realtimeSendDataMessage sends it.
pub fn data_frame(topic: &str, data: &[u8]) -> SdkSignalFrame {
    SdkSignalFrame {
        data_message: Some(SdkDataMessageFrame {
            messages: vec![SdkDataMessagePayload {
                topic: Some(topic.into()),
                data: Some(data.to_vec()),
                lifetime_ms: Some(0),
                ..Default::default()
            }],
        }),
        ..client_frame(Type::DataMessage)
    }
}

pub fn ping_frame(ping_id: u32) -> SdkSignalFrame {
    SdkSignalFrame {
        ping_pong: Some(SdkPingPongFrame {
            r#type: SdkPingPongType::Ping as i32,
            ping_id,
        }),
        ..client_frame(Type::PingPong)
    }
}

/// The upgrade request amazon-chime-sdk-js makes: the SignalingUrl plus its query string, with
/// `_aws_wt_session` and the JoinToken as subprotocols.
pub fn upgrade_request(signaling_url: &str, token: &str) -> Request {
    let url = format!(
        "{signaling_url}?X-Chime-Control-Protocol-Version=3&X-Amzn-Chime-Send-Close-On-Error=1"
    );
    let mut request = url.into_client_request().expect("request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        format!("_aws_wt_session, {token}").parse().expect("header"),
    );
    request
}

impl SignalClient {
    /// Opens the WebSocket the way amazon-chime-sdk-js does.
    pub async fn connect(signaling_url: &str, token: &str) -> SignalClient {
        let (socket, response) =
            tokio_tungstenite::connect_async(upgrade_request(signaling_url, token))
                .await
                .expect("upgrade");
        Self::upgraded(socket, response)
    }

    /// Like `connect`, with the socket's receive buffer shrunk to `bytes`, so that when this
    /// client stops reading the server backs up after little data rather than megabytes.
    pub async fn connect_with_receive_buffer(
        signaling_url: &str,
        token: &str,
        bytes: u32,
    ) -> SignalClient {
        let request = upgrade_request(signaling_url, token);
        let uri = request.uri();
        let addr: SocketAddr = format!(
            "{}:{}",
            uri.host().expect("host"),
            uri.port_u16().expect("port")
        )
        .parse()
        .expect("an IP address in the SignalingUrl");
        let tcp = tokio::net::TcpSocket::new_v4().expect("socket");
        tcp.set_recv_buffer_size(bytes).expect("receive buffer");
        let stream = tcp.connect(addr).await.expect("connects");
        let (socket, response) =
            tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream))
                .await
                .expect("upgrade");
        Self::upgraded(socket, response)
    }

    fn upgraded(
        socket: Socket,
        response: tokio_tungstenite::tungstenite::handshake::client::Response,
    ) -> SignalClient {
        assert_eq!(
            response
                .headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok()),
            Some("_aws_wt_session"),
            "the server echoes the session subprotocol"
        );
        SignalClient { socket }
    }

    pub async fn send(&mut self, frame: SdkSignalFrame) {
        self.socket
            .send(Message::Binary(frames::encode(&frame).into()))
            .await
            .expect("send");
    }

    /// Sends any WebSocket message, well-formed for the protocol or not.
    /// Sends a frame; false once the server has closed the socket.
    pub async fn try_send(&mut self, frame: SdkSignalFrame) -> bool {
        self.socket
            .send(Message::Binary(frames::encode(&frame).into()))
            .await
            .is_ok()
    }

    pub async fn send_message(&mut self, message: Message) {
        self.socket.send(message).await.expect("send");
    }

    /// Sends a PING and waits for its PONG, skipping other frames: once it is back, the server
    /// has handled everything this client sent before it.
    pub async fn ping(&mut self, ping_id: u32) -> Vec<SdkSignalFrame> {
        self.send(ping_frame(ping_id)).await;
        let mut before = Vec::new();
        loop {
            let frame = self.frame().await;
            if frame.r#type == Type::PingPong as i32
                && frame.ping_pong.as_ref().map(|p| p.ping_id) == Some(ping_id)
            {
                return before;
            }
            before.push(frame);
        }
    }

    /// Sends a frame, then reads (and returns) whatever has already arrived, without waiting:
    /// a client that floods others must keep reading, or it becomes a slow consumer itself.
    pub async fn send_and_drain(&mut self, frame: SdkSignalFrame) -> Vec<SdkSignalFrame> {
        self.send(frame).await;
        let mut arrived = Vec::new();
        while let Ok(Some(Ok(message))) =
            tokio::time::timeout(Duration::ZERO, self.socket.next()).await
        {
            if let Message::Binary(bytes) = message {
                arrived.push(frames::decode(&bytes).expect("decodes"));
            }
        }
        arrived
    }

    pub async fn recv(&mut self) -> Received {
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
                    // tungstenite sends the close reply on the next read, as a browser sends it
                    // at once: without it the server waits for the reply until its timeout.
                    let _ = tokio::time::timeout(Duration::from_secs(1), self.socket.next()).await;
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

    pub async fn frame(&mut self) -> SdkSignalFrame {
        match self.recv().await {
            Received::Frame(frame) => *frame,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// The next frame of this type, skipping others (the roster may interleave).
    pub async fn expect(&mut self, kind: Type) -> SdkSignalFrame {
        loop {
            let frame = self.frame().await;
            if frame.r#type == kind as i32 {
                return frame;
            }
        }
    }

    pub async fn join(&mut self) -> (SdkSignalFrame, SdkSignalFrame) {
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

    /// Sends SUBSCRIBE with an audio-only offer and the audio check-in, returns the SDP answer.
    pub async fn subscribe(&mut self) -> String {
        let mut rtc = str0m::Rtc::builder().build(std::time::Instant::now());
        let mut api = rtc.sdp_api();
        api.add_media(
            str0m::media::MediaKind::Audio,
            str0m::media::Direction::SendRecv,
            None,
            None,
            None,
        );
        let (offer, _pending) = api.apply().expect("an offer");
        self.subscribe_with(offer.to_sdp_string()).await
    }

    /// Sends SUBSCRIBE with this SDP offer and the audio check-in, returns the SDP answer.
    pub async fn subscribe_with(&mut self, sdp_offer: String) -> String {
        self.send(SdkSignalFrame {
            sub: Some(SdkSubscribeFrame {
                duplex: Some(SdkStreamServiceType::Duplex as i32),
                sdp_offer: Some(sdp_offer),
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

    /// Sends SUBSCRIBE as amazon-chime-sdk-js does once video is on (media-protocol.md §1.2):
    /// the offer, what this client sends (`send_streams`, audio first) and, per `m=video`
    /// section in SDP order, the stream it wants there (0 for the camera section). DUPLEX when a
    /// video descriptor is among `send_streams`, RX otherwise. Returns the SUBSCRIBE_ACK and the
    /// frames that arrived before it (an INDEX may be among them).
    pub async fn subscribe_video(
        &mut self,
        sdp_offer: String,
        send_streams: Vec<SdkStreamDescriptor>,
        receive_stream_ids: Vec<u32>,
    ) -> (SdkSubscribeAckFrame, Vec<SdkSignalFrame>) {
        let camera = send_streams
            .iter()
            .any(|d| d.media_type == Some(SdkStreamMediaType::Video as i32));
        let duplex = if camera {
            SdkStreamServiceType::Duplex
        } else {
            SdkStreamServiceType::Rx
        };
        self.send(SdkSignalFrame {
            sub: Some(SdkSubscribeFrame {
                duplex: Some(duplex as i32),
                send_streams,
                receive_stream_ids,
                sdp_offer: Some(sdp_offer),
                audio_host: Some("127.0.0.1:3478".into()),
                audio_checkin: Some(false),
                ..Default::default()
            }),
            ..client_frame(Type::Subscribe)
        })
        .await;
        let mut before = Vec::new();
        loop {
            let frame = self.frame().await;
            if frame.r#type == Type::SubscribeAck as i32 {
                let ack = frame.suback.expect("SUBSCRIBE_ACK carries a suback");
                assert_eq!(ack.duplex, Some(duplex as i32), "the ack echoes duplex");
                return (ack, before);
            }
            before.push(frame);
        }
    }

    /// The next INDEX, skipping other frames.
    pub async fn index(&mut self) -> SdkIndexFrame {
        self.expect(Type::Index)
            .await
            .index
            .expect("INDEX carries an index")
    }

    pub async fn roster(&mut self) -> Vec<SdkAudioStreamIdInfo> {
        self.expect(Type::AudioStreamIdInfo)
            .await
            .audio_stream_id_info
            .expect("stream info")
            .streams
    }

    pub async fn closed(&mut self) -> (u16, String) {
        loop {
            if let Received::Closed(code, reason) = self.recv().await {
                return (code, reason);
            }
        }
    }
}

/// The audio descriptor the SDK puts first in `send_streams` (its local constants).
pub fn audio_descriptor() -> SdkStreamDescriptor {
    SdkStreamDescriptor {
        stream_id: Some(1),
        group_id: Some(1),
        track_label: Some("AmazonChimeExpressAudio".into()),
        media_type: Some(SdkStreamMediaType::Audio as i32),
        ..Default::default()
    }
}

/// The camera descriptor the SDK sends without simulcast (its local constants, not the ids the
/// server allocates).
pub fn camera_descriptor(max_bitrate_kbps: u32, framerate: u32) -> SdkStreamDescriptor {
    SdkStreamDescriptor {
        stream_id: Some(2),
        group_id: Some(2),
        track_label: Some("AmazonChimeExpressVideo".into()),
        media_type: Some(SdkStreamMediaType::Video as i32),
        max_bitrate_kbps: Some(max_bitrate_kbps),
        framerate: Some(framerate),
        ..Default::default()
    }
}

#[derive(Debug, Clone)]
pub struct Meeting {
    pub id: String,
    pub signaling_url: String,
}

pub async fn meeting(server: &TestServer) -> Meeting {
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

pub async fn attendee(server: &TestServer, meeting: &Meeting, user: &str) -> (String, String) {
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
    (
        attendee.attendee_id.expect("id"),
        attendee.join_token.expect("token"),
    )
}

/// A second join plane with its own limits, sharing the test server's store (meetings and
/// attendees come from the API as usual), served on a port of its own. `server::start` builds
/// its plane with the default limits; this is how tests get small ones without changing it.
pub struct LimitedPlane {
    pub plane: Arc<JoinPlane>,
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl LimitedPlane {
    pub async fn start(server: &TestServer, limits: JoinLimits) -> LimitedPlane {
        let running = server.running.as_ref().expect("running");
        let media = Media::start(&carillon::media::MediaAddresses::bound(
            "127.0.0.1:0".parse().expect("address"),
        ))
        .await
        .expect("media socket");
        let plane = Arc::new(
            JoinPlane::new(
                running.join.store.clone(),
                media,
                running.join.clock.clone(),
            )
            .with_limits(limits),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listener");
        let addr = listener.local_addr().expect("address");
        let router = plane.clone().router();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        LimitedPlane { plane, addr, task }
    }

    pub fn signaling_url(&self, meeting: &Meeting) -> String {
        format!("ws://{}/control/{}", self.addr, meeting.id)
    }
}

impl Drop for LimitedPlane {
    fn drop(&mut self) {
        self.task.abort();
    }
}
