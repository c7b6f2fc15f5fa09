//! The client side of the media benchmarks (`media`, `video`), which load a `carillon serve`
//! process of their own: starting it, the Chime SDK API client that creates meetings and join
//! tokens, the signaling WebSocket (JOIN, SUBSCRIBE), and a str0m WebRTC peer on a UDP socket.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use aws_sdk_chimesdkmeetings as meetings;
use carillon::join::frames::proto::sdk_signal_frame::Type;
use carillon::join::frames::proto::*;
use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// The API keys a benchmark's server is started with and its SDK client signs with.
pub struct Keys {
    pub access_key_id: &'static str,
    pub secret: &'static str,
}

/// Installs str0m's crypto provider and returns the clients' runtime: two worker threads.
pub fn runtime() -> tokio::runtime::Runtime {
    str0m::crypto::from_feature_flags().install_process_default();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

// ---------------------------------------------------------------------------------------------
// The server process.

/// A process of its own, ended (SIGTERM, then SIGKILL 300 ms later) when dropped.
pub struct Process {
    pub child: Child,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        std::thread::sleep(Duration::from_millis(300));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The account the benchmarks' servers run as.
pub const ACCOUNT_ID: &str = "111122223333";

/// Starts `binary serve` with `flags` on a free loopback port with its data in `data`; returns
/// the process and the API endpoint once it accepts connections.
pub fn start_carillon(
    binary: &Path,
    data: &Path,
    keys: &Keys,
    flags: &[String],
) -> (Process, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let child = Command::new(binary)
        .arg("serve")
        .args(flags)
        .env("RUST_LOG", "warn")
        .env("CARILLON_LISTEN", format!("127.0.0.1:{port}"))
        .env("CARILLON_DATA_DIR", data)
        .env("CARILLON_ACCESS_KEY_ID", keys.access_key_id)
        .env("CARILLON_SECRET_ACCESS_KEY", keys.secret)
        .env("CARILLON_ACCOUNT_ID", ACCOUNT_ID)
        .env("CARILLON_ADMIN_LISTEN", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{} did not start",
            binary.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (Process { child }, format!("http://127.0.0.1:{port}"))
}

// ---------------------------------------------------------------------------------------------
// The API.

pub fn sdk(endpoint: &str, keys: &Keys) -> meetings::Client {
    let config = meetings::Config::builder()
        .behavior_version(meetings::config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(meetings::config::Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            keys.access_key_id,
            keys.secret,
            None,
            None,
            "bench",
        ))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    meetings::Client::from_conf(config)
}

/// Creates `count` meetings (external ids `{prefix}{m}`) of `attendees` each, in
/// BatchCreateAttendee requests of up to 100; returns (signaling url, join tokens) per meeting.
pub async fn setup(
    api: &meetings::Client,
    prefix: &str,
    count: usize,
    attendees: usize,
) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for m in 0..count {
        let meeting = api
            .create_meeting()
            .media_region("us-east-1")
            .external_meeting_id(format!("{prefix}{m}"))
            .send()
            .await
            .expect("CreateMeeting")
            .meeting
            .expect("meeting");
        let id = meeting.meeting_id().expect("id").to_string();
        let url = meeting
            .media_placement()
            .and_then(|p| p.signaling_url())
            .expect("url")
            .to_string();
        let mut tokens = Vec::new();
        for chunk in (0..attendees).collect::<Vec<_>>().chunks(100) {
            let mut batch = api.batch_create_attendee().meeting_id(&id);
            for a in chunk {
                batch = batch.attendees(
                    meetings::types::CreateAttendeeRequestItem::builder()
                        .external_user_id(format!("user-{m}-{a}"))
                        .build()
                        .expect("item"),
                );
            }
            let created = batch.send().await.expect("BatchCreateAttendee");
            tokens.extend(
                created
                    .attendees()
                    .iter()
                    .filter_map(|a| a.join_token().map(str::to_string)),
            );
        }
        out.push((url, tokens));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Signaling.

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn frame(kind: Type) -> SdkSignalFrame {
    SdkSignalFrame {
        timestamp_ms: 1,
        r#type: kind as i32,
        ..Default::default()
    }
}

pub async fn send(socket: &mut Socket, frame: &SdkSignalFrame) {
    let mut bytes = vec![0x5];
    frame.encode(&mut bytes).expect("encode");
    socket
        .send(Message::Binary(bytes.into()))
        .await
        .expect("send");
}

/// The next frame of type `kind`, skipping the others.
pub async fn next_of(socket: &mut Socket, kind: Type) -> SdkSignalFrame {
    loop {
        let Some(Ok(Message::Binary(bytes))) = socket.next().await else {
            panic!("signaling closed while waiting for {kind:?}");
        };
        let Some(body) = bytes.get(1..) else { continue };
        if let Ok(frame) = SdkSignalFrame::decode(body)
            && frame.r#type == kind as i32
        {
            return frame;
        }
    }
}

/// Opens the signaling WebSocket with `token` (as amazon-chime-sdk-js does) and sends JOIN.
pub async fn join(url: &str, token: &str) -> Socket {
    let mut request = format!("{url}?X-Chime-Control-Protocol-Version=3")
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        format!("_aws_wt_session, {token}").parse().expect("header"),
    );
    let (mut socket, _): (Socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("upgrade");
    let join = SdkSignalFrame {
        join: Some(SdkJoinFrame {
            protocol_version: Some(2),
            ..Default::default()
        }),
        ..frame(Type::Join)
    };
    send(&mut socket, &join).await;
    socket
}

/// Sends SUBSCRIBE with `offer` (audio through the server, no check-in) and returns the
/// SUBSCRIBE_ACK.
pub async fn subscribe(
    socket: &mut Socket,
    offer: String,
    duplex: SdkStreamServiceType,
    send_streams: Vec<SdkStreamDescriptor>,
    receive_stream_ids: Vec<u32>,
) -> SdkSubscribeAckFrame {
    let subscribe = SdkSignalFrame {
        sub: Some(SdkSubscribeFrame {
            duplex: Some(duplex as i32),
            send_streams,
            receive_stream_ids,
            sdp_offer: Some(offer),
            audio_host: Some("127.0.0.1:3478".into()),
            audio_checkin: Some(false),
            ..Default::default()
        }),
        ..frame(Type::Subscribe)
    };
    send(socket, &subscribe).await;
    next_of(socket, Type::SubscribeAck)
        .await
        .suback
        .expect("suback")
}

/// Keeps the socket open, reading and dropping what the server sends, for as long as the task
/// lives.
pub fn drain(mut socket: Socket) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move { while socket.next().await.is_some() {} })
}

// ---------------------------------------------------------------------------------------------
// WebRTC.

/// A str0m peer with one host candidate on its own loopback UDP socket.
pub struct Peer {
    pub rtc: Rtc,
    pub socket: UdpSocket,
    local: SocketAddr,
}

impl Peer {
    pub async fn new() -> Peer {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("udp");
        let local = socket.local_addr().expect("addr");
        let mut rtc = Rtc::builder().build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp").expect("candidate"));
        Peer { rtc, socket, local }
    }

    /// Applies the server's SDP answer to the offer this peer made.
    pub fn accept_answer(&mut self, pending: SdpPendingOffer, answer: &str) {
        self.rtc
            .sdp_api()
            .accept_answer(pending, SdpAnswer::from_sdp_string(answer).expect("answer"))
            .expect("answer accepted");
    }

    /// Transmits what str0m has to send; returns its events' effect through `on_event` and
    /// when it next wants a timeout, or None once it is dead.
    pub fn poll(&mut self, mut on_event: impl FnMut(&mut Rtc, Event)) -> Option<Instant> {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(at)) => return Some(at),
                Ok(Output::Transmit(t)) => {
                    let _ = self.socket.try_send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(event)) => on_event(&mut self.rtc, event),
                Err(_) => return None,
            }
        }
    }

    pub fn input(&mut self, datagram: &[u8], source: SocketAddr) {
        if let Ok(contents) = datagram.try_into() {
            let input = Input::Receive(
                Instant::now(),
                Receive {
                    proto: Protocol::Udp,
                    source,
                    destination: self.local,
                    contents,
                },
            );
            let _ = self.rtc.handle_input(input);
        }
    }

    pub fn timeout(&mut self) {
        let _ = self.rtc.handle_input(Input::Timeout(Instant::now()));
    }

    /// Hands str0m the next datagram to arrive, or a timeout at `wake` if none arrives first.
    pub async fn receive_until(&mut self, wake: Instant, buf: &mut [u8]) {
        tokio::select! {
            received = self.socket.recv_from(buf) => {
                if let Ok((n, source)) = received {
                    self.input(&buf[..n], source);
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => self.timeout(),
        }
    }
}

/// Starts a media capture pipeline on each meeting, into the bucket `bench-recordings`; false
/// if the server does not record.
pub async fn record_meetings(endpoint: &str, keys: &Keys, rooms: &[(String, Vec<String>)]) -> bool {
    use aws_sdk_chimesdkmediapipelines as pipelines;
    use pipelines::types::{MediaPipelineSinkType, MediaPipelineSourceType};
    let config = pipelines::Config::builder()
        .behavior_version(pipelines::config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(pipelines::config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new(
            keys.access_key_id,
            keys.secret,
            None,
            None,
            "bench",
        ))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    let client = pipelines::Client::from_conf(config);
    for (url, _) in rooms {
        // The signaling URL ends in the meeting id.
        let meeting_id = url.rsplit('/').next().expect("meeting id");
        let created = client
            .create_media_capture_pipeline()
            .source_type(MediaPipelineSourceType::ChimeSdkMeeting)
            .source_arn(format!(
                "arn:aws:chime:us-east-1:{}:meeting/{meeting_id}",
                ACCOUNT_ID
            ))
            .sink_type(MediaPipelineSinkType::S3Bucket)
            .sink_arn("arn:aws:s3:::bench-recordings")
            .send()
            .await;
        if let Err(error) = created {
            eprintln!("this server does not record: {error:?}");
            return false;
        }
    }
    true
}

/// The bytes of every file under `folder` (a bucket's recordings; 0 when there is none).
pub fn folder_bytes(folder: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => folder_bytes(&entry.path()),
            _ => entry.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}
