//! The demo meeting page at `/demo`: a person opens it, names a meeting and themselves, and joins
//! with amazon-chime-sdk-js. The page's files are built by `scripts/build-demo` into `web/dist`
//! (`--demo-dir`); `POST /demo/api/join` creates or reuses the named meeting and an attendee in
//! the root account, through the same handlers as the API, so that the browser needs no AWS
//! credentials. Anyone who can reach the port can use it, so by default (`--demo auto`) it is only
//! served when the server listens on a loopback address.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::api::operation::{Operation, Route};
use crate::api::{self, ApiState, Call, Namespace, Reply};

pub struct Demo {
    pub api: Arc<ApiState>,
    pub account_id: String,
    /// Serve the page from here instead of the copy built into the binary.
    pub dir: Option<PathBuf>,
}

pub fn router(demo: Arc<Demo>) -> Router {
    Router::new()
        .route("/demo", get(|| async { Redirect::permanent("/demo/") }))
        .route(
            "/demo/",
            get(|demo: State<Arc<Demo>>| async move { file(demo, "index.html").await }),
        )
        .route(
            "/demo/{file}",
            get(
                |demo: State<Arc<Demo>>, Path(name): Path<String>| async move {
                    file(demo, &name).await
                },
            ),
        )
        .route("/demo/api/join", post(join))
        .with_state(demo)
}

async fn file(State(demo): State<Arc<Demo>>, name: &str) -> Response {
    let safe = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !safe {
        return StatusCode::NOT_FOUND.into_response();
    }
    let content_type = match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("map") | Some("json") => "application/json",
        _ => "application/octet-stream",
    };
    let Some(dir) = &demo.dir else {
        return match embedded(name) {
            Some(bytes) => ([(header::CONTENT_TYPE, content_type)], bytes).into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        };
    };
    match tokio::fs::read(dir.join(name)).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, content_type)], bytes).into_response(),
        Err(_) if name == "index.html" => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!(
                "No demo page in {} (--demo-dir). Run scripts/build-demo to build web/dist, \
                 or leave --demo-dir unset to serve the page built into the binary.\n",
                dir.display()
            ),
        )
            .into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The demo page built into the binary: the committed bundle of web/demo (scripts/build-demo
/// --update-bundle), so `cargo run -- serve` shows /demo/ with no npm.
fn embedded(name: &str) -> Option<&'static [u8]> {
    match name {
        "index.html" => Some(include_bytes!("../web/bundle/index.html")),
        "app.js" => Some(include_bytes!("../web/bundle/app.js")),
        _ => None,
    }
}

#[derive(Deserialize)]
struct JoinRequest {
    meeting: String,
    name: String,
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn failure(error: api::error::ApiError) -> Response {
    json_response(StatusCode::BAD_REQUEST, json!({ "message": error.message }))
}

async fn join(State(demo): State<Arc<Demo>>, body: axum::body::Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<JoinRequest>(&body) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({ "message": "send {\"meeting\": \"...\", \"name\": \"...\"}" }),
        );
    };
    // The same meeting name reuses the same meeting while it lives: the ClientRequestToken is
    // derived from the name.
    let digest = hex::encode(Sha256::digest(request.meeting.as_bytes()));
    let call = |operation, meeting_id: Option<String>, body: serde_json::Value| Call {
        namespace: Namespace::Meetings,
        account_id: demo.account_id.clone(),
        region: "us-east-1".into(),
        route: Route {
            operation,
            meeting_id,
            attendee_id: None,
            media_pipeline_id: None,
        },
        query: Vec::new(),
        body: body.to_string().into(),
    };
    let create = call(
        Operation::CreateMeeting,
        None,
        json!({
            "ClientRequestToken": format!("demo-{}", digest.get(..40).unwrap_or(&digest)),
            "MediaRegion": "us-east-1",
            "ExternalMeetingId": request.meeting,
        }),
    );
    let meeting = match api::meetings::create(&demo.api, &create, false).await {
        Ok(Reply::Json(_, body)) => body,
        Ok(Reply::Empty(_) | Reply::JsonText(..)) => {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        Err(error) => return failure(error),
    };
    let meeting = meeting.get("Meeting").cloned().unwrap_or_default();
    let meeting_id = meeting
        .get("MeetingId")
        .and_then(|id| id.as_str())
        .map(str::to_string);
    let add = call(
        Operation::CreateAttendee,
        meeting_id,
        json!({ "ExternalUserId": request.name }),
    );
    match api::attendees::create(&demo.api, &add).await {
        Ok(Reply::Json(_, attendee)) => json_response(
            StatusCode::OK,
            json!({ "Meeting": meeting, "Attendee": attendee.get("Attendee") }),
        ),
        Ok(Reply::Empty(_) | Reply::JsonText(..)) => {
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Err(error) => failure(error),
    }
}
