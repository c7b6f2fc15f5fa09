//! A meeting's room: who is connected, their audio stream ids and mute state, the roster frames
//! (AUDIO_STREAM_ID_INFO) that tell every client about the others, video publications and
//! INDEX, data messages. The [`Room`] is plain state owned by the meeting's task; the join plane
//! reaches it through [`super::rooms::Rooms`].
//!
//! Frames reach each session task through a bounded queue: a session that does not keep up is
//! dropped as a slow consumer (it reconnects and gets a fresh roster) rather than buffered for.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::time::Instant;

use super::frames::{self, audio_status, close_code, proto::SdkSignalFrame, timestamp_ms};
use super::limits::{JoinLimits, TokenBucket};
use super::observe::{Observers, RoomEvent};
use super::video::{
    MAX_CONTENT_SHARES, VideoReceive, VideoRoom, ViewOnly, content_attendee_id, split_content,
};
use crate::domain::capabilities::Capabilities;
use crate::events::CapabilityTarget;

/// What the session task of one connection is told to do.
#[derive(Debug)]
pub enum Outbound {
    /// An encoded signaling frame (type byte and protobuf). A broadcast is encoded once and
    /// shared by every queue it sits in, so a meeting's fan-out does not copy it per session.
    Frame(Bytes),
    /// Close the WebSocket with this code and reason, ending the session.
    Close(u16, &'static str),
}

/// Room for the last orders of a session on the control path: a status frame and its close, and
/// a second ending racing the first (which wins anyway, as the session stops at the first close).
const CONTROL_CAPACITY: usize = 4;

/// How the rooms reach one session task: its bounded frame queue, and a small control channel
/// that the task serves first, for orders that must get through when the queue is full.
#[derive(Debug, Clone)]
pub struct Outlet {
    queue: mpsc::Sender<Outbound>,
    control: mpsc::Sender<Outbound>,
}

/// The receiving ends of an [`Outlet`], held by the session task.
#[derive(Debug)]
pub struct Inlet {
    pub queue: mpsc::Receiver<Outbound>,
    pub control: mpsc::Receiver<Outbound>,
}

/// A session's way in, with room for `queue_frames` frames (at least two, so that a status frame
/// and its close always fit an empty queue together).
pub fn outlet(queue_frames: usize) -> (Outlet, Inlet) {
    let (queue_tx, queue) = mpsc::channel(queue_frames.max(2));
    let (control_tx, control) = mpsc::channel(CONTROL_CAPACITY);
    (
        Outlet {
            queue: queue_tx,
            control: control_tx,
        },
        Inlet { queue, control },
    )
}

/// Whether a frame reached a session's queue.
#[derive(Debug, PartialEq, Eq)]
enum Delivery {
    Queued,
    /// The session task has ended; its departure is on its way.
    Gone,
    /// The queue was full: the session has been told to close as a slow consumer.
    Overflowed,
}

impl Outlet {
    fn push(&self, frame: Bytes) -> Delivery {
        match self.queue.try_send(Outbound::Frame(frame)) {
            Ok(()) => Delivery::Queued,
            Err(TrySendError::Closed(_)) => Delivery::Gone,
            Err(TrySendError::Full(_)) => {
                // The control channel being full means an ending is already pending.
                let _ = self
                    .control
                    .try_send(Outbound::Close(close_code::SLOW_CONSUMER, "slow consumer"));
                Delivery::Overflowed
            }
        }
    }

    /// Ends the session: `status` first (when given), then the close. When the queue has no room
    /// for both, both take the control path, which the session serves before its queue, so the
    /// status still comes right before the close.
    fn end(&self, status: Option<SdkSignalFrame>, code: u16, reason: &'static str) {
        let orders: Vec<Outbound> = status
            .map(|frame| Outbound::Frame(encode(&frame)))
            .into_iter()
            .chain(std::iter::once(Outbound::Close(code, reason)))
            .collect();
        match self.queue.try_reserve_many(orders.len()) {
            Ok(permits) => {
                for (permit, order) in permits.zip(orders) {
                    permit.send(order);
                }
            }
            Err(TrySendError::Closed(())) => {}
            Err(TrySendError::Full(())) => {
                for order in orders {
                    let _ = self.control.try_send(order);
                }
            }
        }
    }
}

struct Participant {
    attendee_id: String,
    external_user_id: String,
    /// Assigned at audio check-in (the first SUBSCRIBE with `audio_host`).
    stream_id: Option<u32>,
    muted: bool,
    outlet: Outlet,
    /// Told to close as a slow consumer: nothing more is queued for it.
    slow: bool,
    /// An attendee's content-share session (`<AttendeeId>#content`).
    content: bool,
    /// What remote video its attendee's capabilities let it receive.
    receive: VideoReceive,
    /// Whether its attendee's capabilities let it publish (camera, or content for a share).
    may_publish: bool,
}

impl Participant {
    /// Queues a frame for this session, dropping the session when its queue is full.
    fn deliver(&mut self, meeting_id: &str, session: u64, frame: Bytes) {
        if self.slow {
            return;
        }
        if self.outlet.push(frame) == Delivery::Overflowed {
            self.slow = true;
            tracing::info!(
                meeting_id,
                attendee_id = %self.attendee_id,
                session,
                code = close_code::SLOW_CONSUMER,
                "dropping a slow consumer: its outbound queue is full"
            );
        }
    }
}

/// How often at most refused data messages of one attendee are logged.
const DATA_REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// One attendee's data-message allowance, kept while any of its sessions is in the meeting so
/// that a second device does not start with a fresh burst.
struct DataQuota {
    bucket: TokenBucket,
    /// Refused since the last log line, so that a flood costs one log line per interval.
    refused: u64,
    last_report: Option<Instant>,
}

impl DataQuota {
    fn refused(&mut self, meeting_id: &str, attendee_id: &str, count: u64, reason: &'static str) {
        self.refused += count;
        let now = Instant::now();
        if self
            .last_report
            .is_none_or(|last| now.saturating_duration_since(last) >= DATA_REFUSAL_LOG_INTERVAL)
        {
            tracing::info!(
                meeting_id,
                attendee_id,
                refused = self.refused,
                reason,
                "data messages refused (returned as throttled unless dropped)"
            );
            self.refused = 0;
            self.last_report = Some(now);
        }
    }
}

/// One meeting's presence on this node: its sessions, their audio stream ids and mute states,
/// its video publications, the data messages it keeps for late joiners, its guests and the
/// server's pinned messages. It lives in the meeting's own task (see [`crate::media::meeting`]),
/// which runs every change to it in turn, so no lock guards it and no other meeting waits on it.
pub struct Room {
    meeting_id: String,
    participants: HashMap<u64, Participant>,
    next_stream_id: u32,
    /// Keyed by attendee id.
    data_quotas: HashMap<String, DataQuota>,
    video: VideoRoom,
    /// Camera publishers allowed at once (`at_capacity` in INDEX past it).
    max_video_publishers: usize,
    /// Where the room reports what happens in it.
    reports: RoomReports,
    /// Data messages with a lifetime: they outlive the sessions that sent them.
    kept: KeptMessages,
    /// Members without a session of their own (a capture pipeline's attendee): listed in every
    /// roster, sent nothing.
    guests: Vec<Guest>,
    next_guest_stream: u32,
    /// The server's own data messages that every session joining later gets first (a running
    /// transcription's status): one per topic, replaced by the next.
    pinned: Vec<frames::proto::SdkDataMessagePayload>,
}

/// Where every room of the node reports what happens in it.
#[derive(Clone, Default)]
pub struct RoomReports {
    /// Cameras and shares starting and stopping (for meeting events).
    pub activity: Option<mpsc::Sender<VideoActivity>>,
    /// Who observes each meeting beside it (recorders, transcriptions).
    pub observers: Arc<Observers>,
    /// Sessions in every room of the node, kept current by each room (the node's heartbeat
    /// reports it).
    pub sessions: Arc<AtomicUsize>,
}

/// A session's video started or stopped: `chime:AttendeeVideoStarted` and the like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoActivity {
    pub meeting_id: String,
    /// The session's attendee id (`<AttendeeId>#content` for a content share).
    pub attendee_id: String,
    pub started: bool,
}

impl Room {
    fn report_video(&self, attendee_id: &str, started: bool) {
        let meeting_id = self.meeting_id.as_str();
        let event_attendee = attendee_id.to_string();
        self.reports.observers.emit(
            meeting_id,
            if started {
                RoomEvent::VideoStarted {
                    attendee_id: event_attendee,
                }
            } else {
                RoomEvent::VideoStopped {
                    attendee_id: event_attendee,
                }
            },
        );
        if let Some(activity) = &self.reports.activity {
            let report = VideoActivity {
                meeting_id: meeting_id.to_string(),
                attendee_id: attendee_id.to_string(),
                started,
            };
            // Bounded: a client toggling its camera faster than the store records events loses
            // events, not the server's memory.
            if activity.try_send(report).is_err() {
                tracing::warn!(
                    meeting_id,
                    attendee_id,
                    started,
                    "video event not recorded: too many waiting"
                );
            }
        }
    }

    /// Stops a session's video (true when it had any) and reports it.
    fn stop_video(&mut self, session: u64, attendee_id: &str) -> bool {
        let stopped = self.video.unpublish(session);
        if stopped {
            self.report_video(attendee_id, false);
        }
        stopped
    }

    /// Stops the video of a session still in the room, as [`Room::stop_video`].
    fn stop_session_video(&mut self, session: u64) -> bool {
        let attendee_id = self
            .participants
            .get(&session)
            .map(|p| p.attendee_id.clone())
            .unwrap_or_default();
        self.stop_video(session, &attendee_id)
    }

    /// Attendees in the meeting: content shares not counted, an attendee on two devices (the
    /// older about to be closed) counted once.
    fn attendee_count(&self) -> u32 {
        let attendees: std::collections::HashSet<&str> = self
            .participants
            .values()
            .filter(|p| !p.content)
            .map(|p| p.attendee_id.as_str())
            .collect();
        attendees.len() as u32
    }

    /// The INDEX a session with these receive rights gets now.
    fn index_frame(&self, receive: VideoReceive) -> SdkSignalFrame {
        frames::index(
            timestamp_ms(),
            self.video.sources(receive),
            self.video.camera_publishers() >= self.max_video_publishers,
            self.attendee_count(),
        )
    }

    /// Sends every session (but `except`) the current INDEX: a full snapshot, encoded once per
    /// kind of receive rights.
    fn broadcast_index(&mut self, except: Option<u64>) {
        let mut encoded: HashMap<VideoReceive, Bytes> = HashMap::new();
        let sessions: Vec<(u64, VideoReceive)> = self
            .participants
            .iter()
            .filter(|(session, _)| Some(**session) != except)
            .map(|(session, p)| (*session, p.receive))
            .collect();
        for (session, receive) in sessions {
            let frame = encoded
                .entry(receive)
                .or_insert_with(|| encode(&self.index_frame(receive)))
                .clone();
            if let Some(p) = self.participants.get_mut(&session) {
                p.deliver(&self.meeting_id, session, frame);
            }
        }
    }

    fn broadcast(&mut self, except: Option<u64>, frame: &SdkSignalFrame) {
        let frame = encode(frame);
        for (session, p) in &mut self.participants {
            if Some(*session) != except {
                p.deliver(&self.meeting_id, *session, frame.clone());
            }
        }
    }
}

/// What a session may receive, and whether it may publish, by its attendee's capabilities.
fn video_rights(capabilities: Capabilities, content_session: bool) -> (VideoReceive, bool) {
    let receive = VideoReceive {
        camera: capabilities.video.receives(),
        content: capabilities.content.receives(),
    };
    let may_publish = if content_session {
        capabilities.content.sends()
    } else {
        capabilities.video.sends()
    };
    (receive, may_publish)
}

/// A data message kept for attendees who join later, stamped as it was relayed.
struct Kept {
    message: frames::proto::SdkDataMessagePayload,
    /// Clock milliseconds at which it stops being replayed.
    expires_at_ms: i64,
    /// What it counts against the meeting's byte budget (data and topic).
    bytes: usize,
}

/// A meeting's data messages with a `lifetime_ms`, oldest first, within the limits' bounds.
/// Kept apart from the room, which goes away when its last session leaves: a message with a
/// lifetime outlives an empty meeting.
#[derive(Default)]
struct KeptMessages {
    messages: VecDeque<Kept>,
    bytes: usize,
}

impl KeptMessages {
    fn drop_expired(&mut self, now_ms: i64) {
        // Lifetimes differ, so an expired message may sit behind a living one.
        let bytes = &mut self.bytes;
        self.messages.retain(|kept| {
            let alive = kept.expires_at_ms > now_ms;
            if !alive {
                *bytes -= kept.bytes;
            }
            alive
        });
    }

    fn keep(&mut self, kept: Kept, limits: &JoinLimits) {
        if kept.bytes > limits.retained_data_bytes || limits.retained_data_messages == 0 {
            return;
        }
        self.bytes += kept.bytes;
        self.messages.push_back(kept);
        while self.messages.len() > limits.retained_data_messages
            || self.bytes > limits.retained_data_bytes
        {
            match self.messages.pop_front() {
                Some(oldest) => self.bytes -= oldest.bytes,
                None => break,
            }
        }
    }
}

/// A roster member without a session.
#[derive(Debug, Clone)]
struct Guest {
    stream_id: u32,
    attendee_id: String,
    external_user_id: String,
}

/// Guests' audio stream ids count up from here, far above the per-room counter that sessions'
/// ids come from (a room starts again at 1), so that the two never meet.
const FIRST_GUEST_STREAM: u32 = 1 << 30;

/// Why a JOIN found no place in its meeting.
#[derive(Debug, PartialEq, Eq)]
pub enum AtCapacity {
    /// The meeting has as many sessions as it may.
    Sessions(usize),
    /// A content share, with the meeting already showing as many as AWS allows.
    ContentShares(usize),
}

fn encode(frame: &SdkSignalFrame) -> Bytes {
    Bytes::from(frames::encode(frame))
}

impl Room {
    /// An empty room for a meeting.
    pub fn new(meeting_id: &str, reports: RoomReports) -> Room {
        Room {
            meeting_id: meeting_id.to_string(),
            participants: HashMap::new(),
            next_stream_id: 0,
            data_quotas: HashMap::new(),
            video: VideoRoom::default(),
            max_video_publishers: super::video::MAX_VIDEO_PUBLISHERS,
            reports,
            kept: KeptMessages::default(),
            guests: Vec::new(),
            next_guest_stream: FIRST_GUEST_STREAM,
            pinned: Vec::new(),
        }
    }

    /// Nothing here that must outlive the meeting's media: no session, guest, pinned or kept
    /// message. The meeting's task may end once it also has no peer.
    pub fn is_idle(&self) -> bool {
        self.participants.is_empty()
            && self.guests.is_empty()
            && self.pinned.is_empty()
            && self.kept.messages.is_empty()
    }

    /// Sends a data message of the server's own (no attendee sent it: a transcript, a
    /// transcription status) to every session of the meeting. With `pin`, the message also
    /// replaces the meeting's pinned one on its topic, which every session that joins later
    /// gets with the kept data messages.
    pub fn send_server_data(&mut self, message: frames::proto::SdkDataMessagePayload, pin: bool) {
        if pin {
            self.pinned.retain(|kept| kept.topic != message.topic);
            self.pinned.push(message.clone());
        }
        let frame = frames::stamped_data_messages(timestamp_ms(), vec![message]);
        self.broadcast(None, &frame);
    }

    /// Forgets the meeting's pinned message on `topic`: later sessions no longer get it.
    pub fn unpin(&mut self, topic: &str) {
        self.pinned
            .retain(|kept| kept.topic.as_deref() != Some(topic));
    }

    /// The meeting's sessions that send audio of their own (checked in with audio; content
    /// shares left out): (session, attendee id, ExternalUserId).
    pub fn audio_senders(&self) -> Vec<(u64, String, String)> {
        self.participants
            .iter()
            .filter(|(_, p)| !p.content && p.stream_id.is_some())
            .map(|(session, p)| (*session, p.attendee_id.clone(), p.external_user_id.clone()))
            .collect()
    }

    /// Lists an attendee without a session (a capture pipeline's) in the meeting's roster, as
    /// present and muted, for the sessions there now and those that check in later.
    pub fn add_guest(&mut self, attendee_id: &str, external_user_id: &str) {
        if self.guests.iter().any(|g| g.attendee_id == attendee_id) {
            return;
        }
        let stream_id = self.next_guest_stream;
        self.next_guest_stream = self.next_guest_stream.saturating_add(1);
        self.guests.push(Guest {
            stream_id,
            attendee_id: attendee_id.to_string(),
            external_user_id: external_user_id.to_string(),
        });
        let entry = frames::present(stream_id, attendee_id, external_user_id, true);
        self.broadcast(None, &frames::stream_info(timestamp_ms(), vec![entry]));
    }

    /// Takes a guest out of the meeting's roster: the sessions there see it leave.
    pub fn remove_guest(&mut self, attendee_id: &str) {
        let Some(at) = self
            .guests
            .iter()
            .position(|g| g.attendee_id == attendee_id)
        else {
            return;
        };
        let guest = self.guests.remove(at);
        self.broadcast(
            None,
            &frames::stream_info(
                timestamp_ms(),
                vec![frames::departed(guest.stream_id, false)],
            ),
        );
    }

    /// The meeting's pinned server messages, then its living kept data messages, oldest first,
    /// as DATA_MESSAGE frames for a session that has just joined (none when there are none).
    /// Each message keeps its sender and original ingest time; a frame holds at most
    /// `limits.replay_frame_bytes` of them.
    pub fn kept_data_frames(&mut self, now_ms: i64, limits: &JoinLimits) -> Vec<SdkSignalFrame> {
        let mut frames_out = Vec::new();
        if !self.pinned.is_empty() {
            frames_out.push(frames::stamped_data_messages(
                timestamp_ms(),
                self.pinned.clone(),
            ));
        }
        self.kept.drop_expired(now_ms);
        let mut batch = Vec::new();
        let mut batch_bytes = 0;
        for kept in &self.kept.messages {
            if !batch.is_empty() && batch_bytes + kept.bytes > limits.replay_frame_bytes {
                frames_out.push(frames::stamped_data_messages(
                    timestamp_ms(),
                    std::mem::take(&mut batch),
                ));
                batch_bytes = 0;
            }
            batch_bytes += kept.bytes;
            batch.push(kept.message.clone());
        }
        if !batch.is_empty() {
            frames_out.push(frames::stamped_data_messages(timestamp_ms(), batch));
        }
        frames_out
    }

    /// How many data messages the meeting keeps for late joiners.
    pub fn kept_data_count(&self) -> usize {
        self.kept.messages.len()
    }

    /// Registers a joined session and returns how many sessions the meeting now has, unless the
    /// meeting already has `max_sessions` (or, for a content share, as many shares as AWS
    /// allows). An older session of the same attendee is told AUDIO_STATUS 301 (joined from
    /// another device) and closed; it does not count against the cap, since the newcomer
    /// replaces it.
    pub fn join(
        &mut self,
        session: u64,
        attendee_id: &str,
        external_user_id: &str,
        outlet: Outlet,
        max_sessions: usize,
    ) -> Result<usize, AtCapacity> {
        let (_, content) = split_content(attendee_id);
        let others = |content_only: bool| {
            self.participants
                .values()
                .filter(|p| p.attendee_id != attendee_id && (p.content || !content_only))
                .count()
        };
        let sessions = others(false);
        if sessions >= max_sessions {
            return Err(AtCapacity::Sessions(sessions));
        }
        let shares = others(true);
        if content && shares >= MAX_CONTENT_SHARES {
            return Err(AtCapacity::ContentShares(shares));
        }
        let first_session = !self
            .participants
            .values()
            .any(|p| p.attendee_id == attendee_id);
        if first_session {
            self.reports.observers.emit(
                &self.meeting_id,
                RoomEvent::AttendeeJoined {
                    attendee_id: attendee_id.to_string(),
                    external_user_id: external_user_id.to_string(),
                },
            );
        }
        for p in self
            .participants
            .values()
            .filter(|p| p.attendee_id == attendee_id)
        {
            p.outlet.end(
                Some(frames::audio_status(
                    timestamp_ms(),
                    audio_status::JOINED_FROM_ANOTHER_DEVICE,
                )),
                1000,
                "joined from another device",
            );
        }
        self.reports.sessions.fetch_add(1, Ordering::Relaxed);
        self.participants.insert(
            session,
            Participant {
                attendee_id: attendee_id.to_string(),
                external_user_id: external_user_id.to_string(),
                stream_id: None,
                muted: false,
                outlet,
                slow: false,
                content,
                receive: VideoReceive::ALL,
                may_publish: true,
            },
        );
        // The attendee count in INDEX changed; it matters only to those sending video.
        if !content && !self.video.is_empty() {
            self.broadcast_index(Some(session));
        }
        Ok(self.participants.len())
    }

    /// Narrows what video a session may receive and publish to its attendee's capabilities.
    pub fn set_video_rights(&mut self, session: u64, capabilities: Capabilities) {
        if let Some(p) = self.participants.get_mut(&session) {
            (p.receive, p.may_publish) = video_rights(capabilities, p.content);
        }
    }

    /// Applies UpdateAttendeeCapabilities to the live sessions of the targeted attendees (their
    /// content shares included): a publisher that may no longer send is stopped and told 206
    /// (view only), and everyone gets an INDEX that reflects the change.
    pub fn capabilities_changed(&mut self, target: &CapabilityTarget, capabilities: Capabilities) {
        let mut changed = false;
        let mut stopped = Vec::new();
        for (session, p) in self.participants.iter_mut() {
            let (attendee, _) = split_content(&p.attendee_id);
            if !target.includes(attendee) {
                continue;
            }
            let (receive, may_publish) = video_rights(capabilities, p.content);
            changed |= receive != p.receive;
            (p.receive, p.may_publish) = (receive, may_publish);
            if !may_publish {
                stopped.push(*session);
            }
        }
        for session in stopped {
            if self.stop_session_video(session) {
                changed = true;
                if let Some(p) = self.participants.get_mut(&session) {
                    let frame = encode(&frames::view_only(
                        timestamp_ms(),
                        "the attendee's capabilities no longer include sending this video",
                    ));
                    p.deliver(&self.meeting_id, session, frame);
                }
            }
        }
        if changed {
            self.broadcast_index(None);
        }
    }

    /// The INDEX for a session that has just joined.
    pub fn index_for(&self, session: u64) -> SdkSignalFrame {
        let receive = self
            .participants
            .get(&session)
            .map_or(VideoReceive::ALL, |p| p.receive);
        self.index_frame(receive)
    }

    /// Publishes a session's camera (or content share) from the video descriptors of its
    /// SUBSCRIBE and tells the meeting when INDEX changed. Returns the allocations to
    /// acknowledge, or why the session may only view.
    pub fn publish_video(
        &mut self,
        session: u64,
        descriptors: &[&frames::proto::SdkStreamDescriptor],
    ) -> Result<Vec<frames::proto::SdkStreamAllocation>, ViewOnly> {
        let me = self
            .participants
            .get(&session)
            .ok_or(ViewOnly("the session has left"))?;
        if !me.may_publish {
            let attendee_id = me.attendee_id.clone();
            self.stop_video(session, &attendee_id);
            return Err(ViewOnly(
                "the attendee's capabilities do not include sending this video",
            ));
        }
        let (attendee_id, external_user_id, content) = (
            me.attendee_id.clone(),
            me.external_user_id.clone(),
            me.content,
        );
        let max = self.max_video_publishers;
        let started = !self.video.publishes(session);
        let (allocations, changed) = self.video.publish(
            session,
            &attendee_id,
            &external_user_id,
            content,
            descriptors,
            max,
        )?;
        if started {
            self.report_video(&attendee_id, true);
        }
        if changed {
            self.broadcast_index(None);
        }
        Ok(allocations)
    }

    /// The meeting's cameras and content shares, each by its best layer's stream.
    pub fn recordable_video(&self) -> Vec<super::video::RecordableVideo> {
        self.video.recordable()
    }

    /// BITRATES to every session of the meeting: the measured rate of every published stream in
    /// `streams`, and each session's own downlink estimate (kbit/s) where the media plane has
    /// one.
    pub fn send_bitrates(&mut self, streams: Vec<(u32, u32)>, estimates: &[(u64, u32)]) {
        let published = self.video.streams();
        let streams: Vec<(u32, u32)> = streams
            .into_iter()
            .filter(|(stream, _)| published.contains(stream))
            .collect();
        if streams.is_empty() {
            return;
        }
        let now = timestamp_ms();
        let shared = encode(&frames::bitrates(now, streams.clone(), None));
        for (session, participant) in &mut self.participants {
            let frame = match estimates.iter().find(|(s, _)| s == session) {
                Some((_, kbps)) => encode(&frames::bitrates(now, streams.clone(), Some(*kbps))),
                None => shared.clone(),
            };
            participant.deliver(&self.meeting_id, *session, frame);
        }
    }

    /// Stops a session's video; the meeting gets an INDEX without it.
    pub fn unpublish_video(&mut self, session: u64) {
        if self.stop_session_video(session) {
            self.broadcast_index(None);
        }
    }

    /// A SUBSCRIBE's `receive_stream_ids` with every stream the session may not receive now (gone,
    /// or of a kind its capabilities exclude) replaced by 0, and at most `limit` streams kept.
    pub fn receivable_streams(&self, session: u64, wanted: &[u32], limit: usize) -> Vec<u32> {
        let receive = self
            .participants
            .get(&session)
            .map_or(VideoReceive::ALL, |p| p.receive);
        let mut kept = 0;
        wanted
            .iter()
            .map(|&stream| {
                if stream != 0 && kept < limit && self.video.receivable(stream, receive) {
                    kept += 1;
                    stream
                } else {
                    0
                }
            })
            .collect()
    }

    /// Audio check-in: gives the session a stream id, sends it the whole roster and sends
    /// everyone else the newcomer. Checking in twice (renegotiation) changes nothing.
    pub fn check_in(&mut self, session: u64, muted: bool) {
        let next = self.next_stream_id + 1;
        let Some(me) = self.participants.get_mut(&session) else {
            return;
        };
        if me.stream_id.is_some() {
            return;
        }
        me.stream_id = Some(next);
        me.muted = muted;
        let entry = frames::present(next, &me.attendee_id, &me.external_user_id, muted);
        self.next_stream_id = next;
        let sessions = self.participants.values().filter_map(|p| {
            p.stream_id
                .map(|id| frames::present(id, &p.attendee_id, &p.external_user_id, p.muted))
        });
        let guests = self.guests.iter().map(|guest| {
            frames::present(
                guest.stream_id,
                &guest.attendee_id,
                &guest.external_user_id,
                true,
            )
        });
        let roster: Vec<_> = sessions.chain(guests).collect();
        if let Some(me) = self.participants.get_mut(&session) {
            me.deliver(
                &self.meeting_id,
                session,
                encode(&frames::stream_info(timestamp_ms(), roster)),
            );
        }
        self.broadcast(
            Some(session),
            &frames::stream_info(timestamp_ms(), vec![entry]),
        );
    }

    /// AUDIO_CONTROL: the session's attendee muted or unmuted; everyone sees it in the roster.
    pub fn set_muted(&mut self, session: u64, muted: bool) {
        let Some(me) = self.participants.get_mut(&session) else {
            return;
        };
        let changed = me.muted != muted;
        me.muted = muted;
        let stream = me.stream_id;
        if changed {
            let attendee_id = me.attendee_id.clone();
            self.reports.observers.emit(
                &self.meeting_id,
                if muted {
                    RoomEvent::Muted { attendee_id }
                } else {
                    RoomEvent::Unmuted { attendee_id }
                },
            );
        }
        if let Some(stream) = stream {
            self.broadcast(
                None,
                &frames::stream_info(timestamp_ms(), vec![frames::muted(stream, muted)]),
            );
        }
    }

    /// Relays realtime data messages from one session to the others in its meeting (the sending
    /// client delivers its own messages locally), as Chime does: a message that is too big, has
    /// a topic the SDK would not send, or finds its attendee's token bucket empty is not relayed
    /// but returned in the frame this gives back, for the sender, stamped as throttled. Messages
    /// past `data_messages_per_frame` are dropped without an answer, so that one frame cannot
    /// make the server answer with thousands.
    ///
    /// Relayed messages with a `lifetime_ms` are also kept (see [`Room::kept_data_frames`])
    /// until `now_ms` (the server clock's milliseconds, also their ingest time) plus their
    /// lifetime.
    pub fn relay_data(
        &mut self,
        session: u64,
        mut messages: Vec<frames::proto::SdkDataMessagePayload>,
        limits: &JoinLimits,
        now_ms: i64,
    ) -> Option<SdkSignalFrame> {
        let meeting_id = self.meeting_id.as_str();
        let sender = self.participants.get(&session)?;
        let (attendee_id, external_user_id) =
            (sender.attendee_id.clone(), sender.external_user_id.clone());
        let quota = self
            .data_quotas
            .entry(attendee_id.clone())
            .or_insert_with(|| DataQuota {
                bucket: TokenBucket::new(
                    limits.data_messages_per_second,
                    limits.data_message_burst,
                ),
                refused: 0,
                last_report: None,
            });
        if messages.len() > limits.data_messages_per_frame {
            let extra = messages.len() - limits.data_messages_per_frame;
            quota.refused(
                meeting_id,
                &attendee_id,
                extra as u64,
                "past the per-frame cap, dropped",
            );
            messages.truncate(limits.data_messages_per_frame);
        }
        let mut relayed = Vec::with_capacity(messages.len());
        let mut refused = Vec::new();
        for message in messages {
            let refusal = limits
                .data_message_refusal(&message)
                .or_else(|| (!quota.bucket.try_take()).then_some("rate limit"));
            match refusal {
                Some(reason) => {
                    quota.refused(meeting_id, &attendee_id, 1, reason);
                    refused.push(message);
                }
                None => relayed.push(message),
            }
        }
        if !relayed.is_empty() {
            if self.reports.observers.wants(meeting_id) {
                for message in &relayed {
                    self.reports.observers.emit(
                        meeting_id,
                        RoomEvent::Data {
                            topic: message.topic.clone().unwrap_or_default(),
                            data: message.data.clone().unwrap_or_default(),
                            sender_attendee_id: attendee_id.clone(),
                            sender_external_user_id: external_user_id.clone(),
                        },
                    );
                }
            }
            let frame = frames::data_messages(
                timestamp_ms(),
                now_ms,
                relayed,
                &attendee_id,
                &external_user_id,
            );
            self.broadcast(Some(session), &frame);
            self.keep_data(&frame, limits, now_ms);
        }
        (!refused.is_empty()).then(|| {
            frames::throttled_data_messages(
                timestamp_ms(),
                refused,
                &attendee_id,
                &external_user_id,
            )
        })
    }

    /// Keeps the relayed messages of `frame` that have a lifetime.
    fn keep_data(&mut self, frame: &SdkSignalFrame, limits: &JoinLimits, now_ms: i64) {
        let Some(data) = &frame.data_message else {
            return;
        };
        let living = data.messages.iter().filter_map(|message| {
            let lifetime = message.lifetime_ms.filter(|ms| *ms > 0)?;
            Some(Kept {
                message: message.clone(),
                expires_at_ms: now_ms.saturating_add(i64::from(lifetime)),
                bytes: message.data.as_ref().map_or(0, Vec::len)
                    + message.topic.as_ref().map_or(0, String::len),
            })
        });
        let mut living = living.peekable();
        if living.peek().is_none() {
            return;
        }
        self.kept.drop_expired(now_ms);
        for message in living {
            self.kept.keep(message, limits);
        }
    }

    /// Removes a session; the others see its stream leave (`dropped` for an unexpected end).
    pub fn leave(&mut self, session: u64, dropped: bool) {
        let Some(gone) = self.participants.remove(&session) else {
            return;
        };
        self.reports.sessions.fetch_sub(1, Ordering::Relaxed);
        // Its video leaves every viewer's INDEX (no frozen tile), and the attendee count
        // changed for those who publish.
        if self.stop_video(session, &gone.attendee_id) || (!gone.content && !self.video.is_empty())
        {
            self.broadcast_index(None);
        }
        if let Some(stream) = gone.stream_id {
            self.broadcast(
                None,
                &frames::stream_info(timestamp_ms(), vec![frames::departed(stream, dropped)]),
            );
        }
        if !self
            .participants
            .values()
            .any(|p| p.attendee_id == gone.attendee_id)
        {
            self.data_quotas.remove(&gone.attendee_id);
            self.reports.observers.emit(
                &self.meeting_id,
                RoomEvent::AttendeeLeft {
                    attendee_id: gone.attendee_id.clone(),
                    external_user_id: gone.external_user_id.clone(),
                },
            );
        }
    }

    /// Ends every session of the attendee, its content share included, with `status` (411 after
    /// DeleteAttendee).
    pub fn remove_attendee(&self, attendee_id: &str, status: u32) {
        let content = content_attendee_id(attendee_id);
        for p in self
            .participants
            .values()
            .filter(|p| p.attendee_id == attendee_id || p.attendee_id == content)
        {
            p.outlet.end(
                Some(frames::audio_status(timestamp_ms(), status)),
                1000,
                "attendee removed",
            );
        }
    }

    /// Ends every session of the meeting with AUDIO_STATUS 410 (MeetingEnded, close 4410, which
    /// the client takes as a clean end), and forgets its kept data messages, guests and pinned
    /// messages.
    pub fn end_meeting(&mut self, reason: &'static str) {
        self.kept = KeptMessages::default();
        self.guests.clear();
        self.pinned.clear();
        for p in self.participants.values() {
            p.outlet.end(
                Some(frames::audio_status(
                    timestamp_ms(),
                    audio_status::MEETING_ENDED,
                )),
                frames::close_code::MEETING_ENDED,
                reason,
            );
        }
    }

    /// Whether the attendee has a session in the meeting other than `session`.
    pub fn has_other_session(&self, attendee_id: &str, session: u64) -> bool {
        self.participants
            .iter()
            .any(|(id, p)| *id != session && p.attendee_id == attendee_id)
    }

    /// Sends the checked-in sessions an AUDIO_METADATA frame built from the media's current
    /// levels (session → minus-dB volume, None for no recent level).
    pub fn send_volume_indicators(&mut self, levels: &HashMap<u64, Option<u8>>) {
        let states: Vec<_> = self
            .participants
            .iter()
            .filter_map(|(session, p)| {
                let stream = p.stream_id?;
                let volume = levels.get(session)?;
                Some(frames::proto::SdkAudioAttendeeState {
                    audio_stream_id: Some(stream),
                    volume: volume.map(u32::from),
                    muted: Some(p.muted),
                    signal_strength: Some(2),
                })
            })
            .collect();
        if states.is_empty() {
            return;
        }
        // Only to checked-in sessions: they have had the roster that defines each stream id
        // (AUDIO_STREAM_ID_INFO); a session that has not checked in yet (or a content share,
        // which never does) would warn "volume indicator stream id N seen before being
        // defined".
        let frame = encode(&frames::audio_metadata(timestamp_ms(), states));
        for (session, p) in &mut self.participants {
            if p.stream_id.is_some() {
                p.deliver(&self.meeting_id, *session, frame.clone());
            }
        }
    }

    /// Whether any session has checked in with audio (the volume indicators have someone to
    /// reach).
    pub fn has_audio(&self) -> bool {
        self.participants.values().any(|p| p.stream_id.is_some())
    }

    /// Closes every session of the meeting with `code`, without a status first.
    pub fn close_all(&self, code: u16, reason: &'static str) {
        for p in self.participants.values() {
            p.outlet.end(None, code, reason);
        }
    }

    /// Sessions told to close as slow consumers whose tasks have not ended yet.
    pub fn slow_consumers(&self) -> usize {
        self.participants.values().filter(|p| p.slow).count()
    }

    /// Sessions connected.
    pub fn session_count(&self) -> usize {
        self.participants.len()
    }

    /// Attendees connected (content shares and second devices not counted).
    pub fn live_attendees(&self) -> usize {
        self.attendee_count() as usize
    }

    /// Every attendee with a session here, content shares left out (they end with their
    /// attendee), sorted, each once.
    pub fn connected_attendees(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .participants
            .values()
            .filter(|p| !p.content)
            .map(|p| p.attendee_id.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The connected sessions as the admin page shows them.
    pub fn tracks(&self) -> Vec<SessionTracks> {
        self.participants
            .iter()
            .map(|(session, p)| SessionTracks {
                attendee_id: p.attendee_id.clone(),
                audio: p.stream_id.is_some(),
                muted: p.muted,
                video: self.video.publishes(*session),
            })
            .collect()
    }
}

impl Drop for Room {
    /// A room dropped with sessions in it (its task stopped) no longer counts them.
    fn drop(&mut self) {
        self.reports
            .sessions
            .fetch_sub(self.participants.len(), Ordering::Relaxed);
    }
}

/// What one connected session sends, for the admin page (camera and content come with video).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SessionTracks {
    pub attendee_id: String,
    /// Checked in with audio.
    pub audio: bool,
    pub muted: bool,
    /// Publishes video: a camera, or for a `#content` session the shared screen.
    pub video: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::capabilities::MediaCapability;
    use crate::join::frames::VIEW_ONLY_STATUS;
    use crate::join::frames::proto::{SdkDataMessagePayload, sdk_signal_frame::Type};

    fn room() -> Room {
        Room::new("m", RoomReports::default())
    }

    fn join(
        room: &mut Room,
        session: u64,
        attendee: &str,
        user: &str,
        max: usize,
    ) -> (Result<usize, AtCapacity>, Inlet) {
        let (outlet, inlet) = outlet(8);
        (room.join(session, attendee, user, outlet, max), inlet)
    }

    fn kind(order: &Outbound) -> Option<i32> {
        match order {
            Outbound::Frame(bytes) => Some(frames::decode(bytes).expect("decodes").r#type),
            Outbound::Close(..) => None,
        }
    }

    #[test]
    fn a_full_meeting_refuses_newcomers_but_not_a_second_device() {
        let mut rooms = room();
        let (first, _a) = join(&mut rooms, 1, "a", "José", 2);
        let (second, _b) = join(&mut rooms, 2, "b", "Zoë", 2);
        assert_eq!((first, second), (Ok(1), Ok(2)));
        let (third, _c) = join(&mut rooms, 3, "c", "Renée", 2);
        assert_eq!(third, Err(AtCapacity::Sessions(2)));
        assert_eq!(rooms.session_count(), 2, "the refused session is not kept");
        // The same attendee from another device replaces its session instead of adding one.
        let (again, _a2) = join(&mut rooms, 4, "a", "José", 2);
        assert_eq!(again, Ok(3));
        // A refusal in a meeting nobody is in leaves the room idle, free to go.
        let mut empty = Room::new("empty", RoomReports::default());
        let (way_in, _inlet) = outlet(8);
        assert!(empty.join(9, "z", "Zoë", way_in, 0).is_err());
        assert!(empty.is_idle());
    }

    #[test]
    fn volume_indicators_reach_only_sessions_that_know_the_stream_ids() {
        let mut rooms = room();
        let (_, mut talker) = join(&mut rooms, 1, "a", "José", 10);
        let (_, mut content) = join(&mut rooms, 2, "a#content", "José", 10);
        rooms.check_in(1, false);
        let roster = talker.queue.try_recv().expect("the roster");
        assert_eq!(kind(&roster), Some(Type::AudioStreamIdInfo as i32));
        // The content session never checks in, so it never gets the roster either.
        while content.queue.try_recv().is_ok() {}
        rooms.send_volume_indicators(&HashMap::from([(1, Some(3)), (2, None)]));
        let metadata = talker.queue.try_recv().expect("volume indicators");
        assert_eq!(kind(&metadata), Some(Type::AudioMetadata as i32));
        assert!(content.queue.try_recv().is_err(), "nothing it could place");
    }

    /// The roster entries of an AUDIO_STREAM_ID_INFO frame: (stream, attendee, present).
    fn roster(order: &Outbound) -> Vec<(u32, String, bool)> {
        let Outbound::Frame(bytes) = order else {
            return Vec::new();
        };
        let frame = frames::decode(bytes).expect("decodes");
        frame
            .audio_stream_id_info
            .map(|info| {
                info.streams
                    .into_iter()
                    .map(|s| {
                        let present = s.attendee_id.is_some();
                        (
                            s.audio_stream_id.unwrap_or_default(),
                            s.attendee_id.unwrap_or_default(),
                            present,
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn a_guest_is_in_every_roster_without_a_session_of_its_own() {
        let mut rooms = room();
        // Added before anyone is in the meeting: kept for those who come.
        rooms.add_guest("pipeline", "aws:MediaPipeline-1");
        let (_, mut ana) = join(&mut rooms, 1, "a", "«Ana»", 10);
        rooms.check_in(1, false);
        let first = roster(&ana.queue.try_recv().expect("the roster"));
        assert!(
            first.iter().any(|(stream, who, present)| who == "pipeline"
                && *present
                && *stream >= FIRST_GUEST_STREAM),
            "{first:?}"
        );
        assert!(first.iter().any(|(_, who, _)| who == "a"));
        // Removed: the sessions there see it leave.
        rooms.remove_guest("pipeline");
        let left = roster(&ana.queue.try_recv().expect("a departure"));
        assert!(
            matches!(left.as_slice(), [(stream, _, false)] if *stream >= FIRST_GUEST_STREAM),
            "{left:?}"
        );
        rooms.remove_guest("pipeline");
        assert!(ana.queue.try_recv().is_err(), "removed once");
        assert_eq!(rooms.session_count(), 1, "a guest is not a session");
    }

    #[test]
    fn a_session_that_does_not_read_is_dropped_not_buffered() {
        let mut rooms = room();
        let (_, mut slow) = join(&mut rooms, 1, "a", "José", 10);
        let (_, _talker) = join(&mut rooms, 2, "b", "Zoë", 10);
        rooms.check_in(2, false);
        for muted in (0..20).map(|i| i % 2 == 0) {
            rooms.set_muted(2, muted);
        }
        assert_eq!(slow.queue.len(), 8, "the queue stops at its capacity");
        assert_eq!(rooms.slow_consumers(), 2, "neither session reads here");
        match slow.control.try_recv() {
            Ok(Outbound::Close(code, reason)) => {
                assert_eq!((code, reason), (close_code::SLOW_CONSUMER, "slow consumer"))
            }
            other => panic!("expected a slow-consumer close, got {other:?}"),
        }
        assert!(slow.control.try_recv().is_err(), "told once");
    }

    #[test]
    fn a_kick_keeps_its_status_before_its_close_even_when_the_queue_is_full() {
        let mut rooms = room();
        let (_, mut roomy) = join(&mut rooms, 1, "a", "José", 10);
        rooms.remove_attendee("a", audio_status::ATTENDEE_REMOVED);
        let first = roomy.queue.try_recv().expect("status");
        assert_eq!(kind(&first), Some(Type::AudioStatus as i32));
        assert!(matches!(
            roomy.queue.try_recv(),
            Ok(Outbound::Close(1000, "attendee removed"))
        ));

        let (_, mut full) = join(&mut rooms, 2, "b", "Zoë", 10);
        let (_, _other) = join(&mut rooms, 3, "c", "Renée", 10);
        rooms.check_in(2, false);
        for muted in (0..6).map(|i| i % 2 == 0) {
            rooms.set_muted(2, muted);
        }
        assert_eq!(
            full.queue.len(),
            7,
            "one slot: too few for status and close"
        );
        rooms.remove_attendee("b", audio_status::ATTENDEE_REMOVED);
        let status = full.control.try_recv().expect("status on the control path");
        assert_eq!(kind(&status), Some(Type::AudioStatus as i32));
        assert!(matches!(
            full.control.try_recv(),
            Ok(Outbound::Close(1000, "attendee removed"))
        ));
    }

    fn camera_descriptor() -> frames::proto::SdkStreamDescriptor {
        frames::proto::SdkStreamDescriptor {
            track_label: Some("AmazonChimeExpressVideo".into()),
            max_bitrate_kbps: Some(1400),
            media_type: Some(frames::proto::SdkStreamMediaType::Video as i32),
            ..Default::default()
        }
    }

    /// The sources of every INDEX waiting in a session's queue, oldest first.
    fn indexes(inlet: &mut Inlet) -> Vec<Vec<(String, u32)>> {
        let mut seen = Vec::new();
        while let Ok(order) = inlet.queue.try_recv() {
            if let Outbound::Frame(bytes) = order {
                let frame = frames::decode(&bytes).expect("decodes");
                if let Some(index) = frame.index {
                    seen.push(
                        index
                            .sources
                            .iter()
                            .map(|s| {
                                assert_eq!(
                                    s.media_type,
                                    Some(frames::proto::SdkStreamMediaType::Video as i32)
                                );
                                (
                                    s.attendee_id.clone().unwrap_or_default(),
                                    s.stream_id.unwrap_or_default(),
                                )
                            })
                            .collect(),
                    );
                }
            }
        }
        seen
    }

    #[test]
    fn every_video_change_sends_everyone_the_whole_index() {
        let mut rooms = room();
        let (_, mut jose) = join(&mut rooms, 1, "a", "José", 10);
        let (_, mut zoe) = join(&mut rooms, 2, "b", "Zoë", 10);
        let camera = camera_descriptor();
        let allocations = rooms.publish_video(1, &[&camera]).expect("publishes");
        let stream = allocations[0].stream_id.expect("a stream");
        assert_eq!(indexes(&mut zoe), [vec![("a".to_string(), stream)]]);
        assert_eq!(
            indexes(&mut jose),
            [vec![("a".to_string(), stream)]],
            "the publisher gets it too"
        );
        // Zoë shares her screen: the next INDEX lists both, not only the newcomer.
        let (_, mut share) = join(&mut rooms, 3, "b#content", "Zoë", 10);
        let shared = rooms.publish_video(3, &[&camera]).expect("shares");
        let share_stream = shared[0].stream_id.expect("a stream");
        assert_eq!(
            indexes(&mut jose).last().map(Vec::len),
            Some(2),
            "a full snapshot"
        );
        assert_eq!(
            rooms.receivable_streams(2, &[0, stream, share_stream, 999], 25),
            [0, stream, share_stream, 0]
        );
        // José leaves: his camera is gone from everyone's INDEX at once (no frozen tile).
        rooms.leave(1, false);
        assert_eq!(
            indexes(&mut zoe).last().cloned(),
            Some(vec![("b#content".to_string(), share_stream)])
        );
        // The content share ends with its attendee.
        rooms.remove_attendee("b", audio_status::ATTENDEE_REMOVED);
        assert!(share.queue.try_recv().is_ok(), "told to end");
        while share.queue.try_recv().is_ok() {}
    }

    #[test]
    fn cameras_and_shares_starting_and_stopping_are_reported_once_each() {
        let (sink, mut reported) = mpsc::channel(16);
        let reports = RoomReports {
            activity: Some(sink),
            ..RoomReports::default()
        };
        let mut rooms = Room::new("m", reports);
        let (_, _a) = join(&mut rooms, 1, "a", "José", 10);
        let (_, _share) = join(&mut rooms, 2, "a#content", "José", 10);
        let camera = camera_descriptor();
        for session in [1, 1, 2] {
            rooms.publish_video(session, &[&camera]).expect("publishes");
        }
        rooms.unpublish_video(1);
        rooms.unpublish_video(1);
        rooms.leave(2, false);
        let mut seen = Vec::new();
        while let Ok(activity) = reported.try_recv() {
            seen.push((activity.attendee_id, activity.started));
        }
        assert_eq!(
            seen,
            [
                ("a".to_string(), true),
                ("a#content".to_string(), true),
                ("a".to_string(), false),
                ("a#content".to_string(), false),
            ],
            "a renegotiation or a second stop reports nothing"
        );
    }

    #[test]
    fn capabilities_narrow_what_a_session_sees_and_shares_are_capped_at_two() {
        let mut rooms = room();
        let (_, _a) = join(&mut rooms, 1, "a", "José", 10);
        let (_, mut viewer) = join(&mut rooms, 2, "b", "Zoë", 10);
        rooms.set_video_rights(
            2,
            Capabilities {
                audio: MediaCapability::SendReceive,
                video: MediaCapability::Send,
                content: MediaCapability::SendReceive,
            },
        );
        let camera = camera_descriptor();
        let stream = rooms.publish_video(1, &[&camera]).expect("publishes")[0]
            .stream_id
            .unwrap_or_default();
        assert_eq!(indexes(&mut viewer), [Vec::new()], "no camera sources");
        assert_eq!(rooms.receivable_streams(2, &[stream], 25), [0]);

        let (first, _s1) = join(&mut rooms, 3, "a#content", "José", 10);
        let (second, _s2) = join(&mut rooms, 4, "b#content", "Zoë", 10);
        assert!(first.is_ok() && second.is_ok());
        let (third, _s3) = join(&mut rooms, 5, "c#content", "Renée", 10);
        assert_eq!(third, Err(AtCapacity::ContentShares(2)));
        // The same attendee sharing again replaces its share instead.
        let (again, _s4) = join(&mut rooms, 6, "a#content", "José", 10);
        assert!(again.is_ok());
    }

    #[test]
    fn a_publisher_whose_video_send_is_revoked_is_stopped_and_told_view_only() {
        let mut rooms = room();
        let (_, mut publisher) = join(&mut rooms, 1, "a", "José", 10);
        let (_, mut viewer) = join(&mut rooms, 2, "b", "Zoë", 10);
        let camera = camera_descriptor();
        rooms.publish_video(1, &[&camera]).expect("publishes");
        while publisher.queue.try_recv().is_ok() {}
        assert_eq!(indexes(&mut viewer).last().map(Vec::len), Some(1));
        let receive_only = Capabilities {
            audio: MediaCapability::SendReceive,
            video: MediaCapability::Receive,
            content: MediaCapability::Receive,
        };
        rooms.capabilities_changed(&CapabilityTarget::Attendee("a".into()), receive_only);
        assert_eq!(indexes(&mut viewer), [Vec::new()], "its camera is gone");
        let Ok(Outbound::Frame(bytes)) = publisher.queue.try_recv() else {
            panic!("the publisher is told")
        };
        let told = frames::decode(&bytes).expect("decodes").error;
        assert_eq!(told.and_then(|e| e.status), Some(VIEW_ONLY_STATUS));
        // Its next SUBSCRIBE with the camera still on is refused the same way.
        assert!(rooms.publish_video(1, &[&camera]).is_err());
    }

    fn data(topic: &str, len: usize) -> SdkDataMessagePayload {
        SdkDataMessagePayload {
            topic: Some(topic.into()),
            data: Some(vec![b'x'; len]),
            lifetime_ms: Some(0),
            ..Default::default()
        }
    }

    #[test]
    fn data_messages_past_the_burst_come_back_throttled() {
        let mut rooms = room();
        let limits = JoinLimits::default();
        let (_, _sender) = join(&mut rooms, 1, "a", "José", 10);
        let (way_in, mut receiver) = outlet(1000);
        rooms.join(2, "b", "Zoë", way_in, 10).expect("joins");
        let mut returned = 0;
        for _ in 0..300 {
            if let Some(back) = rooms.relay_data(1, vec![data("chat", 10)], &limits, 1_000) {
                let messages = back.data_message.expect("data").messages;
                assert_eq!(messages[0].ingest_time_ns, Some(0));
                assert_eq!(messages[0].sender_external_user_id.as_deref(), Some("José"));
                returned += messages.len();
            }
        }
        assert_eq!((receiver.queue.len(), returned), (200, 100));

        // Another attendee has a bucket of its own; past ten messages a frame, the extras get
        // no answer at all, and invalid messages come back whatever the bucket holds.
        while receiver.queue.try_recv().is_ok() {}
        let (_, mut first) = join(&mut rooms, 3, "c", "Renée", 10);
        let mut many: Vec<_> = (0..50).map(|_| data("chat", 1)).collect();
        many[0] = data("chat", 2049);
        many[1] = data(&"x".repeat(37), 1);
        let back = rooms.relay_data(2, many, &limits, 1_000).expect("returned");
        assert_eq!(back.data_message.map(|d| d.messages.len()), Some(2));
        let Ok(Outbound::Frame(bytes)) = first.queue.try_recv() else {
            panic!("relayed")
        };
        let frame = frames::decode(&bytes).expect("decodes");
        let relayed = frame.data_message.expect("data").messages;
        assert_eq!(relayed.len(), 8);
        assert_eq!(relayed[0].sender_external_user_id.as_deref(), Some("Zoë"));
        assert!(relayed[0].ingest_time_ns.unwrap_or_default() > 0);
    }

    #[test]
    fn a_meeting_with_room_keeps_no_quota_after_its_attendee_leaves() {
        let mut rooms = room();
        let (_, _a) = join(&mut rooms, 1, "a", "José", 10);
        let (_, _b) = join(&mut rooms, 2, "b", "Zoë", 10);
        rooms.relay_data(1, vec![data("chat", 1)], &JoinLimits::default(), 1_000);
        rooms.leave(1, false);
        assert_eq!(rooms.data_quotas.len(), 0);
    }

    fn living(topic: &str, len: usize, lifetime_ms: u32) -> SdkDataMessagePayload {
        SdkDataMessagePayload {
            lifetime_ms: Some(lifetime_ms),
            ..data(topic, len)
        }
    }

    fn replayed(frames: &[SdkSignalFrame]) -> Vec<SdkDataMessagePayload> {
        frames
            .iter()
            .flat_map(|f| f.data_message.clone().expect("data").messages)
            .collect()
    }

    #[test]
    fn data_messages_with_a_lifetime_are_replayed_until_they_expire() {
        let mut rooms = room();
        let limits = JoinLimits::default();
        let (_, _a) = join(&mut rooms, 1, "a", "José", 10);
        let relayed = [
            living("short", 3, 1_000),
            living("long", 4, 60_000),
            data("never", 5),
        ];
        assert!(
            rooms
                .relay_data(1, relayed.to_vec(), &limits, 10_000)
                .is_none()
        );
        assert_eq!(rooms.kept_data_count(), 2, "lifetime 0 is not kept");
        // Everyone leaves: the messages outlive the room.
        rooms.leave(1, false);
        let mut at = |now| replayed(&rooms.kept_data_frames(now, &limits));
        let early = at(10_999);
        assert_eq!(
            early
                .iter()
                .map(|m| m.topic.as_deref().unwrap_or_default())
                .collect::<Vec<_>>(),
            ["short", "long"],
            "oldest first"
        );
        assert_eq!(early[0].sender_attendee_id.as_deref(), Some("a"));
        assert_eq!(early[0].sender_external_user_id.as_deref(), Some("José"));
        assert_eq!(early[0].ingest_time_ns, Some(10_000 * 1_000_000));
        let later = at(11_000);
        assert_eq!(later.len(), 1, "the short one expired at 11 000 ms");
        assert_eq!(later[0].topic.as_deref(), Some("long"));
        assert!(at(70_000).is_empty());
        assert_eq!(rooms.kept_data_count(), 0, "nothing left behind");
    }

    #[test]
    fn kept_data_messages_are_bounded_oldest_dropped_first() {
        let mut rooms = room();
        let limits = JoinLimits {
            retained_data_messages: 3,
            retained_data_bytes: 1_000,
            replay_frame_bytes: 250,
            data_message_burst: 1_000.0,
            ..JoinLimits::default()
        };
        let (_, _a) = join(&mut rooms, 1, "a", "Zoë", 10);
        for topic in ["t1", "t2", "t3", "t4"] {
            rooms.relay_data(1, vec![living(topic, 8, 60_000)], &limits, 0);
        }
        let topics = |frames: &[SdkSignalFrame]| {
            replayed(frames)
                .into_iter()
                .map(|m| m.topic.unwrap_or_default())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            topics(&rooms.kept_data_frames(1, &limits)),
            ["t2", "t3", "t4"],
            "at most three messages"
        );
        // Bytes: two messages of 400 and 500 fit in 1 000; a third of 300 pushes out the first.
        for (topic, len) in [("b1", 398), ("b2", 498), ("b3", 298)] {
            rooms.relay_data(1, vec![living(topic, len, 60_000)], &limits, 0);
        }
        let frames = rooms.kept_data_frames(1, &limits);
        assert_eq!(topics(&frames), ["b2", "b3"]);
        // Replayed in frames of at most 250 bytes of messages (one bigger message alone).
        assert_eq!(frames.len(), 2);
        // A meeting that ends forgets them.
        rooms.end_meeting("meeting ended");
        assert!(rooms.kept_data_frames(1, &limits).is_empty());
    }
}
