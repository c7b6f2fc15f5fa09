//! The HTTP API: both namespaces on one listener.
//!
//! One dispatcher takes every request: it picks the namespace from the path prefix, buffers the
//! body under a limit, verifies the SigV4 signature, routes to an `Operation`, runs the thin
//! handler and renders the result or the error in that namespace's wire form.

pub mod dto;
pub mod error;
pub mod input;
pub mod operation;

pub(crate) mod attendees;
pub(crate) mod meetings;
mod tags;

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::auth::keys::KeyRing;
use crate::auth::sigv4;
use crate::clock::Clock;
use crate::domain::tokens::PageTokenCodec;
use crate::store::Store;
use error::{ApiError, ErrorKind};
use operation::{Operation, Route};

/// Which API a request speaks. The legacy `chime` API lives under `/legacy`, because both APIs
/// share routes and the signing name and cannot be told apart otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespace {
    Meetings,
    Legacy,
}

pub const LEGACY_PREFIX: &str = "/legacy";

/// Tunables of the API layer.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// The base for MediaPlacement URLs, e.g. `http://127.0.0.1:8080`.
    pub public_url: String,
    /// Attendees per meeting when the meeting does not set `MeetingFeatures.Attendee.MaxCount`.
    pub max_attendees: u32,
    /// The largest request body accepted, in bytes.
    pub body_limit: usize,
    /// How long one request may take before it is answered with ServiceUnavailable.
    pub request_timeout: Duration,
}

pub struct ApiState {
    pub store: Arc<dyn Store>,
    pub keys: KeyRing,
    pub pages: PageTokenCodec,
    pub clock: Arc<dyn Clock>,
    pub settings: ApiSettings,
    /// Tells the join plane about deleted attendees and ended meetings.
    pub events: Arc<dyn crate::events::MeetingEvents>,
}

/// One authenticated, routed call, as the handlers see it.
pub struct Call {
    pub namespace: Namespace,
    pub account_id: String,
    /// The region the request was signed for; meetings record it as their control region.
    pub region: String,
    pub route: Route,
    pub query: Vec<(String, String)>,
    pub body: Bytes,
}

impl Call {
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn meeting_id(&self) -> Result<String, ApiError> {
        input::guid_label("MeetingId", self.route.meeting_id.as_ref())
    }

    pub fn attendee_id(&self) -> Result<String, ApiError> {
        input::guid_label("AttendeeId", self.route.attendee_id.as_ref())
    }

    pub fn is_legacy(&self) -> bool {
        self.namespace == Namespace::Legacy
    }
}

/// A successful answer.
pub enum Reply {
    Json(StatusCode, serde_json::Value),
    /// A JSON body already serialised, for large responses built from typed shapes.
    JsonText(StatusCode, String),
    Empty(StatusCode),
}

impl Reply {
    /// The success status of a create: 201 in the legacy API, 200 in chime-sdk-meetings.
    pub fn created(call: &Call, body: serde_json::Value) -> Reply {
        let status = if call.is_legacy() {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Reply::Json(status, body)
    }
}

#[doc(hidden)]
pub fn namespace_of(path: &str) -> (Namespace, &str) {
    match path.strip_prefix(LEGACY_PREFIX) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => (Namespace::Legacy, rest),
        _ => (Namespace::Meetings, path),
    }
}

/// The entry point for every API request.
pub async fn dispatch(State(state): State<Arc<ApiState>>, request: Request) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let (namespace, _) = namespace_of(request.uri().path());
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let timeout = state.settings.request_timeout;
    let id = request_id.clone();
    // Each request runs in its own task so that a panic becomes a ServiceFailureException for
    // that request alone; the span puts the request id on everything logged inside, store
    // failures included.
    let span = tracing::info_span!("request", request_id = %request_id);
    let task = tokio::spawn(async move { process(&state, request, &id).await }.instrument(span));
    let (operation, result) = match tokio::time::timeout(timeout, task).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(join_error)) => {
            tracing::error!(%request_id, %method, %path, %join_error, "request handler panicked");
            (None, Err(ApiError::service_failure()))
        }
        Err(_) => {
            tracing::error!(%request_id, %method, %path, "request timed out");
            (
                None,
                Err(ApiError::new(
                    ErrorKind::ServiceUnavailable,
                    "The request took too long; try again",
                )),
            )
        }
    };
    let response = match result {
        Ok(Reply::Json(status, body)) => (
            status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response(),
        Ok(Reply::JsonText(status, body)) => (
            status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Ok(Reply::Empty(status)) => status.into_response(),
        Err(error) => error.render(namespace, operation, &request_id),
    };
    let mut response = response;
    if let Ok(id) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-RequestId", id);
    }
    tracing::info!(
        %request_id,
        %method,
        %path,
        operation = ?operation,
        status = response.status().as_u16(),
        "request"
    );
    response
}

async fn process(
    state: &ApiState,
    request: Request,
    request_id: &str,
) -> (Option<Operation>, Result<Reply, ApiError>) {
    let (parts, body) = request.into_parts();
    let raw_path = parts.uri.path().to_string();
    let raw_query = parts.uri.query().map(str::to_string);
    let (namespace, api_path) = namespace_of(&raw_path);
    let body = match read_body(body, &parts.headers, state.settings.body_limit).await {
        Ok(body) => body,
        Err(error) => return (None, Err(error)),
    };

    let signed = sigv4::SignedRequest {
        method: parts.method.as_str(),
        raw_path: &raw_path,
        raw_query: raw_query.as_deref(),
        headers: &parts.headers,
        body: &body,
    };
    let lookup = |id: &str| state.keys.get(id).map(|k| k.secret_access_key.clone());
    let verified = match sigv4::verify(&signed, lookup, state.clock.now_unix()) {
        Ok(verified) => verified,
        Err(failure) => {
            tracing::debug!(%request_id, reason = %failure.0, "authentication failed");
            return (None, Err(ApiError::new(ErrorKind::Unauthorized, failure.0)));
        }
    };
    let Some(key) = state.keys.get(&verified.access_key_id) else {
        return (
            None,
            Err(ApiError::new(ErrorKind::Unauthorized, "Unknown access key")),
        );
    };

    let segments = match path_segments(api_path) {
        Ok(segments) => segments,
        Err(error) => return (None, Err(error)),
    };
    let query = parse_query(raw_query.as_deref());
    let literal = query
        .iter()
        .find(|(k, _)| k == "operation")
        .map(|(_, v)| v.as_str());
    let route = match operation::route(namespace, &parts.method, &segments, literal) {
        Ok(route) => route,
        Err(error) => return (None, Err(error)),
    };
    let operation = route.operation;
    let call = Call {
        namespace,
        account_id: key.account_id.clone(),
        region: verified.region,
        route,
        query,
        body,
    };
    (Some(operation), run(state, &call).await)
}

async fn run(state: &ApiState, call: &Call) -> Result<Reply, ApiError> {
    use Operation::*;
    match call.route.operation {
        CreateMeeting => meetings::create(state, call, false).await,
        CreateMeetingWithAttendees => meetings::create(state, call, true).await,
        GetMeeting => meetings::get(state, call).await,
        ListMeetings => meetings::list(state, call).await,
        DeleteMeeting => meetings::delete(state, call).await,
        StartMeetingTranscription => meetings::start_transcription(state, call).await,
        StopMeetingTranscription => meetings::stop_transcription(state, call).await,
        CreateAttendee => attendees::create(state, call).await,
        BatchCreateAttendee => attendees::batch_create(state, call).await,
        GetAttendee => attendees::get(state, call).await,
        ListAttendees => attendees::list(state, call).await,
        DeleteAttendee => attendees::delete(state, call).await,
        UpdateAttendeeCapabilities => attendees::update_capabilities(state, call).await,
        BatchUpdateAttendeeCapabilitiesExcept => {
            attendees::update_capabilities_except(state, call).await
        }
        TagResource => tags::tag_resource(state, call).await,
        UntagResource => tags::untag_resource(state, call).await,
        ListTagsForResource => tags::list_tags_for_resource(state, call).await,
        TagMeeting | TagAttendee => tags::tag_path(state, call).await,
        UntagMeeting | UntagAttendee => tags::untag_path(state, call).await,
        ListMeetingTags | ListAttendeeTags => tags::list_path(state, call).await,
    }
}

/// Buffers the body, refusing more than `limit` bytes without reading them all.
async fn read_body(
    body: Body,
    headers: &axum::http::HeaderMap,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::bad_request(format!(
            "The request body is larger than the limit of {limit} bytes"
        ))
    };
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())
}

#[doc(hidden)]
pub fn path_segments(path: &str) -> Result<Vec<String>, ApiError> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|segment| {
            percent_encoding::percent_decode_str(segment)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| ApiError::bad_request("The request path is not valid UTF-8"))
        })
        .collect()
}

#[doc(hidden)]
pub fn parse_query(query: Option<&str>) -> Vec<(String, String)> {
    let Some(query) = query else {
        return Vec::new();
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(k), decode(v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_split_on_the_legacy_prefix() {
        assert_eq!(
            namespace_of("/legacy/meetings"),
            (Namespace::Legacy, "/meetings")
        );
        assert_eq!(namespace_of("/legacy"), (Namespace::Legacy, ""));
        assert_eq!(
            namespace_of("/legacyx/meetings"),
            (Namespace::Meetings, "/legacyx/meetings")
        );
        assert_eq!(
            namespace_of("/meetings"),
            (Namespace::Meetings, "/meetings")
        );
    }

    #[test]
    fn queries_decode() {
        let q = parse_query(Some("arn=arn%3Aaws%3Achime&max-results=5&flag"));
        assert_eq!(q[0], ("arn".into(), "arn:aws:chime".into()));
        assert_eq!(q[1], ("max-results".into(), "5".into()));
        assert_eq!(q[2], ("flag".into(), "".into()));
    }
}
