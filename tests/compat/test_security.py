"""Current boto3 against a server with a keys file: two teams isolated, a read-only key, a
throttled burst that default retries get through, names with accents, and fault injection
driving a client's retry loop."""

import uuid

import boto3
import botocore
import pytest
from botocore.config import Config

from conftest import carillon_admin, team_credentials

ONE_ATTEMPT = Config(retries={"total_max_attempts": 1})


def client(endpoint, name, config=ONE_ATTEMPT):
    return boto3.client("chime-sdk-meetings", endpoint_url=endpoint, config=config, **team_credentials(name))


def new_meeting(c):
    return c.create_meeting(MediaRegion="us-east-1", ExternalMeetingId=f"ext-{uuid.uuid4().hex[:8]}")["Meeting"]


def test_teams_cannot_see_each_other(teams_endpoint):
    alice, bob = client(teams_endpoint, "alice"), client(teams_endpoint, "bob")
    meeting = new_meeting(alice)
    attendee = alice.create_attendee(MeetingId=meeting["MeetingId"], ExternalUserId="José")["Attendee"]
    assert attendee["ExternalUserId"] == "José"
    with pytest.raises(bob.exceptions.NotFoundException):
        bob.get_meeting(MeetingId=meeting["MeetingId"])
    with pytest.raises(bob.exceptions.NotFoundException):
        bob.get_attendee(MeetingId=meeting["MeetingId"], AttendeeId=attendee["AttendeeId"])
    # DeleteMeeting is idempotent: to bob, alice's meeting is "already ended" (204, no change).
    bob.delete_meeting(MeetingId=meeting["MeetingId"])
    assert alice.get_meeting(MeetingId=meeting["MeetingId"])["Meeting"]["MeetingId"] == meeting["MeetingId"]


def test_a_read_only_key_gets_403_on_writes(teams_endpoint):
    alice, reader = client(teams_endpoint, "alice"), client(teams_endpoint, "reader")
    meeting = new_meeting(alice)
    assert reader.list_attendees(MeetingId=meeting["MeetingId"])["Attendees"] == []
    with pytest.raises(reader.exceptions.ForbiddenException) as raised:
        reader.create_attendee(MeetingId=meeting["MeetingId"], ExternalUserId="Zoë")
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "chime:CreateAttendee" in raised.value.response["Error"]["Message"]


def test_a_burst_is_throttled_and_default_retries_get_through(teams_endpoint):
    slow = client(teams_endpoint, "slow")
    meeting = new_meeting(slow)
    throttled = 0
    for _ in range(12):
        try:
            slow.get_meeting(MeetingId=meeting["MeetingId"])
        except slow.exceptions.ThrottlingException as error:
            assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 429
            throttled += 1
    assert throttled > 0
    # boto3's default (standard mode, 3 attempts, backoff) rides over the throttling.
    retrying = client(teams_endpoint, "slow", config=Config())
    for _ in range(10):
        assert retrying.get_meeting(MeetingId=meeting["MeetingId"])["Meeting"]["MeetingId"] == meeting["MeetingId"]


def test_a_retry_loop_against_injected_faults(teams_endpoint):
    """The recipe in docs/testing.md: make the next two CreateAttendee calls fail with a modelled 503,
    and check that the application's retry loop (here boto3's own) still succeeds."""
    alice = client(teams_endpoint, "alice", config=Config(retries={"mode": "standard", "total_max_attempts": 3}))
    meeting = new_meeting(alice)
    status, armed = carillon_admin(teams_endpoint, "POST", "/_carillon/faults", {
        "operation": "CreateAttendee", "error": "ServiceUnavailableException", "count": 2,
    })
    assert status == 201 and armed["fault"]["remaining"] == 2
    created = alice.create_attendee(MeetingId=meeting["MeetingId"], ExternalUserId="Zoë")
    assert created["ResponseMetadata"]["RetryAttempts"] == 2
    status, listed = carillon_admin(teams_endpoint, "GET", "/_carillon/faults")
    assert listed["faults"] == []

    one_shot = client(teams_endpoint, "alice")
    carillon_admin(teams_endpoint, "POST", "/_carillon/faults", {
        "operation": "GetMeeting", "error": "NotFoundException", "count": 1,
    })
    with pytest.raises(one_shot.exceptions.NotFoundException):
        one_shot.get_meeting(MeetingId=meeting["MeetingId"])
    assert one_shot.get_meeting(MeetingId=meeting["MeetingId"])["Meeting"]["MeetingId"] == meeting["MeetingId"]
