//! One task per meeting, its single owner on this node: it holds the meeting's room (presence,
//! video publications, data messages: [`crate::join::room::Room`], changed only by the join
//! plane's [`MeetingCommand::Room`] visits), its str0m peers and the forwarding between them; it
//! feeds their audio to the meeting's mixer and writes the mixer's downlinks back. Meetings run
//! concurrently on the executor's threads; nothing here is shared with another meeting but the
//! socket and the route table.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use str0m::bwe::{Bitrate, BweKind};
use str0m::format::Codec;
use str0m::media::{Frequency, KeyframeRequestKind, MediaData, MediaKind, MediaTime, Mid, Pt, Rid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::sync::{mpsc, oneshot};

use super::capacity::DeliveredCapacity;
use super::forward::{AUDIO_RESERVE_BPS, Forwarding, UPGRADE_MARGIN};
use super::levels::LevelCell;
use super::mix::{AudioRole, Downlink};
use super::mixer::{MixerInput, Mixers};
use super::net::{Datagram, MediaSockets, Route, Routes, sdp_ufrag};
use super::sdp;
use super::tap::{VideoFrame, VideoSource, VideoTapSender, VideoTaps};
use super::timeline::{Timelines, capture_time};
use super::{Answer, OfferError, Registry, TrackMapping, VideoPlan};
use crate::domain::id::StreamId;
use crate::events::CapabilityTarget;
use crate::join::room::Room;

/// Datagrams waiting for one meeting: about a second of a 40-person meeting's uplink.
pub const INBOX_DATAGRAMS: usize = 4096;
/// How long a peer has to connect (ICE and DTLS) after its first answer before it is dropped.
const CONNECT_DEADLINE: Duration = Duration::from_secs(30);
/// How often a meeting looks for viewers stuck on a silent simulcast layer.
const LAYER_CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// How often a meeting reports its streams' bitrates (the client expects BITRATES about every
/// 4 s).
const BITRATE_INTERVAL: Duration = Duration::from_secs(4);
/// Where each viewer's downlink estimate starts, before transport-cc feedback refines it:
/// Chrome's own starting estimate for a new connection.
const INITIAL_DOWNLINK_ESTIMATE: Bitrate = Bitrate::kbps(300);
/// An estimate this far below the last one a client was told is reported at once rather than
/// at the next BITRATES, so that its downlink policy steps down within a second or two.
const ESTIMATE_DROP_REPORT: f64 = 0.75;
/// How often str0m reports a peer's bytes sent and transport-cc loss.
const PEER_STATS_INTERVAL: Duration = Duration::from_secs(1);
/// How soon after the last BITRATES a dropped estimate may be reported.
const ESTIMATE_REPORT_MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Datagrams handled per wake-up before timers and downlinks get a turn.
const DATAGRAM_BATCH: usize = 256;
/// How often the room's checked-in sessions get the volume indicators (AUDIO_METADATA).
const VOLUME_INDICATOR_INTERVAL: Duration = Duration::from_millis(200);

/// A change the join plane makes to the meeting's room, run by the meeting's task in turn with
/// its other commands. The room is None until a visit opens it.
pub type RoomVisit = Box<dyn FnOnce(&mut Option<Room>) + Send>;

pub enum MeetingCommand {
    /// Reads or changes the meeting's room (see [`RoomVisit`]).
    Room(RoomVisit),
    Offer {
        session: u64,
        attendee_id: String,
        role: AudioRole,
        sdp_offer: String,
        video: VideoPlan,
        reply: oneshot::Sender<Result<Answer, OfferError>>,
    },
    /// PAUSE or RESUME: a session stops or restarts receiving these streams.
    Pause {
        session: u64,
        streams: Vec<u32>,
        paused: bool,
    },
    /// REMOTE_VIDEO_UPDATE: show another layer on a receive section, from its next keyframe.
    SwitchLayer {
        session: u64,
        mid: String,
        stream: u32,
    },
    Remove {
        session: u64,
    },
    SetRole {
        attendees: CapabilityTarget,
        role: AudioRole,
    },
    /// A media tap on one published video stream (see [`super::tap`]).
    TapVideo {
        tap: VideoTapSender,
    },
    /// A tap's consumer wants a keyframe soon (a recorder about to start its next chunk).
    RequestKeyframe {
        stream: u32,
    },
}

struct Peer {
    rtc: Rtc,
    attendee_id: String,
    role: AudioRole,
    audio_mid: Option<Mid>,
    opus: Option<Pt>,
    ufrag: Option<String>,
    next_timeout: Instant,
    /// Where the volume indicators read this session's audio level.
    level: Arc<LevelCell>,
    /// ICE and DTLS are up. Until then nothing is written to the peer: str0m would queue it
    /// (without bound) for a connection that may never come.
    connected: bool,
    created: Instant,
    /// The downlink's estimated capacity (str0m's send-side estimator, from the client's
    /// transport-cc feedback), bits per second.
    estimate: Option<u64>,
    /// The estimate last put in a BITRATES frame for this session.
    reported_estimate: Option<u64>,
    /// What the downlink delivered while saturated: a floor under `estimate`, which undershoots
    /// after congestion.
    capacity: DeliveredCapacity,
}

/// What one of a peer's events asks of the rest of its meeting; the peer's own state is already
/// updated by then.
enum Propagated {
    /// An audio packet for the mixer, from a peer that may send audio (its level is recorded).
    Audio(MediaData),
    /// Media on a section other than the audio one: video, if it is a publication's.
    Media(MediaData),
    /// A viewer's PLI or FIR on one of its receive sections.
    KeyframeRequest(Mid),
    /// ICE and DTLS came up.
    Connected,
}

impl Peer {
    /// The downlink estimate layers are fitted into and the client is told: str0m's, held up by
    /// what the link delivered while saturated ([`DeliveredCapacity`]).
    fn downlink_estimate(&self, now: Instant) -> Option<u64> {
        self.capacity.effective(self.estimate, now)
    }

    /// Handles one str0m event on the peer's own state and returns what the meeting must act on.
    fn on_event(&mut self, event: Event) -> Option<Propagated> {
        match event {
            Event::MediaAdded(added)
                if added.kind == MediaKind::Audio && self.audio_mid.is_none() =>
            {
                self.on_audio_added(added.mid);
                None
            }
            Event::MediaData(data) if Some(data.mid) == self.audio_mid => self.on_audio(data),
            Event::MediaData(data) => Some(Propagated::Media(data)),
            Event::KeyframeRequest(request) => Some(Propagated::KeyframeRequest(request.mid)),
            Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => {
                self.estimate = Some(estimate.as_u64());
                None
            }
            Event::PeerStats(stats) => {
                self.capacity.on_stats(
                    stats.peer_bytes_tx,
                    stats.egress_loss_fraction,
                    stats.timestamp,
                );
                None
            }
            Event::Connected => {
                self.connected = true;
                Some(Propagated::Connected)
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.rtc.disconnect();
                None
            }
            _ => None,
        }
    }

    /// The first audio section is the one mixed and written to, in Opus.
    fn on_audio_added(&mut self, mid: Mid) {
        self.audio_mid = Some(mid);
        self.opus = self.rtc.writer(mid).and_then(|w| {
            w.payload_params()
                .find(|p| p.spec().codec == Codec::Opus)
                .map(|p| p.pt())
        });
    }

    /// Records the packet's audio level for the volume indicators; the packet goes to the mixer
    /// only when the attendee may send audio.
    fn on_audio(&mut self, data: MediaData) -> Option<Propagated> {
        if let Some(level) = data.ext_vals.audio_level {
            self.level.record(level);
        }
        self.role.send.then_some(Propagated::Audio(data))
    }
}

/// A new peer's `Rtc`, configured as Chime's media servers answer.
fn peer_rtc() -> Rtc {
    // Opus with RED (RFC 2198), as Chime answers: the browser then sends each audio frame
    // again in the next packet, and str0m fills a lost packet from that copy before the
    // mixer sees the gap; the downlink carries the same redundancy (str0m wraps what the
    // mixer writes), and browsers decode it natively. VP8 alone for video, so that every
    // publisher sends what every viewer decodes and the forwarder never transcodes (the
    // client would otherwise prefer VP9 or H.264, media-protocol.md §2.1).
    Rtc::builder()
        .set_ice_lite(true)
        .clear_codecs()
        .enable_opus(true, true)
        .enable_vp8(true)
        // Estimates the viewer's downlink from its transport-cc feedback, and paces what
        // is sent to it at that rate.
        .enable_bwe(Some(INITIAL_DOWNLINK_ESTIMATE))
        // Bytes sent and transport-cc loss each second, for the delivered-capacity floor.
        .set_stats_interval(Some(PEER_STATS_INTERVAL))
        // Audio goes to the mixer the moment it arrives: the mixer's own jitter buffer
        // orders it by RTP timestamp, takes a lost packet from the next one's FEC, and
        // drops what comes too late. str0m's default holds every packet behind a missing
        // sequence number until 15 more arrive (300 ms), which the mixer hears as the
        // speaker stopping. Every lost packet did that, and so did Chrome on a clean link
        // every 5 s: its bandwidth probes are three padding-only packets on the audio SSRC
        // under the RED payload type, which str0m 0.25 files apart from the unwrapped Opus,
        // so the Opus stream looked three packets short.
        .set_reordering_size_audio(0)
        .build(Instant::now())
}

/// What a meeting task shares with the rest of the media plane.
pub struct Shared {
    /// The bound sockets and the host candidates clients are given.
    pub sockets: MediaSockets,
    /// Every host candidate, in order.
    pub candidates: Vec<SocketAddr>,
    pub routes: Routes,
    pub mixers: Mixers,
    /// Peer connections on this node, across meetings.
    pub peers: AtomicUsize,
    pub registry: Registry,
    pub video: VideoCounters,
    /// Taps on meetings' mixes that outlive each media task (see [`super::tap::MeetingTaps`]).
    pub meeting_taps: super::tap::MeetingTaps,
}

/// Video forwarding counters for /metrics; each meeting task adds once per round, not per frame.
#[derive(Debug, Default)]
pub struct VideoCounters {
    /// Frames written to viewers (one frame to three viewers counts three).
    pub frames_forwarded: AtomicU64,
    pub bytes_forwarded: AtomicU64,
    /// PLI/FIR sent to publishers, after throttling.
    pub keyframe_requests: AtomicU64,
}

pub struct MeetingTask {
    /// A number no other meeting task of this process has.
    pub key: u64,
    pub meeting_id: String,
    pub shared: Arc<Shared>,
    pub inbox: mpsc::Sender<Datagram>,
    /// Who is in the meeting (None until the join plane first opens it).
    room: Option<Room>,
    peers: HashMap<u64, Peer>,
    /// The mixer has the meeting: from the first peer until the last one leaves, so that a
    /// room without media (sessions still joining, a recording's guest, kept messages) costs
    /// the mixer nothing and its taps see a gap, as when no task ran.
    mixing: bool,
    /// Where the mixer writes this meeting's downlinks.
    downlinks: mpsc::Sender<Vec<Downlink>>,
    dirty: HashSet<u64>,
    forwarding: Forwarding,
    /// Each receive section's own RTP timeline across the sources it shows.
    timelines: Timelines,
    /// Video frames read from publishers in this round, to forward once polling is done.
    video_frames: Vec<(u32, MediaData)>,
    /// Consumers of published streams' frames (recording); they end with the task.
    video_taps: VideoTaps,
    /// Streams whose publishers should send a keyframe (new viewer, lost packets, PLI/FIR).
    keyframes_wanted: Vec<u32>,
    targets: Vec<(u64, Mid)>,
    /// Video bytes received per stream since `bitrates_since`.
    stream_bytes: HashMap<u32, u64>,
    bitrates_since: Instant,
    layers_checked: Instant,
    volume_indicators_at: Instant,
}

impl MeetingTask {
    /// A task for the meeting, and the receiving end of its mixer's downlinks (for [`Self::run`]).
    pub fn new(
        key: u64,
        meeting_id: String,
        shared: Arc<Shared>,
        inbox: mpsc::Sender<Datagram>,
    ) -> (Self, mpsc::Receiver<Vec<Downlink>>) {
        let (downlinks, downlinks_rx) = mpsc::channel(8);
        let task = MeetingTask {
            key,
            meeting_id,
            shared,
            inbox,
            room: None,
            peers: HashMap::new(),
            mixing: false,
            downlinks,
            dirty: HashSet::new(),
            forwarding: Forwarding::default(),
            timelines: Timelines::default(),
            video_frames: Vec::new(),
            video_taps: VideoTaps::default(),
            keyframes_wanted: Vec::new(),
            targets: Vec::new(),
            stream_bytes: HashMap::new(),
            bitrates_since: Instant::now(),
            layers_checked: Instant::now(),
            volume_indicators_at: Instant::now(),
        };
        (task, downlinks_rx)
    }

    pub async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<MeetingCommand>,
        mut datagrams: mpsc::Receiver<Datagram>,
        mut downlinks: mpsc::Receiver<Vec<Downlink>>,
    ) {
        loop {
            let volume_indicators = self
                .room
                .as_ref()
                .filter(|room| room.has_audio() && !self.peers.is_empty())
                .map(|_| self.volume_indicators_at);
            let deadline = self
                .peers
                .values()
                .map(|p| p.next_timeout)
                .chain(volume_indicators)
                .min()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            tokio::select! {
                biased;
                command = commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => break,
                },
                Some(frames) = downlinks.recv() => self.on_downlinks(frames),
                Some(first) = datagrams.recv() => {
                    self.on_datagram(first);
                    for _ in 0..DATAGRAM_BATCH {
                        match datagrams.try_recv() {
                            Ok(next) => self.on_datagram(next),
                            Err(_) => break,
                        }
                    }
                }
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
            let now = Instant::now();
            for (session, peer) in self.peers.iter_mut() {
                if peer.next_timeout <= now {
                    if peer.rtc.handle_input(Input::Timeout(now)).is_err() {
                        peer.rtc.disconnect();
                    }
                    self.dirty.insert(*session);
                }
            }
            self.drain_dirty();
            self.remove_dead();
            if now.saturating_duration_since(self.layers_checked) >= LAYER_CHECK_INTERVAL {
                self.layers_checked = now;
                let keyframes = self.forwarding.fall_back(now);
                self.keyframes_wanted.extend(keyframes);
                self.fit_downlinks(now);
                if !self.keyframes_wanted.is_empty() {
                    self.drain_dirty();
                }
            }
            let since_report = now.saturating_duration_since(self.bitrates_since);
            if since_report >= BITRATE_INTERVAL
                || (since_report >= ESTIMATE_REPORT_MIN_INTERVAL && self.estimate_dropped(now))
            {
                self.report_bitrates(now);
            }
            if volume_indicators.is_some_and(|at| at <= now) {
                self.volume_indicators_at = now + VOLUME_INDICATOR_INTERVAL;
                self.send_volume_indicators(now);
            }
            if self.peers.is_empty() {
                self.stop_mixing();
                if self.room.as_ref().is_none_or(Room::is_idle) && self.leave_registry(&commands) {
                    break;
                }
            }
        }
        self.stop_mixing();
    }

    /// Gives the mixer the meeting, with the taps opened on it before its media (re)started
    /// (after Open on the same channel, so the mixer has the meeting when they arrive).
    fn start_mixing(&mut self) {
        if self.mixing {
            return;
        }
        self.mixing = true;
        self.shared.mixers.control(
            self.key,
            MixerInput::Open {
                meeting: self.key,
                downlinks: self.downlinks.clone(),
            },
        );
        for tap in self.shared.meeting_taps.of(&self.meeting_id) {
            self.shared.mixers.control(
                self.key,
                MixerInput::Tap {
                    meeting: self.key,
                    tap,
                },
            );
        }
    }

    /// Takes the meeting out of its mixer (its taps see the stream pause).
    fn stop_mixing(&mut self) {
        if !self.mixing {
            return;
        }
        self.mixing = false;
        self.shared
            .mixers
            .control(self.key, MixerInput::Close { meeting: self.key });
    }

    /// AUDIO_METADATA to the room's checked-in sessions, from each peer's latest audio level.
    fn send_volume_indicators(&mut self, now: Instant) {
        let Some(room) = self.room.as_mut() else {
            return;
        };
        let levels: HashMap<u64, Option<u8>> = self
            .peers
            .iter()
            .map(|(session, peer)| (*session, peer.level.current(now)))
            .collect();
        room.send_volume_indicators(&levels);
    }

    /// Leaves the registry when no command is waiting; a command that raced in keeps it alive.
    fn leave_registry(&self, commands: &mpsc::UnboundedReceiver<MeetingCommand>) -> bool {
        let Ok(mut registry) = self.shared.registry.lock() else {
            return true;
        };
        if !commands.is_empty() {
            return false;
        }
        if registry
            .get(&self.meeting_id)
            .is_some_and(|handle| handle.key == self.key)
        {
            registry.remove(&self.meeting_id);
        }
        true
    }

    fn on_command(&mut self, command: MeetingCommand) {
        match command {
            MeetingCommand::Room(visit) => {
                // A visit that panics loses its own change, not the meeting.
                let visited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    visit(&mut self.room)
                }));
                if visited.is_err() {
                    tracing::error!(meeting_id = %self.meeting_id, "a change to the room panicked");
                }
            }
            MeetingCommand::Offer {
                session,
                attendee_id,
                role,
                sdp_offer,
                video,
                reply,
            } => {
                // The offer is client input: a panic while parsing or answering it costs that
                // client its answer, not the meeting.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.offer(session, attendee_id, role, &sdp_offer, &video)
                }))
                .unwrap_or_else(|_| {
                    self.drop_peer(session);
                    Err(OfferError::Panicked)
                });
                self.dirty.insert(session);
                let _ = reply.send(result);
            }
            MeetingCommand::Remove { session } => self.drop_peer(session),
            MeetingCommand::TapVideo { tap } => {
                // A consumer starts from a keyframe, as a new viewer does.
                self.keyframes_wanted.push(tap.source().0.0);
                self.video_taps.add(tap);
            }
            MeetingCommand::RequestKeyframe { stream } => self.keyframes_wanted.push(stream),
            MeetingCommand::Pause {
                session,
                streams,
                paused,
            } => {
                let resumed = self.forwarding.pause(session, &streams, paused);
                self.keyframes_wanted.extend(resumed);
            }
            MeetingCommand::SwitchLayer {
                session,
                mid,
                stream,
            } => {
                if self
                    .forwarding
                    .want(session, Mid::from(mid.as_str()), stream)
                {
                    self.keyframes_wanted.push(stream);
                }
            }
            MeetingCommand::SetRole { attendees, role } => {
                for (session, peer) in self.peers.iter_mut() {
                    if attendees.includes(&peer.attendee_id) && peer.role != role {
                        peer.role = role;
                        self.shared.mixers.control(
                            self.key,
                            MixerInput::Role {
                                meeting: self.key,
                                session: *session,
                                role,
                            },
                        );
                    }
                }
            }
        }
    }

    fn offer(
        &mut self,
        session: u64,
        attendee_id: String,
        role: AudioRole,
        sdp_offer: &str,
        video: &VideoPlan,
    ) -> Result<Answer, OfferError> {
        let offer =
            str0m::change::SdpOffer::from_sdp_string(sdp_offer).map_err(OfferError::Invalid)?;
        let sections = sdp::sections(sdp_offer);
        let answer = if let Some(peer) = self.peers.get_mut(&session) {
            // A renegotiation (the client subscribes again): same peer, new offer.
            peer.rtc
                .sdp_api()
                .accept_offer(offer)
                .map_err(OfferError::NotAccepted)?
                .to_sdp_string()
        } else {
            self.new_peer(session, attendee_id, role, offer)?
        };
        Ok(self.wire_video(session, &sections, video, &answer))
    }

    /// Records what the session publishes and which of its receive sections shows which stream,
    /// and makes the answer say so to amazon-chime-sdk-js (see [`sdp::rewrite_answer`]).
    fn wire_video(
        &mut self,
        session: u64,
        sections: &[sdp::Section],
        video: &VideoPlan,
        answer: &str,
    ) -> Answer {
        let camera = sections.iter().find(|s| s.publishes());
        match (camera, video.publish.first()) {
            (Some(camera), Some(&first)) => {
                let layers: Vec<(Option<Rid>, u32)> = if camera.simulcast_send.is_empty() {
                    vec![(None, first)]
                } else {
                    camera
                        .simulcast_send
                        .iter()
                        .zip(&video.publish)
                        .map(|(rid, stream)| (Some(Rid::from(rid.as_str())), *stream))
                        .collect()
                };
                self.forwarding
                    .publish(session, Mid::from(camera.mid.as_str()), layers);
            }
            _ => self.forwarding.unpublish(session),
        }
        let mut wanted = Vec::new();
        let mut idle = Vec::new();
        let video_sections = sections.iter().filter(|s| s.video);
        for (index, section) in video_sections.enumerate() {
            if !section.receives_only() {
                continue;
            }
            match video.subscribe.get(index).copied().unwrap_or(0) {
                0 => idle.push(section.mid.as_str()),
                stream => wanted.push((section.mid.as_str(), stream)),
            }
        }
        let mut tracks = Vec::with_capacity(wanted.len());
        if let Some(peer) = self.peers.get_mut(&session) {
            let mut direct = peer.rtc.direct_api();
            for (mid, stream) in &wanted {
                if let Some(tx) = direct.stream_tx_by_mid(Mid::from(*mid), None) {
                    tracks.push(TrackMapping {
                        stream_id: *stream,
                        ssrc: *tx.ssrc(),
                        track_label: format!("v_{mid}"),
                    });
                }
            }
        }
        let sending: Vec<&str> = wanted.iter().map(|(mid, _)| *mid).collect();
        let sdp = sdp::rewrite_answer(
            answer,
            &sdp::AnswerRewrite {
                sending: &sending,
                idle: &idle,
                simulcast: camera.map(|c| (c.mid.as_str(), c.simulcast_send_list.as_str())),
            },
        );
        let fresh = self.forwarding.subscribe(
            session,
            wanted
                .iter()
                .map(|(mid, stream)| (Mid::from(*mid), *stream))
                .collect(),
        );
        self.keyframes_wanted.extend(fresh);
        Answer { sdp, tracks }
    }

    fn new_peer(
        &mut self,
        session: u64,
        attendee_id: String,
        role: AudioRole,
        offer: str0m::change::SdpOffer,
    ) -> Result<String, OfferError> {
        let mut rtc = peer_rtc();
        for address in &self.shared.candidates {
            let candidate = Candidate::host(*address, "udp").map_err(OfferError::HostCandidate)?;
            rtc.add_local_candidate(candidate);
        }
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(OfferError::NotAccepted)?
            .to_sdp_string();
        let ufrag = sdp_ufrag(&answer).map(str::to_string);
        if let Some(ufrag) = &ufrag {
            self.shared.routes.add_ufrag(
                ufrag.clone(),
                Route {
                    session,
                    inbox: self.inbox.clone(),
                },
            );
        }
        self.start_mixing();
        self.shared.mixers.control(
            self.key,
            MixerInput::Role {
                meeting: self.key,
                session,
                role,
            },
        );
        self.shared.peers.fetch_add(1, Ordering::Relaxed);
        self.peers.insert(
            session,
            Peer {
                rtc,
                attendee_id,
                role,
                audio_mid: None,
                opus: None,
                ufrag,
                next_timeout: Instant::now(),
                level: Arc::new(LevelCell::default()),
                connected: false,
                created: Instant::now(),
                estimate: None,
                reported_estimate: None,
                capacity: DeliveredCapacity::default(),
            },
        );
        Ok(answer)
    }

    fn drop_peer(&mut self, session: u64) {
        if let Some(peer) = self.peers.remove(&session) {
            self.shared.peers.fetch_sub(1, Ordering::Relaxed);
            self.shared
                .routes
                .remove_session(session, peer.ufrag.as_deref());
        }
        self.dirty.remove(&session);
        self.forwarding.remove(session);
        self.timelines.remove(session);
        self.shared.mixers.control(
            self.key,
            MixerInput::Remove {
                meeting: self.key,
                session,
            },
        );
    }

    fn remove_dead(&mut self) {
        let now = Instant::now();
        let dead: Vec<u64> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                !p.rtc.is_alive()
                    || (!p.connected && now.saturating_duration_since(p.created) > CONNECT_DEADLINE)
            })
            .map(|(s, _)| *s)
            .collect();
        for session in dead {
            tracing::info!(meeting_id = %self.meeting_id, session, "media connection closed");
            self.drop_peer(session);
            // Its video leaves INDEX now, not when its signaling socket times out, or viewers
            // keep a frozen tile.
            if let Some(room) = self.room.as_mut() {
                room.unpublish_video(session);
            }
        }
    }

    /// Downlink congestion control, server side: each viewer's video is fitted into its
    /// estimate ([`Forwarding::fit_downlink`]), and its estimator is asked to probe for what the
    /// top layers of the videos it shows would take ([`Forwarding::probe_rate`]).
    fn fit_downlinks(&mut self, now: Instant) {
        for (session, peer) in self.peers.iter_mut() {
            let Some(estimate) = peer.downlink_estimate(now).filter(|_| peer.connected) else {
                continue;
            };
            let keyframes = self.forwarding.fit_downlink(*session, estimate);
            let probe = self.forwarding.probe_rate(*session);
            tracing::debug!(meeting_id = %self.meeting_id, session, estimate, probe, ?keyframes, "downlink fitted");
            self.keyframes_wanted.extend(keyframes);
            if probe > 0 {
                // Probe past what switching up to the top layers needs, so that the estimate
                // can show the room for them; keep at least the audio's share flowing.
                let upgrade_needs = (probe as f64 / UPGRADE_MARGIN) as u64 + AUDIO_RESERVE_BPS;
                peer.rtc.bwe().set_bitrate(
                    Bitrate::bps(AUDIO_RESERVE_BPS),
                    Bitrate::bps(upgrade_needs + upgrade_needs / 5),
                );
            }
        }
    }

    /// Some viewer's estimate fell well below what it was last told.
    fn estimate_dropped(&self, now: Instant) -> bool {
        self.peers.values().any(|peer| {
            matches!((peer.downlink_estimate(now), peer.reported_estimate),
                (Some(current), Some(told)) if (current as f64) < told as f64 * ESTIMATE_DROP_REPORT)
        })
    }

    fn report_bitrates(&mut self, now: Instant) {
        let elapsed = now
            .saturating_duration_since(self.bitrates_since)
            .as_secs_f64();
        self.bitrates_since = now;
        if self.stream_bytes.is_empty() || elapsed <= 0.0 {
            return;
        }
        let streams: Vec<(u32, u32)> = self
            .stream_bytes
            .drain()
            .map(|(stream, bytes)| (stream, (bytes as f64 * 8.0 / elapsed) as u32))
            .collect();
        for (stream, bps) in &streams {
            self.forwarding.set_rate(*stream, u64::from(*bps));
        }
        let estimates: Vec<(u64, u32)> = self
            .peers
            .iter_mut()
            .filter_map(|(session, peer)| {
                let estimate = peer.downlink_estimate(now)?;
                peer.reported_estimate = Some(estimate);
                Some((*session, u32::try_from(estimate / 1000).unwrap_or(u32::MAX)))
            })
            .collect();
        if let Some(room) = self.room.as_mut() {
            room.send_bitrates(streams, &estimates);
        }
    }

    fn on_datagram(&mut self, datagram: Datagram) {
        let Some(peer) = self.peers.get_mut(&datagram.session) else {
            return;
        };
        let Ok(contents) = datagram.contents.as_slice().try_into() else {
            return;
        };
        let input = Input::Receive(
            datagram.received,
            Receive {
                proto: Protocol::Udp,
                source: datagram.source,
                destination: datagram.destination,
                contents,
            },
        );
        if peer.rtc.handle_input(input).is_err() {
            peer.rtc.disconnect();
        }
        self.dirty.insert(datagram.session);
    }

    fn on_downlinks(&mut self, frames: Vec<Downlink>) {
        let now = Instant::now();
        for frame in frames {
            let Some(peer) = self.peers.get_mut(&frame.listener) else {
                continue;
            };
            if !peer.role.receive || !peer.connected {
                continue;
            }
            let (Some(mid), Some(pt)) = (peer.audio_mid, peer.opus) else {
                continue;
            };
            let Some(writer) = peer.rtc.writer(mid) else {
                continue;
            };
            let time = MediaTime::new(frame.rtp_time, Frequency::FORTY_EIGHT_KHZ);
            if writer.write(pt, now, time, frame.packet).is_ok() {
                self.dirty.insert(frame.listener);
            }
        }
    }

    /// Polls every peer that had input until it has nothing more to say, then forwards the
    /// video read meanwhile (which gives the viewers output to poll in the next round).
    fn drain_dirty(&mut self) {
        self.ask_keyframes();
        // Forwarding only writes to viewers; it never makes more video to read, so this ends.
        while !self.dirty.is_empty() {
            for session in std::mem::take(&mut self.dirty) {
                self.poll_peer(session);
            }
            self.forward_video();
            self.ask_keyframes();
        }
    }

    fn poll_peer(&mut self, session: u64) {
        while let Some(propagated) = self.next_propagated(session) {
            self.propagate(session, propagated);
        }
    }

    /// Polls a peer, sending what it transmits, until it has an event for the rest of the
    /// meeting; `None` once it waits for its next timeout, has ended, or is gone.
    fn next_propagated(&mut self, session: u64) -> Option<Propagated> {
        let peer = self.peers.get_mut(&session)?;
        while peer.rtc.is_alive() {
            match peer.rtc.poll_output() {
                Ok(Output::Timeout(at)) => {
                    peer.next_timeout = at;
                    return None;
                }
                Ok(Output::Transmit(t)) => {
                    self.shared
                        .sockets
                        .send(t.source, t.destination, &t.contents);
                }
                Ok(Output::Event(event)) => {
                    if let Some(propagated) = peer.on_event(event) {
                        return Some(propagated);
                    }
                }
                Err(error) => {
                    tracing::info!(meeting_id = %self.meeting_id, session, %error, "media connection failed");
                    peer.rtc.disconnect();
                }
            }
        }
        None
    }

    /// Acts on what a peer's event asks of the meeting.
    fn propagate(&mut self, session: u64, propagated: Propagated) {
        match propagated {
            Propagated::Audio(data) => self.shared.mixers.packet(
                self.key,
                MixerInput::Packet {
                    meeting: self.key,
                    session,
                    rtp_time: data.time.numer(),
                    packet: data.data.to_vec(),
                    level: data.ext_vals.audio_level,
                },
            ),
            Propagated::Media(data) => {
                if let Some(stream) = self.forwarding.stream_of(session, data.mid, data.rid) {
                    if !data.contiguous {
                        // Lost packets: the viewers cannot decode on until a keyframe.
                        self.keyframes_wanted.push(stream);
                    }
                    *self.stream_bytes.entry(stream).or_default() += data.data.len() as u64;
                    self.forwarding.saw_frame(stream, data.network_time);
                    self.video_frames.push((stream, data));
                }
            }
            Propagated::KeyframeRequest(mid) => {
                // A viewer's PLI or FIR goes to the publisher of what it shows there.
                if let Some(stream) = self.forwarding.shown_on(session, mid) {
                    self.keyframes_wanted.push(stream);
                }
            }
            Propagated::Connected => {
                // Nothing was forwarded to it before: every stream it shows needs a keyframe to
                // start from.
                self.keyframes_wanted
                    .extend(self.forwarding.shown_to(session));
            }
        }
    }

    /// Writes each video frame read from a publisher to every receive section showing it. The
    /// frame's bytes are shared, not copied, between viewers.
    fn forward_video(&mut self) {
        if self.video_frames.is_empty() {
            return;
        }
        let (mut frames, mut bytes) = (0u64, 0u64);
        for (stream, data) in std::mem::take(&mut self.video_frames) {
            if data.is_keyframe() {
                // Whoever waits for a keyframe of this stream gets this one.
                self.keyframes_wanted.retain(|wanted| *wanted != stream);
            }
            if self.video_taps.wants(VideoSource(StreamId(stream))) {
                let frame = VideoFrame {
                    at: std::time::SystemTime::now(),
                    rtp_time: data.time.numer(),
                    codec: data.params.spec().codec,
                    keyframe: data.is_keyframe(),
                    data: data.data.clone(),
                };
                self.video_taps
                    .publish(VideoSource(StreamId(stream)), &frame);
            }
            self.forwarding
                .targets(stream, data.is_keyframe(), &mut self.targets);
            let captured = capture_time(data.time, data.last_sender_info.as_ref());
            for &(viewer, mid) in &self.targets {
                let Some(peer) = self.peers.get_mut(&viewer).filter(|p| p.connected) else {
                    continue;
                };
                let Some(writer) = peer.rtc.writer(mid) else {
                    continue;
                };
                let Some(pt) = writer.match_params(data.params) else {
                    continue;
                };
                let time = self.timelines.stamp(
                    viewer,
                    mid,
                    stream,
                    data.time,
                    data.network_time,
                    captured,
                );
                if writer
                    .write(pt, data.network_time, time, data.data.clone())
                    .is_ok()
                {
                    self.dirty.insert(viewer);
                    frames += 1;
                    bytes += data.data.len() as u64;
                }
            }
        }
        let counters = &self.shared.video;
        counters
            .frames_forwarded
            .fetch_add(frames, Ordering::Relaxed);
        counters.bytes_forwarded.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Asks publishers for keyframes, at most once per stream per throttle interval.
    fn ask_keyframes(&mut self) {
        if self.keyframes_wanted.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut wanted = std::mem::take(&mut self.keyframes_wanted);
        wanted.sort_unstable();
        wanted.dedup();
        // A request that follows another too closely waits for its turn rather than being
        // dropped: the keyframe asked for a moment ago may have gone out before this requester
        // (a viewer just connected, a recorder's next chunk) could use it. A keyframe of the
        // stream forwarded meanwhile answers it (see `forward_video`).
        let mut deferred = Vec::new();
        for stream in wanted {
            let Some(source) = self.forwarding.source(stream) else {
                continue;
            };
            if !self.forwarding.may_ask_keyframe(stream, now) {
                deferred.push(stream);
                continue;
            }
            let Some(peer) = self.peers.get_mut(&source.session) else {
                continue;
            };
            let Some(mut writer) = peer.rtc.writer(source.mid) else {
                continue;
            };
            let kind = if writer.is_request_keyframe_possible(KeyframeRequestKind::Pli) {
                KeyframeRequestKind::Pli
            } else {
                KeyframeRequestKind::Fir
            };
            if writer.request_keyframe(source.rid, kind).is_ok() {
                self.dirty.insert(source.session);
                self.shared
                    .video
                    .keyframe_requests
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        self.keyframes_wanted.extend(deferred);
    }
}
