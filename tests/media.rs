//! WebRTC media through the server: two native str0m clients (full ICE agents, like a browser)
//! join over signaling, complete ICE and DTLS-SRTP against the ICE-lite server, send Opus
//! frames, and each receives the other's audio.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::TestServer;
use common::signal::{SignalClient, attendee, meeting};
use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;

struct Outcome {
    connected: bool,
    frames_received: usize,
    payloads_from_peer: usize,
    /// AUDIO_METADATA entries that showed the other attendee speaking.
    peer_volume_indicators: usize,
}

/// Joins, negotiates, then for `duration` sends a 20 ms Opus-sized frame tagged with `marker`
/// and counts the frames received and how many carry `expect_marker`.
async fn run_client(
    signaling_url: String,
    token: String,
    name: &'static str,
    marker: u8,
    expect_marker: u8,
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
        frames_received: 0,
        payloads_from_peer: 0,
        peer_volume_indicators: 0,
    };
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
                    outcome.frames_received += 1;
                    if data.data.first() == Some(&expect_marker) {
                        outcome.payloads_from_peer += 1;
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
            let mut payload = vec![marker; 60];
            payload[1] = 0xfc;
            writer
                .audio_level(-30, true)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_hear_each_other() {
    let server = TestServer::start().await;
    let m = meeting(&server).await;
    let (_, alice) = attendee(&server, &m, "alice").await;
    let (_, bob) = attendee(&server, &m, "bob").await;
    let run_for = Duration::from_secs(4);
    let a = tokio::spawn(run_client(
        m.signaling_url.clone(),
        alice,
        "alice",
        0xa1,
        0xb0,
        run_for,
    ));
    let b = tokio::spawn(run_client(
        m.signaling_url.clone(),
        bob,
        "bob",
        0xb0,
        0xa1,
        run_for,
    ));
    let (a, b) = (a.await.expect("alice"), b.await.expect("bob"));
    assert!(
        a.connected && b.connected,
        "ICE and DTLS completed for both"
    );
    assert!(
        a.payloads_from_peer > 20,
        "alice heard bob: {} of {} frames",
        a.payloads_from_peer,
        a.frames_received
    );
    assert!(
        b.payloads_from_peer > 20,
        "bob heard alice: {} of {} frames",
        b.payloads_from_peer,
        b.frames_received
    );
    assert_eq!(
        a.payloads_from_peer, a.frames_received,
        "alice hears only bob, never herself"
    );
    assert!(
        a.peer_volume_indicators > 0 && b.peer_volume_indicators > 0,
        "volume indicators show the other speaking ({} and {})",
        a.peer_volume_indicators,
        b.peer_volume_indicators
    );
}
