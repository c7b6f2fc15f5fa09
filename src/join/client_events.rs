//! `EventIngestionUrl` (`/v1/client-events`): amazon-chime-sdk-js posts its client-side meeting
//! events here with `Authorization: Bearer <JoinToken>`. Carillon checks the token and accepts
//! the batch without storing it, answering a small JSON body (the SDK's `InMemoryJSONEventBuffer`
//! parses every OK response with `response.json()` and logs a warning when that fails).
//!
//! When the page goes away the SDK sends what is left with `navigator.sendBeacon` to
//! `<EventIngestionUrl>?beacon=1`: a beacon cannot carry headers, so the JoinToken then travels
//! in the body's `authorization` member. Every answer carries CORS headers (the client runs on
//! another origin than this server) and `Cross-Origin-Resource-Policy: cross-origin`, without
//! which the browser blocks the beacon's response on pages that isolate themselves.
//! The body is read under the server's request body limit.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::JoinPlane;

fn with_cors(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    headers.insert(
        header::HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("cross-origin"),
    );
    response
}

/// A JSON answer the SDK can parse, whatever the status.
fn answer(status: StatusCode, message: &'static str) -> Response {
    let body = serde_json::json!({ "message": message }).to_string();
    with_cors((status, [(header::CONTENT_TYPE, "application/json")], body).into_response())
}

pub async fn preflight() -> Response {
    with_cors(StatusCode::NO_CONTENT.into_response())
}

/// The part of a beacon body that matters here.
#[derive(serde::Deserialize)]
struct Beacon {
    authorization: Option<String>,
}

fn is_beacon(query: Option<&str>) -> bool {
    query.is_some_and(|q| q.split('&').any(|pair| pair == "beacon=1"))
}

pub async fn ingest(
    State(plane): State<Arc<JoinPlane>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    events: Bytes,
) -> Response {
    let header_token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let token = match header_token {
        Some(token) => Some(token),
        None if is_beacon(query.as_deref()) => match serde_json::from_slice::<Beacon>(&events) {
            Ok(beacon) => beacon.authorization,
            Err(_) => return answer(StatusCode::BAD_REQUEST, "the beacon body is not JSON"),
        },
        None => None,
    };
    let Some(token) = token else {
        return answer(StatusCode::UNAUTHORIZED, "a JoinToken is required");
    };
    let token = token.trim_end_matches("#content");
    match plane.store.find_attendee_by_join_token(token).await {
        Ok(Some(_)) => answer(StatusCode::OK, "accepted"),
        Ok(None) => answer(StatusCode::FORBIDDEN, "the JoinToken is not valid"),
        Err(error) => {
            tracing::error!(%error, "store failure while checking a client-events token");
            answer(StatusCode::SERVICE_UNAVAILABLE, "try again later")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beacons_are_told_by_their_query() {
        assert!(is_beacon(Some("beacon=1")));
        assert!(is_beacon(Some("x=2&beacon=1")));
        assert!(!is_beacon(Some("beacon=10")));
        assert!(!is_beacon(None));
    }
}
