//! The admin extension under `/_carillon/`: everything Carillon offers beyond AWS's API. Signed
//! with SigV4 like every other request, and only for keys with the action `carillon:Admin`.

use axum::http::{Method, StatusCode};
use serde_json::json;

use super::error::{ApiError, ErrorKind};
use super::faults::FaultSpec;
use super::{ApiState, Reply};
use crate::auth::keys::{ADMIN_ACTION, AccessKey};

/// The path prefix of the admin extension.
pub const PREFIX: &str = "/_carillon/";

/// Handles an authenticated admin request; `segments` are the decoded path segments after
/// `/_carillon`.
pub async fn handle(
    state: &ApiState,
    key: &AccessKey,
    method: &Method,
    segments: &[String],
    body: &[u8],
) -> Result<Reply, ApiError> {
    if !key.permissions.allows(ADMIN_ACTION) {
        return Err(super::forbidden(key, ADMIN_ACTION));
    }
    let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["faults"]) => Ok(Reply::Json(
            StatusCode::OK,
            json!({ "faults": state.faults.list() }),
        )),
        ("POST", ["faults"]) => {
            let spec: FaultSpec = serde_json::from_slice(body).map_err(|error| {
                ApiError::bad_request(format!(
                    "The fault is not valid JSON of the expected shape: {error}"
                ))
            })?;
            let fault = state
                .faults
                .arm(spec)
                .map_err(|error| ApiError::bad_request(error.to_string()))?;
            tracing::info!(id = fault.id, operation = %fault.operation, error = ?fault.error, "fault armed");
            Ok(Reply::Json(StatusCode::CREATED, json!({ "fault": fault })))
        }
        ("GET", ["clock"]) => Ok(Reply::Json(
            StatusCode::OK,
            json!({
                "now": state.clock.now_ms(),
                "mode": if state.clock.as_manual().is_some() { "manual" } else { "real" },
            }),
        )),
        ("POST", ["clock"]) => advance_clock(state, body).await,
        ("GET", ["meetings", meeting_id, "presence"]) => {
            let meeting_id = super::input::guid_label("MeetingId", Some(&meeting_id.to_string()))?;
            let attendees = state
                .store
                .meeting_presence(&key.account_id, &meeting_id)
                .await?;
            Ok(Reply::Json(
                StatusCode::OK,
                json!({ "meeting_id": meeting_id, "attendees": attendees }),
            ))
        }
        ("GET", ["events", "dead-letters"]) => Ok(Reply::Json(
            StatusCode::OK,
            json!({ "dead_letters": state.store.dead_letters().await? }),
        )),
        ("DELETE", ["faults"]) => {
            state.faults.clear();
            Ok(Reply::Empty(StatusCode::NO_CONTENT))
        }
        ("DELETE", ["faults", id]) => {
            let id: u64 = id
                .parse()
                .map_err(|_| ApiError::bad_request(format!("'{id}' is not a fault id")))?;
            if state.faults.disarm(id) {
                Ok(Reply::Empty(StatusCode::NO_CONTENT))
            } else {
                Err(ApiError::new(
                    ErrorKind::NotFound,
                    format!("No fault {id} is armed"),
                ))
            }
        }
        _ => Err(ApiError::bad_request(format!(
            "No admin operation {method} /_carillon/{}; there are GET, POST and DELETE /_carillon/faults, DELETE /_carillon/faults/<id>, GET and POST /_carillon/clock, GET /_carillon/meetings/<MeetingId>/presence and GET /_carillon/events/dead-letters",
            parts.join("/")
        ))),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    advance_seconds: f64,
}

/// The longest single step of the manual clock: a year.
const MAX_ADVANCE_SECONDS: f64 = 366.0 * 86_400.0;

/// Moves the manual clock forward and ends, before answering, every meeting that is then due.
async fn advance_clock(state: &ApiState, body: &[u8]) -> Result<Reply, ApiError> {
    let Some(clock) = state.clock.as_manual() else {
        return Err(ApiError::new(
            ErrorKind::Conflict,
            "The server runs on the real clock; start it with --clock manual to move time",
        ));
    };
    let advance: Advance = serde_json::from_slice(body).map_err(|error| {
        ApiError::bad_request(format!(
            "Send {{\"advance_seconds\": N}} with N from 0 to {MAX_ADVANCE_SECONDS}: {error}"
        ))
    })?;
    if !(0.0..=MAX_ADVANCE_SECONDS).contains(&advance.advance_seconds) {
        return Err(ApiError::bad_request(format!(
            "advance_seconds must be from 0 to {MAX_ADVANCE_SECONDS} (the clock only moves forward)"
        )));
    }
    clock.advance_ms((advance.advance_seconds * 1000.0).round() as i64);
    let ended = state.lifecycle.sweep().await?;
    Ok(Reply::Json(
        StatusCode::OK,
        json!({ "now": state.clock.now_ms(), "ended_meetings": ended }),
    ))
}
