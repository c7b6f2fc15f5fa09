//! The admin listener (`--admin-listen`, default 127.0.0.1:9090), apart from the API port: what
//! operators and their tools read. `GET /metrics` (Prometheus text), `GET /readyz` (the store
//! answers), `GET /healthz`, and the live admin page at `/admin` (meetings, attendees, their
//! connection state and tracks, events as they happen over server-sent events; delete an
//! attendee or end a meeting). On loopback it needs no credentials; on any other address the
//! server refuses to start without `--admin-token`, and every request needs
//! `Authorization: Bearer <token>` or the cookie the page's login form sets. The page's actions
//! need the `X-Carillon-Admin` header, which another site's form or script cannot send here.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::domain::digest::constant_time_eq;
use crate::join::JoinPlane;
use crate::store::Store;

use crate::config::DEFAULT_ADMIN_LISTEN as DEFAULT_LISTEN;

/// What the admin listener works with.
pub struct AdminParts {
    pub store: Arc<dyn Store>,
    pub join: Arc<JoinPlane>,
    pub events: Arc<dyn crate::events::MeetingEvents>,
    pub clock: Arc<dyn crate::clock::Clock>,
}

struct Admin {
    parts: AdminParts,
    token: Option<String>,
}

/// The cookie the login form sets.
const COOKIE: &str = "carillon_admin";
/// Meetings the page lists.
const PAGE_MEETINGS: usize = 200;

async fn page() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("admin_page/index.html"),
    )
        .into_response()
}

async fn login_form() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        "<!doctype html><meta charset=utf-8><title>Carillon admin</title>\
         <form method=post action=/admin/login><label>Admin token \
         <input type=password name=token autofocus></label> <button>Sign in</button></form>",
    )
        .into_response()
}

async fn login(State(admin): State<Arc<Admin>>, body: String) -> Response {
    let presented = body
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .map(|t| {
            percent_encoding::percent_decode_str(&t.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    match &admin.token {
        Some(token) if constant_time_eq(presented.as_bytes(), token.as_bytes()) => (
            StatusCode::SEE_OTHER,
            [
                (
                    header::SET_COOKIE,
                    format!("{COOKIE}={presented}; HttpOnly; SameSite=Strict; Path=/"),
                ),
                (header::LOCATION, "/admin".to_string()),
            ],
        )
            .into_response(),
        _ => (StatusCode::UNAUTHORIZED, "wrong token\n").into_response(),
    }
}

fn api_error(error: crate::store::StoreError) -> Response {
    match error {
        crate::store::StoreError::MeetingNotFound | crate::store::StoreError::AttendeeNotFound => {
            (StatusCode::NOT_FOUND, format!("{error}\n")).into_response()
        }
        other => (StatusCode::SERVICE_UNAVAILABLE, format!("{other}\n")).into_response(),
    }
}

async fn meetings(State(admin): State<Arc<Admin>>) -> Response {
    let store = &admin.parts.store;
    let meetings = match store.recent_meetings(PAGE_MEETINGS).await {
        Ok(meetings) => meetings,
        Err(error) => return api_error(error),
    };
    let mut out = Vec::with_capacity(meetings.len());
    for meeting in meetings {
        let presence = store
            .meeting_presence(&meeting.account_id, &meeting.meeting_id)
            .await
            .unwrap_or_default();
        let tracks = admin.parts.join.rooms.tracks(&meeting.meeting_id).await;
        let attendees: Vec<_> = presence
            .into_iter()
            .map(|p| {
                let mut kinds = Vec::new();
                let content_id = crate::join::video::content_attendee_id(&p.attendee_id);
                for session in tracks.iter().filter(|t| t.attendee_id == p.attendee_id) {
                    if session.audio {
                        kinds.push(if session.muted {
                            "audio (muted)"
                        } else {
                            "audio"
                        });
                    }
                    if session.video {
                        kinds.push("camera");
                    }
                }
                // The attendee's content-share session is listed with the attendee.
                if tracks
                    .iter()
                    .any(|t| t.attendee_id == content_id && t.video)
                {
                    kinds.push("screen share");
                }
                serde_json::json!({
                    "attendee_id": p.attendee_id,
                    "external_user_id": p.external_user_id,
                    "state": p.state,
                    "joined_at": p.joined_at,
                    "left_at": p.left_at,
                    "tracks": kinds,
                })
            })
            .collect();
        out.push(serde_json::json!({
            "meeting_id": meeting.meeting_id,
            "account_id": meeting.account_id,
            "external_meeting_id": meeting.external_meeting_id,
            "media_region": meeting.media_region,
            "created_at": meeting.created_at,
            // The node that hosts its media (its --public-url); failover changes it.
            "host": meeting.media_base_url,
            "attendees": attendees,
        }));
    }
    let cluster = admin.parts.join.cluster();
    let nodes = cluster
        .map(|cluster| cluster.live_nodes())
        .unwrap_or_default();
    let this_node = cluster.map(|cluster| cluster.own_url().to_string());
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "meetings": out, "nodes": nodes, "this_node": this_node }).to_string(),
    )
        .into_response()
}

/// The page names the meeting's account, as it lists it; every store call is scoped by it, so a
/// wrong account finds nothing.
fn account_refusal(account: &str) -> Option<Response> {
    (!crate::auth::keys::is_account_id(account)).then(|| {
        (
            StatusCode::BAD_REQUEST,
            "the account id must be 12 digits\n",
        )
            .into_response()
    })
}

async fn end_meeting(
    State(admin): State<Arc<Admin>>,
    axum::extract::Path((account, meeting_id)): axum::extract::Path<(String, String)>,
) -> Response {
    if let Some(refusal) = account_refusal(&account) {
        return refusal;
    }
    let now = admin.parts.clock.now_unix();
    match admin
        .parts
        .store
        .delete_meeting(&account, &meeting_id, now)
        .await
    {
        Ok(ended) => {
            for id in &ended {
                admin.parts.events.meeting_ended(id);
            }
            tracing::info!(%meeting_id, "meeting ended from the admin page");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(error) => api_error(error),
    }
}

async fn delete_attendee(
    State(admin): State<Arc<Admin>>,
    axum::extract::Path((account, meeting_id, attendee_id)): axum::extract::Path<(
        String,
        String,
        String,
    )>,
) -> Response {
    if let Some(refusal) = account_refusal(&account) {
        return refusal;
    }
    let now = admin.parts.clock.now_unix();
    match admin
        .parts
        .store
        .delete_attendee(&account, &meeting_id, &attendee_id, now)
        .await
    {
        Ok(()) => {
            admin
                .parts
                .events
                .attendee_deleted(&meeting_id, &attendee_id);
            tracing::info!(%meeting_id, %attendee_id, "attendee deleted from the admin page");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(error) => api_error(error),
    }
}

/// Meeting events as server-sent events, from the newest on, read from the outbox.
async fn events(State(admin): State<Arc<Admin>>) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let store = admin.parts.store.clone();
    let start = store.latest_event_seq().await.unwrap_or_default();
    let stream = futures_util::stream::unfold(
        (store, start, std::collections::VecDeque::new()),
        |(store, mut cursor, mut pending)| async move {
            loop {
                if let Some(body) = pending.pop_front() {
                    let event: Result<Event, std::convert::Infallible> =
                        Ok(Event::default().data(body));
                    return Some((event, (store, cursor, pending)));
                }
                match store.outbox_after(cursor, 100).await {
                    Ok(batch) if !batch.is_empty() => {
                        cursor = batch.last().map_or(cursor, |e| e.seq);
                        pending.extend(batch.into_iter().map(|e| e.body));
                    }
                    _ => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
                }
            }
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The page's actions must carry `X-Carillon-Admin`, which a cross-site request cannot.
async fn same_origin_actions(request: Request, next: Next) -> Response {
    if request.method() == axum::http::Method::POST
        && request.uri().path().starts_with("/admin/api/")
        && !request.headers().contains_key("x-carillon-admin")
    {
        return (
            StatusCode::FORBIDDEN,
            "admin actions need the X-Carillon-Admin header\n",
        )
            .into_response();
    }
    next.run(request).await
}

async fn metrics(State(admin): State<Arc<Admin>>) -> Response {
    let rooms = &admin.parts.join.rooms;
    metrics::gauge!(crate::metrics::name::SESSIONS).set(rooms.session_count() as f64);
    let (meetings, attendees) = rooms.live_counts().await;
    metrics::gauge!(crate::metrics::name::LIVE_MEETINGS).set(meetings as f64);
    metrics::gauge!(crate::metrics::name::LIVE_ATTENDEES).set(attendees as f64);
    crate::metrics::record_media(&admin.parts.join.media.stats());
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::handle().render(),
    )
        .into_response()
}

async fn ready(State(admin): State<Arc<Admin>>) -> Response {
    match admin.parts.store.meeting_exists("readiness-probe").await {
        Ok(_) => (StatusCode::OK, "ready\n").into_response(),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the store does not answer: {error}\n"),
        )
            .into_response(),
    }
}

async fn require_token(State(admin): State<Arc<Admin>>, request: Request, next: Next) -> Response {
    let Some(token) = &admin.token else {
        return next.run(request).await;
    };
    if request.uri().path() == "/admin/login" {
        return next.run(request).await;
    }
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let cookie = request
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("carillon_admin="));
    let presented = bearer.or(cookie).unwrap_or_default();
    if constant_time_eq(presented.as_bytes(), token.as_bytes()) {
        next.run(request).await
    } else if request.uri().path() == "/admin" {
        axum::response::Redirect::to("/admin/login").into_response()
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "send Authorization: Bearer <the --admin-token>\n",
        )
            .into_response()
    }
}

/// Binds and serves the admin listener; `None` when it is off, or when the default address is
/// taken.
pub async fn start(
    listen: &str,
    token: Option<String>,
    parts: AdminParts,
) -> anyhow::Result<Option<(SocketAddr, tokio::task::JoinHandle<()>)>> {
    if listen == "off" {
        return Ok(None);
    }
    let listener = match TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(error) if listen == DEFAULT_LISTEN => {
            tracing::warn!(%error, "the admin listener's default address {DEFAULT_LISTEN} is taken; running without it (set --admin-listen)");
            return Ok(None);
        }
        Err(error) => {
            return Err(anyhow::anyhow!(
                "binding the admin listener {listen}: {error}"
            ));
        }
    };
    let addr = listener.local_addr()?;
    anyhow::ensure!(
        addr.ip().is_loopback() || token.is_some(),
        "the admin listener on {addr} is reachable from other machines: set --admin-token, or listen on 127.0.0.1"
    );
    // The metrics recorder exists before the first request is counted.
    crate::metrics::handle();
    let admin = Arc::new(Admin { parts, token });
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/readyz", get(ready))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/admin", get(page))
        .route("/admin/login", get(login_form).post(login))
        .route("/admin/api/meetings", get(meetings))
        .route(
            "/admin/api/accounts/{account}/meetings/{meeting_id}/end",
            axum::routing::post(end_meeting),
        )
        .route(
            "/admin/api/accounts/{account}/meetings/{meeting_id}/attendees/{attendee_id}/delete",
            axum::routing::post(delete_attendee),
        )
        .route("/admin/events", get(events))
        .layer(axum::middleware::from_fn(same_origin_actions))
        .layer(axum::middleware::from_fn_with_state(
            admin.clone(),
            require_token,
        ))
        .with_state(admin);
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::error!(%error, "the admin listener stopped");
        }
    });
    Ok(Some((addr, task)))
}
