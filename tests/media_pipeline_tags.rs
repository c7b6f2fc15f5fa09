//! Tags on media pipelines through the official media pipelines SDK: at Create, and with
//! TagResource, UntagResource and ListTagsForResource, which share the meetings API's paths and
//! are told apart from its tag operations by their ResourceARN alone.

mod common;

use aws_sdk_chimesdkmediapipelines as pipelines;
use common::TestServer;
use pipelines::types::{MediaPipelineSinkType, MediaPipelineSourceType, Tag};
use serde_json::json;

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build().expect("a tag")
}

/// The pipeline's tags, as (key, value), in the order ListTagsForResource gives them.
async fn tags_of(client: &pipelines::Client, arn: &str) -> Vec<(String, String)> {
    client
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .expect("ListTagsForResource")
        .tags()
        .iter()
        .map(|tag| (tag.key().to_string(), tag.value().to_string()))
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

#[tokio::test]
async fn media_pipelines_keep_tags_from_create_tag_resource_and_untag_resource() {
    let server = TestServer::start().await;
    let meetings = server.client();
    let meeting = common::create_meeting(&meetings, "tagged-recording").await;
    let meeting_arn = meeting.meeting_arn().expect("MeetingArn").to_string();
    let client = common::media_pipelines_client(&server.url());
    let create = || {
        client
            .create_media_capture_pipeline()
            .source_type(MediaPipelineSourceType::ChimeSdkMeeting)
            .source_arn(&meeting_arn)
            .sink_type(MediaPipelineSinkType::S3Bucket)
            .sink_arn("arn:aws:s3:::tagged-recordings")
    };
    let created = create()
        .tags(tag("team", "Zoë"))
        .tags(tag("guest", "«Ana»"))
        .send()
        .await
        .expect("CreateMediaCapturePipeline with Tags")
        .media_capture_pipeline
        .expect("pipeline");
    let arn = created.media_pipeline_arn().expect("ARN").to_string();
    let id = created.media_pipeline_id().expect("id").to_string();
    assert_eq!(
        tags_of(&client, &arn).await,
        pairs(&[("team", "Zoë"), ("guest", "«Ana»")])
    );

    // A key already there takes the new value in its place; an empty value is a value.
    client
        .tag_resource()
        .resource_arn(&arn)
        .tags(tag("team", "Zoë & Ana"))
        .tags(tag("cost-centre", ""))
        .send()
        .await
        .expect("TagResource");
    assert_eq!(
        tags_of(&client, &arn).await,
        pairs(&[
            ("team", "Zoë & Ana"),
            ("guest", "«Ana»"),
            ("cost-centre", "")
        ])
    );
    // A key it does not have is no error.
    client
        .untag_resource()
        .resource_arn(&arn)
        .tag_keys("guest")
        .tag_keys("never-set")
        .send()
        .await
        .expect("UntagResource");
    assert_eq!(
        tags_of(&client, &arn).await,
        pairs(&[("team", "Zoë & Ana"), ("cost-centre", "")])
    );

    // The pipeline's own shape has no Tags member, in either of its Gets.
    let raw = server.raw();
    for path in [
        format!("/sdk-media-capture-pipelines/{id}"),
        format!("/sdk-media-pipelines/{id}"),
    ] {
        let got = raw.get(&path).await;
        assert_eq!(got.status, 200, "{got:?}");
        assert!(!got.body.contains("Tags"), "{path}: {}", got.body);
    }

    // Fifty at most: 48 more make 50, one more is bad input and changes nothing.
    let mut more = client.tag_resource().resource_arn(&arn);
    for i in 0..48 {
        more = more.tags(tag(&format!("k{i}"), "v"));
    }
    more.send().await.expect("up to 50 tags");
    let refused = client
        .tag_resource()
        .resource_arn(&arn)
        .tags(tag("one-too-many", "v"))
        .send()
        .await
        .expect_err("a 51st tag");
    assert!(
        refused
            .as_service_error()
            .is_some_and(|e| e.is_bad_request_exception()),
        "{refused:?}"
    );
    assert!(format!("{refused:?}").contains("at most 50"), "{refused:?}");
    assert_eq!(tags_of(&client, &arn).await.len(), 50);

    // Bad input, each a BadRequestException that names the member.
    let too_long = client
        .tag_resource()
        .resource_arn(&arn)
        .tags(tag(&"k".repeat(129), "v"))
        .send()
        .await
        .expect_err("a 129-character key");
    assert!(
        too_long
            .as_service_error()
            .is_some_and(|e| e.is_bad_request_exception()),
        "{too_long:?}"
    );
    let none = client
        .tag_resource()
        .resource_arn(&arn)
        .send()
        .await
        .expect_err("no Tags");
    assert!(format!("{none:?}").contains("Tags is required"), "{none:?}");
    let mut fifty_one = create();
    for i in 0..51 {
        fifty_one = fifty_one.tags(tag(&format!("k{i}"), "v"));
    }
    let at_create = fifty_one.send().await.expect_err("51 tags at Create");
    assert!(
        at_create
            .as_service_error()
            .is_some_and(|e| e.is_bad_request_exception()),
        "{at_create:?}"
    );

    // Unknown pipelines, and other accounts' ones, are NotFoundException for all three.
    let unknown = format!(
        "arn:aws:chime:us-east-1:{}:media-pipeline/{}",
        common::ACCOUNT_ID,
        uuid::Uuid::new_v4()
    );
    let elsewhere = arn.replace(common::ACCOUNT_ID, "999999999999");
    for missing in [&unknown, &elsewhere] {
        let listed = client.list_tags_for_resource().resource_arn(missing);
        let tagged = client
            .tag_resource()
            .resource_arn(missing)
            .tags(tag("k", "v"));
        let untagged = client.untag_resource().resource_arn(missing).tag_keys("k");
        assert_eq!(
            [
                common::code(listed.send().await),
                common::code(tagged.send().await),
                common::code(untagged.send().await),
            ],
            ["NotFoundException"; 3],
            "{missing}"
        );
    }
    // On the wire: the media pipelines API's error, not the meetings API's
    // ResourceNotFoundException, although the path is the same.
    raw.get(&format!(
        "/tags?arn={}",
        unknown.replace(':', "%3A").replace('/', "%2F")
    ))
    .await
    .expect_error(404, "NotFoundException");

    // A concatenation pipeline takes Tags at Create too.
    let artifacts: serde_json::Map<String, serde_json::Value> = [
        "Audio",
        "Video",
        "Content",
        "DataChannel",
        "TranscriptionMessages",
        "MeetingEvents",
        "CompositedVideo",
    ]
    .into_iter()
    .map(|name| {
        let state = if name == "Audio" {
            "Enabled"
        } else {
            "Disabled"
        };
        (name.to_string(), json!({ "State": state }))
    })
    .collect();
    let concatenation = raw
        .post(
            "/sdk-media-concatenation-pipelines",
            &json!({
                "Sources": [{
                    "Type": "MediaCapturePipeline",
                    "MediaCapturePipelineSourceConfiguration": {
                        "MediaPipelineArn": arn,
                        "ChimeSdkMeetingConfiguration": {"ArtifactsConfiguration": artifacts},
                    },
                }],
                "Sinks": [{
                    "Type": "S3Bucket",
                    "S3BucketSinkConfiguration": {
                        "Destination": "arn:aws:s3:::tagged-recordings/joined"
                    },
                }],
                "Tags": [{"Key": "joined-by", "Value": "Zoë"}],
            })
            .to_string(),
        )
        .await;
    assert_eq!(concatenation.status, 201, "{concatenation:?}");
    let joined = concatenation.json()["MediaConcatenationPipeline"]["MediaPipelineArn"]
        .as_str()
        .expect("ARN")
        .to_string();
    assert_eq!(
        tags_of(&client, &joined).await,
        pairs(&[("joined-by", "Zoë")])
    );

    // Meetings keep their own tags on the same paths, and their own errors.
    meetings
        .tag_resource()
        .resource_arn(&meeting_arn)
        .tags(
            aws_sdk_chimesdkmeetings::types::Tag::builder()
                .key("room")
                .value("blue")
                .build()
                .expect("tag"),
        )
        .send()
        .await
        .expect("TagResource on a meeting");
    let meeting_tags = meetings
        .list_tags_for_resource()
        .resource_arn(&meeting_arn)
        .send()
        .await
        .expect("ListTagsForResource on a meeting");
    assert_eq!(meeting_tags.tags().len(), 1);
    let no_meeting = meeting_arn.replace(
        meeting.meeting_id().expect("id"),
        &uuid::Uuid::new_v4().to_string(),
    );
    let missing = meetings
        .list_tags_for_resource()
        .resource_arn(&no_meeting)
        .send()
        .await
        .expect_err("an unknown meeting");
    assert!(
        missing
            .as_service_error()
            .is_some_and(|e| e.is_resource_not_found_exception()),
        "{missing:?}"
    );

    // Deleted, its tags go with it.
    client
        .delete_media_pipeline()
        .media_pipeline_id(&id)
        .send()
        .await
        .expect("DeleteMediaPipeline");
    let gone = client
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await;
    assert_eq!(common::code(gone), "NotFoundException");
}
