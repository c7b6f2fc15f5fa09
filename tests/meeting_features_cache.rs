//! Attendee writes check capabilities against the meeting's features remembered in memory
//! (`api::meeting_features`). An entry can outlive its meeting, so these tests warm it on one
//! node, delete the meeting through another node (whose deletion this node's memory never
//! hears of), and check that every attendee write on the first node is NotFound and creates
//! nothing. Driven by the official SDK.

mod common;

use aws_sdk_chimesdkmeetings as meetings;
use carillon::store::postgres::{ScratchSchema, test_database_url};
use common::{TestServer, caps, code};
use meetings::types::MediaCapabilities::{None as Off, Receive, Send, SendReceive};
use meetings::types::{
    CreateAttendeeRequestItem, MeetingFeaturesConfiguration, VideoFeatures, VideoResolution,
};

/// A meeting without video, whose features `node` remembers after one CreateAttendee; the
/// meeting is then deleted through `other`, and `node` must answer NotFound to each write.
async fn writes_after_another_node_deleted_the_meeting(
    node: &meetings::Client,
    other: &meetings::Client,
) {
    let id = node
        .create_meeting()
        .media_region("us-east-1")
        .external_meeting_id("features remembered")
        .meeting_features(
            MeetingFeaturesConfiguration::builder()
                .video(
                    VideoFeatures::builder()
                        .max_resolution(VideoResolution::None)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("CreateMeeting")
        .meeting
        .and_then(|m| m.meeting_id)
        .expect("MeetingId");
    let jose = node
        .create_attendee()
        .meeting_id(&id)
        .external_user_id("José")
        .send()
        .await
        .expect("CreateAttendee")
        .attendee
        .and_then(|a| a.attendee_id)
        .expect("AttendeeId");
    // The remembered features are in force: video is off in this meeting.
    let refused = node
        .create_attendee()
        .meeting_id(&id)
        .external_user_id("Zoë")
        .capabilities(caps(SendReceive, Send, Off))
        .send()
        .await;
    assert_eq!(code(refused), "BadRequestException");

    other
        .delete_meeting()
        .meeting_id(&id)
        .send()
        .await
        .expect("DeleteMeeting through the other node");

    let create = node
        .create_attendee()
        .meeting_id(&id)
        .external_user_id("Zoë")
        .send()
        .await;
    assert_eq!(code(create), "NotFoundException");
    let batch = node
        .batch_create_attendee()
        .meeting_id(&id)
        .attendees(
            CreateAttendeeRequestItem::builder()
                .external_user_id("«Ana»")
                .build()
                .expect("item"),
        )
        .send()
        .await;
    assert_eq!(code(batch), "NotFoundException");
    let update = node
        .update_attendee_capabilities()
        .meeting_id(&id)
        .attendee_id(&jose)
        .capabilities(caps(Receive, Off, Off))
        .send()
        .await;
    assert_eq!(code(update), "NotFoundException");
    // Nothing was created behind the errors.
    let list = node.list_attendees().meeting_id(&id).send().await;
    assert_eq!(code(list), "NotFoundException");
}

#[tokio::test]
async fn a_meeting_deleted_through_another_node_is_not_found_on_sqlite() {
    let first = TestServer::start().await;
    let second = first.second_node().await;
    let other = common::sdk_client(&format!("http://{}", second.boot.addr), "us-east-1");
    writes_after_another_node_deleted_the_meeting(&first.client(), &other).await;
    second.stop().await.expect("the second node stops");
}

#[tokio::test]
async fn a_meeting_deleted_through_another_node_is_not_found_on_postgres() {
    let Some(url) = test_database_url("a_meeting_deleted_through_another_node_features") else {
        return;
    };
    let scratch = ScratchSchema::create(&url).await.expect("a scratch schema");
    let first = TestServer::start_with(|c| c.store = Some(scratch.url.clone())).await;
    let second = TestServer::start_with(|c| c.store = Some(scratch.url.clone())).await;
    writes_after_another_node_deleted_the_meeting(&first.client(), &second.client()).await;
}
