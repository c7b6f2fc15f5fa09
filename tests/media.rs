//! WebRTC media through the server: native str0m clients (full ICE agents, like a browser)
//! join over signaling, complete ICE and DTLS-SRTP against the ICE-lite server, send real Opus
//! tones, and decode the mix the server sends back to find which tones it carries.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use carillon::media::mix::tone_power;
use carillon::media::opus::{Decoder, Encoder, FRAME_SAMPLES, MAX_PACKET_SAMPLES};
use common::TestServer;
use common::signal::{Meeting, SignalClient, attendee, meeting};
use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;

struct Outcome {
    connected: bool,
    /// Decoded downlink audio from the second half of the run.
    heard: Vec<f32>,
    /// RTP timestamps of every downlink frame, in arrival order.
    timestamps: Vec<u64>,
    /// AUDIO_METADATA entries that showed another attendee speaking.
    peer_volume_indicators: usize,
}

impl Outcome {
    fn describe(&self) -> String {
        format!(
            "{} frames, {} samples, power at 440/700/1100 Hz: {:?}",
            self.timestamps.len(),
            self.heard.len(),
            [ALICE, BOB, CAROL].map(|f| tone_power(&self.heard, f, 48_000.0))
        )
    }

    fn hears(&self, frequency: f32) -> bool {
        tone_power(&self.heard, frequency, 48_000.0) > 1e-4
    }
}

/// How loud a client says it is (-dBov in the audio-level extension) at a moment of the run.
type Loudness = fn(Duration) -> i8;

/// Joins, negotiates, then for `duration` sends a sine tone of `tone` Hz as 20 ms Opus frames,
/// and decodes what it receives.
async fn run_client(
    signaling_url: String,
    token: String,
    name: &'static str,
    tone: f32,
    loudness: Loudness,
    duration: Duration,
) -> Outcome {
    str0m::crypto::from_feature_flags().install_process_default();
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("udp");
    let local: SocketAddr = socket.local_addr().expect("addr");
    let mut rtc = Rtc::builder().build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").expect("candidate"));
    let mut api = rtc.sdp_api();
    let mid = api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    let (offer, pending) = api.apply().expect("offer");

    let mut signal = SignalClient::connect(&signaling_url, &token).await;
    signal.join().await;
    let answer = signal.subscribe_with(offer.to_sdp_string()).await;
    rtc.sdp_api()
        .accept_answer(
            pending,
            SdpAnswer::from_sdp_string(&answer).expect("answer parses"),
        )
        .expect("answer accepted");
    // The roster frames may bring the other attendee first; wait for our own entry.
    let own_stream = loop {
        let entry = signal
            .roster()
            .await
            .into_iter()
            .find(|s| s.external_user_id.as_deref() == Some(name));
        if let Some(stream) = entry.and_then(|s| s.audio_stream_id) {
            break stream;
        }
    };
    // Count the volume indicators that show someone else speaking, while media runs.
    let indicators = tokio::spawn(async move {
        let mut seen = 0;
        let until = Instant::now() + duration;
        while let Ok(frame) = tokio::time::timeout_at(until.into(), signal.frame()).await {
            if let Some(metadata) = frame.audio_metadata {
                seen += metadata
                    .attendee_states
                    .iter()
                    .filter(|s| {
                        s.audio_stream_id != Some(own_stream) && s.volume.is_some_and(|v| v < 127)
                    })
                    .count();
            }
        }
        seen
    });

    let started = Instant::now();
    let mut outcome = Outcome {
        connected: false,
        heard: Vec::new(),
        timestamps: Vec::new(),
        peer_volume_indicators: 0,
    };
    let mut encoder = Encoder::new().expect("encoder");
    let mut decoder = Decoder::new().expect("decoder");
    let mut decoded = [0f32; MAX_PACKET_SAMPLES];
    let mut samples_sent = 0usize;
    let mut next_frame = Instant::now();
    let mut rtp_time = 0u64;
    let mut buf = vec![0u8; 2000];
    while started.elapsed() < duration {
        let deadline = loop {
            match rtc.poll_output().expect("poll") {
                Output::Timeout(at) => break at,
                Output::Transmit(t) => {
                    let _ = socket.send_to(&t.contents, t.destination).await;
                }
                Output::Event(Event::Connected) => outcome.connected = true,
                Output::Event(Event::MediaData(data)) => {
                    outcome.timestamps.push(data.time.numer());
                    let n = decoder
                        .decode(Some(&data.data), 0, &mut decoded)
                        .expect("the mix decodes");
                    if started.elapsed() > duration / 2 {
                        outcome.heard.extend_from_slice(&decoded[..n]);
                    }
                }
                Output::Event(_) => {}
            }
        };
        if outcome.connected && Instant::now() >= next_frame {
            let writer = rtc.writer(mid).expect("audio writer");
            let pt = writer
                .payload_params()
                .find(|p| p.spec().codec == Codec::Opus)
                .map(|p| p.pt())
                .expect("opus negotiated");
            let mut pcm = [0f32; FRAME_SAMPLES];
            for (i, sample) in pcm.iter_mut().enumerate() {
                let t = (samples_sent + i) as f32 / 48_000.0;
                *sample = 0.2 * (2.0 * std::f32::consts::PI * tone * t).sin();
            }
            samples_sent += FRAME_SAMPLES;
            let payload = encoder.encode(&mut pcm).expect("encode");
            writer
                .audio_level(loudness(started.elapsed()), true)
                .write(
                    pt,
                    Instant::now(),
                    MediaTime::new(rtp_time, Frequency::FORTY_EIGHT_KHZ),
                    payload,
                )
                .expect("write");
            rtp_time += 960;
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
    outcome.peer_volume_indicators = indicators.await.expect("indicator reader");
    outcome
}

const ALICE: f32 = 440.0;
const BOB: f32 = 700.0;
const CAROL: f32 = 1100.0;

fn steady(_: Duration) -> i8 {
    -30
}

fn loud_then_quiet(at: Duration) -> i8 {
    if at < Duration::from_secs(2) {
        -10
    } else {
        -50
    }
}

/// A muted microphone: the browser keeps sending, at the silent level.
fn silent(_: Duration) -> i8 {
    -127
}

fn quiet_then_loud(at: Duration) -> i8 {
    if at < Duration::from_secs(2) {
        -50
    } else {
        -10
    }
}

/// Alice and bob, each sending a steady tone, in a meeting of their own.
struct Call {
    meeting: Meeting,
    bob_id: String,
    alice: tokio::task::JoinHandle<Outcome>,
    bob: tokio::task::JoinHandle<Outcome>,
}

async fn alice_and_bob_talk(server: &TestServer, run_for: Duration) -> Call {
    let meeting = meeting(server).await;
    let (_, alice) = attendee(server, &meeting, "alice").await;
    let (bob_id, bob) = attendee(server, &meeting, "bob").await;
    let url = meeting.signaling_url.clone();
    let alice = tokio::spawn(run_client(
        url.clone(),
        alice,
        "alice",
        ALICE,
        steady,
        run_for,
    ));
    let bob = tokio::spawn(run_client(url, bob, "bob", BOB, steady, run_for));
    Call {
        meeting,
        bob_id,
        alice,
        bob,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_hear_each_other() {
    let server = TestServer::start().await;
    let call = alice_and_bob_talk(&server, Duration::from_secs(4)).await;
    let (a, b) = (
        call.alice.await.expect("alice"),
        call.bob.await.expect("bob"),
    );
    assert!(
        a.connected && b.connected,
        "ICE and DTLS completed for both"
    );
    assert!(
        a.hears(BOB) && !a.hears(ALICE),
        "alice hears bob, never herself: {}",
        a.describe()
    );
    assert!(
        b.hears(ALICE) && !b.hears(BOB),
        "bob hears alice, never himself"
    );
    assert!(
        a.peer_volume_indicators > 0 && b.peer_volume_indicators > 0,
        "volume indicators show the other speaking ({} and {})",
        a.peer_volume_indicators,
        b.peer_volume_indicators
    );
}

/// Alice and bob join `m` and talk steadily (each their own tone) for `run_for`: their clients.
async fn alice_and_bob(
    server: &TestServer,
    m: &Meeting,
    run_for: Duration,
) -> (
    tokio::task::JoinHandle<Outcome>,
    tokio::task::JoinHandle<Outcome>,
) {
    let (_, alice) = attendee(server, m, "alice").await;
    let (_, bob) = attendee(server, m, "bob").await;
    let url = m.signaling_url.clone();
    let a = tokio::spawn(run_client(
        url.clone(),
        alice,
        "alice",
        ALICE,
        steady,
        run_for,
    ));
    let b = tokio::spawn(run_client(url, bob, "bob", BOB, steady, run_for));
    (a, b)
}

/// A media tap on the meeting's mix (what recording builds on), opened before anyone joins,
/// hears everyone, nobody subtracted, one 20 ms frame per mixer tick while the call goes on as
/// usual; it waits through a gap with nobody connected (the media task stops and starts again)
/// and ends when the meeting is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tap_on_the_meeting_mix_hears_every_call_of_the_meeting() {
    use carillon::domain::id::MeetingId;
    use carillon::media::tap::{AudioSource, AudioTap};
    let server = TestServer::start().await;
    let m = meeting(&server).await;
    let media = &server.running.as_ref().expect("running").join.media;
    let mut tap = media.tap_audio(&MeetingId::trusted(m.id.as_str()), AudioSource::Mix, 200);

    /// Alice and bob talk for 4 s; the tap's frames from its second to its third second.
    async fn call(server: &TestServer, m: &Meeting, tap: &mut AudioTap) -> Vec<f32> {
        let (a, b) = alice_and_bob(server, m, Duration::from_secs(4)).await;
        // Frames flow once the first offer is answered; skip the first second (ICE, DTLS,
        // jitter buffers), then listen for one.
        let first = tokio::time::timeout(Duration::from_secs(5), tap.frames.recv())
            .await
            .expect("frames once the meeting has media")
            .expect("the tap is open");
        let mut ticks = vec![first.tick];
        let mut mix = Vec::new();
        while ticks.len() < 100 {
            let frame = tokio::time::timeout(Duration::from_secs(2), tap.frames.recv())
                .await
                .expect("a frame every 20 ms")
                .expect("the tap is open while the call goes on");
            assert_eq!(frame.samples.len(), FRAME_SAMPLES);
            ticks.push(frame.tick);
            if ticks.len() > 50 {
                mix.extend_from_slice(&frame.samples);
            }
        }
        assert!(
            ticks.windows(2).all(|pair| pair[1] == pair[0] + 1),
            "no tick missing from the mix"
        );
        let (a, b) = (a.await.expect("alice"), b.await.expect("bob"));
        assert!(a.hears(BOB) && b.hears(ALICE), "the call went on as usual");
        mix
    }

    for round in ["first", "second"] {
        let mix = call(&server, &m, &mut tap).await;
        for (who, tone) in [("alice", ALICE), ("bob", BOB)] {
            assert!(
                tone_power(&mix, tone, 48_000.0) > 1e-4,
                "the {round} call's mix carries {who}'s {tone} Hz tone"
            );
        }
        // Both left: the media stops, the tap waits.
        let deadline = Instant::now() + Duration::from_secs(5);
        while media.stats().meetings > 0 {
            assert!(Instant::now() < deadline, "the meeting's media stopped");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        while tap.frames.try_recv().is_ok() {}
        assert!(!tap.frames.is_closed(), "the tap outlives the {round} call");
    }
    assert_eq!(tap.dropped(), 0, "a consumer that keeps up loses nothing");
    server
        .client()
        .delete_meeting()
        .meeting_id(&m.id)
        .send()
        .await
        .expect("DeleteMeeting");
    let end = tokio::time::timeout(Duration::from_secs(5), tap.frames.recv())
        .await
        .expect("the tap ends with its meeting");
    assert!(end.is_none(), "no frame after the meeting ended");
}

/// Three talk at once: each hears both others in one stream, and not itself, while the loudest
/// changes halfway; every downlink's RTP timestamps only move forward, in whole frames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_people_talking_at_once_each_hear_the_two_others() {
    let server = TestServer::start().await;
    let m = meeting(&server).await;
    let (_, alice) = attendee(&server, &m, "alice").await;
    let (_, bob) = attendee(&server, &m, "bob").await;
    let (_, carol) = attendee(&server, &m, "carol").await;
    let run_for = Duration::from_secs(4);
    let url = m.signaling_url.clone();
    let a = tokio::spawn(run_client(
        url.clone(),
        alice,
        "alice",
        ALICE,
        loud_then_quiet,
        run_for,
    ));
    let b = tokio::spawn(run_client(
        url.clone(),
        bob,
        "bob",
        BOB,
        quiet_then_loud,
        run_for,
    ));
    let c = tokio::spawn(run_client(url, carol, "carol", CAROL, steady, run_for));
    let (a, b, c) = (
        a.await.expect("alice"),
        b.await.expect("bob"),
        c.await.expect("carol"),
    );
    for (who, outcome, own, others) in [
        ("alice", &a, ALICE, [BOB, CAROL]),
        ("bob", &b, BOB, [ALICE, CAROL]),
        ("carol", &c, CAROL, [ALICE, BOB]),
    ] {
        assert!(outcome.connected, "{who} connected");
        for other in others {
            assert!(
                outcome.hears(other),
                "{who} hears the {other} Hz tone: {}",
                outcome.describe()
            );
        }
        assert!(
            !outcome.hears(own),
            "{who} does not hear her own {own} Hz tone: {}",
            outcome.describe()
        );
        assert!(
            outcome.timestamps.len() > 100,
            "{who} got a steady downlink"
        );
        for pair in outcome.timestamps.windows(2) {
            assert!(
                pair[1] > pair[0],
                "{who}'s downlink timestamps move forward: {pair:?}"
            );
            assert_eq!((pair[1] - pair[0]) % FRAME_SAMPLES as u64, 0);
        }
    }
}

/// UpdateAttendeeCapabilities reaches a live session: once bob may only receive, alice no
/// longer hears him, while he still hears her.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capability_change_takes_effect_in_a_live_session() {
    use aws_sdk_chimesdkmeetings::types::{AttendeeCapabilities, MediaCapabilities};
    let server = TestServer::start().await;
    // 6 s, so that the kept second half starts 1.5 s after the change: this file's other calls
    // run at the same time on two cores, and a 1 s margin was once not enough.
    let call = alice_and_bob_talk(&server, Duration::from_secs(6)).await;
    // The clients keep only the second half of what they hear; change bob well before that.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let receive_only = AttendeeCapabilities::builder()
        .audio(MediaCapabilities::Receive)
        .video(MediaCapabilities::None)
        .content(MediaCapabilities::None)
        .build()
        .expect("capabilities");
    server
        .client()
        .update_attendee_capabilities()
        .meeting_id(&call.meeting.id)
        .attendee_id(&call.bob_id)
        .capabilities(receive_only)
        .send()
        .await
        .expect("UpdateAttendeeCapabilities");
    let (a, b) = (
        call.alice.await.expect("alice"),
        call.bob.await.expect("bob"),
    );
    assert!(!a.hears(BOB), "bob is no longer mixed in: {}", a.describe());
    assert!(b.hears(ALICE), "bob still hears alice: {}", b.describe());
}

/// The downlink never has holes: alone in a meeting, or with only silence to hear, a listener
/// still gets one frame every 20 ms on an unbroken timeline (a hole makes the browser's jitter
/// buffer conceal, which people hear as stretched, robotic sound).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downlink_has_a_frame_every_20_ms_alone_and_in_silence() {
    let server = TestServer::start().await;
    let m = meeting(&server).await;
    let (_, alice) = attendee(&server, &m, "alice").await;
    let (_, bob) = attendee(&server, &m, "bob").await;
    let run_for = Duration::from_secs(4);
    // Alice talks alone (nobody else to hear); bob joins muted.
    let a = tokio::spawn(run_client(
        m.signaling_url.clone(),
        alice,
        "alice",
        ALICE,
        steady,
        run_for,
    ));
    let b = tokio::spawn(run_client(
        m.signaling_url.clone(),
        bob,
        "bob",
        BOB,
        silent,
        run_for,
    ));
    let (a, b) = (a.await.expect("alice"), b.await.expect("bob"));
    for (who, outcome) in [("alice", &a), ("bob", &b)] {
        assert!(outcome.connected, "{who} connected");
        // Four seconds at 50 frames a second, less the time to connect.
        assert!(
            outcome.timestamps.len() >= 100,
            "{who} got a frame every tick, not only when someone else talks: {}",
            outcome.describe()
        );
        for pair in outcome.timestamps.windows(2) {
            assert_eq!(
                pair[1].wrapping_sub(pair[0]),
                FRAME_SAMPLES as u64,
                "{who}'s downlink steps exactly one frame at a time: {pair:?}"
            );
        }
    }
    assert!(
        !a.hears(ALICE) && !a.hears(BOB),
        "alone in the mix, alice hears silence: {}",
        a.describe()
    );
    assert!(b.hears(ALICE), "bob hears alice: {}", b.describe());
    assert!(!b.hears(BOB), "muted bob is not mixed in: {}", b.describe());
}

/// A UDP forwarder standing in for a 1:1 NAT: datagrams to `public` go to `private` from a
/// socket of their own per client, and the answers go back from `public`. Counts what it
/// carried each way, and, with `lose_every` = n, loses every n-th RTP packet a client sends
/// (never STUN, DTLS or RTCP, told apart by their first bytes, which SRTP leaves in clear).
struct Nat {
    forwarded: std::sync::Arc<std::sync::atomic::AtomicU64>,
    lost: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// An RTP packet (version 2, not one of RTCP's packet types 200–206).
fn is_rtp(datagram: &[u8]) -> bool {
    datagram.len() >= 12 && datagram[0] & 0xC0 == 0x80 && !(200..=206).contains(&datagram[1])
}

impl Nat {
    async fn lossy(public: SocketAddr, private: SocketAddr, lose_every: Option<u64>) -> Nat {
        use std::collections::HashMap;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};
        let front = Arc::new(
            UdpSocket::bind(public)
                .await
                .expect("bind the public address"),
        );
        let forwarded = Arc::new(AtomicU64::new(0));
        let lost = Arc::new(AtomicU64::new(0));
        let counter = forwarded.clone();
        let lost_counter = lost.clone();
        tokio::spawn(async move {
            let mut rtp_sent: HashMap<SocketAddr, u64> = HashMap::new();
            let mut inside: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
            let mut buf = vec![0u8; 2048];
            while let Ok((n, client)) = front.recv_from(&mut buf).await {
                let upstream = match inside.get(&client) {
                    Some(socket) => socket.clone(),
                    None => {
                        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
                        let (back, front, counter) =
                            (socket.clone(), front.clone(), counter.clone());
                        tokio::spawn(async move {
                            let mut buf = vec![0u8; 2048];
                            while let Ok((n, _)) = back.recv_from(&mut buf).await {
                                counter.fetch_add(1, Ordering::Relaxed);
                                let _ = front.send_to(&buf[..n], client).await;
                            }
                        });
                        inside.insert(client, socket.clone());
                        socket
                    }
                };
                if let (Some(every), true) = (lose_every, is_rtp(&buf[..n])) {
                    let sent = rtp_sent.entry(client).or_default();
                    *sent += 1;
                    if sent.is_multiple_of(every) {
                        lost_counter.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                }
                counter.fetch_add(1, Ordering::Relaxed);
                let _ = upstream.send_to(&buf[..n], private).await;
            }
        });
        Nat { forwarded, lost }
    }
}

/// A server whose media socket is bound on 127.0.0.1 and advertised as 127.0.0.2 (same port),
/// behind a [`Nat`] between the two that loses every `lose_every`-th RTP packet.
async fn server_behind_a_nat(lose_every: Option<u64>) -> (TestServer, Nat) {
    // A free port, bound on the private address by the server and on the public one by the NAT.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port();
    let private = SocketAddr::from(([127, 0, 0, 1], port));
    let public = SocketAddr::from(([127, 0, 0, 2], port));
    let server = TestServer::start_with(|config| {
        config.media_listen = Some(private);
        config.media_public_ip = vec![public.ip()];
    })
    .await;
    let nat = Nat::lossy(public, private, lose_every).await;
    (server, nat)
}

/// Behind a 1:1 NAT (a cloud VM: the socket on a private address, clients told a public one),
/// `--media-public-ip` names the public address, and media flows through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_flows_through_an_advertised_address_that_is_not_the_bound_one() {
    let (server, nat) = server_behind_a_nat(None).await;
    let call = alice_and_bob_talk(&server, Duration::from_secs(4)).await;
    let (a, b) = (
        call.alice.await.expect("alice"),
        call.bob.await.expect("bob"),
    );
    assert!(a.connected && b.connected, "ICE and DTLS through the NAT");
    assert!(a.hears(BOB), "alice hears bob: {}", a.describe());
    assert!(b.hears(ALICE), "bob hears alice: {}", b.describe());
    let forwarded = nat.forwarded.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        forwarded > 200,
        "the media went through the advertised address ({forwarded} datagrams)"
    );
}

/// A lost uplink packet costs the mix at most that one frame (rebuilt from the next packet's
/// FEC, or concealed) and never more: the packets after it go to the mixer at once instead of
/// waiting for the lost one, so the speaker does not drop out of the mix. (str0m's default
/// held them for 15 packets, 300 ms, and the mixer then counted the speaker as stopped:
/// five frames concealed and a restart for every loss.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_uplink_packet_costs_the_mix_one_frame_at_most() {
    // 4 % of each talker's packets, one at a time: what a busy Wi-Fi loses.
    let (server, nat) = server_behind_a_nat(Some(25)).await;
    let call = alice_and_bob_talk(&server, Duration::from_secs(6)).await;
    let (a, b) = (
        call.alice.await.expect("alice"),
        call.bob.await.expect("bob"),
    );
    assert!(a.hears(BOB), "alice hears bob: {}", a.describe());
    assert!(b.hears(ALICE), "bob hears alice: {}", b.describe());
    let lost = nat.lost.load(std::sync::atomic::Ordering::Relaxed);
    let stats = server.running.as_ref().expect("running").join.media.stats();
    let (recovered, concealed) = (stats.mixer_fec_recovered, stats.mixer_concealed);
    println!("{lost} uplink packets lost: {recovered} rebuilt from FEC, {concealed} concealed");
    assert!(lost >= 10, "the forwarder lost packets ({lost})");
    assert!(
        recovered + concealed > 0,
        "the mixer saw the losses: {recovered} rebuilt, {concealed} concealed of {lost} lost"
    );
    assert!(
        recovered + concealed <= lost,
        "each lost packet cost at most its own frame: {recovered} rebuilt and {concealed} \
         concealed for {lost} lost"
    );
}

/// The packets of an Opus-in-MP4 chunk, read from its `stsz`, `stco` and `stts`, and the track's
/// duration in samples from `mdhd`: just enough of ISO BMFF to check what the recorder wrote.
fn mp4_opus_packets(file: &[u8]) -> (Vec<Vec<u8>>, u32) {
    fn be32(data: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(data[at..at + 4].try_into().expect("4 bytes"))
    }
    fn child<'a>(mut data: &'a [u8], kind: &[u8; 4]) -> &'a [u8] {
        while data.len() >= 8 {
            let size = be32(data, 0) as usize;
            if &data[4..8] == kind {
                return &data[8..size];
            }
            data = &data[size..];
        }
        panic!("no {} box", String::from_utf8_lossy(kind));
    }
    let mdia = child(child(child(file, b"moov"), b"trak"), b"mdia");
    let duration = be32(child(mdia, b"mdhd"), 16);
    let stbl = child(child(mdia, b"minf"), b"stbl");
    assert_eq!(
        &child(stbl, b"stsd")[12..16],
        b"Opus",
        "an Opus sample entry"
    );
    let stsz = child(stbl, b"stsz");
    let mut at = be32(child(stbl, b"stco"), 8) as usize;
    let packets = (0..be32(stsz, 8) as usize)
        .map(|i| {
            let size = be32(stsz, 12 + 4 * i) as usize;
            at += size;
            file[at - size..at].to_vec()
        })
        .collect();
    (packets, duration)
}

/// A capture pipeline created with the official media pipelines SDK records the meeting's mix
/// into its bucket (the embedded sink: a folder under the data directory), in 5 s Opus-in-MP4
/// chunks named by their UTC start, until it is deleted; both talkers' tones are in it. One
/// capture per meeting at a time; the same ClientRequestToken gives the same pipeline back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_pipeline_records_the_meetings_mix_into_its_bucket() {
    use aws_sdk_chimesdkmediapipelines::types::{MediaPipelineSinkType, MediaPipelineSourceType};
    let server = TestServer::start().await;
    let m = meeting(&server).await;
    let pipelines = common::media_pipelines_client(&server.url());
    let meeting_arn = format!(
        "arn:aws:chime:us-east-1:{}:meeting/{}",
        common::ACCOUNT_ID,
        m.id
    );
    let create = || {
        pipelines
            .create_media_capture_pipeline()
            .source_type(MediaPipelineSourceType::ChimeSdkMeeting)
            .source_arn(&meeting_arn)
            .sink_type(MediaPipelineSinkType::S3Bucket)
            .sink_arn("arn:aws:s3:::team-recordings")
            .client_request_token("record-the-standup")
    };
    let created = create()
        .send()
        .await
        .expect("CreateMediaCapturePipeline")
        .media_capture_pipeline
        .expect("pipeline");
    let id = created.media_pipeline_id.clone().expect("id");
    assert!(
        created
            .media_pipeline_arn()
            .is_some_and(|arn| arn.ends_with(&format!(":media-pipeline/{id}")))
    );
    let again = create().send().await.expect("the same token again");
    assert_eq!(
        again
            .media_capture_pipeline
            .and_then(|p| p.media_pipeline_id),
        Some(id.clone()),
        "ClientRequestToken makes Create idempotent"
    );
    let second = pipelines
        .create_media_capture_pipeline()
        .source_type(MediaPipelineSourceType::ChimeSdkMeeting)
        .source_arn(&meeting_arn)
        .sink_type(MediaPipelineSinkType::S3Bucket)
        .sink_arn("arn:aws:s3:::team-recordings/other")
        .send()
        .await
        .expect_err("a second capture of the same meeting");
    assert!(
        second
            .as_service_error()
            .is_some_and(|e| e.is_resource_limit_exceeded_exception()),
        "{second:?}"
    );

    // Alice and bob talk for 8 s while it records.
    let (a, b) = alice_and_bob(&server, &m, Duration::from_secs(8)).await;
    let (a, b) = (a.await.expect("alice"), b.await.expect("bob"));
    assert!(a.hears(BOB) && b.hears(ALICE), "the call went on as usual");
    let status = pipelines
        .get_media_capture_pipeline()
        .media_pipeline_id(&id)
        .send()
        .await
        .expect("GetMediaCapturePipeline")
        .media_capture_pipeline
        .and_then(|p| p.status)
        .expect("status");
    assert_eq!(status.as_str(), "InProgress");
    let listed = pipelines
        .list_media_capture_pipelines()
        .send()
        .await
        .expect("ListMediaCapturePipelines");
    assert!(
        listed
            .media_capture_pipelines()
            .iter()
            .any(|p| p.media_pipeline_id() == Some(id.as_str()))
    );
    // The capture is in the meeting as an attendee of its own, as AWS's is.
    let pipeline_attendee = format!("aws:MediaPipeline-{id}");
    let attendees = |client: aws_sdk_chimesdkmeetings::Client, meeting_id: String| async move {
        client
            .list_attendees()
            .meeting_id(meeting_id)
            .send()
            .await
            .expect("ListAttendees")
            .attendees
            .unwrap_or_default()
            .into_iter()
            .filter_map(|a| a.external_user_id)
            .collect::<Vec<_>>()
    };
    assert!(
        attendees(server.client(), m.id.clone())
            .await
            .contains(&pipeline_attendee),
        "ListAttendees lists {pipeline_attendee}"
    );
    // A concatenation created while the capture runs waits for it to finish.
    let joined_id = create_concatenation(&pipelines, &created).await;
    pipelines
        .delete_media_capture_pipeline()
        .media_pipeline_id(&id)
        .send()
        .await
        .expect("DeleteMediaCapturePipeline");
    assert!(
        !attendees(server.client(), m.id.clone())
            .await
            .contains(&pipeline_attendee),
        "the capture's attendee leaves with it"
    );
    let gone = pipelines
        .get_media_capture_pipeline()
        .media_pipeline_id(&id)
        .send()
        .await
        .expect_err("deleted");
    assert!(
        gone.as_service_error()
            .is_some_and(|e| e.is_not_found_exception())
    );

    // The chunks are in the bucket's folder, under the pipeline id, when Delete has answered.
    let folder = server
        .dir
        .path()
        .join("buckets/team-recordings")
        .join(&id)
        .join("audio");
    let mut names: Vec<String> = std::fs::read_dir(&folder)
        .expect("the audio folder")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    assert!(names.len() >= 2, "8 s of call in 5 s chunks: {names:?}");
    let mut decoder = Decoder::new().expect("decoder");
    let mut pcm = [0f32; MAX_PACKET_SAMPLES];
    let mut recorded = Vec::new();
    let mut all_packets = Vec::new();
    for (i, name) in names.iter().enumerate() {
        // yyyy-mm-dd-HH-MM-SS-mmm.mp4
        let stem = name.strip_suffix(".mp4").expect(".mp4");
        assert_eq!(stem.len(), 23, "{name}");
        assert!(
            stem.split('-')
                .all(|part| part.chars().all(|c| c.is_ascii_digit()))
        );
        let (packets, duration) =
            mp4_opus_packets(&std::fs::read(folder.join(name)).expect("chunk"));
        assert_eq!(duration as usize, packets.len() * FRAME_SAMPLES);
        if i + 1 < names.len() {
            assert_eq!(packets.len(), 250, "every chunk but the last is 5 s");
        }
        all_packets.extend(packets.iter().cloned());
        for packet in packets {
            let n = decoder
                .decode(Some(&packet), FRAME_SAMPLES, &mut pcm)
                .expect("a valid Opus packet");
            recorded.extend_from_slice(&pcm[..n]);
        }
    }
    for (who, tone) in [("alice", ALICE), ("bob", BOB)] {
        assert!(
            tone_power(&recorded, tone, 48_000.0) > 1e-5,
            "the recording carries {who}'s {tone} Hz tone"
        );
    }

    // The concatenation joined the chunks into one gapless file under its own destination.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pipeline = pipelines
            .get_media_pipeline()
            .media_pipeline_id(&joined_id)
            .send()
            .await
            .expect("GetMediaPipeline")
            .media_pipeline
            .and_then(|p| p.media_concatenation_pipeline)
            .expect("a concatenation pipeline");
        match pipeline.status.as_ref().map(|s| s.as_str()) {
            Some("Stopped") => break,
            Some("Failed") => panic!("the concatenation failed"),
            _ => assert!(Instant::now() < deadline, "the concatenation finished"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let joined = server
        .dir
        .path()
        .join("buckets/team-recordings/joined/audio")
        .join(format!("{joined_id}.mp4"));
    let (packets, duration) = mp4_opus_packets(&std::fs::read(&joined).expect("the joined file"));
    assert_eq!(
        packets, all_packets,
        "every chunk's packets, in order, nothing between"
    );
    assert_eq!(duration as usize, all_packets.len() * FRAME_SAMPLES);
}

/// CreateMediaConcatenationPipeline over `capture`, audio only, into
/// `team-recordings/joined`: its id.
async fn create_concatenation(
    pipelines: &aws_sdk_chimesdkmediapipelines::Client,
    capture: &aws_sdk_chimesdkmediapipelines::types::MediaCapturePipeline,
) -> String {
    let capture_arn = capture.media_pipeline_arn().expect("arn");
    common::concatenate_audio(
        pipelines,
        capture_arn,
        "arn:aws:s3:::team-recordings/joined",
    )
    .await
    .expect("CreateMediaConcatenationPipeline")
    .media_concatenation_pipeline
    .and_then(|p| p.media_pipeline_id)
    .expect("id")
}

/// A server killed with SIGKILL mid-capture loses at most the chunk it was filling: the chunks
/// written before are whole and listed. Restarted on the same data directory, it resumes the
/// capture (its meeting is still on) in new chunks, and Delete stops it as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_killed_mid_chunk_keeps_its_whole_chunks_and_resumes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let spawn = || {
        common::serve(dir.path(), &format!("127.0.0.1:{port}"))
            .spawn()
            .expect("binary starts")
    };
    let mut child = spawn();
    common::wait_ready(port).await;
    let client = common::sdk_client(&url, "us-east-1");
    let created = client
        .create_meeting()
        .media_region("us-east-1")
        .external_meeting_id("crash-recording")
        .client_request_token("crash-recording")
        .send()
        .await
        .expect("CreateMeeting")
        .meeting
        .expect("meeting");
    let m = Meeting {
        id: created.meeting_id().expect("id").to_string(),
        signaling_url: created
            .media_placement()
            .and_then(|p| p.signaling_url())
            .expect("url")
            .to_string(),
    };
    let pipelines = common::media_pipelines_client(&url);
    let meeting_arn = created.meeting_arn().expect("arn");
    let id = common::start_capture(&pipelines, meeting_arn, "arn:aws:s3:::crash-test").await;
    let call = |seconds: u64| {
        let (client, m) = (client.clone(), m.clone());
        async move {
            let mut runs = Vec::new();
            for (name, tone) in [("alice", ALICE), ("bob", BOB)] {
                let token = client
                    .create_attendee()
                    .meeting_id(&m.id)
                    .external_user_id(name)
                    .send()
                    .await
                    .expect("CreateAttendee")
                    .attendee
                    .and_then(|a| a.join_token)
                    .expect("token");
                let url = m.signaling_url.clone();
                let run_for = Duration::from_secs(seconds);
                runs.push(tokio::spawn(run_client(
                    url, token, name, tone, steady, run_for,
                )));
            }
            for run in runs {
                run.await.expect("client");
            }
        }
    };
    // 8 s of call (media flows within a second or two of joining): one 5 s chunk written, the
    // next one filling when the server dies.
    call(8).await;
    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("killed");
    let folder = dir
        .path()
        .join("buckets/crash-test")
        .join(&id)
        .join("audio");
    let chunks = |folder: &std::path::Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(folder)
            .expect("the audio folder")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .filter(|name| name.ends_with(".mp4"))
            .collect();
        names.sort();
        names
    };
    let before = chunks(&folder);
    assert_eq!(
        before.len(),
        1,
        "the whole chunk written before the kill: {before:?}"
    );
    let (packets, _) = mp4_opus_packets(&std::fs::read(folder.join(&before[0])).expect("chunk"));
    assert_eq!(packets.len(), 250, "a whole 5 s chunk");

    let mut child = spawn();
    common::wait_ready(port).await;
    let status = pipelines
        .get_media_capture_pipeline()
        .media_pipeline_id(&id)
        .send()
        .await
        .expect("GetMediaCapturePipeline after the restart")
        .media_capture_pipeline
        .and_then(|p| p.status)
        .expect("status");
    assert_eq!(status.as_str(), "InProgress", "the capture resumed");
    call(3).await;
    pipelines
        .delete_media_capture_pipeline()
        .media_pipeline_id(&id)
        .send()
        .await
        .expect("DeleteMediaCapturePipeline");
    let after = chunks(&folder);
    assert!(
        after.len() >= 2 && after[0] == before[0] && after[1] > before[0],
        "the resumed capture wrote on after the first chunk: {after:?}"
    );
    child.start_kill().expect("stop");
    let _ = child.wait().await;
}
