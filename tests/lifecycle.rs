//! Meetings end by themselves, driven by the manual clock through the admin extension: five idle
//! minutes from creation or from the last departure, 24 hours at most (connected clients get
//! AUDIO_STATUS 410 and a 4410 close), and presence shows who is connected.

mod common;

use aws_sdk_chimesdkmeetings as meetings;
use carillon::config::ClockMode;
use carillon::join::frames::proto::sdk_signal_frame::Type;
use common::signal::{SignalClient, attendee, client_frame, meeting};
use common::{Signing, TestServer};

async fn advance(server: &TestServer, seconds: u64) -> serde_json::Value {
    let answer = server
        .raw()
        .post(
            "/_carillon/clock",
            &format!(r#"{{"advance_seconds": {seconds}}}"#),
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.json()
}

fn ended(answer: &serde_json::Value) -> Vec<String> {
    answer["ended_meetings"]
        .as_array()
        .map(|ids| {
            ids.iter()
                .filter_map(|id| id.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

async fn manual_server() -> TestServer {
    TestServer::start_with(|config| config.clock = ClockMode::Manual).await
}

async fn state_of(server: &TestServer, meeting_id: &str, attendee_id: &str) -> String {
    let presence = server
        .raw()
        .get(&format!("/_carillon/meetings/{meeting_id}/presence"))
        .await;
    assert_eq!(presence.status, 200, "{presence:?}");
    presence.json()["attendees"]
        .as_array()
        .and_then(|all| {
            all.iter()
                .find(|a| a["attendee_id"] == attendee_id)
                .and_then(|a| a["state"].as_str().map(str::to_string))
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn an_unused_meeting_ends_after_five_idle_minutes() {
    let server = manual_server().await;
    let client = server.client();
    let id = common::create_meeting_id(&client, "idle").await;
    let before = advance(&server, 299).await;
    assert!(ended(&before).is_empty());
    let now = before["now"].as_i64().expect("now");
    let after = advance(&server, 1).await;
    assert_eq!(
        ended(&after),
        vec![id.clone()],
        "ended before the call returned"
    );
    assert_eq!(after["now"].as_i64(), Some(now + 1000));
    let gone = client.get_meeting().meeting_id(&id).send().await;
    assert!(
        gone.expect_err("ended")
            .into_service_error()
            .is_not_found_exception()
    );
    client
        .delete_meeting()
        .meeting_id(&id)
        .send()
        .await
        .expect("DeleteMeeting of an ended meeting is 204");
}

/// Meetings that idle out together end in several bounded transactions (so the writes queued
/// behind the sweep are not held for seconds), and the advance still answers only once all have
/// ended, listing every one.
#[tokio::test]
async fn full_meetings_that_idle_out_together_all_end_before_the_advance_returns() {
    let server = manual_server().await;
    let client = server.client();
    let mut ids = Vec::new();
    for m in 0..3 {
        let id = common::create_meeting_id(&client, &format!("full-{m}")).await;
        for batch in 0..3 {
            let mut request = client.batch_create_attendee().meeting_id(&id);
            for a in 0..100 {
                request = request.attendees(
                    meetings::types::CreateAttendeeRequestItem::builder()
                        .external_user_id(format!("Zoë-{batch}-{a}"))
                        .build()
                        .expect("item"),
                );
            }
            let created = request.send().await.expect("batch");
            // The last 50 find the meeting full.
            let full = if batch == 2 { 50 } else { 0 };
            assert_eq!(created.errors().len(), full, "{created:?}");
        }
        ids.push(id);
    }
    let mut answered = ended(&advance(&server, 300).await);
    answered.sort();
    ids.sort();
    // Each meeting holds 250 attendees (the cap), more than one sweep transaction deletes.
    assert_eq!(answered, ids, "ended before the call returned");
    for id in &ids {
        let gone = client.get_meeting().meeting_id(id).send().await;
        assert!(
            gone.expect_err("ended")
                .into_service_error()
                .is_not_found_exception()
        );
    }
}

#[tokio::test]
async fn a_connected_attendee_keeps_the_meeting_and_the_idle_clock_restarts_when_they_leave() {
    let server = manual_server().await;
    let m = meeting(&server).await;
    let (attendee_id, token) = attendee(&server, &m, "José").await;
    let (never_id, _) = attendee(&server, &m, "Zoë").await;
    assert_eq!(state_of(&server, &m.id, &attendee_id).await, "never-joined");

    let mut client = SignalClient::connect(&m.signaling_url, &token).await;
    client.join().await;
    assert_eq!(state_of(&server, &m.id, &attendee_id).await, "connected");
    assert!(
        ended(&advance(&server, 3600).await).is_empty(),
        "an hour connected"
    );

    client.send(client_frame(Type::Leave)).await;
    client.expect(Type::LeaveAck).await;
    // The departure is recorded as the session ends; wait until it is.
    for _ in 0..100 {
        if state_of(&server, &m.id, &attendee_id).await == "left" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(state_of(&server, &m.id, &attendee_id).await, "left");
    assert_eq!(state_of(&server, &m.id, &never_id).await, "never-joined");
    assert!(ended(&advance(&server, 240).await).is_empty());
    assert_eq!(ended(&advance(&server, 60).await), vec![m.id.clone()]);
}

#[tokio::test]
async fn after_24_hours_connected_clients_are_told_the_meeting_ended() {
    let server = manual_server().await;
    let m = meeting(&server).await;
    let (_, token) = attendee(&server, &m, "«Ana»").await;
    let mut client = SignalClient::connect(&m.signaling_url, &token).await;
    client.join().await;
    assert!(ended(&advance(&server, 23 * 3600).await).is_empty());
    assert_eq!(ended(&advance(&server, 3600).await), vec![m.id.clone()]);
    let status = client.expect(Type::AudioStatus).await;
    assert_eq!(
        status.audio_status.and_then(|s| s.audio_status),
        Some(410),
        "MeetingEnded"
    );
    assert_eq!(client.closed().await.0, 4410);
    // The token no longer admits.
    let mut again = SignalClient::connect(&m.signaling_url, &token).await;
    again.send(client_frame(Type::Join)).await;
    assert_eq!(again.closed().await.0, 4410);
}

#[tokio::test]
async fn the_real_clock_cannot_be_moved_and_presence_is_per_account() {
    let server = TestServer::start().await;
    let refused = server
        .raw()
        .post("/_carillon/clock", r#"{"advance_seconds": 360}"#)
        .await;
    let message = refused.expect_error(409, "ConflictException");
    assert!(message.contains("--clock manual"), "{message}");
    let now = server.raw().get("/_carillon/clock").await;
    assert_eq!(now.json()["mode"], "real");

    let unknown = server
        .raw()
        .get(&format!(
            "/_carillon/meetings/{}/presence",
            uuid::Uuid::new_v4()
        ))
        .await;
    unknown.expect_error(404, "NotFoundException");
    let malformed = server
        .raw()
        .get("/_carillon/meetings/not-a-guid/presence")
        .await;
    malformed.expect_error(400, "BadRequestException");
    let unsigned = server
        .raw()
        .send("GET", "/_carillon/clock", b"", Signing::Unsigned)
        .await;
    unsigned.expect_error(401, "UnauthorizedException");
}

#[tokio::test]
async fn clock_advances_are_validated() {
    let server = manual_server().await;
    for body in [
        r#"{"advance_seconds": -1}"#,
        r#"{"advance": 5}"#,
        "not json",
    ] {
        server
            .raw()
            .post("/_carillon/clock", body)
            .await
            .expect_error(400, "BadRequestException");
    }
}
