//! Acknowledged writes survive a restart and a `kill -9`, JoinTokens and NextTokens included.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{TestServer, free_port, sdk_client, serve, wait_ready};

#[tokio::test]
async fn everything_survives_a_graceful_restart() {
    let mut server = TestServer::start().await;
    let client = server.client();
    let meeting = client
        .create_meeting()
        .media_region("us-east-1")
        .external_meeting_id("restart")
        .client_request_token("restart-token")
        .send()
        .await
        .expect("CreateMeeting")
        .meeting
        .expect("meeting");
    let id = meeting.meeting_id().expect("id").to_string();
    for user in ["u1", "u2", "u3"] {
        client
            .create_attendee()
            .meeting_id(&id)
            .external_user_id(user)
            .send()
            .await
            .expect("attendee");
    }
    let page = client
        .list_attendees()
        .meeting_id(&id)
        .max_results(1)
        .send()
        .await
        .expect("page");
    let token = page.next_token().expect("NextToken").to_string();
    let first = page.attendees()[0].clone();

    server.restart().await;
    let client = server.client();
    let again = client
        .create_meeting()
        .media_region("us-east-1")
        .external_meeting_id("restart")
        .client_request_token("restart-token")
        .send()
        .await
        .expect("replay after restart");
    assert_eq!(
        again.meeting().and_then(|m| m.meeting_id()),
        Some(id.as_str())
    );
    let rest = client
        .list_attendees()
        .meeting_id(&id)
        .next_token(&token)
        .send()
        .await
        .expect("the NextToken minted before the restart still works");
    assert_eq!(rest.attendees().len(), 2);
    let got = client
        .get_attendee()
        .meeting_id(&id)
        .attendee_id(first.attendee_id().expect("id"))
        .send()
        .await
        .expect("GetAttendee")
        .attendee
        .expect("attendee");
    assert_eq!(
        got.join_token(),
        first.join_token(),
        "the JoinToken is the same after a restart"
    );
}

/// Starts the real binary, writes through the SDK, kills it with SIGKILL, starts it again on the
/// same data directory and reads everything back.
#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().expect("temp dir");
    let spawn = |port: u16| {
        serve(dir.path(), &format!("127.0.0.1:{port}"))
            .spawn()
            .expect("binary starts")
    };
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut child = spawn(port);
    wait_ready(port).await;

    let client = sdk_client(&url, "us-east-1");
    let id = common::create_meeting_id(&client, "crash").await;
    let mut tokens = Vec::new();
    for i in 0..20 {
        let attendee = client
            .create_attendee()
            .meeting_id(&id)
            .external_user_id(format!("user-{i}"))
            .send()
            .await
            .expect("CreateAttendee")
            .attendee
            .expect("attendee");
        tokens.push(attendee.join_token.expect("token"));
    }
    let deleted = client
        .list_attendees()
        .meeting_id(&id)
        .max_results(1)
        .send()
        .await
        .expect("list");
    let deleted_id = deleted.attendees()[0]
        .attendee_id()
        .expect("id")
        .to_string();
    client
        .delete_attendee()
        .meeting_id(&id)
        .attendee_id(&deleted_id)
        .send()
        .await
        .expect("delete");

    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("killed");

    let mut child = spawn(port);
    wait_ready(port).await;
    let listed: Vec<_> = client
        .list_attendees()
        .meeting_id(&id)
        .into_paginator()
        .send()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .flat_map(|page| page.expect("page").attendees.unwrap_or_default())
        .collect();
    assert_eq!(
        listed.len(),
        19,
        "every acknowledged create and the delete survived"
    );
    assert!(
        listed
            .iter()
            .all(|a| a.attendee_id() != Some(deleted_id.as_str()))
    );
    for a in &listed {
        assert!(tokens.contains(&a.join_token().expect("token").to_string()));
    }
    child.start_kill().expect("stop");
    let _ = child.wait().await;
}

/// One process per data directory: a second `carillon serve` on a directory another one is
/// serving stops at once with a message saying what to do instead, and the first keeps serving;
/// once the first is gone (even by SIGKILL), the directory can be served again.
#[tokio::test]
async fn a_second_process_on_one_data_directory_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let command = |listen: &str| serve(dir.path(), listen);
    let port = free_port();
    let mut first = command(&format!("127.0.0.1:{port}"))
        .spawn()
        .expect("binary starts");
    wait_ready(port).await;
    let client = sdk_client(&format!("http://127.0.0.1:{port}"), "us-east-1");
    let id = common::create_meeting_id(&client, "José's meeting").await;

    let second = tokio::time::timeout(
        Duration::from_secs(30),
        command("127.0.0.1:0").stderr(Stdio::piped()).output(),
    )
    .await
    .expect("the second server stops by itself")
    .expect("the second server ran");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{stderr}");
    assert!(
        stderr.contains("in use by another carillon process") && stderr.contains("--data-dir"),
        "{stderr}"
    );
    client
        .get_meeting()
        .meeting_id(&id)
        .send()
        .await
        .expect("the first server still serves");

    first.start_kill().expect("SIGKILL");
    first.wait().await.expect("killed");
    let mut again = command(&format!("127.0.0.1:{port}"))
        .spawn()
        .expect("binary starts");
    wait_ready(port).await;
    client
        .get_meeting()
        .meeting_id(&id)
        .send()
        .await
        .expect("served again after the first process died");
    again.start_kill().expect("stop");
    let _ = again.wait().await;
}
