//! One task per meeting: it owns the meeting's str0m peers, feeds their audio to the meeting's
//! mixer and writes the mixer's downlinks back. Meetings run concurrently on the executor's
//! threads; nothing here is shared with another meeting but the socket and the route table.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::format::Codec;
use str0m::media::{Frequency, MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use super::Registry;
use super::levels::{LevelBoard, LevelCell};
use super::mix::{AudioRole, Downlink};
use super::mixer::{MixerInput, Mixers};
use super::net::{Datagram, Route, Routes, sdp_ufrag};
use crate::events::CapabilityTarget;

/// Datagrams waiting for one meeting: about a second of a 40-person meeting's uplink.
pub const INBOX_DATAGRAMS: usize = 4096;
/// Datagrams handled per wake-up before timers and downlinks get a turn.
const DATAGRAM_BATCH: usize = 256;

pub enum MeetingCommand {
    Offer {
        session: u64,
        attendee_id: String,
        role: AudioRole,
        sdp_offer: String,
        reply: oneshot::Sender<Result<String, String>>,
    },
    Remove {
        session: u64,
    },
    SetRole {
        attendees: CapabilityTarget,
        role: AudioRole,
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
}

/// What a meeting task shares with the rest of the media plane.
pub struct Shared {
    pub socket: Arc<UdpSocket>,
    pub local: SocketAddr,
    pub advertised: SocketAddr,
    pub routes: Routes,
    pub mixers: Mixers,
    pub levels: LevelBoard,
    pub registry: Registry,
}

pub struct MeetingTask {
    /// A number no other meeting task of this process has.
    pub key: u64,
    pub meeting_id: String,
    pub shared: Arc<Shared>,
    pub inbox: mpsc::Sender<Datagram>,
    peers: HashMap<u64, Peer>,
    dirty: HashSet<u64>,
}

impl MeetingTask {
    pub fn new(
        key: u64,
        meeting_id: String,
        shared: Arc<Shared>,
        inbox: mpsc::Sender<Datagram>,
    ) -> Self {
        MeetingTask {
            key,
            meeting_id,
            shared,
            inbox,
            peers: HashMap::new(),
            dirty: HashSet::new(),
        }
    }

    pub async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<MeetingCommand>,
        mut datagrams: mpsc::Receiver<Datagram>,
    ) {
        let (downlinks_tx, mut downlinks) = mpsc::channel::<Vec<Downlink>>(8);
        self.shared.mixers.control(
            self.key,
            MixerInput::Open {
                meeting: self.key,
                downlinks: downlinks_tx,
            },
        );
        loop {
            let deadline = self
                .peers
                .values()
                .map(|p| p.next_timeout)
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
            if self.peers.is_empty() && self.leave_registry(&commands) {
                break;
            }
        }
        self.shared
            .mixers
            .control(self.key, MixerInput::Close { meeting: self.key });
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
            MeetingCommand::Offer {
                session,
                attendee_id,
                role,
                sdp_offer,
                reply,
            } => {
                // The offer is client input: a panic while parsing or answering it costs that
                // client its answer, not the meeting.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.offer(session, attendee_id, role, &sdp_offer)
                }))
                .unwrap_or_else(|_| {
                    self.drop_peer(session);
                    Err("the SDP offer could not be processed".to_string())
                });
                self.dirty.insert(session);
                let _ = reply.send(result);
            }
            MeetingCommand::Remove { session } => self.drop_peer(session),
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
    ) -> Result<String, String> {
        let offer = str0m::change::SdpOffer::from_sdp_string(sdp_offer)
            .map_err(|e| format!("invalid SDP offer: {e}"))?;
        if let Some(peer) = self.peers.get_mut(&session) {
            // A renegotiation (the client subscribes again): same peer, new offer.
            let answer = peer
                .rtc
                .sdp_api()
                .accept_offer(offer)
                .map_err(|e| format!("SDP offer not accepted: {e}"))?;
            return Ok(answer.to_sdp_string());
        }
        let mut rtc = Rtc::builder().set_ice_lite(true).build(Instant::now());
        let candidate = Candidate::host(self.shared.advertised, "udp")
            .map_err(|e| format!("host candidate: {e}"))?;
        rtc.add_local_candidate(candidate);
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| format!("SDP offer not accepted: {e}"))?
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
        self.shared.mixers.control(
            self.key,
            MixerInput::Role {
                meeting: self.key,
                session,
                role,
            },
        );
        let level = self.shared.levels.register(session);
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
                level,
            },
        );
        Ok(answer)
    }

    fn drop_peer(&mut self, session: u64) {
        if let Some(peer) = self.peers.remove(&session) {
            self.shared
                .routes
                .remove_session(session, peer.ufrag.as_deref());
        }
        self.dirty.remove(&session);
        self.shared.mixers.control(
            self.key,
            MixerInput::Remove {
                meeting: self.key,
                session,
            },
        );
        self.shared.levels.remove(session);
    }

    fn remove_dead(&mut self) {
        let dead: Vec<u64> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.rtc.is_alive())
            .map(|(s, _)| *s)
            .collect();
        for session in dead {
            tracing::info!(meeting_id = %self.meeting_id, session, "media connection closed");
            self.drop_peer(session);
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
                destination: self.shared.local,
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
            if !peer.role.receive {
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

    /// Polls every peer that had input until it has nothing more to say.
    fn drain_dirty(&mut self) {
        for session in std::mem::take(&mut self.dirty) {
            let Some(peer) = self.peers.get_mut(&session) else {
                continue;
            };
            while peer.rtc.is_alive() {
                match peer.rtc.poll_output() {
                    Ok(Output::Timeout(at)) => {
                        peer.next_timeout = at;
                        break;
                    }
                    Ok(Output::Transmit(t)) => {
                        let _ = self.shared.socket.try_send_to(&t.contents, t.destination);
                    }
                    Ok(Output::Event(event)) => match event {
                        Event::MediaAdded(added)
                            if added.kind == MediaKind::Audio && peer.audio_mid.is_none() =>
                        {
                            peer.audio_mid = Some(added.mid);
                            peer.opus = peer.rtc.writer(added.mid).and_then(|w| {
                                w.payload_params()
                                    .find(|p| p.spec().codec == Codec::Opus)
                                    .map(|p| p.pt())
                            });
                        }
                        Event::MediaData(data) if Some(data.mid) == peer.audio_mid => {
                            let level = data.ext_vals.audio_level;
                            if let Some(level) = level {
                                peer.level.record(level);
                            }
                            if peer.role.send {
                                self.shared.mixers.packet(
                                    self.key,
                                    MixerInput::Packet {
                                        meeting: self.key,
                                        session,
                                        rtp_time: data.time.numer(),
                                        packet: data.data.to_vec(),
                                        level,
                                    },
                                );
                            }
                        }
                        Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                            peer.rtc.disconnect();
                        }
                        _ => {}
                    },
                    Err(error) => {
                        tracing::info!(meeting_id = %self.meeting_id, session, %error, "media connection failed");
                        peer.rtc.disconnect();
                    }
                }
            }
        }
    }
}
