//! TURN as the configuration asks for it: nothing (the default), credentials for external TURN
//! servers (`--turn-uris` with `--turn-secret`), or the embedded listener (`--turn-listen`),
//! advertised unless `--turn-uris` names the servers. The secret is never logged.

use std::net::IpAddr;
use std::sync::Arc;

use crate::clock::Clock;
use crate::config::Config;
use crate::store::Store;
use crate::tls::ReloadableCertificate;

use super::listener::{TlsPort, TurnAuthParts, TurnListener};
use super::{Grants, TurnMinter};

/// What the rest of the server needs to know of TURN.
#[derive(Default)]
pub struct Turn {
    /// Mints the credentials every JOIN_ACK carries; None when TURN is off.
    pub minter: Option<Arc<TurnMinter>>,
    /// The embedded listener; it stops when dropped.
    pub listener: Option<TurnListener>,
}

/// What the embedded listener works with, from the rest of the server.
pub struct TurnDeps<'a> {
    /// The API's address, advertised when nothing better names this host.
    pub http_ip: IpAddr,
    /// The certificate of `turns:` (`--turn-tls-cert`, else the HTTPS one).
    pub certificate: Option<&'a Arc<ReloadableCertificate>>,
    /// The `--public-url`, whose host `turns:` URIs name (what browsers check the certificate
    /// against).
    pub public_url: &'a str,
    /// To refuse a deleted attendee or an ended meeting.
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
}

/// The `--turn-uris` the configuration names (empty entries, as an empty variable gives, left
/// out).
fn configured_uris(config: &Config) -> Vec<String> {
    config
        .turn_uris
        .iter()
        .map(|uri| uri.trim())
        .filter(|uri| !uri.is_empty())
        .map(str::to_string)
        .collect()
}

/// What [`start`] would refuse: malformed URIs, or URIs without the secret their server checks
/// credentials with.
pub fn check(config: &Config) -> anyhow::Result<()> {
    let uris = configured_uris(config);
    for uri in &uris {
        super::check_uri(uri).map_err(|error| anyhow::anyhow!("--turn-uris: {error}"))?;
    }
    let has_secret = config.turn_secret.as_deref().is_some_and(|s| !s.is_empty());
    anyhow::ensure!(
        uris.is_empty() || has_secret || config.turn_listen.is_some(),
        "--turn-uris needs --turn-secret, the secret the TURN server checks credentials with \
         (coturn: use-auth-secret and static-auth-secret)"
    );
    Ok(())
}

/// Starts TURN as configured.
pub fn start(config: &Config, deps: TurnDeps<'_>) -> anyhow::Result<Turn> {
    check(config)?;
    let uris = configured_uris(config);
    let configured_secret = config.turn_secret.clone().filter(|s| !s.is_empty());
    let Some(listen) = config.turn_listen else {
        let Some(secret) = configured_secret.filter(|_| !uris.is_empty()) else {
            return Ok(Turn::default());
        };
        tracing::info!(
            ?uris,
            ttl = config.turn_ttl,
            "TURN on: every JOIN_ACK carries credentials for these servers, and clients relay \
             all media through them"
        );
        return Ok(Turn {
            minter: Some(Arc::new(TurnMinter::new(
                uris,
                secret,
                config.turn_ttl,
                None,
            ))),
            listener: None,
        });
    };
    let secret = configured_secret.unwrap_or_else(|| {
        tracing::info!(
            "no --turn-secret: generated a random secret for the embedded TURN listener \
             (credentials minted before a restart stop working after it)"
        );
        super::random_secret()
    });
    let advertised_ip = advertised_ip(config, listen, deps.http_ip)?;
    let tls = tls_port(config, &deps, advertised_ip)?;
    let grants = Arc::new(Grants::default());
    let listener = TurnListener::start(
        listen,
        tls,
        advertised_ip,
        TurnAuthParts {
            secret: secret.clone(),
            grants: grants.clone(),
            store: deps.store,
            clock: deps.clock,
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
    Ok(Turn {
        minter: Some(Arc::new(TurnMinter::new(
            uris,
            secret,
            config.turn_ttl,
            Some(grants),
        ))),
        listener: Some(listener),
    })
}

/// The address relayed candidates name: the media's public address, else the listen address,
/// else the API's, else this host's first.
fn advertised_ip(
    config: &Config,
    listen: std::net::SocketAddr,
    http_ip: IpAddr,
) -> anyhow::Result<IpAddr> {
    config
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
        })
}

/// The `turns:` port (`--turn-tls-listen`), which needs a certificate.
fn tls_port(
    config: &Config,
    deps: &TurnDeps<'_>,
    advertised_ip: IpAddr,
) -> anyhow::Result<Option<TlsPort>> {
    match (config.turn_tls_listen, deps.certificate) {
        (Some(listen), Some(certificate)) => Ok(Some(TlsPort {
            listen,
            acceptor: certificate.acceptor(&[])?,
            // The name clients check the certificate against: the one they reach the API at.
            host: deps
                .public_url
                .parse::<http::Uri>()
                .ok()
                .and_then(|uri| uri.host().map(str::to_string))
                .unwrap_or_else(|| advertised_ip.to_string()),
        })),
        (Some(_), None) => anyhow::bail!(
            "--turn-tls-listen needs a certificate: --tls-cert and --tls-key, or --turn-tls-cert \
             and --turn-tls-key"
        ),
        (None, _) => Ok(None),
    }
}
