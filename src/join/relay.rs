//! Carrying a join to the meeting's host (issue 28). Behind one address (`--cluster-url`) a
//! client's signaling WebSocket can reach any node, while a meeting's sessions, mixer and
//! forwarder live on one. A node that is not the host opens the same WebSocket to the host's
//! `--public-url`, with the client's subprotocols (its JoinToken) and query, and copies
//! messages both ways until either side closes; the close code and reason pass through, so the
//! client sees the host's answers (4410, 4403, …) as if it had reached the host itself. Only
//! signaling goes this way: the host's SDP answer names the host's own media candidates, so
//! media goes straight to it.
//!
//! Browsers do not follow redirects on a WebSocket handshake, so a redirect would not do.
//! A relayed handshake carries [`RELAYED_HEADER`]; a node never relays such a handshake again,
//! so two nodes that disagree about the host cannot bounce a client between them.

use axum::extract::ws::{CloseFrame as ClientClose, Message as ClientMessage, WebSocket};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as HostMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame as HostClose;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::frames::close_code;
use super::frames::{SESSION_PROTOCOL, loggable};
use crate::domain::id::JoinToken;

/// Marks a handshake one node relays to another.
pub const RELAYED_HEADER: &str = "x-carillon-relayed";

/// How long the host has to accept the relayed handshake.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Why a join could not be carried to its host.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("the host's URL {0} is not an http:// URL this node can relay to")]
    Unsupported(String),
    #[error("building the relayed handshake: {0}")]
    Request(String),
    #[error("the host did not accept the relayed handshake in time")]
    Timeout,
    #[error("connecting to the host: {0}")]
    Connect(String),
}

impl RelayError {
    /// Whether waiting may help: the host may be taken over, or come back; a URL this node
    /// cannot relay to stays so.
    pub fn may_pass(&self) -> bool {
        !matches!(self, RelayError::Unsupported(_) | RelayError::Request(_))
    }
}

/// The host's signaling URL for `meeting_id`: `host_url` is its `--public-url`.
fn signaling_url(
    host_url: &str,
    meeting_id: &str,
    query: Option<&str>,
) -> Result<String, RelayError> {
    let base = host_url.trim_end_matches('/');
    // Node to node is plain WebSocket over the cluster's own network; TLS ends at the load
    // balancer. A host with an https:// public URL would need this node to trust its
    // certificate, which it has no way to know.
    let rest = base
        .strip_prefix("http://")
        .ok_or_else(|| RelayError::Unsupported(host_url.to_string()))?;
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    Ok(format!("ws://{rest}/control/{meeting_id}{query}"))
}

/// Opens the client's join on the host.
async fn connect(
    host_url: &str,
    meeting_id: &str,
    token: Option<&JoinToken>,
    query: Option<&str>,
    max_message_bytes: usize,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    RelayError,
> {
    let url = signaling_url(host_url, meeting_id, query)?;
    let mut request = url
        .into_client_request()
        .map_err(|error| RelayError::Request(error.to_string()))?;
    let protocols = match token {
        Some(token) => format!("{SESSION_PROTOCOL}, {}", token.expose()),
        None => SESSION_PROTOCOL.to_string(),
    };
    let headers = request.headers_mut();
    headers.insert(
        http::header::SEC_WEBSOCKET_PROTOCOL,
        http::HeaderValue::from_str(&protocols)
            .map_err(|_| RelayError::Request("the JoinToken is not a header value".into()))?,
    );
    headers.insert(RELAYED_HEADER, http::HeaderValue::from_static("1"));
    let config = WebSocketConfig::default()
        .max_message_size(Some(max_message_bytes))
        .max_frame_size(Some(max_message_bytes));
    let connecting = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok((socket, _))) => Ok(socket),
        Ok(Err(error)) => Err(RelayError::Connect(error.to_string())),
        Err(_) => Err(RelayError::Timeout),
    }
}

fn to_host(message: ClientMessage) -> HostMessage {
    match message {
        ClientMessage::Text(text) => HostMessage::Text(text.as_str().into()),
        ClientMessage::Binary(bytes) => HostMessage::Binary(bytes),
        ClientMessage::Ping(bytes) => HostMessage::Ping(bytes),
        ClientMessage::Pong(bytes) => HostMessage::Pong(bytes),
        ClientMessage::Close(frame) => HostMessage::Close(frame.map(|frame| HostClose {
            code: frame.code.into(),
            reason: frame.reason.as_str().into(),
        })),
    }
}

/// What the client gets of a host's message; None for raw frames, which a reading socket
/// never yields.
fn to_client(message: HostMessage) -> Option<ClientMessage> {
    Some(match message {
        HostMessage::Text(text) => ClientMessage::Text(text.as_str().into()),
        HostMessage::Binary(bytes) => ClientMessage::Binary(bytes),
        HostMessage::Ping(bytes) => ClientMessage::Ping(bytes),
        HostMessage::Pong(bytes) => ClientMessage::Pong(bytes),
        HostMessage::Close(frame) => ClientMessage::Close(frame.map(|frame| ClientClose {
            code: frame.code.into(),
            reason: frame.reason.as_str().into(),
        })),
        HostMessage::Frame(_) => return None,
    })
}

/// Closes a client whose join could not be carried to its host, with a code it retries on
/// (4503), so that its reconnect finds the meeting again once the registry knows more.
pub async fn give_up(mut client: WebSocket, host_url: &str, meeting_id: &str, error: &RelayError) {
    tracing::warn!(
        meeting_id = %loggable(meeting_id),
        host = host_url,
        %error,
        "could not relay a join to the meeting's host"
    );
    let close = ClientClose {
        code: close_code::SERVER_GOING_AWAY,
        reason: "the meeting's node cannot be reached".into(),
    };
    let _ = client.send(ClientMessage::Close(Some(close))).await;
}

/// Carries `client`'s join of `meeting_id` to the host at `host_url` until either side closes.
/// When the host cannot be reached, the client's socket comes back untouched with the reason,
/// for the caller to try again, serve it or give up.
pub async fn relay(
    client: WebSocket,
    host_url: &str,
    meeting_id: &str,
    token: Option<&JoinToken>,
    query: Option<&str>,
    max_message_bytes: usize,
) -> Result<(), (WebSocket, RelayError)> {
    let host = match connect(host_url, meeting_id, token, query, max_message_bytes).await {
        Ok(host) => host,
        Err(error) => return Err((client, error)),
    };
    crate::metrics::record_join_relayed();
    let (mut to_host_sink, mut from_host) = host.split();
    let (mut to_client_sink, mut from_client) = client.split();
    loop {
        tokio::select! {
            message = from_client.next() => match message {
                // A close goes on too: the host's reply comes back below and ends the relay.
                Some(Ok(message)) => {
                    if to_host_sink.send(to_host(message)).await.is_err() {
                        break;
                    }
                }
                // The client went away without a close: so does its session on the host.
                _ => {
                    let _ = to_host_sink.close().await;
                    break;
                }
            },
            message = from_host.next() => match message {
                Some(Ok(message)) => {
                    let closing = matches!(message, HostMessage::Close(_));
                    let Some(message) = to_client(message) else { continue };
                    if to_client_sink.send(message).await.is_err() {
                        let _ = to_host_sink.close().await;
                        break;
                    }
                    if closing {
                        // The client's close reply, if it comes, goes nowhere: the host has
                        // already ended the session.
                        break;
                    }
                }
                _ => {
                    let close = ClientClose {
                        code: close_code::SERVER_GOING_AWAY,
                        reason: "the meeting's node went away".into(),
                    };
                    let _ = to_client_sink.send(ClientMessage::Close(Some(close))).await;
                    break;
                }
            },
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosts_signaling_url_keeps_its_path_and_the_clients_query() {
        assert_eq!(
            signaling_url(
                "http://10.0.0.2:8080/",
                "m1",
                Some("X-Chime-Control-Protocol-Version=3")
            )
            .expect("url"),
            "ws://10.0.0.2:8080/control/m1?X-Chime-Control-Protocol-Version=3"
        );
        assert_eq!(
            signaling_url("http://node-b.internal/carillon", "m1", None).expect("url"),
            "ws://node-b.internal/carillon/control/m1"
        );
        assert!(matches!(
            signaling_url("https://node-b.example.com", "m1", None),
            Err(RelayError::Unsupported(_))
        ));
    }
}
