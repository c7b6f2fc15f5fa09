//! Assembling and running the service: the composition root that starts each plane (the HTTP
//! front in `http`, storage, keys in `auth::credentials`, media, TURN in `turn::setup`, the join
//! plane in `join::setup`, events, the control plane in `api::setup`, the admin listener), and
//! the running server's reloads and graceful stop.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::api::ApiState;
use crate::api::setup::ApiDeps;
use crate::auth::credentials::{Credentials, all_keys};
use crate::auth::keys::{self, AccessKey};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, DemoMode};
use crate::demo::Demo;
use crate::events::MeetingEvents;
use crate::http::{ConnectionLimits, HttpFront};
use crate::join::JoinPlane;
use crate::join::media::{Media, MediaAddresses};
use crate::join::setup::JoinDeps;
use crate::lifecycle::Lifecycle;
use crate::notifications;
use crate::store::postgres::PostgresStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{EndRules, Store};
use crate::turn::listener::TurnListener;
use crate::turn::setup::{Turn, TurnDeps};

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
        self.api.recorders.shut_down().await;
        self.api.transcriptions.shut_down().await;
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
    crate::turn::setup::check(config)?;
    crate::transcription::engine::EngineSettings::from_config(config)?;
    if let Some(id) = &config.account_id {
        anyhow::ensure!(
            keys::is_account_id(id),
            "CARILLON_ACCOUNT_ID must be 12 digits"
        );
    }
    Ok(())
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

/// The composition root: each plane started from the configuration and the planes it needs,
/// in dependency order (the socket first, so that a taken port fails before anything starts).
pub async fn start_with_clock(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Running> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let front = HttpFront::bind(config).await?;
    let public_url = front.public_url.clone();
    let store = open_store(config, &public_url).await?;
    if config.store.is_some() && config.bus.is_none() {
        tracing::warn!(
            "this node shares its store without --bus: a DeleteAttendee or DeleteMeeting sent \
             to another node reaches clients connected here only at the next --presence-check"
        );
    }
    let credentials = Credentials::load(config, store.as_ref()).await?;
    let media_addresses = media_addresses(config, front.addr.ip());
    let media = Media::start(&media_addresses)
        .await
        .with_context(|| format!("binding the media sockets ({media_addresses:?})"))?;
    let media_addr = media.advertised;
    let (turn, turn_certificate) = start_turn(config, &front, &store, &clock)?;
    let cluster = crate::cluster::Cluster::new(
        store.clone(),
        public_url.clone(),
        Duration::from_secs(u64::try_from(config.node_timeout).unwrap_or(10)),
        Duration::from_secs(u64::try_from(config.max_duration).unwrap_or(86_400)),
        config.store.is_some(),
    );
    let join = JoinPlane::start(
        config,
        JoinDeps {
            store: store.clone(),
            media,
            clock: clock.clone(),
            turn: turn.minter.clone(),
            cluster: cluster.clone(),
        },
    )
    .await?;
    let events = meeting_events(config, &join, &public_url).await?;
    let lifecycle = start_lifecycle(config, &store, &clock, &events);
    let sinks = start_event_sinks(config, &store, &public_url)?;
    let recorders = crate::recording::pipelines::Recorders::new(
        store.clone(),
        join.clone(),
        recording_sink(config)?,
        clock.clone(),
    );
    recorders.resume_unfinished().await;
    let transcriptions = start_transcriptions(config, &join, &store)?;
    let state = ApiState::start(
        config,
        ApiDeps {
            store,
            keys: credentials.keys.clone(),
            clock,
            public_url: public_url.clone(),
            events,
            lifecycle,
            cluster,
            sinks: sinks.clone(),
            recorders,
            transcriptions,
        },
    )
    .await?;
    let parts = Parts {
        front,
        state,
        join,
        credentials,
        media_addr,
        turn,
        turn_certificate,
        sinks,
    };
    parts.serve(config).await
}

/// The embedded TURN listener when it is on, and the certificate its TLS listener serves (its
/// own, else the API's).
fn start_turn(
    config: &Config,
    front: &HttpFront,
    store: &Arc<dyn Store>,
    clock: &Arc<dyn Clock>,
) -> anyhow::Result<(Turn, Option<Arc<crate::tls::ReloadableCertificate>>)> {
    let certificate = match (&config.turn_tls_cert, &config.turn_tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::ReloadableCertificate::load(cert, key)?),
        _ => front.certificate.clone(),
    };
    let turn = crate::turn::setup::start(
        config,
        TurnDeps {
            http_ip: front.addr.ip(),
            certificate: certificate.as_ref(),
            public_url: &front.public_url,
            store: store.clone(),
            clock: clock.clone(),
        },
    )?;
    Ok((turn, certificate))
}

/// Where recordings go: the S3-compatible store of --s3-endpoint, else folders under the data
/// directory.
fn recording_sink(config: &Config) -> anyhow::Result<Arc<dyn crate::recording::sink::ObjectSink>> {
    let sink: Arc<dyn crate::recording::sink::ObjectSink> =
        match crate::recording::s3::S3Settings::from_config(config)? {
            Some(settings) => Arc::new(crate::recording::s3::S3Sink::new(&settings)),
            None => Arc::new(crate::recording::sink::FolderSink::in_data_dir(
                &config.data_dir,
            )),
        };
    tracing::info!("recordings go to {}", sink.describe());
    Ok(sink)
}

/// Live transcription, through the engine of --transcription-engine when one is set.
fn start_transcriptions(
    config: &Config,
    join: &Arc<JoinPlane>,
    store: &Arc<dyn Store>,
) -> anyhow::Result<Arc<crate::transcription::Transcriptions>> {
    let engine = crate::transcription::engine::EngineSettings::from_config(config)?;
    if let Some(engine) = &engine {
        tracing::info!(url = %engine.url, model = %engine.model, "live transcription through this engine");
    }
    Ok(crate::transcription::Transcriptions::new(
        engine.map(crate::transcription::engine::Engine::new),
        join.clone(),
        store.clone(),
    ))
}

/// What the planes tell the join plane (a deleted attendee, an ended meeting): this node's
/// directly, or every node's through the bus when several share one store.
async fn meeting_events(
    config: &Config,
    join: &Arc<JoinPlane>,
    public_url: &str,
) -> anyhow::Result<Arc<dyn MeetingEvents>> {
    Ok(match &config.bus {
        Some(url) => {
            crate::bus::NatsBus::connect(
                url,
                config.bus_subject.clone(),
                public_url.to_string(),
                join.clone(),
            )
            .await?
        }
        None => join.clone(),
    })
}

/// Meetings that end by the clock, and the outbox's retention.
fn start_lifecycle(
    config: &Config,
    store: &Arc<dyn Store>,
    clock: &Arc<dyn Clock>,
    events: &Arc<dyn MeetingEvents>,
) -> Arc<Lifecycle> {
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
    lifecycle
}

/// One delivery worker per configured event sink.
fn start_event_sinks(
    config: &Config,
    store: &Arc<dyn Store>,
    public_url: &str,
) -> anyhow::Result<Vec<notifications::SinkConfig>> {
    let sinks = event_sinks(config)?;
    notifications::start(
        store.clone(),
        sinks.clone(),
        notifications::DeliverySettings {
            webhook_secret: config.webhook_secret.clone(),
            nats_subject_prefix: config.events_subject.clone(),
            max_attempts: config.event_attempts,
            node: public_url.to_string(),
        },
    );
    Ok(sinks)
}

/// The started planes, before the HTTP front serves them.
struct Parts {
    front: HttpFront,
    state: Arc<ApiState>,
    join: Arc<JoinPlane>,
    credentials: Credentials,
    media_addr: SocketAddr,
    turn: Turn,
    turn_certificate: Option<Arc<crate::tls::ReloadableCertificate>>,
    sinks: Vec<notifications::SinkConfig>,
}

impl Parts {
    /// Starts the admin listener and the HTTP front, and returns the running server.
    async fn serve(self, config: &Config) -> anyhow::Result<Running> {
        let Parts {
            front,
            state,
            join,
            credentials,
            media_addr,
            turn,
            turn_certificate,
            sinks,
        } = self;
        let demo = demo(config, front.addr, &state, &credentials.root_key);
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
        let tls = match &front.certificate {
            Some(certificate) => Some(certificate.acceptor(&[b"http/1.1"])?),
            None => None,
        };
        let limits = ConnectionLimits {
            max_connections: config.max_connections as usize,
            header_read_timeout: Duration::from_secs(config.header_read_timeout),
        };
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(crate::http::serve(
            front.listener,
            crate::http::app(state.clone(), join.clone(), demo.clone()),
            limits,
            tls,
            async {
                let _ = stop.await;
            },
        ));
        let certificates = reloadable(front.certificate.as_ref(), turn_certificate);
        let public_url = state.settings.public_url.clone();
        Ok(Running {
            join,
            api: state,
            keys_file: config.keys_file.clone(),
            certificates,
            on_shutdown: config.on_shutdown,
            boot: Boot {
                addr: front.addr,
                media_addr,
                demo_url: demo.is_some().then(|| format!("{public_url}/demo/")),
                public_url,
                root_key: credentials.root_key,
                generated_credentials: credentials.generated,
                credentials_file: credentials.file,
                admin_addr,
                turn_addr: turn.listener.as_ref().map(|listener| listener.advertised),
                turn_tls_addr: turn
                    .listener
                    .as_ref()
                    .and_then(|listener| listener.tls.as_ref().map(|(bound, _)| *bound)),
            },
            shutdown: Some(shutdown),
            task,
            admin_task,
            sinks,
            turn: turn.listener,
        })
    }
}

/// The demo page, when `--demo` (by default: an API on loopback, where only this machine
/// reaches it) serves it.
fn demo(
    config: &Config,
    addr: SocketAddr,
    state: &Arc<ApiState>,
    root_key: &AccessKey,
) -> Option<Arc<Demo>> {
    let serve_demo = match config.demo {
        DemoMode::On => true,
        DemoMode::Off => false,
        DemoMode::Auto => addr.ip().is_loopback(),
    };
    serve_demo.then(|| {
        Arc::new(Demo {
            api: state.clone(),
            account_id: root_key.account_id.clone(),
            dir: config.demo_dir.clone(),
        })
    })
}

/// The certificates SIGHUP reloads: the HTTPS one, and the TURN port's when it is another.
fn reloadable(
    https: Option<&Arc<crate::tls::ReloadableCertificate>>,
    turn: Option<Arc<crate::tls::ReloadableCertificate>>,
) -> Vec<Arc<crate::tls::ReloadableCertificate>> {
    let turn = turn.filter(|turn| !https.is_some_and(|https| Arc::ptr_eq(https, turn)));
    https.cloned().into_iter().chain(turn).collect()
}
