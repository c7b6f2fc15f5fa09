//! The legacy `chime` meeting API at /legacy. No current SDK can call it, so these tests use the
//! raw client, signing with the `aws-sigv4` crate exactly as boto3 1.37.1 signs.

mod common;

use std::collections::BTreeSet;

use common::TestServer;
use serde_json::json;

async fn legacy_meeting(server: &TestServer) -> String {
    let response = server
        .raw()
        .post(
            "/legacy/meetings",
            &json!({"ClientRequestToken": uuid::Uuid::new_v4().to_string()}).to_string(),
        )
        .await;
    assert_eq!(response.status, 201, "{response:?}");
    response.json()["Meeting"]["MeetingId"]
        .as_str()
        .expect("MeetingId")
        .to_string()
}

fn keys(value: &serde_json::Value) -> BTreeSet<String> {
    value.as_object().expect("object").keys().cloned().collect()
}

#[tokio::test]
async fn meetings_have_the_legacy_shape_and_status() {
    let server = TestServer::start().await;
    let raw = server.raw();
    let response = raw
        .post(
            "/legacy/meetings",
            &json!({"ClientRequestToken": "legacy-token-1", "ExternalMeetingId": "old"})
                .to_string(),
        )
        .await;
    assert_eq!(response.status, 201);
    let meeting = &response.json()["Meeting"];
    assert_eq!(
        keys(meeting),
        [
            "ExternalMeetingId",
            "MediaPlacement",
            "MediaRegion",
            "MeetingId"
        ]
        .map(String::from)
        .into()
    );
    assert_eq!(
        meeting["MediaRegion"], "us-east-1",
        "the documented default"
    );
    let id = meeting["MeetingId"].as_str().expect("id");

    // Shared data: the same meeting through chime-sdk-meetings.
    let modern = raw.get(&format!("/meetings/{id}")).await;
    assert_eq!(modern.status, 200);
    assert!(modern.json()["Meeting"]["MeetingArn"].is_string());

    let got = raw.get(&format!("/legacy/meetings/{id}")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["Meeting"]["MeetingId"], id);

    let deleted = raw.delete(&format!("/legacy/meetings/{id}")).await;
    assert_eq!(deleted.status, 204);
    assert!(deleted.body.is_empty());
    raw.get(&format!("/legacy/meetings/{id}"))
        .await
        .expect_error(404, "NotFoundException");
}

#[tokio::test]
async fn list_attendees_is_exact() {
    let server = TestServer::start().await;
    let raw = server.raw();
    let id = legacy_meeting(&server).await;
    let mut created = BTreeSet::new();
    for i in 0..120 {
        let response = raw
            .post(
                &format!("/legacy/meetings/{id}/attendees"),
                &json!({"ExternalUserId": format!("user-{i}")}).to_string(),
            )
            .await;
        assert_eq!(response.status, 201, "{response:?}");
        let attendee = &response.json()["Attendee"];
        assert_eq!(
            keys(attendee),
            ["AttendeeId", "ExternalUserId", "JoinToken"]
                .map(String::from)
                .into()
        );
        created.insert(attendee["AttendeeId"].as_str().expect("id").to_string());
    }

    // Default page: the legacy maximum of 99, then the rest with no NextToken.
    let first = raw.get(&format!("/legacy/meetings/{id}/attendees")).await;
    assert_eq!(first.status, 200);
    let body = first.json();
    assert_eq!(
        keys(&body),
        ["Attendees", "NextToken"].map(String::from).into()
    );
    assert_eq!(body["Attendees"].as_array().expect("list").len(), 99);
    for attendee in body["Attendees"].as_array().expect("list") {
        assert_eq!(
            keys(attendee),
            ["AttendeeId", "ExternalUserId", "JoinToken"]
                .map(String::from)
                .into()
        );
    }
    let token = body["NextToken"].as_str().expect("token");
    let second = raw
        .get(&format!(
            "/legacy/meetings/{id}/attendees?max-results=99&next-token={token}"
        ))
        .await
        .json();
    assert_eq!(second["Attendees"].as_array().expect("list").len(), 21);
    assert!(
        second.get("NextToken").is_none(),
        "no NextToken on the last page"
    );
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for page in [&body, &second] {
        for a in page["Attendees"].as_array().expect("list") {
            assert!(seen.insert(a["AttendeeId"].as_str().expect("id").to_string()));
        }
    }
    assert_eq!(seen, created);

    // The legacy range is 1..99, and the seven documented errors keep their legacy names.
    raw.get(&format!("/legacy/meetings/{id}/attendees?max-results=100"))
        .await
        .expect_error(400, "BadRequestException");
    raw.get(&format!(
        "/legacy/meetings/{id}/attendees?next-token=forged"
    ))
    .await
    .expect_error(400, "BadRequestException");
    raw.get("/legacy/meetings/0b6d8a6e-5f0c-4b4c-9a43-1a2b3c4d5e6f/attendees")
        .await
        .expect_error(404, "NotFoundException");
    raw.send(
        "GET",
        &format!("/legacy/meetings/{id}/attendees"),
        b"",
        common::Signing::Unsigned,
    )
    .await
    .expect_error(401, "UnauthorizedClientException");
}

#[tokio::test]
async fn the_cap_is_resource_limit_exceeded() {
    let server = TestServer::start_with(|c| c.max_attendees = 2).await;
    let raw = server.raw();
    let id = legacy_meeting(&server).await;
    for user in ["aa", "bb"] {
        let r = raw
            .post(
                &format!("/legacy/meetings/{id}/attendees"),
                &json!({"ExternalUserId": user}).to_string(),
            )
            .await;
        assert_eq!(r.status, 201);
    }
    let message = raw
        .post(
            &format!("/legacy/meetings/{id}/attendees"),
            &json!({"ExternalUserId": "cc"}).to_string(),
        )
        .await
        .expect_error(400, "ResourceLimitExceededException");
    assert!(message.contains("maximum of 2"), "{message}");
    let batch = raw
        .post(
            &format!("/legacy/meetings/{id}/attendees?operation=batch-create"),
            &json!({"Attendees": [{"ExternalUserId": "dd"}, {"ExternalUserId": "aa"}]}).to_string(),
        )
        .await;
    assert_eq!(batch.status, 201);
    let body = batch.json();
    assert_eq!(
        body["Attendees"].as_array().expect("list").len(),
        1,
        "aa already exists"
    );
    assert_eq!(body["Errors"][0]["ErrorCode"], "ResourceLimitExceeded");
}

#[tokio::test]
async fn create_meeting_with_attendees_takes_at_most_ten() {
    let server = TestServer::start().await;
    let raw = server.raw();
    let attendees: Vec<_> = (0..11)
        .map(|i| json!({"ExternalUserId": format!("user-{i}")}))
        .collect();
    let message = raw
        .post(
            "/legacy/meetings?operation=create-attendees",
            &json!({"ClientRequestToken": "cmwa-1", "Attendees": attendees}).to_string(),
        )
        .await
        .expect_error(400, "BadRequestException");
    assert!(message.contains("Attendees"), "{message}");
    let response = raw
        .post(
            "/legacy/meetings?operation=create-attendees",
            &json!({
                "ClientRequestToken": "cmwa-2",
                "Attendees": [{"ExternalUserId": "alice", "Tags": [{"Key": "role", "Value": "host"}]}, {"ExternalUserId": "b"}]
            })
            .to_string(),
        )
        .await;
    assert_eq!(response.status, 201);
    let body = response.json();
    assert_eq!(body["Attendees"].as_array().expect("list").len(), 1);
    assert_eq!(body["Errors"][0]["ErrorCode"], "BadRequest");
    let meeting_id = body["Meeting"]["MeetingId"].as_str().expect("id");
    let attendee_id = body["Attendees"][0]["AttendeeId"].as_str().expect("id");
    let tags = raw
        .get(&format!(
            "/legacy/meetings/{meeting_id}/attendees/{attendee_id}/tags"
        ))
        .await
        .json();
    assert_eq!(tags, json!({"Tags": [{"Key": "role", "Value": "host"}]}));
}

#[tokio::test]
async fn list_meetings_pages_through_the_account() {
    let server = TestServer::start().await;
    let raw = server.raw();
    let mut created = BTreeSet::new();
    for _ in 0..5 {
        created.insert(legacy_meeting(&server).await);
    }
    let mut seen = BTreeSet::new();
    let mut next = String::new();
    loop {
        let query = if next.is_empty() {
            "max-results=2".to_string()
        } else {
            format!("max-results=2&next-token={next}")
        };
        let page = raw.get(&format!("/legacy/meetings?{query}")).await.json();
        for m in page["Meetings"].as_array().expect("list") {
            assert!(seen.insert(m["MeetingId"].as_str().expect("id").to_string()));
        }
        match page["NextToken"].as_str() {
            Some(token) => next = token.to_string(),
            None => break,
        }
    }
    assert_eq!(seen, created);
    // ListMeetings is not part of chime-sdk-meetings.
    raw.get("/meetings")
        .await
        .expect_error(400, "BadRequestException");
}

#[tokio::test]
async fn meeting_and_attendee_tags() {
    let server = TestServer::start().await;
    let raw = server.raw();
    let id = legacy_meeting(&server).await;
    let tag_meeting = raw
        .post(
            &format!("/legacy/meetings/{id}/tags?operation=add"),
            &json!({"Tags": [{"Key": "a b", "Value": "1"}]}).to_string(),
        )
        .await;
    assert_eq!(
        tag_meeting.status, 204,
        "legacy keys have no pattern: {tag_meeting:?}"
    );
    let untag = raw
        .post(
            &format!("/legacy/meetings/{id}/tags?operation=delete"),
            &json!({"TagKeys": ["a b"]}).to_string(),
        )
        .await;
    assert_eq!(untag.status, 204);
    assert_eq!(
        raw.get(&format!("/legacy/meetings/{id}/tags")).await.json(),
        json!({"Tags": []})
    );

    let attendee = raw
        .post(
            &format!("/legacy/meetings/{id}/attendees"),
            &json!({"ExternalUserId": "tagged"}).to_string(),
        )
        .await
        .json()["Attendee"]["AttendeeId"]
        .as_str()
        .expect("id")
        .to_string();
    let ten: Vec<_> = (0..10)
        .map(|i| json!({"Key": format!("k{i}"), "Value": "v"}))
        .collect();
    let r = raw
        .post(
            &format!("/legacy/meetings/{id}/attendees/{attendee}/tags?operation=add"),
            &json!({"Tags": ten}).to_string(),
        )
        .await;
    assert_eq!(r.status, 204);
    raw.post(
        &format!("/legacy/meetings/{id}/attendees/{attendee}/tags?operation=add"),
        &json!({"Tags": [{"Key": "eleventh", "Value": "v"}]}).to_string(),
    )
    .await
    .expect_error(400, "ResourceLimitExceededException");

    // TagResource on the legacy endpoint uses the same MeetingArn.
    let arn = format!(
        "arn:aws:chime:us-east-1:{}:meeting/{id}",
        common::ACCOUNT_ID
    );
    let r = raw
        .post(
            "/legacy/tags?operation=tag-resource",
            &json!({"ResourceARN": arn, "Tags": [{"Key": "x", "Value": "y"}]}).to_string(),
        )
        .await;
    assert_eq!(r.status, 204);
    let listed = raw
        .get(&format!(
            "/legacy/tags?arn={}",
            arn.replace(':', "%3A").replace('/', "%2F")
        ))
        .await
        .json();
    assert_eq!(listed, json!({"Tags": [{"Key": "x", "Value": "y"}]}));
    raw.post(
        "/legacy/tags?operation=tag-resource",
        &json!({"ResourceARN": arn, "Tags": []}).to_string(),
    )
    .await
    .expect_error(400, "BadRequestException");
}

#[tokio::test]
async fn capabilities_do_not_exist_in_legacy() {
    let server = TestServer::start().await;
    let id = legacy_meeting(&server).await;
    let raw = server.raw();
    let body =
        json!({"Capabilities": {"Audio": "None", "Video": "None", "Content": "None"}}).to_string();
    let response = raw
        .send(
            "PUT",
            &format!(
                "/legacy/meetings/{id}/attendees/0b6d8a6e-5f0c-4b4c-9a43-1a2b3c4d5e6f/capabilities"
            ),
            body.as_bytes(),
            common::Signing::valid(),
        )
        .await;
    response.expect_error(400, "BadRequestException");
    let transcription = raw
        .post(
            &format!("/legacy/meetings/{id}/transcription?operation=stop"),
            "",
        )
        .await;
    transcription.expect_error(422, "UnprocessableEntityException");
}

/// The legacy API's media capture operations: its shapes and statuses, its ResultMax, its
/// errors, the global meeting ARN of its documentation as well as the current form, and the
/// very pipelines of the media pipelines API, which each API sees whoever created them.
#[tokio::test]
async fn media_capture_pipelines_are_shared_with_the_media_pipelines_api() {
    let server = TestServer::start().await;
    let raw = server.raw();
    let account = common::ACCOUNT_ID;
    let create_body = |source_arn: String| {
        json!({
            "SourceType": "ChimeSdkMeeting",
            "SourceArn": source_arn,
            "SinkType": "S3Bucket",
            "SinkArn": "arn:aws:s3:::legacy-recordings/calls",
            "ChimeSdkMeetingConfiguration": {"ArtifactsConfiguration": {
                "Audio": {"MuxType": "AudioOnly"},
                "Video": {"State": "Disabled"},
                "Content": {"State": "Disabled"},
            }},
        })
        .to_string()
    };

    // Created through the legacy API, with its documentation's global meeting ARN.
    let first_meeting = legacy_meeting(&server).await;
    let legacy_arn = format!("arn:aws:chime::{account}:meeting:{first_meeting}");
    let created = raw
        .post(
            "/legacy/media-capture-pipelines",
            &create_body(legacy_arn.clone()),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let shape = created.json()["MediaCapturePipeline"].clone();
    let legacy_members: BTreeSet<String> = [
        "ChimeSdkMeetingConfiguration",
        "CreatedTimestamp",
        "MediaPipelineId",
        "SinkArn",
        "SinkType",
        "SourceArn",
        "SourceType",
        "Status",
        "UpdatedTimestamp",
    ]
    .map(String::from)
    .into();
    assert_eq!(keys(&shape), legacy_members, "no MediaPipelineArn: {shape}");
    assert_eq!(shape["SourceArn"], legacy_arn.as_str());
    let first = shape["MediaPipelineId"].as_str().expect("id").to_string();
    // A second one for the same meeting while the first records: the legacy limit error.
    raw.post("/legacy/media-capture-pipelines", &create_body(legacy_arn))
        .await
        .expect_error(400, "ResourceLimitExceededException");

    // The same pipeline through the media pipelines API, with its ARN there.
    let current = raw
        .get(&format!("/sdk-media-capture-pipelines/{first}"))
        .await;
    assert_eq!(current.status, 200, "{current:?}");
    assert!(
        current.json()["MediaCapturePipeline"]["MediaPipelineArn"]
            .as_str()
            .is_some_and(|arn| arn.ends_with(&format!(":media-pipeline/{first}")))
    );

    // One created through the media pipelines API, seen by the legacy Get and List.
    let second_meeting = legacy_meeting(&server).await;
    let made = raw
        .post(
            "/sdk-media-capture-pipelines",
            &create_body(format!(
                "arn:aws:chime:us-east-1:{account}:meeting/{second_meeting}"
            )),
        )
        .await;
    assert_eq!(made.status, 201, "{made:?}");
    let second = made.json()["MediaCapturePipeline"]["MediaPipelineId"]
        .as_str()
        .expect("id")
        .to_string();
    let got = raw
        .get(&format!("/legacy/media-capture-pipelines/{second}"))
        .await;
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(keys(&got.json()["MediaCapturePipeline"]), legacy_members);

    // Listed a pipeline a page: whole legacy shapes, both pipelines, in creation order.
    let mut listed = Vec::new();
    let mut query = "max-results=1".to_string();
    loop {
        let page = raw
            .get(&format!("/legacy/media-capture-pipelines?{query}"))
            .await;
        assert_eq!(page.status, 200, "{page:?}");
        let page = page.json();
        let items = page["MediaCapturePipelines"].as_array().expect("list");
        assert_eq!(items.len(), 1);
        assert_eq!(keys(&items[0]), legacy_members);
        listed.push(
            items[0]["MediaPipelineId"]
                .as_str()
                .expect("id")
                .to_string(),
        );
        match page["NextToken"].as_str() {
            Some(token) => query = format!("max-results=1&next-token={token}"),
            None => break,
        }
    }
    assert_eq!(listed, [first.clone(), second.clone()]);
    raw.get("/legacy/media-capture-pipelines?max-results=100")
        .await
        .expect_error(400, "BadRequestException");

    // Bad input: a meeting of another account, a malformed id.
    let message = raw
        .post(
            "/legacy/media-capture-pipelines",
            &create_body(format!(
                "arn:aws:chime::999999999999:meeting:{first_meeting}"
            )),
        )
        .await
        .expect_error(400, "BadRequestException");
    assert!(message.contains("SourceArn"), "{message}");
    raw.get("/legacy/media-capture-pipelines/not-a-guid")
        .await
        .expect_error(400, "BadRequestException");
    // Each API at its own paths.
    raw.get("/media-capture-pipelines")
        .await
        .expect_error(400, "BadRequestException");
    raw.get("/legacy/sdk-media-capture-pipelines")
        .await
        .expect_error(400, "BadRequestException");

    // Deleted through the legacy API: gone from both.
    for id in [&first, &second] {
        let deleted = raw
            .delete(&format!("/legacy/media-capture-pipelines/{id}"))
            .await;
        assert_eq!(deleted.status, 204, "{deleted:?}");
        assert!(deleted.body.is_empty());
        raw.get(&format!("/legacy/media-capture-pipelines/{id}"))
            .await
            .expect_error(404, "NotFoundException");
        raw.get(&format!("/sdk-media-capture-pipelines/{id}"))
            .await
            .expect_error(404, "NotFoundException");
    }
    raw.delete(&format!("/legacy/media-capture-pipelines/{first}"))
        .await
        .expect_error(404, "NotFoundException");
}
