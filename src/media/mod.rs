//! The media plane: WebRTC (ICE-lite, one UDP port) with audio mixed on the server as Chime
//! does it.
//!
//! Who owns what:
//! - [`net`]: the UDP socket, read by one task, and the address → peer table (O(1) demux,
//!   learned from each client's first STUN binding);
//! - [`meeting`]: one task per meeting owning its room (presence, video publications, data
//!   messages), its str0m peers (one `Rtc` per session) and the forwarding between them, so
//!   meetings run concurrently on every executor thread and never share a lock on the join or
//!   packet path;
//! - [`mixer`]: OS threads that tick every 20 ms, each mixing the meetings assigned to it
//!   ([`mix`] holds the per-meeting mix-minus logic, [`opus`] the codec);
//! - [`Media`]: the handle the join plane uses to visit a meeting's room, answer offers, drop
//!   sessions and change an attendee's audio role.
//!
//! Signaling and media talk only through channels: commands to a meeting task, datagrams to its
//! bounded inbox, packets to a mixer's bounded queue and downlinks back.

pub mod capacity;
pub mod forward;
pub mod levels;
pub mod meeting;
pub mod mix;
pub mod mixer;
pub mod net;
pub mod opus;
pub mod sdp;
pub mod tap;
pub mod timeline;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::domain::id::{MeetingId, StreamId};
use crate::events::CapabilityTarget;
pub use meeting::RoomVisit;
use meeting::{MeetingCommand, MeetingTask, Shared};
pub use mix::AudioRole;
use mixer::Mixers;
pub use net::MediaAddresses;
use net::{MediaSockets, Routes};

/// Speakers mixed at once in a meeting larger than a handful of senders.
pub const DEFAULT_MIXED_SPEAKERS: usize = 3;

/// What signaling decided about the video of one SUBSCRIBE.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VideoPlan {
    /// The stream ids allocated to the session's camera (or content) layers, in descriptor order
    /// (one per simulcast layer); empty when it publishes nothing.
    pub publish: Vec<u32>,
    /// One entry per `m=video` section of the offer, in SDP order: the stream the client wants
    /// on that section, or 0 (the camera section, stopped sections, vanished streams).
    pub subscribe: Vec<u32>,
}

/// Why a client's SDP offer gets no answer; the text is the refusal's description the client
/// sees (and the log line's `error`).
#[derive(Debug, thiserror::Error)]
pub enum OfferError {
    #[error("media plane has stopped")]
    Stopped,
    #[error("invalid SDP offer: {0}")]
    Invalid(#[source] str0m::error::SdpError),
    #[error("SDP offer not accepted: {0}")]
    NotAccepted(#[source] str0m::RtcError),
    /// A media address str0m will not make an ICE host candidate of.
    #[error("host candidate: {0}")]
    HostCandidate(#[source] str0m::error::IceError),
    /// Parsing or answering the offer panicked; the session's peer is dropped.
    #[error("the SDP offer could not be processed")]
    Panicked,
}

/// The SDP answer, and which stream each answered receive section carries (SUBSCRIBE_ACK
/// `tracks`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pub sdp: String,
    pub tracks: Vec<TrackMapping>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackMapping {
    pub stream_id: u32,
    /// The SSRC the server sends on that section; it stays the same whichever layer flows.
    pub ssrc: u32,
    /// `v_<mid>`: the stream id of the track the client sees (see [`sdp::rewrite_answer`]).
    pub track_label: String,
}

/// Live meeting tasks by meeting id.
pub type Registry = Arc<Mutex<HashMap<String, MeetingHandle>>>;

#[derive(Clone)]
pub struct MeetingHandle {
    pub key: u64,
    commands: mpsc::UnboundedSender<MeetingCommand>,
}

/// A handle to the media plane.
#[derive(Clone)]
pub struct Media {
    shared: Arc<Shared>,
    /// The first address put in SDP answers as a host candidate.
    pub advertised: SocketAddr,
    /// Every host candidate put in SDP answers.
    pub candidates: Vec<SocketAddr>,
    sessions: Arc<Mutex<HashMap<u64, String>>>,
    next_meeting_key: Arc<AtomicU64>,
}

impl Media {
    /// Binds the UDP sockets (see [`net::MediaSockets`]) and starts their receive tasks and
    /// the mixer threads.
    pub async fn start(addresses: &MediaAddresses) -> std::io::Result<Media> {
        let threads = std::thread::available_parallelism().map_or(2, usize::from);
        Self::start_with(addresses, threads, DEFAULT_MIXED_SPEAKERS).await
    }

    /// As [`Media::start`], with the number of mixer threads and of speakers mixed at once.
    pub async fn start_with(
        addresses: &MediaAddresses,
        mixer_threads: usize,
        speakers: usize,
    ) -> std::io::Result<Media> {
        // str0m needs a process-wide crypto provider for DTLS; installing it twice is harmless.
        str0m::crypto::from_feature_flags().install_process_default();
        let sockets = MediaSockets::bind(addresses)?;
        let candidates = sockets.candidates();
        let advertised = candidates.first().copied().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, "no media address")
        })?;
        let routes = Routes::default();
        for socket in &sockets.sockets {
            tokio::spawn(net::receive(socket.clone(), routes.clone()));
        }
        let shared = Arc::new(Shared {
            sockets,
            candidates,
            routes,
            mixers: Mixers::start(mixer_threads, speakers)?,
            peers: Default::default(),
            registry: Registry::default(),
            video: Default::default(),
            meeting_taps: Default::default(),
        });
        Ok(Media {
            candidates: shared.candidates.clone(),
            shared,
            advertised,
            sessions: Arc::default(),
            next_meeting_key: Arc::new(AtomicU64::new(1)),
        })
    }

    /// Sends a command to the meeting's task; with `start`, starting one when none runs.
    /// False when no task took it.
    ///
    /// The registry stays locked until the command is in the task's queue: a task leaves the
    /// registry under the same lock, and only with an empty queue, so a command sent here is
    /// never left behind in the queue of a task that has already decided to stop.
    fn send_command(&self, meeting_id: &str, start: bool, command: MeetingCommand) -> bool {
        let Ok(mut registry) = self.shared.registry.lock() else {
            return false;
        };
        let command = match registry.get(meeting_id) {
            Some(handle) => match handle.commands.send(command) {
                Ok(()) => return true,
                Err(mpsc::error::SendError(command)) => command,
            },
            None => command,
        };
        if !start {
            return false;
        }
        let key = self.next_meeting_key.fetch_add(1, Ordering::Relaxed);
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (inbox, inbox_rx) = mpsc::channel(meeting::INBOX_DATAGRAMS);
        let (task, downlinks) =
            MeetingTask::new(key, meeting_id.to_string(), self.shared.clone(), inbox);
        tokio::spawn(task.run(commands_rx, inbox_rx, downlinks));
        let sent = commands.send(command).is_ok();
        registry.insert(meeting_id.to_string(), MeetingHandle { key, commands });
        sent
    }

    /// Runs `visit` on the meeting's room in the meeting's task, in turn with everything else
    /// the task does; with `open`, starting the task when none runs (the visit then finds no
    /// room and may open one). False when no task took it.
    pub fn visit_room(&self, meeting_id: &str, open: bool, visit: RoomVisit) -> bool {
        self.send_command(meeting_id, open, MeetingCommand::Room(visit))
    }

    /// The meetings with a task on this node.
    pub fn meeting_ids(&self) -> Vec<String> {
        self.shared.registry.lock().map_or_else(
            |_| Vec::new(),
            |registry| registry.keys().cloned().collect(),
        )
    }

    /// Answers a client's SDP offer with an ICE-lite answer whose candidate is this socket.
    pub async fn accept_offer(
        &self,
        session: u64,
        meeting_id: &str,
        attendee_id: &str,
        role: AudioRole,
        sdp_offer: String,
        video: VideoPlan,
    ) -> Result<Answer, OfferError> {
        let (reply, answer) = oneshot::channel();
        let offer = MeetingCommand::Offer {
            session,
            attendee_id: attendee_id.to_string(),
            role,
            sdp_offer,
            video,
            reply,
        };
        if !self.send_command(meeting_id, true, offer) {
            return Err(OfferError::Stopped);
        }
        let result = answer.await.map_err(|_| OfferError::Stopped)?;
        if result.is_ok()
            && let Ok(mut sessions) = self.sessions.lock()
        {
            sessions.insert(session, meeting_id.to_string());
        }
        result
    }

    /// Changes what an attendee's live sessions may do with audio (UpdateAttendeeCapabilities).
    pub fn set_audio_role(&self, meeting_id: &str, attendees: CapabilityTarget, role: AudioRole) {
        self.tell_meeting(meeting_id, MeetingCommand::SetRole { attendees, role });
    }

    /// Shows another layer of the same publisher on a receive section (REMOTE_VIDEO_UPDATE),
    /// from that layer's next keyframe.
    pub fn switch_layer(&self, session: u64, mid: &str, stream: u32) {
        self.tell_session_meeting(
            session,
            MeetingCommand::SwitchLayer {
                session,
                mid: mid.to_string(),
                stream,
            },
        );
    }

    /// Stops (PAUSE) or restarts (RESUME) forwarding these streams to a session.
    pub fn pause(&self, session: u64, streams: Vec<u32>, paused: bool) {
        self.tell_session_meeting(
            session,
            MeetingCommand::Pause {
                session,
                streams,
                paused,
            },
        );
    }

    /// Sends a command to the meeting task of a session's meeting, if it runs.
    fn tell_session_meeting(&self, session: u64, command: MeetingCommand) {
        let meeting_id = self
            .sessions
            .lock()
            .ok()
            .and_then(|sessions| sessions.get(&session).cloned());
        if let Some(meeting_id) = meeting_id {
            self.tell_meeting(&meeting_id, command);
        }
    }

    /// Sends a command to a meeting's task, if it runs.
    fn tell_meeting(&self, meeting_id: &str, command: MeetingCommand) {
        self.send_command(meeting_id, false, command);
    }

    /// Opens a media tap on a meeting's audio (see [`tap`]), queued up to `capacity` frames and
    /// dropped (counted on the tap) past that.
    /// - The mix ([`tap::AudioSource::Mix`]) is tapped for the meeting's life: frames flow
    ///   whenever the meeting has media on this node (someone connected) and the tap waits
    ///   through the gaps; it ends when the meeting ends ([`Media::end_meeting_taps`]).
    /// - One session's own audio is tapped while that session is here: the tap ends when it
    ///   leaves, or at once when it has no media on this node.
    pub fn tap_audio(
        &self,
        meeting_id: &MeetingId,
        source: tap::AudioSource,
        capacity: usize,
    ) -> tap::AudioTap {
        let (sender, tap) = tap::tap(source, capacity);
        if source == tap::AudioSource::Mix {
            self.shared
                .meeting_taps
                .keep(meeting_id.as_str(), sender.clone());
        }
        let live = self.shared.registry.lock().ok().and_then(|registry| {
            registry
                .get(meeting_id.as_str())
                .filter(|handle| !handle.commands.is_closed())
                .map(|handle| handle.key)
        });
        if let Some(key) = live {
            self.shared.mixers.control(
                key,
                mixer::MixerInput::Tap {
                    meeting: key,
                    tap: sender,
                },
            );
        }
        tap
    }

    /// Ends a meeting's taps on its mix (the meeting ended): each consumer's stream ends once
    /// the meeting's media, if any, has stopped.
    pub fn end_meeting_taps(&self, meeting_id: &str) {
        self.shared.meeting_taps.end(meeting_id);
    }

    /// Opens a media tap on one published video stream of a live meeting: its frames as the
    /// publisher sent them, from a keyframe the publisher is asked for, queued up to `capacity`
    /// and dropped (counted) past that. None when the meeting has no task on this node (nobody
    /// connected, nothing kept); the tap ends with the meeting's task.
    pub fn tap_video(
        &self,
        meeting_id: &MeetingId,
        stream: StreamId,
        capacity: usize,
    ) -> Option<tap::VideoTap> {
        let handle = self
            .shared
            .registry
            .lock()
            .ok()?
            .get(meeting_id.as_str())
            .filter(|handle| !handle.commands.is_closed())?
            .clone();
        let (sender, tap) = tap::tap(tap::VideoSource(stream), capacity);
        handle
            .commands
            .send(MeetingCommand::TapVideo { tap: sender })
            .ok()?;
        Some(tap)
    }

    /// Asks the publisher of a stream for a keyframe (throttled per stream, as viewers' requests
    /// are). False when the meeting has no task on this node.
    pub fn request_keyframe(&self, meeting_id: &MeetingId, stream: StreamId) -> bool {
        let handle = self.shared.registry.lock().ok().and_then(|registry| {
            registry
                .get(meeting_id.as_str())
                .filter(|handle| !handle.commands.is_closed())
                .cloned()
        });
        handle.is_some_and(|handle| {
            handle
                .commands
                .send(MeetingCommand::RequestKeyframe { stream: stream.0 })
                .is_ok()
        })
    }

    /// How many peer connections the media plane holds (for tests and benchmarks).
    pub async fn peer_count(&self) -> usize {
        self.shared.peers.load(Ordering::Relaxed)
    }

    /// Releases a session's peer connection.
    pub fn remove(&self, session: u64) {
        let meeting_id = self
            .sessions
            .lock()
            .ok()
            .and_then(|mut sessions| sessions.remove(&session));
        if let Some(meeting_id) = meeting_id {
            self.tell_meeting(&meeting_id, MeetingCommand::Remove { session });
        }
    }

    /// Counters for metrics and benchmarks.
    pub fn stats(&self) -> MediaStats {
        let net = &self.shared.routes.stats;
        let mixer = &self.shared.mixers.stats;
        let video = &self.shared.video;
        MediaStats {
            peers: self.shared.peers.load(Ordering::Relaxed),
            meetings: self
                .shared
                .registry
                .lock()
                .map_or(0, |meetings| meetings.len()),
            datagrams_received: net.received.load(Ordering::Relaxed),
            datagrams_unroutable: net.unroutable.load(Ordering::Relaxed),
            datagrams_dropped: net.inbox_full.load(Ordering::Relaxed),
            mixer_ticks: mixer.ticks.load(Ordering::Relaxed),
            mixer_busy: Duration::from_nanos(mixer.busy_nanos.load(Ordering::Relaxed)),
            mixer_dropped_packets: mixer.dropped_packets.load(Ordering::Relaxed),
            mixer_dropped_ticks: mixer.dropped_ticks.load(Ordering::Relaxed),
            mixer_fec_recovered: mixer.fec_recovered.load(Ordering::Relaxed),
            mixer_concealed: mixer.concealed.load(Ordering::Relaxed),
            mixer_silenced: mixer.silenced.load(Ordering::Relaxed),
            mixer_silence_frames: mixer.silence_frames.load(Ordering::Relaxed),
            video_frames_forwarded: video.frames_forwarded.load(Ordering::Relaxed),
            video_bytes_forwarded: video.bytes_forwarded.load(Ordering::Relaxed),
            keyframe_requests: video.keyframe_requests.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct MediaStats {
    pub peers: usize,
    /// Meetings with a task on this node (someone connected, or state kept for those to come).
    pub meetings: usize,
    pub datagrams_received: u64,
    pub datagrams_unroutable: u64,
    pub datagrams_dropped: u64,
    pub mixer_ticks: u64,
    pub mixer_busy: Duration,
    pub mixer_dropped_packets: u64,
    pub mixer_dropped_ticks: u64,
    /// Lost uplink audio packets rebuilt from in-band FEC, and those concealed.
    pub mixer_fec_recovered: u64,
    pub mixer_concealed: u64,
    /// Of those, the ones played as silence: the codec's concealment came out at full scale.
    pub mixer_silenced: u64,
    pub mixer_silence_frames: u64,
    pub video_frames_forwarded: u64,
    pub video_bytes_forwarded: u64,
    pub keyframe_requests: u64,
}
