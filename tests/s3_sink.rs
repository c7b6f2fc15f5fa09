//! The S3-compatible recording sink against a real S3-compatible server: moto's standalone
//! server (`moto_server`, from tests/s3/requirements.txt), started on a free port for each test.
//! The sink itself (non-ASCII keys, multipart uploads, bounded reads, missing buckets), then the
//! real `carillon serve --s3-endpoint` recording a meeting into a moto bucket and refusing a
//! pipeline whose bucket moto does not have. Skipped with a loud NOTE unless
//! CARILLON_TEST_S3_SERVER names the `moto_server` executable (scripts/test sets it).

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use carillon::config::Secret;
use carillon::recording::s3::{S3Settings, S3Sink};
use carillon::recording::sink::{ObjectSink, SinkError};

/// moto accepts any key pair unless told otherwise.
const S3_KEY_ID: &str = "AKIDMOTOTEST";
const S3_SECRET: &str = "moto-test-secret";
const MIB: usize = 1024 * 1024;

/// A `moto_server` child process on a free port, killed when dropped.
struct Moto {
    child: std::process::Child,
    url: String,
}

impl Moto {
    /// The server named by CARILLON_TEST_S3_SERVER, listening; None (and a NOTE on the test
    /// output, past cargo's capture) when the variable is not set.
    async fn start(test: &str) -> Option<Moto> {
        let server = match std::env::var("CARILLON_TEST_S3_SERVER") {
            Ok(server) if !server.is_empty() => server,
            _ => {
                // Straight to stderr, not through eprintln!, which the test harness captures:
                // a skipped S3 test must be seen.
                let _ = writeln!(
                    std::io::stderr(),
                    "\nNOTE: the S3 sink test {test} DID NOT RUN: CARILLON_TEST_S3_SERVER is not \
                     set. Set it to a moto_server executable (python3 -m venv target/compat/s3 && \
                     target/compat/s3/bin/pip install -r tests/s3/requirements.txt, then \
                     CARILLON_TEST_S3_SERVER=$PWD/target/compat/s3/bin/moto_server), as \
                     scripts/test does.\n"
                );
                return None;
            }
        };
        let port = common::free_port();
        let child = std::process::Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("starting {server}: {error}"));
        let mut moto = Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        // moto imports Flask and its S3 backend before it listens: a few seconds, more on a
        // busy machine.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Some(moto);
            }
            if let Some(status) = moto.child.try_wait().expect("moto_server's status") {
                panic!("{server} exited before it listened: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "{server} did not listen on {port} within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A plain SDK client of the store, as an operator's tools would be.
    fn client(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&self.url)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(S3_KEY_ID, S3_SECRET, None, None, "tests"))
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    async fn create_bucket(&self, bucket: &str) {
        self.client()
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .unwrap_or_else(|error| panic!("CreateBucket {bucket}: {error:?}"));
    }

    fn settings(&self) -> S3Settings {
        S3Settings {
            endpoint: self.url.clone(),
            region: "us-east-1".into(),
            access_key_id: S3_KEY_ID.into(),
            secret_access_key: Secret::new(S3_SECRET),
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `len` bytes that differ from one 5 MiB part to the next, so that parts out of order or
/// repeated would show.
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 31 + i / 4093) % 251) as u8)
        .collect()
}

#[tokio::test]
async fn the_sink_puts_lists_and_gets_whole_objects_in_an_s3_store() {
    let Some(moto) = Moto::start("the_sink_puts_lists_and_gets_whole_objects_in_an_s3_store").await
    else {
        return;
    };
    moto.create_bucket("carillon-unit").await;
    let sink = S3Sink::new(&moto.settings());
    assert_eq!(
        sink.describe(),
        format!("the S3-compatible store at {}", moto.url)
    );

    // Keys are UTF-8, encoded in the request's path and back from the listing.
    let key = "José/Zoë/«Ana».txt";
    sink.put("carillon-unit", key, "¡hola!".as_bytes().to_vec())
        .await
        .expect("PutObject");
    sink.put("carillon-unit", "José/Zoë/deeper/b.txt", b"b".to_vec())
        .await
        .expect("a key deeper down");
    sink.put("carillon-unit", "José/Zoë/a.txt", b"a".to_vec())
        .await
        .expect("another key");
    assert_eq!(
        sink.list("carillon-unit", "José/Zoë").await.expect("list"),
        ["José/Zoë/a.txt", "José/Zoë/«Ana».txt"],
        "the keys directly under the folder, sorted; deeper ones are not"
    );
    assert_eq!(
        sink.list("carillon-unit", "nobody").await.expect("list"),
        Vec::<String>::new()
    );
    assert_eq!(
        sink.get("carillon-unit", key).await.expect("GetObject"),
        "¡hola!".as_bytes()
    );
    // Replaced whole.
    sink.put("carillon-unit", key, b"again".to_vec())
        .await
        .expect("replace");
    assert_eq!(sink.get("carillon-unit", key).await.expect("get"), b"again");
    let single = moto
        .client()
        .head_object()
        .bucket("carillon-unit")
        .key(key)
        .send()
        .await
        .expect("HeadObject");
    assert!(
        single.e_tag().is_some_and(|tag| !tag.contains('-')),
        "a small object is one PutObject: {:?}",
        single.e_tag()
    );

    // Past the threshold, a multipart upload of 5 MiB parts (S3's smallest but the last).
    let multipart = S3Sink::new(&moto.settings()).with_multipart(5 * MIB, 5 * MIB);
    let body = pattern(11 * MIB);
    multipart
        .put("carillon-unit", "big/joined.mp4", body.clone())
        .await
        .expect("a multipart upload");
    let head = moto
        .client()
        .head_object()
        .bucket("carillon-unit")
        .key("big/joined.mp4")
        .send()
        .await
        .expect("HeadObject");
    assert!(
        head.e_tag().is_some_and(|tag| tag.ends_with("-3\"")),
        "three parts (5, 5 and 1 MiB): ETag {:?}",
        head.e_tag()
    );
    let read = multipart
        .get("carillon-unit", "big/joined.mp4")
        .await
        .expect("GetObject");
    assert!(
        read == body,
        "read back byte for byte ({} bytes)",
        read.len()
    );
    let uploads = moto
        .client()
        .list_multipart_uploads()
        .bucket("carillon-unit")
        .send()
        .await
        .expect("ListMultipartUploads");
    assert!(uploads.uploads().is_empty(), "no upload left open");

    // A read is bounded: a larger object is refused, not buffered.
    let bounded = S3Sink::new(&moto.settings()).with_max_get_bytes(MIB as u64);
    match bounded.get("carillon-unit", "big/joined.mp4").await {
        Err(error @ SinkError::TooLarge { .. }) => {
            assert!(error.is_permanent());
            assert!(error.to_string().contains("big/joined.mp4"), "{error}");
        }
        other => panic!("an 11 MiB object past a 1 MiB limit: {other:?}"),
    }

    // Buckets: there or not; writing to a missing one is an error no retry mends.
    assert!(
        sink.bucket_exists("carillon-unit")
            .await
            .expect("HeadBucket")
    );
    assert!(
        !sink
            .bucket_exists("carillon-no-such-bucket")
            .await
            .expect("HeadBucket")
    );
    let missing = sink
        .put("carillon-no-such-bucket", "a/b.mp4", b"x".to_vec())
        .await
        .expect_err("no such bucket");
    assert!(missing.is_permanent(), "{missing:?}");
    let message = missing.to_string();
    assert!(
        message.contains("PutObject")
            && message.contains("carillon-no-such-bucket/a/b.mp4")
            && message.contains("NoSuchBucket"),
        "{message}"
    );
}

#[tokio::test]
async fn a_store_that_is_down_is_a_temporary_failure() {
    // No moto needed: nothing listens on this port. Kept with the S3 tests, which it belongs to.
    let closed = common::free_port();
    let sink = S3Sink::new(&S3Settings {
        endpoint: format!("http://127.0.0.1:{closed}"),
        region: "us-east-1".into(),
        access_key_id: S3_KEY_ID.into(),
        secret_access_key: Secret::new(S3_SECRET),
    });
    let error = sink
        .bucket_exists("anything")
        .await
        .expect_err("nothing listens there");
    assert!(!error.is_permanent(), "{error:?}");
    assert!(error.to_string().contains("HeadBucket"), "{error}");
    let error = sink
        .put("anything", "a.mp4", b"x".to_vec())
        .await
        .expect_err("nothing listens there");
    assert!(!error.is_permanent(), "{error:?}");
}

/// One attendee who joins and sends a 440 Hz tone for `duration`, so that the meeting's media
/// (and its mix, which a capture records) runs.
async fn talk(signaling_url: String, token: String, duration: Duration) -> bool {
    let tone = common::talk::tone(440.0, duration.as_secs_f32());
    common::talk::talk(&signaling_url, &token, tone, duration)
        .await
        .connected
}

/// The real binary with `--s3-endpoint` at moto: a pipeline whose bucket moto does not have is
/// refused at Create, naming the bucket and the store; a capture into a bucket moto has
/// records the meeting's audio there, in MP4 chunks under `<pipeline id>/audio/`, all written
/// when Delete has answered; a concatenation into a missing bucket is refused too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_records_into_the_s3_store_and_refuses_missing_buckets() {
    let Some(moto) =
        Moto::start("the_server_records_into_the_s3_store_and_refuses_missing_buckets").await
    else {
        return;
    };
    moto.create_bucket("team-recordings").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut server = common::serve(dir.path(), &format!("127.0.0.1:{port}"))
        .args(["--s3-endpoint", &moto.url])
        .env("CARILLON_S3_ACCESS_KEY_ID", S3_KEY_ID)
        .env("CARILLON_S3_SECRET_ACCESS_KEY", S3_SECRET)
        .spawn()
        .expect("binary starts");
    common::wait_ready(port).await;

    let client = common::sdk_client(&url, "us-east-1");
    let created = common::create_meeting(&client, "s3-recording").await;
    let meeting_arn = created.meeting_arn().expect("arn").to_string();
    let pipelines = common::media_pipelines_client(&url);

    // A bucket moto does not have: 400, nothing stored.
    let refused = pipelines
        .create_media_capture_pipeline()
        .source_type(
            aws_sdk_chimesdkmediapipelines::types::MediaPipelineSourceType::ChimeSdkMeeting,
        )
        .source_arn(&meeting_arn)
        .sink_type(aws_sdk_chimesdkmediapipelines::types::MediaPipelineSinkType::S3Bucket)
        .sink_arn("arn:aws:s3:::no-such-recordings/standup")
        .send()
        .await
        .expect_err("a bucket the store does not have");
    let service = refused.as_service_error().expect("a modelled error");
    assert!(service.is_bad_request_exception(), "{refused:?}");
    let message = service.meta().message().unwrap_or_default().to_string();
    assert!(
        message.contains("\"no-such-recordings\"") && message.contains(&moto.url),
        "{message}"
    );
    let listed = pipelines
        .list_media_capture_pipelines()
        .send()
        .await
        .expect("ListMediaCapturePipelines");
    assert!(
        listed.media_capture_pipelines().is_empty(),
        "the refused pipeline was not stored"
    );

    // A bucket moto has: the capture records there.
    let id = common::start_capture(&pipelines, &meeting_arn, "arn:aws:s3:::team-recordings").await;
    let token = client
        .create_attendee()
        .meeting_id(created.meeting_id().expect("id"))
        .external_user_id("alice")
        .send()
        .await
        .expect("CreateAttendee")
        .attendee
        .and_then(|a| a.join_token)
        .expect("token");
    let signaling_url = created
        .media_placement()
        .and_then(|p| p.signaling_url())
        .expect("SignalingUrl")
        .to_string();
    // Media flows within a second or two of joining: a whole 5 s chunk, and a last one that
    // Delete flushes.
    assert!(
        talk(signaling_url, token, Duration::from_secs(7)).await,
        "ICE and DTLS completed"
    );
    let capture_arn = pipelines
        .get_media_capture_pipeline()
        .media_pipeline_id(&id)
        .send()
        .await
        .expect("GetMediaCapturePipeline")
        .media_capture_pipeline
        .and_then(|p| p.media_pipeline_arn)
        .expect("the capture's ARN");
    let concatenation = concatenation_into(&pipelines, &capture_arn).await;
    let concatenation = concatenation.expect_err("a destination bucket the store does not have");
    let service = concatenation.as_service_error().expect("a modelled error");
    assert!(service.is_bad_request_exception(), "{concatenation:?}");
    let message = service.meta().message().unwrap_or_default().to_string();
    assert!(message.contains("\"no-such-joined\""), "{message}");

    pipelines
        .delete_media_capture_pipeline()
        .media_pipeline_id(&id)
        .send()
        .await
        .expect("DeleteMediaCapturePipeline");
    let s3 = moto.client();
    let prefix = format!("{id}/audio/");
    let listed = s3
        .list_objects_v2()
        .bucket("team-recordings")
        .prefix(&prefix)
        .send()
        .await
        .expect("ListObjectsV2");
    let keys: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|object| object.key().map(str::to_string))
        .collect();
    assert!(!keys.is_empty(), "chunks under {prefix}");
    for key in &keys {
        assert!(key.ends_with(".mp4"), "{key}");
        let chunk = s3
            .get_object()
            .bucket("team-recordings")
            .key(key)
            .send()
            .await
            .expect("GetObject")
            .body
            .collect()
            .await
            .expect("the chunk's body")
            .into_bytes();
        assert!(
            chunk.len() > 8 && &chunk[4..8] == b"ftyp",
            "{key} begins with an MP4 ftyp box ({} bytes)",
            chunk.len()
        );
    }
    let _ = server.start_kill();
    let _ = server.wait().await;
}

/// CreateMediaConcatenationPipeline of the capture `capture_arn` (audio only) into the bucket
/// `no-such-joined`, which the store does not have.
async fn concatenation_into(
    pipelines: &aws_sdk_chimesdkmediapipelines::Client,
    capture_arn: &str,
) -> Result<
    aws_sdk_chimesdkmediapipelines::operation::create_media_concatenation_pipeline::CreateMediaConcatenationPipelineOutput,
    aws_sdk_chimesdkmediapipelines::error::SdkError<
        aws_sdk_chimesdkmediapipelines::operation::create_media_concatenation_pipeline::CreateMediaConcatenationPipelineError,
    >,
>{
    common::concatenate_audio(pipelines, capture_arn, "arn:aws:s3:::no-such-joined/joined").await
}

/// An endpoint with no credentials stops the server at start, saying what to set.
#[tokio::test]
async fn an_s3_endpoint_without_credentials_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = common::free_port();
    let run = common::serve(dir.path(), &format!("127.0.0.1:{port}"))
        .args(["--s3-endpoint", "http://127.0.0.1:9"])
        .env_remove("CARILLON_S3_ACCESS_KEY_ID")
        .env_remove("CARILLON_S3_SECRET_ACCESS_KEY")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .stderr(Stdio::piped())
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the server stops by itself")
        .expect("binary runs");
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--s3-access-key-id") && stderr.contains("http://127.0.0.1:9"),
        "{stderr}"
    );
}

/// A store that does not answer: Create is told to come back (503, which the SDKs retry), not
/// a 500, and nothing is stored.
#[tokio::test]
async fn a_store_that_is_down_makes_create_a_503() {
    let closed = common::free_port();
    let server = common::TestServer::start_with(|config| {
        config.s3_endpoint = Some(format!("http://127.0.0.1:{closed}"));
        config.s3_access_key_id = Some(S3_KEY_ID.into());
        config.s3_secret_access_key = Some(Secret::new(S3_SECRET));
    })
    .await;
    let created = common::create_meeting(&server.client(), "s3-down").await;
    let pipelines = common::media_pipelines_client(&server.url());
    let refused = pipelines
        .create_media_capture_pipeline()
        .source_type(
            aws_sdk_chimesdkmediapipelines::types::MediaPipelineSourceType::ChimeSdkMeeting,
        )
        .source_arn(created.meeting_arn().expect("arn"))
        .sink_type(aws_sdk_chimesdkmediapipelines::types::MediaPipelineSinkType::S3Bucket)
        .sink_arn("arn:aws:s3:::team-recordings")
        .send()
        .await
        .expect_err("the store is down");
    let service = refused.as_service_error().expect("a modelled error");
    assert!(service.is_service_unavailable_exception(), "{refused:?}");
    let message = service.meta().message().unwrap_or_default().to_string();
    assert!(message.contains("\"team-recordings\""), "{message}");
}
