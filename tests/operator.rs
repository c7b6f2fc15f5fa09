//! The admin listener: Prometheus metrics and readiness apart from the API port, open on
//! loopback, behind a bearer token elsewhere.

mod common;

use common::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: std::net::SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let auth = token
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\n{auth}connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn metrics_and_readiness_on_the_admin_listener() {
    let server = TestServer::start_with(|config| config.admin_listen = "127.0.0.1:0".into()).await;
    let admin = server
        .running
        .as_ref()
        .and_then(|r| r.boot.admin_addr)
        .expect("the admin listener runs");
    let client = server.client();
    let id = common::create_meeting_id(&client, "metrics").await;
    let missing = client
        .get_meeting()
        .meeting_id(uuid::Uuid::new_v4().to_string())
        .send()
        .await;
    assert!(missing.is_err());
    let zoe = client
        .create_attendee()
        .meeting_id(&id)
        .external_user_id("Zoë")
        .send()
        .await
        .expect("attendee")
        .attendee
        .and_then(|a| a.attendee_id)
        .expect("AttendeeId");
    // The first read fills each cache, the second is served from it.
    for _ in 0..2 {
        client
            .list_attendees()
            .meeting_id(&id)
            .send()
            .await
            .expect("ListAttendees");
        client
            .get_attendee()
            .meeting_id(&id)
            .attendee_id(&zoe)
            .send()
            .await
            .expect("GetAttendee");
    }

    let (status, body) = get(admin, "/metrics", None).await;
    assert_eq!(status, 200);
    let has = |needle: &str| {
        body.lines()
            .any(|line| line.starts_with("carillon_api_requests_total") && line.contains(needle))
    };
    assert!(has(r#"operation="CreateMeeting""#), "{body}");
    assert!(has(r#"status="404""#), "{body}");
    assert!(
        body.contains("carillon_api_request_duration_seconds_bucket"),
        "{body}"
    );
    for cache in ["list", "attendee"] {
        for result in ["hit", "miss"] {
            let line = format!(r#"carillon_{cache}_cache_total{{result="{result}"}}"#);
            assert!(body.contains(&line), "{line} in {body}");
        }
    }
    for gauge in [
        "carillon_signaling_sessions",
        "carillon_live_meetings",
        "carillon_live_attendees",
        "carillon_store_duration_seconds_bucket",
    ] {
        assert!(body.contains(gauge), "{gauge} in {body}");
    }
    for media in [
        "carillon_media_peers",
        "carillon_media_datagrams_received_total",
        "carillon_mixer_ticks_total",
        "carillon_video_frames_forwarded_total",
        "carillon_video_keyframe_requests_total",
    ] {
        assert!(body.contains(media), "{media} in {body}");
    }
    assert_eq!(get(admin, "/readyz", None).await, (200, "ready\n".into()));

    // The admin page's data names the node hosting each meeting, and the live nodes.
    let (status, body) = get(admin, "/admin/api/meetings", None).await;
    assert_eq!(status, 200, "{body}");
    let page: serde_json::Value = serde_json::from_str(&body).expect("json");
    let own = server.url();
    assert_eq!(page["this_node"].as_str(), Some(own.as_str()), "{page}");
    assert_eq!(page["nodes"], serde_json::json!([own]), "{page}");
    let listed = page["meetings"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["meeting_id"] == id.as_str()))
        .expect("the meeting is listed");
    assert_eq!(listed["host"].as_str(), Some(own.as_str()), "{listed}");
}

#[tokio::test]
async fn a_token_guards_the_admin_listener_and_is_required_beyond_loopback() {
    let server = TestServer::start_with(|config| {
        config.admin_listen = "127.0.0.1:0".into();
        config.admin_token = Some("operator-token".into());
    })
    .await;
    let admin = server
        .running
        .as_ref()
        .and_then(|r| r.boot.admin_addr)
        .expect("the admin listener runs");
    assert_eq!(get(admin, "/metrics", None).await.0, 401);
    assert_eq!(get(admin, "/metrics", Some("wrong")).await.0, 401);
    assert_eq!(get(admin, "/readyz", Some("operator-token")).await.0, 200);

    let dir = tempfile::tempdir().expect("dir");
    let mut config = common::config_for(dir.path());
    config.admin_listen = "0.0.0.0:0".into();
    let refused = carillon::server::start(&config).await;
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("--admin-token"), "{message}");
}

/// The demo page ships inside the binary: /demo/ works right after `cargo run -- serve`.
#[tokio::test]
async fn the_demo_page_is_built_into_the_binary() {
    let server = TestServer::start().await;
    let raw = server.raw();
    let page = raw
        .send("GET", "/demo/", b"", common::Signing::Unsigned)
        .await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page.body.contains("app.js"), "{}", page.body);
    let script = raw
        .send("GET", "/demo/app.js", b"", common::Signing::Unsigned)
        .await;
    assert_eq!(script.status, 200);
    assert!(
        script.body.len() > 100_000,
        "the bundled amazon-chime-sdk-js"
    );
    let missing = raw
        .send("GET", "/demo/nothing.js", b"", common::Signing::Unsigned)
        .await;
    assert_eq!(missing.status, 404);
}
