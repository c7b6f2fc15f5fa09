//! TURN: off by default (JOIN_ACK credentials name no server); with --turn-uris and --turn-secret every
//! JOIN_ACK carries TURN REST credentials (checked here with an HMAC computed independently);
//! the embedded listener (--turn-listen) allocates for valid credentials, relays to loopback,
//! and refuses expired credentials, a wrong password and a deleted attendee's credentials.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use carillon::join::frames::proto::SdkTurnCredentials;
use carillon::turn::stream::{MAX_MESSAGE, read_message};
use common::TestServer;
use common::signal::{Meeting, SignalClient, attendee, meeting};
use common::tls::{connector, write_certificate};
use hmac::{Hmac, Mac};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use webrtc_util::Conn;

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

/// base64(HMAC-SHA1(secret, username)), computed here rather than by the server's code.
fn hmac_sha1_base64(secret: &str, username: &str) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

async fn join_ack_credentials(
    server: &TestServer,
    m: &Meeting,
    name: &str,
) -> (String, Option<SdkTurnCredentials>) {
    let (attendee_id, token) = attendee(server, m, name).await;
    let mut client = SignalClient::connect(&m.signaling_url, &token).await;
    let (ack, _) = client.join().await;
    (attendee_id, ack.joinack.expect("joinack").turn_credentials)
}

#[tokio::test]
async fn join_ack_names_no_turn_server_by_default() {
    let server = TestServer::start().await;
    let m = meeting(&server).await;
    let (_, credentials) = join_ack_credentials(&server, &m, "José").await;
    // Credentials with no TURN server: the SDK connects directly, and does not log the error
    // it logs for a JOIN_ACK without any.
    assert_eq!(
        credentials,
        Some(SdkTurnCredentials::default()),
        "TURN is off unless configured"
    );
    assert_eq!(
        server.running.as_ref().expect("running").boot.turn_addr,
        None
    );
}

#[tokio::test]
async fn join_ack_carries_turn_rest_credentials_when_configured() {
    let uris = vec![
        "turn:turn.example.com:3478?transport=udp".to_string(),
        "turns:turn.example.com:443?transport=tcp".to_string(),
    ];
    let secret = "coturn-static-secret-ñ";
    let server = TestServer::start_with(|config| {
        config.turn_uris = uris.clone();
        config.turn_secret = Some(secret.into());
        config.turn_ttl = 3600;
    })
    .await;
    let m = meeting(&server).await;
    let before = unix_now();
    let (attendee_id, credentials) = join_ack_credentials(&server, &m, "Zoë").await;
    let after = unix_now();
    let credentials = credentials.expect("TURN credentials in JOIN_ACK");
    let username = credentials.username.expect("username");
    let (expiry, who) = username.split_once(':').expect("<expiry>:<attendee>");
    assert_eq!(who, attendee_id);
    let expiry: i64 = expiry.parse().expect("a unix time");
    assert!(
        (before + 3600..=after + 3600).contains(&expiry),
        "expires after the TTL: {expiry}"
    );
    assert_eq!(
        credentials.password.as_deref(),
        Some(hmac_sha1_base64(secret, &username).as_str())
    );
    assert_eq!(credentials.ttl, Some(3600));
    assert_eq!(credentials.uris, uris);
}

#[tokio::test]
async fn turn_uris_without_a_secret_are_refused_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = common::config_for(dir.path());
    config.turn_uris = vec!["turn:turn.example.com:3478".into()];
    let error = carillon::server::start(&config)
        .await
        .err()
        .expect("refused");
    assert!(error.to_string().contains("--turn-secret"), "{error}");
    config.turn_uris = vec!["stun:stun.example.com".into()];
    config.turn_secret = Some("s".into());
    assert!(carillon::server::start(&config).await.is_err());
}

/// How a test client reaches the TURN listener.
#[derive(Clone)]
enum Transport {
    Udp,
    Tcp,
    /// TLS, trusting this certificate.
    Tls(CertificateDer<'static>),
}

/// The client side of TURN over a stream, as the `Conn` webrtc-rs's TURN client writes to: each
/// `send_to` writes one message (ChannelData comes padded from the client), each `recv_from`
/// reads one with the server's own framing.
struct StreamClientConn<S> {
    server: SocketAddr,
    local: SocketAddr,
    reader: tokio::sync::Mutex<tokio::io::ReadHalf<S>>,
    writer: tokio::sync::Mutex<tokio::io::WriteHalf<S>>,
}

#[async_trait::async_trait]
impl<S: AsyncRead + AsyncWrite + Send + Sync + 'static> Conn for StreamClientConn<S> {
    async fn connect(&self, _addr: SocketAddr) -> webrtc_util::Result<()> {
        Ok(())
    }
    async fn recv(&self, buf: &mut [u8]) -> webrtc_util::Result<usize> {
        Ok(self.recv_from(buf).await?.0)
    }
    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        let mut message = Box::new([0u8; MAX_MESSAGE]);
        let n = read_message(&mut *self.reader.lock().await, &mut message)
            .await?
            .ok_or(webrtc_util::Error::ErrUseClosedNetworkConn)?;
        buf[..n].copy_from_slice(&message[..n]);
        Ok((n, self.server))
    }
    async fn send(&self, buf: &[u8]) -> webrtc_util::Result<usize> {
        self.send_to(buf, self.server).await
    }
    async fn send_to(&self, buf: &[u8], _target: SocketAddr) -> webrtc_util::Result<usize> {
        let mut writer = self.writer.lock().await;
        writer.write_all(buf).await?;
        writer.flush().await?;
        Ok(buf.len())
    }
    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        Ok(self.local)
    }
    fn remote_addr(&self) -> Option<SocketAddr> {
        Some(self.server)
    }
    async fn close(&self) -> webrtc_util::Result<()> {
        let _ = self.writer.lock().await.shutdown().await;
        Ok(())
    }
    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

fn stream_conn<S: AsyncRead + AsyncWrite + Send + Sync + 'static>(
    stream: S,
    server: SocketAddr,
    local: SocketAddr,
) -> Arc<dyn Conn + Send + Sync> {
    let (reader, writer) = tokio::io::split(stream);
    Arc::new(StreamClientConn {
        server,
        local,
        reader: tokio::sync::Mutex::new(reader),
        writer: tokio::sync::Mutex::new(writer),
    })
}

/// A TURN client on loopback that allocates with these credentials.
async fn turn_client(
    server: SocketAddr,
    transport: &Transport,
    username: &str,
    password: &str,
) -> turn::client::Client {
    let conn: Arc<dyn Conn + Send + Sync> = match transport {
        Transport::Udp => Arc::new(
            tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("socket"),
        ),
        Transport::Tcp => {
            let tcp = TcpStream::connect(server).await.expect("connects");
            let local = tcp.local_addr().expect("local");
            stream_conn(tcp, server, local)
        }
        Transport::Tls(trusted) => {
            let tcp = TcpStream::connect(server).await.expect("connects");
            let local = tcp.local_addr().expect("local");
            let tls = connector(std::slice::from_ref(trusted))
                .connect(ServerName::try_from("127.0.0.1").expect("name"), tcp)
                .await
                .expect("TLS handshake with the certificate in force");
            stream_conn(tls, server, local)
        }
    };
    let client = turn::client::Client::new(turn::client::ClientConfig {
        stun_serv_addr: server.to_string(),
        turn_serv_addr: server.to_string(),
        username: username.into(),
        password: password.into(),
        realm: String::new(),
        software: String::new(),
        rto_in_ms: 0,
        conn,
        vnet: None,
    })
    .await
    .expect("client");
    client.listen().await.expect("listens");
    client
}

async fn allocates(server: SocketAddr, username: &str, password: &str) -> bool {
    allocates_over(server, &Transport::Udp, username, password).await
}

async fn allocates_over(
    server: SocketAddr,
    transport: &Transport,
    username: &str,
    password: &str,
) -> bool {
    let client = turn_client(server, transport, username, password).await;
    let allocated = tokio::time::timeout(Duration::from_secs(10), client.allocate())
        .await
        .expect("an answer within 10 s")
        .is_ok();
    let _ = client.close().await;
    allocated
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_listener_relays_for_live_attendees_only() {
    let secret = "embedded-secret";
    let server = TestServer::start_with(|config| {
        config.turn_listen = Some("127.0.0.1:0".parse().expect("address"));
        config.turn_secret = Some(secret.into());
    })
    .await;
    let turn_addr = server
        .running
        .as_ref()
        .expect("running")
        .boot
        .turn_addr
        .expect("the TURN listener runs");
    let m = meeting(&server).await;
    let (jose_id, jose_token) = attendee(&server, &m, "José").await;
    let mut jose = SignalClient::connect(&m.signaling_url, &jose_token).await;
    let (ack, _) = jose.join().await;
    let credentials = ack
        .joinack
        .expect("joinack")
        .turn_credentials
        .expect("credentials for the embedded listener");
    assert_eq!(
        credentials.uris,
        vec![
            format!("turn:{turn_addr}?transport=udp"),
            format!("turn:{turn_addr}?transport=tcp"),
        ],
        "the listener advertises itself, UDP and TCP on one port"
    );
    let username = credentials.username.expect("username");
    let password = credentials.password.expect("password");

    // A valid credential allocates, and the relay reaches a peer on loopback (where the media
    // socket is in tests).
    let client = turn_client(turn_addr, &Transport::Udp, &username, &password).await;
    let relay = client.allocate().await.expect("allocates");
    assert_eq!(
        relay.local_addr().expect("relay address").ip(),
        turn_addr.ip()
    );
    let peer = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("peer");
    let peer_addr = peer.local_addr().expect("peer address");
    relay
        .send_to("¡hola, Zoë!".as_bytes(), peer_addr)
        .await
        .expect("relayed");
    let mut buffer = [0u8; 64];
    let (n, from) = tokio::time::timeout(Duration::from_secs(10), peer.recv_from(&mut buffer))
        .await
        .expect("relayed within 10 s")
        .expect("received");
    assert_eq!(&buffer[..n], "¡hola, Zoë!".as_bytes());
    assert_eq!(from.port(), relay.local_addr().expect("relay").port());
    let _ = relay.close().await;
    let _ = client.close().await;

    // The right HMAC of an expired username is refused; so is a wrong password.
    let expired = format!("{}:{jose_id}", unix_now() - 10);
    assert!(!allocates(turn_addr, &expired, &hmac_sha1_base64(secret, &expired)).await);
    assert!(!allocates(turn_addr, &username, "not-the-password").await);
    // A forged username for an attendee the node never minted for is refused.
    let forged = format!(
        "{}:{}",
        unix_now() + 600,
        "00000000-0000-0000-0000-000000000000"
    );
    assert!(!allocates(turn_addr, &forged, &hmac_sha1_base64(secret, &forged)).await);

    // The attendee's content-share session (`<JoinToken>#content`) gets credentials of its own
    // (`<expiry>:<AttendeeId>#content`), which the listener admits as the attendee's.
    let mut content =
        SignalClient::connect(&m.signaling_url, &format!("{jose_token}#content")).await;
    let (content_ack, _) = content.join().await;
    let content_credentials = content_ack
        .joinack
        .expect("joinack")
        .turn_credentials
        .expect("credentials for the content share");
    let content_user = content_credentials.username.expect("username");
    let content_password = content_credentials.password.expect("password");
    assert!(
        content_user.ends_with(&format!(":{jose_id}#content")),
        "{content_user}"
    );
    assert!(allocates(turn_addr, &content_user, &content_password).await);

    // Once the attendee is deleted, its unexpired credentials stop working, its content
    // share's too.
    assert!(allocates(turn_addr, &username, &password).await);
    server
        .client()
        .delete_attendee()
        .meeting_id(&m.id)
        .attendee_id(&jose_id)
        .send()
        .await
        .expect("delete");
    assert!(!allocates(turn_addr, &username, &password).await);
    assert!(!allocates(turn_addr, &content_user, &content_password).await);

    // And once the meeting ends, so do those of everyone in it.
    let (_, zoe) = join_ack_credentials(&server, &m, "Zoë").await;
    let zoe = zoe.expect("credentials");
    let (zoe_user, zoe_password) = (
        zoe.username.expect("username"),
        zoe.password.expect("password"),
    );
    assert!(allocates(turn_addr, &zoe_user, &zoe_password).await);
    server
        .client()
        .delete_meeting()
        .meeting_id(&m.id)
        .send()
        .await
        .expect("delete meeting");
    assert!(!allocates(turn_addr, &zoe_user, &zoe_password).await);
}

/// Allocates over `transport`, relays "¡hola, Zoë!" to a UDP peer on loopback and the peer's
/// answer back: the stream carries both STUN and the client's data.
async fn relays_both_ways(turn: SocketAddr, transport: &Transport, username: &str, password: &str) {
    let client = turn_client(turn, transport, username, password).await;
    let relay = tokio::time::timeout(Duration::from_secs(10), client.allocate())
        .await
        .expect("an answer within 10 s")
        .expect("allocates");
    let peer = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("peer");
    let peer_addr = peer.local_addr().expect("peer address");
    let mut buffer = [0u8; 1500];
    // Over a stream nothing is lost, but the first Send may race the permission: send a few.
    let mut relayed = None;
    for _ in 0..20 {
        relay
            .send_to("¡hola, Zoë!".as_bytes(), peer_addr)
            .await
            .expect("relayed");
        if let Ok(Ok(received)) =
            tokio::time::timeout(Duration::from_millis(500), peer.recv_from(&mut buffer)).await
        {
            relayed = Some(received);
            break;
        }
    }
    let (n, from) = relayed.expect("the peer hears the client through the relay");
    assert_eq!(&buffer[..n], "¡hola, Zoë!".as_bytes());
    // A datagram of 1 001 bytes: ChannelData or a Data indication that needs padding on TCP.
    let answer = "«Ana» ".repeat(143);
    let answer = &answer.as_bytes()[..1001];
    peer.send_to(answer, from).await.expect("answers");
    let (n, from_peer) =
        tokio::time::timeout(Duration::from_secs(10), relay.recv_from(&mut buffer))
            .await
            .expect("the answer within 10 s")
            .expect("received");
    assert_eq!(&buffer[..n], answer);
    assert_eq!(from_peer, peer_addr);
    let _ = relay.close().await;
    let _ = client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_listener_relays_over_tcp_and_tls_for_live_attendees_only() {
    let dir = tempfile::tempdir().expect("dir");
    let (cert, key, der) = write_certificate(dir.path(), "turn");
    let server = TestServer::start_with(|config| {
        config.turn_listen = Some("127.0.0.1:0".parse().expect("address"));
        config.turn_tls_listen = Some("127.0.0.1:0".parse().expect("address"));
        // The TURN TLS port's own certificate, as behind a proxy that terminates HTTPS; the
        // browser test (web/turn.test.mjs) runs it with the HTTPS one.
        config.turn_tls_cert = Some(cert.clone());
        config.turn_tls_key = Some(key.clone());
    })
    .await;
    let boot = &server.running.as_ref().expect("running").boot;
    let turn_addr = boot.turn_addr.expect("the TURN listener runs");
    let tls_addr = boot.turn_tls_addr.expect("the TURN TLS port listens");
    let m = meeting(&server).await;
    let (jose_id, credentials) = join_ack_credentials(&server, &m, "José").await;
    let credentials = credentials.expect("credentials for the embedded listener");
    assert_eq!(
        credentials.uris,
        vec![
            format!("turn:{turn_addr}?transport=udp"),
            format!("turn:{turn_addr}?transport=tcp"),
            // The --public-url host, which the certificate names.
            format!("turns:127.0.0.1:{}?transport=tcp", tls_addr.port()),
        ]
    );
    let username = credentials.username.expect("username");
    let password = credentials.password.expect("password");
    let tls = Transport::Tls(der);

    relays_both_ways(turn_addr, &Transport::Tcp, &username, &password).await;
    relays_both_ways(tls_addr, &tls, &username, &password).await;

    // Bytes that are no TURN message (a TLS ClientHello on the plain port) close that
    // connection, and nothing else.
    let mut garbage = TcpStream::connect(turn_addr).await.expect("connects");
    garbage
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0x10, 0x01, 0x00, 0x00, 0x0c])
        .await
        .expect("written");
    let mut nothing = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(10), garbage.read(&mut nothing))
        .await
        .expect("closed within 10 s");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(allocates_over(turn_addr, &Transport::Tcp, &username, &password).await);

    // Wrong passwords and deleted attendees are refused over streams as over UDP.
    assert!(!allocates_over(turn_addr, &Transport::Tcp, &username, "not-the-password").await);
    server
        .client()
        .delete_attendee()
        .meeting_id(&m.id)
        .attendee_id(&jose_id)
        .send()
        .await
        .expect("delete");
    assert!(!allocates_over(turn_addr, &Transport::Tcp, &username, &password).await);
    assert!(!allocates_over(tls_addr, &tls, &username, &password).await);
}

#[tokio::test]
async fn a_turn_tls_port_needs_a_certificate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = common::config_for(dir.path());
    config.turn_listen = Some("127.0.0.1:0".parse().expect("address"));
    config.turn_tls_listen = Some("127.0.0.1:0".parse().expect("address"));
    let error = carillon::server::start(&config)
        .await
        .err()
        .expect("refused");
    assert!(error.to_string().contains("--tls-cert"), "{error}");
}
