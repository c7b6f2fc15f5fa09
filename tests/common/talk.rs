//! A native attendee: str0m joins through signaling, sends a 48 kHz mono signal as 20 ms Opus
//! frames in real time (then silence), and keeps every signaling frame it is sent.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use carillon::join::frames::proto::SdkSignalFrame;
use carillon::media::opus::{Encoder, FRAME_SAMPLES};
use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;

use super::signal::{Received, SignalClient};

/// What the attendee saw.
pub struct Talk {
    /// Its media connected.
    pub connected: bool,
    /// Every frame signaling sent it after SUBSCRIBE, in order.
    pub frames: Vec<SdkSignalFrame>,
}

/// `seconds` of a sine tone at `frequency` Hz, at 0.2 of full scale.
pub fn tone(frequency: f32, seconds: f32) -> Arc<[f32]> {
    (0..(seconds * 48_000.0) as usize)
        .map(|i| 0.2 * (2.0 * std::f32::consts::PI * frequency * i as f32 / 48_000.0).sin())
        .collect()
}

/// The samples of a 16-bit PCM WAV file (mono, 48 kHz, as tests/transcription/speak.sh writes).
pub fn read_wav(path: &std::path::Path) -> Arc<[f32]> {
    let bytes = std::fs::read(path).expect("the WAV file reads");
    assert_eq!(&bytes[0..4], b"RIFF", "{} is a WAV file", path.display());
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let size = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]])
            as usize;
        if &bytes[at..at + 4] == b"fmt " {
            let channels = u16::from_le_bytes([bytes[at + 10], bytes[at + 11]]);
            let rate = u32::from_le_bytes([
                bytes[at + 12],
                bytes[at + 13],
                bytes[at + 14],
                bytes[at + 15],
            ]);
            assert_eq!((channels, rate), (1, 48_000), "mono 48 kHz");
        }
        if &bytes[at..at + 4] == b"data" {
            let end = (at + 8 + size).min(bytes.len());
            return bytes[at + 8..end]
                .chunks_exact(2)
                .map(|s| f32::from(i16::from_le_bytes([s[0], s[1]])) / 32768.0)
                .collect();
        }
        at += 8 + size + (size & 1);
    }
    panic!("{} has no data chunk", path.display());
}

/// Joins with `token`, sends `signal` once from the moment media connects (silence after it),
/// and keeps reading signaling, all for `duration`.
pub async fn talk(
    signaling_url: &str,
    token: &str,
    signal: Arc<[f32]>,
    duration: Duration,
) -> Talk {
    str0m::crypto::from_feature_flags().install_process_default();
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("udp");
    let local: SocketAddr = socket.local_addr().expect("addr");
    let mut rtc = Rtc::builder().build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").expect("candidate"));
    let mut api = rtc.sdp_api();
    let mid = api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    let (offer, pending) = api.apply().expect("offer");
    let mut client = SignalClient::connect(signaling_url, token).await;
    client.join().await;
    let answer = client.subscribe_with(offer.to_sdp_string()).await;
    rtc.sdp_api()
        .accept_answer(
            pending,
            SdpAnswer::from_sdp_string(&answer).expect("answer parses"),
        )
        .expect("answer accepted");
    // Signaling stays open, and read, while the media flows.
    let until = Instant::now() + duration;
    let signaling = tokio::spawn(async move {
        let mut frames = Vec::new();
        while let Ok(received) = tokio::time::timeout_at(until.into(), client.recv()).await {
            match received {
                Received::Frame(frame) => frames.push(*frame),
                Received::Closed(..) => break,
            }
        }
        frames
    });
    let mut connected = false;
    let mut encoder = Encoder::new().expect("encoder");
    let mut next_frame = Instant::now();
    let (mut sent, mut rtp_time) = (0usize, 0u64);
    let mut buf = vec![0u8; 2000];
    while Instant::now() < until {
        let deadline = loop {
            match rtc.poll_output().expect("poll") {
                Output::Timeout(at) => break at,
                Output::Transmit(t) => {
                    let _ = socket.send_to(&t.contents, t.destination).await;
                }
                Output::Event(Event::Connected) => connected = true,
                Output::Event(_) => {}
            }
        };
        if connected && Instant::now() >= next_frame {
            let writer = rtc.writer(mid).expect("audio writer");
            let pt = writer
                .payload_params()
                .find(|p| p.spec().codec == Codec::Opus)
                .map(|p| p.pt())
                .expect("opus negotiated");
            let mut pcm = [0f32; FRAME_SAMPLES];
            for (i, sample) in pcm.iter_mut().enumerate() {
                *sample = signal.get(sent + i).copied().unwrap_or(0.0);
            }
            sent += FRAME_SAMPLES;
            let payload = encoder.encode(&mut pcm).expect("encode");
            writer
                .audio_level(-30, true)
                .write(
                    pt,
                    Instant::now(),
                    MediaTime::new(rtp_time, Frequency::FORTY_EIGHT_KHZ),
                    payload,
                )
                .expect("write");
            rtp_time += FRAME_SAMPLES as u64;
            next_frame += Duration::from_millis(20);
            continue;
        }
        let wake = deadline
            .min(next_frame)
            .max(Instant::now() + Duration::from_millis(1));
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let (n, source) = received.expect("recv");
                if let Ok(contents) = buf[..n].try_into() {
                    let input = Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source, destination: local, contents });
                    rtc.handle_input(input).expect("input");
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => {
                rtc.handle_input(Input::Timeout(Instant::now())).expect("timeout");
            }
        }
    }
    let frames = signaling.await.expect("signaling reader");
    Talk { connected, frames }
}
