//! The attendee cap and idempotency hold under concurrent creates.

mod common;

use std::collections::HashSet;

use common::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cap_holds_under_concurrent_creates() {
    let server = TestServer::start_with(|c| c.max_attendees = 10).await;
    let client = server.client();
    let id = common::create_meeting_id(&client, "race").await;
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let client = client.clone();
            let id = id.clone();
            tokio::spawn(async move {
                client
                    .create_attendee()
                    .meeting_id(id)
                    .external_user_id(format!("racer-{i}"))
                    .send()
                    .await
            })
        })
        .collect();
    let mut created = 0;
    let mut refused = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(_) => created += 1,
            Err(e) => {
                assert!(e.into_service_error().is_limit_exceeded_exception());
                refused += 1;
            }
        }
    }
    assert_eq!((created, refused), (10, 30));
    let listed = client
        .list_attendees()
        .meeting_id(&id)
        .send()
        .await
        .expect("list");
    assert_eq!(listed.attendees().len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_replays_create_one_meeting_and_one_attendee() {
    let server = TestServer::start().await;
    let client = server.client();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .create_meeting()
                    .media_region("us-east-1")
                    .external_meeting_id("same")
                    .client_request_token("one-token-for-all")
                    .send()
                    .await
                    .expect("CreateMeeting")
                    .meeting
                    .and_then(|m| m.meeting_id)
                    .expect("id")
            })
        })
        .collect();
    let mut ids = HashSet::new();
    for task in tasks {
        ids.insert(task.await.expect("task"));
    }
    assert_eq!(ids.len(), 1);
    let id = ids.into_iter().next().expect("id");
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let client = client.clone();
            let id = id.clone();
            tokio::spawn(async move {
                client
                    .create_attendee()
                    .meeting_id(id)
                    .external_user_id("same-user")
                    .send()
                    .await
                    .expect("CreateAttendee")
                    .attendee
                    .and_then(|a| a.attendee_id)
                    .expect("id")
            })
        })
        .collect();
    let mut attendees = HashSet::new();
    for task in tasks {
        attendees.insert(task.await.expect("task"));
    }
    assert_eq!(attendees.len(), 1);
}
