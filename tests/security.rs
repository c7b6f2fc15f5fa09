//! Accounts, permissions, throttling, presigned requests, fault injection and the in-flight limit,
//! through the official Rust SDK and a hand-signing raw client, against a real server whose keys
//! file gives two teams their own keys.

mod common;

use std::time::{Duration, SystemTime};

use aws_sdk_chimesdkmeetings as meetings;
use common::{RawResponse, Signing, TestServer, code, sdk_client_as};
use meetings::error::ProvideErrorMetadata;

const ALICE: (&str, &str) = ("AKIAEXAMPLEALICE0001", "alice-secret-0001");
const BOB: (&str, &str) = ("AKIAEXAMPLEBOBBY0002", "bob-secret-000002");
const READER: (&str, &str) = ("AKIAEXAMPLEREADER003", "reader-secret-003");
const SLOW: (&str, &str) = ("AKIAEXAMPLESLOWKEY04", "slow-secret-00004");
const ALICE_ACCOUNT: &str = "111111111111";
const BOB_ACCOUNT: &str = "222222222222";

const KEYS: &str = r#"
[[key]]
access_key_id = "AKIAEXAMPLEALICE0001"
secret_access_key = "alice-secret-0001"
account_id = "111111111111"
actions = ["chime:*"]

[[key]]
access_key_id = "AKIAEXAMPLEBOBBY0002"
secret_access_key = "bob-secret-000002"
account_id = "222222222222"
actions = ["chime:*"]

[[key]]
access_key_id = "AKIAEXAMPLEREADER003"
secret_access_key = "reader-secret-003"
account_id = "111111111111"
actions = ["chime:Get*", "chime:List*"]

[[key]]
access_key_id = "AKIAEXAMPLESLOWKEY04"
secret_access_key = "slow-secret-00004"
account_id = "111111111111"
actions = ["chime:*"]
rate = 10
burst = 3
"#;

async fn start_with_keys(adjust: impl FnOnce(&mut carillon::config::Config)) -> TestServer {
    let keys_dir = tempfile::tempdir().expect("temp dir");
    let keys_file = keys_dir.keep().join("keys.toml");
    std::fs::write(&keys_file, KEYS).expect("keys file");
    TestServer::start_with(|config| {
        config.keys_file = Some(keys_file);
        adjust(config);
    })
    .await
}

fn client(server: &TestServer, key: (&str, &str)) -> meetings::Client {
    sdk_client_as(&server.url(), "us-east-1", key.0, key.1, false)
}

async fn raw_as(
    server: &TestServer,
    key: (&str, &str),
    method: &str,
    path: &str,
    body: &str,
) -> RawResponse {
    server
        .raw()
        .send(
            method,
            path,
            body.as_bytes(),
            Signing::Key {
                id: key.0,
                secret: key.1,
            },
        )
        .await
}

#[tokio::test]
async fn two_teams_cannot_see_or_touch_each_others_meetings() {
    let server = start_with_keys(|_| {}).await;
    let (alice, bob) = (client(&server, ALICE), client(&server, BOB));
    let meeting = common::create_meeting(&alice, "alice-standup").await;
    let meeting_id = meeting.meeting_id.clone().expect("id");
    assert!(
        meeting
            .meeting_arn()
            .expect("arn")
            .contains(&format!(":{ALICE_ACCOUNT}:")),
        "the meeting lives in alice's account"
    );
    let attendee = alice
        .create_attendee()
        .meeting_id(&meeting_id)
        .external_user_id("José")
        .send()
        .await
        .expect("CreateAttendee")
        .attendee
        .expect("attendee");
    let attendee_id = attendee.attendee_id().expect("id");
    // Alice's reads warm the GetAttendee and ListAttendees caches: a cached answer is no way in.
    for _ in 0..2 {
        alice
            .get_attendee()
            .meeting_id(&meeting_id)
            .attendee_id(attendee_id)
            .send()
            .await
            .expect("alice's GetAttendee");
        alice
            .list_attendees()
            .meeting_id(&meeting_id)
            .send()
            .await
            .expect("alice's ListAttendees");
    }

    // Every operation of bob's on alice's meeting is NotFound, as if it did not exist.
    let get = bob.get_meeting().meeting_id(&meeting_id).send().await;
    assert_eq!(code(get), "NotFoundException");
    let get = bob
        .get_attendee()
        .meeting_id(&meeting_id)
        .attendee_id(attendee_id)
        .send()
        .await;
    assert_eq!(code(get), "NotFoundException");
    let list = bob.list_attendees().meeting_id(&meeting_id).send().await;
    assert_eq!(code(list), "NotFoundException");
    let add = bob
        .create_attendee()
        .meeting_id(&meeting_id)
        .external_user_id("intruder")
        .send()
        .await;
    assert_eq!(code(add), "NotFoundException");
    let delete = bob
        .delete_attendee()
        .meeting_id(&meeting_id)
        .attendee_id(attendee_id)
        .send()
        .await;
    assert_eq!(code(delete), "NotFoundException");
    // DeleteMeeting is idempotent: another account's meeting is "already ended" to bob, who
    // gets 204 and changes nothing (checked below: alice's meeting and attendee are intact).
    let delete = bob.delete_meeting().meeting_id(&meeting_id).send().await;
    assert_eq!(code(delete), "ok");
    let tag = bob
        .tag_resource()
        .resource_arn(meeting.meeting_arn().expect("arn"))
        .tags(
            meetings::types::Tag::builder()
                .key("team")
                .value("bob")
                .build()
                .expect("tag"),
        )
        .send()
        .await;
    assert_eq!(code(tag), "ResourceNotFoundException");

    // The legacy namespace isolates the same way, ListMeetings included.
    let legacy = raw_as(&server, BOB, "GET", "/legacy/meetings", "").await;
    assert_eq!(legacy.status, 200, "{legacy:?}");
    assert!(
        !legacy.body.contains(&meeting_id),
        "bob lists no alice meeting"
    );
    let legacy = raw_as(
        &server,
        BOB,
        "GET",
        &format!("/legacy/meetings/{meeting_id}"),
        "",
    )
    .await;
    legacy.expect_error(404, "NotFoundException");
    let mine = raw_as(&server, ALICE, "GET", "/legacy/meetings", "").await;
    assert!(mine.body.contains(&meeting_id), "alice lists her meeting");

    // Alice's attendee is untouched by all of it.
    let still = alice
        .get_attendee()
        .meeting_id(&meeting_id)
        .attendee_id(attendee_id)
        .send()
        .await
        .expect("still there");
    assert_eq!(
        still.attendee().and_then(|a| a.external_user_id()),
        Some("José")
    );

    // ClientRequestToken idempotency is per account: the same token makes two meetings.
    let token = "shared-client-request-token";
    let in_alice = alice
        .create_meeting()
        .media_region("us-east-1")
        .external_meeting_id("same-token")
        .client_request_token(token)
        .send()
        .await
        .expect("alice creates");
    let in_bob = bob
        .create_meeting()
        .media_region("us-east-1")
        .external_meeting_id("same-token")
        .client_request_token(token)
        .send()
        .await
        .expect("bob creates");
    let id = |m: &meetings::operation::create_meeting::CreateMeetingOutput| {
        m.meeting()
            .and_then(|m| m.meeting_id())
            .unwrap_or_default()
            .to_string()
    };
    assert_ne!(id(&in_alice), id(&in_bob));
    assert!(
        in_bob
            .meeting()
            .and_then(|m| m.meeting_arn())
            .is_some_and(|arn| arn.contains(BOB_ACCOUNT))
    );
}

#[tokio::test]
async fn a_read_only_key_cannot_write_and_no_team_key_is_an_admin() {
    let server = start_with_keys(|_| {}).await;
    let (alice, reader) = (client(&server, ALICE), client(&server, READER));
    let meeting_id = common::create_meeting_id(&alice, "read-only").await;

    reader
        .get_meeting()
        .meeting_id(&meeting_id)
        .send()
        .await
        .expect("a reader reads its account's meetings");
    reader
        .list_attendees()
        .meeting_id(&meeting_id)
        .send()
        .await
        .expect("and lists their attendees");
    let write = reader
        .create_attendee()
        .meeting_id(&meeting_id)
        .external_user_id("Zoë")
        .send()
        .await;
    let error = write.expect_err("a reader cannot write");
    let service = error.as_service_error().expect("a modelled error");
    assert_eq!(service.code(), Some("ForbiddenException"));
    assert!(
        service
            .message()
            .is_some_and(|m| m.contains("chime:CreateAttendee")),
        "the message names the action: {service:?}"
    );

    // The legacy namespace says the same.
    let legacy = raw_as(
        &server,
        READER,
        "POST",
        &format!("/legacy/meetings/{meeting_id}/attendees"),
        r#"{"ExternalUserId":"Zoë"}"#,
    )
    .await;
    let message = legacy.expect_error(403, "ForbiddenException");
    assert!(message.contains("chime:CreateAttendee"), "{message}");

    // Nothing was written.
    let listed = alice
        .list_attendees()
        .meeting_id(&meeting_id)
        .send()
        .await
        .expect("list");
    assert!(listed.attendees().is_empty());

    // The admin extension needs carillon:Admin, which chime:* does not grant.
    let admin = raw_as(&server, ALICE, "GET", "/_carillon/faults", "").await;
    let message = admin.expect_error(403, "ForbiddenException");
    assert!(message.contains("carillon:Admin"), "{message}");
    let root = server.raw().get("/_carillon/faults").await;
    assert_eq!(root.status, 200, "the root key is an admin: {root:?}");
}

#[tokio::test]
async fn a_burst_over_the_rate_is_throttled_and_a_retrying_client_gets_through() {
    let server = start_with_keys(|_| {}).await;
    let slow = client(&server, SLOW);
    let meeting_id = common::create_meeting_id(&slow, "throttled").await;
    // The bucket holds 3 and refills at 10 per second; one went on CreateMeeting.
    let mut outcomes = Vec::new();
    for _ in 0..6 {
        outcomes.push(code(
            slow.get_meeting().meeting_id(&meeting_id).send().await,
        ));
    }
    assert!(
        outcomes.iter().any(|c| c == "ThrottlingException"),
        "{outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .all(|c| c == "ok" || c == "ThrottlingException")
    );

    // The legacy namespace answers 429 ThrottledClientException.
    let mut legacy = Vec::new();
    for _ in 0..6 {
        legacy.push(
            raw_as(
                &server,
                SLOW,
                "GET",
                &format!("/legacy/meetings/{meeting_id}"),
                "",
            )
            .await,
        );
    }
    let throttled = legacy
        .iter()
        .find(|r| r.status == 429)
        .expect("a legacy call is throttled");
    throttled.expect_error(429, "ThrottledClientException");

    // Other keys have their own buckets.
    client(&server, ALICE)
        .get_meeting()
        .meeting_id(&meeting_id)
        .send()
        .await
        .expect("alice is not throttled by the slow key's burst");

    // The SDK's standard retries (backoff on ThrottlingException) get every call through.
    let retrying = sdk_client_as(&server.url(), "us-east-1", SLOW.0, SLOW.1, true);
    for _ in 0..8 {
        retrying
            .get_meeting()
            .meeting_id(&meeting_id)
            .send()
            .await
            .expect("a retrying client succeeds");
    }
}

#[tokio::test]
async fn names_real_people_have_just_work() {
    let server = start_with_keys(|_| {}).await;
    let alice = client(&server, ALICE);
    let meeting = alice
        .create_meeting()
        .media_region("eu-central-1")
        .external_meeting_id("Réunion d'équipe")
        .meeting_host_id("Zoë")
        .send()
        .await
        .expect("accented meeting names")
        .meeting
        .expect("meeting");
    let meeting_id = meeting.meeting_id().expect("id");
    for name in ["José", "Zoë", "«Ana»", "Renée", "ab\u{3000}c", "Ñoño Pérez"] {
        let created = alice
            .create_attendee()
            .meeting_id(meeting_id)
            .external_user_id(name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(
            created.attendee().and_then(|a| a.external_user_id()),
            Some(name)
        );
    }
    // The legacy namespace too.
    let legacy = raw_as(
        &server,
        ALICE,
        "POST",
        &format!("/legacy/meetings/{meeting_id}/attendees"),
        r#"{"ExternalUserId":"Renée «R»"}"#,
    )
    .await;
    assert_eq!(legacy.status, 201, "{legacy:?}");

    // And the demo's unauthenticated join endpoint (on by default on loopback).
    let demo = server
        .raw()
        .send(
            "POST",
            "/demo/api/join",
            r#"{"meeting":"room-1","name":"José"}"#.as_bytes(),
            Signing::Unsigned,
        )
        .await;
    assert_eq!(demo.status, 200, "{demo:?}");
    assert_eq!(demo.json()["Attendee"]["ExternalUserId"], "José");
}

/// Presigns with the `aws-sigv4` crate, as the SDKs' presigners do.
fn presigned_path(server: &TestServer, path: &str, time: SystemTime, expires: Duration) -> String {
    use aws_sigv4::http_request::{
        SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
    };
    use aws_sigv4::sign::v4;
    let identity = aws_credential_types::Credentials::new(ALICE.0, ALICE.1, None, None, "t").into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(expires);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("chime")
        .time(time)
        .settings(settings)
        .build()
        .expect("params")
        .into();
    let url = format!("{}{path}", server.url());
    let host = server.addr.to_string();
    let signable = SignableRequest::new(
        "GET",
        &url,
        [("host", host.as_str())].into_iter(),
        SignableBody::Bytes(b""),
    )
    .expect("signable");
    let (instructions, _) = sign(signable, &params).expect("signs").into_parts();
    let query: Vec<String> = instructions
        .params()
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
            )
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

#[tokio::test]
async fn presigned_requests_verify_until_they_expire() {
    let server = start_with_keys(|_| {}).await;
    let meeting_id = common::create_meeting_id(&client(&server, ALICE), "presigned").await;
    let path = format!("/meetings/{meeting_id}");

    let fresh = presigned_path(&server, &path, SystemTime::now(), Duration::from_secs(300));
    let ok = server
        .raw()
        .send("GET", &fresh, b"", Signing::Unsigned)
        .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.json()["Meeting"]["MeetingId"], meeting_id.as_str());

    let old = SystemTime::now() - Duration::from_secs(120);
    let expired = presigned_path(&server, &path, old, Duration::from_secs(60));
    let refused = server
        .raw()
        .send("GET", &expired, b"", Signing::Unsigned)
        .await;
    let message = refused.expect_error(401, "UnauthorizedException");
    assert!(message.contains("expired"), "{message}");

    let tampered = fresh.replace(&meeting_id, &uuid::Uuid::new_v4().to_string());
    let refused = server
        .raw()
        .send("GET", &tampered, b"", Signing::Unsigned)
        .await;
    let message = refused.expect_error(401, "UnauthorizedException");
    assert!(message.starts_with("The request signature we calculated does not match"));
    let signature = fresh.split("X-Amz-Signature=").nth(1).expect("a signature");
    assert!(!refused.body.contains(signature));

    let week_plus = presigned_path(
        &server,
        &path,
        SystemTime::now(),
        Duration::from_secs(604_801),
    );
    let refused = server
        .raw()
        .send("GET", &week_plus, b"", Signing::Unsigned)
        .await;
    assert!(
        refused
            .expect_error(401, "UnauthorizedException")
            .contains("X-Amz-Expires")
    );
}

#[tokio::test]
async fn temporary_credentials_are_refused_clearly() {
    let server = start_with_keys(|_| {}).await;
    let response = server
        .raw()
        .send_with(
            "GET",
            "/meetings",
            b"",
            Signing::valid(),
            &[("x-amz-security-token", "FQoGZXIvYXdzEXAMPLE")],
        )
        .await;
    let message = response.expect_error(401, "UnauthorizedException");
    assert!(message.contains("x-amz-security-token"), "{message}");
}

#[tokio::test]
async fn keys_created_by_the_cli_load_on_reload_and_a_broken_file_keeps_the_old_keys() {
    let server = start_with_keys(|_| {}).await;
    let keys_file = server.config.keys_file.clone().expect("keys file");
    let before = std::fs::read_to_string(&keys_file).expect("read");
    carillon::keys_cli::create(&carillon::keys_cli::CreateKey {
        keys_file: keys_file.clone(),
        account: "333333333333".into(),
        actions: vec!["chime:CreateMeeting".into(), "chime:GetMeeting".into()],
        rate: None,
        burst: None,
    })
    .expect("key created");
    let after = std::fs::read_to_string(&keys_file).expect("read");
    assert!(
        after.starts_with(&before),
        "the file is appended to, not rewritten"
    );
    let keys = carillon::auth::keys::parse_keys_file(&after).expect("still loads");
    let new = keys.last().expect("the new key");

    let carol = sdk_client_as(
        &server.url(),
        "us-east-1",
        &new.access_key_id,
        &new.secret_access_key,
        false,
    );
    let before_reload = carol
        .create_meeting()
        .media_region("us-east-1")
        .external_meeting_id("carol")
        .send()
        .await;
    assert_eq!(code(before_reload), "UnauthorizedException");

    let running = server.running.as_ref().expect("running");
    assert_eq!(
        running.reload_keys().expect("reloads"),
        6,
        "root + 5 file keys"
    );
    let meeting = carol
        .create_meeting()
        .media_region("us-east-1")
        .external_meeting_id("carol")
        .send()
        .await
        .expect("the new key works after the reload")
        .meeting
        .expect("meeting");
    assert!(
        meeting
            .meeting_arn()
            .is_some_and(|a| a.contains(":333333333333:"))
    );
    let delete = carol
        .delete_meeting()
        .meeting_id(meeting.meeting_id().expect("id"))
        .send()
        .await;
    assert_eq!(
        code(delete),
        "ForbiddenException",
        "only the listed actions"
    );

    std::fs::write(&keys_file, "[[key]]\naccess_key_id = \"broken").expect("write");
    assert!(running.reload_keys().is_err());
    carol
        .get_meeting()
        .meeting_id(meeting.meeting_id().expect("id"))
        .send()
        .await
        .expect("a broken file keeps the keys that were loaded");
}

#[tokio::test]
async fn faults_fail_chosen_operations_for_the_next_calls() {
    let server = start_with_keys(|_| {}).await;
    let alice = client(&server, ALICE);
    let meeting_id = common::create_meeting_id(&alice, "faults").await;

    let armed = server
        .raw()
        .post(
            "/_carillon/faults",
            r#"{"operation":"GetMeeting","error":"ServiceUnavailableException","count":2}"#,
        )
        .await;
    assert_eq!(armed.status, 201, "{armed:?}");
    for _ in 0..2 {
        let failed = alice.get_meeting().meeting_id(&meeting_id).send().await;
        assert_eq!(code(failed), "ServiceUnavailableException");
    }
    alice
        .get_meeting()
        .meeting_id(&meeting_id)
        .send()
        .await
        .expect("the fault is spent after two calls");

    // A retrying client rides over a counted fault.
    server
        .raw()
        .post(
            "/_carillon/faults",
            r#"{"operation":"CreateAttendee","error":"ThrottlingException","count":2}"#,
        )
        .await;
    let retrying = sdk_client_as(&server.url(), "us-east-1", ALICE.0, ALICE.1, true);
    retrying
        .create_attendee()
        .meeting_id(&meeting_id)
        .external_user_id("Zoë")
        .send()
        .await
        .expect("the third attempt succeeds");

    // Only modelled errors are accepted, with a message that says why.
    let refused = server
        .raw()
        .post(
            "/_carillon/faults",
            r#"{"operation":"GetMeeting","error":"ConflictException"}"#,
        )
        .await;
    assert!(
        refused
            .expect_error(400, "BadRequestException")
            .contains("not a modelled error")
    );

    let listed = server.raw().get("/_carillon/faults").await;
    assert_eq!(listed.json()["faults"].as_array().map(Vec::len), Some(0));
    let cleared = server.raw().delete("/_carillon/faults").await;
    assert_eq!(cleared.status, 204);
}

#[tokio::test]
async fn a_request_past_its_deadline_is_answered_503_and_commits_nothing() {
    let server = start_with_keys(|config| config.request_timeout = 1).await;
    let alice = client(&server, ALICE);
    let meeting_id = common::create_meeting_id(&alice, "deadline").await;
    let armed = server
        .raw()
        .post(
            "/_carillon/faults",
            r#"{"operation":"CreateAttendee","latency_ms":1500}"#,
        )
        .await;
    assert_eq!(armed.status, 201);
    let late = alice
        .create_attendee()
        .meeting_id(&meeting_id)
        .external_user_id("late")
        .send()
        .await;
    assert_eq!(code(late), "ServiceUnavailableException");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let listed = alice
        .list_attendees()
        .meeting_id(&meeting_id)
        .send()
        .await
        .expect("list");
    assert!(
        listed.attendees().is_empty(),
        "the abandoned create left nothing"
    );
}

#[tokio::test]
async fn past_the_in_flight_limit_the_server_sheds_at_once_with_retry_after() {
    let server = start_with_keys(|config| config.max_inflight = 1).await;
    let armed = server
        .raw()
        .post(
            "/_carillon/faults",
            r#"{"operation":"ListMeetings","latency_ms":700}"#,
        )
        .await;
    assert_eq!(armed.status, 201);
    let raw = server.raw();
    let (first, second) = tokio::join!(raw.get("/legacy/meetings"), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        raw.get("/legacy/meetings").await
    });
    let statuses = [first.status, second.status];
    assert!(statuses.contains(&200), "{statuses:?}");
    let shed = [first, second]
        .into_iter()
        .find(|r| r.status == 503)
        .expect("one request is shed");
    shed.expect_error(503, "ServiceUnavailableException");
    assert_eq!(shed.header("Retry-After"), Some("1"));
}
