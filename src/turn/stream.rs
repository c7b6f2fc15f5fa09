//! TURN over TCP and TLS (RFC 5766 §2.1 and §11.5, RFC 7065 `turns:`), for clients on networks
//! that let no UDP out. The client talks to the listener over a stream; its relays are UDP, as
//! on the UDP port, so the media socket sees no difference.
//!
//! webrtc-rs `turn` serves one datagram `Conn` per port: it reads whole messages with the
//! client's address (`recv_from`) and answers or relays to an address (`send_to`).
//! [`StreamConn`] is that `Conn` for every client connected to one TCP (or TLS) port: each
//! connection's reader cuts its stream into messages ([`read_message`]) and queues them with the
//! connection's peer address, which is unique per connection and so keys the client's
//! allocation; `send_to` hands a message to the writer of the connection with that address.
//!
//! Bounded whatever clients do: at most [`MAX_CONNECTIONS`] connections, a TLS handshake and
//! then a first message each within [`FIRST_MESSAGE_TIMEOUT`], no more than [`IDLE_TIMEOUT`]
//! between messages, one message buffer (64 KiB, the largest a 16-bit length allows) per
//! connection, and [`OUTBOUND_QUEUE`] messages waiting for a slow reader (more are dropped, as
//! a UDP network would). A client whose connection closes keeps its allocation until its lifetime
//! runs out (RFC 6062 §4.1 would free it at once; webrtc-rs keys allocations by address and
//! offers no way to free one, so it goes at the end of its lifetime, ten minutes by default).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use webrtc_util::Conn;

/// Connections served at once on one port; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 1024;
/// A new connection must finish its TLS handshake within this, and then send a whole first
/// message within this again.
pub const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection that sends nothing for this long is closed. Clients refresh their permissions
/// every five minutes (RFC 5766 §8) and ICE checks consent every few seconds, so a live client
/// is never this quiet.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Messages queued for one client before further ones are dropped.
pub const OUTBOUND_QUEUE: usize = 256;
/// Messages read from all connections and not yet taken by the TURN server.
const INBOUND_QUEUE: usize = 1024;

/// The STUN header (RFC 5389 §6): type, length (of the attributes), magic cookie, transaction.
const STUN_HEADER: usize = 20;
/// The STUN magic cookie (RFC 5389 §6), bytes 4 to 8 of every STUN message.
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
/// The ChannelData header (RFC 5766 §11.4): channel number and length.
const CHANNEL_DATA_HEADER: usize = 4;
/// The largest message a 16-bit length field allows, header included.
pub const MAX_MESSAGE: usize = STUN_HEADER + u16::MAX as usize;

/// Reads one TURN message from a stream into `buf`: a STUN message, or ChannelData with the
/// padding to four bytes that streams carry (RFC 5766 §11.5) read and left off. Returns its
/// length, `None` when the stream ends cleanly before a message starts, and `InvalidData` for
/// bytes that are neither (the connection cannot be resynchronised after them).
pub async fn read_message<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut [u8; MAX_MESSAGE],
) -> io::Result<Option<usize>> {
    let mut header = [0u8; CHANNEL_DATA_HEADER];
    let first = reader.read(&mut header[..1]).await?;
    if first == 0 {
        return Ok(None);
    }
    reader.read_exact(&mut header[1..]).await?;
    let declared = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let (length, padded) = match header[0] >> 6 {
        // STUN: the length counts the attributes after the 20-byte header, always padded.
        0b00 if declared % 4 == 0 => (STUN_HEADER + declared, STUN_HEADER + declared),
        // ChannelData (channel numbers 0x4000-0x7FFF).
        0b01 => (
            CHANNEL_DATA_HEADER + declared,
            CHANNEL_DATA_HEADER + declared.next_multiple_of(4),
        ),
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "neither a STUN message nor ChannelData",
            ));
        }
    };
    let message = buf.get_mut(..padded).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "a message longer than any TURN message",
        )
    })?;
    let (head, rest) = message.split_at_mut(CHANNEL_DATA_HEADER);
    head.copy_from_slice(&header);
    if header[0] >> 6 == 0b00 {
        // Checked before the body is waited for: a TLS ClientHello on the plain port, say,
        // starts like a STUN header but has no cookie.
        let (cookie, _) = rest.split_at_mut(MAGIC_COOKIE.len());
        reader.read_exact(cookie).await?;
        if *cookie != MAGIC_COOKIE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a STUN header without the magic cookie",
            ));
        }
        let body = rest.get_mut(MAGIC_COOKIE.len()..).unwrap_or_default();
        reader.read_exact(body).await?;
    } else {
        reader.read_exact(rest).await?;
    }
    Ok(Some(length))
}

/// Pads ChannelData to four bytes for a stream (STUN messages always are).
fn padded_for_stream(message: &[u8]) -> Vec<u8> {
    let mut framed = message.to_vec();
    if message.first().is_some_and(|byte| byte >> 6 == 0b01) {
        framed.resize(message.len().next_multiple_of(4), 0);
    }
    framed
}

/// Every client connection of one TCP or TLS port, as the one `Conn` the TURN server reads.
pub struct StreamConn {
    local: SocketAddr,
    inbound: tokio::sync::Mutex<mpsc::Receiver<(Vec<u8>, SocketAddr)>>,
    writers: Mutex<HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>,
}

impl StreamConn {
    /// Accepts clients on `listener` (through `tls` when given). Must be called on the runtime
    /// that serves the TURN server: its tasks end with that runtime.
    pub fn serve(
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> io::Result<Arc<StreamConn>> {
        let local = listener.local_addr()?;
        let (inbound_tx, inbound) = mpsc::channel(INBOUND_QUEUE);
        let conn = Arc::new(StreamConn {
            local,
            inbound: tokio::sync::Mutex::new(inbound),
            writers: Mutex::new(HashMap::new()),
        });
        tokio::spawn(accept_loop(listener, tls, conn.clone(), inbound_tx));
        Ok(conn)
    }

    fn writers(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>> {
        match self.writers.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    conn: Arc<StreamConn>,
    inbound: mpsc::Sender<(Vec<u8>, SocketAddr)>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors, say: wait rather than spin.
                tracing::warn!(%error, "TURN: accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (conn, inbound, tls) = (conn.clone(), inbound.clone(), tls.clone());
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => serve_client(stream, peer, &conn, inbound).await,
                Some(tls) => {
                    match tokio::time::timeout(FIRST_MESSAGE_TIMEOUT, tls.accept(stream)).await {
                        Ok(Ok(stream)) => serve_client(stream, peer, &conn, inbound).await,
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "TURN: TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%peer, "TURN: TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

/// Reads the client's messages into the TURN server and writes what the server sends it,
/// until either side ends or the client idles out.
async fn serve_client<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    peer: SocketAddr,
    conn: &StreamConn,
    inbound: mpsc::Sender<(Vec<u8>, SocketAddr)>,
) {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (outbound_tx, mut outbound) = mpsc::channel::<Vec<u8>>(OUTBOUND_QUEUE);
    conn.writers().insert(peer, outbound_tx);

    let read = async {
        let mut buf = vec![0u8; MAX_MESSAGE].into_boxed_slice();
        let Ok(buf) = <&mut [u8; MAX_MESSAGE]>::try_from(&mut buf[..]) else {
            return;
        };
        let mut timeout = FIRST_MESSAGE_TIMEOUT;
        loop {
            match tokio::time::timeout(timeout, read_message(&mut reader, buf)).await {
                Ok(Ok(Some(length))) => {
                    let message = buf.get(..length).unwrap_or_default().to_vec();
                    if inbound.send((message, peer)).await.is_err() {
                        return;
                    }
                }
                Ok(Ok(None)) => return,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "TURN: closing a client connection");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TURN: closing an idle client connection");
                    return;
                }
            }
            timeout = IDLE_TIMEOUT;
        }
    };
    let write = async {
        while let Some(message) = outbound.recv().await {
            if writer.write_all(&message).await.is_err() {
                return;
            }
            // Flush once the queue is drained, not after every message.
            if outbound.is_empty() && writer.flush().await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = read => {}
        () = write => {}
    }
    conn.writers().remove(&peer);
    let _ = writer.shutdown().await;
}

#[async_trait::async_trait]
impl Conn for StreamConn {
    async fn connect(&self, _addr: SocketAddr) -> webrtc_util::Result<()> {
        Err(io::Error::from(io::ErrorKind::Unsupported).into())
    }

    async fn recv(&self, buf: &mut [u8]) -> webrtc_util::Result<usize> {
        Ok(self.recv_from(buf).await?.0)
    }

    /// The next message from any client. Never fails while the listener runs: an error here
    /// ends the TURN server's read loop for every client of the port.
    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        let mut inbound = self.inbound.lock().await;
        loop {
            let Some((message, peer)) = inbound.recv().await else {
                return Err(webrtc_util::Error::ErrUseClosedNetworkConn);
            };
            // The server reads into an MTU-sized buffer (1500 bytes); a longer message is
            // dropped, as the UDP port truncates a longer datagram.
            let Some(target) = buf.get_mut(..message.len()) else {
                tracing::debug!(%peer, length = message.len(), "TURN: dropping an oversized message");
                continue;
            };
            target.copy_from_slice(&message);
            return Ok((message.len(), peer));
        }
    }

    async fn send(&self, _buf: &[u8]) -> webrtc_util::Result<usize> {
        Err(webrtc_util::Error::ErrNoRemAddr)
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc_util::Result<usize> {
        let writer = self.writers().get(&target).cloned();
        let Some(writer) = writer else {
            return Err(io::Error::from(io::ErrorKind::NotConnected).into());
        };
        // A full queue drops the message, as a congested UDP path would; the server's read
        // loop must never wait on one slow client.
        let _ = writer.try_send(padded_for_stream(buf));
        Ok(buf.len())
    }

    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        Ok(self.local)
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        None
    }

    /// Does nothing, as for webrtc-rs's UDP socket: the TURN server calls it on the port's
    /// shared conn whenever one allocation closes. The listener's tasks end with its runtime.
    async fn close(&self) -> webrtc_util::Result<()> {
        Ok(())
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn messages(mut bytes: &[u8]) -> Vec<io::Result<Vec<u8>>> {
        let mut buf = Box::new([0u8; MAX_MESSAGE]);
        let mut out = Vec::new();
        loop {
            match read_message(&mut bytes, &mut buf).await {
                Ok(Some(n)) => out.push(Ok(buf[..n].to_vec())),
                Ok(None) => return out,
                Err(error) => {
                    out.push(Err(error));
                    return out;
                }
            }
        }
    }

    #[tokio::test]
    async fn streams_are_cut_into_stun_messages_and_unpadded_channel_data() {
        // A Binding request with one 4-byte attribute, then ChannelData of 5 bytes on channel
        // 0x4001 padded to 8, then ChannelData of 4 bytes (no padding).
        let stun: Vec<u8> = [
            &[0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42][..],
            &[7; 12],
            &[0x80, 0x22, 0x00, 0x04, b'Z', b'o', b'e', b'!'],
        ]
        .concat();
        let channel = [
            0x40, 0x01, 0x00, 0x05, b'J', b'o', b's', b'\xc3', b'\xa9', 0, 0, 0,
        ];
        let channel_unpadded = [0x40, 0x02, 0x00, 0x04, 1, 2, 3, 4];
        let stream = [&stun[..], &channel, &channel_unpadded].concat();
        let read = messages(&stream).await;
        let read: Vec<Vec<u8>> = read.into_iter().map(|m| m.expect("a message")).collect();
        assert_eq!(
            read,
            vec![stun, channel[..9].to_vec(), channel_unpadded.to_vec()]
        );
    }

    #[tokio::test]
    async fn bytes_that_are_no_turn_message_end_the_stream() {
        // TLS ClientHello bytes on the plain port, a first byte that is neither kind, and a
        // STUN length that is not a multiple of 4. (Text such as HTTP's "GET" falls in the
        // ChannelData range, 0x4000-0x7FFF, and waits for its declared length: the first
        // message timeout ends it.)
        let hello = [0x16u8, 0x03, 0x01, 0x00, 0x10, 0x01, 0x00, 0x00, 0x0c];
        for garbage in [
            &hello[..],
            &[0x80, 0x01, 0x00, 0x00],
            &[0x00, 0x01, 0x00, 0x05],
        ] {
            let read = messages(garbage).await;
            assert_eq!(read.len(), 1);
            assert_eq!(
                read.into_iter()
                    .next()
                    .and_then(Result::err)
                    .map(|e| e.kind()),
                Some(io::ErrorKind::InvalidData)
            );
        }
        // A message cut short is an error too, not a hang or a short message.
        let read = messages(&[0x40, 0x01, 0x00, 0x08, 1, 2]).await;
        assert!(matches!(read.as_slice(), [Err(_)]));
        assert!(messages(&[]).await.is_empty(), "a clean end");
    }

    #[test]
    fn channel_data_is_padded_for_streams_and_stun_left_alone() {
        assert_eq!(
            padded_for_stream(&[0x40, 0x01, 0x00, 0x01, 9]),
            vec![0x40, 0x01, 0x00, 0x01, 9, 0, 0, 0]
        );
        let stun = [0x01, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
        assert_eq!(padded_for_stream(&stun), stun.to_vec());
    }
}
