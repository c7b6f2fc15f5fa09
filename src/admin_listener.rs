//! The admin listener (`--admin-listen`, default 127.0.0.1:9090), apart from the API port: what
//! operators and their tools read. `GET /metrics` (Prometheus text), `GET /readyz` (the store
//! answers), `GET /healthz`. On loopback it needs no credentials; on any other address the
//! server refuses to start without `--admin-token`, and every request needs
//! `Authorization: Bearer <token>`.

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

/// The default address; when it is taken (another server on this machine), the server starts
/// without an admin listener and says so, rather than failing.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9090";

struct Admin {
    store: Arc<dyn Store>,
    join: Arc<JoinPlane>,
    token: Option<String>,
}

async fn metrics(State(admin): State<Arc<Admin>>) -> Response {
    metrics::gauge!(crate::metrics::name::SESSIONS).set(admin.join.rooms.session_count() as f64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::handle().render(),
    )
        .into_response()
}

async fn ready(State(admin): State<Arc<Admin>>) -> Response {
    match admin.store.meeting_exists("readiness-probe").await {
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
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if constant_time_eq(presented.as_bytes(), token.as_bytes()) {
        next.run(request).await
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
    store: Arc<dyn Store>,
    join: Arc<JoinPlane>,
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
    let admin = Arc::new(Admin { store, join, token });
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/readyz", get(ready))
        .route("/healthz", get(|| async { "ok\n" }))
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
