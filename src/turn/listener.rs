//! The embedded TURN listener (`--turn-listen`), built on webrtc-rs `turn`: UDP and TCP on one
//! port number, as coturn serves 3478, and TLS on another (`--turn-tls-listen`, `turns:`) with
//! the HTTPS certificate; the stream transports are framed by [`super::stream`]. It relays
//! for attendees holding credentials minted by this node: the REST username's expiry must be in
//! the future, the password must be the HMAC of the username under the secret (checked by the
//! TURN message integrity), and the attendee must still exist (a deleted attendee, or one whose
//! meeting ended, is refused at its next Allocate, Refresh or CreatePermission).
//!
//! The listener runs on a thread of its own with its own small runtime: `turn`'s auth hook is
//! synchronous, so the store lookup it needs is run on the server's runtime and waited for on
//! that thread, never blocking the server's workers.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;
use turn::auth::{AuthHandler, generate_auth_key};
use turn::relay::relay_static::RelayAddressGeneratorStatic;
use turn::server::config::{ConnConfig, ServerConfig};
use webrtc_util::Conn;
use webrtc_util::vnet::net::Net;

use super::stream::StreamConn;
use super::{Grants, parse_username, rest_password};
use crate::clock::Clock;
use crate::join::video::split_content;
use crate::store::Store;

/// The realm in the TURN server's challenges; any value works with REST credentials.
const REALM: &str = "carillon";

/// How long one attendee check may wait on the store before the request is refused.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the listener's thread could not start serving; it reports this back to `start`.
#[derive(Debug, thiserror::Error)]
enum StartError {
    /// The thread's own runtime could not be built.
    #[error(transparent)]
    Runtime(std::io::Error),
    /// A bound socket could not be handed to the runtime.
    #[error(transparent)]
    Sockets(std::io::Error),
    /// The `turn` server refused its configuration.
    #[error(transparent)]
    Server(turn::Error),
}

/// What the listener checks credentials against.
pub struct TurnAuthParts {
    pub secret: String,
    pub grants: Arc<Grants>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    /// The server's runtime, where store lookups run.
    pub runtime: tokio::runtime::Handle,
}

struct Auth {
    parts: TurnAuthParts,
}

impl Auth {
    /// Why the username is refused, if it is.
    fn refusal(&self, username: &str) -> Option<&'static str> {
        let Some((expires, attendee_id)) = parse_username(username) else {
            return Some("not a TURN REST username");
        };
        let now = self.parts.clock.now_unix();
        if expires <= now {
            return Some("expired");
        }
        let Some(token) = self.parts.grants.join_token(attendee_id, now) else {
            return Some("no credentials were minted for this attendee here");
        };
        // A content-share session (`<AttendeeId>#content`, joined with `<JoinToken>#content`)
        // relays for as long as its attendee exists, as its signaling does.
        let (owner_id, _) = split_content(attendee_id);
        let token = split_content(&token).0.to_string();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let store = self.parts.store.clone();
        self.parts.runtime.spawn(async move {
            let _ = tx.send(store.find_attendee_by_join_token(&token).await);
        });
        match rx.recv_timeout(LOOKUP_TIMEOUT) {
            Ok(Ok(Some(attendee))) if attendee.attendee_id == owner_id => None,
            Ok(Ok(_)) => Some("attendee unavailable"),
            Ok(Err(_)) | Err(_) => Some("the store did not answer"),
        }
    }
}

impl AuthHandler for Auth {
    fn auth_handle(
        &self,
        username: &str,
        realm: &str,
        src_addr: SocketAddr,
    ) -> Result<Vec<u8>, turn::Error> {
        if let Some(reason) = self.refusal(username) {
            // The username holds the expiry and attendee id, nothing secret.
            tracing::info!(
                username = %username.chars().take(96).flat_map(char::escape_debug).collect::<String>(),
                %src_addr,
                reason,
                "refusing a TURN request"
            );
            return Err(turn::Error::Other(reason.into()));
        }
        let password = rest_password(&self.parts.secret, username);
        Ok(generate_auth_key(username, realm, &password))
    }
}

/// The `turns:` port: where it listens, its certificate, and the host name clients are told
/// (the name the certificate is for, as browsers check it).
pub struct TlsPort {
    pub listen: SocketAddr,
    pub acceptor: TlsAcceptor,
    pub host: String,
}

/// A running TURN listener; dropping it stops it.
pub struct TurnListener {
    /// The UDP address it is bound to; TCP is served on the same port.
    pub local: SocketAddr,
    /// The address clients are told (`turn:<advertised>?transport=udp` and `…=tcp`) and relays
    /// report.
    pub advertised: SocketAddr,
    /// The `turns:` address it is bound to, and the URI clients are told for it.
    pub tls: Option<(SocketAddr, String)>,
    stop: Option<oneshot::Sender<()>>,
}

impl TurnListener {
    /// The URIs clients are given for this listener: UDP first, which browsers prefer anyway,
    /// then TCP and TLS for networks without UDP.
    pub fn uris(&self) -> Vec<String> {
        let mut uris = vec![
            format!("turn:{}?transport=udp", self.advertised),
            format!("turn:{}?transport=tcp", self.advertised),
        ];
        uris.extend(self.tls.iter().map(|(_, uri)| uri.clone()));
        uris
    }

    /// Binds `listen` (UDP and TCP) and `tls` and starts relaying. Relay sockets are bound on
    /// the listen IP and reported with `advertised_ip`; peers on loopback and private addresses
    /// are allowed, as the media socket may be there.
    pub fn start(
        listen: SocketAddr,
        tls: Option<TlsPort>,
        advertised_ip: IpAddr,
        parts: TurnAuthParts,
    ) -> anyhow::Result<TurnListener> {
        let (udp, tcp) = bind_udp_and_tcp(listen)?;
        let local = udp.local_addr()?;
        let advertised = SocketAddr::new(advertised_ip, local.port());
        let (tls, tls_uri) = match tls {
            Some(port) => {
                let (socket, uri) = bind_tls(&port)?;
                (Some((socket, port.acceptor)), Some(uri))
            }
            None => (None, None),
        };
        let sockets = Sockets {
            udp,
            tcp,
            tls,
            advertised_ip,
            relay_bind: listen.ip().to_string(),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready_tx, ready) = std::sync::mpsc::sync_channel::<Result<(), StartError>>(1);
        std::thread::Builder::new()
            .name("carillon-turn".into())
            .spawn(move || run(sockets, parts, ready_tx, stopped))
            .context("starting the TURN thread")?;
        match ready.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => Ok(TurnListener {
                local,
                advertised,
                tls: tls_uri,
                stop: Some(stop),
            }),
            Ok(Err(error)) => anyhow::bail!("starting the TURN listener: {error}"),
            Err(_) => anyhow::bail!("the TURN listener did not start"),
        }
    }
}

/// The bound sockets the listener's thread serves, and where its relays are bound and reported.
struct Sockets {
    udp: std::net::UdpSocket,
    tcp: std::net::TcpListener,
    tls: Option<(std::net::TcpListener, TlsAcceptor)>,
    advertised_ip: IpAddr,
    relay_bind: String,
}

/// Binds the `turns:` port: the listener, its address and the URI clients are told for it.
fn bind_tls(port: &TlsPort) -> anyhow::Result<(std::net::TcpListener, (SocketAddr, String))> {
    let socket = std::net::TcpListener::bind(port.listen)
        .with_context(|| format!("binding the TURN TLS listener {}", port.listen))?;
    socket.set_nonblocking(true)?;
    let bound = socket.local_addr()?;
    let host = match port.host.parse::<IpAddr>() {
        Ok(IpAddr::V6(ip)) => format!("[{ip}]"),
        _ => port.host.clone(),
    };
    let uri = format!("turns:{host}:{}?transport=tcp", bound.port());
    Ok((socket, (bound, uri)))
}

/// The listener's thread: its own runtime, serving until stopped. Whether it could start is
/// sent on `ready`.
fn run(
    sockets: Sockets,
    parts: TurnAuthParts,
    ready: std::sync::mpsc::SyncSender<Result<(), StartError>>,
    stopped: oneshot::Receiver<()>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = ready.send(Err(StartError::Runtime(error)));
            return;
        }
    };
    runtime.block_on(serve(sockets, parts, ready, stopped));
}

async fn serve(
    sockets: Sockets,
    parts: TurnAuthParts,
    ready: std::sync::mpsc::SyncSender<Result<(), StartError>>,
    stopped: oneshot::Receiver<()>,
) {
    let conns = match conns(sockets.udp, sockets.tcp, sockets.tls) {
        Ok(conns) => conns,
        Err(error) => {
            let _ = ready.send(Err(StartError::Sockets(error)));
            return;
        }
    };
    let config = ServerConfig {
        conn_configs: conns
            .into_iter()
            .map(|conn| ConnConfig {
                conn,
                relay_addr_generator: Box::new(RelayAddressGeneratorStatic {
                    relay_address: sockets.advertised_ip,
                    address: sockets.relay_bind.clone(),
                    net: Arc::new(Net::new(None)),
                }),
            })
            .collect(),
        realm: REALM.into(),
        auth_handler: Arc::new(Auth { parts }),
        channel_bind_timeout: Duration::ZERO,
        alloc_close_notify: None,
    };
    match turn::server::Server::new(config).await {
        Ok(server) => {
            let _ = ready.send(Ok(()));
            // Until stopped, or until the handle is dropped.
            let _ = stopped.await;
            let _ = server.close().await;
        }
        Err(error) => {
            let _ = ready.send(Err(StartError::Server(error)));
        }
    }
}

/// The bound sockets as the `turn` server's connections: UDP, TCP, then TLS when on. Must run
/// on the listener's runtime, whose tasks serve the stream transports.
fn conns(
    udp: std::net::UdpSocket,
    tcp: std::net::TcpListener,
    tls: Option<(std::net::TcpListener, TlsAcceptor)>,
) -> std::io::Result<Vec<Arc<dyn Conn + Send + Sync>>> {
    let udp = tokio::net::UdpSocket::from_std(udp)?;
    let tcp = StreamConn::serve(tokio::net::TcpListener::from_std(tcp)?, None)?;
    let tls = match tls {
        Some((socket, acceptor)) => Some(StreamConn::serve(
            tokio::net::TcpListener::from_std(socket)?,
            Some(acceptor),
        )?),
        None => None,
    };
    Ok([Arc::new(udp) as _, tcp as _]
        .into_iter()
        .chain(tls.map(|tls| tls as _))
        .collect())
}

/// Binds UDP at `listen` and TCP on the same port. When the port is left to the system (0), the
/// UDP port it picks may be taken for TCP: then another is tried.
fn bind_udp_and_tcp(
    listen: SocketAddr,
) -> anyhow::Result<(std::net::UdpSocket, std::net::TcpListener)> {
    let mut attempts = 0;
    loop {
        let socket = std::net::UdpSocket::bind(listen)
            .with_context(|| format!("binding the TURN listener {listen} (UDP)"))?;
        let port = socket.local_addr()?.port();
        match std::net::TcpListener::bind(SocketAddr::new(listen.ip(), port)) {
            Ok(tcp) => {
                socket.set_nonblocking(true)?;
                tcp.set_nonblocking(true)?;
                return Ok((socket, tcp));
            }
            Err(_) if listen.port() == 0 && attempts < 10 => attempts += 1,
            Err(error) => {
                return Err(error).with_context(|| {
                    format!("binding the TURN listener {}:{port} (TCP)", listen.ip())
                });
            }
        }
    }
}

impl Drop for TurnListener {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
