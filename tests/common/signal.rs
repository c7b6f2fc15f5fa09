//! A native signaling client that speaks to /control/<MeetingId> the way amazon-chime-sdk-js
//! does, plus helpers to create the meeting and attendees it joins with.
#![allow(dead_code)]

use std::time::Duration;

use carillon::join::frames;
use carillon::join::frames::proto::sdk_signal_frame::Type;
use carillon::join::frames::proto::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

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

impl SignalClient {
    /// Opens the WebSocket the way amazon-chime-sdk-js does: the SignalingUrl plus its query
    /// string, with `_aws_wt_session` and the JoinToken as subprotocols.
    pub async fn connect(signaling_url: &str, token: &str) -> SignalClient {
        let url = format!(
            "{signaling_url}?X-Chime-Control-Protocol-Version=3&X-Amzn-Chime-Send-Close-On-Error=1"
        );
        let mut request = url.into_client_request().expect("request");
        request.headers_mut().insert(
            "sec-websocket-protocol",
            format!("_aws_wt_session, {token}").parse().expect("header"),
        );
        let (socket, response) = tokio_tungstenite::connect_async(request)
            .await
            .expect("upgrade");
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
