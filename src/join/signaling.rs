//! The signaling WebSocket at `/control/<MeetingId>`: the JoinToken arrives as the second
//! subprotocol beside `_aws_wt_session`; frames are `0x05` + protobuf `SdkSignalFrame`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use tokio::time::Instant;

use super::frames::{
    self, close_code,
    proto::{SdkPingPongType, SdkStreamMediaType, sdk_signal_frame::Type},
};
use super::frames::{SESSION_PROTOCOL, loggable, timestamp_ms};
use super::frames::{VIDEO_SUBSCRIPTION_LIMIT, VIEW_ONLY_STATUS};
use super::limits::{JoinLimits, UnjoinedSlot};
use super::room::{self, Inlet, Outbound, Outlet};
use super::video::ViewOnly;
use super::{Admission, JoinPlane, JoinRoute};
use crate::domain::id::JoinToken;
use crate::media::{Answer, AudioRole, OfferError, VideoPlan};
use crate::store::{AttendeeRecord, PresenceChange};

/// The JoinToken: the offered subprotocol that is not `_aws_wt_session`.
fn join_token(headers: &HeaderMap) -> Option<JoinToken> {
    headers
        .get_all(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find(|p| !p.is_empty() && *p != SESSION_PROTOCOL)
        .map(JoinToken::new)
}

/// Accepts every upgrade: a bad token is refused after JOIN with a close code the client
/// understands, because a failed handshake only makes the client retry for two minutes. What an
/// unauthenticated socket can make the server hold is bounded instead: small read and write
/// buffers, a message size cap, a JOIN deadline and a cap on sockets waiting to join.
pub async fn upgrade(
    ws: WebSocketUpgrade,
    Path(meeting_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    State(plane): State<Arc<JoinPlane>>,
) -> Response {
    let token = join_token(&headers);
    let meeting_id = meeting_id.to_ascii_lowercase();
    let relayed = headers.contains_key(super::relay::RELAYED_HEADER);
    let route = plane.route_join(&meeting_id, relayed).await;
    let limits = &plane.limits;
    // tungstenite panics on a write-buffer cap not above the write buffer, or on an empty read
    // buffer; odd operator values must not take the server down.
    let write_buffer = limits.write_buffer_bytes;
    let max_write_buffer = limits.max_write_buffer_bytes.max(write_buffer + 1);
    ws.protocols([SESSION_PROTOCOL])
        .max_message_size(limits.max_message_bytes)
        .max_frame_size(limits.max_message_bytes)
        .read_buffer_size(limits.read_buffer_bytes.max(1024))
        .write_buffer_size(write_buffer)
        .max_write_buffer_size(max_write_buffer)
        .on_upgrade(move |socket| serve_or_relay(plane, meeting_id, token, query, socket, route))
}

/// How often a join waiting for an unreachable host looks at the registry again.
const HOST_RECHECK: std::time::Duration = std::time::Duration::from_millis(250);

/// Serves the socket here, or relays it to the meeting's host. A host that cannot be reached
/// (killed, say) still counts as live until its beats are older than `--node-timeout`; the join
/// waits that out, looking at the registry again every 250 ms, and is served here as soon as
/// this node takes the meeting over, or relayed to whichever node did. Closing at once with a
/// retryable code would cost the client its reconnect backoff, seconds more.
async fn serve_or_relay(
    plane: Arc<JoinPlane>,
    meeting_id: String,
    token: Option<JoinToken>,
    query: Option<String>,
    mut socket: WebSocket,
    mut route: JoinRoute,
) {
    let deadline = Instant::now() + plane.host_wait();
    loop {
        let host = match route {
            JoinRoute::Here => return run_session(plane, meeting_id, token, socket).await,
            JoinRoute::Relay(host) => host,
        };
        let relayed = super::relay::relay(
            socket,
            &host,
            &meeting_id,
            token.as_ref(),
            query.as_deref(),
            plane.limits.max_message_bytes,
        )
        .await;
        let (back, error) = match relayed {
            Ok(()) => return,
            Err(failure) => failure,
        };
        if Instant::now() + HOST_RECHECK >= deadline || !error.may_pass() {
            return super::relay::give_up(back, &host, &meeting_id, &error).await;
        }
        tracing::debug!(host, %error, "the meeting's host cannot be reached yet; waiting");
        socket = back;
        tokio::time::sleep(HOST_RECHECK).await;
        route = plane.route_join(&meeting_id, false).await;
    }
}

/// The close a WebSocket-level failure deserves, if the socket can still carry one. tungstenite
/// is not a direct dependency, so its errors are told apart by their messages (the unit tests
/// pin them against the tungstenite in use).
fn close_for_error(error: &axum::Error) -> Option<(u16, &'static str)> {
    let text = error.to_string();
    if text.starts_with("Space limit exceeded") {
        Some((close_code::MESSAGE_TOO_BIG, "message too big"))
    } else if text.starts_with("UTF-8 encoding error") {
        Some((close_code::INVALID_PAYLOAD, "invalid UTF-8"))
    } else if text.starts_with("WebSocket protocol error") {
        Some((close_code::PROTOCOL_ERROR, "protocol error"))
    } else {
        // I/O errors and a connection already closed: nothing more can be written.
        None
    }
}

/// How the session loop goes on after one event.
enum Step {
    Continue,
    /// The session is over; `dropped` tells the others whether it ended unexpectedly.
    End {
        dropped: bool,
    },
}

/// One signaling connection, from upgrade to departure.
struct Session<'a> {
    plane: &'a JoinPlane,
    limits: &'a JoinLimits,
    meeting_id: String,
    /// The meeting id as log lines show it (see [`loggable`]).
    meeting_log: String,
    token: Option<JoinToken>,
    id: u64,
    socket: WebSocket,
    joined: Option<AttendeeRecord>,
    /// A content-share session: the token ended in `#content`, the attendee id does too.
    content: bool,
    /// This side sent a close frame whose reply is still to be read before the socket goes.
    awaiting_close_reply: bool,
}

impl Session<'_> {
    fn attendee_id(&self) -> &str {
        self.joined
            .as_ref()
            .map_or("", |attendee| attendee.attendee_id.as_str())
    }

    /// Sends one frame; false when the socket is gone or the client has not taken it within the
    /// send timeout (it stopped reading: waiting longer would only pile frames up for it).
    async fn send(&mut self, frame: &frames::proto::SdkSignalFrame) -> bool {
        self.send_encoded(frames::encode(frame).into()).await
    }

    /// Sends one already encoded frame, as `send` does.
    async fn send_encoded(&mut self, bytes: Bytes) -> bool {
        let message = Message::Binary(bytes);
        match tokio::time::timeout(self.limits.send_timeout, self.socket.send(message)).await {
            Ok(result) => result.is_ok(),
            Err(_) => {
                tracing::info!(
                    meeting_id = %self.meeting_log,
                    attendee_id = self.attendee_id(),
                    session = self.id,
                    "dropping a slow consumer: a write did not complete in time"
                );
                false
            }
        }
    }

    /// Closes with a code and reason, as far as the socket still takes a close frame.
    async fn close(&mut self, code: u16, reason: &'static str) {
        tracing::info!(
            meeting_id = %self.meeting_log,
            attendee_id = self.attendee_id(),
            session = self.id,
            code,
            reason,
            "closing a signaling socket"
        );
        let frame = Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }));
        let _ = tokio::time::timeout(self.limits.send_timeout, self.socket.send(frame)).await;
        // Every close this side starts waits for the client's reply before the connection
        // goes, whatever the reason (a departure, a deletion, the meeting's end): a browser
        // whose close reply meets a vanished connection reports `wasClean: false`.
        self.awaiting_close_reply = true;
    }

    /// Waits for the client's reply to a close frame this side sent (or the end of the stream),
    /// so that tungstenite completes the closing handshake and the client sees a clean close,
    /// not the 1006 of a TCP connection that simply ended (`SignalingChannelClosedUnexpectedly`).
    /// Frames the client sends in between are read and dropped.
    async fn await_close_reply(&mut self) {
        let reply = async {
            loop {
                match self.socket.recv().await {
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => continue,
                }
            }
        };
        let _ = tokio::time::timeout(self.limits.send_timeout, reply).await;
    }

    /// Closes for a fault of the client's, which is never a graceful departure.
    async fn refuse(&mut self, code: u16, reason: &'static str) -> Step {
        self.close(code, reason).await;
        Step::End { dropped: true }
    }

    /// An order from the rooms (a frame, or the end of the session).
    async fn on_order(&mut self, order: Outbound) -> Step {
        match order {
            Outbound::Frame(bytes) => {
                if self.send_encoded(bytes).await {
                    Step::Continue
                } else {
                    Step::End { dropped: true }
                }
            }
            Outbound::Close(code, reason) => {
                self.close(code, reason).await;
                // A code the client answers by reconnecting is a drop, not a departure.
                Step::End {
                    dropped: (4500..4600).contains(&code),
                }
            }
        }
    }

    async fn on_message(
        &mut self,
        message: Option<Result<Message, axum::Error>>,
        outlet: &Outlet,
        unjoined: &mut Option<UnjoinedSlot<'_>>,
    ) -> Step {
        let bytes = match message {
            Some(Ok(Message::Binary(bytes))) => bytes,
            Some(Ok(Message::Close(_))) => {
                // tungstenite has queued the close reply but writes it only on its next read
                // (which then reports the end); without it the browser sees an unclean close.
                let _ = tokio::time::timeout(self.limits.send_timeout, self.socket.recv()).await;
                return Step::End { dropped: false };
            }
            Some(Ok(Message::Text(_))) => {
                // 1003 rather than 1007: the text is valid, it is the kind of data that is not
                // accepted (the SDK only ever sends binary frames).
                return self
                    .refuse(
                        close_code::UNSUPPORTED_DATA,
                        "text frames are not part of the protocol",
                    )
                    .await;
            }
            // tungstenite answers pings itself.
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => return Step::Continue,
            Some(Err(error)) => {
                return match close_for_error(&error) {
                    Some((code, reason)) => {
                        tracing::info!(
                            meeting_id = %self.meeting_log,
                            attendee_id = self.attendee_id(),
                            session = self.id,
                            %error,
                            "WebSocket protocol failure"
                        );
                        self.refuse(code, reason).await
                    }
                    None => {
                        tracing::info!(
                            meeting_id = %self.meeting_log,
                            attendee_id = self.attendee_id(),
                            session = self.id,
                            %error,
                            "signaling socket failed"
                        );
                        Step::End { dropped: true }
                    }
                };
            }
            None => {
                tracing::info!(
                    meeting_id = %self.meeting_log,
                    attendee_id = self.attendee_id(),
                    session = self.id,
                    "signaling socket ended without a close frame"
                );
                return Step::End { dropped: true };
            }
        };
        if self.joined.is_none() && bytes.len() > self.limits.max_unjoined_message_bytes {
            return self
                .refuse(close_code::MESSAGE_TOO_BIG, "message too big before JOIN")
                .await;
        }
        let Ok(frame) = frames::decode(&bytes) else {
            return self
                .refuse(close_code::INVALID_PAYLOAD, "undecodable signaling frame")
                .await;
        };
        self.on_frame(frame, outlet, unjoined).await
    }

    async fn on_frame(
        &mut self,
        frame: frames::proto::SdkSignalFrame,
        outlet: &Outlet,
        unjoined: &mut Option<UnjoinedSlot<'_>>,
    ) -> Step {
        let ok = match Type::try_from(frame.r#type) {
            Ok(Type::Join) if self.joined.is_none() => return self.on_join(outlet, unjoined).await,
            Ok(Type::Subscribe) if self.joined.is_some() => {
                let Some(sub) = frame.sub else {
                    return Step::Continue;
                };
                self.on_subscribe(sub).await
            }
            Ok(kind @ (Type::Pause | Type::Resume)) if self.joined.is_some() => {
                self.on_pause(frame.pause, kind == Type::Pause).await;
                true
            }
            Ok(Type::RemoteVideoUpdate) if self.joined.is_some() => {
                self.on_remote_video_update(frame.remote_video_update.unwrap_or_default())
                    .await;
                true
            }
            Ok(Type::PingPong) => match frame
                .ping_pong
                .filter(|p| p.r#type == SdkPingPongType::Ping as i32)
            {
                Some(ping) => self.send(&frames::pong(timestamp_ms(), ping.ping_id)).await,
                None => true,
            },
            Ok(Type::AudioControl) if self.joined.is_some() => {
                if let Some(muted) = frame.audio_control.and_then(|c| c.muted) {
                    self.plane
                        .rooms
                        .set_muted(&self.meeting_id, self.id, muted)
                        .await;
                }
                true
            }
            Ok(Type::DataMessage) if self.joined.is_some() => {
                let messages = frame.data_message.map(|d| d.messages).unwrap_or_default();
                self.on_data_message(messages).await
            }
            Ok(Type::Leave) => return self.on_leave().await,
            // CLIENT_METRIC, MEETING_SESSION_TIMING and video frames: not needed for an
            // audio meeting, and never a reason to close.
            _ => true,
        };
        if ok {
            Step::Continue
        } else {
            Step::End { dropped: true }
        }
    }

    /// PAUSE or RESUME: the user paused (or resumed) a remote tile, so that stream stops (or
    /// restarts) flowing to this session only. At most the subscription limit's worth.
    async fn on_pause(&mut self, pause: Option<frames::proto::SdkPauseResumeFrame>, paused: bool) {
        let mut streams = pause.map(|p| p.stream_ids).unwrap_or_default();
        streams.truncate(VIDEO_SUBSCRIPTION_LIMIT as usize);
        if !streams.is_empty() {
            self.plane.media.pause(self.id, streams, paused);
            // The next frame is read once the meeting's task has run this one.
            self.plane.rooms.caught_up(&self.meeting_id).await;
        }
    }

    /// A simulcast layer switch within a group, without renegotiation: the section keeps its
    /// SSRC and shows the other layer from its next keyframe. Removals are followed by a full
    /// SUBSCRIBE, which settles them.
    async fn on_remote_video_update(&mut self, update: frames::proto::SdkRemoteVideoUpdateFrame) {
        // A session shows at most the subscription limit's worth of streams; more in one frame
        // is not the SDK, and is not worth a lookup each.
        for wanted in update
            .added_or_updated_video_subscriptions
            .into_iter()
            .take(VIDEO_SUBSCRIPTION_LIMIT as usize)
        {
            let stream = wanted.stream_id.unwrap_or(0);
            let allowed = self
                .plane
                .rooms
                .receivable_streams(&self.meeting_id, self.id, vec![stream], 1)
                .await;
            if allowed == [stream] && stream != 0 {
                self.plane.media.switch_layer(self.id, &wanted.mid, stream);
            }
        }
    }

    /// DATA_MESSAGE: relayed to the others; false when the socket is gone.
    async fn on_data_message(
        &mut self,
        messages: Vec<frames::proto::SdkDataMessagePayload>,
    ) -> bool {
        if messages.is_empty() {
            return true;
        }
        // Refused messages go straight back on this socket: the sender's own task, so no queue
        // of anyone else's grows for them.
        let refused = self
            .plane
            .rooms
            .relay_data(
                &self.meeting_id,
                self.id,
                messages,
                self.limits,
                self.plane.clock.now_ms(),
            )
            .await;
        match refused {
            Some(throttled) => self.send(&throttled).await,
            None => true,
        }
    }

    /// LEAVE: a graceful departure, whatever became of the ack.
    async fn on_leave(&mut self) -> Step {
        if self.send(&frames::leave_ack(timestamp_ms())).await {
            // Then a clean close, whose reply is awaited once the departure is recorded.
            self.close(1000, "left").await;
        }
        Step::End { dropped: false }
    }

    /// SUBSCRIBE: the client's offer with what it sends (audio, and its camera or content
    /// layers when on) and which remote stream each of its video sections wants. Publishing
    /// comes first so that the answer can carry the allocated ids; a session that may not
    /// publish gets 206 (view only) on the ack, and its media is still answered.
    async fn on_subscribe(&mut self, sub: frames::proto::SdkSubscribeFrame) -> bool {
        let Some(offer) = sub.sdp_offer.clone() else {
            return true;
        };
        let Some(attendee) = self.joined.as_ref() else {
            return true;
        };
        let role = AudioRole::from_capability(attendee.capabilities.audio);
        let attendee_id = attendee.attendee_id.clone();
        let (allocations, view_only) = self
            .publish_send_streams(&sub.send_streams, &attendee_id)
            .await;
        let plan = VideoPlan {
            publish: allocations.iter().filter_map(|a| a.stream_id).collect(),
            subscribe: self
                .plane
                .rooms
                .receivable_streams(
                    &self.meeting_id,
                    self.id,
                    sub.receive_stream_ids.clone(),
                    VIDEO_SUBSCRIPTION_LIMIT as usize,
                )
                .await,
        };
        match self
            .plane
            .media
            .accept_offer(self.id, &self.meeting_id, &attendee_id, role, offer, plan)
            .await
        {
            Ok(answer) => {
                self.acknowledge_subscribe(&sub, answer, allocations, view_only)
                    .await
            }
            Err(error) => self.refuse_offer(&attendee_id, sub.duplex, &error).await,
        }
    }

    /// Publishes the video layers the session sends (or withdraws them when it sends none): the
    /// allocated ids, or none and why the session is view only.
    async fn publish_send_streams(
        &mut self,
        send_streams: &[frames::proto::SdkStreamDescriptor],
        attendee_id: &str,
    ) -> (
        Vec<frames::proto::SdkStreamAllocation>,
        Option<&'static str>,
    ) {
        let descriptors: Vec<frames::proto::SdkStreamDescriptor> = send_streams
            .iter()
            .filter(|d| d.media_type == Some(SdkStreamMediaType::Video as i32))
            .cloned()
            .collect();
        let rooms = &self.plane.rooms;
        let published = if descriptors.is_empty() {
            rooms.unpublish_video(&self.meeting_id, self.id).await;
            Ok(Vec::new())
        } else {
            rooms
                .publish_video(&self.meeting_id, self.id, descriptors)
                .await
        };
        match published {
            Ok(allocations) => (allocations, None),
            Err(ViewOnly(reason)) => {
                tracing::info!(
                    meeting_id = %self.meeting_log,
                    attendee_id = %attendee_id,
                    session = self.id,
                    reason,
                    "video send refused: view only"
                );
                (Vec::new(), Some(reason))
            }
        }
    }

    /// SUBSCRIBE_ACK with the answer; once it is out, a session that sends audio checks in for
    /// its audio stream id.
    async fn acknowledge_subscribe(
        &mut self,
        sub: &frames::proto::SdkSubscribeFrame,
        answer: Answer,
        allocations: Vec<frames::proto::SdkStreamAllocation>,
        view_only: Option<&'static str>,
    ) -> bool {
        let tracks = answer
            .tracks
            .into_iter()
            .map(|t| frames::proto::SdkTrackMapping {
                stream_id: Some(t.stream_id),
                ssrc: Some(t.ssrc),
                track_label: Some(t.track_label),
            })
            .collect();
        let mut ack = frames::video_subscribe_ack(
            timestamp_ms(),
            sub.duplex,
            answer.sdp,
            allocations,
            tracks,
        );
        ack.error = view_only.map(|reason| frames::proto::SdkErrorFrame {
            status: Some(VIEW_ONLY_STATUS),
            description: Some(reason.to_string()),
        });
        let ok = self.send(&ack).await;
        if ok && sub.audio_host.is_some() {
            self.plane
                .rooms
                .check_in(&self.meeting_id, self.id, sub.audio_muted.unwrap_or(false))
                .await;
        }
        ok
    }

    /// An offer that gets no answer: the publication it made goes, and the ack says why.
    async fn refuse_offer(
        &mut self,
        attendee_id: &str,
        duplex: Option<i32>,
        error: &OfferError,
    ) -> bool {
        self.plane
            .rooms
            .unpublish_video(&self.meeting_id, self.id)
            .await;
        tracing::info!(
            meeting_id = %self.meeting_log,
            attendee_id = %attendee_id,
            session = self.id,
            %error,
            "refusing an SDP offer"
        );
        let refusal = frames::proto::SdkSignalFrame {
            error: Some(frames::proto::SdkErrorFrame {
                status: Some(400),
                description: Some(error.to_string()),
            }),
            ..frames::subscribe_ack(timestamp_ms(), duplex, String::new())
        };
        self.send(&refusal).await
    }

    async fn on_join(&mut self, outlet: &Outlet, unjoined: &mut Option<UnjoinedSlot<'_>>) -> Step {
        let attendee = match self.admitted().await {
            Ok(attendee) => attendee,
            Err(step) => return step,
        };
        (_, self.content) = super::video::split_content(&attendee.attendee_id);
        let count = match self.enter_room(&attendee, outlet).await {
            Ok(count) => count,
            Err(step) => return step,
        };
        // Joined: this socket no longer counts against the sockets waiting to join.
        unjoined.take();
        if let Err(step) = self.confirm_admission(&attendee.attendee_id).await {
            return step;
        }
        self.plane
            .rooms
            .set_video_rights(&self.meeting_id, self.id, attendee.capabilities)
            .await;
        self.record_joined(&attendee.attendee_id).await;
        tracing::info!(
            meeting_id = %self.meeting_log,
            attendee_id = %attendee.attendee_id,
            session = self.id,
            sessions = count,
            "attendee joined"
        );
        let attendee_id = attendee.attendee_id.clone();
        self.joined = Some(attendee);
        if self.greet(&attendee_id).await {
            Step::Continue
        } else {
            Step::End { dropped: true }
        }
    }

    /// The attendee the JoinToken admits to this meeting, or the end of a refused JOIN.
    async fn admitted(&mut self) -> Result<AttendeeRecord, Step> {
        match self
            .plane
            .admit(&self.meeting_id, self.token.as_ref())
            .await
        {
            Admission::Refused(code, reason) => {
                // The token is never logged; who it would have been is unknown when refused.
                tracing::info!(
                    meeting_id = %self.meeting_log,
                    session = self.id,
                    code,
                    reason,
                    "refusing a JOIN"
                );
                Err(self.refuse(code, reason).await)
            }
            Admission::Admitted(attendee) => Ok(attendee),
        }
    }

    /// Takes the session's place in the room (the number of sessions there now), or ends a JOIN
    /// the meeting has no room for.
    async fn enter_room(
        &mut self,
        attendee: &AttendeeRecord,
        outlet: &Outlet,
    ) -> Result<usize, Step> {
        let entered = self
            .plane
            .rooms
            .join(
                &self.meeting_id,
                self.id,
                &attendee.attendee_id,
                &attendee.external_user_id,
                outlet.clone(),
                self.limits.max_sessions_per_meeting,
            )
            .await;
        match entered {
            Ok(count) => Ok(count),
            Err(full) => {
                tracing::info!(
                    meeting_id = %self.meeting_log,
                    attendee_id = %attendee.attendee_id,
                    ?full,
                    "refusing a JOIN: the meeting is at capacity"
                );
                let _ = self
                    .send(&frames::audio_status(
                        timestamp_ms(),
                        frames::audio_status::CALL_AT_CAPACITY,
                    ))
                    .await;
                Err(self
                    .refuse(close_code::MEETING_AT_CAPACITY, "meeting at capacity")
                    .await)
            }
        }
    }

    /// A DeleteAttendee between the admission and the session entering its room found no session
    /// to remove: the token is checked once more now that the session is findable.
    async fn confirm_admission(&mut self, attendee_id: &str) -> Result<(), Step> {
        if self.plane.still_admitted(self.token.as_ref()).await {
            return Ok(());
        }
        self.plane
            .rooms
            .leave(&self.meeting_id, self.id, false)
            .await;
        tracing::info!(
            meeting_id = %self.meeting_log,
            attendee_id = %attendee_id,
            session = self.id,
            code = close_code::ATTENDEE_UNAVAILABLE,
            "refusing a JOIN: the attendee was deleted while joining"
        );
        Err(self
            .refuse(close_code::ATTENDEE_UNAVAILABLE, "attendee unavailable")
            .await)
    }

    /// Stores the join. A content share is a session of its attendee, not an attendee of its own
    /// in the store: it gets its own meeting events, not presence. (`&mut` only because a shared
    /// `Session` held across an await is not `Send`: the socket is not `Sync`.)
    async fn record_joined(&mut self, attendee_id: &str) {
        if self.content {
            self.plane
                .record_content_presence(&self.meeting_id, attendee_id, PresenceChange::Joined)
                .await;
        } else {
            self.plane
                .record_presence(&self.meeting_id, attendee_id, PresenceChange::Joined)
                .await;
        }
    }

    /// What a joined session is sent first: JOIN_ACK (with TURN credentials when TURN is on),
    /// INDEX and the data messages still alive. False when the socket is gone.
    async fn greet(&mut self, attendee_id: &str) -> bool {
        let turn = self.plane.turn.as_ref().map(|minter| {
            minter.mint(
                attendee_id,
                self.token.as_ref().map_or("", JoinToken::expose),
                self.plane.clock.now_unix(),
            )
        });
        if !self
            .send(&frames::join_ack_with_turn(timestamp_ms(), turn))
            .await
        {
            return false;
        }
        let index = self.plane.rooms.index_for(&self.meeting_id, self.id).await;
        if !self.send(&index).await {
            return false;
        }
        // Data messages still alive, as they were first relayed (sender, ingest time).
        let kept = self
            .plane
            .rooms
            .kept_data_frames(&self.meeting_id, self.plane.clock.now_ms(), self.limits)
            .await;
        for frame in kept {
            if !self.send(&frame).await {
                return false;
            }
        }
        true
    }

    /// Runs the session until it ends: whether it ended unexpectedly (a drop).
    async fn serve(
        &mut self,
        outlet: &Outlet,
        inlet: &mut Inlet,
        unjoined: &mut Option<UnjoinedSlot<'_>>,
    ) -> bool {
        let limits = self.limits;
        // Before JOIN the deadline is fixed: pings and other frames do not extend it.
        let mut deadline = Instant::now() + limits.join_timeout;
        loop {
            // Control orders (a kick's last words, a slow-consumer drop) come before queued
            // frames: they took this path because the queue may be full.
            if let Ok(order) = inlet.control.try_recv() {
                match self.on_order(order).await {
                    Step::Continue => continue,
                    Step::End { dropped } => return dropped,
                }
            }
            let step = tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    if self.joined.is_some() {
                        self.close(1000, "idle").await;
                    } else {
                        self.close(1000, "no JOIN in time").await;
                    }
                    Step::End { dropped: true }
                }
                Some(order) = inlet.control.recv() => self.on_order(order).await,
                Some(order) = inlet.queue.recv() => self.on_order(order).await,
                message = self.socket.recv() => {
                    let step = self.on_message(message, outlet, unjoined).await;
                    // Once joined, a silent socket is a vanished client (clients ping every
                    // 10 s).
                    if self.joined.is_some() {
                        deadline = Instant::now() + limits.idle_timeout;
                    }
                    step
                }
            };
            if let Step::End { dropped } = step {
                return dropped;
            }
        }
    }

    /// The departure of a joined session: stored, then announced, then its media and the
    /// farewell its token still gets.
    async fn depart(&mut self, dropped: bool) {
        let Some(attendee) = self.joined.take() else {
            return;
        };
        tracing::info!(
            meeting_id = %self.meeting_log,
            attendee_id = %attendee.attendee_id,
            session = self.id,
            "{}",
            if dropped {
                "attendee dropped"
            } else {
                "attendee left"
            }
        );
        // Stored before it is announced, so whoever sees the departure finds it recorded; not
        // when the attendee is still there on another device (a 301 replacement).
        let change = if dropped {
            PresenceChange::Dropped
        } else {
            PresenceChange::Left
        };
        let plane = self.plane;
        if self.content {
            plane
                .record_content_presence(&self.meeting_id, &attendee.attendee_id, change)
                .await;
        } else if !plane
            .rooms
            .has_other_session(&self.meeting_id, &attendee.attendee_id, self.id)
            .await
        {
            plane
                .record_presence(&self.meeting_id, &attendee.attendee_id, change)
                .await;
        }
        plane.rooms.leave(&self.meeting_id, self.id, dropped).await;
        plane.media.remove(self.id);
        if let Some(token) = &self.token {
            plane.farewells.record(
                token.expose(),
                &self.meeting_id,
                &attendee.attendee_id,
                plane.clock.now_unix(),
            );
        }
    }
}

async fn run_session(
    plane: Arc<JoinPlane>,
    meeting_id: String,
    token: Option<JoinToken>,
    socket: WebSocket,
) {
    let limits = &plane.limits;
    let mut session = Session {
        plane: &plane,
        limits,
        meeting_log: loggable(&meeting_id),
        meeting_id,
        token,
        id: plane.next_session_id(),
        socket,
        joined: None,
        content: false,
        awaiting_close_reply: false,
    };
    let Some(slot) = plane.unjoined.try_take(limits.max_unjoined_sockets) else {
        tracing::info!(
            meeting_id = %session.meeting_log,
            waiting = limits.max_unjoined_sockets,
            "refusing a socket: too many sockets are waiting to join"
        );
        session.close(close_code::SERVER_BUSY, "server busy").await;
        session.await_close_reply().await;
        return;
    };
    let mut unjoined = Some(slot);
    let (outlet, mut inlet) = room::outlet(limits.outbound_queue_frames);
    let dropped = session.serve(&outlet, &mut inlet, &mut unjoined).await;
    session.depart(dropped).await;
    if session.awaiting_close_reply {
        // No longer a socket waiting to join, whatever it sent.
        drop(unjoined);
        session.await_close_reply().await;
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
        assert_eq!(
            join_token(&headers).as_ref().map(JoinToken::expose),
            Some("abc-DEF_1")
        );
        headers.insert(
            "sec-websocket-protocol",
            "_aws_wt_session".parse().expect("header"),
        );
        assert_eq!(join_token(&headers), None);
    }

    #[test]
    fn meeting_ids_are_logged_escaped_and_short() {
        assert_eq!(loggable("abc-123"), "abc-123");
        assert_eq!(loggable("a\nfake line"), "a\\nfake line");
        assert_eq!(loggable(&"é".repeat(100)).chars().count(), 64);
    }

    #[test]
    fn websocket_failures_map_to_close_codes() {
        use tokio_tungstenite::tungstenite::error::{CapacityError, Error, ProtocolError};
        let close = |error: Error| close_for_error(&axum::Error::new(error)).map(|(code, _)| code);
        assert_eq!(
            close(Error::Capacity(CapacityError::MessageTooLong {
                size: 70_000,
                max_size: 65_536,
            })),
            Some(close_code::MESSAGE_TOO_BIG)
        );
        assert_eq!(
            close(Error::Protocol(ProtocolError::UnmaskedFrameFromClient)),
            Some(close_code::PROTOCOL_ERROR)
        );
        let invalid = String::from_utf8(vec![0xc3, 0x28]).expect_err("invalid UTF-8");
        assert_eq!(
            close(Error::Utf8(invalid.utf8_error().to_string())),
            Some(close_code::INVALID_PAYLOAD)
        );
        assert_eq!(close(Error::ConnectionClosed), None);
        assert_eq!(
            close(Error::Io(std::io::ErrorKind::BrokenPipe.into())),
            None
        );
    }
}
