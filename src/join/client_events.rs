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
//!
//! The SDK sends its last batch, and its beacon, after the session has ended: after End Meeting
//! or DeleteAttendee the token no longer names an attendee. Sessions that end leave their token
//! in [`Farewells`] for [`FAREWELL_GRACE_SECONDS`], and batches with it are accepted until then
//! (the SDK otherwise logs "Failed to send an important event"). Refusals are logged at debug.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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

/// How long a session's JoinToken is still good for client events after the session ended.
pub const FAREWELL_GRACE_SECONDS: i64 = 300;
/// Farewells kept at most, whatever the churn: one entry is a token and two ids (~200 bytes).
const MAX_FAREWELLS: usize = 65_536;

/// The JoinTokens of sessions that ended lately, with whose they were.
#[derive(Default)]
pub struct Farewells {
    inner: Mutex<HashMap<String, Farewell>>,
}

#[derive(Clone)]
struct Farewell {
    meeting_id: String,
    attendee_id: String,
    /// Unix seconds until which batches with the token are accepted.
    until: i64,
}

impl Farewells {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Farewell>) -> T) -> T {
        let mut map = match self.inner.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut map)
    }

    /// Records that a session with `token` ended at `now`. Entries are kept for twice the grace
    /// (the second half only to name the ids of a refusal); when the list is full and nothing
    /// has expired, the new farewell is not kept, and that client's last batch is refused.
    pub fn record(&self, token: &str, meeting_id: &str, attendee_id: &str, now: i64) {
        let token = token.trim_end_matches("#content");
        self.with(|map| {
            if map.len() >= MAX_FAREWELLS && !map.contains_key(token) {
                map.retain(|_, farewell| farewell.until + FAREWELL_GRACE_SECONDS > now);
                if map.len() >= MAX_FAREWELLS {
                    return;
                }
            }
            map.insert(
                token.to_string(),
                Farewell {
                    meeting_id: meeting_id.to_string(),
                    attendee_id: attendee_id.to_string(),
                    until: now.saturating_add(FAREWELL_GRACE_SECONDS),
                },
            );
        })
    }

    /// The farewell of `token`, and whether it still admits client events at `now`.
    fn find(&self, token: &str, now: i64) -> Option<(Farewell, bool)> {
        self.with(|map| {
            map.get(token)
                .map(|farewell| (farewell.clone(), now < farewell.until))
        })
    }

    pub fn len(&self) -> usize {
        self.with(|map| map.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
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
        tracing::debug!("refusing client events: no JoinToken");
        return answer(StatusCode::UNAUTHORIZED, "a JoinToken is required");
    };
    let token = token.trim_end_matches("#content");
    match plane.store.find_attendee_by_join_token(token).await {
        Ok(Some(_)) => answer(StatusCode::OK, "accepted"),
        Ok(None) => match plane.farewells.find(token, plane.clock.now_unix()) {
            Some((_, true)) => answer(StatusCode::OK, "accepted after the session ended"),
            Some((farewell, false)) => {
                tracing::debug!(
                    meeting_id = %farewell.meeting_id,
                    attendee_id = %farewell.attendee_id,
                    grace_seconds = FAREWELL_GRACE_SECONDS,
                    "refusing client events: the session ended longer ago than the grace"
                );
                answer(StatusCode::FORBIDDEN, "the JoinToken is not valid")
            }
            None => {
                tracing::debug!(
                    beacon = is_beacon(query.as_deref()),
                    "refusing client events: the JoinToken names no attendee"
                );
                answer(StatusCode::FORBIDDEN, "the JoinToken is not valid")
            }
        },
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
    fn farewells_admit_for_the_grace_and_stay_bounded() {
        let farewells = Farewells::default();
        farewells.record("token-1#content", "m", "a", 1_000);
        assert!(matches!(farewells.find("token-1", 1_000), Some((_, true))));
        assert!(matches!(
            farewells.find("token-1", 1_000 + FAREWELL_GRACE_SECONDS - 1),
            Some((_, true))
        ));
        let (farewell, admitted) = farewells
            .find("token-1", 1_000 + FAREWELL_GRACE_SECONDS)
            .expect("kept to name the refusal");
        assert!(!admitted);
        assert_eq!(
            (farewell.meeting_id.as_str(), farewell.attendee_id.as_str()),
            ("m", "a")
        );
        assert!(farewells.find("token-2", 1_000).is_none());

        // Full: expired entries make room; a list full of live ones takes no more.
        for i in 0..MAX_FAREWELLS {
            farewells.record(&format!("t{i}"), "m", "a", 2_000);
        }
        assert_eq!(farewells.len(), MAX_FAREWELLS);
        farewells.record("late", "m", "a", 2_001);
        assert!(farewells.find("late", 2_001).is_none());
        farewells.record("later", "m", "a", 2_000 + 2 * FAREWELL_GRACE_SECONDS);
        assert_eq!(farewells.len(), 1);
        assert!(matches!(
            farewells.find("later", 2_000 + 2 * FAREWELL_GRACE_SECONDS),
            Some((_, true))
        ));
    }

    #[test]
    fn beacons_are_told_by_their_query() {
        assert!(is_beacon(Some("beacon=1")));
        assert!(is_beacon(Some("x=2&beacon=1")));
        assert!(!is_beacon(Some("beacon=10")));
        assert!(!is_beacon(None));
    }
}
