//! Requests no SDK sends: bad signatures, broken JSON, huge bodies, bad query members. They go
//! through the raw client, and every answer must be a precise 4xx in the exact wire form.

mod common;

use std::time::{Duration, SystemTime};

use common::{Signing, TestServer, create_meeting_body};

const UNKNOWN_MEETING: &str = "0b6d8a6e-5f0c-4b4c-9a43-1a2b3c4d5e6f";

async fn meeting(server: &TestServer) -> String {
    let response = server
        .raw()
        .post("/meetings", &create_meeting_body("wire"))
        .await;
    assert_eq!(response.status, 200, "{response:?}");
    response.json()["Meeting"]["MeetingId"]
        .as_str()
        .expect("MeetingId")
        .to_string()
}

#[tokio::test]
async fn signatures_are_checked() {
    let server = TestServer::start().await;
    let raw = server.raw();
    let path = format!("/meetings/{UNKNOWN_MEETING}");

    let unsigned = raw.send("GET", &path, b"", Signing::Unsigned).await;
    assert!(
        unsigned
            .expect_error(401, "UnauthorizedException")
            .contains("Missing")
    );

    let wrong_secret = Signing::With {
        secret: "not-the-secret",
        region: "us-east-1",
        time: SystemTime::now(),
    };
    let bad = raw.send("GET", &path, b"", wrong_secret).await;
    assert!(
        bad.expect_error(401, "UnauthorizedException")
            .contains("signature")
    );

    let stale = Signing::With {
        secret: common::SECRET_ACCESS_KEY,
        region: "us-east-1",
        time: SystemTime::now() - Duration::from_secs(16 * 60),
    };
    let expired = raw.send("GET", &path, b"", stale).await;
    assert!(
        expired
            .expect_error(401, "UnauthorizedException")
            .contains("expired")
    );

    let fresh_enough = Signing::With {
        secret: common::SECRET_ACCESS_KEY,
        region: "ap-southeast-2",
        time: SystemTime::now() - Duration::from_secs(14 * 60),
    };
    let ok = raw.send("GET", &path, b"", fresh_enough).await;
    ok.expect_error(404, "NotFoundException");

    let garbage = raw
        .send_with(
            "GET",
            &path,
            b"",
            Signing::Unsigned,
            &[("authorization", "AWS4-HMAC-SHA256 nonsense")],
        )
        .await;
    garbage.expect_error(401, "UnauthorizedException");

    // A body changed after signing no longer matches the signed payload hash.
    let body = create_meeting_body("tamper");
    let url = format!("http://{}/meetings", server.addr);
    let headers = vec![
        ("host".to_string(), server.addr.to_string()),
        ("content-type".to_string(), "application/json".to_string()),
    ];
    let signed = common::sign_headers(
        "POST",
        &url,
        &headers,
        body.as_bytes(),
        common::SECRET_ACCESS_KEY,
        "us-east-1",
        SystemTime::now(),
    );
    let extra: Vec<(&str, &str)> = signed
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let tampered = body.replace("tamper", "tampex");
    let response = raw
        .send_with(
            "POST",
            "/meetings",
            tampered.as_bytes(),
            Signing::Unsigned,
            &extra,
        )
        .await;
    response.expect_error(401, "UnauthorizedException");

    // The legacy namespace names the same failure UnauthorizedClientException.
    let legacy = raw
        .send("GET", &format!("/legacy{path}"), b"", Signing::Unsigned)
        .await;
    legacy.expect_error(401, "UnauthorizedClientException");
}

#[tokio::test]
async fn errors_have_the_exact_wire_form() {
    let server = TestServer::start().await;
    let response = server
        .raw()
        .get(&format!("/meetings/{UNKNOWN_MEETING}"))
        .await;
    response.expect_error(404, "NotFoundException");
    assert_eq!(response.header("content-type"), Some("application/json"));
    let body = response.json();
    assert_eq!(body["Code"], "NotFound");
    let keys: Vec<&str> = body
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 3, "{body}");

    let success = server
        .raw()
        .post("/meetings", &create_meeting_body("ok"))
        .await;
    assert!(success.header("x-amzn-RequestId").is_some());
}

#[tokio::test]
async fn malformed_bodies_are_bad_requests() {
    let server = TestServer::start().await;
    let raw = server.raw();
    let id = meeting(&server).await;
    let attendees = format!("/meetings/{id}/attendees");

    let message = raw
        .post(&attendees, "{\"ExternalUserId\": ")
        .await
        .expect_error(400, "BadRequestException");
    assert!(message.contains("not valid JSON"), "{message}");

    let message = raw
        .post(&attendees, "{\"ExternalUserId\": 42}")
        .await
        .expect_error(400, "BadRequestException");
    assert!(message.contains("ExternalUserId"), "{message}");

    let message = raw
        .post(&attendees, "[\"x\"]")
        .await
        .expect_error(400, "BadRequestException");
    assert!(message.contains("JSON object"), "{message}");

    let message = raw
        .post(&attendees, "")
        .await
        .expect_error(400, "BadRequestException");
    assert!(message.contains("ExternalUserId is required"), "{message}");

    let message = raw
        .post(&attendees, "{\"ExternalUserId\": \"ok-user\", \"Capabilities\": {\"Audio\": \"Loud\", \"Video\": \"None\", \"Content\": \"None\"}}")
        .await
        .expect_error(400, "BadRequestException");
    assert!(message.contains("Capabilities.Audio"), "{message}");

    let message = raw
        .post(&format!("{attendees}?operation=explode"), "{}")
        .await
        .expect_error(400, "BadRequestException");
    assert!(message.contains("explode"), "{message}");

    let message = raw
        .get("/nowhere")
        .await
        .expect_error(400, "BadRequestException");
    assert!(message.contains("No operation"), "{message}");

    let message = raw
        .post("/meetings", "{\"MediaRegion\": \"us-east-1\", \"ExternalMeetingId\": \"x1\", \"ClientRequestToken\": \"has space\"}")
        .await
        .expect_error(400, "BadRequestException");
    assert!(message.contains("ClientRequestToken"), "{message}");

    let message = raw
        .post(
            "/meetings",
            "{\"MediaRegion\": \"us-east-1\", \"ExternalMeetingId\": \"x1\", \"ClientRequestToken\": \"abc\", \"TenantIds\": [\"aaaa1\"]}",
        )
        .await
        .expect_error(400, "BadRequestException");
    assert!(message.contains("TenantIds[0]"), "{message}");

    let message = raw
        .post(
            "/meetings",
            "{\"MediaRegion\": \"us-east-1\", \"ExternalMeetingId\": \"x1\", \"ClientRequestToken\": \"abc\", \"MeetingFeatures\": {\"Attendee\": {\"MaxCount\": 251}}}",
        )
        .await
        .expect_error(400, "BadRequestException");
    assert!(message.contains("MaxCount"), "{message}");
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let server = TestServer::start_with(|c| c.max_body_bytes = 64 * 1024).await;
    let big = format!("{{\"ExternalUserId\": \"{}\"}}", "a".repeat(100 * 1024));
    let response = server
        .raw()
        .post(&format!("/meetings/{UNKNOWN_MEETING}/attendees"), &big)
        .await;
    let message = response.expect_error(400, "BadRequestException");
    assert!(message.contains("larger than the limit"), "{message}");
    // The server is still healthy afterwards.
    let ok = server
        .raw()
        .post("/meetings", &create_meeting_body("after"))
        .await;
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn list_query_members_are_validated() {
    let server = TestServer::start().await;
    let raw = server.raw();
    let id = meeting(&server).await;
    for bad in ["0", "101", "ten", "-1", "1.5"] {
        let message = raw
            .get(&format!("/meetings/{id}/attendees?max-results={bad}"))
            .await
            .expect_error(400, "BadRequestException");
        assert!(message.contains("MaxResults"), "{bad}: {message}");
    }
    let message = raw
        .get(&format!("/meetings/{id}/attendees?next-token=Zm9v"))
        .await
        .expect_error(400, "BadRequestException");
    assert!(message.contains("NextToken"), "{message}");
    let long = "a".repeat(5000);
    raw.get(&format!("/meetings/{id}/attendees?next-token={long}"))
        .await
        .expect_error(400, "BadRequestException");
    let message = raw
        .get("/meetings/not-a-guid/attendees")
        .await
        .expect_error(400, "BadRequestException");
    assert!(message.contains("MeetingId"), "{message}");
    raw.get(&format!("/meetings/{UNKNOWN_MEETING}/attendees"))
        .await
        .expect_error(404, "NotFoundException");
    let empty = raw.get(&format!("/meetings/{id}/attendees")).await;
    assert_eq!(empty.status, 200);
    assert_eq!(empty.json(), serde_json::json!({"Attendees": []}));
}

#[tokio::test]
async fn errors_stay_within_each_operations_model() {
    let server = TestServer::start().await;
    let raw = server.raw();
    // TagResource on an ARN of no meeting: ResourceNotFoundException carries ResourceName.
    let arn = format!(
        "arn:aws:chime:us-east-1:{}:meeting/{UNKNOWN_MEETING}",
        common::ACCOUNT_ID
    );
    let body =
        serde_json::json!({"ResourceARN": arn, "Tags": [{"Key": "a", "Value": "b"}]}).to_string();
    let response = raw.post("/tags?operation=tag-resource", &body).await;
    response.expect_error(404, "ResourceNotFoundException");
    assert_eq!(response.json()["ResourceName"], arn.as_str());
    // Another account's ARN is not found either: accounts are isolated.
    let foreign = arn.replace(common::ACCOUNT_ID, "999999999999");
    raw.get(&format!(
        "/tags?arn={}",
        foreign.replace(':', "%3A").replace('/', "%2F")
    ))
    .await
    .expect_error(404, "ResourceNotFoundException");
    // The legacy API has no ResourceNotFoundException: it says NotFoundException.
    raw.post("/legacy/tags?operation=tag-resource", &body)
        .await
        .expect_error(404, "NotFoundException");
}

/// The ±15 minute window is judged by the real clock: moving the server's (manual) clock, as
/// tests of meeting lifecycles do, never breaks signed clients.
#[tokio::test]
async fn signatures_are_judged_by_the_real_clock_not_the_server_clock() {
    use std::sync::Arc;

    let dir = tempfile::tempdir().expect("temp dir");
    let config = common::config_for(dir.path());
    let signed_at = SystemTime::now();
    let now = signed_at
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs() as i64;
    let clock = Arc::new(carillon::clock::ManualClock::new(now));
    let running = carillon::server::start_with_clock(&config, clock.clone())
        .await
        .expect("starts");
    let raw = common::Raw {
        addr: running.boot.addr,
    };
    let signing = Signing::With {
        secret: common::SECRET_ACCESS_KEY,
        region: "us-east-1",
        time: signed_at,
    };
    let path = format!("/meetings/{UNKNOWN_MEETING}");
    raw.send("GET", &path, b"", signing)
        .await
        .expect_error(404, "NotFoundException");
    clock.advance(24 * 60 * 60);
    raw.send("GET", &path, b"", signing)
        .await
        .expect_error(404, "NotFoundException");
    let stale = Signing::With {
        secret: common::SECRET_ACCESS_KEY,
        region: "us-east-1",
        time: signed_at - std::time::Duration::from_secs(16 * 60),
    };
    let message = raw
        .send("GET", &path, b"", stale)
        .await
        .expect_error(401, "UnauthorizedException");
    assert!(message.contains("expired"), "{message}");
    running.stop().await.expect("stops");
}
