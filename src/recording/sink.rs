//! Where a recording's objects go. The embedded default writes each bucket as a folder under the
//! data directory, so recording works with nothing to set up; `--s3-endpoint` puts an
//! S3-compatible store (`super::s3`) behind the same trait.

use std::path::{Path, PathBuf};

/// The error codes of an S3-compatible store that no retry will change: the bucket is missing,
/// or the credentials are wrong or not allowed. (Throttling, 5xx, timeouts and connection
/// failures may pass.)
const PERMANENT_S3_CODES: [&str; 7] = [
    "NoSuchBucket",
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidBucketName",
    "AllAccessDisabled",
    "AccountProblem",
];

/// Why an object was not stored (or listed, or read).
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the key {0:?} would leave its bucket")]
    UnsafeKey(String),
    /// An S3-compatible store refused a request, or could not be reached (boxed: the details
    /// would make every result of the sink large).
    #[error(transparent)]
    S3(Box<S3Error>),
    /// An object larger than what a read holds in memory.
    #[error("{bucket}/{key} is {size} bytes, more than the {limit} bytes a read takes")]
    TooLarge {
        bucket: String,
        key: String,
        size: u64,
        limit: u64,
    },
}

/// What an S3-compatible store said to one request, or what kept it from answering.
#[derive(Debug, thiserror::Error)]
#[error("S3 {operation} of {target} at {endpoint}: {detail}")]
pub struct S3Error {
    /// The S3 operation (`PutObject`, `ListObjectsV2`, …).
    pub operation: &'static str,
    /// What it was about: `bucket/key`, `bucket/prefix/` or the bucket alone.
    pub target: String,
    pub endpoint: String,
    /// The store's error code (`NoSuchBucket`, `SlowDown`, …) when it answered with one.
    pub code: Option<String>,
    /// The HTTP status of the store's answer, when there was one.
    pub status: Option<u16>,
    /// The store's code and message, or what kept the request from an answer.
    pub detail: String,
}

impl From<S3Error> for SinkError {
    fn from(error: S3Error) -> SinkError {
        SinkError::S3(Box::new(error))
    }
}

impl SinkError {
    /// Whether trying again cannot help (a missing bucket, refused credentials, a key that
    /// cannot be stored), as opposed to a store that is slow, busy or unreachable for now. The
    /// recorder reports the first as a permanent failure, the second as a temporary one.
    pub fn is_permanent(&self) -> bool {
        match self {
            SinkError::UnsafeKey(_) | SinkError::TooLarge { .. } => true,
            SinkError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
            ),
            SinkError::S3(error) => {
                error
                    .code
                    .as_deref()
                    .is_some_and(|code| PERMANENT_S3_CODES.contains(&code))
                    // An answer to HEAD has no body, so no code: its status says it.
                    || matches!(error.status, Some(401 | 403))
            }
        }
    }
}

/// A store of objects by bucket and key, written whole.
#[async_trait::async_trait]
pub trait ObjectSink: Send + Sync + 'static {
    /// Stores `body` at `bucket`/`key`, durably before returning; an object of that key is
    /// replaced. A reader never sees a partial object.
    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), SinkError>;

    /// The keys directly under `folder` (a key prefix without its trailing `/`), sorted; none
    /// when the folder does not exist.
    async fn list(&self, bucket: &str, folder: &str) -> Result<Vec<String>, SinkError>;

    /// The object at `bucket`/`key`.
    async fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>, SinkError>;

    /// Whether objects can be put in `bucket` as it is: false when the store has no such
    /// bucket (CreateMediaCapturePipeline then refuses it), an error when the store cannot say.
    async fn bucket_exists(&self, bucket: &str) -> Result<bool, SinkError>;

    /// Where the objects go, for messages and logs: "the S3-compatible store at http://…".
    fn describe(&self) -> String;
}

/// Buckets as folders: `<root>/<bucket>/<key>`. Any bucket name works (its folder is made on
/// the first write).
#[derive(Debug, Clone)]
pub struct FolderSink {
    root: PathBuf,
}

impl FolderSink {
    /// The embedded sink of a server whose data directory is `data_dir`.
    pub fn in_data_dir(data_dir: &Path) -> FolderSink {
        FolderSink {
            root: data_dir.join("buckets"),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file of `bucket`/`key`, or None if a segment could climb out of the root (bucket
    /// names and prefixes are validated at the API; this is the last line).
    fn path_of(&self, bucket: &str, key: &str) -> Option<PathBuf> {
        let mut path = self.root.clone();
        for segment in std::iter::once(bucket).chain(key.split('/')) {
            if segment.is_empty() || segment == "." || segment == ".." || segment.contains('\\') {
                return None;
            }
            path.push(segment);
        }
        Some(path)
    }
}

#[async_trait::async_trait]
impl ObjectSink for FolderSink {
    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), SinkError> {
        let path = self
            .path_of(bucket, key)
            .ok_or_else(|| SinkError::UnsafeKey(format!("{bucket}/{key}")))?;
        tokio::task::spawn_blocking(move || write_whole(&path, &body))
            .await
            .map_err(|join| SinkError::Io {
                path: PathBuf::new(),
                source: std::io::Error::other(join),
            })?
    }

    async fn list(&self, bucket: &str, folder: &str) -> Result<Vec<String>, SinkError> {
        let path = self
            .path_of(bucket, folder)
            .ok_or_else(|| SinkError::UnsafeKey(format!("{bucket}/{folder}")))?;
        let folder = folder.to_string();
        let listed = tokio::task::spawn_blocking(move || list_folder(&path, &folder)).await;
        listed.map_err(|join| SinkError::Io {
            path: PathBuf::new(),
            source: std::io::Error::other(join),
        })?
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>, SinkError> {
        let path = self
            .path_of(bucket, key)
            .ok_or_else(|| SinkError::UnsafeKey(format!("{bucket}/{key}")))?;
        tokio::fs::read(&path)
            .await
            .map_err(|source| SinkError::Io { path, source })
    }

    /// Every bucket exists: its folder is made by the first write.
    async fn bucket_exists(&self, _bucket: &str) -> Result<bool, SinkError> {
        Ok(true)
    }

    fn describe(&self) -> String {
        format!("the embedded folder sink under {}", self.root.display())
    }
}

/// The files of a folder as keys under `folder`, leaving out writes in progress.
fn list_folder(path: &Path, folder: &str) -> Result<Vec<String>, SinkError> {
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(SinkError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let mut keys: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| !name.ends_with(".partial"))
        .map(|name| format!("{folder}/{name}"))
        .collect();
    keys.sort();
    Ok(keys)
}

/// Writes beside the target, syncs, renames over it and syncs the folder: after a crash the
/// object is either absent or whole.
fn write_whole(path: &Path, body: &[u8]) -> Result<(), SinkError> {
    use std::io::Write;
    let io = |source| SinkError::Io {
        path: path.to_path_buf(),
        source,
    };
    let folder = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(folder).map_err(io)?;
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let mut file = std::fs::File::create(&partial).map_err(io)?;
    file.write_all(body).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&partial, path).map_err(io)?;
    std::fs::File::open(folder)
        .and_then(|dir| dir.sync_all())
        .map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn objects_land_as_files_and_keys_cannot_climb_out() {
        let dir = tempfile::tempdir().expect("dir");
        let sink = FolderSink::in_data_dir(dir.path());
        sink.put("any-bucket", "José/audio/a.mp4", b"whole".to_vec())
            .await
            .expect("put");
        let written = dir.path().join("buckets/any-bucket/José/audio/a.mp4");
        assert_eq!(std::fs::read(&written).expect("file"), b"whole");
        sink.put("any-bucket", "José/audio/a.mp4", b"again".to_vec())
            .await
            .expect("replace");
        assert_eq!(std::fs::read(&written).expect("file"), b"again");
        for key in ["../x", "a/../../x", "a//b", "", "a\\b"] {
            assert!(
                matches!(
                    sink.put("any-bucket", key, Vec::new()).await,
                    Err(SinkError::UnsafeKey(_))
                ),
                "{key:?}"
            );
        }
        assert!(sink.put("..", "x", Vec::new()).await.is_err());
        assert!(sink.bucket_exists("never-written").await.expect("answer"));
        assert!(sink.describe().contains("buckets"), "{}", sink.describe());
    }

    #[test]
    fn missing_buckets_and_refused_keys_are_permanent_and_busy_stores_are_not() {
        let s3 = |code: Option<&str>, status: Option<u16>| {
            SinkError::from(S3Error {
                operation: "PutObject",
                target: "b/k".into(),
                endpoint: "http://127.0.0.1:9000".into(),
                code: code.map(str::to_string),
                status,
                detail: "test".into(),
            })
        };
        for code in [
            "NoSuchBucket",
            "AccessDenied",
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
        ] {
            assert!(s3(Some(code), Some(400)).is_permanent(), "{code}");
        }
        assert!(s3(None, Some(403)).is_permanent(), "a HEAD refused");
        for (code, status) in [
            (Some("SlowDown"), Some(503)),
            (Some("InternalError"), Some(500)),
            (Some("RequestTimeout"), Some(400)),
            (None, None),
        ] {
            assert!(!s3(code, status).is_permanent(), "{code:?} {status:?}");
        }
        assert!(SinkError::UnsafeKey("../x".into()).is_permanent());
        let error = s3(Some("NoSuchBucket"), Some(404)).to_string();
        assert!(
            error.contains("PutObject") && error.contains("b/k") && error.contains("127.0.0.1"),
            "{error}"
        );
    }
}
