"""boto3 1.37.1, the last release with the legacy meeting API, against /legacy, unmodified."""

import uuid

import boto3
import botocore
import pytest
from botocore.config import Config


@pytest.fixture(scope="module")
def chime(endpoint, credentials):
    assert boto3.__version__ == "1.37.1" and botocore.__version__ == "1.37.1"
    return boto3.client(
        "chime",
        endpoint_url=f"{endpoint}/legacy",
        config=Config(retries={"total_max_attempts": 1}),
        **credentials,
    )


def test_legacy_lifecycle_and_list_attendees(chime):
    created = chime.create_meeting(ClientRequestToken=str(uuid.uuid4()), ExternalMeetingId="legacy-1")
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    meeting_id = created["Meeting"]["MeetingId"]
    assert created["Meeting"]["MediaRegion"] == "us-east-1"

    out = chime.batch_create_attendee(
        MeetingId=meeting_id, Attendees=[{"ExternalUserId": f"user-{i}"} for i in range(100)]
    )
    assert out["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert len(out["Attendees"]) == 100 and out["Errors"] == []
    one = chime.create_attendee(MeetingId=meeting_id, ExternalUserId="extra", Tags=[{"Key": "k", "Value": "v"}])
    assert one["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert set(one["Attendee"]) == {"ExternalUserId", "AttendeeId", "JoinToken"}

    seen, kwargs = [], {}
    while True:
        page = chime.list_attendees(MeetingId=meeting_id, **kwargs)
        assert len(page["Attendees"]) <= 99
        seen.extend(a["AttendeeId"] for a in page["Attendees"])
        if "NextToken" not in page:
            break
        kwargs = {"NextToken": page["NextToken"]}
    assert len(seen) == len(set(seen)) == 101

    with pytest.raises(chime.exceptions.BadRequestException):
        chime.list_attendees(MeetingId=meeting_id, MaxResults=100)
    with pytest.raises(chime.exceptions.BadRequestException):
        chime.list_attendees(MeetingId=meeting_id, NextToken="forged")
    with pytest.raises(chime.exceptions.NotFoundException):
        chime.list_attendees(MeetingId=str(uuid.uuid4()))
    with pytest.raises(chime.exceptions.BadRequestException):
        chime.list_attendees(MeetingId="not-a-guid")

    assert chime.delete_attendee(MeetingId=meeting_id, AttendeeId=one["Attendee"]["AttendeeId"])[
        "ResponseMetadata"
    ]["HTTPStatusCode"] == 204
    chime.delete_meeting(MeetingId=meeting_id)
    with pytest.raises(chime.exceptions.NotFoundException):
        chime.get_meeting(MeetingId=meeting_id)


def test_legacy_limits_and_tags(chime):
    meeting = chime.create_meeting_with_attendees(
        ClientRequestToken=str(uuid.uuid4()),
        Attendees=[{"ExternalUserId": f"u-{i}"} for i in range(10)],
    )
    assert meeting["ResponseMetadata"]["HTTPStatusCode"] == 201
    meeting_id = meeting["Meeting"]["MeetingId"]
    assert len(meeting["Attendees"]) == 10
    with pytest.raises(chime.exceptions.BadRequestException):
        chime.create_meeting_with_attendees(
            ClientRequestToken=str(uuid.uuid4()),
            Attendees=[{"ExternalUserId": f"u-{i}"} for i in range(11)],
        )
    chime.tag_meeting(MeetingId=meeting_id, Tags=[{"Key": "a", "Value": "b"}])
    assert chime.list_meeting_tags(MeetingId=meeting_id)["Tags"] == [{"Key": "a", "Value": "b"}]
    chime.untag_meeting(MeetingId=meeting_id, TagKeys=["a"])
    attendee_id = meeting["Attendees"][0]["AttendeeId"]
    chime.tag_attendee(MeetingId=meeting_id, AttendeeId=attendee_id, Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(10)])
    with pytest.raises(chime.exceptions.ResourceLimitExceededException):
        chime.tag_attendee(MeetingId=meeting_id, AttendeeId=attendee_id, Tags=[{"Key": "k10", "Value": "v"}])
    assert len(chime.list_attendee_tags(MeetingId=meeting_id, AttendeeId=attendee_id)["Tags"]) == 10
    listed = chime.list_meetings(MaxResults=99)
    assert meeting_id in [m["MeetingId"] for m in listed["Meetings"]]
    with pytest.raises(chime.exceptions.UnprocessableEntityException):
        chime.stop_meeting_transcription(MeetingId=meeting_id)


def test_legacy_unauthorized(endpoint):
    stranger = boto3.client(
        "chime",
        endpoint_url=f"{endpoint}/legacy",
        region_name="us-east-1",
        aws_access_key_id="AKIDSTRANGER",
        aws_secret_access_key="wrong",
        config=Config(retries={"total_max_attempts": 1}),
    )
    with pytest.raises(stranger.exceptions.UnauthorizedClientException):
        stranger.list_attendees(MeetingId=str(uuid.uuid4()))


def test_legacy_throttling_is_throttled_client_exception(teams_endpoint):
    from conftest import team_credentials

    one = boto3.client("chime", endpoint_url=f"{teams_endpoint}/legacy",
                       config=Config(retries={"total_max_attempts": 1}), **team_credentials("slow"))
    meeting_id = one.create_meeting(ClientRequestToken=str(uuid.uuid4()))["Meeting"]["MeetingId"]
    throttled = 0
    for _ in range(12):
        try:
            one.get_meeting(MeetingId=meeting_id)
        except one.exceptions.ThrottledClientException as error:
            assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 429
            throttled += 1
    assert throttled > 0
    # boto3 1.37.1's legacy retry mode (5 attempts) retries any 429 and gets through.
    retrying = boto3.client("chime", endpoint_url=f"{teams_endpoint}/legacy", **team_credentials("slow"))
    for _ in range(10):
        assert retrying.get_meeting(MeetingId=meeting_id)["Meeting"]["MeetingId"] == meeting_id
    reader = boto3.client("chime", endpoint_url=f"{teams_endpoint}/legacy",
                          config=Config(retries={"total_max_attempts": 1}), **team_credentials("reader"))
    with pytest.raises(reader.exceptions.ForbiddenException):
        reader.create_attendee(MeetingId=meeting_id, ExternalUserId="Zoë")


def test_legacy_media_capture_pipelines(endpoint, credentials, chime):
    """The legacy media capture operations: created with the global meeting ARN of the legacy
    documentation, read, listed a page at a time beside a pipeline made through the media
    pipelines API (the same pipelines), deleted."""
    from conftest import ACCOUNT_ID

    def capture(source_arn):
        return chime.create_media_capture_pipeline(
            SourceType="ChimeSdkMeeting",
            SourceArn=source_arn,
            SinkType="S3Bucket",
            SinkArn="arn:aws:s3:::legacy-recordings",
            ClientRequestToken=str(uuid.uuid4()),
            ChimeSdkMeetingConfiguration={
                "ArtifactsConfiguration": {
                    "Audio": {"MuxType": "AudioOnly"},
                    "Video": {"State": "Disabled"},
                    "Content": {"State": "Disabled"},
                }
            },
        )

    meeting_id = chime.create_meeting(ClientRequestToken=str(uuid.uuid4()))["Meeting"]["MeetingId"]
    created = capture(f"arn:aws:chime::{ACCOUNT_ID}:meeting:{meeting_id}")
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    pipeline = created["MediaCapturePipeline"]
    pipeline_id = pipeline["MediaPipelineId"]
    assert "MediaPipelineArn" not in pipeline
    assert pipeline["Status"] in ("Initializing", "InProgress")
    assert pipeline["CreatedTimestamp"].year >= 2026
    with pytest.raises(chime.exceptions.ResourceLimitExceededException):
        capture(f"arn:aws:chime::{ACCOUNT_ID}:meeting:{meeting_id}")
    with pytest.raises(chime.exceptions.BadRequestException, match="SourceArn"):
        capture(f"arn:aws:chime::999999999999:meeting:{meeting_id}")

    got = chime.get_media_capture_pipeline(MediaPipelineId=pipeline_id)["MediaCapturePipeline"]
    assert got["SinkArn"] == "arn:aws:s3:::legacy-recordings"
    assert got["ChimeSdkMeetingConfiguration"]["ArtifactsConfiguration"]["Audio"]["MuxType"] == "AudioOnly"

    # A second pipeline through the media pipelines API, of a meeting of the current API.
    meetings = boto3.client("chime-sdk-meetings", endpoint_url=endpoint,
                            config=Config(retries={"total_max_attempts": 1}), **credentials)
    pipelines = boto3.client("chime-sdk-media-pipelines", endpoint_url=endpoint,
                             config=Config(retries={"total_max_attempts": 1}), **credentials)
    meeting = meetings.create_meeting(ClientRequestToken=str(uuid.uuid4()), MediaRegion="us-east-1",
                                      ExternalMeetingId="legacy-capture")["Meeting"]
    other_id = pipelines.create_media_capture_pipeline(
        SourceType="ChimeSdkMeeting",
        SourceArn=meeting["MeetingArn"],
        SinkType="S3Bucket",
        SinkArn="arn:aws:s3:::legacy-recordings/current",
    )["MediaCapturePipeline"]["MediaPipelineId"]
    assert chime.get_media_capture_pipeline(MediaPipelineId=other_id)["MediaCapturePipeline"]["SourceArn"] == meeting["MeetingArn"]

    seen, kwargs = [], {}
    while True:
        page = chime.list_media_capture_pipelines(MaxResults=1, **kwargs)
        assert len(page["MediaCapturePipelines"]) <= 1
        seen.extend(p["MediaPipelineId"] for p in page["MediaCapturePipelines"])
        if "NextToken" not in page:
            break
        kwargs = {"NextToken": page["NextToken"]}
    assert {pipeline_id, other_id} <= set(seen) and len(seen) == len(set(seen))
    with pytest.raises(chime.exceptions.BadRequestException):
        chime.list_media_capture_pipelines(MaxResults=100)

    for each in (pipeline_id, other_id):
        deleted = chime.delete_media_capture_pipeline(MediaPipelineId=each)
        assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
        with pytest.raises(chime.exceptions.NotFoundException):
            chime.get_media_capture_pipeline(MediaPipelineId=each)
    with pytest.raises(pipelines.exceptions.NotFoundException):
        pipelines.get_media_capture_pipeline(MediaPipelineId=pipeline_id)
