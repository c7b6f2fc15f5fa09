//! Camera video through the server (SFU): a native str0m publisher (a full ICE agent, like a
//! browser) sends synthetic VP8 frames at 15 fps on its camera section; a native str0m viewer
//! subscribes to the stream INDEX announced and must get those very frames, byte for byte, on
//! the receive section the SUBSCRIBE_ACK names (media-protocol.md §0, §1, §2.2, §3).

mod common;
#[path = "common/vp8.rs"]
mod vp8;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use carillon::join::frames::proto::{SdkStreamMediaType, SdkTrackMapping};
use common::TestServer;
use common::signal::{SignalClient, attendee, audio_descriptor, camera_descriptor, meeting};
use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, KeyframeRequestKind, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;

const FPS: u64 = 15;
/// Frames are sent for this long once the publisher is connected.
const SEND_FOR: Duration = Duration::from_secs(4);
/// The viewer starts its media (ICE, DTLS) once the publisher has sent this many frames, so that
/// it joins a running stream, as most viewers do.
const VIEWER_JOINS_AFTER: usize = 10;
/// When the viewer sends its PLI, after its first frame.
const PLI_AFTER: Duration = Duration::from_millis(1200);

/// A str0m peer and its UDP socket.
struct Peer {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    buf: Vec<u8>,
}

impl Peer {
    async fn new() -> Peer {
        str0m::crypto::from_feature_flags().install_process_default();
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("udp socket");
        let local = socket.local_addr().expect("local address");
        // str0m's default codecs, like a browser's offer: Opus, VP8, H.264, VP9, AV1 and more.
        let mut rtc = Rtc::builder().build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp").expect("candidate"));
        Peer {
            rtc,
            socket,
            local,
            buf: vec![0; 2000],
        }
    }

    /// Sends what str0m has to send and returns its events and when it wants a timeout.
    async fn poll(&mut self, events: &mut Vec<Event>) -> Instant {
        loop {
            match self.rtc.poll_output().expect("str0m polls") {
                Output::Timeout(at) => return at,
                Output::Transmit(t) => {
                    let _ = self.socket.send_to(&t.contents, t.destination).await;
                }
                Output::Event(event) => events.push(event),
            }
        }
    }

    /// Waits for a datagram or until `wake`, and hands str0m what happened.
    async fn wait(&mut self, wake: Instant) {
        let wake = wake.max(Instant::now() + Duration::from_millis(1));
        tokio::select! {
            received = self.socket.recv_from(&mut self.buf) => {
                let (n, source) = received.expect("udp receive");
                if let Ok(contents) = self.buf[..n].try_into() {
                    let input = Input::Receive(
                        Instant::now(),
                        Receive { proto: Protocol::Udp, source, destination: self.local, contents },
                    );
                    self.rtc.handle_input(input).expect("str0m takes the datagram");
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => {
                self.rtc.handle_input(Input::Timeout(Instant::now())).expect("str0m timeout");
            }
        }
    }
}

/// The `m=` section of an SDP with this mid, as text.
fn section<'a>(sdp: &'a str, mid: &str) -> &'a str {
    sdp.split("\nm=")
        .skip(1)
        .find(|s| s.lines().any(|l| l.trim_end() == format!("a=mid:{mid}")))
        .unwrap_or_else(|| panic!("no section with a=mid:{mid} in\n{sdp}"))
}

/// The codec names of a section's `a=rtpmap` lines.
fn codecs(section: &str) -> Vec<String> {
    section
        .lines()
        .filter_map(|l| l.strip_prefix("a=rtpmap:"))
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|c| c.split('/').next())
        .map(str::to_ascii_uppercase)
        .collect()
}

struct Published {
    /// Every frame sent, by index.
    frames: Vec<Vec<u8>>,
    /// When each keyframe request (PLI/FIR through the server) arrived.
    keyframe_requests: Vec<Instant>,
    connected: bool,
}

/// Sends a frame every 1/15 s for [`SEND_FOR`] once connected: a keyframe first and whenever
/// asked for one (and never otherwise, so that every later keyframe answers a request).
async fn publish(peer: &mut Peer, camera: Mid, sent: &AtomicUsize) -> Published {
    let mut out = Published {
        frames: Vec::new(),
        keyframe_requests: Vec::new(),
        connected: false,
    };
    let connect_by = Instant::now() + Duration::from_secs(5);
    let mut stop = None;
    let mut next_frame = Instant::now();
    let mut keyframe_wanted = true;
    let mut events = Vec::new();
    loop {
        let timeout = peer.poll(&mut events).await;
        for event in events.drain(..) {
            match event {
                Event::Connected => {
                    out.connected = true;
                    stop = Some(Instant::now() + SEND_FOR);
                    next_frame = Instant::now();
                }
                Event::KeyframeRequest(request) => {
                    assert_eq!(request.mid, camera, "keyframe requests name the camera");
                    out.keyframe_requests.push(Instant::now());
                    keyframe_wanted = true;
                }
                _ => {}
            }
        }
        let now = Instant::now();
        match stop {
            Some(stop) if now >= stop => return out,
            None if now >= connect_by => return out,
            _ => {}
        }
        if out.connected && now >= next_frame {
            let index = out.frames.len() as u32;
            let keyframe = std::mem::take(&mut keyframe_wanted);
            // About 300 kbit/s: several RTP packets per frame, keyframes three times as large.
            let data = vp8::frame(index, keyframe, if keyframe { 7500 } else { 2500 });
            let writer = peer.rtc.writer(camera).expect("a camera writer");
            let pt = writer
                .payload_params()
                .find(|p| p.spec().codec == Codec::Vp8)
                .map(|p| p.pt())
                .expect("VP8 negotiated for the camera");
            let time = MediaTime::new(u64::from(index) * 90_000 / FPS, Frequency::NINETY_KHZ);
            writer
                .write(pt, now, time, data.clone())
                .expect("the frame is written");
            out.frames.push(data);
            sent.store(out.frames.len(), Ordering::Relaxed);
            next_frame += Duration::from_micros(1_000_000 / FPS);
            continue;
        }
        peer.wait(timeout.min(next_frame)).await;
    }
}

struct Received {
    /// (when, frame bytes, str0m says keyframe) in arrival order.
    frames: Vec<(Instant, Vec<u8>, bool)>,
    /// Frames that arrived on another mid.
    elsewhere: usize,
    pli_sent: Option<Instant>,
    connected: bool,
}

/// Once the publisher has sent [`VIEWER_JOINS_AFTER`] frames, connects and receives on `mid`
/// until `until`, sending one PLI [`PLI_AFTER`] its first frame.
async fn view(peer: &mut Peer, mid: Mid, until: Instant, sent: &AtomicUsize) -> Received {
    while sent.load(Ordering::Relaxed) < VIEWER_JOINS_AFTER && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut out = Received {
        frames: Vec::new(),
        elsewhere: 0,
        pli_sent: None,
        connected: false,
    };
    let mut events = Vec::new();
    while Instant::now() < until {
        let timeout = peer.poll(&mut events).await;
        for event in events.drain(..) {
            match event {
                Event::Connected => out.connected = true,
                Event::MediaData(data) if data.mid == mid => {
                    out.frames
                        .push((Instant::now(), data.data.to_vec(), data.is_keyframe()));
                }
                // The mixed audio flows too (a frame every 20 ms, silence here): only video
                // elsewhere would be wrong.
                Event::MediaData(data) if data.params.spec().codec.is_video() => out.elsewhere += 1,
                _ => {}
            }
        }
        if let Some((first, _, _)) = out.frames.first()
            && out.pli_sent.is_none()
            && first.elapsed() >= PLI_AFTER
        {
            peer.rtc
                .direct_api()
                .stream_rx_by_mid(mid, None)
                .expect("a receive stream on the viewed mid")
                .request_keyframe(KeyframeRequestKind::Pli);
            out.pli_sent = Some(Instant::now());
            continue;
        }
        peer.wait(timeout.min(until)).await;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_gets_the_publishers_frames_and_loses_the_source_when_the_camera_stops() {
    let server = TestServer::start().await;
    let m = meeting(&server).await;
    let (publisher_id, publisher_token) = attendee(&server, &m, "publisher").await;
    let (_, viewer_token) = attendee(&server, &m, "viewer").await;

    // The publisher: audio (sendrecv) and its camera (sendrecv), as the SDK offers them.
    let mut publisher = Peer::new().await;
    let mut api = publisher.rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    let camera = api.add_media(MediaKind::Video, Direction::SendRecv, None, None, None);
    let (offer, pending) = api.apply().expect("publisher offer");
    let mut publisher_signal = SignalClient::connect(&m.signaling_url, &publisher_token).await;
    publisher_signal.join().await;
    let (ack, _) = publisher_signal
        .subscribe_video(
            offer.to_sdp_string(),
            vec![audio_descriptor(), camera_descriptor(1400, 15)],
            vec![0],
        )
        .await;
    assert_eq!(
        ack.allocations.len(),
        1,
        "one allocation for the one video descriptor, audio left out: {:?}",
        ack.allocations
    );
    let allocation = &ack.allocations[0];
    assert_eq!(
        allocation.track_label.as_deref(),
        Some("AmazonChimeExpressVideo"),
        "the allocation echoes the descriptor's label"
    );
    let stream_id = allocation.stream_id.expect("an allocated stream id");
    let group_id = allocation.group_id.expect("an allocated group id");
    assert!(
        stream_id >= 3 && group_id >= 3,
        "ids clear of the client's constants 1 and 2: {allocation:?}"
    );
    let answer = ack.sdp_answer.expect("the publisher's answer");
    let camera_section = section(&answer, &camera.to_string());
    assert_eq!(
        codecs(camera_section)
            .into_iter()
            .filter(|c| c != "RTX")
            .collect::<Vec<_>>(),
        ["VP8"],
        "the camera is answered with VP8 only:\n{camera_section}"
    );
    publisher
        .rtc
        .sdp_api()
        .accept_answer(
            pending,
            SdpAnswer::from_sdp_string(&answer).expect("the publisher's answer parses"),
        )
        .expect("the publisher accepts the answer");

    // A capture pipeline records the meeting from now on: its video (each camera, as sent), its
    // events and its data messages, besides the audio.
    let pipelines = common::media_pipelines_client(&server.url());
    let meeting_arn = format!(
        "arn:aws:chime:us-east-1:{}:meeting/{}",
        common::ACCOUNT_ID,
        m.id
    );
    let capture_id =
        common::start_capture(&pipelines, &meeting_arn, "arn:aws:s3:::camera-tapes").await;

    // The viewer joins after the camera is on: its first INDEX lists it.
    let mut viewer_signal = SignalClient::connect(&m.signaling_url, &viewer_token).await;
    let (_, index) = viewer_signal.join().await;
    let index = index.index.expect("INDEX carries an index");
    let source = index
        .sources
        .iter()
        .find(|s| s.stream_id == Some(stream_id))
        .unwrap_or_else(|| panic!("INDEX lists stream {stream_id}: {:?}", index.sources));
    assert_eq!(source.group_id, Some(group_id));
    assert_eq!(source.attendee_id.as_deref(), Some(publisher_id.as_str()));
    assert_eq!(source.external_user_id.as_deref(), Some("publisher"));
    assert_eq!(
        source.media_type,
        Some(SdkStreamMediaType::Video as i32),
        "media_type VIDEO, or the SDK skips the source"
    );
    assert_eq!(source.max_bitrate_kbps, Some(1400));

    // Its offer: audio, its own camera section (off: inactive) and one receive-only section.
    let mut viewer = Peer::new().await;
    let mut api = viewer.rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    api.add_media(MediaKind::Video, Direction::Inactive, None, None, None);
    let remote = api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let (offer, pending) = api.apply().expect("viewer offer");
    let (ack, _) = viewer_signal
        .subscribe_video(
            offer.to_sdp_string(),
            vec![audio_descriptor()],
            vec![0, stream_id],
        )
        .await;
    assert!(ack.allocations.is_empty(), "the viewer publishes no video");
    let label = format!("v_{remote}");
    let [track] = ack.tracks.as_slice() else {
        panic!("one track for the one receive section: {:?}", ack.tracks);
    };
    let SdkTrackMapping {
        stream_id: track_stream,
        ssrc: track_ssrc,
        track_label,
    } = track.clone();
    assert_eq!(
        (track_stream, track_label.as_deref()),
        (Some(stream_id), Some(label.as_str())),
        "tracks[] pairs the stream with v_<mid> of the receive section"
    );
    let track_ssrc = track_ssrc.expect("tracks[] carries the SSRC");
    let answer = ack.sdp_answer.expect("the viewer's answer");
    let remote_section = section(&answer, &remote.to_string());
    assert!(
        remote_section
            .lines()
            .any(|l| l.trim_end() == format!("a=msid:{label} track_{remote}")),
        "the receive section's answer carries a=msid:{label} track_{remote}:\n{remote_section}"
    );
    assert!(
        remote_section.lines().any(|l| l.trim_end() == "a=sendonly"),
        "the server sends on the receive section:\n{remote_section}"
    );
    assert!(
        remote_section
            .lines()
            .any(|l| l.trim_end() == format!("a=ssrc:{track_ssrc} msid:{label} track_{remote}")),
        "the answer's a=ssrc for tracks[].ssrc carries the same msid:\n{remote_section}"
    );
    viewer
        .rtc
        .sdp_api()
        .accept_answer(
            pending,
            SdpAnswer::from_sdp_string(&answer).expect("the viewer's answer parses"),
        )
        .expect("the viewer accepts the answer");

    // A media tap on the camera's stream (what recording builds on) gets the same frames.
    let mut tap = server
        .running
        .as_ref()
        .expect("running")
        .join
        .media
        .tap_video(
            &carillon::domain::id::MeetingId::trusted(m.id.as_str()),
            carillon::domain::id::StreamId(stream_id),
            1000,
        )
        .expect("the meeting has media once both offers are answered");

    // Media: the publisher sends for SEND_FOR once connected; the viewer listens a bit longer.
    let until = Instant::now() + SEND_FOR + Duration::from_secs(2);
    let sent = Arc::new(AtomicUsize::new(0));
    let (published, received) = tokio::join!(
        publish(&mut publisher, camera, &sent),
        view(&mut viewer, remote, until, &sent)
    );
    assert!(
        published.connected && received.connected,
        "ICE and DTLS completed (publisher {}, viewer {})",
        published.connected,
        received.connected
    );
    assert_eq!(received.elsewhere, 0, "no video frames on other sections");
    let sent = published.frames.len();
    assert!(sent >= 40, "the publisher sent {sent} frames");
    let mut indices = Vec::new();
    for (position, (_, data, _)) in received.frames.iter().enumerate() {
        let index = vp8::check(data).unwrap_or_else(|| {
            panic!(
                "received frame #{position} ({} bytes) is not a frame the publisher made",
                data.len()
            )
        });
        assert_eq!(
            data, &published.frames[index as usize],
            "frame {index} arrives byte for byte"
        );
        indices.push(index);
    }
    assert!(
        indices.windows(2).all(|w| w[0] < w[1]),
        "frames arrive in order, each once: {indices:?}"
    );
    let first = *indices
        .first()
        .unwrap_or_else(|| panic!("the viewer got none of the {sent} frames"));
    let expected = sent - first as usize;
    assert!(
        indices.len() * 10 >= expected * 9,
        "the viewer got {} of the {expected} frames sent since its first (frame {first}): {indices:?}",
        indices.len()
    );
    let mut tapped = Vec::new();
    while let Ok(frame) = tap.frames.try_recv() {
        let index = vp8::check(&frame.data).expect("a tapped frame is one the publisher made");
        assert_eq!(
            &frame.data[..],
            &published.frames[index as usize][..],
            "tapped frame {index} is byte for byte what was sent"
        );
        assert_eq!(frame.codec, Codec::Vp8);
        tapped.push((index, frame.keyframe, frame.rtp_time));
    }
    for pair in tapped.windows(2) {
        let ((a, _, a_time), (b, _, b_time)) = (pair[0], pair[1]);
        assert_eq!(
            b_time - a_time,
            u64::from(b - a) * 90_000 / FPS,
            "the publisher's RTP times are kept"
        );
    }
    assert!(
        tapped.first().is_some_and(|(_, keyframe, _)| *keyframe),
        "the tap starts with the keyframe: {tapped:?}"
    );
    assert!(
        tapped.len() * 10 >= sent * 9 && tap.dropped() == 0,
        "the tap got {} of {sent} frames, dropped {}",
        tapped.len(),
        tap.dropped()
    );
    eprintln!(
        "sent {sent} frames; viewer got {} from frame {first}; keyframe requests at {:?} after the first frame; PLI at {:?}",
        indices.len(),
        published
            .keyframe_requests
            .iter()
            .map(|at| at.checked_duration_since(received.frames[0].0))
            .collect::<Vec<_>>(),
        received.pli_sent.map(|at| at - received.frames[0].0),
    );
    // Keyframes come only when asked for: the server asks when the viewer is wired up and
    // connected, so the viewer can decode within a few frames whenever it joins.
    let first_at = received.frames[0].0;
    let first_keyframe = received
        .frames
        .iter()
        .find(|(_, data, _)| vp8::is_keyframe(data))
        .unwrap_or_else(|| panic!("the viewer got no keyframe: {indices:?}"));
    assert!(
        first_keyframe.0 - first_at < Duration::from_millis(700),
        "a keyframe within 700 ms of the first frame, got one after {:?}",
        first_keyframe.0 - first_at
    );
    assert!(
        received
            .frames
            .iter()
            .all(|(_, data, keyframe)| *keyframe == vp8::is_keyframe(data)),
        "str0m's keyframe flag matches the frame tag after forwarding"
    );
    // The viewer's PLI reaches the publisher, and the keyframe it makes reaches the viewer.
    let pli = received.pli_sent.expect("the viewer sent its PLI");
    assert!(
        published
            .keyframe_requests
            .iter()
            .any(|at| *at > pli && *at - pli < Duration::from_secs(1)),
        "the publisher was asked for a keyframe within 1 s of the viewer's PLI (asked at {:?} after it)",
        published
            .keyframe_requests
            .iter()
            .map(|at| at.checked_duration_since(pli))
            .collect::<Vec<_>>()
    );
    assert!(
        received
            .frames
            .iter()
            .any(|(at, data, _)| *at > pli && vp8::is_keyframe(data)),
        "a keyframe reached the viewer after its PLI"
    );
    // The SSRC the viewer receives on is the one tracks[] announced.
    let rx_ssrc = viewer
        .rtc
        .direct_api()
        .stream_rx_by_mid(remote, None)
        .map(|s| *s.ssrc())
        .expect("a receive stream on the viewed mid");
    assert_eq!(rx_ssrc, track_ssrc, "the viewer receives on tracks[].ssrc");

    // Camera off: the publisher renegotiates with its camera inactive and no video descriptor;
    // every session gets an INDEX without the source.
    let mut api = publisher.rtc.sdp_api();
    api.set_direction(camera, Direction::Inactive);
    let (offer, _pending) = api.apply().expect("a camera-off offer");
    let (ack, _) = publisher_signal
        .subscribe_video(offer.to_sdp_string(), vec![audio_descriptor()], vec![0])
        .await;
    assert!(
        ack.allocations.is_empty(),
        "no allocations once the camera is off: {:?}",
        ack.allocations
    );
    let mut seen = Vec::new();
    let gone = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let index = viewer_signal.index().await;
            let streams: Vec<_> = index.sources.iter().map(|s| s.stream_id).collect();
            seen.push(streams.clone());
            if !streams.contains(&Some(stream_id)) {
                return index;
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!("no INDEX without stream {stream_id} within 5 s; INDEX sources seen: {seen:?}")
    });
    assert!(
        gone.sources.is_empty(),
        "nobody publishes: {:?}",
        gone.sources
    );

    // A data message from the viewer, then the capture ends and flushes its last chunks.
    viewer_signal
        .send(common::signal::data_frame(
            "chat",
            "Zoë: la caméra marche".as_bytes(),
        ))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    pipelines
        .delete_media_capture_pipeline()
        .media_pipeline_id(&capture_id)
        .send()
        .await
        .expect("DeleteMediaCapturePipeline");
    let folder = server
        .dir
        .path()
        .join("buckets/camera-tapes")
        .join(&capture_id);
    let files = |sub: &str| -> Vec<std::path::PathBuf> {
        let mut files: Vec<_> = std::fs::read_dir(folder.join(sub))
            .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        files
    };
    let video = files("video");
    assert!(
        !video.is_empty()
            && video.iter().all(|path| path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.len() == 23 + 1 + publisher_id.len() + 5
                    && n.ends_with(&format!("-{publisher_id}.webm")))),
        "the camera's chunks are named <yyyy-mm-dd-HH-MM-SS-mmm>-<attendee id>.webm: {video:?}"
    );
    let mut recorded = Vec::new();
    for path in &video {
        let chunk = carillon::recording::webm::read_webm(&std::fs::read(path).expect("a chunk"))
            .unwrap_or_else(|e| panic!("{path:?} is a WebM file: {e}"));
        assert_eq!((chunk.width, chunk.height), (vp8::WIDTH, vp8::HEIGHT));
        assert!(
            chunk.samples.first().is_some_and(|s| s.keyframe),
            "{path:?} starts on a keyframe"
        );
        assert!(
            chunk.duration_ms <= 5_000,
            "{path:?}: {} ms",
            chunk.duration_ms
        );
        for sample in chunk.samples {
            let index =
                vp8::check(&sample.data).expect("a recorded frame is one the publisher made");
            assert_eq!(&sample.data[..], &published.frames[index as usize][..]);
            recorded.push(index);
        }
    }
    let first_recorded = *recorded.first().expect("frames recorded");
    assert!(
        recorded.windows(2).all(|w| w[0] < w[1])
            && recorded.len() * 10 >= (sent - first_recorded as usize) * 9,
        "the recording holds the frames sent since its first ({first_recorded}), in order, each \
         once: {recorded:?} of {sent}"
    );
    let text = |sub: &str| -> String {
        files(sub)
            .iter()
            .map(|path| std::fs::read_to_string(path).expect("a text chunk"))
            .collect()
    };
    let events: Vec<serde_json::Value> = text("meeting-events")
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["EventType"].as_str().unwrap_or_default(),
                e["EventParameters"]["AttendeeId"]
                    .as_str()
                    .unwrap_or_default(),
            )
        })
        .collect();
    for expected in [
        ("CaptureStarted", ""),
        ("AttendeeVideoLeft", publisher_id.as_str()),
        ("CaptureEnded", ""),
    ] {
        assert!(kinds.contains(&expected), "{expected:?} in {kinds:?}");
    }
    let data = text("data-channel");
    let message: serde_json::Value =
        serde_json::from_str(data.lines().next().expect("a data message line")).expect("JSON");
    assert_eq!(message["Topic"], "chat");
    assert_eq!(message["Data"], "Zoë: la caméra marche");
    assert!(
        message["Timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
}

#[test]
fn synthetic_frames_carry_a_vp8_tag_and_their_index() {
    let key = vp8::frame(7, true, 100);
    assert_eq!(key.len(), 100);
    assert!(vp8::is_keyframe(&key), "keyframe tag and start code");
    assert_eq!(vp8::check(&key), Some(7));
    let delta = vp8::frame(8, false, 50);
    assert!(
        !vp8::is_keyframe(&delta) && delta[0] & 1 == 1,
        "inverse keyframe bit set"
    );
    assert_eq!(vp8::check(&delta), Some(8));
    assert_ne!(
        vp8::frame(9, false, 50)[11..],
        delta[11..],
        "filler differs per frame"
    );
    let mut broken = delta.clone();
    broken[40] ^= 1;
    assert_eq!(vp8::check(&broken), None, "one flipped bit is caught");
    let (k, d) = vp8::sizes(1_000_000, 30, 60, 5);
    assert!(k == 5 * d && (k + 59 * d) * 8 / 2 <= 1_000_000, "{k} {d}");
}
