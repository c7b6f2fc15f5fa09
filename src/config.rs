//! Settings: flags, then `CARILLON_*` environment variables, then defaults that make
//! `carillon serve` work with no configuration at all.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// Which clock the server keeps time by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClockMode {
    /// The system clock.
    Real,
    /// Starts at the real time and moves only through `POST /_carillon/clock` (or
    /// `carillon clock advance`), so tests can make meetings end in milliseconds.
    Manual,
}

/// Whether `/demo` is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DemoMode {
    /// Only when the server listens on a loopback address, where only this machine reaches it.
    Auto,
    On,
    Off,
}

/// The admin listener's default address; when it is taken (another server on this machine), the
/// server starts without an admin listener and says so, rather than failing.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";

/// What connected clients are told when the server stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShutdownMode {
    /// Their meeting ended (AUDIO_STATUS 410, close 4410): the SDK stops cleanly with
    /// MeetingEnded, as when a single server goes away for good.
    End,
    /// The server will be back (close 4503): the SDK reconnects, for a restart within its
    /// reconnect window; it reports a signaling error until then.
    Reconnect,
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// TOML file of settings (keys are these flags' names with `_`: `max_attendees = 100`).
    /// Flags override the environment, which overrides the file.
    #[arg(long, env = "CARILLON_CONFIG")]
    pub config: Option<PathBuf>,

    /// Address the HTTP API (and later the signaling WebSocket) listens on.
    #[arg(long, env = "CARILLON_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,

    /// Directory for the embedded database, the generated credentials and the server keys.
    #[arg(long, env = "CARILLON_DATA_DIR", default_value = "./carillon-data")]
    pub data_dir: PathBuf,

    /// Where meetings, attendees, events and settings are kept: a PostgreSQL-compatible database
    /// (`postgres://user:password@host:5432/db`, shared by every node) or, when not given, the
    /// embedded SQLite database in the data directory.
    #[arg(long, env = "CARILLON_STORE", hide_env_values = true)]
    pub store: Option<String>,

    /// Base URL clients reach this node at; MediaPlacement URLs are built from it.
    /// Defaults to http://<listen address>.
    #[arg(long, env = "CARILLON_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// One base URL for the whole cluster (a load balancer in front of every node): when set,
    /// MediaPlacement URLs name it instead of the hosting node's --public-url. A join that
    /// reaches a node other than the meeting's host is relayed to the host (whose --public-url
    /// the nodes must reach), and media goes straight to the host's media address.
    #[arg(long, env = "CARILLON_CLUSTER_URL")]
    pub cluster_url: Option<String>,

    /// Attendees a meeting holds unless it sets MeetingFeatures.Attendee.MaxCount.
    #[arg(long, env = "CARILLON_MAX_ATTENDEES", default_value_t = 250,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attendees: u32,

    /// Root access key id. With the secret below it replaces the generated key pair.
    #[arg(long, env = "CARILLON_ACCESS_KEY_ID", requires = "secret_access_key")]
    pub access_key_id: Option<String>,

    /// Root secret access key.
    #[arg(
        long,
        env = "CARILLON_SECRET_ACCESS_KEY",
        hide_env_values = true,
        requires = "access_key_id"
    )]
    pub secret_access_key: Option<String>,

    /// The 12-digit account id of the root credentials (generated once if not given).
    #[arg(long, env = "CARILLON_ACCOUNT_ID")]
    pub account_id: Option<String>,

    /// PEM certificate (chain) for HTTPS and WSS on --listen; with --tls-key. MediaPlacement
    /// URLs become https:// and wss:// (the default --public-url too). Reloaded on SIGHUP.
    #[arg(long, env = "CARILLON_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "CARILLON_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// UDP address for WebRTC media: `IP:PORT`, with port 0 for any free one. Defaults to the
    /// listen IP with any free port; with the API on loopback (local development), to every
    /// address of this host, loopback included, since Firefox uses no loopback candidates. An
    /// address of every interface (0.0.0.0) binds each of the host's addresses and advertises
    /// each, never 0.0.0.0 itself.
    #[arg(long, env = "CARILLON_MEDIA_LISTEN")]
    pub media_listen: Option<std::net::SocketAddr>,

    /// IPs put in SDP answers as the media host candidates, comma-separated (e.g. an IPv4 and
    /// an IPv6 address); defaults to the media listen IP. Set it when clients reach this node
    /// through other addresses, as behind a cloud VM's 1:1 NAT: the socket stays bound to
    /// --media-listen and answers on the advertised addresses.
    #[arg(long, env = "CARILLON_MEDIA_PUBLIC_IP", value_delimiter = ',')]
    pub media_public_ip: Vec<std::net::IpAddr>,

    /// Serve the demo page from this directory (e.g. web/dist while working on it) instead of
    /// the copy built into the binary.
    #[arg(long, env = "CARILLON_DEMO_DIR")]
    pub demo_dir: Option<PathBuf>,

    /// Serve the demo page and its unauthenticated join endpoint: `auto` (only when listening
    /// on a loopback address), `on` or `off`.
    #[arg(long, env = "CARILLON_DEMO", value_enum, default_value_t = DemoMode::Auto)]
    pub demo: DemoMode,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "CARILLON_MAX_BODY_BYTES", default_value_t = 256 * 1024)]
    pub max_body_bytes: usize,

    /// TOML file of further access keys, each with its account, actions and rate (see docs/recipes-api.md).
    /// Reloaded on SIGHUP.
    #[arg(long, env = "CARILLON_KEYS_FILE")]
    pub keys_file: Option<PathBuf>,

    /// Requests per second per access key, for keys that set no rate of their own.
    /// Unlimited when not given.
    #[arg(long, env = "CARILLON_RATE_LIMIT", value_parser = positive_f64)]
    pub rate_limit: Option<f64>,

    /// Burst of the per-key token bucket (defaults to the rate limit, at least 1).
    #[arg(long, env = "CARILLON_RATE_BURST", requires = "rate_limit", value_parser = positive_f64)]
    pub rate_burst: Option<f64>,

    /// API requests served at once; past it the server answers 503 with Retry-After at once.
    #[arg(long, env = "CARILLON_MAX_INFLIGHT", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_inflight: u32,

    /// TCP connections open at once; more wait in the kernel's backlog.
    #[arg(long, env = "CARILLON_MAX_CONNECTIONS", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Seconds a client has to send a request's headers, and again its body. An idle
    /// keep-alive connection is closed after the same time.
    #[arg(long, env = "CARILLON_HEADER_READ_TIMEOUT", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_read_timeout: u64,

    /// The clock meetings live by: `real`, or `manual` (moved through the admin API).
    #[arg(long, env = "CARILLON_CLOCK", value_enum, default_value_t = ClockMode::Real)]
    pub clock: ClockMode,

    /// What connected clients are told at shutdown: `end` (their meeting ended) or
    /// `reconnect` (come back: for a restart).
    #[arg(long, env = "CARILLON_ON_SHUTDOWN", value_enum, default_value_t = ShutdownMode::End)]
    pub on_shutdown: ShutdownMode,

    /// A meeting with no attendee connected for this long ends (90s, 5m, 1h; AWS: 5m).
    #[arg(long, env = "CARILLON_IDLE_TIMEOUT", default_value = "5m",
          value_parser = positive_duration)]
    pub idle_timeout: i64,

    /// A meeting ends this long after its creation (AWS: 24h).
    #[arg(long, env = "CARILLON_MAX_DURATION", default_value = "24h",
          value_parser = positive_duration)]
    pub max_duration: i64,

    /// How often this node checks its connected attendees against the store (10s, 30s, 1m), so
    /// that a deleted attendee or ended meeting whose bus notice was lost (or that another node
    /// changed without a bus) is not left connected.
    #[arg(long, env = "CARILLON_PRESENCE_CHECK", default_value = "30s",
          value_parser = positive_duration)]
    pub presence_check: i64,

    /// A node that has not beaten into the store's node registry for this long is gone: no
    /// meeting is placed on it, and the next join for one of its meetings moves that meeting to
    /// the node the join reached (2s, 10s, 1m). Nodes beat four times per timeout.
    #[arg(long, env = "CARILLON_NODE_TIMEOUT", default_value = "10s",
          value_parser = positive_duration)]
    pub node_timeout: i64,

    /// A NATS server with JetStream (nats://host:port) that carries DeleteAttendee and meeting
    /// ends to every node sharing this node's store, at least once, so clients connected
    /// elsewhere are told too.
    #[arg(long, env = "CARILLON_BUS")]
    pub bus: Option<String>,

    /// The NATS subject of the cross-node bus.
    #[arg(long, env = "CARILLON_BUS_SUBJECT", default_value = "carillon.bus")]
    pub bus_subject: String,

    /// An http:// URL that gets one POST per meeting event (repeatable, or comma-separated).
    #[arg(long = "webhook", env = "CARILLON_WEBHOOKS", value_delimiter = ',')]
    pub webhooks: Vec<String>,

    /// Signs webhook bodies: `X-Carillon-Signature: sha256=<hex HMAC-SHA256 of the body>`.
    #[arg(long, env = "CARILLON_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,

    /// A NATS server (nats://host:port) whose JetStream gets every meeting event.
    #[arg(long = "events", env = "CARILLON_EVENTS")]
    pub events_nats: Option<String>,

    /// NATS subjects are `<this>.<MeetingId>`, in the JetStream stream CARILLON_EVENTS.
    #[arg(
        long,
        env = "CARILLON_EVENTS_SUBJECT",
        default_value = "carillon.events"
    )]
    pub events_subject: String,

    /// Attempts at delivering one event before it becomes a dead letter (GET
    /// /_carillon/events/dead-letters).
    #[arg(long, env = "CARILLON_EVENT_ATTEMPTS", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub event_attempts: u32,

    /// Meeting events are kept in the outbox this long (real time), delivered or not, then
    /// deleted (1h, 24h, 7d; EventBridge too gives up on an undeliverable event after 24 hours).
    #[arg(long, env = "CARILLON_EVENT_RETENTION", default_value = "24h",
          value_parser = positive_duration)]
    pub event_retention: i64,

    /// `ARN=URL`: the events of meetings whose NotificationsConfiguration names ARN go to URL
    /// (http:// or nats://). Repeatable. CreateMeeting refuses ARNs with no route.
    #[arg(
        long = "notify-route",
        env = "CARILLON_NOTIFY_ROUTES",
        value_delimiter = ','
    )]
    pub notify_routes: Vec<String>,

    /// Address of the admin listener (/metrics, /readyz), or `off`.
    #[arg(long, env = "CARILLON_ADMIN_LISTEN", default_value = DEFAULT_ADMIN_LISTEN)]
    pub admin_listen: String,

    /// Bearer token the admin listener requires; needed when it listens beyond loopback.
    #[arg(long, env = "CARILLON_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// TURN servers for every JOIN_ACK (comma-separated `turn:`/`turns:` URIs, e.g.
    /// `turn:turn.example.com:3478?transport=udp`). Off by default. The SDK then relays all
    /// media through TURN. Needs --turn-secret (coturn's static-auth-secret).
    #[arg(long, env = "CARILLON_TURN_URIS", value_delimiter = ',')]
    pub turn_uris: Vec<String>,

    /// Shared secret of the TURN REST credentials (coturn: use-auth-secret, static-auth-secret).
    /// With --turn-listen alone, a random one is generated at start.
    #[arg(long, env = "CARILLON_TURN_SECRET", hide_env_values = true)]
    pub turn_secret: Option<String>,

    /// Seconds the TURN credentials of a JOIN_ACK stay valid.
    #[arg(long, env = "CARILLON_TURN_TTL", default_value_t = crate::turn::DEFAULT_TTL_SECONDS,
          value_parser = clap::value_parser!(u32).range(60..=604_800))]
    pub turn_ttl: u32,

    /// Address of an embedded TURN listener (e.g. 0.0.0.0:3478), UDP and TCP on that port.
    /// Without --turn-uris it is the TURN server clients are given, at --media-public-ip (or
    /// this IP) and its port.
    #[arg(long, env = "CARILLON_TURN_LISTEN")]
    pub turn_listen: Option<std::net::SocketAddr>,

    /// Address of the embedded TURN listener's TLS port (`turns:`, e.g. 0.0.0.0:5349 or :443),
    /// for networks that let only TLS out. Uses --turn-tls-cert, else the --tls-cert
    /// certificate; clients are told the --public-url host, which the certificate must name.
    #[arg(long, env = "CARILLON_TURN_TLS_LISTEN", requires = "turn_listen")]
    pub turn_tls_listen: Option<std::net::SocketAddr>,

    /// PEM certificate (chain) of the TURN TLS port when it is not --tls-cert's: behind a proxy
    /// that terminates HTTPS, Carillon has no --tls-cert but still terminates `turns:`.
    /// Reloaded on SIGHUP.
    #[arg(long, env = "CARILLON_TURN_TLS_CERT", requires_all = ["turn_tls_key", "turn_tls_listen"])]
    pub turn_tls_cert: Option<PathBuf>,

    /// PEM private key of --turn-tls-cert.
    #[arg(long, env = "CARILLON_TURN_TLS_KEY", requires = "turn_tls_cert")]
    pub turn_tls_key: Option<PathBuf>,

    /// Seconds one API request may take before it is answered 503 and abandoned.
    #[arg(long, env = "CARILLON_REQUEST_TIMEOUT", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub request_timeout: u64,

    /// An S3-compatible store (http(s)://host:port: MinIO, Garage, Ceph, moto, AWS S3) that
    /// recordings are written to, path-style (`<endpoint>/<bucket>/<key>`); a pipeline's bucket
    /// must exist there. Without it, buckets are folders under the data directory.
    #[arg(long, env = "CARILLON_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,

    /// The region requests to --s3-endpoint are signed for.
    #[arg(long, env = "CARILLON_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,

    /// Access key id for --s3-endpoint; with neither key given, AWS_ACCESS_KEY_ID and
    /// AWS_SECRET_ACCESS_KEY are used.
    #[arg(
        long,
        env = "CARILLON_S3_ACCESS_KEY_ID",
        requires = "s3_secret_access_key"
    )]
    pub s3_access_key_id: Option<String>,

    /// Secret access key for --s3-endpoint.
    #[arg(
        long,
        env = "CARILLON_S3_SECRET_ACCESS_KEY",
        hide_env_values = true,
        requires = "s3_access_key_id"
    )]
    pub s3_secret_access_key: Option<Secret>,

    /// A transcription engine speaking the OpenAI-compatible API (whisper.cpp's server,
    /// speaches / faster-whisper-server, LocalAI): `http://host:port`, or the full URL of its
    /// `/v1/audio/transcriptions` endpoint. Without it, StartMeetingTranscription is refused.
    #[arg(long, env = "CARILLON_TRANSCRIPTION_ENGINE")]
    pub transcription_engine: Option<String>,

    /// The `model` field sent to --transcription-engine.
    #[arg(
        long,
        env = "CARILLON_TRANSCRIPTION_MODEL",
        default_value = "whisper-1"
    )]
    pub transcription_model: String,

    /// Seconds one transcription request may take.
    #[arg(long, env = "CARILLON_TRANSCRIPTION_TIMEOUT", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub transcription_timeout: u64,

    /// Transcription requests in flight at once on this node (partial results only take a
    /// free one).
    #[arg(long, env = "CARILLON_TRANSCRIPTION_CONCURRENCY", default_value_t = 2,
          value_parser = clap::value_parser!(u64).range(1..=256))]
    pub transcription_concurrency: u64,
}

/// A setting that must not be shown: Debug (and so any log of the configuration) prints a mask.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(********)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(value: &str) -> Result<Secret, Self::Err> {
        Ok(Secret(value.to_string()))
    }
}

/// Why clap refuses the value of a duration or rate setting (shown after "invalid value").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error(transparent)]
    Duration(#[from] crate::clock::DurationError),
    #[error("the duration must be above 0")]
    ZeroDuration,
    #[error("'{0}' is not a number above 0")]
    NotPositive(String),
}

fn positive_duration(value: &str) -> Result<i64, ValueError> {
    match crate::clock::parse_duration_seconds(value)? {
        0 => Err(ValueError::ZeroDuration),
        seconds => Ok(seconds),
    }
}

fn positive_f64(value: &str) -> Result<f64, ValueError> {
    match value.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(ValueError::NotPositive(value.to_string())),
    }
}

impl Config {
    /// Defaults for a server in tests: loopback, an ephemeral port, the given data directory.
    pub fn for_tests(data_dir: PathBuf) -> Self {
        Self {
            config: None,
            listen: "127.0.0.1:0".into(),
            data_dir,
            store: None,
            public_url: None,
            cluster_url: None,
            max_attendees: 250,
            access_key_id: None,
            secret_access_key: None,
            account_id: None,
            media_listen: None,
            media_public_ip: Vec::new(),
            tls_cert: None,
            tls_key: None,
            demo_dir: None,
            demo: DemoMode::Auto,
            max_body_bytes: 256 * 1024,
            keys_file: None,
            rate_limit: None,
            rate_burst: None,
            max_inflight: 1024,
            max_connections: 4096,
            header_read_timeout: 10,
            request_timeout: 30,
            // Tests run many servers at once: none takes the default admin port.
            admin_listen: "off".into(),
            admin_token: None,
            clock: ClockMode::Real,
            on_shutdown: ShutdownMode::End,
            idle_timeout: 300,
            max_duration: 86_400,
            presence_check: 30,
            node_timeout: 10,
            bus: None,
            bus_subject: "carillon.bus".into(),
            webhooks: Vec::new(),
            webhook_secret: None,
            events_nats: None,
            events_subject: "carillon.events".into(),
            notify_routes: Vec::new(),
            event_attempts: 8,
            event_retention: 86_400,
            turn_uris: Vec::new(),
            turn_secret: None,
            turn_ttl: crate::turn::DEFAULT_TTL_SECONDS,
            turn_listen: None,
            turn_tls_listen: None,
            turn_tls_cert: None,
            turn_tls_key: None,
            s3_endpoint: None,
            s3_region: "us-east-1".into(),
            s3_access_key_id: None,
            s3_secret_access_key: None,
            transcription_engine: None,
            transcription_model: "whisper-1".into(),
            transcription_timeout: 30,
            transcription_concurrency: 2,
        }
    }
}
