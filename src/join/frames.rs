//! The signaling wire format: one type byte `0x05` and a protobuf `SdkSignalFrame` (proto2, with
//! its required `timestamp_ms` and `type` always set, or the client drops the frame).

#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/_.rs"));
}

use prost::Message;
use proto::sdk_signal_frame::Type;
use proto::*;

/// The subprotocol the client offers beside its JoinToken, and that the server must echo.
pub const SESSION_PROTOCOL: &str = "_aws_wt_session";

/// A meeting id from the URL as a log line may show it: nobody has checked it before JOIN, so
/// control characters are escaped and it is cut to 64 characters (real ids have 36).
pub(crate) fn loggable(id: &str) -> String {
    id.chars().take(64).flat_map(char::escape_debug).collect()
}

/// Wall-clock milliseconds for frame timestamps (the client estimates clock skew from them).
pub fn timestamp_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// `FRAME_TYPE_RTC`, the type byte in front of every frame in both directions.
pub const FRAME_TYPE_RTC: u8 = 0x05;

/// Remote videos one session may receive at once (the client reads it from JOIN_ACK).
pub const VIDEO_SUBSCRIPTION_LIMIT: u32 = 25;
/// The video status that tells a client to switch to view only: it removes its local tile but
/// stays in the meeting (509 would end its session).
pub const VIEW_ONLY_STATUS: u32 = 206;

/// Audio status codes the client treats as the end of its session.
pub mod audio_status {
    pub const JOINED_FROM_ANOTHER_DEVICE: u32 = 301;
    /// AudioCallAtCapacity: what real Chime tells a client joining a full call.
    pub const CALL_AT_CAPACITY: u32 = 409;
    pub const MEETING_ENDED: u32 = 410;
    pub const ATTENDEE_REMOVED: u32 = 411;
}

/// WebSocket close codes. During the join the client maps 4410 to MeetingEnded, 4500–4599 to a
/// retried server error and any other code to the terminal SignalingBadRequest; once connected,
/// 1006 and 4500–4599 make it reconnect (join-protocol.md §2.3).
pub mod close_code {
    /// "attendee unavailable": the JoinToken is unknown or its attendee was deleted.
    pub const ATTENDEE_UNAVAILABLE: u16 = 4403;
    /// The meeting already has as many sessions as it may. Preceded by AUDIO_STATUS 409
    /// (AudioCallAtCapacity, which the client reports as such); the code itself is outside
    /// 4410 and 45xx on purpose, so the client stops instead of retrying against a full meeting.
    pub const MEETING_AT_CAPACITY: u16 = 4409;
    /// The meeting has ended (or never existed).
    pub const MEETING_ENDED: u16 = 4410;
    /// The meeting's MediaPlacement names another node, which is alive: the client reached the
    /// wrong node (a load balancer in front of signaling, say). Outside 45xx: retrying here
    /// cannot help.
    pub const HOSTED_ELSEWHERE: u16 = 4421;
    /// The node the meeting's MediaPlacement names stopped beating: its meeting cannot be joined
    /// until that node returns under its URL. Outside 45xx, so the client stops instead of
    /// retrying for minutes.
    pub const HOST_GONE: u16 = 4424;
    /// In the 4500–4599 range the client treats as a server error and reconnects.
    pub const SERVER_GOING_AWAY: u16 = 4503;
    /// The session's outbound queue (or a write to its socket) did not keep up: in 45xx so the
    /// client reconnects and gets a fresh roster instead of the server buffering for it.
    pub const SLOW_CONSUMER: u16 = 4504;
    /// Too many sockets are waiting to join: in 45xx so the client retries later (HTTP 429 in
    /// spirit; a refused handshake would make the browser retry for two minutes instead).
    pub const SERVER_BUSY: u16 = 4529;
    /// RFC 6455 codes for a client that breaks the WebSocket or signaling protocol; none is one
    /// the client retries, which is right for a client that sends what the SDK never sends.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text frame: the signaling protocol is binary only.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// Invalid UTF-8 in a text frame, or a binary frame that is no signaling frame.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A message over the size limit (a small one before JOIN).
    pub const MESSAGE_TOO_BIG: u16 = 1009;
}

pub fn encode(frame: &SdkSignalFrame) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(frame.encoded_len() + 1);
    bytes.push(FRAME_TYPE_RTC);
    // Encoding into a Vec only fails when the buffer cannot grow, which Vec always can.
    let _ = frame.encode(&mut bytes);
    bytes
}

/// Why a client's binary message is no signaling frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("empty signaling frame")]
    Empty,
    #[error("undecodable signaling frame: {0}")]
    Undecodable(#[source] prost::DecodeError),
}

/// Decodes a client frame. The type byte is checked the way the client checks ours: any value is
/// stripped, as long as there is a frame behind it.
pub fn decode(bytes: &[u8]) -> Result<SdkSignalFrame, FrameError> {
    let Some((_, body)) = bytes.split_first() else {
        return Err(FrameError::Empty);
    };
    SdkSignalFrame::decode(body).map_err(FrameError::Undecodable)
}

fn frame(kind: Type, now_ms: u64) -> SdkSignalFrame {
    SdkSignalFrame {
        timestamp_ms: now_ms,
        r#type: kind as i32,
        ..Default::default()
    }
}

pub fn join_ack(now_ms: u64) -> SdkSignalFrame {
    join_ack_with_turn(now_ms, None)
}

/// JOIN_ACK, with TURN credentials when TURN is on. Without them the client uses host
/// candidates (join-protocol.md §3.1); with them it relays everything through TURN.
///
/// It also says how many remote videos the client may receive, and that the server does not
/// choose video layers for it: left out, the enum's protobufjs default makes the SDK's priority
/// policy switch to client-side choice by accident (media-protocol.md §0 rule 5).
pub fn join_ack_with_turn(now_ms: u64, turn: Option<SdkTurnCredentials>) -> SdkSignalFrame {
    SdkSignalFrame {
        joinack: Some(SdkJoinAckFrame {
            // Without TURN, credentials with no URIs: amazon-chime-sdk-js logs an error for a
            // JOIN_ACK that has none at all, and with no URIs it connects directly as it would
            // without them (it relays only when it is given a TURN URI).
            turn_credentials: Some(turn.unwrap_or_default()),
            video_subscription_limit: Some(VIDEO_SUBSCRIPTION_LIMIT),
            default_server_side_network_adaption: Some(SdkServerSideNetworkAdaption::None as i32),
            ..Default::default()
        }),
        ..frame(Type::JoinAck, now_ms)
    }
}

/// INDEX: the full list of video sources a session may subscribe to (never a delta: the client
/// replaces what it knew), whether the meeting takes more publishers, and how many attendees
/// are in it (the simulcast uplink policy picks its layers by it).
pub fn index(
    now_ms: u64,
    sources: Vec<SdkStreamDescriptor>,
    at_capacity: bool,
    participants: u32,
) -> SdkSignalFrame {
    SdkSignalFrame {
        index: Some(SdkIndexFrame {
            at_capacity: Some(at_capacity),
            sources,
            num_participants: Some(participants),
            ..Default::default()
        }),
        ..frame(Type::Index, now_ms)
    }
}

pub fn subscribe_ack(now_ms: u64, duplex: Option<i32>, sdp_answer: String) -> SdkSignalFrame {
    video_subscribe_ack(now_ms, duplex, sdp_answer, Vec::new(), Vec::new())
}

/// SUBSCRIBE_ACK with the ids of the session's own video layers (`allocations`, in the order of
/// its video descriptors, audio left out) and the stream each answered receive section carries
/// (`tracks`, labelled `v_<mid>` as the answer's msid is).
pub fn video_subscribe_ack(
    now_ms: u64,
    duplex: Option<i32>,
    sdp_answer: String,
    allocations: Vec<SdkStreamAllocation>,
    tracks: Vec<SdkTrackMapping>,
) -> SdkSignalFrame {
    SdkSignalFrame {
        suback: Some(SdkSubscribeAckFrame {
            duplex,
            sdp_answer: Some(sdp_answer),
            allocations,
            tracks,
            ..Default::default()
        }),
        ..frame(Type::SubscribeAck, now_ms)
    }
}

/// Error 206 (VideoCallSwitchToViewOnly) outside any answer: the client removes its local tile
/// and stays in the meeting (509 would end its session). The client reads `error` on every
/// frame; BITRATES without bitrates is one that nothing else acts on.
pub fn view_only(now_ms: u64, reason: &str) -> SdkSignalFrame {
    SdkSignalFrame {
        error: Some(SdkErrorFrame {
            status: Some(VIEW_ONLY_STATUS),
            description: Some(reason.to_string()),
        }),
        ..frame(Type::Bitrates, now_ms)
    }
}

/// BITRATES: what each video stream has been sending lately, so that the client's downlink
/// policies can choose layers by measured rather than nominal bitrates, and what the server
/// estimates it can send this client (kbit/s), which the SDK takes as its available incoming
/// bitrate (`MonitorTask`), the input of its downlink policy.
pub fn bitrates(
    now_ms: u64,
    streams: Vec<(u32, u32)>,
    downlink_estimate_kbps: Option<u32>,
) -> SdkSignalFrame {
    SdkSignalFrame {
        bitrates: Some(SdkBitrateFrame {
            bitrates: streams
                .into_iter()
                .map(|(stream, bps)| SdkBitrate {
                    source_stream_id: Some(stream),
                    avg_bitrate_bps: Some(bps),
                })
                .collect(),
            server_available_outgoing_bitrate: downlink_estimate_kbps,
        }),
        ..frame(Type::Bitrates, now_ms)
    }
}

pub fn pong(now_ms: u64, ping_id: u32) -> SdkSignalFrame {
    SdkSignalFrame {
        ping_pong: Some(SdkPingPongFrame {
            r#type: SdkPingPongType::Pong as i32,
            ping_id,
        }),
        ..frame(Type::PingPong, now_ms)
    }
}

pub fn leave_ack(now_ms: u64) -> SdkSignalFrame {
    SdkSignalFrame {
        leave_ack: Some(SdkLeaveAckFrame {}),
        ..frame(Type::LeaveAck, now_ms)
    }
}

pub fn audio_status(now_ms: u64, status: u32) -> SdkSignalFrame {
    SdkSignalFrame {
        audio_status: Some(SdkAudioStatusFrame {
            audio_status: Some(status),
        }),
        ..frame(Type::AudioStatus, now_ms)
    }
}

/// Data messages as the other attendees receive them: stamped with the sender and the time the
/// server took them in (a zero ingest time would tell the client it was throttled).
pub fn data_messages(
    now_ms: u64,
    ingest_ms: i64,
    mut messages: Vec<SdkDataMessagePayload>,
    sender_attendee_id: &str,
    sender_external_user_id: &str,
) -> SdkSignalFrame {
    let ingest_time_ns = ingest_ms.max(1).saturating_mul(1_000_000);
    for message in &mut messages {
        message.sender_attendee_id = Some(sender_attendee_id.to_string());
        message.sender_external_user_id = Some(sender_external_user_id.to_string());
        message.ingest_time_ns = Some(ingest_time_ns);
    }
    SdkSignalFrame {
        data_message: Some(SdkDataMessageFrame { messages }),
        ..frame(Type::DataMessage, now_ms)
    }
}

/// Data messages already stamped with their senders and ingest times (kept ones, replayed).
pub fn stamped_data_messages(now_ms: u64, messages: Vec<SdkDataMessagePayload>) -> SdkSignalFrame {
    SdkSignalFrame {
        data_message: Some(SdkDataMessageFrame { messages }),
        ..frame(Type::DataMessage, now_ms)
    }
}

/// Data messages handed back to their sender unrelayed: a zero ingest time is how the client
/// learns they were throttled (amazon-chime-sdk-js `SendAndReceiveDataMessagesTask`).
pub fn throttled_data_messages(
    now_ms: u64,
    mut messages: Vec<SdkDataMessagePayload>,
    sender_attendee_id: &str,
    sender_external_user_id: &str,
) -> SdkSignalFrame {
    for message in &mut messages {
        message.sender_attendee_id = Some(sender_attendee_id.to_string());
        message.sender_external_user_id = Some(sender_external_user_id.to_string());
        message.ingest_time_ns = Some(0);
    }
    SdkSignalFrame {
        data_message: Some(SdkDataMessageFrame { messages }),
        ..frame(Type::DataMessage, now_ms)
    }
}

/// Volume indicators: one entry per attendee with a current level (`volume` is minus-dB, 0
/// loudest), plus signal strength (0..=2) for everyone; attendees left out count as silent.
pub fn audio_metadata(now_ms: u64, attendee_states: Vec<SdkAudioAttendeeState>) -> SdkSignalFrame {
    SdkSignalFrame {
        audio_metadata: Some(SdkAudioMetadataFrame { attendee_states }),
        ..frame(Type::AudioMetadata, now_ms)
    }
}

pub fn stream_info(now_ms: u64, streams: Vec<SdkAudioStreamIdInfo>) -> SdkSignalFrame {
    SdkSignalFrame {
        audio_stream_id_info: Some(SdkAudioStreamIdInfoFrame { streams }),
        ..frame(Type::AudioStreamIdInfo, now_ms)
    }
}

/// A roster entry: present (with attendee), a mute update, or a departure (stream id only).
pub fn present(
    stream: u32,
    attendee_id: &str,
    external_user_id: &str,
    muted: bool,
) -> SdkAudioStreamIdInfo {
    SdkAudioStreamIdInfo {
        audio_stream_id: Some(stream),
        attendee_id: Some(attendee_id.to_string()),
        external_user_id: Some(external_user_id.to_string()),
        muted: Some(muted),
        dropped: None,
    }
}

pub fn muted(stream: u32, muted: bool) -> SdkAudioStreamIdInfo {
    SdkAudioStreamIdInfo {
        audio_stream_id: Some(stream),
        muted: Some(muted),
        ..Default::default()
    }
}

pub fn departed(stream: u32, dropped: bool) -> SdkAudioStreamIdInfo {
    SdkAudioStreamIdInfo {
        audio_stream_id: Some(stream),
        dropped: dropped.then_some(true),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_with_the_type_byte() {
        let bytes = encode(&pong(42, 7));
        assert_eq!(bytes[0], FRAME_TYPE_RTC);
        let back = decode(&bytes).expect("decodes");
        assert_eq!(back.r#type, Type::PingPong as i32);
        assert_eq!(back.timestamp_ms, 42);
        assert_eq!(back.ping_pong.map(|p| p.ping_id), Some(7));
        assert_eq!(decode(&[]), Err(FrameError::Empty));
        assert!(matches!(
            decode(&[5, 0xff, 0xff]),
            Err(FrameError::Undecodable(_))
        ));
    }

    #[test]
    fn join_ack_says_the_server_does_not_choose_video_layers() {
        let ack = join_ack(1).joinack.expect("a join ack");
        // Left out, protobufjs decodes DEFAULT and the SDK's priority policy goes client-side
        // by a quirk; NONE says it on purpose.
        assert_eq!(
            ack.default_server_side_network_adaption,
            Some(SdkServerSideNetworkAdaption::None as i32)
        );
        assert_eq!(ack.video_subscription_limit, Some(25));
    }
}
