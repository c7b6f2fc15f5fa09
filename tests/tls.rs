//! HTTPS and WSS on the API listener (`--tls-cert`, `--tls-key`): a signed API call over TLS,
//! MediaPlacement URLs that say https:// and wss://, a JOIN over WSS, a plain-HTTP client that
//! gets nothing and harms nothing, and a certificate reloaded (SIGHUP) without dropping the
//! connections already open.

mod common;

use std::time::SystemTime;

use carillon::join::frames;
use carillon::join::frames::proto::sdk_signal_frame::Type;
use carillon::join::frames::proto::{SdkJoinFrame, SdkSignalFrame};
use common::signal::{client_frame, upgrade_request};
use common::tls::{connector, write_certificate};
use common::{SECRET_ACCESS_KEY, TestServer, sign_headers};
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message;

/// A meeting that does not exist: GetMeeting answers 404 NotFound.
const MISSING: &str = "/meetings/0b6d8a6e-5f0c-4b4c-9a43-1a2b3c4d5e6f";

async fn tls_connect(
    server: &TestServer,
    trusted: &[CertificateDer<'static>],
) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(server.addr).await.expect("connects");
    let name = ServerName::try_from("127.0.0.1").expect("a name");
    connector(trusted)
        .connect(name, tcp)
        .await
        .expect("TLS handshake")
}

/// An HTTP/1.1 connection over TLS.
async fn https(
    server: &TestServer,
    trusted: &[CertificateDer<'static>],
) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = tls_connect(server, trusted).await;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP over TLS");
    tokio::spawn(connection);
    sender
}

/// Sends a SigV4-signed request over `sender`; returns the status and the JSON body.
async fn signed(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    server: &TestServer,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let host = server.addr.to_string();
    let mut headers = vec![
        ("host".to_string(), host.clone()),
        ("content-type".to_string(), "application/json".to_string()),
    ];
    let url = format!("https://{host}{path}");
    headers.extend(sign_headers(
        method,
        &url,
        &headers,
        body.as_bytes(),
        SECRET_ACCESS_KEY,
        "us-east-1",
        SystemTime::now(),
    ));
    let mut request = hyper::Request::builder().method(method).uri(path);
    for (name, value) in &headers {
        request = request.header(name, value);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let response = sender.send_request(request).await.expect("a response");
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

#[tokio::test]
async fn the_api_and_signaling_speak_https_and_wss() {
    let dir = tempfile::tempdir().expect("dir");
    let (cert, key, der) = write_certificate(dir.path(), "server");
    let server = TestServer::start_with(|config| {
        config.tls_cert = Some(cert.clone());
        config.tls_key = Some(key.clone());
    })
    .await;
    let boot = &server.running.as_ref().expect("running").boot;
    assert_eq!(boot.public_url, format!("https://{}", server.addr));

    let mut api = https(&server, std::slice::from_ref(&der)).await;
    let (status, created) = signed(
        &mut api,
        &server,
        "POST",
        "/meetings",
        &common::create_meeting_body("tls-José"),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let placement = &created["Meeting"]["MediaPlacement"];
    let signaling_url = placement["SignalingUrl"].as_str().expect("SignalingUrl");
    let meeting_id = created["Meeting"]["MeetingId"].as_str().expect("MeetingId");
    assert_eq!(
        signaling_url,
        format!("wss://{}/control/{meeting_id}", server.addr)
    );
    assert!(
        placement["EventIngestionUrl"]
            .as_str()
            .is_some_and(|url| url.starts_with("https://")),
        "{placement}"
    );
    let (status, attendee) = signed(
        &mut api,
        &server,
        "POST",
        &format!("/meetings/{meeting_id}/attendees"),
        r#"{"ExternalUserId":"Zoë «Ana»"}"#,
    )
    .await;
    assert_eq!(status, 200, "{attendee}");
    let token = attendee["Attendee"]["JoinToken"]
        .as_str()
        .expect("JoinToken");

    // The official client's upgrade, over TLS, and a JOIN answered with JOIN_ACK.
    let stream = tls_connect(&server, std::slice::from_ref(&der)).await;
    let (mut socket, _) =
        tokio_tungstenite::client_async(upgrade_request(signaling_url, token), stream)
            .await
            .expect("a WSS upgrade");
    let join = SdkSignalFrame {
        join: Some(SdkJoinFrame {
            protocol_version: Some(2),
            ..Default::default()
        }),
        ..client_frame(Type::Join)
    };
    socket
        .send(Message::Binary(frames::encode(&join).into()))
        .await
        .expect("JOIN sent");
    let ack = loop {
        match socket.next().await.expect("a message").expect("readable") {
            Message::Binary(bytes) => break frames::decode(&bytes).expect("a frame"),
            _ => continue,
        }
    };
    assert_eq!(ack.r#type, Type::JoinAck as i32);
}

#[tokio::test]
async fn plain_http_gets_nothing_and_a_reload_serves_the_new_certificate_without_dropping_connections()
 {
    let dir = tempfile::tempdir().expect("dir");
    let (cert, key, first) = write_certificate(dir.path(), "server");
    let server = TestServer::start_with(|config| {
        config.tls_cert = Some(cert.clone());
        config.tls_key = Some(key.clone());
    })
    .await;
    let running = server.running.as_ref().expect("running");

    // A client speaking plain HTTP to the TLS port gets no HTTP answer, and the server goes on.
    let mut plain = TcpStream::connect(server.addr).await.expect("connects");
    plain
        .write_all(b"GET /meetings HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("written");
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer).await;
    assert!(!answer.starts_with(b"HTTP/"), "no HTTP over the TLS port");

    let mut open = https(&server, std::slice::from_ref(&first)).await;
    let (status, _) = signed(&mut open, &server, "GET", MISSING, "").await;
    assert_eq!(status, 404, "an API answer over TLS");

    // Renewed on disk, then SIGHUP: new handshakes see the new certificate only.
    let (renewed_cert, renewed_key, second) = write_certificate(dir.path(), "renewed");
    std::fs::copy(&renewed_cert, &cert).expect("copied");
    std::fs::copy(&renewed_key, &key).expect("copied");
    assert!(running.reload_certificate().expect("reloads"));
    let mut renewed = https(&server, std::slice::from_ref(&second)).await;
    let (status, _) = signed(&mut renewed, &server, "GET", MISSING, "").await;
    assert_eq!(status, 404);
    let tcp = TcpStream::connect(server.addr).await.expect("connects");
    let name = ServerName::try_from("127.0.0.1").expect("a name");
    assert!(
        connector(std::slice::from_ref(&first))
            .connect(name, tcp)
            .await
            .is_err(),
        "the old certificate is no longer served"
    );
    // The connection opened before the reload still works.
    let (status, _) = signed(&mut open, &server, "GET", MISSING, "").await;
    assert_eq!(status, 404, "the open connection survives the reload");

    // A key that does not load leaves the renewed pair in force.
    std::fs::write(&key, "not a key").expect("broken");
    assert!(running.reload_certificate().is_err());
    let mut after = https(&server, std::slice::from_ref(&second)).await;
    let (status, _) = signed(&mut after, &server, "GET", MISSING, "").await;
    assert_eq!(status, 404);
}
