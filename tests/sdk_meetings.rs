//! The chime-sdk-meetings namespace, driven by the official `aws-sdk-chimesdkmeetings` crate.

mod common;

use aws_sdk_chimesdkmeetings as meetings;
use common::{ACCOUNT_ID, TestServer, caps, create_meeting};
use meetings::error::ProvideErrorMetadata;
use meetings::types::{
    AttendeeFeatures, AttendeeIdItem, ContentFeatures, ContentResolution,
    CreateAttendeeRequestItem, MediaCapabilities, MeetingFeaturesConfiguration, Tag, VideoFeatures,
    VideoResolution,
};

#[tokio::test]
async fn meeting_lifecycle_with_every_member() {
    let server = TestServer::start().await;
    let client = server.client();
    let meeting = client
        .create_meeting()
        .media_region("eu-west-1")
        .external_meeting_id("standup")
        .meeting_host_id("host-1")
        .client_request_token("token-lifecycle-1")
        .tags(
            Tag::builder()
                .key("team")
                .value("core")
                .build()
                .expect("tag"),
        )
        .send()
        .await
        .expect("CreateMeeting")
        .meeting
        .expect("meeting");
    let id = meeting.meeting_id().expect("MeetingId");
    assert_eq!(id.len(), 36);
    assert_eq!(meeting.external_meeting_id(), Some("standup"));
    assert_eq!(meeting.meeting_host_id(), Some("host-1"));
    assert_eq!(meeting.media_region(), Some("eu-west-1"));
    assert_eq!(
        meeting.meeting_arn(),
        Some(format!("arn:aws:chime:us-east-1:{ACCOUNT_ID}:meeting/{id}").as_str())
    );
    assert_eq!(meeting.tenant_ids(), &[] as &[String]);
    let placement = meeting.media_placement().expect("MediaPlacement");
    assert_eq!(
        placement.signaling_url(),
        Some(format!("ws://{}/control/{id}", server.addr).as_str())
    );
    assert!(!placement.audio_host_url().unwrap_or_default().is_empty());
    for url in [
        placement.audio_fallback_url(),
        placement.turn_control_url(),
        placement.screen_data_url(),
        placement.screen_viewing_url(),
        placement.screen_sharing_url(),
        placement.event_ingestion_url(),
    ] {
        assert!(!url.unwrap_or_default().is_empty());
    }

    // The same ClientRequestToken returns the same meeting.
    let again = client
        .create_meeting()
        .media_region("eu-west-1")
        .external_meeting_id("standup")
        .client_request_token("token-lifecycle-1")
        .send()
        .await
        .expect("replayed CreateMeeting")
        .meeting
        .expect("meeting");
    assert_eq!(again.meeting_id(), Some(id));

    let got = client
        .get_meeting()
        .meeting_id(id)
        .send()
        .await
        .expect("GetMeeting");
    assert_eq!(got.meeting().and_then(|m| m.meeting_id()), Some(id));

    client
        .delete_meeting()
        .meeting_id(id)
        .send()
        .await
        .expect("DeleteMeeting");
    let err = client
        .get_meeting()
        .meeting_id(id)
        .send()
        .await
        .expect_err("deleted meeting is gone")
        .into_service_error();
    assert!(err.is_not_found_exception(), "{err:?}");
    let err = client
        .create_attendee()
        .meeting_id(id)
        .external_user_id("late-user")
        .send()
        .await
        .expect_err("no attendees for a deleted meeting")
        .into_service_error();
    assert!(err.is_not_found_exception(), "{err:?}");
    // DeleteMeeting is idempotent, as on AWS: an ended meeting is "already ended".
    client
        .delete_meeting()
        .meeting_id(id)
        .send()
        .await
        .expect("deleting an ended meeting again succeeds");
    client
        .delete_meeting()
        .meeting_id(uuid::Uuid::new_v4().to_string())
        .send()
        .await
        .expect("so does deleting one that never existed");
    let err = client
        .get_meeting()
        .meeting_id(id)
        .send()
        .await
        .expect_err("every other operation on it is NotFound")
        .into_service_error();
    assert!(err.is_not_found_exception(), "{err:?}");
}

#[tokio::test]
async fn meeting_features_shape_capabilities_and_the_cap() {
    let server = TestServer::start().await;
    let client = server.client();
    let features = MeetingFeaturesConfiguration::builder()
        .video(
            VideoFeatures::builder()
                .max_resolution(VideoResolution::None)
                .build(),
        )
        .content(
            ContentFeatures::builder()
                .max_resolution(ContentResolution::Fhd)
                .build(),
        )
        .attendee(AttendeeFeatures::builder().max_count(3).build())
        .build();
    let meeting = client
        .create_meeting()
        .media_region("us-east-1")
        .external_meeting_id("features")
        .meeting_features(features)
        .send()
        .await
        .expect("CreateMeeting")
        .meeting
        .expect("meeting");
    assert_eq!(
        meeting
            .meeting_features()
            .and_then(|f| f.attendee())
            .and_then(|a| a.max_count()),
        Some(3)
    );
    let id = meeting.meeting_id().expect("id");

    // Defaults with video off and content on: Video=Receive, Content=SendReceive.
    let attendee = client
        .create_attendee()
        .meeting_id(id)
        .external_user_id("alice")
        .send()
        .await
        .expect("CreateAttendee")
        .attendee
        .expect("attendee");
    let c = attendee.capabilities().expect("capabilities");
    assert_eq!(c.video(), &MediaCapabilities::Receive);
    assert_eq!(c.content(), &MediaCapabilities::SendReceive);

    // Video send is refused when the meeting has no video.
    let err = client
        .create_attendee()
        .meeting_id(id)
        .external_user_id("bob")
        .capabilities(caps(
            MediaCapabilities::SendReceive,
            MediaCapabilities::Send,
            MediaCapabilities::None,
        ))
        .send()
        .await
        .expect_err("video is off")
        .into_service_error();
    assert!(err.is_bad_request_exception(), "{err:?}");
    assert!(
        err.message().unwrap_or_default().contains("Video"),
        "{err:?}"
    );

    // The same ExternalUserId returns the existing attendee.
    let same = client
        .create_attendee()
        .meeting_id(id)
        .external_user_id("alice")
        .send()
        .await
        .expect("repeat CreateAttendee")
        .attendee
        .expect("attendee");
    assert_eq!(same.attendee_id(), attendee.attendee_id());
    assert_eq!(same.join_token(), attendee.join_token());

    for user in ["bob", "carol"] {
        client
            .create_attendee()
            .meeting_id(id)
            .external_user_id(user)
            .send()
            .await
            .expect("under the cap");
    }
    let err = client
        .create_attendee()
        .meeting_id(id)
        .external_user_id("dave")
        .send()
        .await
        .expect_err("the meeting is full")
        .into_service_error();
    assert!(err.is_limit_exceeded_exception(), "{err:?}");
}

#[tokio::test]
async fn attendees_batch_get_update_and_delete() {
    let server = TestServer::start().await;
    let client = server.client();
    let id = create_meeting(&client, "batch")
        .await
        .meeting_id
        .expect("id");
    let items = vec![
        CreateAttendeeRequestItem::builder()
            .external_user_id("u-1")
            .build()
            .expect("item"),
        CreateAttendeeRequestItem::builder()
            .external_user_id("u-2")
            .capabilities(caps(
                MediaCapabilities::Receive,
                MediaCapabilities::Receive,
                MediaCapabilities::Receive,
            ))
            .build()
            .expect("item"),
        // Invalid: too short. Reported in Errors, the others are still created.
        CreateAttendeeRequestItem::builder()
            .external_user_id("x")
            .build()
            .expect("item"),
        // Invalid: content receive without video receive.
        CreateAttendeeRequestItem::builder()
            .external_user_id("u-4")
            .capabilities(caps(
                MediaCapabilities::None,
                MediaCapabilities::Send,
                MediaCapabilities::Receive,
            ))
            .build()
            .expect("item"),
    ];
    let out = client
        .batch_create_attendee()
        .meeting_id(&id)
        .set_attendees(Some(items))
        .send()
        .await
        .expect("BatchCreateAttendee");
    assert_eq!(out.attendees().len(), 2);
    assert_eq!(out.errors().len(), 2);
    assert!(
        out.errors()
            .iter()
            .all(|e| e.error_code() == Some("BadRequest"))
    );
    assert!(
        out.errors()[0]
            .error_message()
            .unwrap_or_default()
            .contains("ExternalUserId")
    );

    let first = &out.attendees()[0];
    let attendee_id = first.attendee_id().expect("AttendeeId");
    let token = first.join_token().expect("JoinToken");
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    let got = client
        .get_attendee()
        .meeting_id(&id)
        .attendee_id(attendee_id)
        .send()
        .await
        .expect("GetAttendee")
        .attendee
        .expect("attendee");
    assert_eq!(got.join_token(), Some(token));

    let updated = client
        .update_attendee_capabilities()
        .meeting_id(&id)
        .attendee_id(attendee_id)
        .capabilities(caps(
            MediaCapabilities::Send,
            MediaCapabilities::None,
            MediaCapabilities::None,
        ))
        .send()
        .await
        .expect("UpdateAttendeeCapabilities")
        .attendee
        .expect("attendee");
    assert_eq!(
        updated.capabilities().map(|c| c.audio()),
        Some(&MediaCapabilities::Send)
    );

    client
        .batch_update_attendee_capabilities_except()
        .meeting_id(&id)
        .excluded_attendee_ids(
            AttendeeIdItem::builder()
                .attendee_id(attendee_id)
                .build()
                .expect("item"),
        )
        .capabilities(caps(
            MediaCapabilities::None,
            MediaCapabilities::None,
            MediaCapabilities::None,
        ))
        .send()
        .await
        .expect("BatchUpdateAttendeeCapabilitiesExcept");
    let listed = client
        .list_attendees()
        .meeting_id(&id)
        .send()
        .await
        .expect("ListAttendees");
    for attendee in listed.attendees() {
        let audio = attendee.capabilities().map(|c| c.audio().clone());
        if attendee.attendee_id() == Some(attendee_id) {
            assert_eq!(
                audio,
                Some(MediaCapabilities::Send),
                "excluded attendee kept its capabilities"
            );
        } else {
            assert_eq!(audio, Some(MediaCapabilities::None));
        }
    }

    client
        .delete_attendee()
        .meeting_id(&id)
        .attendee_id(attendee_id)
        .send()
        .await
        .expect("DeleteAttendee");
    let err = client
        .get_attendee()
        .meeting_id(&id)
        .attendee_id(attendee_id)
        .send()
        .await
        .expect_err("deleted")
        .into_service_error();
    assert!(err.is_not_found_exception(), "{err:?}");
    let err = client
        .delete_attendee()
        .meeting_id(&id)
        .attendee_id(attendee_id)
        .send()
        .await
        .expect_err("already deleted")
        .into_service_error();
    assert!(err.is_not_found_exception(), "{err:?}");
    let listed = client
        .list_attendees()
        .meeting_id(&id)
        .send()
        .await
        .expect("ListAttendees");
    assert!(
        listed
            .attendees()
            .iter()
            .all(|a| a.attendee_id() != Some(attendee_id))
    );
}

#[tokio::test]
async fn list_attendees_paginates_over_250() {
    let server = TestServer::start().await;
    let client = server.client();
    let id = create_meeting(&client, "big").await.meeting_id.expect("id");
    let mut created = std::collections::BTreeSet::new();
    for batch in 0..3 {
        let items: Vec<_> = (0..(if batch < 2 { 100 } else { 50 }))
            .map(|i| {
                CreateAttendeeRequestItem::builder()
                    .external_user_id(format!("user-{batch}-{i}"))
                    .build()
                    .expect("item")
            })
            .collect();
        let out = client
            .batch_create_attendee()
            .meeting_id(&id)
            .set_attendees(Some(items))
            .send()
            .await
            .expect("BatchCreateAttendee");
        assert!(out.errors().is_empty());
        created.extend(
            out.attendees()
                .iter()
                .filter_map(|a| a.attendee_id().map(String::from)),
        );
    }
    assert_eq!(created.len(), 250);

    // The 251st is refused as LimitExceeded in the batch's Errors.
    let out = client
        .batch_create_attendee()
        .meeting_id(&id)
        .attendees(
            CreateAttendeeRequestItem::builder()
                .external_user_id("one-too-many")
                .build()
                .expect("item"),
        )
        .send()
        .await
        .expect("BatchCreateAttendee");
    assert!(out.attendees().is_empty());
    assert_eq!(out.errors().len(), 1);

    // Default page size is the maximum (100); pages of 7 walk every attendee once.
    let first = client
        .list_attendees()
        .meeting_id(&id)
        .send()
        .await
        .expect("page");
    assert_eq!(first.attendees().len(), 100);
    for page_size in [7, 100] {
        let mut seen = std::collections::BTreeSet::new();
        let mut tokens = std::collections::HashSet::new();
        let mut next: Option<String> = None;
        loop {
            let page = client
                .list_attendees()
                .meeting_id(&id)
                .max_results(page_size)
                .set_next_token(next.clone())
                .send()
                .await
                .expect("ListAttendees page");
            assert!(page.attendees().len() <= page_size as usize);
            for a in page.attendees() {
                assert!(
                    seen.insert(a.attendee_id().expect("id").to_string()),
                    "no attendee twice"
                );
            }
            match page.next_token() {
                Some(token) => {
                    assert!(tokens.insert(token.to_string()), "no NextToken twice");
                    assert!(!page.attendees().is_empty());
                    next = Some(token.to_string());
                }
                None => break,
            }
        }
        assert_eq!(seen, created);
    }
    // The SDK's own paginator stops on its own too.
    let total: usize = client
        .list_attendees()
        .meeting_id(&id)
        .into_paginator()
        .send()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|page| page.expect("page").attendees().len())
        .sum();
    assert_eq!(total, 250);
}

#[tokio::test]
async fn next_tokens_are_bound_to_their_meeting() {
    let server = TestServer::start().await;
    let client = server.client();
    let a = create_meeting(&client, "meeting-a")
        .await
        .meeting_id
        .expect("id");
    let b = create_meeting(&client, "meeting-b")
        .await
        .meeting_id
        .expect("id");
    for user in ["u1", "u2", "u3"] {
        for m in [&a, &b] {
            client
                .create_attendee()
                .meeting_id(m)
                .external_user_id(user)
                .send()
                .await
                .expect("attendee");
        }
    }
    let page = client
        .list_attendees()
        .meeting_id(&a)
        .max_results(1)
        .send()
        .await
        .expect("page");
    let token = page.next_token().expect("more pages").to_string();
    for bad in [token.clone(), "garbage".to_string(), format!("{token}x")] {
        let meeting = if bad == token { &b } else { &a };
        let err = client
            .list_attendees()
            .meeting_id(meeting)
            .next_token(bad)
            .send()
            .await
            .expect_err("foreign or forged token")
            .into_service_error();
        assert!(err.is_bad_request_exception(), "{err:?}");
    }
    for bad_max in [0, 101] {
        let err = client
            .list_attendees()
            .meeting_id(&a)
            .max_results(bad_max)
            .send()
            .await
            .expect_err("max results out of range")
            .into_service_error();
        assert!(err.is_bad_request_exception(), "{err:?}");
        assert!(err.message().unwrap_or_default().contains("MaxResults"));
    }
}

#[tokio::test]
async fn tags_on_meeting_arns() {
    let server = TestServer::start().await;
    let client = server.client();
    let meeting = create_meeting(&client, "tagged").await;
    let arn = meeting.meeting_arn().expect("arn").to_string();
    let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build().expect("tag");
    client
        .tag_resource()
        .resource_arn(&arn)
        .tags(tag("env", "test"))
        .tags(tag("owner", "alice@example.com"))
        .send()
        .await
        .expect("TagResource");
    client
        .untag_resource()
        .resource_arn(&arn)
        .tag_keys("env")
        .send()
        .await
        .expect("UntagResource");
    let tags = client
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .expect("ListTagsForResource");
    assert_eq!(tags.tags().len(), 1);
    assert_eq!(tags.tags()[0].key(), "owner");

    let many: Vec<Tag> = (0..50).map(|i| tag(&format!("k{i}"), "v")).collect();
    let err = client
        .tag_resource()
        .resource_arn(&arn)
        .set_tags(Some(many))
        .send()
        .await
        .expect_err("51 tags")
        .into_service_error();
    assert!(err.is_too_many_tags_exception(), "{err:?}");

    let missing = arn.replace(
        meeting.meeting_id().expect("id"),
        "00000000-0000-0000-0000-000000000000",
    );
    let err = client
        .list_tags_for_resource()
        .resource_arn(&missing)
        .send()
        .await
        .expect_err("unknown meeting")
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    let err = client
        .tag_resource()
        .resource_arn("arn:aws:s3:::bucket")
        .tags(tag("a", "b"))
        .send()
        .await
        .expect_err("not a meeting")
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
}

#[tokio::test]
async fn transcription_is_refused_with_a_modelled_error() {
    let server = TestServer::start().await;
    let client = server.client();
    let id = create_meeting(&client, "transcribe")
        .await
        .meeting_id
        .expect("id");
    let config = meetings::types::TranscriptionConfiguration::builder()
        .engine_transcribe_settings(
            meetings::types::EngineTranscribeSettings::builder()
                .language_code(meetings::types::TranscribeLanguageCode::EnUs)
                .build(),
        )
        .build();
    let err = client
        .start_meeting_transcription()
        .meeting_id(&id)
        .transcription_configuration(config)
        .send()
        .await
        .expect_err("no transcription engine")
        .into_service_error();
    assert!(err.is_unprocessable_entity_exception(), "{err:?}");
    assert!(err.message().unwrap_or_default().contains("not available"));
    let err = client
        .stop_meeting_transcription()
        .meeting_id(&id)
        .send()
        .await
        .expect_err("no transcription engine")
        .into_service_error();
    assert!(err.is_unprocessable_entity_exception(), "{err:?}");
}

#[tokio::test]
async fn validation_errors_name_the_member() {
    let server = TestServer::start().await;
    let client = server.client();
    let err = client
        .create_meeting()
        .media_region("mars-north-1")
        .external_meeting_id("x1")
        .send()
        .await
        .expect_err("bad region")
        .into_service_error();
    assert!(err.is_bad_request_exception(), "{err:?}");
    assert!(err.message().unwrap_or_default().contains("MediaRegion"));

    let err = client
        .create_meeting()
        .media_region("us-east-1")
        .send()
        .await
        .expect_err("ExternalMeetingId is required")
        .into_service_error();
    assert!(
        err.message()
            .unwrap_or_default()
            .contains("ExternalMeetingId"),
        "{err:?}"
    );

    let err = client
        .get_meeting()
        .meeting_id("not-a-guid")
        .send()
        .await
        .expect_err("malformed id")
        .into_service_error();
    assert!(err.is_bad_request_exception(), "{err:?}");
    assert!(err.message().unwrap_or_default().contains("MeetingId"));

    let err = client
        .get_meeting()
        .meeting_id("0b6d8a6e-5f0c-4b4c-9a43-1a2b3c4d5e6f")
        .send()
        .await
        .expect_err("unknown id")
        .into_service_error();
    assert!(err.is_not_found_exception(), "{err:?}");
    assert!(err.meta().code() == Some("NotFoundException"));
}

#[tokio::test]
async fn wrong_credentials_are_unauthorized() {
    let server = TestServer::start().await;
    let config = aws_sdk_chimesdkmeetings::Config::builder()
        .behavior_version(meetings::config::BehaviorVersion::latest())
        .endpoint_url(server.url())
        .region(meetings::config::Region::new("us-west-2"))
        .credentials_provider(aws_credential_types::Credentials::new(
            "AKIDWRONG",
            "nope",
            None,
            None,
            "t",
        ))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    let err = meetings::Client::from_conf(config)
        .get_meeting()
        .meeting_id("0b6d8a6e-5f0c-4b4c-9a43-1a2b3c4d5e6f")
        .send()
        .await
        .expect_err("unknown key")
        .into_service_error();
    assert!(err.is_unauthorized_exception(), "{err:?}");
    // Any region signs, as long as the key is right: the ARN follows the signing region.
    let meeting = common::sdk_client(&server.url(), "eu-central-1")
        .create_meeting()
        .media_region("us-east-1")
        .external_meeting_id("regional")
        .send()
        .await
        .expect("eu-central-1 signature")
        .meeting
        .expect("meeting");
    assert!(
        meeting
            .meeting_arn()
            .unwrap_or_default()
            .starts_with("arn:aws:chime:eu-central-1:")
    );
}
