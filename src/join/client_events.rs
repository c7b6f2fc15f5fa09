//! `EventIngestionUrl` (`/v1/client-events`): amazon-chime-sdk-js posts its client-side meeting
//! events here with `Authorization: Bearer <JoinToken>`. Carillon checks the token and accepts
//! the batch without storing it, so the browser's event buffer stays quiet; the page's origin is
//! allowed through CORS as the client runs on another origin than the API.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
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
    response
}

pub async fn preflight() -> Response {
    with_cors(StatusCode::NO_CONTENT.into_response())
}

pub async fn ingest(
    State(plane): State<Arc<JoinPlane>>,
    headers: HeaderMap,
    _events: Bytes,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim_end_matches("#content"));
    let status = match token {
        Some(token) => match plane.store.find_attendee_by_join_token(token).await {
            Ok(Some(_)) => StatusCode::NO_CONTENT,
            Ok(None) => StatusCode::FORBIDDEN,
            Err(error) => {
                tracing::error!(%error, "store failure while checking a client-events token");
                StatusCode::SERVICE_UNAVAILABLE
            }
        },
        None => StatusCode::UNAUTHORIZED,
    };
    with_cors(status.into_response())
}
