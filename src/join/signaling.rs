//! The signaling WebSocket at `/control/<MeetingId>`: the JoinToken arrives as the second
//! subprotocol beside `_aws_wt_session`; frames are `0x05` + protobuf `SdkSignalFrame`.

use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use tokio::sync::mpsc;

use super::frames::{self, proto::SdkPingPongType, proto::sdk_signal_frame::Type};
use super::session::{Outbound, timestamp_ms};
use super::{Admission, JoinPlane};

/// How long a new socket may wait before its JOIN.
const JOIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// How long a socket may stay silent (clients ping every 10 s) before it is taken as dropped.
const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The subprotocol the client offers beside its JoinToken, and that the server must echo.
pub const SESSION_PROTOCOL: &str = "_aws_wt_session";

/// The JoinToken: the offered subprotocol that is not `_aws_wt_session`.
fn join_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find(|p| !p.is_empty() && *p != SESSION_PROTOCOL)
        .map(str::to_string)
}

/// Accepts every upgrade: a bad token is refused after JOIN with a close code the client
/// understands, because a failed handshake only makes the client retry for two minutes.
pub async fn upgrade(
    ws: WebSocketUpgrade,
    Path(meeting_id): Path<String>,
    headers: HeaderMap,
    State(plane): State<Arc<JoinPlane>>,
) -> Response {
    let token = join_token(&headers);
    ws.protocols([SESSION_PROTOCOL]).on_upgrade(move |socket| {
        run_session(plane, meeting_id.to_ascii_lowercase(), token, socket)
    })
}

async fn send(socket: &mut WebSocket, frame: &frames::proto::SdkSignalFrame) -> bool {
    socket
        .send(Message::Binary(frames::encode(frame).into()))
        .await
        .is_ok()
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

async fn run_session(
    plane: Arc<JoinPlane>,
    meeting_id: String,
    token: Option<String>,
    mut socket: WebSocket,
) {
    let session = plane.next_session_id();
    let (tx, mut outbound) = mpsc::unbounded_channel::<Outbound>();
    let mut joined = None;
    let mut dropped = true;
    // A client sends JOIN at once and pings every 10 s; a silent socket is a vanished client.
    let mut idle_deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(idle_deadline) => {
                close(&mut socket, 1000, "idle").await;
                break;
            }
            message = socket.recv() => {
                idle_deadline = tokio::time::Instant::now() + IDLE_TIMEOUT;
                let bytes = match message {
                    Some(Ok(Message::Binary(bytes))) => bytes,
                    Some(Ok(Message::Close(_))) => { dropped = false; break }
                    Some(Ok(_)) => continue,
                    None | Some(Err(_)) => break,
                };
                let Ok(frame) = frames::decode(&bytes) else {
                    tracing::debug!(session, "ignoring an undecodable signaling frame");
                    continue;
                };
                match Type::try_from(frame.r#type) {
                    Ok(Type::Join) if joined.is_none() => {
                        match plane.admit(&meeting_id, token.as_deref()).await {
                            Admission::Refused(code, reason) => {
                                close(&mut socket, code, reason).await;
                                return;
                            }
                            Admission::Admitted(attendee) => {
                                let count = plane.rooms.join(&meeting_id, session, &attendee.attendee_id, &attendee.external_user_id, tx.clone());
                                // A DeleteAttendee between the admission and the line above found
                                // no session to remove: check once more now that we are findable.
                                if !plane.still_admitted(token.as_deref()).await {
                                    plane.rooms.leave(&meeting_id, session, false);
                                    close(&mut socket, frames::close_code::ATTENDEE_UNAVAILABLE, "attendee unavailable").await;
                                    return;
                                }
                                plane.record_presence(&meeting_id, &attendee.attendee_id, true).await;
                                let ok = send(&mut socket, &frames::join_ack(timestamp_ms())).await
                                    && send(&mut socket, &frames::index(timestamp_ms(), count as u32)).await;
                                joined = Some(attendee);
                                if !ok { break }
                            }
                        }
                    }
                    Ok(Type::Subscribe) if joined.is_some() => {
                        let Some(sub) = frame.sub else { continue };
                        let Some(offer) = sub.sdp_offer.clone() else { continue };
                        match plane.media.accept_offer(session, &meeting_id, offer).await {
                            Ok(answer) => {
                                if !send(&mut socket, &frames::subscribe_ack(timestamp_ms(), sub.duplex, answer)).await { break }
                                if sub.audio_host.is_some() {
                                    plane.rooms.check_in(&meeting_id, session, sub.audio_muted.unwrap_or(false));
                                }
                            }
                            Err(error) => {
                                tracing::info!(session, %error, "refusing an SDP offer");
                                let refusal = frames::proto::SdkSignalFrame {
                                    error: Some(frames::proto::SdkErrorFrame { status: Some(400), description: Some(error) }),
                                    ..frames::subscribe_ack(timestamp_ms(), sub.duplex, String::new())
                                };
                                if !send(&mut socket, &refusal).await { break }
                            }
                        }
                    }
                    Ok(Type::PingPong) => {
                        if let Some(ping) = frame.ping_pong.filter(|p| p.r#type == SdkPingPongType::Ping as i32)
                            && !send(&mut socket, &frames::pong(timestamp_ms(), ping.ping_id)).await
                        {
                            break;
                        }
                    }
                    Ok(Type::AudioControl) if joined.is_some() => {
                        if let Some(muted) = frame.audio_control.and_then(|c| c.muted) {
                            plane.rooms.set_muted(&meeting_id, session, muted);
                        }
                    }
                    Ok(Type::DataMessage) if joined.is_some() => {
                        if let Some(data) = frame.data_message.filter(|d| !d.messages.is_empty()) {
                            plane.rooms.relay_data(&meeting_id, session, data.messages);
                        }
                    }
                    Ok(Type::Leave) => {
                        let _ = send(&mut socket, &frames::leave_ack(timestamp_ms())).await;
                        dropped = false;
                        break;
                    }
                    // CLIENT_METRIC, MEETING_SESSION_TIMING and video frames: not needed for an
                    // audio meeting, and never a reason to close.
                    _ => {}
                }
            }
            Some(order) = outbound.recv() => match order {
                Outbound::Frame(frame) => { if !send(&mut socket, &frame).await { break } }
                Outbound::Close(code, reason) => {
                    close(&mut socket, code, reason).await;
                    dropped = false;
                    break;
                }
            },
        }
    }
    if let Some(attendee) = joined {
        // Stored before it is announced, so whoever sees the departure finds it recorded; not
        // when the attendee is still there on another device (a 301 replacement).
        if !plane
            .rooms
            .has_other_session(&meeting_id, &attendee.attendee_id, session)
        {
            plane
                .record_presence(&meeting_id, &attendee.attendee_id, false)
                .await;
        }
        plane.rooms.leave(&meeting_id, session, dropped);
        plane.media.remove(session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_the_other_subprotocol() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "sec-websocket-protocol",
            "_aws_wt_session, abc-DEF_1".parse().expect("header"),
        );
        assert_eq!(join_token(&headers).as_deref(), Some("abc-DEF_1"));
        headers.insert(
            "sec-websocket-protocol",
            "_aws_wt_session".parse().expect("header"),
        );
        assert_eq!(join_token(&headers), None);
    }
}
