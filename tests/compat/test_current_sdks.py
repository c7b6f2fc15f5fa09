"""Current boto3 and the AWS CLI against chime-sdk-meetings at /, unmodified."""

import json
import os
import subprocess
import uuid

import boto3
import pytest
from botocore.config import Config

from conftest import ACCESS_KEY_ID, ACCOUNT_ID, SECRET_ACCESS_KEY

ONE_ATTEMPT = Config(retries={"total_max_attempts": 1})


@pytest.fixture(scope="module")
def client(endpoint, credentials):
    return boto3.client("chime-sdk-meetings", endpoint_url=endpoint, config=ONE_ATTEMPT, **credentials)


def new_meeting(client, **extra):
    return client.create_meeting(
        MediaRegion="us-east-1", ExternalMeetingId=f"ext-{uuid.uuid4().hex[:8]}", **extra
    )["Meeting"]


def test_meeting_and_attendee_lifecycle(client):
    meeting = new_meeting(client, Tags=[{"Key": "team", "Value": "core"}])
    meeting_id = meeting["MeetingId"]
    assert meeting["MeetingArn"] == f"arn:aws:chime:us-east-1:{ACCOUNT_ID}:meeting/{meeting_id}"
    assert meeting["MediaPlacement"]["SignalingUrl"].endswith(f"/control/{meeting_id}")
    assert client.get_meeting(MeetingId=meeting_id)["Meeting"]["MeetingId"] == meeting_id

    created = client.create_attendee(MeetingId=meeting_id, ExternalUserId="user 1/\u00fc")
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 200
    attendee = created["Attendee"]
    assert attendee["Capabilities"] == {"Audio": "SendReceive", "Video": "SendReceive", "Content": "SendReceive"}
    again = client.create_attendee(MeetingId=meeting_id, ExternalUserId="user 1/\u00fc")["Attendee"]
    assert again["AttendeeId"] == attendee["AttendeeId"]

    got = client.get_attendee(MeetingId=meeting_id, AttendeeId=attendee["AttendeeId"])["Attendee"]
    assert got["JoinToken"] == attendee["JoinToken"]

    updated = client.update_attendee_capabilities(
        MeetingId=meeting_id,
        AttendeeId=attendee["AttendeeId"],
        Capabilities={"Audio": "Receive", "Video": "None", "Content": "None"},
    )["Attendee"]
    assert updated["Capabilities"]["Audio"] == "Receive"
    client.batch_update_attendee_capabilities_except(
        MeetingId=meeting_id,
        ExcludedAttendeeIds=[{"AttendeeId": attendee["AttendeeId"]}],
        Capabilities={"Audio": "None", "Video": "None", "Content": "None"},
    )

    deleted = client.delete_attendee(MeetingId=meeting_id, AttendeeId=attendee["AttendeeId"])
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(client.exceptions.NotFoundException):
        client.get_attendee(MeetingId=meeting_id, AttendeeId=attendee["AttendeeId"])

    client.delete_meeting(MeetingId=meeting_id)
    with pytest.raises(client.exceptions.NotFoundException) as error:
        client.get_meeting(MeetingId=meeting_id)
    assert error.value.response["Error"]["Code"] == "NotFoundException"
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert error.value.response["RequestId"] == error.value.response["ResponseMetadata"]["RequestId"]


def test_pagination_over_250_attendees(client):
    meeting_id = new_meeting(client)["MeetingId"]
    created = set()
    for batch in range(3):
        size = 100 if batch < 2 else 50
        out = client.batch_create_attendee(
            MeetingId=meeting_id,
            Attendees=[{"ExternalUserId": f"user-{batch}-{i}"} for i in range(size)],
        )
        assert out["Errors"] == []
        created.update(a["AttendeeId"] for a in out["Attendees"])
    assert len(created) == 250

    seen, tokens, kwargs = [], set(), {}
    while True:
        page = client.list_attendees(MeetingId=meeting_id, MaxResults=30, **kwargs)
        seen.extend(a["AttendeeId"] for a in page["Attendees"])
        if "NextToken" not in page:
            break
        assert page["NextToken"] not in tokens
        tokens.add(page["NextToken"])
        kwargs = {"NextToken": page["NextToken"]}
    assert len(seen) == 250 and set(seen) == created

    with pytest.raises(client.exceptions.LimitExceededException):
        client.create_attendee(MeetingId=meeting_id, ExternalUserId="one-too-many")
    with pytest.raises(client.exceptions.BadRequestException):
        client.list_attendees(MeetingId=meeting_id, MaxResults=101)
    with pytest.raises(client.exceptions.BadRequestException):
        client.list_attendees(MeetingId=meeting_id, NextToken="forged")


def test_tags(client):
    meeting = new_meeting(client)
    arn = meeting["MeetingArn"]
    client.tag_resource(ResourceARN=arn, Tags=[{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}])
    client.untag_resource(ResourceARN=arn, TagKeys=["a"])
    assert client.list_tags_for_resource(ResourceARN=arn)["Tags"] == [{"Key": "b", "Value": "2"}]
    with pytest.raises(client.exceptions.TooManyTagsException):
        client.tag_resource(ResourceARN=arn, Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(50)])
    with pytest.raises(client.exceptions.ResourceNotFoundException) as error:
        client.list_tags_for_resource(ResourceARN=arn.replace(meeting["MeetingId"], str(uuid.uuid4())))
    assert error.value.response["ResourceName"].startswith("arn:aws:chime:")


def test_errors_surface_as_modelled_classes(client, endpoint):
    with pytest.raises(client.exceptions.BadRequestException) as error:
        client.get_meeting(MeetingId="not-a-guid")
    assert "MeetingId" in error.value.response["Error"]["Message"]
    with pytest.raises(client.exceptions.BadRequestException):
        client.create_meeting(MediaRegion="mars-1", ExternalMeetingId="ext-1")
    meeting_id = new_meeting(client)["MeetingId"]
    with pytest.raises(client.exceptions.UnprocessableEntityException):
        client.start_meeting_transcription(
            MeetingId=meeting_id,
            TranscriptionConfiguration={"EngineTranscribeSettings": {"LanguageCode": "en-US"}},
        )
    stranger = boto3.client(
        "chime-sdk-meetings",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIDSTRANGER",
        aws_secret_access_key="wrong",
        config=ONE_ATTEMPT,
    )
    with pytest.raises(stranger.exceptions.UnauthorizedException):
        stranger.get_meeting(MeetingId=meeting_id)


def aws_cli(endpoint, *args):
    env = dict(
        os.environ,
        AWS_ACCESS_KEY_ID=ACCESS_KEY_ID,
        AWS_SECRET_ACCESS_KEY=SECRET_ACCESS_KEY,
        AWS_DEFAULT_REGION="us-east-1",
    )
    return subprocess.run(
        ["aws", "--endpoint-url", endpoint, "--output", "json", "chime-sdk-meetings", *args],
        capture_output=True,
        text=True,
        env=env,
    )


def test_aws_cli(endpoint):
    created = aws_cli(endpoint, "create-meeting", "--media-region", "us-east-1", "--external-meeting-id", "cli-1")
    assert created.returncode == 0, created.stderr
    meeting_id = json.loads(created.stdout)["Meeting"]["MeetingId"]
    attendee = aws_cli(endpoint, "create-attendee", "--meeting-id", meeting_id, "--external-user-id", "cli-user")
    assert attendee.returncode == 0, attendee.stderr
    listed = aws_cli(endpoint, "list-attendees", "--meeting-id", meeting_id)
    assert listed.returncode == 0, listed.stderr
    assert [a["ExternalUserId"] for a in json.loads(listed.stdout)["Attendees"]] == ["cli-user"]
    missing = aws_cli(endpoint, "get-meeting", "--meeting-id", str(uuid.uuid4()))
    assert missing.returncode == 255
    assert "(NotFoundException)" in missing.stderr
    deleted = aws_cli(endpoint, "delete-meeting", "--meeting-id", meeting_id)
    assert deleted.returncode == 0, deleted.stderr


def audio_only(video="Disabled"):
    """A capture's ArtifactsConfiguration: the audio mix, video as given, no content."""
    return {
        "ArtifactsConfiguration": {
            "Audio": {"MuxType": "AudioOnly"},
            "Video": {"State": video},
            "Content": {"State": "Disabled"},
        }
    }


def test_media_capture_pipelines(endpoint, credentials, client):
    """An application's recording code written for AWS (boto3 chime-sdk-media-pipelines) runs
    unchanged: Create, Get, List, GetMediaPipeline, CreateMediaConcatenationPipeline, Delete;
    what Carillon does not implement is a modelled BadRequestException that says so."""
    pipelines = boto3.client(
        "chime-sdk-media-pipelines", endpoint_url=endpoint, config=ONE_ATTEMPT, **credentials
    )
    meeting = new_meeting(client)
    created = pipelines.create_media_capture_pipeline(
        SourceType="ChimeSdkMeeting",
        SourceArn=meeting["MeetingArn"],
        SinkType="S3Bucket",
        SinkArn="arn:aws:s3:::zoe-recordings/2026",
        ChimeSdkMeetingConfiguration=audio_only(),
    )["MediaCapturePipeline"]
    pipeline_id = created["MediaPipelineId"]
    assert created["Status"] in ("Initializing", "InProgress")
    assert created["SinkArn"] == "arn:aws:s3:::zoe-recordings/2026"
    assert created["CreatedTimestamp"].year >= 2026
    got = pipelines.get_media_capture_pipeline(MediaPipelineId=pipeline_id)["MediaCapturePipeline"]
    assert got["MediaPipelineArn"] == created["MediaPipelineArn"]
    assert got["ChimeSdkMeetingConfiguration"]["ArtifactsConfiguration"]["Audio"]["MuxType"] == "AudioOnly"
    wrapped = pipelines.get_media_pipeline(MediaPipelineId=pipeline_id)["MediaPipeline"]
    assert wrapped["MediaCapturePipeline"]["MediaPipelineId"] == pipeline_id
    listed = [p["MediaPipelineId"] for p in pipelines.list_media_pipelines()["MediaPipelines"]]
    assert pipeline_id in listed

    mixed = audio_only(video="Enabled")
    mixed["ArtifactsConfiguration"]["Audio"]["MuxType"] = "AudioWithActiveSpeakerVideo"
    with pytest.raises(pipelines.exceptions.BadRequestException, match="AudioWithActiveSpeakerVideo"):
        pipelines.create_media_capture_pipeline(
            SourceType="ChimeSdkMeeting",
            SourceArn=meeting["MeetingArn"],
            SinkType="S3Bucket",
            SinkArn="arn:aws:s3:::zoe-recordings",
            ChimeSdkMeetingConfiguration=mixed,
        )
    with pytest.raises(pipelines.exceptions.BadRequestException, match="does not implement"):
        pipelines.create_media_live_connector_pipeline(
            Sources=[
                {
                    "SourceType": "ChimeSdkMeeting",
                    "ChimeSdkMeetingLiveConnectorConfiguration": {
                        "Arn": meeting["MeetingArn"],
                        "MuxType": "AudioWithActiveSpeakerVideo",
                    },
                }
            ],
            Sinks=[{"SinkType": "RTMP", "RTMPConfiguration": {"Url": "rtmp://127.0.0.1/live"}}],
        )

    def concatenate(**states):
        artifacts = {
            k: {"State": states.get(k, "Enabled" if k == "Audio" else "Disabled")}
            for k in [
                "Audio", "Video", "Content", "DataChannel",
                "TranscriptionMessages", "MeetingEvents", "CompositedVideo",
            ]
        }
        return pipelines.create_media_concatenation_pipeline(
            Sources=[
                {
                    "Type": "MediaCapturePipeline",
                    "MediaCapturePipelineSourceConfiguration": {
                        "MediaPipelineArn": created["MediaPipelineArn"],
                        "ChimeSdkMeetingConfiguration": {"ArtifactsConfiguration": artifacts},
                    },
                }
            ],
            Sinks=[{"Type": "S3Bucket", "S3BucketSinkConfiguration": {"Destination": "arn:aws:s3:::zoe-recordings/joined"}}],
        )["MediaConcatenationPipeline"]

    with pytest.raises(pipelines.exceptions.BadRequestException, match="CompositedVideo"):
        concatenate(CompositedVideo="Enabled")
    joined = concatenate(MeetingEvents="Enabled", DataChannel="Enabled")
    assert joined["Status"] == "Initializing"
    assert joined["Sources"][0]["MediaCapturePipelineSourceConfiguration"]["MediaPipelineArn"] == created["MediaPipelineArn"]
    wrapped = pipelines.get_media_pipeline(MediaPipelineId=joined["MediaPipelineId"])["MediaPipeline"]
    assert wrapped["MediaConcatenationPipeline"]["MediaPipelineId"] == joined["MediaPipelineId"]
    with pytest.raises(pipelines.exceptions.NotFoundException):
        pipelines.get_media_capture_pipeline(MediaPipelineId=joined["MediaPipelineId"])
    captures = [p["MediaPipelineId"] for p in pipelines.list_media_capture_pipelines()["MediaCapturePipelines"]]
    assert joined["MediaPipelineId"] not in captures and pipeline_id in captures
    pipelines.delete_media_pipeline(MediaPipelineId=joined["MediaPipelineId"])

    pipelines.delete_media_pipeline(MediaPipelineId=pipeline_id)
    with pytest.raises(pipelines.exceptions.NotFoundException):
        pipelines.get_media_capture_pipeline(MediaPipelineId=pipeline_id)


def test_media_pipeline_tags(endpoint, credentials, client):
    """Tags on media pipelines with boto3's chime-sdk-media-pipelines client: at Create, then
    TagResource, UntagResource and ListTagsForResource, whose paths are the meetings API's own
    (/tags): the media pipeline ARN tells them apart, and errors are that API's."""
    pipelines = boto3.client(
        "chime-sdk-media-pipelines", endpoint_url=endpoint, config=ONE_ATTEMPT, **credentials
    )
    meeting = new_meeting(client)
    created = pipelines.create_media_capture_pipeline(
        SourceType="ChimeSdkMeeting",
        SourceArn=meeting["MeetingArn"],
        SinkType="S3Bucket",
        SinkArn="arn:aws:s3:::zoe-recordings/tagged",
        Tags=[{"Key": "team", "Value": "Zoë"}, {"Key": "guest", "Value": "«Ana»"}],
    )["MediaCapturePipeline"]
    arn = created["MediaPipelineArn"]
    assert "Tags" not in created
    assert pipelines.list_tags_for_resource(ResourceARN=arn)["Tags"] == [
        {"Key": "team", "Value": "Zoë"},
        {"Key": "guest", "Value": "«Ana»"},
    ]

    tagged = pipelines.tag_resource(ResourceARN=arn, Tags=[{"Key": "team", "Value": "Zoë & Ana"}, {"Key": "empty", "Value": ""}])
    assert tagged["ResponseMetadata"]["HTTPStatusCode"] == 204
    untagged = pipelines.untag_resource(ResourceARN=arn, TagKeys=["guest", "never-set"])
    assert untagged["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert pipelines.list_tags_for_resource(ResourceARN=arn)["Tags"] == [
        {"Key": "team", "Value": "Zoë & Ana"},
        {"Key": "empty", "Value": ""},
    ]
    got = pipelines.get_media_capture_pipeline(MediaPipelineId=created["MediaPipelineId"])
    assert "Tags" not in got["MediaCapturePipeline"]

    with pytest.raises(pipelines.exceptions.BadRequestException, match="at most 50"):
        pipelines.tag_resource(ResourceARN=arn, Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(49)])
    assert len(pipelines.list_tags_for_resource(ResourceARN=arn)["Tags"]) == 2

    unknown = f"arn:aws:chime:us-east-1:{ACCOUNT_ID}:media-pipeline/{uuid.uuid4()}"
    with pytest.raises(pipelines.exceptions.NotFoundException):
        pipelines.list_tags_for_resource(ResourceARN=unknown)
    with pytest.raises(pipelines.exceptions.NotFoundException):
        pipelines.tag_resource(ResourceARN=unknown, Tags=[{"Key": "k", "Value": "v"}])
    with pytest.raises(pipelines.exceptions.NotFoundException):
        pipelines.untag_resource(ResourceARN=unknown, TagKeys=["k"])
    # The meetings API's tag operations on the same paths are as they were.
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.list_tags_for_resource(ResourceARN=meeting["MeetingArn"].replace(meeting["MeetingId"], str(uuid.uuid4())))

    pipelines.delete_media_pipeline(MediaPipelineId=created["MediaPipelineId"])
    with pytest.raises(pipelines.exceptions.NotFoundException):
        pipelines.list_tags_for_resource(ResourceARN=arn)
