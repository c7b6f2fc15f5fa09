//! Video forwarding (SFU) capacity: native clients on loopback against `carillon serve`.
//!
//! P meetings, each with one publisher (a str0m WebRTC client sending synthetic VP8 frames of
//! about 1 Mbit/s at 30 fps, a keyframe every 2 s and on request) and S viewers subscribed to it
//! (one receive section each, as amazon-chime-sdk-js subscribes). S grows in steps. For each step:
//! forwarded Mbit/s measured at the receivers, server CPU (user + system of the server process
//! only, /proc), Mbit/s per core of server CPU, RTP loss at the receivers (sequence gaps), frames
//! checked byte for byte by one full viewer per meeting, and the server's peak RSS.
//!
//! The floor, measured in the same run for every step: a plain UDP fan-out relay (a process of
//! its own, one thread, no crypto, no RTP: recv, then one send per receiver) forwarding packets
//! of the size Carillon sent, at the same rate, to the same number of receivers. Carillon's
//! Mbit/s per core is reported as a ratio of the relay's.
//!
//! Viewers are cheap on purpose (the load generator shares the machine's cores with the
//! server): str0m does ICE, DTLS and RTCP, but incoming RTP is only counted from its clear-text
//! header (SSRC, sequence number, size), not decrypted. One viewer per meeting also hands RTP to
//! str0m, which decrypts and reassembles the frames, so the bytes are checked end to end.
//!
//! With `--record`, every step also runs with a media capture pipeline on each meeting (the
//! meeting's audio and its camera, as sent, into the embedded folder sink), in the same run:
//! recording's CPU cost per camera is the difference between the two Carillon rows.
//!
//!   cargo bench --bench video -- [--quick] [--record] [--publishers P] [--steps 5,10,20,40]
//!                                [--measure SECONDS] [--server PATH]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_chimesdkmeetings as meetings;
use carillon::join::frames::proto::sdk_signal_frame::Type;
use carillon::join::frames::proto::*;
use str0m::Event;
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use tokio::net::UdpSocket;

#[path = "clients.rs"]
mod clients;
#[path = "proc.rs"]
mod proc;
#[path = "../tests/common/vp8.rs"]
mod vp8;
use clients::{Keys, Peer, Process, drain, join, next_of, sdk, start_carillon, subscribe};
use proc::{cpu_seconds, status_bytes};

const KEYS: Keys = Keys {
    access_key_id: "AKIDVIDEOBENCH000001",
    secret: "video-bench-secret",
};
const FPS: u32 = 30;
const BITRATE: u32 = 1_000_000;
/// A keyframe every 2 s, five times the size of a delta frame.
const KEYFRAME_INTERVAL: u32 = 60;
const KEYFRAME_RATIO: u32 = 5;

/// What every client reads: whether the measured window is open, and when to stop.
struct Phase {
    measuring: AtomicBool,
    stopping: AtomicBool,
    connected: AtomicUsize,
}

impl Phase {
    fn new() -> Arc<Phase> {
        Arc::new(Phase {
            measuring: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            connected: AtomicUsize::new(0),
        })
    }
    fn measuring(&self) -> bool {
        self.measuring.load(Ordering::Relaxed)
    }
    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }
}

/// RTP (or relay) packets one receiver counted in the window.
#[derive(Default, Clone, Copy)]
struct Counted {
    packets: u64,
    bytes: u64,
    first_seq: Option<u64>,
    last_seq: u64,
    max_size: usize,
    /// RTP packets with an SSRC other than the one SUBSCRIBE_ACK announced.
    foreign: u64,
    /// Frames str0m reassembled that matched the publisher's byte for byte, and that did not.
    frames_ok: u64,
    frames_bad: u64,
    connected: bool,
}

impl Counted {
    fn add(&mut self, seq: u64, size: usize) {
        self.packets += 1;
        self.bytes += size as u64;
        self.first_seq.get_or_insert(seq);
        self.last_seq = self.last_seq.max(seq);
        self.max_size = self.max_size.max(size);
    }
}

/// Extends 16-bit RTP sequence numbers across wraps.
#[derive(Default)]
struct SeqExtender {
    last: Option<u64>,
}

impl SeqExtender {
    fn extend(&mut self, seq: u16) -> u64 {
        let seq = u64::from(seq);
        let extended = match self.last {
            None => seq + (1 << 16),
            Some(last) => {
                let base = last & !0xffff;
                [base.wrapping_sub(1 << 16), base, base + (1 << 16)]
                    .into_iter()
                    .map(|b| b + seq)
                    .min_by_key(|candidate| candidate.abs_diff(last))
                    .unwrap_or(seq)
            }
        };
        self.last = Some(self.last.map_or(extended, |l| l.max(extended)));
        extended
    }
}

// ---------------------------------------------------------------------------------------------
// Signaling (JOIN, SUBSCRIBE with video) and the API.

/// JOIN, then SUBSCRIBE; returns the SUBSCRIBE_ACK and a task that keeps draining the socket.
async fn signal(
    url: &str,
    token: &str,
    offer: String,
    send_streams: Vec<SdkStreamDescriptor>,
    receive_stream_ids: Vec<u32>,
) -> (SdkSubscribeAckFrame, tokio::task::JoinHandle<()>) {
    let mut socket = join(url, token).await;
    next_of(&mut socket, Type::Index).await;
    let camera = send_streams
        .iter()
        .any(|d| d.media_type == Some(SdkStreamMediaType::Video as i32));
    let duplex = if camera {
        SdkStreamServiceType::Duplex
    } else {
        SdkStreamServiceType::Rx
    };
    let ack = subscribe(&mut socket, offer, duplex, send_streams, receive_stream_ids).await;
    (ack, drain(socket))
}

fn audio_descriptor() -> SdkStreamDescriptor {
    SdkStreamDescriptor {
        stream_id: Some(1),
        group_id: Some(1),
        track_label: Some("AmazonChimeExpressAudio".into()),
        media_type: Some(SdkStreamMediaType::Audio as i32),
        ..Default::default()
    }
}

fn camera_descriptor() -> SdkStreamDescriptor {
    SdkStreamDescriptor {
        stream_id: Some(2),
        group_id: Some(2),
        track_label: Some("AmazonChimeExpressVideo".into()),
        media_type: Some(SdkStreamMediaType::Video as i32),
        max_bitrate_kbps: Some(BITRATE / 1000),
        framerate: Some(FPS),
        ..Default::default()
    }
}

/// Creates `count` meetings of `attendees`: (signaling url, join tokens) per meeting.
async fn setup(
    api: &meetings::Client,
    count: usize,
    attendees: usize,
) -> Vec<(String, Vec<String>)> {
    let rooms = clients::setup(api, "video-bench-", count, attendees).await;
    for (_, tokens) in &rooms {
        assert_eq!(tokens.len(), attendees, "every attendee created");
    }
    rooms
}

// ---------------------------------------------------------------------------------------------
// WebRTC clients.

/// Sends synthetic VP8 frames at 30 fps once connected (a keyframe every 2 s and whenever the
/// server asks for one). Returns (frames, bytes) sent in the window and the stream id.
async fn publisher(
    url: String,
    token: String,
    phase: Arc<Phase>,
    stream_tx: tokio::sync::oneshot::Sender<u32>,
) -> (u64, u64) {
    let mut peer = Peer::new().await;
    let mut api = peer.rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    let camera = api.add_media(MediaKind::Video, Direction::SendRecv, None, None, None);
    let (offer, pending) = api.apply().expect("offer");
    let (ack, _drain) = signal(
        &url,
        &token,
        offer.to_sdp_string(),
        vec![audio_descriptor(), camera_descriptor()],
        vec![0],
    )
    .await;
    let stream = ack
        .allocations
        .first()
        .and_then(|a| a.stream_id)
        .expect("a stream allocated to the camera");
    let answer = ack.sdp_answer.expect("answer");
    peer.accept_answer(pending, &answer);
    let _ = stream_tx.send(stream);
    let (key_len, delta_len) = vp8::sizes(BITRATE, FPS, KEYFRAME_INTERVAL, KEYFRAME_RATIO);
    let mut connected = false;
    let mut keyframe_asked = false;
    let mut index = 0u32;
    let mut since_keyframe = KEYFRAME_INTERVAL;
    let mut next_frame = Instant::now();
    let (mut frames, mut bytes) = (0u64, 0u64);
    let mut buf = vec![0u8; 2048];
    while !phase.stopping() {
        let Some(deadline) = peer.poll(|_, event| match event {
            Event::Connected => connected = true,
            Event::KeyframeRequest(_) => keyframe_asked = true,
            _ => {}
        }) else {
            break;
        };
        if connected && Instant::now() >= next_frame {
            if index == 0 {
                phase.connected.fetch_add(1, Ordering::Relaxed);
            }
            let keyframe = since_keyframe >= KEYFRAME_INTERVAL || keyframe_asked;
            if keyframe {
                since_keyframe = 0;
                keyframe_asked = false;
            }
            since_keyframe += 1;
            let data = vp8::frame(index, keyframe, if keyframe { key_len } else { delta_len });
            let len = data.len();
            let pt = peer.rtc.writer(camera).and_then(|w| {
                w.payload_params()
                    .find(|p| p.spec().codec == Codec::Vp8)
                    .map(|p| p.pt())
            });
            if let (Some(pt), Some(writer)) = (pt, peer.rtc.writer(camera)) {
                let time = MediaTime::new(
                    u64::from(index) * 90_000 / u64::from(FPS),
                    Frequency::NINETY_KHZ,
                );
                if writer.write(pt, Instant::now(), time, data).is_ok() && phase.measuring() {
                    frames += 1;
                    bytes += len as u64;
                }
            }
            index += 1;
            next_frame += Duration::from_micros(1_000_000 / u64::from(FPS));
            continue;
        }
        let wake = deadline
            .min(next_frame)
            .max(Instant::now() + Duration::from_micros(500));
        peer.receive_until(wake, &mut buf).await;
    }
    (frames, bytes)
}

/// Whether a datagram is RTP (not STUN, DTLS or RTCP; RFC 7983, RFC 5761).
fn is_rtp(datagram: &[u8]) -> bool {
    datagram.len() >= 12
        && (128..=191).contains(&datagram[0])
        && !(192..=223).contains(&datagram[1])
}

/// Subscribes to `stream` on one receive section and counts the RTP that arrives there. A
/// `full` viewer also hands RTP to str0m and checks every reassembled frame byte for byte.
async fn viewer(url: String, token: String, stream: u32, full: bool, phase: Arc<Phase>) -> Counted {
    let mut peer = Peer::new().await;
    let mut api = peer.rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    api.add_media(MediaKind::Video, Direction::Inactive, None, None, None);
    let remote: Mid = api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let (offer, pending) = api.apply().expect("offer");
    let (ack, _drain) = signal(
        &url,
        &token,
        offer.to_sdp_string(),
        vec![audio_descriptor()],
        vec![0, stream],
    )
    .await;
    let label = format!("v_{remote}");
    let ssrc = ack
        .tracks
        .iter()
        .find(|t| t.track_label.as_deref() == Some(label.as_str()))
        .and_then(|t| t.ssrc)
        .unwrap_or_else(|| panic!("SUBSCRIBE_ACK tracks[] has {label}: {:?}", ack.tracks));
    let answer = ack.sdp_answer.expect("answer");
    peer.accept_answer(pending, &answer);
    let mut counted = Counted::default();
    let mut seq = SeqExtender::default();
    let mut buf = vec![0u8; 2048];
    while !phase.stopping() {
        let measuring = phase.measuring();
        let Some(deadline) = peer.poll(|_, event| match event {
            Event::Connected => {
                counted.connected = true;
                phase.connected.fetch_add(1, Ordering::Relaxed);
            }
            Event::MediaData(data) if measuring && data.mid == remote => {
                if vp8::check(&data.data).is_some() {
                    counted.frames_ok += 1;
                } else {
                    counted.frames_bad += 1;
                }
            }
            _ => {}
        }) else {
            break;
        };
        let wake = deadline.max(Instant::now() + Duration::from_micros(500));
        tokio::select! {
            received = peer.socket.recv_from(&mut buf) => {
                let Ok((n, source)) = received else { continue };
                let datagram = &buf[..n];
                if is_rtp(datagram) {
                    if phase.measuring() {
                        let packet_ssrc = u32::from_be_bytes([datagram[8], datagram[9], datagram[10], datagram[11]]);
                        if packet_ssrc == ssrc {
                            let extended = seq.extend(u16::from_be_bytes([datagram[2], datagram[3]]));
                            counted.add(extended, n);
                        } else {
                            counted.foreign += 1;
                        }
                    }
                    if !full {
                        continue;
                    }
                }
                peer.input(datagram, source);
            }
            _ = tokio::time::sleep_until(wake.into()) => peer.timeout(),
        }
    }
    counted
}

// ---------------------------------------------------------------------------------------------
// The servers: `carillon serve`, and the UDP relay floor.

/// The relay's datagrams: [kind][group u16][sequence u32][payload]; kind 0 joins a group, 1 is
/// data, forwarded as is to every member of its group.
const RELAY_JOIN: u8 = 0;
const RELAY_DATA: u8 = 1;

/// The relay process: one thread, blocking socket, same buffer sizes as Carillon's media socket.
fn run_relay() {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .expect("socket");
    let _ = socket.set_recv_buffer_size(8 << 20);
    let _ = socket.set_send_buffer_size(8 << 20);
    let bind: SocketAddr = "127.0.0.1:0".parse().expect("address");
    socket.bind(&bind.into()).expect("bind");
    let socket: std::net::UdpSocket = socket.into();
    println!("{}", socket.local_addr().expect("address").port());
    let mut groups: Vec<Vec<SocketAddr>> = Vec::new();
    let mut buf = vec![0u8; 2048];
    loop {
        let Ok((n, source)) = socket.recv_from(&mut buf) else {
            continue;
        };
        if n < 3 {
            continue;
        }
        let group = usize::from(u16::from_be_bytes([buf[1], buf[2]]));
        match buf[0] {
            RELAY_JOIN => {
                if groups.len() <= group {
                    groups.resize(group + 1, Vec::new());
                }
                groups[group].push(source);
            }
            RELAY_DATA => {
                for member in groups.get(group).map_or(&[][..], Vec::as_slice) {
                    let _ = socket.send_to(&buf[..n], member);
                }
            }
            _ => {}
        }
    }
}

fn start_relay() -> (Process, SocketAddr) {
    let exe = std::env::current_exe().expect("this benchmark's path");
    let mut child = Command::new(exe)
        .arg("--relay")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("relay process");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("relay stdout");
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
        .expect("relay port");
    let port: u16 = line.trim().parse().expect("a port number");
    (Process { child }, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// A relay publisher: the same frames as the WebRTC publisher, cut into datagrams of at most
/// `packet` bytes (the largest Carillon sent), a frame's datagrams sent back to back.
async fn relay_publisher(relay: SocketAddr, group: u16, packet: usize, phase: Arc<Phase>) -> u64 {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("udp");
    let (key_len, delta_len) = vp8::sizes(BITRATE, FPS, KEYFRAME_INTERVAL, KEYFRAME_RATIO);
    let payload = packet.saturating_sub(7).max(100);
    let mut seq = 0u32;
    let mut index = 0u32;
    let mut next_frame = Instant::now();
    let mut datagram = Vec::with_capacity(packet);
    let mut bytes = 0u64;
    while !phase.stopping() {
        let keyframe = index.is_multiple_of(KEYFRAME_INTERVAL);
        let frame = vp8::frame(index, keyframe, if keyframe { key_len } else { delta_len });
        for chunk in frame.chunks(payload) {
            datagram.clear();
            datagram.push(RELAY_DATA);
            datagram.extend_from_slice(&group.to_be_bytes());
            datagram.extend_from_slice(&seq.to_be_bytes());
            datagram.extend_from_slice(chunk);
            if socket.send_to(&datagram, relay).await.is_ok() && phase.measuring() {
                bytes += datagram.len() as u64;
            }
            seq = seq.wrapping_add(1);
        }
        index += 1;
        next_frame += Duration::from_micros(1_000_000 / u64::from(FPS));
        tokio::time::sleep_until(next_frame.into()).await;
    }
    bytes
}

async fn relay_receiver(relay: SocketAddr, group: u16, phase: Arc<Phase>) -> Counted {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("udp");
    let mut join = vec![RELAY_JOIN];
    join.extend_from_slice(&group.to_be_bytes());
    socket.send_to(&join, relay).await.expect("join the relay");
    let mut counted = Counted {
        connected: true,
        ..Counted::default()
    };
    phase.connected.fetch_add(1, Ordering::Relaxed);
    let mut buf = vec![0u8; 2048];
    while !phase.stopping() {
        let received =
            tokio::time::timeout(Duration::from_millis(100), socket.recv_from(&mut buf)).await;
        let Ok(Ok((n, _))) = received else { continue };
        if n >= 7 && phase.measuring() {
            let seq = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]);
            counted.add(u64::from(seq), n);
        }
    }
    counted
}

// ---------------------------------------------------------------------------------------------
// One step, and the report.

struct Measured {
    clients: usize,
    connected: usize,
    mbits: f64,
    cpu_percent: f64,
    loss_percent: f64,
    /// Viewers that got nothing in the window.
    starved: usize,
    foreign: u64,
    frames_ok: u64,
    frames_bad: u64,
    max_packet: usize,
    mean_packet: f64,
    packets_per_second: f64,
    peak_rss_mib: f64,
    sent_mbits: f64,
    /// With recording on: the bucket's growth in the window, KiB/s over all meetings.
    recorded_kib_per_second: Option<f64>,
}

fn summarize(
    counts: &[Counted],
    clients: usize,
    connected: usize,
    cpu: f64,
    measure: Duration,
    rss: u64,
    sent_bytes: u64,
) -> Measured {
    let secs = measure.as_secs_f64();
    let (mut expected, mut packets, mut bytes) = (0u64, 0u64, 0u64);
    for c in counts {
        if let Some(first) = c.first_seq {
            expected += c.last_seq - first + 1;
        }
        packets += c.packets;
        bytes += c.bytes;
    }
    Measured {
        clients,
        connected,
        mbits: bytes as f64 * 8.0 / secs / 1e6,
        cpu_percent: 100.0 * cpu / secs,
        loss_percent: if expected > 0 {
            100.0 * (1.0 - packets as f64 / expected as f64)
        } else {
            100.0
        },
        starved: counts.iter().filter(|c| c.packets == 0).count(),
        foreign: counts.iter().map(|c| c.foreign).sum(),
        frames_ok: counts.iter().map(|c| c.frames_ok).sum(),
        frames_bad: counts.iter().map(|c| c.frames_bad).sum(),
        max_packet: counts.iter().map(|c| c.max_size).max().unwrap_or(0),
        mean_packet: bytes as f64 / packets.max(1) as f64,
        packets_per_second: packets as f64 / secs,
        peak_rss_mib: rss as f64 / f64::from(1 << 20),
        sent_mbits: sent_bytes as f64 * 8.0 / secs / 1e6,
        recorded_kib_per_second: None,
    }
}

/// Waits until `expected` clients are connected (or `limit` passed), lets keyframes settle,
/// then measures for `measure`; returns the server's CPU seconds in the window.
async fn window(
    phase: &Phase,
    pid: u32,
    expected: usize,
    limit: Duration,
    measure: Duration,
) -> f64 {
    let deadline = Instant::now() + limit;
    while phase.connected.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = cpu_seconds(pid);
    phase.measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(measure).await;
    phase.measuring.store(false, Ordering::Relaxed);
    let cpu = cpu_seconds(pid) - before;
    tokio::time::sleep(Duration::from_millis(200)).await;
    phase.stopping.store(true, Ordering::Relaxed);
    cpu
}

/// One step against Carillon; with `record`, every meeting has a media capture pipeline
/// (audio, and the camera as sent) from before its clients join.
async fn carillon_step(
    binary: &Path,
    publishers: usize,
    viewers: usize,
    measure: Duration,
    record: bool,
) -> Measured {
    let data = tempfile::tempdir().expect("tempdir");
    let (server, endpoint) = start_carillon(binary, data.path(), &KEYS, &[]);
    let pid = server.child.id();
    let rooms = setup(&sdk(&endpoint, &KEYS), publishers, 1 + viewers).await;
    let recording = record && clients::record_meetings(&endpoint, &KEYS, &rooms).await;
    let phase = Phase::new();
    let mut publisher_tasks = Vec::new();
    let mut viewer_tasks = Vec::new();
    for (url, tokens) in rooms {
        let (stream_tx, stream_rx) = tokio::sync::oneshot::channel();
        publisher_tasks.push(tokio::spawn(publisher(
            url.clone(),
            tokens[0].clone(),
            phase.clone(),
            stream_tx,
        )));
        let stream = stream_rx.await.expect("the publisher's stream id");
        for (i, token) in tokens.into_iter().skip(1).enumerate() {
            viewer_tasks.push(tokio::spawn(viewer(
                url.clone(),
                token,
                stream,
                i == 0,
                phase.clone(),
            )));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let clients = publishers * (1 + viewers);
    let bucket = data.path().join("buckets/bench-recordings");
    let written_before = clients::folder_bytes(&bucket);
    let cpu = window(
        &phase,
        pid,
        clients,
        Duration::from_secs(10) + Duration::from_millis(30 * clients as u64),
        measure,
    )
    .await;
    let written = clients::folder_bytes(&bucket) - written_before;
    let rss = status_bytes(pid, "VmHWM");
    let mut sent = 0;
    for task in publisher_tasks {
        sent += task.await.expect("publisher").1;
    }
    let mut counts = Vec::new();
    for task in viewer_tasks {
        counts.push(task.await.expect("viewer"));
    }
    drop(server);
    let connected = counts.iter().filter(|c| c.connected).count() + publishers;
    let mut measured = summarize(&counts, clients, connected, cpu, measure, rss, sent);
    measured.recorded_kib_per_second =
        recording.then(|| written as f64 / 1024.0 / measure.as_secs_f64());
    measured
}

async fn relay_step(
    publishers: usize,
    viewers: usize,
    packet: usize,
    measure: Duration,
) -> Measured {
    let (relay, addr) = start_relay();
    let pid = relay.child.id();
    let phase = Phase::new();
    let mut receivers = Vec::new();
    for group in 0..publishers {
        for _ in 0..viewers {
            receivers.push(tokio::spawn(relay_receiver(
                addr,
                group as u16,
                phase.clone(),
            )));
        }
    }
    // The joins reach the relay before the first data.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut senders = Vec::new();
    for group in 0..publishers {
        senders.push(tokio::spawn(relay_publisher(
            addr,
            group as u16,
            packet,
            phase.clone(),
        )));
    }
    let clients = publishers * (1 + viewers);
    let cpu = window(&phase, pid, 0, Duration::ZERO, measure).await;
    let rss = status_bytes(pid, "VmHWM");
    let mut sent = 0;
    for task in senders {
        sent += task.await.expect("relay publisher");
    }
    let mut counts = Vec::new();
    for task in receivers {
        counts.push(task.await.expect("relay receiver"));
    }
    drop(relay);
    summarize(&counts, clients, clients, cpu, measure, rss, sent)
}

fn arg<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.windows(2)
        .find(|w| w[0] == name)
        .map(|w| w[1].as_str())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--relay") {
        run_relay();
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    // Also runs every step with each meeting recorded (a capture pipeline per meeting), in the
    // same run, so that recording's cost is the difference between two rows.
    let record = args.iter().any(|a| a == "--record");
    let publishers: usize =
        arg(&args, "--publishers").map_or(4, |p| p.parse().expect("--publishers N"));
    let steps: Vec<usize> = match arg(&args, "--steps") {
        Some(list) => list
            .split(',')
            .map(|s| s.trim().parse().expect("--steps 5,10,20"))
            .collect(),
        None if quick => vec![5],
        None => vec![5, 10, 20, 40],
    };
    let measure = Duration::from_secs(
        arg(&args, "--measure").map_or(if quick { 4 } else { 8 }, |s| {
            s.parse().expect("--measure SECONDS")
        }),
    );
    let binary = PathBuf::from(arg(&args, "--server").unwrap_or("target/release/carillon"));
    let runtime = clients::runtime();
    let (key_len, delta_len) = vp8::sizes(BITRATE, FPS, KEYFRAME_INTERVAL, KEYFRAME_RATIO);
    println!(
        "{publishers} meetings, 1 publisher each ({} kbit/s VP8 at {FPS} fps: keyframe {key_len} B every {} s, delta frames {delta_len} B), viewers per meeting in steps {steps:?}, {} s measured per step",
        BITRATE / 1000,
        KEYFRAME_INTERVAL / FPS,
        measure.as_secs()
    );
    println!();
    println!(
        "| server | viewers per meeting | streams forwarded | clients (connected) | sent Mbit/s | forwarded Mbit/s (at receivers) | packets/s | mean / max packet B | server CPU % of a core | Mbit/s per core | loss % | starved viewers | frames checked (bad) | peak RSS MiB | per-core ratio to relay | recording written KiB/s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &viewers in &steps {
        let carillon =
            runtime.block_on(carillon_step(&binary, publishers, viewers, measure, false));
        let recorded = record
            .then(|| runtime.block_on(carillon_step(&binary, publishers, viewers, measure, true)));
        let packet = if carillon.max_packet > 0 {
            carillon.max_packet
        } else {
            1200
        };
        let relay = runtime.block_on(relay_step(publishers, viewers, packet, measure));
        let per_core = |m: &Measured| m.mbits / (m.cpu_percent / 100.0).max(1e-6);
        let ratio = per_core(&carillon) / per_core(&relay).max(1e-6);
        let recorded_ratio = recorded
            .as_ref()
            .map(|r| per_core(r) / per_core(&relay).max(1e-6));
        let rows = [
            Some(("carillon", &carillon, Some(ratio))),
            recorded
                .as_ref()
                .map(|r| ("carillon, recorded", r, recorded_ratio)),
            Some(("udp relay", &relay, None)),
        ];
        for (name, m, ratio) in rows.into_iter().flatten() {
            let extra = if m.foreign > 0 {
                format!(" ({} foreign SSRC)", m.foreign)
            } else {
                String::new()
            };
            let written = m
                .recorded_kib_per_second
                .map_or("-".to_string(), |kib| format!("{kib:.0}"));
            println!(
                "| {name} | {viewers} | {} | {} ({}) | {:.1} | {:.1} | {:.0} | {:.0} / {} | {:.1} | {:.0} | {:.3}{extra} | {} | {} | {:.0} | {} | {written} |",
                publishers * viewers,
                m.clients,
                m.connected,
                m.sent_mbits,
                m.mbits,
                m.packets_per_second,
                m.mean_packet,
                m.max_packet,
                m.cpu_percent,
                per_core(m),
                m.loss_percent,
                m.starved,
                if name.starts_with("carillon") {
                    format!("{} ({})", m.frames_ok, m.frames_bad)
                } else {
                    "-".to_string()
                },
                m.peak_rss_mib,
                ratio.map_or("-".to_string(), |r| format!("{r:.2}")),
            );
        }
    }
}
