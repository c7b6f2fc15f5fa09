//! Test harness: a real server on 127.0.0.1:0, the official SDK client pointed at it, and a raw
//! HTTP client that signs with the `aws-sigv4` crate (or not at all) for requests no SDK sends.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sdk_chimesdkmeetings as meetings;
use carillon::config::Config;
use carillon::server::{self, Running};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub mod signal;
pub mod talk;
pub mod tls;

pub const ACCESS_KEY_ID: &str = "AKIDCARILLONTEST";
pub const SECRET_ACCESS_KEY: &str = "carillon-test-secret";
pub const ACCOUNT_ID: &str = "111122223333";

/// AttendeeCapabilities of the given audio, video and content.
pub fn caps(
    audio: meetings::types::MediaCapabilities,
    video: meetings::types::MediaCapabilities,
    content: meetings::types::MediaCapabilities,
) -> meetings::types::AttendeeCapabilities {
    meetings::types::AttendeeCapabilities::builder()
        .audio(audio)
        .video(video)
        .content(content)
        .build()
        .expect("capabilities")
}

pub struct TestServer {
    pub running: Option<Running>,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config: Config,
}

pub fn config_for(dir: &std::path::Path) -> Config {
    let mut config = Config::for_tests(dir.to_path_buf());
    config.access_key_id = Some(ACCESS_KEY_ID.into());
    config.secret_access_key = Some(SECRET_ACCESS_KEY.into());
    config.account_id = Some(ACCOUNT_ID.into());
    config
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = config_for(dir.path());
        adjust(&mut config);
        let running = server::start(&config).await.expect("server starts");
        Self {
            addr: running.boot.addr,
            running: Some(running),
            dir,
            config,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server gracefully and starts a new one on the same data directory and port.
    pub async fn restart(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await.expect("server stops");
        }
        let mut config = self.config.clone();
        config.listen = self.addr.to_string();
        let running = server::start(&config).await.expect("server restarts");
        self.addr = running.boot.addr;
        self.running = Some(running);
    }

    /// A second server of this process on this one's store (its data directory, or the same
    /// database), on a port of its own.
    pub async fn second_node(&self) -> Running {
        let mut config = self.config.clone();
        config.listen = "127.0.0.1:0".into();
        server::start(&config)
            .await
            .expect("a second node on the same store")
    }

    pub fn client(&self) -> meetings::Client {
        sdk_client(&self.url(), "us-east-1")
    }

    pub fn raw(&self) -> Raw {
        Raw { addr: self.addr }
    }
}

/// The official media pipelines SDK client, signing with the test key, without retries.
pub fn media_pipelines_client(endpoint: &str) -> aws_sdk_chimesdkmediapipelines::Client {
    use aws_sdk_chimesdkmediapipelines as pipelines;
    let config = pipelines::Config::builder()
        .behavior_version(pipelines::config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(pipelines::config::Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            ACCESS_KEY_ID,
            SECRET_ACCESS_KEY,
            None,
            None,
            "carillon-tests",
        ))
        .retry_config(pipelines::config::retry::RetryConfig::disabled())
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    pipelines::Client::from_conf(config)
}

/// CreateMediaCapturePipeline of the meeting `meeting_arn` into `sink_arn`: the pipeline's id.
pub async fn start_capture(
    pipelines: &aws_sdk_chimesdkmediapipelines::Client,
    meeting_arn: &str,
    sink_arn: &str,
) -> String {
    use aws_sdk_chimesdkmediapipelines::types::{MediaPipelineSinkType, MediaPipelineSourceType};
    pipelines
        .create_media_capture_pipeline()
        .source_type(MediaPipelineSourceType::ChimeSdkMeeting)
        .source_arn(meeting_arn)
        .sink_type(MediaPipelineSinkType::S3Bucket)
        .sink_arn(sink_arn)
        .send()
        .await
        .expect("CreateMediaCapturePipeline")
        .media_capture_pipeline
        .and_then(|p| p.media_pipeline_id)
        .expect("id")
}

pub fn sdk_client(endpoint: &str, region: &str) -> meetings::Client {
    sdk_client_as(endpoint, region, ACCESS_KEY_ID, SECRET_ACCESS_KEY, false)
}

/// An SDK client signing with the given key; `retries` turns on the SDK's standard retries
/// (3 attempts, with backoff) instead of none.
pub fn sdk_client_as(
    endpoint: &str,
    region: &str,
    access_key_id: &str,
    secret: &str,
    retries: bool,
) -> meetings::Client {
    let retry = if retries {
        meetings::config::retry::RetryConfig::standard().with_max_attempts(5)
    } else {
        meetings::config::retry::RetryConfig::disabled()
    };
    let config = meetings::Config::builder()
        .behavior_version(meetings::config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(meetings::config::Region::new(region.to_string()))
        .credentials_provider(Credentials::new(
            access_key_id.to_string(),
            secret.to_string(),
            None,
            None,
            "carillon-tests",
        ))
        .retry_config(retry)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    meetings::Client::from_conf(config)
}

#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn error_type(&self) -> Option<&str> {
        self.header("x-amzn-ErrorType")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    /// Asserts the full error wire form and returns the message.
    pub fn expect_error(&self, status: u16, shape: &str) -> String {
        assert_eq!(self.status, status, "status of {self:?}");
        assert_eq!(
            self.error_type(),
            Some(shape),
            "x-amzn-ErrorType of {self:?}"
        );
        let request_id = self
            .header("x-amzn-RequestId")
            .expect("x-amzn-RequestId header");
        let body = self.json();
        assert_eq!(
            body["RequestId"], request_id,
            "body RequestId matches the header"
        );
        assert!(body["Code"].is_string(), "body Code in {body}");
        body["Message"].as_str().expect("body Message").to_string()
    }
}

/// How a raw request is authenticated.
#[derive(Clone, Copy)]
pub enum Signing<'a> {
    Unsigned,
    /// Signed by the `aws-sigv4` crate with the test key, for this region, at this time.
    With {
        secret: &'a str,
        region: &'a str,
        time: SystemTime,
    },
    /// Signed now, for us-east-1, by another access key.
    Key {
        id: &'a str,
        secret: &'a str,
    },
}

impl Signing<'_> {
    pub fn valid() -> Signing<'static> {
        Signing::With {
            secret: SECRET_ACCESS_KEY,
            region: "us-east-1",
            time: SystemTime::now(),
        }
    }
}

pub struct Raw {
    pub addr: SocketAddr,
}

/// Signs header-style with the `aws-sigv4` crate and returns the headers to add.
pub fn sign_headers(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
    secret: &str,
    region: &str,
    time: SystemTime,
) -> Vec<(String, String)> {
    sign_headers_as(
        ACCESS_KEY_ID,
        method,
        url,
        headers,
        body,
        secret,
        region,
        time,
    )
}

#[allow(clippy::too_many_arguments)]
pub fn sign_headers_as(
    access_key_id: &str,
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
    secret: &str,
    region: &str,
    time: SystemTime,
) -> Vec<(String, String)> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;
    let identity = Credentials::new(access_key_id, secret, None, None, "raw").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("chime")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .expect("signing params")
        .into();
    let signable = SignableRequest::new(
        method,
        url,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .expect("signable request");
    let (instructions, _) = sign(signable, &params).expect("signs").into_parts();
    instructions
        .headers()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Raw {
    pub async fn send(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        signing: Signing<'_>,
    ) -> RawResponse {
        self.send_with(method, path_and_query, body, signing, &[])
            .await
    }

    pub async fn get(&self, path_and_query: &str) -> RawResponse {
        self.send("GET", path_and_query, b"", Signing::valid())
            .await
    }

    pub async fn post(&self, path_and_query: &str, body: &str) -> RawResponse {
        self.send("POST", path_and_query, body.as_bytes(), Signing::valid())
            .await
    }

    pub async fn delete(&self, path_and_query: &str) -> RawResponse {
        self.send("DELETE", path_and_query, b"", Signing::valid())
            .await
    }

    /// Sends one request over a fresh connection. `extra` headers are added after signing.
    pub async fn send_with(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        signing: Signing<'_>,
        extra: &[(&str, &str)],
    ) -> RawResponse {
        let host = self.addr.to_string();
        let mut headers = vec![("host".to_string(), host.clone())];
        if !body.is_empty() {
            headers.push(("content-type".into(), "application/json".into()));
        }
        let url = format!("http://{host}{path_and_query}");
        match signing {
            Signing::Unsigned => {}
            Signing::With {
                secret,
                region,
                time,
            } => {
                let signed = sign_headers(method, &url, &headers, body, secret, region, time);
                headers.extend(signed);
            }
            Signing::Key { id, secret } => {
                let signed = sign_headers_as(
                    id,
                    method,
                    &url,
                    &headers,
                    body,
                    secret,
                    "us-east-1",
                    SystemTime::now(),
                );
                headers.extend(signed);
            }
        }
        for (k, v) in extra {
            headers.retain(|(name, _)| !name.eq_ignore_ascii_case(k));
            headers.push((k.to_string(), v.to_string()));
        }
        let mut request = format!("{method} {path_and_query} HTTP/1.1\r\n");
        for (k, v) in &headers {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        {
            request.push_str(&format!("content-length: {}\r\n", body.len()));
        }
        request.push_str("connection: close\r\n\r\n");
        let mut stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connects");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("writes head");
        stream.write_all(body).await.expect("writes body");
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw).await;
        parse_response(&raw)
    }
}

fn parse_response(raw: &[u8]) -> RawResponse {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("response has a head");
    let mut lines = head.lines();
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    RawResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

/// Creates a meeting in us-east-1 through the SDK and returns it.
pub async fn create_meeting(client: &meetings::Client, external: &str) -> meetings::types::Meeting {
    client
        .create_meeting()
        .media_region("us-east-1")
        .external_meeting_id(external)
        .send()
        .await
        .expect("CreateMeeting succeeds")
        .meeting
        .expect("a Meeting")
}

/// Creates a meeting and returns its id.
pub async fn create_meeting_id(client: &meetings::Client, external: &str) -> String {
    create_meeting(client, external)
        .await
        .meeting_id
        .expect("a MeetingId")
}

/// A CreateMeeting body as boto3 would send it.
pub fn create_meeting_body(external_meeting_id: &str) -> String {
    serde_json::json!({
        "MediaRegion": "us-east-1",
        "ExternalMeetingId": external_meeting_id,
        "ClientRequestToken": uuid::Uuid::new_v4().to_string(),
    })
    .to_string()
}

/// The error code of an SDK call's service error ("ok" when the call succeeded).
pub fn code<E: meetings::error::ProvideErrorMetadata, R>(
    result: Result<impl Sized, aws_smithy_runtime_api::client::result::SdkError<E, R>>,
) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(error) => error
            .as_service_error()
            .and_then(|e| e.code())
            .unwrap_or("not a service error")
            .to_string(),
    }
}

/// `carillon serve` (the real binary) on `data_dir`, listening on `listen`.
pub fn serve(data_dir: &std::path::Path, listen: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_carillon"));
    command
        .args(["serve", "--listen", listen])
        .arg("--data-dir")
        .arg(data_dir)
        .env("CARILLON_ACCESS_KEY_ID", ACCESS_KEY_ID)
        .env("CARILLON_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
        .env("CARILLON_ACCOUNT_ID", ACCOUNT_ID)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true);
    command
}

pub fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    probe.local_addr().expect("addr").port()
}

/// Waits until something listens on `port` (at most 15 s: a node on PostgreSQL starts slower).
pub async fn wait_ready(port: u16) {
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server on port {port} did not start within 15 s");
}

/// CreateMediaConcatenationPipeline of the capture `capture_arn`, its audio only (the model
/// wants every artifact's state), into `destination` (a bucket ARN).
pub async fn concatenate_audio(
    pipelines: &aws_sdk_chimesdkmediapipelines::Client,
    capture_arn: &str,
    destination: &str,
) -> Result<
    aws_sdk_chimesdkmediapipelines::operation::create_media_concatenation_pipeline::CreateMediaConcatenationPipelineOutput,
    aws_sdk_chimesdkmediapipelines::error::SdkError<
        aws_sdk_chimesdkmediapipelines::operation::create_media_concatenation_pipeline::CreateMediaConcatenationPipelineError,
    >,
>{
    use aws_sdk_chimesdkmediapipelines::types::*;
    let disabled = ArtifactsConcatenationState::Disabled;
    let artifacts = ArtifactsConcatenationConfiguration::builder()
        .audio(
            AudioConcatenationConfiguration::builder()
                .state(AudioArtifactsConcatenationState::Enabled)
                .build()
                .expect("audio"),
        )
        .video(
            VideoConcatenationConfiguration::builder()
                .state(disabled.clone())
                .build()
                .expect("video"),
        )
        .content(
            ContentConcatenationConfiguration::builder()
                .state(disabled.clone())
                .build()
                .expect("content"),
        )
        .data_channel(
            DataChannelConcatenationConfiguration::builder()
                .state(disabled.clone())
                .build()
                .expect("data"),
        )
        .transcription_messages(
            TranscriptionMessagesConcatenationConfiguration::builder()
                .state(disabled.clone())
                .build()
                .expect("transcripts"),
        )
        .meeting_events(
            MeetingEventsConcatenationConfiguration::builder()
                .state(disabled.clone())
                .build()
                .expect("events"),
        )
        .composited_video(
            CompositedVideoConcatenationConfiguration::builder()
                .state(disabled)
                .build()
                .expect("composited"),
        )
        .build();
    let source = ConcatenationSource::builder()
        .r#type(ConcatenationSourceType::MediaCapturePipeline)
        .media_capture_pipeline_source_configuration(
            MediaCapturePipelineSourceConfiguration::builder()
                .media_pipeline_arn(capture_arn)
                .chime_sdk_meeting_configuration(
                    ChimeSdkMeetingConcatenationConfiguration::builder()
                        .artifacts_configuration(artifacts)
                        .build(),
                )
                .build()
                .expect("source configuration"),
        )
        .build()
        .expect("source");
    let sink = ConcatenationSink::builder()
        .r#type(ConcatenationSinkType::S3Bucket)
        .s3_bucket_sink_configuration(
            S3BucketSinkConfiguration::builder()
                .destination(destination)
                .build()
                .expect("destination"),
        )
        .build()
        .expect("sink");
    pipelines
        .create_media_concatenation_pipeline()
        .sources(source)
        .sinks(sink)
        .send()
        .await
}
