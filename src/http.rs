//! The HTTP front: the listening socket, its TLS certificate and public URL, the router, and
//! the accept loop with its connection limits and graceful stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::api::{self, ApiState};
use crate::config::Config;
use crate::demo::Demo;
use crate::join::JoinPlane;
use crate::tls::ReloadableCertificate;

/// The API's socket, bound before anything else starts, and what it tells clients.
pub struct HttpFront {
    pub listener: TcpListener,
    pub addr: SocketAddr,
    /// `--tls-cert`/`--tls-key`, reloaded on SIGHUP.
    pub certificate: Option<Arc<ReloadableCertificate>>,
    /// The base of MediaPlacement URLs, without a trailing `/`.
    pub public_url: String,
}

impl HttpFront {
    /// Binds `--listen` and loads the certificate.
    pub async fn bind(config: &Config) -> anyhow::Result<HttpFront> {
        let listener = TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let addr = listener.local_addr()?;
        let certificate = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(ReloadableCertificate::load(cert, key)?),
            _ => None,
        };
        let scheme = if certificate.is_some() {
            "https"
        } else {
            "http"
        };
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| default_public_url(scheme, addr))
            .trim_end_matches('/')
            .to_string();
        Ok(HttpFront {
            listener,
            addr,
            certificate,
            public_url,
        })
    }
}

/// The URL MediaPlacement names without `--public-url`: the listen address, except that an
/// address of every interface (`0.0.0.0`), which no client can dial, becomes this host's first
/// address, with a warning that clients elsewhere need `--public-url`.
fn default_public_url(scheme: &str, addr: SocketAddr) -> String {
    if !addr.ip().is_unspecified() {
        return format!("{scheme}://{addr}");
    }
    let host = crate::media::net::host_addresses(addr.is_ipv6(), true)
        .first()
        .map_or(addr, |ip| SocketAddr::new(*ip, addr.port()));
    tracing::warn!(
        %host,
        "listening on every address without --public-url: MediaPlacement names {host}; set \
         --public-url to the address clients reach this node at"
    );
    format!("{scheme}://{host}")
}

/// The router: a health check, the signaling WebSocket, the demo page (unless turned off) and
/// the API dispatcher for the rest. Each route has one body limit and one panic guard: the
/// dispatcher guards itself (`api::dispatch` reads the body under the limit and its deadline,
/// and answers a panic with a ServiceFailureException in the caller's namespace, with its
/// request id), and the handlers beside it (health, demo, signaling, client events) share the
/// two layers here.
pub fn app(state: Arc<ApiState>, join: Arc<JoinPlane>, demo: Option<Arc<Demo>>) -> Router {
    let body_limit = state.settings.body_limit;
    let mut beside_the_api = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(join.router());
    if let Some(demo) = demo {
        beside_the_api = beside_the_api.merge(crate::demo::router(demo));
    }
    beside_the_api
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |_panic: Box<dyn std::any::Any + Send>| {
                // The payload may carry caller data; the panic hook logged the location.
                tracing::error!("a handler panicked");
                axum::response::IntoResponse::into_response((
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    r#"{"Code":"ServiceFailure","Message":"The service encountered an unexpected error"}"#,
                ))
            },
        ))
        // Merged after the layers, so that they do not wrap it.
        .merge(Router::new().fallback(api::dispatch).with_state(state))
}

/// Limits on the connections themselves, before any request is read.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections open at once; the accept loop waits for one to close beyond it.
    pub max_connections: usize,
    /// Time to send a request's headers; also how long an idle keep-alive connection lives
    /// (hyper starts the same timer while it waits for the next request).
    pub header_read_timeout: Duration,
}

/// The largest request head (request line and headers) a client may send.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Serves until `shutdown` resolves, then stops accepting, asks every connection to finish its
/// current request and close, and returns once all have.
/// With `tls`, each connection's TLS handshake runs in its own task, bounded by the header
/// read timeout, so a client that stalls there holds only its own connection slot.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    // Out of file descriptors, or the peer gave up in the backlog: wait a
                    // moment rather than spin.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let stop = stop_rx.clone();
        let http = http.clone();
        let tls = tls.clone();
        let handshake_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            match tls {
                None => serve_connection(&http, stream, service, stop).await,
                Some(acceptor) => {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => serve_connection(&http, stream, service, stop).await,
                        // A client that does not speak TLS, distrusts the certificate or stalls:
                        // its own business, logged for the operator at debug only.
                        Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection returns its permit when it has closed.
    let _ = permits.acquire_many(limits.max_connections as u32).await;
    Ok(())
}

/// Serves one connection until it closes, or until `stop` asks it to finish its current request.
async fn serve_connection<S>(
    http: &hyper::server::conn::http1::Builder,
    stream: S,
    service: hyper_util::service::TowerToHyperService<Router>,
    mut stop: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let connection = http
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let stopping = async {
        let _ = stop.wait_for(|stop| *stop).await;
    };
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = stopping => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}
