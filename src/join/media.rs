//! WebRTC media: one UDP socket, one str0m `Rtc` per session, ICE-lite.
//!
//! The browser client expects a single downlink audio stream (real Chime sends a server mix).
//! Carillon forwards, to each receiver, the Opus frames of the loudest *other* attendee of its
//! meeting (by the RTP audio-level extension; by join order when no level is sent). With two
//! attendees each simply hears the other.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use str0m::media::{MediaData, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

enum Command {
    Offer {
        session: u64,
        meeting_id: String,
        sdp_offer: String,
        reply: oneshot::Sender<Result<String, String>>,
    },
    Remove {
        session: u64,
    },
    Count {
        reply: oneshot::Sender<usize>,
    },
    Levels {
        reply: oneshot::Sender<Vec<(u64, Option<u8>)>>,
    },
}

/// How long a received audio level counts as current for the volume indicators.
const LEVEL_FRESHNESS: Duration = Duration::from_millis(400);

/// A handle to the media task.
#[derive(Clone)]
pub struct Media {
    commands: mpsc::UnboundedSender<Command>,
    /// The address put in SDP answers as the host candidate.
    pub advertised: SocketAddr,
}

struct Peer {
    meeting_id: String,
    rtc: Rtc,
    audio_mid: Option<Mid>,
    /// Smoothed loudness, 0 (silence) to 127 (loudest), from the audio-level extension.
    loudness: f32,
    /// The last audio level received (-dBov, 0 loudest) and when.
    last_level: Option<(i8, Instant)>,
    joined_order: u64,
}

impl Media {
    /// Binds the UDP socket and starts the media task.
    pub async fn start(
        listen: SocketAddr,
        advertised_ip: Option<IpAddr>,
    ) -> std::io::Result<Media> {
        // str0m needs a process-wide crypto provider for DTLS; installing it twice is harmless.
        str0m::crypto::from_feature_flags().install_process_default();
        let socket = UdpSocket::bind(listen).await?;
        let local = socket.local_addr()?;
        let advertised = SocketAddr::new(advertised_ip.unwrap_or(local.ip()), local.port());
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(socket, rx, advertised));
        Ok(Media {
            commands: tx,
            advertised,
        })
    }

    /// Answers a client's SDP offer with an ICE-lite answer whose candidate is this socket.
    pub async fn accept_offer(
        &self,
        session: u64,
        meeting_id: &str,
        sdp_offer: String,
    ) -> Result<String, String> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Offer {
                session,
                meeting_id: meeting_id.to_string(),
                sdp_offer,
                reply,
            })
            .map_err(|_| "media task has stopped".to_string())?;
        answer
            .await
            .map_err(|_| "media task has stopped".to_string())?
    }

    /// How many peer connections the media task holds (for tests and benchmarks).
    pub async fn peer_count(&self) -> usize {
        let (reply, count) = oneshot::channel();
        if self.commands.send(Command::Count { reply }).is_err() {
            return 0;
        }
        count.await.unwrap_or_default()
    }

    /// Each peer's session with its current speaking volume in minus-dB (0 loudest, 127 silent),
    /// or None when no recent audio level arrived.
    pub async fn levels(&self) -> Vec<(u64, Option<u8>)> {
        let (reply, levels) = oneshot::channel();
        if self.commands.send(Command::Levels { reply }).is_err() {
            return Vec::new();
        }
        levels.await.unwrap_or_default()
    }

    /// Releases a session's peer connection.
    pub fn remove(&self, session: u64) {
        let _ = self.commands.send(Command::Remove { session });
    }
}

fn new_peer(
    meeting_id: String,
    sdp_offer: &str,
    advertised: SocketAddr,
    order: u64,
) -> Result<(Peer, String), String> {
    let offer = str0m::change::SdpOffer::from_sdp_string(sdp_offer)
        .map_err(|e| format!("invalid SDP offer: {e}"))?;
    let mut rtc = Rtc::builder().set_ice_lite(true).build(Instant::now());
    let candidate =
        Candidate::host(advertised, "udp").map_err(|e| format!("host candidate: {e}"))?;
    rtc.add_local_candidate(candidate);
    let answer = rtc
        .sdp_api()
        .accept_offer(offer)
        .map_err(|e| format!("SDP offer not accepted: {e}"))?;
    Ok((
        Peer {
            meeting_id,
            rtc,
            audio_mid: None,
            loudness: 0.0,
            last_level: None,
            joined_order: order,
        },
        answer.to_sdp_string(),
    ))
}

fn renegotiate(peer: &mut Peer, sdp_offer: &str) -> Result<String, String> {
    let offer = str0m::change::SdpOffer::from_sdp_string(sdp_offer)
        .map_err(|e| format!("invalid SDP offer: {e}"))?;
    let answer = peer
        .rtc
        .sdp_api()
        .accept_offer(offer)
        .map_err(|e| format!("SDP offer not accepted: {e}"))?;
    Ok(answer.to_sdp_string())
}

async fn run(
    socket: UdpSocket,
    mut commands: mpsc::UnboundedReceiver<Command>,
    advertised: SocketAddr,
) {
    let mut peers: HashMap<u64, Peer> = HashMap::new();
    let mut order = 0u64;
    let mut buf = vec![0u8; 2000];
    let local = socket.local_addr().unwrap_or(advertised);
    loop {
        // Drain every peer's output: packets to send, events, and the next deadline.
        let mut deadline = Instant::now() + Duration::from_millis(100);
        let mut incoming_audio: Vec<(u64, MediaData)> = Vec::new();
        for (session, peer) in peers.iter_mut() {
            loop {
                if !peer.rtc.is_alive() {
                    break;
                }
                match peer.rtc.poll_output() {
                    Ok(Output::Timeout(at)) => {
                        deadline = deadline.min(at);
                        break;
                    }
                    Ok(Output::Transmit(t)) => {
                        let _ = socket.try_send_to(&t.contents, t.destination);
                    }
                    Ok(Output::Event(event)) => match event {
                        Event::MediaAdded(added) if added.kind == MediaKind::Audio => {
                            peer.audio_mid.get_or_insert(added.mid);
                        }
                        Event::MediaData(data) => incoming_audio.push((*session, data)),
                        Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                            peer.rtc.disconnect();
                        }
                        _ => {}
                    },
                    Err(error) => {
                        tracing::debug!(session, %error, "peer connection failed");
                        peer.rtc.disconnect();
                    }
                }
            }
        }
        peers.retain(|_, p| p.rtc.is_alive());
        if !incoming_audio.is_empty() {
            for (source, data) in incoming_audio {
                forward(&mut peers, source, data);
            }
            // Forwarded frames produce packets to send: poll again before waiting.
            continue;
        }

        let wait = deadline.saturating_duration_since(Instant::now());
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Offer { session, meeting_id, sdp_offer, reply }) => {
                    // The offer is client input: a panic while parsing or answering it must cost
                    // that client its answer, not take down media for every meeting on the node.
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match peers.get_mut(&session) {
                        // A renegotiation (the client subscribes again): same peer, new offer.
                        Some(peer) => renegotiate(peer, &sdp_offer),
                        None => {
                            order += 1;
                            new_peer(meeting_id, &sdp_offer, advertised, order).map(|(peer, answer)| {
                                peers.insert(session, peer);
                                answer
                            })
                        }
                    }))
                    .unwrap_or_else(|_| {
                        peers.remove(&session);
                        Err("the SDP offer could not be processed".to_string())
                    });
                    let _ = reply.send(result);
                }
                Some(Command::Remove { session }) => {
                    peers.remove(&session);
                }
                Some(Command::Count { reply }) => {
                    let _ = reply.send(peers.len());
                }
                Some(Command::Levels { reply }) => {
                    let now = Instant::now();
                    let levels = peers
                        .iter()
                        .map(|(session, peer)| {
                            let volume = peer
                                .last_level
                                .filter(|(_, at)| now.duration_since(*at) < LEVEL_FRESHNESS)
                                .map(|(level, _)| level.unsigned_abs().min(127));
                            (*session, volume)
                        })
                        .collect();
                    let _ = reply.send(levels);
                }
                None => return,
            },
            received = socket.recv_from(&mut buf) => {
                if let Ok((n, source)) = received
                    && let Some(datagram) = buf.get(..n)
                    && let Ok(contents) = datagram.try_into()
                {
                    let input = Input::Receive(
                        Instant::now(),
                        Receive { proto: Protocol::Udp, source, destination: local, contents },
                    );
                    if let Some(peer) = peers.values_mut().find(|p| p.rtc.accepts(&input))
                        && peer.rtc.handle_input(input).is_err()
                    {
                        peer.rtc.disconnect();
                    }
                }
            }
            _ = tokio::time::sleep(wait) => {}
        }
        let now = Instant::now();
        for peer in peers.values_mut() {
            if peer.rtc.is_alive() && peer.rtc.handle_input(Input::Timeout(now)).is_err() {
                peer.rtc.disconnect();
            }
        }
    }
}

/// Sends one source frame to every receiver in the meeting whose loudest other attendee is the
/// source.
fn forward(peers: &mut HashMap<u64, Peer>, source: u64, data: MediaData) {
    let Some(meeting_id) = peers.get_mut(&source).map(|p| {
        if let Some(level) = data.ext_vals.audio_level {
            // The extension carries -dBov (0 loudest, -127 silent).
            let loudness = 127.0 + f32::from(level.max(-127));
            p.loudness = 0.8 * p.loudness + 0.2 * loudness;
            p.last_level = Some((level, Instant::now()));
        }
        p.meeting_id.clone()
    }) else {
        return;
    };
    let members: Vec<(u64, f32, u64)> = peers
        .iter()
        .filter(|(_, p)| p.meeting_id == meeting_id && p.audio_mid.is_some())
        .map(|(id, p)| (*id, p.loudness, p.joined_order))
        .collect();
    for (receiver, _, _) in &members {
        if *receiver == source {
            continue;
        }
        let loudest_other = members
            .iter()
            .filter(|(id, _, _)| id != receiver)
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.2.cmp(&a.2)))
            .map(|(id, _, _)| *id);
        if loudest_other != Some(source) {
            continue;
        }
        let Some(peer) = peers.get_mut(receiver) else {
            continue;
        };
        let Some(mid) = peer.audio_mid else { continue };
        let Some(writer) = peer.rtc.writer(mid) else {
            continue;
        };
        let Some(pt) = writer.match_params(data.params) else {
            continue;
        };
        let _ = writer.write(pt, data.network_time, data.time, data.data.clone());
    }
}
