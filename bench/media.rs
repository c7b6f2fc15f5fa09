//! Media-plane benchmark: native str0m WebRTC clients (full ICE agents, DTLS-SRTP, real Opus)
//! load `carillon serve` processes, each measured in the same run:
//!
//! - `big`: one meeting of 250 attendees (Chime's maximum), 3 speaking, everyone else sending
//!   silence (as a muted-by-silence browser does); talkers send a synthetic voice;
//! - `many`: 20 meetings of 10, everyone speaking;
//! - `small`: 8 meetings of 10 with 3 speaking and 7 sending silence, the shape most meetings
//!   have (issue 29's target: at most 0.3 % of a core per participant);
//! - `codec`: the mixer's Opus encoder at each complexity on a synthetic voice (harmonics of a
//!   gliding pitch through moving formants, syllables and pauses): microseconds per 20 ms
//!   encode and the decoded signal's SNR against the input, to choose the mix's complexity by
//!   its cost and what it loses;
//! - `latency`: one meeting of 3, a speaker alternating 500 ms of tone and silence, a listener
//!   decoding its downlink: the time from the first tone packet sent to the first loud frame heard;
//! - `many-recorded`: `many` with a media capture pipeline recording each meeting's audio into
//!   the embedded folder sink (issue 26): its CPU against `many`'s, in the same run, is what
//!   recording costs; the bytes written are reported per recorded meeting.
//! - `many-transcribed`: `many` with live transcription in each meeting (issue 27), through the
//!   pocketsphinx fixture engine of tests/transcription (its Python from
//!   CARILLON_BENCH_TRANSCRIPTION_PYTHON, else target/compat/transcription/bin/python; the
//!   scenario is skipped with a note when neither is there). The engine's own CPU is not the
//!   server's: `many-transcribed` against `many` is what transcribing every attendee costs the
//!   server (decoding each one, cutting utterances, the requests), with the engine as far behind
//!   as one engine on a shared 2-core machine is.
//!
//! For each server: its CPU (user + system from /proc, so the load generator does not count) per
//! participant, downlink loss by RTP sequence numbers, downlink frames per second per listener,
//! peak RSS. `--server NAME=PATH` adds binaries to compare (for example the loudest-speaker
//! forwarder that the mixer replaced: `bench/run media` builds it from commit bfac69d).
//!
//!   cargo bench --bench media -- [--quick] [--server NAME=PATH]... [--scenario NAME[,NAME...]]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use carillon::join::frames::proto::*;
use carillon::media::opus::{Decoder, Encoder, FRAME_SAMPLES, MAX_PACKET_SAMPLES, synthetic_voice};
use str0m::Event;
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime};

#[path = "clients.rs"]
mod clients;
#[path = "proc.rs"]
mod proc;
use clients::{Keys, Peer, drain, join, sdk, setup, start_carillon, subscribe};
use proc::{cpu_seconds, status_bytes};

const KEYS: Keys = Keys {
    access_key_id: "AKIDMEDIABENCH000001",
    secret: "media-bench-secret",
};

#[derive(Clone, Copy)]
enum Voice {
    /// Talking without pause (the synthetic voice), at this loudness (-dBov).
    Tone(i8),
    /// Silence, level 127.
    Silent,
    /// 500 ms of tone, 500 ms of silence; records when each tone burst starts.
    Probe,
}

/// Per meeting, each client's voice and whether it decodes its downlink.
type Meetings = Vec<Vec<(Voice, bool)>>;

struct Packets {
    /// 5 s of the synthetic voice, what talkers send (a pure tone would be a poor stand-in:
    /// libopus codes it in CELT at a third of a voice's cost, see the `codec` table).
    voice: Vec<Vec<u8>>,
    /// One second of a 440 Hz tone, the latency probe's bursts (loud from the first frame).
    tone: Vec<Vec<u8>>,
    silence: Vec<u8>,
}

fn encode_packets() -> Packets {
    let mut encoder = Encoder::new().expect("encoder");
    let tone = (0..50)
        .map(|frame| {
            let mut pcm = [0f32; FRAME_SAMPLES];
            for (i, s) in pcm.iter_mut().enumerate() {
                let t = (frame * FRAME_SAMPLES + i) as f32 / 48_000.0;
                *s = 0.2 * (2.0 * std::f32::consts::PI * 440.0 * t).sin();
            }
            encoder.encode(&mut pcm).expect("encode")
        })
        .collect();
    let mut speaking = Encoder::new().expect("encoder");
    let voice = speaking
        .encode_frames(&synthetic_voice()[..250 * FRAME_SAMPLES])
        .expect("encode");
    let mut silent = Encoder::new().expect("encoder");
    let silence = silent.encode(&mut [0f32; FRAME_SAMPLES]).expect("encode");
    Packets {
        voice,
        tone,
        silence,
    }
}

#[derive(Default)]
struct ClientResult {
    connected: bool,
    frames: u64,
    first_seq: Option<u64>,
    last_seq: u64,
    /// Delays from a probe's tone onset to the first loud frame decoded here.
    onset_delays: Vec<Duration>,
}

struct Window {
    from: Instant,
    until: Instant,
    stop: Instant,
}

/// The time the probe's latest tone burst started, in microseconds since `epoch`.
struct ProbeClock {
    epoch: Instant,
    onset_micros: AtomicU64,
}

#[allow(clippy::too_many_arguments)]
async fn client(
    signaling_url: String,
    token: String,
    voice: Voice,
    decode: bool,
    packets: Arc<Packets>,
    probe: Arc<ProbeClock>,
    window: Arc<Window>,
) -> ClientResult {
    let mut peer = Peer::new().await;
    let mut api = peer.rtc.sdp_api();
    let mid = api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    let (offer, pending) = api.apply().expect("offer");
    let answer = signal(&signaling_url, &token, offer.to_sdp_string()).await;
    peer.accept_answer(pending, &answer.0);
    let _signaling = answer.1; // kept open for the whole run

    let mut result = ClientResult::default();
    let mut decoder = Decoder::new().expect("decoder");
    let mut pcm = [0f32; MAX_PACKET_SAMPLES];
    let mut loud = false;
    let mut next_frame = Instant::now();
    let mut frame_no = 0usize;
    let mut buf = vec![0u8; 2000];
    while Instant::now() < window.stop {
        let Some(deadline) = peer.poll(|_, event| match event {
            Event::Connected => result.connected = true,
            Event::MediaData(data) => {
                let now = Instant::now();
                if now >= window.from && now < window.until {
                    result.frames += 1;
                    let seq: u64 = **data.seq_range.end();
                    result.first_seq.get_or_insert(seq);
                    result.last_seq = result.last_seq.max(seq);
                }
                if decode && let Ok(n) = decoder.decode(Some(&data.data), 0, &mut pcm) {
                    let energy = pcm.iter().take(n).map(|s| s * s).sum::<f32>() / n as f32;
                    let now_loud = energy > 1e-3;
                    if now_loud && !loud {
                        let sent = probe.onset_micros.load(Ordering::Relaxed);
                        let sent = probe.epoch + Duration::from_micros(sent);
                        if sent > probe.epoch && now > sent {
                            result.onset_delays.push(now - sent);
                        }
                    }
                    loud = now_loud;
                }
            }
            _ => {}
        }) else {
            return result;
        };
        if result.connected && Instant::now() >= next_frame {
            let (payload, level) = match voice {
                Voice::Tone(level) => (packets.voice[frame_no % 250].clone(), level),
                Voice::Silent => (packets.silence.clone(), -127),
                Voice::Probe => {
                    let phase = frame_no % 50; // 25 frames tone, 25 silence
                    if phase == 0 {
                        let micros = u64::try_from(probe.epoch.elapsed().as_micros()).unwrap_or(0);
                        probe.onset_micros.store(micros, Ordering::Relaxed);
                    }
                    if phase < 25 {
                        (packets.tone[phase].clone(), -20)
                    } else {
                        (packets.silence.clone(), -127)
                    }
                }
            };
            if let Some(writer) = peer.rtc.writer(mid) {
                let pt = writer
                    .payload_params()
                    .find(|p| p.spec().codec == Codec::Opus)
                    .map(|p| p.pt())
                    .expect("opus negotiated");
                let time = MediaTime::new(
                    (frame_no * FRAME_SAMPLES) as u64,
                    Frequency::FORTY_EIGHT_KHZ,
                );
                let _ = writer.audio_level(level, level > -127).write(
                    pt,
                    Instant::now(),
                    time,
                    payload,
                );
            }
            frame_no += 1;
            next_frame += Duration::from_millis(20);
            continue;
        }
        let wake = deadline
            .min(next_frame)
            .max(Instant::now() + Duration::from_micros(500));
        peer.receive_until(wake, &mut buf).await;
    }
    result
}

/// JOIN and SUBSCRIBE over the signaling WebSocket; returns the SDP answer and the open socket,
/// whose frames a task keeps draining.
async fn signal(url: &str, token: &str, offer: String) -> (String, tokio::task::JoinHandle<()>) {
    let mut socket = join(url, token).await;
    let answer = subscribe(
        &mut socket,
        offer,
        SdkStreamServiceType::Duplex,
        Vec::new(),
        Vec::new(),
    )
    .await
    .sdp_answer
    .expect("answer");
    (answer, drain(socket))
}

struct Measured {
    participants: usize,
    /// Recorded meetings, and the bytes their captures wrote during the measurement.
    recorded: Option<(usize, u64)>,
    connected: usize,
    cpu_percent: f64,
    loss_percent: f64,
    frames_per_second: f64,
    onset_ms: Option<(f64, f64)>,
    peak_rss_mib: f64,
}

/// Runs one scenario against one server: `voices` per meeting, steady state measured for `measure`.
async fn scenario(
    endpoint: &str,
    pid: u32,
    voices: Vec<Vec<(Voice, bool)>>,
    measure: Duration,
    recordings: Option<&std::path::Path>,
    transcribed: bool,
) -> Measured {
    let api = sdk(endpoint, &KEYS);
    let per_meeting = voices.iter().map(Vec::len).max().unwrap_or(0);
    let rooms = setup(&api, "bench-", voices.len(), per_meeting).await;
    if transcribed {
        transcribe_meetings(&api, &rooms).await;
    }
    // A server from before recording (a --server to compare) records nothing: no figure.
    let recordings = match recordings {
        Some(folder) if clients::record_meetings(endpoint, &KEYS, &rooms).await => Some(folder),
        _ => None,
    };
    let packets = Arc::new(encode_packets());
    let probe = Arc::new(ProbeClock {
        epoch: Instant::now(),
        onset_micros: AtomicU64::new(0),
    });
    let participants: usize = voices.iter().map(Vec::len).sum();
    // Joining takes a while with hundreds of DTLS handshakes; measure only the steady state.
    let settle = Duration::from_secs(4) + Duration::from_millis(20 * participants as u64);
    let start = Instant::now();
    let window = Arc::new(Window {
        from: start + settle,
        until: start + settle + measure,
        stop: start + settle + measure + Duration::from_secs(1),
    });
    let mut tasks = Vec::new();
    for ((url, tokens), voices) in rooms.into_iter().zip(voices) {
        for (token, (voice, decode)) in tokens.into_iter().zip(voices) {
            tasks.push(tokio::spawn(client(
                url.clone(),
                token,
                voice,
                decode,
                packets.clone(),
                probe.clone(),
                window.clone(),
            )));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    tokio::time::sleep_until(window.from.into()).await;
    let cpu_before = cpu_seconds(pid);
    let written_before = recordings.map(clients::folder_bytes);
    tokio::time::sleep_until(window.until.into()).await;
    let cpu = cpu_seconds(pid) - cpu_before;
    let recorded = recordings.zip(written_before).map(|(folder, before)| {
        (
            rooms_recorded(folder),
            clients::folder_bytes(folder) - before,
        )
    });
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("client"));
    }
    let (mut expected, mut received, mut frames, mut listeners) = (0u64, 0u64, 0u64, 0u64);
    let mut delays = Vec::new();
    for r in &results {
        if let Some(first) = r.first_seq {
            expected += r.last_seq - first + 1;
            received += r.frames;
            frames += r.frames;
            listeners += 1;
        }
        delays.extend(r.onset_delays.iter().map(|d| d.as_secs_f64() * 1000.0));
    }
    delays.sort_by(f64::total_cmp);
    Measured {
        participants,
        recorded,
        connected: results.iter().filter(|r| r.connected).count(),
        cpu_percent: 100.0 * cpu / measure.as_secs_f64(),
        loss_percent: if expected > 0 {
            100.0 * (1.0 - received as f64 / expected as f64)
        } else {
            100.0
        },
        frames_per_second: frames as f64 / listeners.max(1) as f64 / measure.as_secs_f64(),
        onset_ms: (!delays.is_empty())
            .then(|| (delays[delays.len() / 2], delays[delays.len() - 1])),
        peak_rss_mib: status_bytes(pid, "VmHWM") as f64 / (1 << 20) as f64,
    }
}

/// The recordings (one folder per capture pipeline) in the bucket folder.
fn rooms_recorded(folder: &std::path::Path) -> usize {
    std::fs::read_dir(folder).map_or(0, |entries| entries.count())
}

/// Starts live transcription in each meeting of `rooms` (English); false when the server does
/// not transcribe (an older build, or no engine).
pub async fn transcribe_meetings(
    api: &aws_sdk_chimesdkmeetings::Client,
    rooms: &[(String, Vec<String>)],
) -> bool {
    use aws_sdk_chimesdkmeetings::types::{
        EngineTranscribeSettings, TranscribeLanguageCode, TranscriptionConfiguration,
    };
    for (url, _) in rooms {
        let meeting_id = url.rsplit('/').next().expect("meeting id");
        let started = api
            .start_meeting_transcription()
            .meeting_id(meeting_id)
            .transcription_configuration(
                TranscriptionConfiguration::builder()
                    .engine_transcribe_settings(
                        EngineTranscribeSettings::builder()
                            .language_code(TranscribeLanguageCode::EnUs)
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await;
        if let Err(error) = started {
            eprintln!("this server does not transcribe: {error:?}");
            return false;
        }
    }
    true
}

/// The pocketsphinx fixture engine of tests/transcription, for `many-transcribed`.
struct TranscriptionEngine {
    child: std::process::Child,
    url: String,
}

impl TranscriptionEngine {
    fn start() -> Option<TranscriptionEngine> {
        use std::io::BufRead;
        let python = std::env::var("CARILLON_BENCH_TRANSCRIPTION_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from("target/compat/transcription/bin/python"));
        if !python.exists() {
            return None;
        }
        let mut child = std::process::Command::new(python)
            .args(["tests/transcription/engine.py", "--port", "0"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take()?)
            .read_line(&mut line)
            .ok()?;
        let url = line.trim().strip_prefix("listening on ")?.to_string();
        Some(TranscriptionEngine { child, url })
    }
}

impl Drop for TranscriptionEngine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let mut servers: Vec<(String, PathBuf)> = args
        .windows(2)
        .filter(|w| w[0] == "--server")
        .filter_map(|w| {
            w[1].split_once('=')
                .map(|(n, p)| (n.to_string(), PathBuf::from(p)))
        })
        .collect();
    if servers.is_empty() {
        servers.push(("mixer".into(), PathBuf::from("target/release/carillon")));
    }
    let runtime = clients::runtime();
    let measure = Duration::from_secs(if quick { 5 } else { 15 });
    let (big, many_meetings) = if quick { (50, 4) } else { (250, 20) };
    let many = |meetings: usize| -> Meetings {
        (0..meetings)
            .map(|_| (0..10).map(|_| (Voice::Tone(-30), false)).collect())
            .collect()
    };
    // Three talkers and seven silent microphones in each meeting of 10.
    let small = |meetings: usize| -> Meetings {
        (0..meetings)
            .map(|_| {
                (0..10)
                    .map(|i| {
                        let voice = if i < 3 {
                            Voice::Tone(-20 - i as i8 * 5)
                        } else {
                            Voice::Silent
                        };
                        (voice, false)
                    })
                    .collect()
            })
            .collect()
    };
    let scenarios: Vec<(&str, Meetings)> = vec![
        ("small", small(if quick { 4 } else { 8 })),
        (
            "big",
            vec![
                (0..big)
                    .map(|i| {
                        (
                            if i < 3 {
                                Voice::Tone(-20 - i as i8 * 5)
                            } else {
                                Voice::Silent
                            },
                            false,
                        )
                    })
                    .collect(),
            ],
        ),
        ("many", many(many_meetings)),
        ("many-recorded", many(many_meetings)),
        ("many-transcribed", many(many_meetings)),
        (
            "latency",
            vec![vec![
                (Voice::Probe, false),
                (Voice::Silent, true),
                (Voice::Silent, false),
            ]],
        ),
    ];
    // `--scenario NAME[,NAME…]` runs only those (for profiling, or a pair to compare).
    let only = args
        .windows(2)
        .find(|w| w[0] == "--scenario")
        .map(|w| w[1].clone());
    let scenarios: Vec<_> = scenarios
        .into_iter()
        .filter(|(name, _)| {
            only.as_deref()
                .is_none_or(|o| o.split(',').any(|o| o == *name))
        })
        .collect();
    if only
        .as_deref()
        .is_none_or(|o| o.split(',').any(|o| o == "codec"))
    {
        codec_table();
    }
    println!(
        "| server | scenario | participants (connected) | server CPU % of a core | CPU per participant % | downlink loss % | downlink frames/s per listener | onset delay p50 / max ms | peak RSS MiB | recorded meetings, KiB/s written each |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let engine = TranscriptionEngine::start();
    for (name, scenario_voices) in &scenarios {
        let transcribed = name.ends_with("-transcribed");
        let mut flags = Vec::new();
        if transcribed {
            let Some(engine) = &engine else {
                eprintln!(
                    "NOTE: {name} skipped: no transcription engine (set CARILLON_BENCH_TRANSCRIPTION_PYTHON to the Python of tests/transcription/requirements.txt)"
                );
                continue;
            };
            flags = vec!["--transcription-engine".to_string(), engine.url.clone()];
        }
        for (server_name, binary) in &servers {
            let data = tempfile::tempdir().expect("tempdir");
            let (server, endpoint) = start_carillon(binary, data.path(), &KEYS, &flags);
            let bucket = data.path().join("buckets/bench-recordings");
            let recordings = name.ends_with("-recorded").then_some(bucket.as_path());
            let m = runtime.block_on(scenario(
                &endpoint,
                server.child.id(),
                scenario_voices.clone(),
                measure,
                recordings,
                transcribed,
            ));
            let recorded = m.recorded.map_or("-".to_string(), |(meetings, bytes)| {
                let per_second = bytes as f64 / 1024.0 / measure.as_secs_f64();
                format!("{meetings}, {:.1}", per_second / meetings.max(1) as f64)
            });
            let onset = m
                .onset_ms
                .map_or("-".to_string(), |(p50, max)| format!("{p50:.0} / {max:.0}"));
            println!(
                "| {server_name} | {name} | {} ({}) | {:.1} | {:.3} | {:.2} | {:.1} | {onset} | {:.0} | {recorded} |",
                m.participants,
                m.connected,
                m.cpu_percent,
                m.cpu_percent / m.participants as f64,
                m.loss_percent,
                m.frames_per_second,
                m.peak_rss_mib
            );
            drop(server);
        }
    }
}

/// How far `decoded` is from `original` in what the ear follows: the log-spectral distance (dB,
/// RMS over 50 Hz bins from 100 Hz to 8 kHz, floored 40 dB under each frame's peak) of Hann-windowed 20 ms frames where the voice is
/// sounding, at the codec delay that matches the waveforms best. Waveform SNR would not do: a
/// perceptual codec keeps the spectrum, not the phase.
fn spectral_distance_db(original: &[f32], decoded: &[f32]) -> f64 {
    let skip = 24_000; // the first half second: the encoder settling
    let correlation = |d: usize| -> f64 {
        (skip..skip + 48_000)
            .map(|i| f64::from(original[i]) * f64::from(decoded[i + d]))
            .sum()
    };
    let delay = (0..=960)
        .max_by(|a, b| correlation(*a).total_cmp(&correlation(*b)))
        .unwrap_or(0);
    let spectrum = |samples: &[f32]| -> Vec<f64> {
        (2..=160)
            .map(|bin| {
                let (mut re, mut im) = (0f64, 0f64);
                for (n, sample) in samples.iter().enumerate() {
                    let window = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / 960.0).cos();
                    let angle = 2.0 * std::f64::consts::PI * (bin * n) as f64 / 960.0;
                    re += f64::from(*sample) * window * angle.cos();
                    im -= f64::from(*sample) * window * angle.sin();
                }
                10.0 * (re * re + im * im + 1e-9).log10()
            })
            .collect()
    };
    let (mut sum, mut frames) = (0f64, 0usize);
    let mut start = skip;
    while start + 960 + delay <= decoded.len() && start + 960 <= original.len() {
        let frame = &original[start..start + 960];
        if frame.iter().map(|s| s * s).sum::<f32>() / 960.0 > 1e-4 {
            let (mut a, mut b) = (
                spectrum(frame),
                spectrum(&decoded[start + delay..start + delay + 960]),
            );
            // Below 40 dB under the frame's peak is inaudible next to it (and the synthetic
            // voice is near silent between its harmonics): both spectra are floored there.
            let floor = a.iter().copied().fold(f64::MIN, f64::max) - 40.0;
            for level in a.iter_mut().chain(b.iter_mut()) {
                *level = level.max(floor);
            }
            let mean_square =
                a.iter().zip(&b).map(|(x, y)| (x - y).powi(2)).sum::<f64>() / a.len() as f64;
            sum += mean_square.sqrt();
            frames += 1;
        }
        start += 960;
    }
    sum / frames.max(1) as f64
}

/// The mixer's encoder at each complexity: what a 20 ms encode costs and what it keeps, on the
/// synthetic voice and on the sum of three of the scenarios' 440 Hz talkers.
fn codec_table() {
    let voice = synthetic_voice();
    let tones: Vec<f32> = (0..10 * 48_000)
        .map(|i| 0.5 * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 48_000.0).sin())
        .collect();
    println!(
        "| signal | Opus complexity | µs per 20 ms encode | log-spectral distance of the decoded signal, dB (lower is closer) |"
    );
    println!("|---|---|---|---|");
    for (signal, samples) in [("voice", &voice), ("tones", &tones)] {
        for complexity in [10, 9, 7, 5, 4, 3, 2, 1, 0] {
            let mut encoder = Encoder::new().expect("encoder");
            encoder.set_complexity(complexity);
            let mut decoder = Decoder::new().expect("decoder");
            let mut decoded = Vec::with_capacity(samples.len());
            let mut pcm = [0f32; MAX_PACKET_SAMPLES];
            let mut encoding = Duration::ZERO;
            for frame in samples.chunks_exact(FRAME_SAMPLES) {
                let mut input = [0f32; FRAME_SAMPLES];
                input.copy_from_slice(frame);
                let started = Instant::now();
                let packet = encoder.encode(&mut input).expect("encode");
                encoding += started.elapsed();
                let n = decoder.decode(Some(&packet), 0, &mut pcm).expect("decode");
                decoded.extend_from_slice(&pcm[..n]);
            }
            let frames = samples.len() / FRAME_SAMPLES;
            println!(
                "| {signal} | {complexity} | {:.1} | {:.1} |",
                encoding.as_secs_f64() * 1e6 / frames as f64,
                spectral_distance_db(samples, &decoded)
            );
        }
    }
    println!();
}
