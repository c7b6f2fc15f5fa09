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
            let fault = state.faults.arm(spec).map_err(ApiError::bad_request)?;
            tracing::info!(id = fault.id, operation = %fault.operation, error = ?fault.error, "fault armed");
            Ok(Reply::Json(StatusCode::CREATED, json!({ "fault": fault })))
        }
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
            "No admin operation {method} /_carillon/{}; there are GET, POST and DELETE /_carillon/faults and DELETE /_carillon/faults/<id>",
            parts.join("/")
        ))),
    }
}
