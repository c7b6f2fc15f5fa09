//! The HTTP API: both namespaces on one listener.
//!
//! One dispatcher takes every request: it picks the namespace from the path prefix, buffers the
//! body under a limit, verifies the SigV4 signature, routes to an `Operation`, runs the thin
//! handler and renders the result or the error in that namespace's wire form.

pub mod admin;
pub mod dto;
pub mod error;
pub mod faults;
pub mod input;
pub mod meeting_features;
pub mod namespace;
pub mod operation;
pub mod page_cache;
pub mod setup;

pub(crate) mod attendees;
mod media_pipelines;
pub(crate) mod meetings;
mod tags;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use tracing::Instrument;

use crate::auth::keys::{AccessKey, KeyRing};
use crate::auth::sigv4;
use crate::auth::throttle::Throttle;
use crate::clock::Clock;
use crate::domain::tokens::PageTokenCodec;
use crate::store::Store;
use crate::store::gate::CommitGate;
use error::{ApiError, ErrorKind};
pub use namespace::Namespace;
use operation::{Operation, Route};

pub const LEGACY_PREFIX: &str = "/legacy";

/// Tunables of the API layer.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// This node's base URL, e.g. `http://127.0.0.1:8080`.
    pub public_url: String,
    /// The base of every meeting's MediaPlacement URLs (`--cluster-url`), else the hosting
    /// node's public URL.
    pub cluster_url: Option<String>,
    /// Attendees per meeting when the meeting does not set `MeetingFeatures.Attendee.MaxCount`.
    pub max_attendees: u32,
    /// The largest request body accepted, in bytes.
    pub body_limit: usize,
    /// How long one request may take before it is answered with ServiceUnavailable.
    pub request_timeout: Duration,
    /// Requests served at once; past it the server answers 503 at once instead of queueing.
    pub max_inflight: usize,
    /// How long a client has to send a request's body once its headers have arrived.
    pub body_read_timeout: Duration,
    /// The NotificationsConfiguration ARNs this server delivers to (`--notify-route`).
    pub notification_targets: Vec<String>,
}

pub struct ApiState {
    pub store: Arc<dyn Store>,
    pub keys: KeyRing,
    pub throttle: Throttle,
    pub faults: faults::Faults,
    /// One permit per request in flight (`ApiSettings::max_inflight`).
    pub inflight: tokio::sync::Semaphore,
    pub pages: PageTokenCodec,
    /// Serialized ListAttendees pages, each served only while its meeting's attendee version is
    /// unchanged.
    pub list_cache: page_cache::PageCache<page_cache::PageKey>,
    /// Serialized GetAttendee answers, served under the same check as the pages.
    pub attendee_cache: page_cache::PageCache<page_cache::AttendeeKey>,
    /// Recently used meetings' features, for the capability checks of attendee writes.
    pub meeting_features: meeting_features::MeetingFeaturesCache,
    pub clock: Arc<dyn Clock>,
    pub settings: ApiSettings,
    /// Tells the join plane about deleted attendees and ended meetings.
    pub events: Arc<dyn crate::events::MeetingEvents>,
    /// Ends meetings by the clock; the admin extension's clock endpoint sweeps through it.
    pub lifecycle: Arc<crate::lifecycle::Lifecycle>,
    /// The nodes sharing the store: CreateMeeting places each meeting on one of them.
    pub cluster: Arc<crate::cluster::Cluster>,
    /// The capture pipelines recording on this node.
    pub recorders: Arc<crate::recording::pipelines::Recorders>,
    /// The live transcriptions running on this node.
    pub transcriptions: Arc<crate::transcription::Transcriptions>,
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
    /// A JSON body already serialised, for large responses built from typed shapes (shared, not
    /// copied, when it comes from the ListAttendees page cache).
    JsonText(StatusCode, Bytes),
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
        _ if is_media_pipelines_path(path) => (Namespace::MediaPipelines, path),
        _ => (Namespace::Meetings, path),
    }
}

/// The first path segments of the media pipelines API's routes, none of which the meetings
/// APIs use.
fn is_media_pipelines_path(path: &str) -> bool {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    first.starts_with("sdk-media-")
        || first.starts_with("media-insights-")
        || first.starts_with("media-pipeline-")
}

/// The entry point for every API request.
pub async fn dispatch(State(state): State<Arc<ApiState>>, request: Request) -> Response {
    let started = std::time::Instant::now();
    let request_id = crate::domain::ids::new_id();
    let (namespace, _) = namespace_of(request.uri().path());
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let (operation, result) = admit_and_run(&state, request, &request_id).await;
    let mut response = match result {
        Ok(reply) => reply.into_response(),
        Err(error) => {
            let namespace = error.namespace.unwrap_or(namespace);
            let modelled = operation.map(|op| op.errors(namespace));
            error.render(namespace, modelled.as_deref(), &request_id)
        }
    };
    if let Ok(id) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-RequestId", id);
    }
    let status = response.status().as_u16();
    tracing::info!(
        %request_id,
        %method,
        %path,
        operation = ?operation,
        status,
        "request"
    );
    record_metrics(namespace, operation, status, started);
    response
}

/// Reads the body, takes an in-flight slot (or answers 503 at once) and runs the request.
/// The body arrives first, under its own deadline and outside the in-flight limit, so that
/// clients trickling bodies hold connections (bounded by --max-connections) but never the
/// slots of requests being served.
async fn admit_and_run(
    state: &ApiState,
    request: Request,
    request_id: &str,
) -> (Option<Operation>, Result<Reply, ApiError>) {
    let (parts, body) = request.into_parts();
    let body = tokio::time::timeout(
        state.settings.body_read_timeout,
        read_body(body, &parts.headers, state.settings.body_limit),
    )
    .await
    .unwrap_or_else(|_| {
        Err(ApiError::bad_request(format!(
            "The request body did not arrive within {} seconds",
            state.settings.body_read_timeout.as_secs()
        )))
    });
    match (body, state.inflight.try_acquire()) {
        (Err(error), _) => (None, Err(error)),
        (Ok(body), Ok(_permit)) => run_guarded(state, parts, body, request_id).await,
        (Ok(_), Err(_)) => {
            metrics::counter!(crate::metrics::name::SHED).increment(1);
            (
                None,
                Err(ApiError::new(
                    ErrorKind::ServiceUnavailable,
                    format!(
                        "The server is serving its limit of {} requests; retry shortly",
                        state.settings.max_inflight
                    ),
                )),
            )
        }
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let json = [(axum::http::header::CONTENT_TYPE, "application/json")];
        match self {
            Reply::Json(status, body) => (status, json, body.to_string()).into_response(),
            Reply::JsonText(status, body) => (status, json, body).into_response(),
            Reply::Empty(status) => status.into_response(),
        }
    }
}

fn record_metrics(
    namespace: Namespace,
    operation: Option<Operation>,
    status: u16,
    started: std::time::Instant,
) {
    let operation_name = operation.map_or("none", |op| op.name());
    let namespace_name = match namespace {
        Namespace::Meetings => "chime-sdk-meetings",
        Namespace::Legacy => "legacy",
        Namespace::MediaPipelines => "chime-sdk-media-pipelines",
    };
    metrics::counter!(
        crate::metrics::name::API_REQUESTS,
        "operation" => operation_name,
        "namespace" => namespace_name,
        "status" => status.to_string()
    )
    .increment(1);
    metrics::histogram!(crate::metrics::name::API_DURATION, "operation" => operation_name)
        .record(started.elapsed().as_secs_f64());
}

/// Runs one request under its deadline, its commit gate and a panic guard. A panic becomes a
/// ServiceFailureException for that request alone. A request past its deadline is answered
/// 503 and abandoned (its future dropped) unless one of its writes already committed, in which
/// case it finishes and its real answer goes out: a caller told 503 never finds the write done.
async fn run_guarded(
    state: &ApiState,
    parts: axum::http::request::Parts,
    body: Bytes,
    request_id: &str,
) -> (Option<Operation>, Result<Reply, ApiError>) {
    let gate = CommitGate::new();
    let span = tracing::info_span!("request", request_id = %request_id);
    let work = AssertUnwindSafe(gate.clone().scope(process(state, parts, body, request_id)))
        .catch_unwind()
        .instrument(span);
    tokio::pin!(work);
    let finished = match tokio::time::timeout(state.settings.request_timeout, &mut work).await {
        Ok(finished) => finished,
        Err(_) if gate.close() => {
            tracing::warn!(%request_id, "request timed out; abandoned before any commit");
            return (
                None,
                Err(ApiError::new(
                    ErrorKind::ServiceUnavailable,
                    "The request took too long and was not carried out; try again",
                )),
            );
        }
        Err(_) => {
            tracing::warn!(%request_id, "request timed out after committing; finishing it");
            work.await
        }
    };
    finished.unwrap_or_else(|_panic| {
        // The panic hook logged where; the payload may carry caller data and is not logged.
        tracing::error!(%request_id, "request handler panicked");
        (None, Err(ApiError::service_failure()))
    })
}

/// The 403 for an action outside a key's permissions, in IAM's wording.
pub fn forbidden(key: &AccessKey, action: &str) -> ApiError {
    ApiError::new(
        ErrorKind::Forbidden,
        format!(
            "User: arn:aws:iam::{}:user/{} is not authorized to perform: {action} because no identity-based policy allows the {action} action",
            key.account_id, key.access_key_id
        ),
    )
}

async fn process(
    state: &ApiState,
    parts: axum::http::request::Parts,
    body: Bytes,
    request_id: &str,
) -> (Option<Operation>, Result<Reply, ApiError>) {
    let raw_path = parts.uri.path().to_string();
    let raw_query = parts.uri.query().map(str::to_string);
    let (namespace, api_path) = namespace_of(&raw_path);

    let signed = sigv4::SignedRequest {
        method: parts.method.as_str(),
        raw_path: &raw_path,
        raw_query: raw_query.as_deref(),
        headers: &parts.headers,
        body: &body,
    };
    let lookup = |id: &str| state.keys.get(id).map(|k| k.secret_access_key.clone());
    // The signature window is judged by the real clock, so signed clients keep working after a
    // manual clock jumps.
    let now = crate::clock::Clock::now_unix(&crate::clock::SystemClock);
    let verified = match sigv4::verify(&signed, lookup, now) {
        Ok(verified) => verified,
        Err(failure) => {
            tracing::debug!(%request_id, reason = %failure.0, "authentication failed");
            return (None, Err(ApiError::new(ErrorKind::Unauthorized, failure.0)));
        }
    };
    let Some(key) = state.keys.get(&verified.access_key_id) else {
        return (
            None,
            Err(ApiError::new(
                ErrorKind::Unauthorized,
                "The security token included in the request is invalid.",
            )),
        );
    };

    let segments = match path_segments(api_path) {
        Ok(segments) => segments,
        Err(error) => return (None, Err(error)),
    };
    if namespace == Namespace::Meetings && api_path.starts_with(admin::PREFIX) {
        let admin_segments = segments.get(1..).unwrap_or_default();
        return (
            None,
            admin::handle(state, &key, &parts.method, admin_segments, &body).await,
        );
    }
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
    // A tag operation on a media pipeline ARN is the media pipelines API's, on the meetings
    // API's paths: from here on it is that API's, errors included.
    let namespace = tags::namespace_of_resource(namespace, operation, &query, &body);
    let in_its_words = |error: ApiError| error.in_namespace(namespace);
    if let Err(error) = admit(state, &key, namespace, operation).await {
        return (Some(operation), Err(in_its_words(error)));
    }
    let call = Call {
        namespace,
        account_id: key.account_id.clone(),
        region: verified.region,
        route,
        query,
        body,
    };
    (
        Some(operation),
        run(state, &call).await.map_err(in_its_words),
    )
}

/// The checks between routing and the handler: the key's permissions, its rate, and any fault
/// armed for the operation.
async fn admit(
    state: &ApiState,
    key: &AccessKey,
    namespace: Namespace,
    operation: Operation,
) -> Result<(), ApiError> {
    let action = operation.action();
    if !key.permissions.allows(&action) {
        return Err(forbidden(key, &action));
    }
    if state
        .throttle
        .admit(
            &key.access_key_id,
            key.rate_limit,
            std::time::Instant::now(),
        )
        .is_err()
    {
        metrics::counter!(crate::metrics::name::THROTTLED).increment(1);
        return Err(ApiError::new(ErrorKind::Throttled, "Rate exceeded"));
    }
    let injection = state.faults.draw(namespace, operation);
    if !injection.latency.is_zero() {
        tokio::time::sleep(injection.latency).await;
    }
    match injection.error {
        Some(error) => Err(error),
        None => Ok(()),
    }
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
        CreateMediaCapturePipeline => media_pipelines::create_capture(state, call).await,
        GetMediaCapturePipeline => media_pipelines::get_capture(state, call).await,
        CreateMediaConcatenationPipeline => {
            media_pipelines::create_concatenation(state, call).await
        }
        GetMediaPipeline => media_pipelines::get_any(state, call).await,
        ListMediaCapturePipelines => media_pipelines::list(state, call, true).await,
        ListMediaPipelines => media_pipelines::list(state, call, false).await,
        DeleteMediaCapturePipeline | DeleteMediaPipeline => {
            media_pipelines::delete(state, call).await
        }
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
    sigv4::query_pairs(query)
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
        assert_eq!(
            namespace_of("/sdk-media-capture-pipelines/x"),
            (Namespace::MediaPipelines, "/sdk-media-capture-pipelines/x")
        );
        assert_eq!(
            namespace_of("/media-insights-pipelines"),
            (Namespace::MediaPipelines, "/media-insights-pipelines")
        );
        assert_eq!(namespace_of("/tags"), (Namespace::Meetings, "/tags"));
    }

    #[test]
    fn queries_decode() {
        let q = parse_query(Some("arn=arn%3Aaws%3Achime&max-results=5&flag"));
        assert_eq!(q[0], ("arn".into(), "arn:aws:chime".into()));
        assert_eq!(q[1], ("max-results".into(), "5".into()));
        assert_eq!(q[2], ("flag".into(), "".into()));
    }
}
