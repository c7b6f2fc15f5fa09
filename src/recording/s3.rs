//! The S3-compatible sink (`--s3-endpoint`): recordings go to any store that speaks the S3 API
//! (MinIO, Garage, Ceph RGW, moto, AWS S3 itself) through the official Rust SDK. Requests are
//! path-style (`<endpoint>/<bucket>/<key>`), which self-hosted stores need, signed with the
//! static key pair of the configuration.
//!
//! A put is one PutObject up to `multipart_threshold`, a multipart upload above it (aborted when
//! a part fails, so that no half-upload lingers in the bucket). The SDK retries what may pass
//! (throttling, 5xx, timeouts, connection failures) with backoff; the recorder above retries a
//! chunk again on top of that.

use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use super::sink::{ObjectSink, S3Error, SinkError};
use crate::config::{Config, Secret};

/// S3's smallest part, except the last one of an upload.
pub const MIN_PART_BYTES: usize = 5 * 1024 * 1024;
/// Objects up to this size go in one PutObject; larger ones in parts.
pub const MULTIPART_THRESHOLD: usize = 8 * 1024 * 1024;
/// The size of an upload's parts (bigger when the object would need more than `MAX_PARTS`).
pub const PART_BYTES: usize = 8 * 1024 * 1024;
/// S3's limit on the parts of one upload.
const MAX_PARTS: usize = 10_000;
/// The largest object a get reads into memory: a day of recorded audio is far below it, a
/// stray huge object in the bucket is refused instead of exhausting memory.
pub const MAX_GET_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Attempts of one request, the first included (the SDK's standard retry, with backoff).
const ATTEMPTS: u32 = 3;
/// A store that does not accept the connection by then is down (each attempt).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One attempt of one request, a part's upload included.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);
/// What a get reserves up front at most, whatever size the store announces.
const MAX_PREALLOCATION: usize = 64 * 1024 * 1024;

/// Where the store is and the key Carillon signs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
}

/// Why the S3 settings cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum S3ConfigError {
    #[error("--s3-endpoint must be an http:// or https:// URL, not '{0}'")]
    NotAUrl(String),
    #[error(
        "--s3-endpoint {0} needs credentials: set --s3-access-key-id and --s3-secret-access-key \
         (CARILLON_S3_ACCESS_KEY_ID and CARILLON_S3_SECRET_ACCESS_KEY, or AWS_ACCESS_KEY_ID and \
         AWS_SECRET_ACCESS_KEY)"
    )]
    NoCredentials(String),
    #[error("--s3-access-key-id and --s3-secret-access-key go together: give both or neither")]
    HalfCredentials,
}

impl S3Settings {
    /// The store the configuration names, or None without `--s3-endpoint` (the folder sink).
    /// Without either key of its own, the standard `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY` of the environment are used.
    pub fn from_config(config: &Config) -> Result<Option<S3Settings>, S3ConfigError> {
        Self::from_config_and_env(config, |name| std::env::var(name).ok())
    }

    /// `from_config`, with the environment read through `env` (for tests).
    pub fn from_config_and_env(
        config: &Config,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<S3Settings>, S3ConfigError> {
        let Some(endpoint) = config
            .s3_endpoint
            .as_deref()
            .map(str::trim)
            .filter(|endpoint| !endpoint.is_empty())
        else {
            return Ok(None);
        };
        let scheme_ok = ["http://", "https://"].iter().any(|scheme| {
            endpoint
                .strip_prefix(scheme)
                .is_some_and(|rest| !rest.is_empty())
        });
        if !scheme_ok {
            return Err(S3ConfigError::NotAUrl(endpoint.to_string()));
        }
        let present = |value: Option<String>| value.filter(|value| !value.is_empty());
        let (access_key_id, secret_access_key) = match (
            present(config.s3_access_key_id.clone()),
            config
                .s3_secret_access_key
                .clone()
                .filter(|secret| !secret.expose().is_empty()),
        ) {
            (Some(id), Some(secret)) => (id, secret),
            (None, None) => match (
                present(env("AWS_ACCESS_KEY_ID")),
                present(env("AWS_SECRET_ACCESS_KEY")),
            ) {
                (Some(id), Some(secret)) => (id, Secret::new(secret)),
                _ => return Err(S3ConfigError::NoCredentials(endpoint.to_string())),
            },
            _ => return Err(S3ConfigError::HalfCredentials),
        };
        Ok(Some(S3Settings {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            region: config.s3_region.clone(),
            access_key_id,
            secret_access_key,
        }))
    }
}

/// Objects in an S3-compatible store.
#[derive(Debug, Clone)]
pub struct S3Sink {
    client: Client,
    endpoint: String,
    multipart_threshold: usize,
    part_bytes: usize,
    max_get_bytes: u64,
}

impl S3Sink {
    /// A client of the store; nothing is sent until the first request.
    pub fn new(settings: &S3Settings) -> S3Sink {
        let credentials = Credentials::new(
            settings.access_key_id.clone(),
            settings.secret_access_key.expose().to_string(),
            None,
            None,
            "carillon-s3-settings",
        );
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&settings.endpoint)
            .region(Region::new(settings.region.clone()))
            .credentials_provider(credentials)
            // `<endpoint>/<bucket>/<key>`: self-hosted stores rarely resolve bucket subdomains.
            .force_path_style(true)
            // Checksums only where the operation requires them: the SDK's default (a CRC32 on
            // every upload, sent as a trailer in aws-chunked bodies) is refused by many
            // S3-compatible stores. The body's SHA-256 is still signed, so the store checks it.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .retry_config(RetryConfig::standard().with_max_attempts(ATTEMPTS))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .build(),
            )
            .build();
        S3Sink {
            client: Client::from_conf(config),
            endpoint: settings.endpoint.clone(),
            multipart_threshold: MULTIPART_THRESHOLD,
            part_bytes: PART_BYTES,
            max_get_bytes: MAX_GET_BYTES,
        }
    }

    /// Objects larger than `threshold` go in parts of `part_bytes` (at least S3's 5 MiB).
    pub fn with_multipart(mut self, threshold: usize, part_bytes: usize) -> S3Sink {
        self.multipart_threshold = threshold;
        self.part_bytes = part_bytes.max(MIN_PART_BYTES);
        self
    }

    /// A get refuses objects larger than `limit` bytes.
    pub fn with_max_get_bytes(mut self, limit: u64) -> S3Sink {
        self.max_get_bytes = limit;
        self
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The error of a request that failed: the store's code and message when it answered,
    /// else what kept it from answering (timeout, connection refused, …).
    fn error<E>(
        &self,
        operation: &'static str,
        target: String,
        error: SdkError<E, HttpResponse>,
    ) -> SinkError
    where
        E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    {
        let status = error.raw_response().map(|raw| raw.status().as_u16());
        let code = error.code().map(str::to_string);
        let detail = match (&error, &code) {
            (SdkError::ServiceError(_), Some(code)) => {
                let message = error.message().unwrap_or("no message");
                match status {
                    Some(status) => format!("{code} (HTTP {status}): {message}"),
                    None => format!("{code}: {message}"),
                }
            }
            (SdkError::ServiceError(_), None) => match status {
                Some(status) => format!("HTTP {status} without an error code"),
                None => DisplayErrorContext(&error).to_string(),
            },
            _ => DisplayErrorContext(&error).to_string(),
        };
        SinkError::from(S3Error {
            operation,
            target,
            endpoint: self.endpoint.clone(),
            code,
            status,
            detail,
        })
    }

    async fn put_whole(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), SinkError> {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|error| self.error("PutObject", format!("{bucket}/{key}"), error))?;
        Ok(())
    }

    /// A multipart upload of `body`: every part, then Complete; on any failure the upload is
    /// aborted, so that its parts do not stay (and cost) in the bucket.
    async fn put_in_parts(&self, bucket: &str, key: &str, body: &[u8]) -> Result<(), SinkError> {
        let target = format!("{bucket}/{key}");
        let created = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|error| self.error("CreateMultipartUpload", target.clone(), error))?;
        let Some(upload_id) = created.upload_id() else {
            return Err(SinkError::from(S3Error {
                operation: "CreateMultipartUpload",
                target,
                endpoint: self.endpoint.clone(),
                code: None,
                status: None,
                detail: "the store answered without an UploadId".into(),
            }));
        };
        let uploaded = match self.upload_parts(bucket, key, upload_id, body).await {
            Ok(parts) => self
                .client
                .complete_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map(|_| ())
                .map_err(|error| self.error("CompleteMultipartUpload", target.clone(), error)),
            Err(error) => Err(error),
        };
        if uploaded.is_err() {
            let aborted = self
                .client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .send()
                .await;
            if let Err(error) = aborted {
                // The store's lifecycle rules (or an operator) must clean it up; the put's own
                // error is what the caller needs.
                let error = self.error("AbortMultipartUpload", target.clone(), error);
                tracing::warn!(%error, "a failed multipart upload was not aborted");
            }
        }
        uploaded
    }

    async fn upload_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        body: &[u8],
    ) -> Result<Vec<CompletedPart>, SinkError> {
        // Parts big enough that the object fits in S3's 10,000.
        let part_bytes = self.part_bytes.max(body.len().div_ceil(MAX_PARTS));
        let mut parts = Vec::new();
        for (number, part) in (1..).zip(body.chunks(part_bytes)) {
            let uploaded = self
                .client
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .body(ByteStream::from(part.to_vec()))
                .send()
                .await
                .map_err(|error| {
                    self.error(
                        "UploadPart",
                        format!("{bucket}/{key} (part {number})"),
                        error,
                    )
                })?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(uploaded.e_tag().map(str::to_string))
                    .build(),
            );
        }
        Ok(parts)
    }

    fn too_large(&self, bucket: &str, key: &str, size: u64) -> SinkError {
        SinkError::TooLarge {
            bucket: bucket.to_string(),
            key: key.to_string(),
            size,
            limit: self.max_get_bytes,
        }
    }
}

/// Refuses what the folder sink refuses too (empty, `.` and `..` segments, backslashes): such
/// keys are normalised away by some stores and proxies, so the object would land elsewhere.
fn checked(bucket: &str, key: &str) -> Result<(), SinkError> {
    let unsafe_segment = |segment: &str| {
        segment.is_empty() || segment == "." || segment == ".." || segment.contains('\\')
    };
    if bucket.is_empty() || key.split('/').any(unsafe_segment) {
        return Err(SinkError::UnsafeKey(format!("{bucket}/{key}")));
    }
    Ok(())
}

#[async_trait::async_trait]
impl ObjectSink for S3Sink {
    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), SinkError> {
        checked(bucket, key)?;
        if body.len() > self.multipart_threshold {
            self.put_in_parts(bucket, key, &body).await
        } else {
            self.put_whole(bucket, key, body).await
        }
    }

    async fn list(&self, bucket: &str, folder: &str) -> Result<Vec<String>, SinkError> {
        checked(bucket, folder)?;
        let prefix = format!("{folder}/");
        let mut keys = Vec::new();
        let mut continuation: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(&prefix)
                // Deeper keys come back as common prefixes, which are not listed.
                .delimiter("/")
                .set_continuation_token(continuation.take())
                .send()
                .await
                .map_err(|error| {
                    self.error("ListObjectsV2", format!("{bucket}/{prefix}"), error)
                })?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|object| object.key())
                    // A `folder/` marker object (as consoles make) is the folder, not a key in it.
                    .filter(|key| *key != prefix)
                    .map(str::to_string),
            );
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) && !next.is_empty() => {
                    continuation = Some(next.to_string());
                }
                _ => break,
            }
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>, SinkError> {
        checked(bucket, key)?;
        let target = format!("{bucket}/{key}");
        let object = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|error| self.error("GetObject", target.clone(), error))?;
        let announced = object
            .content_length()
            .and_then(|length| u64::try_from(length).ok());
        if let Some(size) = announced
            && size > self.max_get_bytes
        {
            return Err(self.too_large(bucket, key, size));
        }
        let reserve = announced
            .and_then(|size| usize::try_from(size).ok())
            .unwrap_or(0)
            .min(MAX_PREALLOCATION);
        let mut body = Vec::with_capacity(reserve);
        let mut stream = object.body;
        // Counted as it comes too: a store may send more than it announced, or announce nothing.
        while let Some(piece) = stream.try_next().await.map_err(|error| {
            SinkError::from(S3Error {
                operation: "GetObject",
                target: target.clone(),
                endpoint: self.endpoint.clone(),
                code: None,
                status: None,
                detail: format!("reading the body: {}", DisplayErrorContext(&error)),
            })
        })? {
            let size = (body.len() + piece.len()) as u64;
            if size > self.max_get_bytes {
                return Err(self.too_large(bucket, key, size));
            }
            body.extend_from_slice(&piece);
        }
        Ok(body)
    }

    async fn bucket_exists(&self, bucket: &str) -> Result<bool, SinkError> {
        match self.client.head_bucket().bucket(bucket).send().await {
            Ok(_) => Ok(true),
            Err(error) => {
                let missing = error.as_service_error().is_some_and(|e| e.is_not_found())
                    || error.code() == Some("NoSuchBucket")
                    || (matches!(error, SdkError::ServiceError(_))
                        && error.raw_response().map(|raw| raw.status().as_u16()) == Some(404));
                if missing {
                    Ok(false)
                } else {
                    Err(self.error("HeadBucket", bucket.to_string(), error))
                }
            }
        }
    }

    fn describe(&self) -> String {
        format!("the S3-compatible store at {}", self.endpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(endpoint: Option<&str>, id: Option<&str>, secret: Option<&str>) -> Config {
        let mut config = Config::for_tests(std::path::PathBuf::from("/nonexistent"));
        config.s3_endpoint = endpoint.map(str::to_string);
        config.s3_access_key_id = id.map(str::to_string);
        config.s3_secret_access_key = secret.map(Secret::new);
        config
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn an_endpoint_needs_a_url_and_credentials_of_its_own_or_the_standard_ones() {
        assert_eq!(
            S3Settings::from_config_and_env(&config(None, Some("id"), Some("s")), no_env),
            Ok(None),
            "no endpoint: the folder sink"
        );
        let settings = S3Settings::from_config_and_env(
            &config(Some("http://127.0.0.1:9000/"), Some("id"), Some("s")),
            no_env,
        )
        .expect("valid")
        .expect("an S3 store");
        assert_eq!(settings.endpoint, "http://127.0.0.1:9000");
        assert_eq!(settings.region, "us-east-1");
        assert_eq!(settings.secret_access_key.expose(), "s");
        assert!(
            !format!("{settings:?}").contains("\"s\""),
            "the secret is masked: {settings:?}"
        );
        let missing = S3Settings::from_config_and_env(
            &config(Some("http://127.0.0.1:9000"), None, None),
            no_env,
        )
        .expect_err("no credentials");
        assert!(
            missing.to_string().contains("--s3-access-key-id"),
            "{missing}"
        );
        let standard = |name: &str| match name {
            "AWS_ACCESS_KEY_ID" => Some("AKIDSTANDARD".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("standard-secret".to_string()),
            _ => None,
        };
        let settings = S3Settings::from_config_and_env(
            &config(Some("https://s3.example.com"), None, None),
            standard,
        )
        .expect("valid")
        .expect("an S3 store");
        assert_eq!(settings.access_key_id, "AKIDSTANDARD");
        assert_eq!(
            S3Settings::from_config_and_env(&config(Some("http://x"), Some("id"), None), standard),
            Err(S3ConfigError::HalfCredentials)
        );
        for endpoint in ["127.0.0.1:9000", "ftp://x", "http://"] {
            assert!(
                matches!(
                    S3Settings::from_config_and_env(
                        &config(Some(endpoint), Some("id"), Some("s")),
                        no_env
                    ),
                    Err(S3ConfigError::NotAUrl(_))
                ),
                "{endpoint}"
            );
        }
    }

    #[tokio::test]
    async fn unsafe_keys_are_refused_before_any_request() {
        let settings = S3Settings {
            // Nothing listens there; the keys never get that far.
            endpoint: "http://127.0.0.1:9".into(),
            region: "us-east-1".into(),
            access_key_id: "id".into(),
            secret_access_key: Secret::new("secret"),
        };
        let sink = S3Sink::new(&settings);
        for key in ["../x", "a/../../x", "a//b", "", "a\\b", "/a"] {
            assert!(
                matches!(
                    sink.put("bucket", key, Vec::new()).await,
                    Err(SinkError::UnsafeKey(_))
                ),
                "{key:?}"
            );
        }
        assert_eq!(
            sink.describe(),
            "the S3-compatible store at http://127.0.0.1:9"
        );
    }
}
