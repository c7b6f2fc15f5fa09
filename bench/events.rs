//! Event-delivery benchmark: `cargo bench --bench events` (or `bench/run`).
//!
//! One node, the embedded store, one webhook sink pointing at a receiver in this process, all on
//! 127.0.0.1, bounded in count. Reported against a baseline measured in the same run: the same
//! receiver taking POSTs of the same bodies from one sequential client (what one sink worker can
//! at best do, since it delivers in order).
//! - throughput: 20 BatchCreateAttendee calls of 100 (in 10 meetings) produce 2,000 AttendeeAdded
//!   events; events/s from the first call to the last event's arrival;
//! - latency: 300 CreateAttendee calls paced at 50 per second; each event's arrival minus the
//!   moment its API call was answered (p50, p99).

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_chimesdkmeetings::types::CreateAttendeeRequestItem;
use axum::extract::State;
use axum::http::StatusCode;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Arrival time of each event, by its attendee's ExternalUserId (or event type).
#[derive(Clone, Default)]
struct Arrivals(Arc<Mutex<HashMap<String, Instant>>>);

impl Arrivals {
    fn count(&self) -> usize {
        self.0.lock().map(|m| m.len()).unwrap_or_default()
    }

    fn get(&self, key: &str) -> Option<Instant> {
        self.0.lock().ok().and_then(|m| m.get(key).copied())
    }

    async fn wait_for(&self, count: usize) -> Instant {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.count() < count && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Instant::now()
    }
}

async fn receive(State(arrivals): State<Arrivals>, body: String) -> StatusCode {
    let now = Instant::now();
    let key = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|event| {
            let detail = &event["detail"];
            detail["externalUserId"]
                .as_str()
                .or(detail["eventType"].as_str())
                .map(str::to_string)
        })
        .unwrap_or_default();
    if let Ok(mut map) = arrivals.0.lock() {
        map.entry(key).or_insert(now);
    }
    StatusCode::OK
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted
        .get(((sorted.len() as f64 - 1.0) * q) as usize)
        .copied()
        .unwrap_or_default()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let arrivals = Arrivals::default();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(arrivals.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hook = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });

    // Baseline: one sequential client POSTing event-sized bodies to the same receiver.
    let sample = serde_json::json!({
        "version": "0", "id": uuid::Uuid::new_v4().to_string(), "source": "aws.chime",
        "detail-type": "Chime Meeting State Change", "account": "111122223333",
        "time": "2026-11-28T08:00:00Z", "region": "us-east-1", "resources": [],
        "detail": {"version": "0", "eventType": "chime:AttendeeAdded", "timestamp": 0,
                   "meetingId": uuid::Uuid::new_v4().to_string(), "externalMeetingId": "bench",
                   "mediaRegion": "us-east-1", "attendeeId": uuid::Uuid::new_v4().to_string(),
                   "externalUserId": "baseline"}
    })
    .to_string();
    let client: Client<_, Full<axum::body::Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let started = Instant::now();
    let mut posts = 0u32;
    while started.elapsed() < Duration::from_secs(2) {
        let request = http::Request::post(&hook)
            .header("content-type", "application/json")
            .body(Full::new(axum::body::Bytes::from(sample.clone())))
            .expect("request");
        let response = client.request(request).await.expect("POST");
        assert!(response.status().is_success());
        posts += 1;
    }
    let floor = f64::from(posts) / started.elapsed().as_secs_f64();
    if let Ok(mut map) = arrivals.0.lock() {
        map.clear();
    }

    let server =
        common::TestServer::start_with(|config| config.webhooks = vec![hook.clone()]).await;
    let sdk = server.client();

    // Throughput: 2,000 AttendeeAdded events from 20 batches of 100, in 10 meetings (a meeting
    // holds 250 attendees).
    let meetings = {
        let mut ids = Vec::new();
        for m in 0..10 {
            ids.push(common::create_meeting_id(&sdk, &format!("events-bench-{m}")).await);
        }
        ids
    };
    // The MeetingStarted events share one key.
    arrivals.wait_for(1).await;
    let started = Instant::now();
    for batch in 0..20 {
        let meeting = &meetings[batch / 2];
        let items: Vec<_> = (0..100)
            .map(|i| {
                CreateAttendeeRequestItem::builder()
                    .external_user_id(format!("batch-{batch}-{i}"))
                    .build()
                    .expect("item")
            })
            .collect();
        sdk.batch_create_attendee()
            .meeting_id(meeting)
            .set_attendees(Some(items))
            .send()
            .await
            .expect("BatchCreateAttendee");
    }
    let written = started.elapsed();
    let done = arrivals.wait_for(2_001).await;
    let delivered = done.duration_since(started);
    let per_second = 2_000.0 / delivered.as_secs_f64();

    // Latency: paced single creates in a fresh meeting (its cap is 250 attendees).
    let mut answered = Vec::new();
    for round in 0..2 {
        let meeting = common::create_meeting_id(&sdk, &format!("latency-{round}")).await;
        for i in 0..150 {
            let name = format!("latency-{round}-{i}");
            sdk.create_attendee()
                .meeting_id(&meeting)
                .external_user_id(&name)
                .send()
                .await
                .expect("CreateAttendee");
            answered.push((name, Instant::now()));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // MeetingStarted events share one key, so only the 300 attendees add to the count.
    arrivals.wait_for(2_001 + 300).await;
    let mut latencies: Vec<Duration> = answered
        .iter()
        .filter_map(|(name, at)| {
            arrivals
                .get(name)
                .map(|arrived| arrived.saturating_duration_since(*at))
        })
        .collect();
    latencies.sort();

    println!("event delivery, one node, embedded store, one webhook sink on loopback");
    println!("  baseline: one sequential client POSTing the same bodies: {floor:.0} POST/s");
    println!(
        "  throughput: 2,000 events (20 BatchCreateAttendee of 100) written in {:.0} ms, all delivered in {:.0} ms: {per_second:.0} events/s = {:.2}x the baseline",
        written.as_secs_f64() * 1000.0,
        delivered.as_secs_f64() * 1000.0,
        per_second / floor
    );
    println!(
        "  latency (API answer to webhook arrival, {} paced CreateAttendee): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0
    );
}
