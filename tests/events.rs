//! Meeting events leave the outbox for real sinks: a webhook receiver on loopback (signed,
//! ordered, retried, dead-lettered), per-meeting routes for NotificationsConfiguration ARNs, NATS
//! JetStream (when `CARILLON_TEST_NATS_URL` is set, as `scripts/test` does), and none lost when
//! the server is killed mid-stream.

mod common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use carillon::join::frames::proto::sdk_signal_frame::Type;
use common::signal::{SignalClient, attendee, client_frame, meeting};
use common::{ACCESS_KEY_ID, ACCOUNT_ID, SECRET_ACCESS_KEY, TestServer};

const SECRET: &str = "webhook-secret-for-tests";

/// A received POST: its signature header and its body.
type Delivery = (Option<String>, serde_json::Value);

/// A webhook receiver: records every body with its signature header, and answers with the
/// statuses queued in `failures` first (then 200).
#[derive(Clone, Default)]
struct Receiver {
    received: Arc<Mutex<Vec<Delivery>>>,
    failures: Arc<Mutex<Vec<StatusCode>>>,
    /// Milliseconds each POST takes to answer: a slow receiver.
    delay_ms: Arc<std::sync::atomic::AtomicU64>,
}

impl Receiver {
    async fn start(port: u16) -> (Receiver, String) {
        let receiver = Receiver::default();
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, url)
    }

    fn events(&self) -> Vec<serde_json::Value> {
        self.received
            .lock()
            .expect("lock")
            .iter()
            .map(|(_, body)| body.clone())
            .collect()
    }

    /// Waits until `count` events arrived (at most 20 s).
    async fn wait_for(&self, count: usize) -> Vec<serde_json::Value> {
        for _ in 0..400 {
            let events = self.events();
            if events.len() >= count {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "only {} of {count} events arrived: {:#?}",
            self.events().len(),
            self.events()
        );
    }
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: String) -> StatusCode {
    let delay = receiver.delay_ms.load(std::sync::atomic::Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let failure = receiver.failures.lock().expect("lock").pop();
    if let Some(status) = failure {
        return status;
    }
    let signature = headers
        .get("x-carillon-signature")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let parsed = serde_json::from_str(&body).expect("a JSON body");
    // Verify the signature over the exact bytes received.
    if let Some(signature) = &signature {
        let expected = format!(
            "sha256={}",
            hex::encode(carillon::domain::digest::hmac_sha256(
                SECRET.as_bytes(),
                body.as_bytes()
            ))
        );
        assert_eq!(signature, &expected, "the signature covers the body");
    }
    receiver
        .received
        .lock()
        .expect("lock")
        .push((signature, parsed));
    StatusCode::OK
}

fn kinds(events: &[serde_json::Value], meeting_id: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["detail"]["meetingId"] == meeting_id)
        .map(|e| {
            e["detail"]["eventType"]
                .as_str()
                .unwrap_or_default()
                .trim_start_matches("chime:")
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn a_two_person_meeting_streams_every_event_in_order_signed() {
    let (receiver, url) = Receiver::start(0).await;
    let server = TestServer::start_with(|config| {
        config.webhooks = vec![url];
        config.webhook_secret = Some(SECRET.into());
    })
    .await;
    let m = meeting(&server).await;
    let (_, alice_token) = attendee(&server, &m, "José").await;
    let (bob_id, bob_token) = attendee(&server, &m, "Zoë").await;
    let mut alice = SignalClient::connect(&m.signaling_url, &alice_token).await;
    alice.join().await;
    let mut bob = SignalClient::connect(&m.signaling_url, &bob_token).await;
    bob.join().await;
    alice.send(client_frame(Type::Leave)).await;
    alice.expect(Type::LeaveAck).await;
    drop(alice);
    // Wait for alice's departure to be recorded before the next change.
    receiver.wait_for(8).await;
    server
        .client()
        .delete_attendee()
        .meeting_id(&m.id)
        .attendee_id(&bob_id)
        .send()
        .await
        .expect("DeleteAttendee");
    receiver.wait_for(9).await;
    server
        .client()
        .delete_meeting()
        .meeting_id(&m.id)
        .send()
        .await
        .expect("DeleteMeeting");

    let events = receiver.wait_for(10).await;
    assert_eq!(
        kinds(&events, &m.id),
        [
            "MeetingStarted",
            "AttendeeAdded",
            "AttendeeAdded",
            "AttendeeAuthorized",
            "AttendeeJoined",
            "AttendeeAuthorized",
            "AttendeeJoined",
            "AttendeeLeft",
            "AttendeeDeleted",
            "MeetingEnded"
        ]
    );
    let first = &events[0];
    assert_eq!(first["source"], "aws.chime");
    assert_eq!(first["detail-type"], "Chime Meeting State Change");
    assert_eq!(first["account"], common::ACCOUNT_ID);
    let joined = &events[4];
    assert_eq!(joined["detail"]["externalUserId"], "José");
    assert_eq!(joined["detail"]["networkType"], "Voip");
    assert!(
        joined["detail"]["timestamp"]
            .as_i64()
            .is_some_and(|t| t > 1_700_000_000_000)
    );
    let all_signed = receiver
        .received
        .lock()
        .expect("lock")
        .iter()
        .all(|(signature, _)| signature.is_some());
    assert!(all_signed, "every POST is signed");
}

/// The outbox keeps events for `--event-retention` (real time), then deletes them, delivered or
/// not (here no sink takes them at all), so it stays bounded whatever happens to the sinks.
#[tokio::test]
async fn events_past_the_retention_leave_the_outbox() {
    let server = TestServer::start_with(|config| config.event_retention = 1).await;
    let store = server.running.as_ref().expect("running").api.store.clone();
    let m = meeting(&server).await;
    attendee(&server, &m, "José").await;
    let recorded = store.outbox_after(0, 10).await.expect("outbox");
    assert!(
        recorded.len() >= 2,
        "MeetingStarted and AttendeeAdded are recorded: {recorded:?}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let left = store.outbox_after(0, 10).await.expect("outbox");
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "events past the retention are still there: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn failed_deliveries_are_retried_in_order_then_dead_lettered() {
    let (receiver, url) = Receiver::start(0).await;
    // Two failures, then success: the retries hold later events back.
    receiver.failures.lock().expect("lock").extend([
        StatusCode::SERVICE_UNAVAILABLE,
        StatusCode::INTERNAL_SERVER_ERROR,
    ]);
    let server = TestServer::start_with(|config| {
        config.webhooks = vec![url];
        config.event_attempts = 3;
    })
    .await;
    let client = server.client();
    let id = common::create_meeting_id(&client, "retried").await;
    client
        .create_attendee()
        .meeting_id(&id)
        .external_user_id("«Ana»")
        .send()
        .await
        .expect("attendee");
    let events = receiver.wait_for(2).await;
    assert_eq!(kinds(&events, &id), ["MeetingStarted", "AttendeeAdded"]);

    // Three failures in a row: the event is dead-lettered and the next one still comes.
    receiver
        .failures
        .lock()
        .expect("lock")
        .extend([StatusCode::BAD_GATEWAY; 3]);
    client
        .delete_meeting()
        .meeting_id(&id)
        .send()
        .await
        .expect("delete");
    let second = common::create_meeting_id(&client, "after").await;
    let events = receiver.wait_for(3).await;
    assert_eq!(kinds(&events, &second), ["MeetingStarted"]);
    let dead = server.raw().get("/_carillon/events/dead-letters").await;
    assert_eq!(dead.status, 200);
    let letters = dead.json()["dead_letters"].clone();
    assert_eq!(letters.as_array().map(Vec::len), Some(1), "{letters}");
    assert_eq!(letters[0]["error"], "HTTP 502 Bad Gateway");
    assert!(
        letters[0]["body"]
            .as_str()
            .is_some_and(|b| b.contains("chime:MeetingEnded"))
    );
}

#[tokio::test]
async fn notifications_configuration_routes_a_meetings_events_and_unknown_arns_are_refused() {
    let (routed, url) = Receiver::start(0).await;
    let arn = format!("arn:aws:sqs:us-east-1:{ACCOUNT_ID}:meeting-events");
    let server = TestServer::start_with(|config| {
        config.notify_routes = vec![format!("{arn}={url}")];
    })
    .await;
    let client = server.client();
    let unrouted = common::create_meeting_id(&client, "unrouted").await;
    let with_route = client
        .create_meeting()
        .media_region("us-east-1")
        .external_meeting_id("routed")
        .notifications_configuration(
            aws_sdk_chimesdkmeetings::types::NotificationsConfiguration::builder()
                .sqs_queue_arn(&arn)
                .build(),
        )
        .send()
        .await
        .expect("a routed ARN is accepted")
        .meeting
        .and_then(|m| m.meeting_id)
        .expect("id");
    let events = routed.wait_for(1).await;
    assert_eq!(kinds(&events, &with_route), ["MeetingStarted"]);
    assert!(
        kinds(&events, &unrouted).is_empty(),
        "other meetings do not go there"
    );

    let refused = client
        .create_meeting()
        .media_region("us-east-1")
        .external_meeting_id("nowhere")
        .notifications_configuration(
            aws_sdk_chimesdkmeetings::types::NotificationsConfiguration::builder()
                .sns_topic_arn(format!("arn:aws:sns:us-east-1:{ACCOUNT_ID}:unknown"))
                .build(),
        )
        .send()
        .await
        .expect_err("an ARN without a route")
        .into_service_error();
    assert!(refused.is_bad_request_exception(), "{refused:?}");
    assert!(format!("{refused:?}").contains("--notify-route"));
}

/// The events of a meeting are on the JetStream stream, in order.
#[tokio::test]
async fn events_reach_nats_jetstream() {
    let Ok(nats_url) = std::env::var("CARILLON_TEST_NATS_URL") else {
        eprintln!(
            "NOTE: CARILLON_TEST_NATS_URL is not set, so the NATS sink is not tested here; scripts/test sets it"
        );
        return;
    };
    let prefix = format!("carillontest.{}", uuid::Uuid::new_v4().simple());
    let server = TestServer::start_with(|config| {
        config.events_nats = Some(nats_url.clone());
        config.events_subject = prefix.clone();
    })
    .await;
    let client = server.client();
    let id = common::create_meeting_id(&client, "nats").await;
    client
        .create_attendee()
        .meeting_id(&id)
        .external_user_id("José")
        .send()
        .await
        .expect("attendee");
    client
        .delete_meeting()
        .meeting_id(&id)
        .send()
        .await
        .expect("delete");

    use async_nats::jetstream;
    use futures_util::StreamExt;
    let nats = async_nats::connect(&nats_url).await.expect("NATS");
    let js = jetstream::new(nats);
    let stream_name = carillon::notifications::nats::stream_name(&prefix);
    let mut received = Vec::new();
    for _ in 0..200 {
        if let Ok(mut stream) = js.get_stream(&stream_name).await
            && stream.info().await.is_ok_and(|i| i.state.messages >= 3)
        {
            let consumer = stream
                .create_consumer(jetstream::consumer::pull::Config::default())
                .await
                .expect("consumer");
            let mut messages = consumer
                .fetch()
                .max_messages(10)
                .messages()
                .await
                .expect("fetch");
            while let Some(Ok(message)) = messages.next().await {
                assert_eq!(message.subject.as_str(), format!("{prefix}.{id}"));
                received.push(
                    serde_json::from_slice::<serde_json::Value>(&message.payload).expect("json"),
                );
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = js.delete_stream(&stream_name).await;
    assert_eq!(
        kinds(&received, &id),
        ["MeetingStarted", "AttendeeAdded", "MeetingEnded"]
    );
}

/// Starts the real binary on `port` with a webhook to `hook`, and waits until it listens.
async fn spawn_node(port: u16, data_dir: &std::path::Path, hook: &str) -> tokio::process::Child {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_carillon"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--webhook", hook, "--admin-listen", "off"])
        .arg("--data-dir")
        .arg(data_dir)
        .env("CARILLON_ACCESS_KEY_ID", ACCESS_KEY_ID)
        .env("CARILLON_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
        .env("CARILLON_ACCOUNT_ID", ACCOUNT_ID)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("binary starts");
    common::wait_ready(port).await;
    child
}

/// Events written while the receiver is down survive `kill -9` and arrive after the restart.
#[tokio::test]
async fn no_event_is_lost_when_the_server_is_killed_mid_stream() {
    let dir = tempfile::tempdir().expect("temp dir");
    let free_port = || {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        probe.local_addr().expect("addr").port()
    };
    let (port, hook_port) = (free_port(), free_port());
    let hook = format!("http://127.0.0.1:{hook_port}/hook");
    let mut child = spawn_node(port, dir.path(), &hook).await;
    // Nobody listens on the hook port yet: every event waits in the outbox.
    let client = common::sdk_client(&format!("http://127.0.0.1:{port}"), "us-east-1");
    let id = common::create_meeting_id(&client, "crash").await;
    for i in 0..20 {
        client
            .create_attendee()
            .meeting_id(&id)
            .external_user_id(format!("Zoë {i}"))
            .send()
            .await
            .expect("attendee");
    }
    child.kill().await.expect("SIGKILL");
    let _ = child.wait().await;

    let (receiver, _) = Receiver::start(hook_port).await;
    let mut child = spawn_node(port, dir.path(), &hook).await;
    let events = receiver.wait_for(21).await;
    let kinds = kinds(&events, &id);
    assert_eq!(kinds.first().map(String::as_str), Some("MeetingStarted"));
    assert_eq!(kinds.iter().filter(|k| *k == "AttendeeAdded").count(), 20);
    let names: Vec<_> = events
        .iter()
        .filter_map(|e| e["detail"]["externalUserId"].as_str())
        .collect();
    let expected: Vec<String> = (0..20).map(|i| format!("Zoë {i}")).collect();
    assert_eq!(names, expected, "in the order they happened");
    let _ = child.kill().await;
}

/// Two nodes on one store (here one SQLite file, as a cluster shares one database) with the same
/// webhook: each event is delivered by one node, not by both.
#[tokio::test]
async fn with_two_nodes_on_one_store_each_event_is_delivered_once() {
    let (receiver, url) = Receiver::start(0).await;
    let first = TestServer::start_with(|config| config.webhooks = vec![url]).await;
    let second = first.second_node().await;
    let on_second = common::sdk_client(&format!("http://{}", second.boot.addr), "us-east-1");
    let id = common::create_meeting_id(&first.client(), "two-nodes").await;
    for i in 0..10 {
        on_second
            .create_attendee()
            .meeting_id(&id)
            .external_user_id(format!("José {i}"))
            .send()
            .await
            .expect("attendee through the second node");
    }
    receiver.wait_for(11).await;
    // Give a second deliverer time to show itself, if there were one.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events = receiver.events();
    let ids: std::collections::HashSet<_> = events
        .iter()
        .map(|e| e["id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(events.len(), 11, "{:#?}", kinds(&events, &id));
    assert_eq!(ids.len(), 11, "no event twice");
    second.stop().await.expect("stops");
}

/// A graceful stop (SIGTERM) waits for the outbox to reach the sinks, even a slow one.
#[tokio::test]
async fn a_graceful_stop_flushes_the_outbox() {
    let (receiver, url) = Receiver::start(0).await;
    receiver
        .delay_ms
        .store(40, std::sync::atomic::Ordering::Relaxed);
    let dir = tempfile::tempdir().expect("temp dir");
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        probe.local_addr().expect("addr").port()
    };
    let mut child = spawn_node(port, dir.path(), &url).await;
    let client = common::sdk_client(&format!("http://127.0.0.1:{port}"), "us-east-1");
    let id = common::create_meeting_id(&client, "flush").await;
    for i in 0..20 {
        client
            .create_attendee()
            .meeting_id(&id)
            .external_user_id(format!("«Ana» {i}"))
            .send()
            .await
            .expect("attendee");
    }
    // 21 events at 40 ms each are still on their way: stop now.
    let pid = child.id().expect("pid");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let status = child.wait().await.expect("exits");
    assert!(status.success(), "{status:?}");
    assert_eq!(
        kinds(&receiver.events(), &id).len(),
        21,
        "every event was delivered before the process ended"
    );
}

/// A capture pipeline's lifecycle reaches the sinks as AWS's media pipeline events
/// ("Chime Media Pipeline State Change"): InProgress once it records, Deleted once Delete has
/// stopped it, each naming its meeting and pipeline.
#[tokio::test]
async fn a_capture_pipeline_announces_its_start_and_its_end() {
    let (receiver, url) = Receiver::start(0).await;
    let server = TestServer::start_with(|config| config.webhooks = vec![url]).await;
    let meeting = server
        .client()
        .create_meeting()
        .media_region("eu-west-1")
        .external_meeting_id("Zoë's recorded standup")
        .client_request_token("recorded-standup")
        .send()
        .await
        .expect("CreateMeeting")
        .meeting
        .expect("meeting");
    let meeting_id = meeting.meeting_id().expect("id").to_string();
    let pipelines = common::media_pipelines_client(&server.url());
    let meeting_arn = meeting.meeting_arn().expect("arn");
    let pipeline_id = common::start_capture(&pipelines, meeting_arn, "arn:aws:s3:::standups").await;
    let in_progress = |events: &[serde_json::Value]| {
        kinds(events, &meeting_id).contains(&"MediaPipelineInProgress".to_string())
    };
    for _ in 0..200 {
        if in_progress(&receiver.events()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pipelines
        .delete_media_capture_pipeline()
        .media_pipeline_id(&pipeline_id)
        .send()
        .await
        .expect("DeleteMediaCapturePipeline");
    // The capture joins as an attendee of its own, as AWS's does, and leaves when it stops.
    let events = receiver.wait_for(5).await;
    assert_eq!(
        kinds(&events, &meeting_id),
        [
            "MeetingStarted",
            "AttendeeAdded",
            "MediaPipelineInProgress",
            "MediaPipelineDeleted",
            "AttendeeDeleted"
        ]
    );
    let pipeline_attendee = format!("aws:MediaPipeline-{pipeline_id}");
    for attendee_event in [&events[1], &events[4]] {
        assert_eq!(
            attendee_event["detail"]["externalUserId"],
            pipeline_attendee.as_str()
        );
    }
    for event in events
        .iter()
        .filter(|e| e["detail-type"] != "Chime Meeting State Change")
    {
        assert_eq!(event["detail-type"], "Chime Media Pipeline State Change");
        assert_eq!(event["detail"]["mediaPipelineId"], pipeline_id.as_str());
        assert_eq!(
            event["detail"]["externalMeetingId"],
            "Zoë's recorded standup"
        );
        assert_eq!(event["detail"]["mediaRegion"], "eu-west-1");
    }
}
