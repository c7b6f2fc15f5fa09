//! Meeting event notifications in the shape the real service sends them to EventBridge, SNS and
//! SQS (`spec/behaviour.md` §3): an envelope with `source: "aws.chime"`, `detail-type: "Chime
//! Meeting State Change"`, and a `detail` naming the event type, the meeting and, for attendee
//! events, the attendee.

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    MeetingStarted,
    MeetingEnded,
    AttendeeAdded,
    AttendeeDeleted,
    AttendeeAuthorized,
    AttendeeJoined,
    AttendeeLeft,
    AttendeeDropped,
    AttendeeVideoStarted,
    AttendeeVideoStopped,
    AttendeeContentJoined,
    AttendeeContentLeft,
    AttendeeContentDropped,
    AttendeeContentVideoStarted,
    AttendeeContentVideoStopped,
}

impl EventType {
    pub fn name(self) -> &'static str {
        match self {
            Self::MeetingStarted => "chime:MeetingStarted",
            Self::MeetingEnded => "chime:MeetingEnded",
            Self::AttendeeAdded => "chime:AttendeeAdded",
            Self::AttendeeDeleted => "chime:AttendeeDeleted",
            Self::AttendeeAuthorized => "chime:AttendeeAuthorized",
            Self::AttendeeJoined => "chime:AttendeeJoined",
            Self::AttendeeLeft => "chime:AttendeeLeft",
            Self::AttendeeDropped => "chime:AttendeeDropped",
            Self::AttendeeVideoStarted => "chime:AttendeeVideoStarted",
            Self::AttendeeVideoStopped => "chime:AttendeeVideoStopped",
            Self::AttendeeContentJoined => "chime:AttendeeContentJoined",
            Self::AttendeeContentLeft => "chime:AttendeeContentLeft",
            Self::AttendeeContentDropped => "chime:AttendeeContentDropped",
            Self::AttendeeContentVideoStarted => "chime:AttendeeContentVideoStarted",
            Self::AttendeeContentVideoStopped => "chime:AttendeeContentVideoStopped",
        }
    }

    /// Joined, left and dropped say over which network transport.
    fn has_network_type(self) -> bool {
        matches!(
            self,
            Self::AttendeeJoined
                | Self::AttendeeLeft
                | Self::AttendeeDropped
                | Self::AttendeeContentJoined
                | Self::AttendeeContentLeft
                | Self::AttendeeContentDropped
        )
    }
}

/// What an event says about its meeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingFacts<'a> {
    pub account_id: &'a str,
    pub control_region: &'a str,
    pub meeting_id: &'a str,
    pub external_meeting_id: Option<&'a str>,
    pub media_region: &'a str,
}

/// What an attendee event says about its attendee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttendeeFacts<'a> {
    pub attendee_id: &'a str,
    pub external_user_id: &'a str,
}

/// `YYYY-MM-DDTHH:MM:SSZ` of seconds since the epoch.
pub fn iso_time(unix: i64) -> String {
    super::civil::iso8601(unix)
}

/// The EventBridge-shaped envelope of one event at `timestamp_ms` (the server's clock), as the
/// JSON text the outbox keeps. Typed rather than built as a `serde_json::Value` (a map per
/// object): events are written by the store's single writer thread, once per attendee created.
/// Members come in EventBridge's order.
pub fn envelope(
    kind: EventType,
    meeting: &MeetingFacts<'_>,
    attendee: Option<&AttendeeFacts<'_>>,
    timestamp_ms: i64,
) -> String {
    let detail = Detail {
        version: "0",
        event_type: kind.name(),
        timestamp: timestamp_ms,
        meeting_id: meeting.meeting_id,
        external_meeting_id: meeting.external_meeting_id,
        media_region: meeting.media_region,
        attendee_id: attendee.map(|a| a.attendee_id),
        external_user_id: attendee.map(|a| a.external_user_id),
        network_type: (attendee.is_some() && kind.has_network_type()).then_some("Voip"),
    };
    wrap("Chime Meeting State Change", meeting, timestamp_ms, detail)
}

/// An event's `detail` in the EventBridge envelope, as JSON text.
fn wrap<D: Serialize>(
    detail_type: &'static str,
    meeting: &MeetingFacts<'_>,
    timestamp_ms: i64,
    detail: D,
) -> String {
    wrap_from("aws.chime", detail_type, meeting, timestamp_ms, detail)
}

/// The same envelope from another `source`: Carillon's own events say `carillon`.
fn wrap_from<D: Serialize>(
    source: &'static str,
    detail_type: &'static str,
    meeting: &MeetingFacts<'_>,
    timestamp_ms: i64,
    detail: D,
) -> String {
    let envelope = Envelope {
        version: "0",
        id: crate::domain::ids::new_id(),
        detail_type,
        source,
        account: meeting.account_id,
        time: iso_time(timestamp_ms.div_euclid(1000)),
        region: meeting.control_region,
        resources: [],
        detail,
    };
    // Only strings and numbers: serializing cannot fail.
    serde_json::to_string(&envelope).unwrap_or_default()
}

/// A media pipeline's lifecycle events ("Chime Media Pipeline State Change").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipelineEventType {
    /// The pipeline started capturing (or concatenating).
    InProgress,
    /// It stopped as asked, or its meeting ended: everything it wrote is in the bucket.
    Deleted,
    /// It failed and will not recover.
    PermanentFailure,
    /// Its sink refused a write; it is retrying.
    TemporaryFailure,
}

impl PipelineEventType {
    pub fn name(self) -> &'static str {
        match self {
            Self::InProgress => "chime:MediaPipelineInProgress",
            Self::Deleted => "chime:MediaPipelineDeleted",
            Self::PermanentFailure => "chime:MediaPipelinePermanentFailure",
            Self::TemporaryFailure => "chime:MediaPipelineTemporaryFailure",
        }
    }

    /// The event a pipeline's move to `status` announces, if any.
    pub fn for_status(status: &str) -> Option<PipelineEventType> {
        match status {
            "InProgress" => Some(Self::InProgress),
            "Stopped" => Some(Self::Deleted),
            "Failed" => Some(Self::PermanentFailure),
            _ => None,
        }
    }
}

/// The EventBridge-shaped envelope of a media pipeline event: the meeting's facts and the
/// pipeline id, as AWS's media pipeline events carry them.
pub fn pipeline_envelope(
    kind: PipelineEventType,
    meeting: &MeetingFacts<'_>,
    media_pipeline_id: &str,
    timestamp_ms: i64,
) -> String {
    let detail = PipelineDetail {
        version: "0",
        event_type: kind.name(),
        timestamp: timestamp_ms,
        meeting_id: meeting.meeting_id,
        external_meeting_id: meeting.external_meeting_id,
        media_pipeline_id,
        media_region: meeting.media_region,
    };
    wrap(
        "Chime Media Pipeline State Change",
        meeting,
        timestamp_ms,
        detail,
    )
}

/// A meeting's live transcription changing state (`chime:TranscriptionStarted`, …): what the
/// event says beyond the meeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscriptionEvent {
    pub event_type: &'static str,
    /// Where AWS would transcribe (the settings' Region, else the meeting's media region).
    pub region: String,
    /// The TranscriptionConfiguration in force, as the JSON text the Start was given.
    pub configuration: String,
    /// Why it failed or was interrupted.
    pub message: Option<String>,
    pub at_ms: i64,
}

/// The EventBridge-shaped envelope of a transcription event: a meeting event whose detail also
/// names the transcription region and configuration, as AWS documents them.
pub fn transcription_envelope(meeting: &MeetingFacts<'_>, event: &TranscriptionEvent) -> String {
    let detail = TranscriptionDetail {
        version: "0",
        event_type: event.event_type,
        timestamp: event.at_ms,
        meeting_id: meeting.meeting_id,
        external_meeting_id: meeting.external_meeting_id,
        media_region: meeting.media_region,
        transcription_region: &event.region,
        transcription_configuration: &event.configuration,
        message: event.message.as_deref(),
    };
    wrap("Chime Meeting State Change", meeting, event.at_ms, detail)
}

/// The event type of a meeting taken over by another node. Carillon's own, in its namespace:
/// AWS has no such event (Chime's media placement is not public).
pub const MEETING_MOVED: &str = "carillon:MeetingMoved";

/// The envelope of a meeting that moved from the node at `from` to the node at `to` (failover,
/// after `from` stopped beating): source `carillon`, detail-type "Carillon Meeting State
/// Change", and a detail shaped as Chime's meeting events are, with the two nodes' URLs.
pub fn moved_envelope(meeting: &MeetingFacts<'_>, from: &str, to: &str, at_ms: i64) -> String {
    let detail = MovedDetail {
        version: "0",
        event_type: MEETING_MOVED,
        timestamp: at_ms,
        meeting_id: meeting.meeting_id,
        external_meeting_id: meeting.external_meeting_id,
        media_region: meeting.media_region,
        from_node: from,
        to_node: to,
    };
    wrap_from(
        "carillon",
        "Carillon Meeting State Change",
        meeting,
        at_ms,
        detail,
    )
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MovedDetail<'a> {
    version: &'static str,
    event_type: &'static str,
    timestamp: i64,
    meeting_id: &'a str,
    external_meeting_id: Option<&'a str>,
    media_region: &'a str,
    from_node: &'a str,
    to_node: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TranscriptionDetail<'a> {
    version: &'static str,
    event_type: &'static str,
    timestamp: i64,
    meeting_id: &'a str,
    external_meeting_id: Option<&'a str>,
    media_region: &'a str,
    transcription_region: &'a str,
    transcription_configuration: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PipelineDetail<'a> {
    version: &'static str,
    event_type: &'static str,
    timestamp: i64,
    meeting_id: &'a str,
    external_meeting_id: Option<&'a str>,
    media_pipeline_id: &'a str,
    media_region: &'a str,
}

/// The EventBridge envelope, around a meeting's or a media pipeline's detail.
#[derive(Serialize)]
struct Envelope<'a, D> {
    version: &'static str,
    id: String,
    #[serde(rename = "detail-type")]
    detail_type: &'static str,
    source: &'static str,
    account: &'a str,
    time: String,
    region: &'a str,
    resources: [&'static str; 0],
    detail: D,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Detail<'a> {
    version: &'static str,
    event_type: &'static str,
    timestamp: i64,
    meeting_id: &'a str,
    /// `null` when the meeting has none, as before.
    external_meeting_id: Option<&'a str>,
    media_region: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    attendee_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    external_user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    network_type: Option<&'static str>,
}

/// The notification targets a meeting's NotificationsConfiguration names (SNS topic, SQS queue,
/// Lambda function ARNs).
pub fn targets(notifications: Option<&Value>) -> Vec<String> {
    let Some(Value::Object(fields)) = notifications else {
        return Vec::new();
    };
    ["SnsTopicArn", "SqsQueueArn", "LambdaFunctionArn"]
        .iter()
        .filter_map(|name| fields.get(*name).and_then(Value::as_str))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipeline_event_names_its_meeting_and_pipeline() {
        let meeting = MeetingFacts {
            account_id: "111122223333",
            control_region: "us-east-1",
            meeting_id: "m-1",
            external_meeting_id: Some("Zoë's standup"),
            media_region: "eu-west-1",
        };
        let body = pipeline_envelope(
            PipelineEventType::InProgress,
            &meeting,
            "p-1",
            1_627_503_649_251,
        );
        let event: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(event["detail-type"], "Chime Media Pipeline State Change");
        assert_eq!(event["time"], "2021-07-28T20:20:49Z");
        let detail = &event["detail"];
        assert_eq!(detail["eventType"], "chime:MediaPipelineInProgress");
        assert_eq!(detail["mediaPipelineId"], "p-1");
        assert_eq!(detail["externalMeetingId"], "Zoë's standup");
        assert_eq!(detail["mediaRegion"], "eu-west-1");
        assert_eq!(detail["timestamp"], 1_627_503_649_251_i64);
        assert_eq!(
            PipelineEventType::for_status("Stopped"),
            Some(PipelineEventType::Deleted)
        );
        assert_eq!(PipelineEventType::for_status("Initializing"), None);
    }
    use serde_json::json;

    #[test]
    fn attendee_events_carry_the_attendee_and_the_transport() {
        let meeting = MeetingFacts {
            account_id: "111122223333",
            control_region: "us-east-1",
            meeting_id: "m-1",
            external_meeting_id: Some("standup"),
            media_region: "eu-central-1",
        };
        let attendee = AttendeeFacts {
            attendee_id: "a-1",
            external_user_id: "José",
        };
        let parse = |text: String| -> Value { serde_json::from_str(&text).expect("JSON") };
        let joined = parse(envelope(
            EventType::AttendeeJoined,
            &meeting,
            Some(&attendee),
            1_795_819_438_123,
        ));
        assert_eq!(joined["source"], "aws.chime");
        assert_eq!(joined["detail-type"], "Chime Meeting State Change");
        assert_eq!(joined["time"], "2026-11-27T22:43:58Z");
        assert_eq!(joined["account"], "111122223333");
        assert_eq!(joined["detail"]["eventType"], "chime:AttendeeJoined");
        assert_eq!(joined["detail"]["timestamp"], 1_795_819_438_123i64);
        assert_eq!(joined["detail"]["externalUserId"], "José");
        assert_eq!(joined["detail"]["networkType"], "Voip");
        let added = parse(envelope(
            EventType::AttendeeAdded,
            &meeting,
            Some(&attendee),
            0,
        ));
        assert!(added["detail"].get("networkType").is_none());
        let started = parse(envelope(EventType::MeetingStarted, &meeting, None, 0));
        assert!(started["detail"].get("attendeeId").is_none());
        assert!(started["detail"]["externalMeetingId"] == "standup");
        assert_eq!(started["resources"], json!([]));
        assert_eq!(started["version"], "0");
        let id = started["id"].as_str().expect("id");
        assert_eq!(
            uuid::Uuid::parse_str(id).map(|u| u.get_version_num()),
            Ok(4)
        );
        assert_eq!(started["detail"]["mediaRegion"], "eu-central-1");
    }

    #[test]
    fn targets_come_from_the_notifications_configuration() {
        let config = json!({"SqsQueueArn": "arn:aws:sqs:us-east-1:1:q", "SnsTopicArn": "arn:aws:sns:us-east-1:1:t"});
        assert_eq!(
            targets(Some(&config)),
            vec!["arn:aws:sns:us-east-1:1:t", "arn:aws:sqs:us-east-1:1:q"]
        );
        assert!(targets(None).is_empty());
    }
}
