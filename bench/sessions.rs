//! Join-plane capacity of one node: `cargo bench --bench sessions` (or `bench/run`).
//!
//! Opens native signaling sessions against an in-process server in growing steps, each session
//! joining (JOIN → JOIN_ACK + INDEX) and, in the media run, negotiating WebRTC (SUBSCRIBE with an
//! SDP offer → a str0m peer on the server). A step passes when every session then answers a PING
//! within 5 s. The baseline is the same step with signaling only, measured in the same run.
//! Bounded: at most 2,000 sessions per step, loopback only, and it stops at the first failing step.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use aws_sdk_chimesdkmeetings::types::CreateAttendeeRequestItem;
use carillon::join::frames::proto::sdk_signal_frame::Type;
use carillon::join::frames::proto::*;
use common::signal::{SignalClient, client_frame};

const STEPS: &[usize] = &[100, 250, 500, 1000, 2000];

async fn tokens(server: &common::TestServer, count: usize) -> Vec<(String, String)> {
    let client = server.client();
    let mut out = Vec::new();
    while out.len() < count {
        let meeting = client
            .create_meeting()
            .media_region("us-east-1")
            .external_meeting_id(format!("load-{}", out.len()))
            .send()
            .await
            .expect("meeting")
            .meeting
            .expect("meeting");
        let url = meeting
            .media_placement()
            .and_then(|p| p.signaling_url())
            .expect("url")
            .to_string();
        let batch = (count - out.len()).min(100);
        let items: Vec<_> = (0..batch)
            .map(|i| {
                CreateAttendeeRequestItem::builder()
                    .external_user_id(format!("u{i}"))
                    .build()
                    .expect("item")
            })
            .collect();
        let created = client
            .batch_create_attendee()
            .meeting_id(meeting.meeting_id().expect("id"))
            .set_attendees(Some(items))
            .send()
            .await
            .expect("batch");
        out.extend(
            created
                .attendees()
                .iter()
                .map(|a| (url.clone(), a.join_token().expect("token").to_string())),
        );
    }
    out
}

async fn open(url: String, token: String, media: bool) -> SignalClient {
    let mut client = SignalClient::connect(&url, &token).await;
    client.join().await;
    if media {
        client.subscribe().await;
    }
    client
}

/// Opens `count` sessions 50 at a time, then pings every one. Returns the time taken, or None
/// when a session failed or a ping went unanswered.
async fn step(server: &common::TestServer, count: usize, media: bool) -> Option<Duration> {
    let started = Instant::now();
    let mut sessions = Vec::with_capacity(count);
    for chunk in tokens(server, count).await.chunks(50) {
        let opening: Vec<_> = chunk
            .iter()
            .cloned()
            .map(|(url, token)| tokio::spawn(open(url, token, media)))
            .collect();
        for task in opening {
            sessions.push(task.await.ok()?);
        }
    }
    let pings: Vec<_> = sessions
        .into_iter()
        .enumerate()
        .map(|(i, mut client)| {
            tokio::spawn(async move {
                client
                    .send(SdkSignalFrame {
                        ping_pong: Some(SdkPingPongFrame {
                            r#type: SdkPingPongType::Ping as i32,
                            ping_id: i as u32,
                        }),
                        ..client_frame(Type::PingPong)
                    })
                    .await;
                let pong =
                    tokio::time::timeout(Duration::from_secs(5), client.expect(Type::PingPong))
                        .await
                        .ok()?;
                (pong.ping_pong?.ping_id == i as u32).then_some(client)
            })
        })
        .collect();
    let mut alive = Vec::new();
    for ping in pings {
        alive.push(ping.await.ok()??);
    }
    let elapsed = started.elapsed();
    drop(alive);
    Some(elapsed)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    println!("carillon join-plane capacity: native signaling sessions on one node, loopback\n");
    println!(
        "{:>8}  {:>26}  {:>26}",
        "sessions", "signaling only (baseline)", "signaling + WebRTC peer"
    );
    let mut held = (0, 0);
    for &count in STEPS {
        let server = common::TestServer::start_with(|c| c.max_attendees = 250).await;
        let signaling = step(&server, count, false).await;
        let media = step(&server, count, true).await;
        let show = |d: Option<Duration>| match d {
            Some(d) => format!("ok in {:.2} s", d.as_secs_f64()),
            None => "failed".to_string(),
        };
        println!("{count:>8}  {:>26}  {:>26}", show(signaling), show(media));
        if signaling.is_some() {
            held.0 = count;
        }
        if media.is_some() {
            held.1 = count;
        }
        if signaling.is_none() && media.is_none() {
            break;
        }
    }
    println!(
        "\nheld: {} signaling-only sessions, {} sessions with a WebRTC peer each ({:.2}x of baseline)",
        held.0,
        held.1,
        held.1 as f64 / held.0.max(1) as f64
    );
}
