//! The media socket and its demultiplexer: which peer a datagram belongs to, in O(1).
//!
//! The server is ICE-lite, so every client starts with a STUN binding request whose USERNAME is
//! `<server ufrag>:<client ufrag>`. The first such request from an address teaches the route;
//! every later datagram from that address (DTLS, SRTP, RTCP) goes by a hash lookup straight to
//! the meeting that owns the peer. Datagrams from unknown addresses that are not a binding for a
//! known ufrag are dropped.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Socket buffers: a burst from hundreds of senders must wait in the kernel, not be dropped.
const SOCKET_BUFFER_BYTES: usize = 8 << 20;
const MAX_DATAGRAM: usize = 2048;

pub struct Datagram {
    pub session: u64,
    pub source: SocketAddr,
    /// The host candidate it was sent to.
    pub destination: SocketAddr,
    pub received: Instant,
    pub contents: Vec<u8>,
}

#[derive(Clone)]
pub struct Route {
    pub session: u64,
    pub inbox: mpsc::Sender<Datagram>,
}

#[derive(Default)]
struct Table {
    by_address: HashMap<SocketAddr, Route>,
    by_ufrag: HashMap<String, Route>,
    addresses_of: HashMap<u64, Vec<SocketAddr>>,
}

/// Datagram counters for metrics and benchmarks.
#[derive(Default)]
pub struct NetStats {
    pub received: AtomicU64,
    pub unroutable: AtomicU64,
    /// Dropped because the owning meeting's inbox was full.
    pub inbox_full: AtomicU64,
}

#[derive(Clone, Default)]
pub struct Routes {
    table: Arc<RwLock<Table>>,
    pub stats: Arc<NetStats>,
}

impl Routes {
    pub fn add_ufrag(&self, ufrag: String, route: Route) {
        if let Ok(mut table) = self.table.write() {
            table.by_ufrag.insert(ufrag, route);
        }
    }

    pub fn remove_session(&self, session: u64, ufrag: Option<&str>) {
        if let Ok(mut table) = self.table.write() {
            if let Some(ufrag) = ufrag {
                table.by_ufrag.remove(ufrag);
            }
            for address in table.addresses_of.remove(&session).unwrap_or_default() {
                table.by_address.remove(&address);
            }
        }
    }

    fn route(&self, source: SocketAddr, datagram: &[u8]) -> Option<Route> {
        if let Ok(table) = self.table.read()
            && let Some(route) = table.by_address.get(&source)
        {
            return Some(route.clone());
        }
        let ufrag = stun_server_ufrag(datagram)?;
        let mut table = self.table.write().ok()?;
        let route = table.by_ufrag.get(ufrag)?.clone();
        // A session may use a few addresses (several candidate pairs); bound how many it teaches.
        let addresses = table.addresses_of.entry(route.session).or_default();
        if addresses.len() >= 8 {
            return Some(route);
        }
        addresses.push(source);
        table.by_address.insert(source, route.clone());
        Some(route)
    }
}

/// Where the media plane listens and what it tells clients: one bound socket per host address
/// it answers on, each with the host candidates that reach it.
///
/// - `--media-public-ip` given: one socket on the listen address, advertised as those IPs (a
///   1:1 NAT rewrites them to the bound address on the way in).
/// - A specific listen IP: one socket, advertised as itself.
/// - Every address (`0.0.0.0`, `[::]`): one socket per address of this host, on one port, each
///   advertised as itself, so a datagram's destination is known from the socket it arrived on
///   (str0m accepts a check only when its destination is one of its candidates) and a reply
///   leaves from the address the client wrote to. An unspecified address is never advertised.
pub struct MediaSockets {
    pub sockets: Vec<Arc<MediaSocket>>,
}

pub struct MediaSocket {
    pub socket: UdpSocket,
    pub local: SocketAddr,
    /// The host candidates clients reach this socket at.
    pub candidates: Vec<SocketAddr>,
}

impl MediaSocket {
    /// The host candidate a datagram from `source` was sent to: of several advertised
    /// addresses (an IPv4 and an IPv6 one behind a NAT), the first of the source's family.
    pub fn candidate_for(&self, source: SocketAddr) -> SocketAddr {
        let family = |address: &&SocketAddr| address.is_ipv4() == source.is_ipv4();
        self.candidates
            .iter()
            .find(family)
            .or(self.candidates.first())
            .copied()
            .unwrap_or(self.local)
    }
}

/// How to bind the media plane.
#[derive(Debug, Clone, Default)]
pub struct MediaAddresses {
    /// The bind address; an unspecified IP means every address of this host.
    pub listen: Option<SocketAddr>,
    /// `--media-public-ip`: the addresses clients are given instead of the bound one.
    pub public_ips: Vec<IpAddr>,
    /// Whether loopback addresses are among those bound when listening on every address: yes
    /// for a node whose API is on loopback (local development), no on a server, whose remote
    /// clients would only try their own loopback.
    pub loopback: bool,
}

impl MediaAddresses {
    /// One socket bound at `listen`, advertised as itself.
    pub fn bound(listen: SocketAddr) -> MediaAddresses {
        MediaAddresses {
            listen: Some(listen),
            ..MediaAddresses::default()
        }
    }
}

impl MediaSockets {
    pub fn bind(addresses: &MediaAddresses) -> std::io::Result<MediaSockets> {
        let listen = addresses
            .listen
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
        if !addresses.public_ips.is_empty() || !listen.ip().is_unspecified() {
            let socket = bind(listen)?;
            let local = socket.local_addr()?;
            let candidates = if addresses.public_ips.is_empty() {
                vec![local]
            } else {
                let port = local.port();
                let public = addresses.public_ips.iter();
                public.map(|ip| SocketAddr::new(*ip, port)).collect()
            };
            let socket = MediaSocket {
                socket,
                local,
                candidates,
            };
            return Ok(MediaSockets {
                sockets: vec![Arc::new(socket)],
            });
        }
        let ips = host_addresses(listen.ip().is_ipv6(), addresses.loopback);
        if ips.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrNotAvailable,
                format!(
                    "media listens on every address ({listen}) but this host has no address a                      client could reach it at; give --media-public-ip"
                ),
            ));
        }
        let mut port = listen.port();
        let mut sockets = Vec::with_capacity(ips.len());
        for ip in ips {
            // One port for all when it can be had, so that a firewall rule names one port.
            let socket = match bind(SocketAddr::new(ip, port)) {
                Ok(socket) => socket,
                Err(_) if listen.port() == 0 => bind(SocketAddr::new(ip, 0))?,
                Err(error) => return Err(error),
            };
            let local = socket.local_addr()?;
            if port == 0 {
                port = local.port();
            }
            sockets.push(Arc::new(MediaSocket {
                socket,
                local,
                candidates: vec![local],
            }));
        }
        Ok(MediaSockets { sockets })
    }

    /// Every host candidate, in the order clients are given them.
    pub fn candidates(&self) -> Vec<SocketAddr> {
        let each = self.sockets.iter();
        each.flat_map(|s| s.candidates.iter().copied()).collect()
    }

    /// Sends from the socket that answers for `source` (a candidate str0m chose), or the first
    /// of the destination's family.
    pub fn send(&self, source: SocketAddr, destination: SocketAddr, contents: &[u8]) {
        let socket = self
            .sockets
            .iter()
            .find(|s| s.candidates.contains(&source))
            .or_else(|| {
                let family = destination.is_ipv4();
                self.sockets.iter().find(|s| s.local.is_ipv4() == family)
            })
            .or(self.sockets.first());
        if let Some(socket) = socket {
            let _ = socket.socket.try_send_to(contents, destination);
        }
    }
}

/// This host's own addresses that a client could reach: every interface's, IPv4 (and IPv6 when
/// `ipv6`), without link-local ones (they need a scope) and with loopback only when asked,
/// loopback last.
pub fn host_addresses(ipv6: bool, loopback: bool) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .map(|interface| interface.ip())
        .filter(|ip| ipv6 || ip.is_ipv4())
        .filter(|ip| !ip.is_unspecified() && !ip.is_multicast())
        .filter(|ip| match ip {
            IpAddr::V4(v4) => !v4.is_link_local(),
            IpAddr::V6(v6) => !v6.is_unicast_link_local(),
        })
        .filter(|ip| loopback || !ip.is_loopback())
        .collect();
    ips.sort_by_key(|ip| (ip.is_loopback(), ip.is_ipv6()));
    ips.dedup();
    ips
}

/// Binds one media socket with large buffers.
pub fn bind(listen: SocketAddr) -> std::io::Result<UdpSocket> {
    let domain = socket2::Domain::for_address(listen);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    // The kernel may cap these (net.core.rmem_max); smaller buffers still work.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES);
    socket.set_nonblocking(true)?;
    socket.bind(&listen.into())?;
    UdpSocket::from_std(socket.into())
}

/// Reads a socket forever, handing each datagram to the meeting that owns its peer.
pub async fn receive(socket: Arc<MediaSocket>, routes: Routes) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, source) = match socket.socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(error) => {
                // ICMP port-unreachable surfaces as an error on some systems; keep reading.
                tracing::debug!(%error, "media socket receive error");
                continue;
            }
        };
        routes.stats.received.fetch_add(1, Ordering::Relaxed);
        let Some(datagram) = buf.get(..n) else {
            continue;
        };
        let Some(route) = routes.route(source, datagram) else {
            routes.stats.unroutable.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let datagram = Datagram {
            session: route.session,
            source,
            destination: socket.candidate_for(source),
            received: Instant::now(),
            contents: datagram.to_vec(),
        };
        if route.inbox.try_send(datagram).is_err() {
            routes.stats.inbox_full.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The server's ufrag from a STUN binding request's USERNAME (`server:client`), if the
/// datagram is one.
pub fn stun_server_ufrag(datagram: &[u8]) -> Option<&str> {
    const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
    const BINDING_REQUEST: [u8; 2] = [0x00, 0x01];
    const USERNAME: [u8; 2] = [0x00, 0x06];
    if datagram.get(0..2)? != BINDING_REQUEST || datagram.get(4..8)? != MAGIC_COOKIE {
        return None;
    }
    let length = usize::from(u16::from_be_bytes(datagram.get(2..4)?.try_into().ok()?));
    let attributes = datagram.get(20..20 + length)?;
    let mut at = 0;
    while let Some(header) = attributes.get(at..at + 4) {
        let kind = header.get(0..2)?;
        let size = usize::from(u16::from_be_bytes(header.get(2..4)?.try_into().ok()?));
        let value = attributes.get(at + 4..at + 4 + size)?;
        if kind == USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next();
        }
        at += 4 + size.div_ceil(4) * 4;
    }
    None
}

/// The ICE ufrag of an SDP (the server's, in an answer it made).
pub fn sdp_ufrag(sdp: &str) -> Option<&str> {
    sdp.lines()
        .find_map(|line| line.trim_end().strip_prefix("a=ice-ufrag:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(username: &str) -> Vec<u8> {
        let mut attrs = Vec::new();
        // A PRIORITY attribute first, then USERNAME padded to 4 bytes.
        attrs.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 1, 2, 3, 4]);
        attrs.extend_from_slice(&[0x00, 0x06]);
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username.as_bytes());
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut message = vec![0x00, 0x01];
        message.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        message.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        message.extend_from_slice(&[7; 12]);
        message.extend_from_slice(&attrs);
        message
    }

    #[test]
    fn the_server_ufrag_comes_from_a_binding_request() {
        assert_eq!(stun_server_ufrag(&binding("srvX:cli")), Some("srvX"));
        assert_eq!(stun_server_ufrag(&binding("abc")), Some("abc"));
        let mut truncated = binding("srvX:cli");
        truncated.truncate(26);
        assert_eq!(stun_server_ufrag(&truncated), None);
        assert_eq!(
            stun_server_ufrag(&[0x80, 0x60, 0, 0]),
            None,
            "RTP is not STUN"
        );
        assert_eq!(stun_server_ufrag(&[]), None);
    }

    #[test]
    fn the_ufrag_is_read_from_an_answer() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:Zx9q\r\na=ice-pwd:p\r\n";
        assert_eq!(sdp_ufrag(sdp), Some("Zx9q"));
        assert_eq!(sdp_ufrag("v=0\r\n"), None);
    }

    #[tokio::test]
    async fn an_address_is_learned_from_its_first_binding() {
        let routes = Routes::default();
        let (inbox, _rx) = mpsc::channel(4);
        routes.add_ufrag("srvX".into(), Route { session: 9, inbox });
        let from: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        assert!(
            routes.route(from, &[0x80, 0x60]).is_none(),
            "unknown and not STUN"
        );
        assert_eq!(
            routes.route(from, &binding("srvX:c")).map(|r| r.session),
            Some(9)
        );
        assert_eq!(
            routes.route(from, &[0x80, 0x60]).map(|r| r.session),
            Some(9)
        );
        routes.remove_session(9, Some("srvX"));
        assert!(routes.route(from, &[0x80, 0x60]).is_none());
    }
}
