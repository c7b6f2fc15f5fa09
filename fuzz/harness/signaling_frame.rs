//! Signaling frames: `join::frames::decode` on arbitrary bytes, then what the signaling loop does
//! with a decoded frame short of I/O (its type, a PONG for a PING, the relayed data messages), and
//! the round trip: a frame that decodes re-encodes with the type byte and decodes to itself.
//!
//! Input: the WebSocket binary message as received.

use carillon::join::frames::proto::sdk_signal_frame::Type;
use carillon::join::frames::proto::{SdkPingPongType, SdkSignalFrame};
use carillon::join::frames::{self, FRAME_TYPE_RTC};

/// The server's clock when it answers (milliseconds since the epoch).
const NOW_MS: u64 = 1_795_819_438_000;

pub fn run(data: &[u8]) -> String {
    let frame = match frames::decode(data) {
        Ok(frame) => frame,
        Err(error) => {
            assert!(!error.to_string().is_empty());
            return "err undecodable".into();
        }
    };
    let bytes = round_trip(&frame);
    // The type byte is stripped whatever it is.
    assert_eq!(bytes[1..], round_trip_body(&data[1..]));

    let kind = Type::try_from(frame.r#type);
    if let Some(ping) = frame
        .ping_pong
        .filter(|p| p.r#type == SdkPingPongType::Ping as i32)
    {
        let pong = frames::pong(NOW_MS, ping.ping_id);
        round_trip(&pong);
    }
    if let Some(data) = &frame.data_message {
        let relayed = frames::data_messages(
            NOW_MS,
            NOW_MS as i64,
            data.messages.clone(),
            "0b6d8a6e-5f0c-4b4c-9a43-1a2b3c4d5e6f",
            "José",
        );
        let messages = &relayed.data_message.as_ref().expect("set").messages;
        assert_eq!(messages.len(), data.messages.len());
        assert!(
            messages
                .iter()
                .all(|m| m.ingest_time_ns.is_some_and(|t| t >= 0))
        );
        round_trip(&relayed);
    }
    match kind {
        Ok(kind) => format!("ok {kind:?}"),
        Err(_) => format!("ok type {}", frame.r#type),
    }
}

/// Encodes a frame and checks that it decodes to itself; returns the encoding.
fn round_trip(frame: &SdkSignalFrame) -> Vec<u8> {
    let bytes = frames::encode(frame);
    assert_eq!(bytes.first(), Some(&FRAME_TYPE_RTC));
    let again = frames::decode(&bytes).expect("an encoded frame decodes");
    // Compared through Debug when they differ, so that a NaN metric equals itself.
    if again != *frame {
        assert_eq!(format!("{again:?}"), format!("{frame:?}"));
    }
    assert_eq!(frames::encode(&again), bytes, "encoding is canonical");
    bytes
}

/// The canonical encoding of a frame body, decoded behind another type byte.
fn round_trip_body(body: &[u8]) -> Vec<u8> {
    let mut with_other_type = vec![0xff];
    with_other_type.extend_from_slice(body);
    let frame = frames::decode(&with_other_type).expect("the same body decodes");
    frames::encode(&frame)[1..].to_vec()
}
