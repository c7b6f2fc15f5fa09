//! Assembling and running the service: storage, keys, the router, and graceful shutdown.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::routing::get;
use base64::Engine;
use hyper_util::rt::{TokioIo, TokioTimer};
use rand::RngCore;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::api::{self, ApiSettings, ApiState};
use crate::auth::keys::{self, AccessKey, KeyRing, RateLimit};
use crate::auth::throttle::Throttle;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, DemoMode};
use crate::demo::Demo;
use crate::domain::tokens::PageTokenCodec;
use crate::join::JoinPlane;
use crate::join::media::{Media, MediaAddresses};
use crate::lifecycle::Lifecycle;
use crate::notifications;
use crate::store::postgres::PostgresStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{EndRules, Store};
use crate::turn::TurnMinter;
use crate::turn::listener::{TlsPort, TurnAuthParts, TurnListener};

/// The router: a health check, the signaling WebSocket, the demo page (unless turned off) and
/// the API dispatcher for the rest. Handlers outside the dispatcher (health, demo, client events)
/// answer a panic with a 500 and read bodies under the same limit as the API.
pub fn app(state: Arc<ApiState>, join: Arc<JoinPlane>, demo: Option<Arc<Demo>>) -> Router {
    let body_limit = state.settings.body_limit;
    let mut router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .fallback(api::dispatch)
        .with_state(state)
        .merge(join.router());
    if let Some(demo) = demo {
        router = router.merge(crate::demo::router(demo));
    }
    router
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

/// What a started server tells its operator.
#[derive(Debug, Clone)]
pub struct Boot {
    pub addr: SocketAddr,
    /// The UDP address advertised to WebRTC clients.
    pub media_addr: SocketAddr,
    pub public_url: String,
    pub root_key: AccessKey,
    /// Whether the key pair was generated (and written to the credentials file).
    pub generated_credentials: bool,
    pub credentials_file: std::path::PathBuf,
    /// Where the demo page is served, if it is.
    pub demo_url: Option<String>,
    /// The admin listener's address (/metrics, /readyz), if it runs.
    pub admin_addr: Option<SocketAddr>,
    /// The embedded TURN listener's advertised UDP address, if it runs (`--turn-listen`).
    pub turn_addr: Option<SocketAddr>,
    /// The embedded TURN listener's TLS address (`--turn-tls-listen`), if it runs.
    pub turn_tls_addr: Option<SocketAddr>,
}

/// Loads the root key: from the configuration if given, else generated once and kept in the
/// store so that it is the same after every restart.
async fn root_key(config: &Config, store: &dyn Store) -> anyhow::Result<(AccessKey, bool)> {
    let account_id = match &config.account_id {
        Some(id) => {
            anyhow::ensure!(
                keys::is_account_id(id),
                "CARILLON_ACCOUNT_ID must be 12 digits"
            );
            id.clone()
        }
        None => {
            store
                .setting_or_insert(
                    "root_account_id",
                    &crate::domain::ids::random_string(b"0123456789", 12),
                )
                .await?
        }
    };
    if let (Some(id), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
        return Ok((
            AccessKey::root(id.clone(), secret.clone(), account_id),
            false,
        ));
    }
    let upper = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let id = store
        .setting_or_insert(
            "root_access_key_id",
            &format!("AKIA{}", crate::domain::ids::random_string(upper, 16)),
        )
        .await?;
    let mut secret = [0u8; 30];
    rand::rng().fill_bytes(&mut secret);
    let secret = store
        .setting_or_insert(
            "root_secret_access_key",
            &base64::engine::general_purpose::STANDARD.encode(secret),
        )
        .await?;
    Ok((AccessKey::root(id, secret, account_id), true))
}

fn write_credentials_file(path: &std::path::Path, key: &AccessKey) -> anyhow::Result<()> {
    let text = format!(
        "# Written by carillon: the root key of this server's data directory.\n\
         [carillon]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
        key.access_key_id, key.secret_access_key
    );
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// How long a graceful stop waits for in-flight requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A running server, as tests and `main` hold it.
pub struct Running {
    pub boot: Boot,
    pub join: Arc<JoinPlane>,
    pub api: Arc<ApiState>,
    keys_file: Option<std::path::PathBuf>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    admin_task: Option<tokio::task::JoinHandle<()>>,
    sinks: Vec<notifications::SinkConfig>,
    /// The embedded TURN listener; stops when dropped.
    turn: Option<TurnListener>,
    /// The HTTPS certificate (`--tls-cert`) and the TURN TLS port's when it has its own
    /// (`--turn-tls-cert`), reloaded on SIGHUP.
    certificates: Vec<Arc<crate::tls::ReloadableCertificate>>,
    on_shutdown: crate::config::ShutdownMode,
}

/// How long a graceful stop waits for the event outbox to reach its sinks.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

impl Running {
    /// Reads the keys file again (SIGHUP). A file that does not load leaves the keys as they
    /// were, so a typo cannot lock everyone out.
    pub fn reload_keys(&self) -> anyhow::Result<usize> {
        let keys = all_keys(&self.boot.root_key, self.keys_file.as_deref())?;
        let count = keys.len();
        self.api.keys.replace(keys);
        Ok(count)
    }

    /// Reads the TLS certificates and keys again (SIGHUP), if the server has them: new
    /// handshakes get the new pair, open connections keep theirs. A pair that does not load
    /// leaves the old one in force (and the error names it).
    pub fn reload_certificate(&self) -> anyhow::Result<bool> {
        for certificate in &self.certificates {
            certificate.reload()?;
        }
        Ok(!self.certificates.is_empty())
    }

    /// Stops accepting, tells connected clients their meeting ended or to reconnect
    /// (`--on-shutdown`), lets in-flight
    /// requests finish (for at most `DRAIN_TIMEOUT`), and waits for the server to end.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(admin) = self.admin_task.take() {
            admin.abort();
        }
        // First out of placement, so that no new meeting comes here while it stops.
        self.api.cluster.stop().await;
        self.join.shut_down(self.on_shutdown);
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match tokio::time::timeout(DRAIN_TIMEOUT, &mut self.task).await {
            Ok(result) => result??,
            Err(_) => {
                tracing::warn!("requests still running after {DRAIN_TIMEOUT:?}; stopping anyway");
                self.task.abort();
            }
        }
        drop(self.turn.take());
        // The last requests' and sessions' events go out before the process ends.
        notifications::flush(self.api.store.as_ref(), &self.sinks, FLUSH_TIMEOUT).await;
        Ok(())
    }
}

/// Checks what `start` would refuse without binding or opening anything: the keys file, the
/// event sinks, the account id.
pub fn check_config(config: &Config) -> anyhow::Result<()> {
    if let Some(path) = &config.keys_file {
        keys::load_keys_file(path)?;
    }
    event_sinks(config)?;
    check_turn(config)?;
    if let Some(id) = &config.account_id {
        anyhow::ensure!(
            keys::is_account_id(id),
            "CARILLON_ACCOUNT_ID must be 12 digits"
        );
    }
    Ok(())
}

/// The `--turn-uris` the configuration names (empty entries, as an empty variable gives, left
/// out).
fn turn_uris(config: &Config) -> Vec<String> {
    config
        .turn_uris
        .iter()
        .map(|uri| uri.trim())
        .filter(|uri| !uri.is_empty())
        .map(str::to_string)
        .collect()
}

/// What `start` would refuse about TURN: malformed URIs, or URIs without the secret their
/// server checks credentials with.
fn check_turn(config: &Config) -> anyhow::Result<()> {
    let uris = turn_uris(config);
    for uri in &uris {
        crate::turn::check_uri(uri).map_err(|error| anyhow::anyhow!("--turn-uris: {error}"))?;
    }
    let has_secret = config.turn_secret.as_deref().is_some_and(|s| !s.is_empty());
    anyhow::ensure!(
        uris.is_empty() || has_secret || config.turn_listen.is_some(),
        "--turn-uris needs --turn-secret, the secret the TURN server checks credentials with \
         (coturn: use-auth-secret and static-auth-secret)"
    );
    Ok(())
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

/// Where media listens: `--media-listen`, else the API's IP with any free port, except that an
/// API on loopback (local development) gets media on every address of the host, loopback
/// included, since Firefox does not use loopback ICE candidates (as `livekit-server --dev`).
fn media_addresses(config: &Config, api_ip: IpAddr) -> MediaAddresses {
    let local_development = api_ip.is_loopback();
    let listen = config.media_listen.unwrap_or_else(|| {
        let ip = match api_ip {
            IpAddr::V4(ip) if ip.is_loopback() => IpAddr::from([0, 0, 0, 0]),
            IpAddr::V6(ip) if ip.is_loopback() => IpAddr::from([0u16; 8]),
            ip => ip,
        };
        SocketAddr::new(ip, 0)
    });
    MediaAddresses {
        listen: Some(listen),
        public_ips: config.media_public_ip.clone(),
        loopback: local_development,
    }
}

/// TURN as configured: nothing (the default), credentials for external TURN servers
/// (`--turn-uris`), or the embedded listener (`--turn-listen`), advertised unless `--turn-uris`
/// names the servers. The secret is never logged.
fn start_turn(
    config: &Config,
    http_ip: std::net::IpAddr,
    certificate: Option<&Arc<crate::tls::ReloadableCertificate>>,
    public_url: &str,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<(Option<Arc<TurnMinter>>, Option<TurnListener>)> {
    check_turn(config)?;
    let uris = turn_uris(config);
    let configured_secret = config.turn_secret.clone().filter(|s| !s.is_empty());
    let Some(listen) = config.turn_listen else {
        let Some(secret) = configured_secret.filter(|_| !uris.is_empty()) else {
            return Ok((None, None));
        };
        tracing::info!(
            ?uris,
            ttl = config.turn_ttl,
            "TURN on: every JOIN_ACK carries credentials for these servers, and clients relay \
             all media through them"
        );
        return Ok((
            Some(Arc::new(TurnMinter::new(
                uris,
                secret,
                config.turn_ttl,
                None,
            ))),
            None,
        ));
    };
    let secret = match configured_secret {
        Some(secret) => secret,
        None => {
            tracing::info!(
                "no --turn-secret: generated a random secret for the embedded TURN listener \
                 (credentials minted before a restart stop working after it)"
            );
            crate::turn::random_secret()
        }
    };
    let advertised_ip = config
        .media_public_ip
        .iter()
        .copied()
        .chain([listen.ip(), http_ip])
        .chain(crate::media::net::host_addresses(listen.is_ipv6(), false))
        .find(|ip| !ip.is_unspecified())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "--turn-listen {listen} listens on every address: give --media-public-ip (the \
                 address clients reach this node at) or --turn-uris"
            )
        })?;
    let tls = match (config.turn_tls_listen, certificate) {
        (Some(listen), Some(certificate)) => Some(TlsPort {
            listen,
            acceptor: certificate.acceptor(&[])?,
            // The name clients check the certificate against: the one they reach the API at.
            host: public_url
                .parse::<http::Uri>()
                .ok()
                .and_then(|uri| uri.host().map(str::to_string))
                .unwrap_or_else(|| advertised_ip.to_string()),
        }),
        (Some(_), None) => anyhow::bail!(
            "--turn-tls-listen needs a certificate: --tls-cert and --tls-key, or --turn-tls-cert \
             and --turn-tls-key"
        ),
        (None, _) => None,
    };
    let grants = Arc::new(crate::turn::Grants::default());
    let listener = TurnListener::start(
        listen,
        tls,
        advertised_ip,
        TurnAuthParts {
            secret: secret.clone(),
            grants: grants.clone(),
            store,
            clock,
            runtime: tokio::runtime::Handle::current(),
        },
    )?;
    let uris = if uris.is_empty() {
        listener.uris()
    } else {
        uris
    };
    tracing::info!(
        listen = %listener.local,
        transports = if listener.tls.is_some() { "udp, tcp, tls" } else { "udp, tcp" },
        tls = ?listener.tls.as_ref().map(|(bound, _)| bound),
        ?uris,
        ttl = config.turn_ttl,
        "embedded TURN listener started: every JOIN_ACK carries credentials, and clients relay \
         all media through TURN"
    );
    Ok((
        Some(Arc::new(TurnMinter::new(
            uris,
            secret,
            config.turn_ttl,
            Some(grants),
        ))),
        Some(listener),
    ))
}

/// The event sinks the configuration names: webhooks and NATS for every event, and routes for
/// the meetings that name an ARN.
fn event_sinks(config: &Config) -> anyhow::Result<Vec<notifications::SinkConfig>> {
    let everything = config
        .webhooks
        .iter()
        .chain(config.events_nats.iter())
        .map(|url| {
            notifications::Destination::parse(url).map(|destination| notifications::SinkConfig {
                destination,
                selection: notifications::Selection::All,
            })
        });
    let routed = config
        .notify_routes
        .iter()
        .map(|route| notifications::parse_route(route));
    everything
        .chain(routed)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| anyhow::anyhow!("event sinks: {error}"))
}

/// The root key and every key of the keys file. A file key may not reuse the root key's id.
fn all_keys(
    root: &AccessKey,
    keys_file: Option<&std::path::Path>,
) -> anyhow::Result<Vec<AccessKey>> {
    let mut keys = vec![root.clone()];
    if let Some(path) = keys_file {
        let loaded = keys::load_keys_file(path)?;
        if loaded.iter().any(|k| k.access_key_id == root.access_key_id) {
            anyhow::bail!(
                "the keys file {} reuses the root access key id {}",
                path.display(),
                root.access_key_id
            );
        }
        keys.extend(loaded);
    }
    Ok(keys)
}

/// Opens the store the configuration names: PostgreSQL for a `postgres://` URL (shared with other
/// nodes, so this node's presence reset covers only the meetings at its `public_url`), else the
/// embedded SQLite database in the data directory.
async fn open_store(config: &Config, public_url: &str) -> anyhow::Result<Arc<dyn Store>> {
    match config.store.as_deref().map(str::trim) {
        None | Some("") => {
            let store = SqliteStore::open(&config.data_dir.join("carillon.db"))
                .context("opening the embedded store")?;
            Ok(Arc::new(store))
        }
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            // The URL may hold a password: it is not repeated in errors or logs.
            let store = PostgresStore::connect(url)
                .await
                .context("opening the PostgreSQL store (--store)")?;
            Ok(Arc::new(store.for_node(public_url)))
        }
        Some(_) => anyhow::bail!(
            "--store must be a postgres:// (or postgresql://) URL, or absent for the embedded \
             SQLite store"
        ),
    }
}

/// Opens the store, loads the keys, binds the listener and starts serving in the background.
pub async fn start(config: &Config) -> anyhow::Result<Running> {
    let clock: Arc<dyn Clock> = match config.clock {
        crate::config::ClockMode::Real => Arc::new(SystemClock),
        crate::config::ClockMode::Manual => Arc::new(crate::clock::ManualClock::starting_now()),
    };
    start_with_clock(config, clock).await
}

pub async fn start_with_clock(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Running> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let listener = TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let certificate = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::ReloadableCertificate::load(cert, key)?),
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

    let store = open_store(config, &public_url).await?;
    if config.store.is_some() && config.bus.is_none() {
        tracing::warn!(
            "this node shares its store without --bus: a DeleteAttendee or DeleteMeeting sent \
             to another node reaches clients connected here only at the next --presence-check"
        );
    }

    let (root_key, generated) = root_key(config, store.as_ref()).await?;
    let credentials_file = config.data_dir.join("credentials");
    let keys = all_keys(&root_key, config.keys_file.as_deref())?;
    if generated {
        write_credentials_file(&credentials_file, &root_key)?;
    }
    let mut page_key = [0u8; 32];
    rand::rng().fill_bytes(&mut page_key);
    let page_key = store
        .setting_or_insert("page_token_key", &hex::encode(page_key))
        .await?;
    let page_key = hex::decode(page_key).context("stored page token key is not hex")?;

    let media_addresses = media_addresses(config, addr.ip());
    let media = Media::start(&media_addresses)
        .await
        .with_context(|| format!("binding the media sockets ({media_addresses:?})"))?;
    let media_addr = media.advertised;
    let turn_certificate = match (&config.turn_tls_cert, &config.turn_tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::ReloadableCertificate::load(cert, key)?),
        _ => certificate.clone(),
    };
    let (turn_minter, turn) = start_turn(
        config,
        addr.ip(),
        turn_certificate.as_ref(),
        &public_url,
        store.clone(),
        clock.clone(),
    )?;
    let cluster = crate::cluster::Cluster::new(
        store.clone(),
        public_url.clone(),
        Duration::from_secs(u64::try_from(config.node_timeout).unwrap_or(10)),
        Duration::from_secs(u64::try_from(config.max_duration).unwrap_or(86_400)),
        config.store.is_some(),
    );
    let join = Arc::new(
        JoinPlane::new(store.clone(), media, clock.clone())
            .with_turn(turn_minter)
            .with_cluster(cluster.clone()),
    );
    let sessions_here = Arc::downgrade(&join);
    cluster
        .start(Box::new(move || {
            sessions_here.upgrade().map_or(0, |join| {
                i64::try_from(join.rooms.session_count()).unwrap_or(i64::MAX)
            })
        }))
        .await;
    join.start_volume_indicators();
    join.start_video_events();
    join.start_presence_check(Duration::from_secs(
        u64::try_from(config.presence_check).unwrap_or(30),
    ));
    // Nobody is connected to a node that just started, whatever the store remembers. On
    // PostgreSQL the reset covers only this node's meetings; an SQLite file shared by several
    // nodes (with a bus) cannot tell them apart, so there it is left alone.
    if config.store.is_some() || config.bus.is_none() {
        store.reset_presence(clock.now_unix()).await?;
    }
    // What the API and the lifecycle tell the join plane: this node's directly, or every node's
    // through the bus when several share one store.
    let events: Arc<dyn crate::events::MeetingEvents> = match &config.bus {
        Some(url) => {
            crate::bus::NatsBus::connect(
                url,
                config.bus_subject.clone(),
                public_url.clone(),
                join.clone(),
            )
            .await?
        }
        None => join.clone(),
    };
    let lifecycle = Arc::new(
        Lifecycle::new(
            store.clone(),
            clock.clone(),
            EndRules {
                idle_seconds: config.idle_timeout,
                max_seconds: config.max_duration,
            },
            events.clone(),
        )
        .with_event_retention(Duration::from_secs(
            u64::try_from(config.event_retention).unwrap_or(u64::MAX),
        )),
    );
    lifecycle.start();

    let sinks = event_sinks(config)?;
    notifications::start(
        store.clone(),
        sinks.clone(),
        notifications::DeliverySettings {
            webhook_secret: config.webhook_secret.clone(),
            nats_subject_prefix: config.events_subject.clone(),
            max_attempts: config.event_attempts,
            node: public_url.clone(),
        },
    );
    let default_rate = config.rate_limit.map(|rate| RateLimit {
        rate,
        burst: config.rate_burst.unwrap_or(rate).max(1.0),
    });
    let max_inflight = config.max_inflight as usize;
    let state = Arc::new(ApiState {
        store,
        keys: KeyRing::new(keys),
        throttle: Throttle::new(default_rate),
        faults: Default::default(),
        inflight: Semaphore::new(max_inflight),
        pages: PageTokenCodec::new(page_key),
        list_cache: api::page_cache::PageCache::new(
            api::page_cache::PageCacheLimits::PAGES,
            crate::metrics::name::LIST_CACHE,
        ),
        attendee_cache: api::page_cache::PageCache::new(
            api::page_cache::PageCacheLimits::ATTENDEES,
            crate::metrics::name::ATTENDEE_CACHE,
        ),
        meeting_features: Default::default(),
        clock,
        settings: ApiSettings {
            public_url: public_url.clone(),
            max_attendees: config.max_attendees,
            body_limit: config.max_body_bytes,
            request_timeout: Duration::from_secs(config.request_timeout),
            max_inflight,
            body_read_timeout: Duration::from_secs(config.header_read_timeout),
            notification_targets: sinks
                .iter()
                .filter_map(|sink| match &sink.selection {
                    notifications::Selection::Target(arn) => Some(arn.clone()),
                    notifications::Selection::All => None,
                })
                .collect(),
        },
        events,
        lifecycle,
        cluster,
    });
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let serve_demo = match config.demo {
        DemoMode::On => true,
        DemoMode::Off => false,
        DemoMode::Auto => addr.ip().is_loopback(),
    };
    let demo = serve_demo.then(|| {
        Arc::new(Demo {
            api: state.clone(),
            account_id: root_key.account_id.clone(),
            dir: config.demo_dir.clone(),
        })
    });
    let limits = ConnectionLimits {
        max_connections: config.max_connections as usize,
        header_read_timeout: Duration::from_secs(config.header_read_timeout),
    };
    let admin = crate::admin_listener::start(
        &config.admin_listen,
        config.admin_token.clone(),
        crate::admin_listener::AdminParts {
            store: state.store.clone(),
            join: join.clone(),
            events: state.events.clone(),
            clock: state.clock.clone(),
        },
    )
    .await?;
    let (admin_addr, admin_task) = admin.unzip();
    let tls = match &certificate {
        Some(certificate) => Some(certificate.acceptor(&[b"http/1.1"])?),
        None => None,
    };
    let task = tokio::spawn(serve(
        listener,
        app(state.clone(), join.clone(), demo),
        limits,
        tls,
        async {
            let _ = rx.await;
        },
    ));
    Ok(Running {
        join,
        api: state,
        keys_file: config.keys_file.clone(),
        certificates: certificate
            .iter()
            .chain(
                turn_certificate
                    .iter()
                    .filter(|turn| !certificate.as_ref().is_some_and(|c| Arc::ptr_eq(c, turn))),
            )
            .cloned()
            .collect(),
        on_shutdown: config.on_shutdown,
        boot: Boot {
            addr,
            media_addr,
            demo_url: serve_demo.then(|| format!("{public_url}/demo/")),
            public_url,
            root_key,
            generated_credentials: generated,
            credentials_file,
            admin_addr,
            turn_addr: turn.as_ref().map(|listener| listener.advertised),
            turn_tls_addr: turn
                .as_ref()
                .and_then(|listener| listener.tls.as_ref().map(|(bound, _)| *bound)),
        },
        shutdown: Some(tx),
        task,
        admin_task,
        sinks,
        turn,
    })
}
