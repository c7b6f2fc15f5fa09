//! The route table: one enum, one match. An operation is chosen from the method, the path shape
//! and the fixed `?operation=` literal the model puts in some request URIs.

use axum::http::Method;

use super::error::{ApiError, ErrorKind};
use super::namespace::Namespace;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    CreateMeeting,
    CreateMeetingWithAttendees,
    GetMeeting,
    ListMeetings,
    DeleteMeeting,
    CreateAttendee,
    BatchCreateAttendee,
    GetAttendee,
    ListAttendees,
    DeleteAttendee,
    UpdateAttendeeCapabilities,
    BatchUpdateAttendeeCapabilitiesExcept,
    TagResource,
    UntagResource,
    ListTagsForResource,
    StartMeetingTranscription,
    StopMeetingTranscription,
    TagMeeting,
    UntagMeeting,
    ListMeetingTags,
    TagAttendee,
    UntagAttendee,
    ListAttendeeTags,
    CreateMediaCapturePipeline,
    GetMediaCapturePipeline,
    ListMediaCapturePipelines,
    CreateMediaConcatenationPipeline,
    DeleteMediaCapturePipeline,
    GetMediaPipeline,
    ListMediaPipelines,
    DeleteMediaPipeline,
}

impl Operation {
    /// Every operation, for tables built over all of them (the known IAM actions).
    pub const ALL: [Operation; 31] = [
        Operation::CreateMeeting,
        Operation::CreateMeetingWithAttendees,
        Operation::GetMeeting,
        Operation::ListMeetings,
        Operation::DeleteMeeting,
        Operation::CreateAttendee,
        Operation::BatchCreateAttendee,
        Operation::GetAttendee,
        Operation::ListAttendees,
        Operation::DeleteAttendee,
        Operation::UpdateAttendeeCapabilities,
        Operation::BatchUpdateAttendeeCapabilitiesExcept,
        Operation::TagResource,
        Operation::UntagResource,
        Operation::ListTagsForResource,
        Operation::StartMeetingTranscription,
        Operation::StopMeetingTranscription,
        Operation::TagMeeting,
        Operation::UntagMeeting,
        Operation::ListMeetingTags,
        Operation::TagAttendee,
        Operation::UntagAttendee,
        Operation::ListAttendeeTags,
        Operation::CreateMediaCapturePipeline,
        Operation::GetMediaCapturePipeline,
        Operation::ListMediaCapturePipelines,
        Operation::CreateMediaConcatenationPipeline,
        Operation::DeleteMediaCapturePipeline,
        Operation::GetMediaPipeline,
        Operation::ListMediaPipelines,
        Operation::DeleteMediaPipeline,
    ];

    /// The operation's name as the models spell it.
    pub fn name(self) -> &'static str {
        use Operation::*;
        match self {
            CreateMeeting => "CreateMeeting",
            CreateMeetingWithAttendees => "CreateMeetingWithAttendees",
            GetMeeting => "GetMeeting",
            ListMeetings => "ListMeetings",
            DeleteMeeting => "DeleteMeeting",
            CreateAttendee => "CreateAttendee",
            BatchCreateAttendee => "BatchCreateAttendee",
            GetAttendee => "GetAttendee",
            ListAttendees => "ListAttendees",
            DeleteAttendee => "DeleteAttendee",
            UpdateAttendeeCapabilities => "UpdateAttendeeCapabilities",
            BatchUpdateAttendeeCapabilitiesExcept => "BatchUpdateAttendeeCapabilitiesExcept",
            TagResource => "TagResource",
            UntagResource => "UntagResource",
            ListTagsForResource => "ListTagsForResource",
            StartMeetingTranscription => "StartMeetingTranscription",
            StopMeetingTranscription => "StopMeetingTranscription",
            TagMeeting => "TagMeeting",
            UntagMeeting => "UntagMeeting",
            ListMeetingTags => "ListMeetingTags",
            TagAttendee => "TagAttendee",
            UntagAttendee => "UntagAttendee",
            ListAttendeeTags => "ListAttendeeTags",
            CreateMediaCapturePipeline => "CreateMediaCapturePipeline",
            GetMediaCapturePipeline => "GetMediaCapturePipeline",
            ListMediaCapturePipelines => "ListMediaCapturePipelines",
            CreateMediaConcatenationPipeline => "CreateMediaConcatenationPipeline",
            DeleteMediaCapturePipeline => "DeleteMediaCapturePipeline",
            GetMediaPipeline => "GetMediaPipeline",
            ListMediaPipelines => "ListMediaPipelines",
            DeleteMediaPipeline => "DeleteMediaPipeline",
        }
    }

    /// The IAM action a key needs for this operation, e.g. `chime:CreateAttendee` (the same in
    /// both namespaces, as both sign for `chime`).
    pub fn action(self) -> String {
        format!("chime:{}", self.name())
    }

    /// Looks an operation up by its model name, ignoring case.
    pub fn from_name(name: &str) -> Option<Operation> {
        Self::ALL
            .into_iter()
            .find(|operation| operation.name().eq_ignore_ascii_case(name))
    }
}

impl Operation {
    /// Whether the operation belongs to the media pipelines API.
    pub fn is_media_pipeline(self) -> bool {
        use Operation::*;
        matches!(
            self,
            CreateMediaCapturePipeline
                | GetMediaCapturePipeline
                | ListMediaCapturePipelines
                | CreateMediaConcatenationPipeline
                | DeleteMediaCapturePipeline
                | GetMediaPipeline
                | ListMediaPipelines
                | DeleteMediaPipeline
        )
    }

    /// Whether the legacy `chime` API has the operation too (its media capture operations,
    /// at `/media-capture-pipelines`).
    pub fn is_legacy_capture(self) -> bool {
        use Operation::*;
        matches!(
            self,
            CreateMediaCapturePipeline
                | GetMediaCapturePipeline
                | ListMediaCapturePipelines
                | DeleteMediaCapturePipeline
        )
    }
}

/// The media pipelines API's routes whose operations Carillon does not implement: live
/// connector, stream, insights, Kinesis video stream pools, speaker search and voice tone.
fn is_unimplemented_media_pipeline_route(first_segment: &str) -> bool {
    matches!(
        first_segment,
        "sdk-media-live-connector-pipelines"
            | "sdk-media-stream-pipelines"
            | "media-insights-pipeline-configurations"
            | "media-insights-pipeline-status"
            | "media-insights-pipelines"
            | "media-pipeline-kinesis-video-stream-pools"
    )
}

/// The first path segment of the legacy API's media capture operations.
const LEGACY_CAPTURE_PATH: &str = "media-capture-pipelines";

/// An operation with the path labels it addresses (still as sent; handlers validate them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub operation: Operation,
    pub meeting_id: Option<String>,
    pub attendee_id: Option<String>,
    /// The `{mediaPipelineId}` label of the media pipelines API's routes.
    pub media_pipeline_id: Option<String>,
}

use ErrorKind::*;

const COMMON: [ErrorKind; 5] = [
    BadRequest,
    Forbidden,
    Unauthorized,
    ServiceFailure,
    ServiceUnavailable,
];

impl Operation {
    /// Whether the namespace has this operation at all.
    pub fn in_namespace(self, namespace: Namespace) -> bool {
        use Operation::*;
        if self.is_media_pipeline() {
            return match namespace {
                Namespace::MediaPipelines => true,
                Namespace::Legacy => self.is_legacy_capture(),
                Namespace::Meetings => false,
            };
        }
        match namespace {
            Namespace::MediaPipelines => false,
            Namespace::Meetings => !matches!(
                self,
                ListMeetings
                    | TagMeeting
                    | UntagMeeting
                    | ListMeetingTags
                    | TagAttendee
                    | UntagAttendee
                    | ListAttendeeTags
            ),
            Namespace::Legacy => !matches!(
                self,
                UpdateAttendeeCapabilities | BatchUpdateAttendeeCapabilitiesExcept
            ),
        }
    }

    /// The errors the operation's model lists, beyond the five every operation has (legacy tag
    /// operations on ARNs are the exception: they list no throttling error).
    pub fn errors(self, namespace: Namespace) -> Vec<ErrorKind> {
        use Operation::*;
        let extra: &[ErrorKind] = match (namespace, self) {
            (
                Namespace::MediaPipelines,
                CreateMediaCapturePipeline | CreateMediaConcatenationPipeline,
            ) => &[Throttled, LimitExceeded],
            (Namespace::MediaPipelines, ListMediaCapturePipelines | ListMediaPipelines) => {
                &[Throttled, LimitExceeded]
            }
            (Namespace::MediaPipelines, DeleteMediaPipeline) => &[Throttled, NotFound, Conflict],
            (Namespace::MediaPipelines, _) => &[Throttled, NotFound],
            (Namespace::Meetings, CreateMeeting | CreateMeetingWithAttendees) => {
                &[Conflict, Throttled, LimitExceeded]
            }
            (Namespace::Meetings, CreateAttendee | BatchCreateAttendee) => {
                &[NotFound, Unprocessable, LimitExceeded, Throttled]
            }
            (
                Namespace::Meetings,
                UpdateAttendeeCapabilities | BatchUpdateAttendeeCapabilitiesExcept,
            ) => &[Conflict, NotFound, Throttled],
            (Namespace::Meetings, TagResource) => {
                &[LimitExceeded, Throttled, ResourceNotFound, TooManyTags]
            }
            (Namespace::Meetings, UntagResource | ListTagsForResource) => {
                &[LimitExceeded, Throttled, ResourceNotFound]
            }
            (Namespace::Meetings, StartMeetingTranscription) => {
                &[NotFound, LimitExceeded, Unprocessable, Throttled]
            }
            (Namespace::Meetings, StopMeetingTranscription) => {
                &[NotFound, Unprocessable, Throttled]
            }
            (Namespace::Meetings, _) => &[NotFound, Throttled],
            (
                Namespace::Legacy,
                CreateMeeting | CreateMeetingWithAttendees | CreateMediaCapturePipeline,
            ) => &[LimitExceeded, Throttled],
            (Namespace::Legacy, ListMeetings | ListMediaCapturePipelines) => &[Throttled],
            (
                Namespace::Legacy,
                CreateAttendee | BatchCreateAttendee | TagMeeting | TagAttendee,
            ) => &[NotFound, LimitExceeded, Throttled],
            (Namespace::Legacy, TagResource | UntagResource | ListTagsForResource) => &[NotFound],
            (Namespace::Legacy, StartMeetingTranscription) => {
                &[NotFound, LimitExceeded, Throttled, Unprocessable]
            }
            (Namespace::Legacy, StopMeetingTranscription) => &[NotFound, Throttled, Unprocessable],
            (Namespace::Legacy, _) => &[NotFound, Throttled],
        };
        COMMON.iter().chain(extra).copied().collect()
    }
}

/// Picks the operation for a request. `segments` are the percent-decoded path segments after
/// the namespace prefix; `operation_literal` is the value of the `operation` query parameter.
pub fn route(
    namespace: Namespace,
    method: &Method,
    segments: &[String],
    operation_literal: Option<&str>,
) -> Result<Route, ApiError> {
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let operation = operation_for(&segs, method.as_str(), operation_literal)?;
    // The media capture operations that both the legacy API and the media pipelines API have
    // live at different paths in each: each namespace serves them at its own.
    let legacy_capture_path = segs.first() == Some(&LEGACY_CAPTURE_PATH);
    let at_own_path =
        !operation.is_media_pipeline() || legacy_capture_path == (namespace == Namespace::Legacy);
    if !operation.in_namespace(namespace) || !at_own_path {
        let other = match namespace {
            _ if legacy_capture_path => {
                "the legacy chime API (endpoint /legacy); the chime-sdk-media-pipelines API \
                 (endpoint /) has it at /sdk-media-capture-pipelines"
            }
            _ if operation.is_media_pipeline() => "the chime-sdk-media-pipelines API (endpoint /)",
            Namespace::Meetings => "the legacy chime API (endpoint /legacy)",
            Namespace::Legacy | Namespace::MediaPipelines => {
                "the chime-sdk-meetings API (endpoint /)"
            }
        };
        return Err(ApiError::bad_request(format!(
            "{operation:?} is only part of {other}"
        )));
    }
    let label = |i: usize| segs.get(i).map(|s| s.to_string());
    let has_meeting = segs.first() == Some(&"meetings") && segs.len() >= 2;
    let has_attendee = has_meeting
        && segs.get(2) == Some(&"attendees")
        && segs.len() >= 4
        && operation != Operation::BatchUpdateAttendeeCapabilitiesExcept;
    let has_pipeline = segs
        .first()
        .is_some_and(|s| s.starts_with("sdk-media-") || *s == LEGACY_CAPTURE_PATH)
        && segs.len() == 2;
    Ok(Route {
        operation,
        meeting_id: if has_meeting { label(1) } else { None },
        attendee_id: if has_attendee { label(3) } else { None },
        media_pipeline_id: if has_pipeline { label(1) } else { None },
    })
}

/// The operation a path shape, method and `?operation=` literal name, in either namespace. A
/// known path with an unknown literal is told apart from a path that names nothing.
fn operation_for(segs: &[&str], m: &str, literal: Option<&str>) -> Result<Operation, ApiError> {
    use Operation::*;
    let unknown_literal = || {
        ApiError::bad_request(format!(
            "Unknown operation '{}' for {m} /{}",
            literal.unwrap_or_default(),
            segs.join("/")
        ))
    };
    let operation = match (segs, m, literal) {
        (["meetings"], "POST", None) => CreateMeeting,
        (["meetings"], "POST", Some("create-attendees")) => CreateMeetingWithAttendees,
        (["meetings"], "GET", None) => ListMeetings,
        (["meetings", _], "GET", None) => GetMeeting,
        (["meetings", _], "DELETE", None) => DeleteMeeting,
        (["meetings", _, "attendees"], "POST", None) => CreateAttendee,
        (["meetings", _, "attendees"], "POST", Some("batch-create")) => BatchCreateAttendee,
        (["meetings", _, "attendees"], "GET", None) => ListAttendees,
        (["meetings", _, "attendees", "capabilities"], "PUT", Some("batch-update-except")) => {
            BatchUpdateAttendeeCapabilitiesExcept
        }
        (["meetings", _, "attendees", _], "GET", None) => GetAttendee,
        (["meetings", _, "attendees", _], "DELETE", None) => DeleteAttendee,
        (["meetings", _, "attendees", _, "capabilities"], "PUT", None) => {
            UpdateAttendeeCapabilities
        }
        (["meetings", _, "attendees", _, "tags"], "POST", Some("add")) => TagAttendee,
        (["meetings", _, "attendees", _, "tags"], "POST", Some("delete")) => UntagAttendee,
        (["meetings", _, "attendees", _, "tags"], "GET", None) => ListAttendeeTags,
        (["meetings", _, "tags"], "POST", Some("add")) => TagMeeting,
        (["meetings", _, "tags"], "POST", Some("delete")) => UntagMeeting,
        (["meetings", _, "tags"], "GET", None) => ListMeetingTags,
        (["meetings", _, "transcription"], "POST", Some("start")) => StartMeetingTranscription,
        (["meetings", _, "transcription"], "POST", Some("stop")) => StopMeetingTranscription,
        (["tags"], "POST", Some("tag-resource")) => TagResource,
        (["tags"], "POST", Some("untag-resource")) => UntagResource,
        (["tags"], "GET", None) => ListTagsForResource,
        (["sdk-media-capture-pipelines"], "POST", None) => CreateMediaCapturePipeline,
        (["sdk-media-capture-pipelines"], "GET", None) => ListMediaCapturePipelines,
        (["sdk-media-capture-pipelines", _], "GET", None) => GetMediaCapturePipeline,
        (["sdk-media-capture-pipelines", _], "DELETE", None) => DeleteMediaCapturePipeline,
        (["sdk-media-concatenation-pipelines"], "POST", None) => CreateMediaConcatenationPipeline,
        (["sdk-media-pipelines"], "GET", None) => ListMediaPipelines,
        (["sdk-media-pipelines", _], "GET", None) => GetMediaPipeline,
        (["sdk-media-pipelines", _], "DELETE", None) => DeleteMediaPipeline,
        (["media-capture-pipelines"], "POST", None) => CreateMediaCapturePipeline,
        (["media-capture-pipelines"], "GET", None) => ListMediaCapturePipelines,
        (["media-capture-pipelines", _], "GET", None) => GetMediaCapturePipeline,
        (["media-capture-pipelines", _], "DELETE", None) => DeleteMediaCapturePipeline,
        ([first, ..], _, _) if is_unimplemented_media_pipeline_route(first) => {
            return Err(ApiError::bad_request(format!(
                "{m} /{} is an operation of the chime-sdk-media-pipelines API that Carillon does \
                 not implement: it records meetings with media capture pipelines \
                 (CreateMediaCapturePipeline) and serves Get/List/Delete for them; see the \
                 README's list of what is not implemented",
                segs.join("/")
            )));
        }
        (
            ["meetings"]
            | ["meetings", _]
            | ["meetings", _, "attendees" | "tags" | "transcription"]
            | ["meetings", _, "attendees", _]
            | ["meetings", _, "attendees", _, "capabilities" | "tags"]
            | ["tags"],
            _,
            Some(_),
        ) => return Err(unknown_literal()),
        _ => {
            return Err(ApiError::bad_request(format!(
                "No operation matches {m} /{}",
                segs.join("/")
            )));
        }
    };
    Ok(operation)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(path: &str) -> Vec<String> {
        path.split('/')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }

    fn op(
        ns: Namespace,
        method: Method,
        path: &str,
        literal: Option<&str>,
    ) -> Result<Operation, ApiError> {
        route(ns, &method, &segs(path), literal).map(|r| r.operation)
    }

    #[test]
    fn routes_every_sdk_operation() {
        let ns = Namespace::Meetings;
        assert_eq!(
            op(ns, Method::POST, "/meetings", None),
            Ok(Operation::CreateMeeting)
        );
        assert_eq!(
            op(ns, Method::POST, "/meetings", Some("create-attendees")),
            Ok(Operation::CreateMeetingWithAttendees)
        );
        assert_eq!(
            op(ns, Method::GET, "/meetings/m", None),
            Ok(Operation::GetMeeting)
        );
        assert_eq!(
            op(ns, Method::DELETE, "/meetings/m", None),
            Ok(Operation::DeleteMeeting)
        );
        assert_eq!(
            op(ns, Method::POST, "/meetings/m/attendees", None),
            Ok(Operation::CreateAttendee)
        );
        assert_eq!(
            op(
                ns,
                Method::POST,
                "/meetings/m/attendees",
                Some("batch-create")
            ),
            Ok(Operation::BatchCreateAttendee)
        );
        assert_eq!(
            op(ns, Method::GET, "/meetings/m/attendees", None),
            Ok(Operation::ListAttendees)
        );
        assert_eq!(
            op(ns, Method::GET, "/meetings/m/attendees/a", None),
            Ok(Operation::GetAttendee)
        );
        assert_eq!(
            op(ns, Method::DELETE, "/meetings/m/attendees/a", None),
            Ok(Operation::DeleteAttendee)
        );
        assert_eq!(
            op(
                ns,
                Method::PUT,
                "/meetings/m/attendees/a/capabilities",
                None
            ),
            Ok(Operation::UpdateAttendeeCapabilities)
        );
        assert_eq!(
            op(
                ns,
                Method::PUT,
                "/meetings/m/attendees/capabilities",
                Some("batch-update-except")
            ),
            Ok(Operation::BatchUpdateAttendeeCapabilitiesExcept)
        );
        assert_eq!(
            op(ns, Method::POST, "/tags", Some("tag-resource")),
            Ok(Operation::TagResource)
        );
        assert_eq!(
            op(ns, Method::POST, "/tags", Some("untag-resource")),
            Ok(Operation::UntagResource)
        );
        assert_eq!(
            op(ns, Method::GET, "/tags", None),
            Ok(Operation::ListTagsForResource)
        );
        assert_eq!(
            op(ns, Method::POST, "/meetings/m/transcription", Some("start")),
            Ok(Operation::StartMeetingTranscription)
        );
        assert_eq!(
            op(ns, Method::POST, "/meetings/m/transcription", Some("stop")),
            Ok(Operation::StopMeetingTranscription)
        );
    }

    #[test]
    fn legacy_only_operations_stay_in_legacy() {
        assert_eq!(
            op(Namespace::Legacy, Method::GET, "/meetings", None),
            Ok(Operation::ListMeetings)
        );
        assert!(op(Namespace::Meetings, Method::GET, "/meetings", None).is_err());
        assert_eq!(
            op(
                Namespace::Legacy,
                Method::POST,
                "/meetings/m/tags",
                Some("add")
            ),
            Ok(Operation::TagMeeting)
        );
        assert_eq!(
            op(
                Namespace::Legacy,
                Method::GET,
                "/meetings/m/attendees/a/tags",
                None
            ),
            Ok(Operation::ListAttendeeTags)
        );
        assert!(
            op(
                Namespace::Legacy,
                Method::PUT,
                "/meetings/m/attendees/a/capabilities",
                None
            )
            .is_err()
        );
    }

    #[test]
    fn unknown_literals_and_paths_are_bad_requests() {
        let err = op(
            Namespace::Meetings,
            Method::POST,
            "/meetings",
            Some("explode"),
        )
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadRequest);
        assert!(err.message.contains("explode"));
        assert!(op(Namespace::Meetings, Method::GET, "/nothing/here", None).is_err());
        assert!(op(Namespace::Meetings, Method::PATCH, "/meetings/m", None).is_err());
    }

    #[test]
    fn labels_are_extracted() {
        let r = route(
            Namespace::Meetings,
            &Method::GET,
            &segs("/meetings/m1/attendees/a1"),
            None,
        )
        .expect("routes");
        assert_eq!(r.meeting_id.as_deref(), Some("m1"));
        assert_eq!(r.attendee_id.as_deref(), Some("a1"));
        let r = route(
            Namespace::Meetings,
            &Method::PUT,
            &segs("/meetings/m1/attendees/capabilities"),
            Some("batch-update-except"),
        )
        .expect("routes");
        assert_eq!(r.attendee_id, None);
    }

    #[test]
    fn every_operation_lists_the_common_errors() {
        for ns in [Namespace::Meetings, Namespace::Legacy] {
            assert!(
                Operation::GetMeeting
                    .errors(ns)
                    .contains(&ErrorKind::Unauthorized)
            );
            assert!(
                Operation::ListAttendees
                    .errors(ns)
                    .contains(&ErrorKind::NotFound)
            );
        }
        assert!(
            !Operation::CreateMeeting
                .errors(Namespace::Meetings)
                .contains(&ErrorKind::NotFound)
        );
        assert!(
            Operation::TagResource
                .errors(Namespace::Meetings)
                .contains(&ErrorKind::TooManyTags)
        );
    }

    #[test]
    fn routes_the_media_pipelines_capture_operations_and_names_the_rest() {
        let ns = Namespace::MediaPipelines;
        let id = "0b6d8a6e-5f0c-4b4c-9a43-1a2b3c4d5e6f";
        for (method, path, operation) in [
            (
                Method::POST,
                "/sdk-media-capture-pipelines".to_string(),
                Operation::CreateMediaCapturePipeline,
            ),
            (
                Method::GET,
                "/sdk-media-capture-pipelines".to_string(),
                Operation::ListMediaCapturePipelines,
            ),
            (
                Method::GET,
                format!("/sdk-media-capture-pipelines/{id}"),
                Operation::GetMediaCapturePipeline,
            ),
            (
                Method::DELETE,
                format!("/sdk-media-capture-pipelines/{id}"),
                Operation::DeleteMediaCapturePipeline,
            ),
            (
                Method::GET,
                "/sdk-media-pipelines".to_string(),
                Operation::ListMediaPipelines,
            ),
            (
                Method::GET,
                format!("/sdk-media-pipelines/{id}"),
                Operation::GetMediaPipeline,
            ),
            (
                Method::DELETE,
                format!("/sdk-media-pipelines/{id}"),
                Operation::DeleteMediaPipeline,
            ),
        ] {
            let route = route(ns, &method, &segs(&path), None).expect("routed");
            assert_eq!(route.operation, operation, "{method} {path}");
            let labelled = path.matches('/').count() == 2;
            assert_eq!(route.media_pipeline_id.is_some(), labelled, "{path}");
        }
        assert_eq!(
            op(ns, Method::POST, "/sdk-media-concatenation-pipelines", None),
            Ok(Operation::CreateMediaConcatenationPipeline)
        );
        let unimplemented = op(
            ns,
            Method::POST,
            "/sdk-media-live-connector-pipelines",
            None,
        )
        .expect_err("not implemented");
        assert!(unimplemented.message.contains("does not implement"));
        assert!(op(ns, Method::POST, "/media-insights-pipelines", None).is_err());
        let legacy = op(
            Namespace::Legacy,
            Method::POST,
            "/sdk-media-capture-pipelines",
            None,
        )
        .expect_err("not a legacy operation");
        assert!(legacy.message.contains("chime-sdk-media-pipelines"));
    }

    #[test]
    fn the_legacy_api_has_its_media_capture_operations_at_its_own_paths() {
        let id = "0b6d8a6e-5f0c-4b4c-9a43-1a2b3c4d5e6f";
        for (method, path, operation) in [
            (
                Method::POST,
                "/media-capture-pipelines".to_string(),
                Operation::CreateMediaCapturePipeline,
            ),
            (
                Method::GET,
                "/media-capture-pipelines".to_string(),
                Operation::ListMediaCapturePipelines,
            ),
            (
                Method::GET,
                format!("/media-capture-pipelines/{id}"),
                Operation::GetMediaCapturePipeline,
            ),
            (
                Method::DELETE,
                format!("/media-capture-pipelines/{id}"),
                Operation::DeleteMediaCapturePipeline,
            ),
        ] {
            let route = route(Namespace::Legacy, &method, &segs(&path), None).expect("routed");
            assert_eq!(route.operation, operation, "{method} {path}");
            let labelled = path.matches('/').count() == 2;
            assert_eq!(route.media_pipeline_id.is_some(), labelled, "{path}");
            // Not at the root, whose media pipelines API has them under /sdk-media-….
            let elsewhere = op(Namespace::Meetings, method.clone(), &path, None)
                .expect_err("a legacy path at the root");
            assert!(
                elsewhere.message.contains("/legacy"),
                "{}",
                elsewhere.message
            );
        }
        for path in ["/sdk-media-pipelines", "/sdk-media-capture-pipelines"] {
            assert!(
                op(Namespace::Legacy, Method::GET, path, None).is_err(),
                "{path}"
            );
        }
        assert_eq!(
            Operation::CreateMediaCapturePipeline.errors(Namespace::Legacy),
            [
                ErrorKind::BadRequest,
                ErrorKind::Forbidden,
                ErrorKind::Unauthorized,
                ErrorKind::ServiceFailure,
                ErrorKind::ServiceUnavailable,
                ErrorKind::LimitExceeded,
                ErrorKind::Throttled
            ]
        );
        assert!(
            !Operation::ListMediaCapturePipelines
                .errors(Namespace::Legacy)
                .contains(&ErrorKind::NotFound)
        );
    }
}
