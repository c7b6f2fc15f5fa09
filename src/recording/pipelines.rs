//! The capture pipelines running on this node: each records its meeting's mix from a media tap
//! into the sink, and its status in the store follows the recorder (`InProgress` while it runs,
//! `Stopped` when the meeting ends or the pipeline is deleted, `Failed` when the sink keeps
//! refusing its chunks).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::capture::{CaptureTarget, RECORDER_TAP_FRAMES, record_audio};
use super::concat::concatenate_audio;
use super::sink::ObjectSink;
use crate::clock::Clock;
use crate::domain::arn::{parse_bucket_arn, parse_media_pipeline_arn};
use crate::domain::id::MeetingId;
use crate::media::Media;
use crate::media::tap::AudioSource;
use crate::store::{MediaPipelineRecord, Store, StoreError};

/// The statuses a capture pipeline goes through, as the model spells them.
pub mod status {
    pub const INITIALIZING: &str = "Initializing";
    pub const IN_PROGRESS: &str = "InProgress";
    pub const STOPPED: &str = "Stopped";
    pub const FAILED: &str = "Failed";
}

/// How often a concatenation pipeline looks whether its capture has finished.
const CAPTURE_POLL: Duration = Duration::from_secs(1);
/// The member of a concatenation pipeline's stored configuration that keeps its capture's
/// sink ARN, so that the chunks are found even after the capture pipeline is deleted. Not part
/// of any answer.
pub const CAPTURE_SINK_MEMBER: &str = "CarillonCaptureSinkArn";

/// How long a Delete waits for its recorder to write the last chunk.
const FLUSH_WAIT: Duration = Duration::from_secs(10);

/// A running recorder: how to stop it, and its task.
struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// This node's recorders, by media pipeline id.
pub struct Recorders {
    store: Arc<dyn Store>,
    media: Media,
    sink: Arc<dyn ObjectSink>,
    clock: Arc<dyn Clock>,
    running: Mutex<HashMap<String, Running>>,
    /// Set while the server stops: recorders flush their last chunk but keep their status, so
    /// that the restarted server resumes them.
    shutting_down: AtomicBool,
}

impl Recorders {
    pub fn new(
        store: Arc<dyn Store>,
        media: Media,
        sink: Arc<dyn ObjectSink>,
        clock: Arc<dyn Clock>,
    ) -> Arc<Recorders> {
        Arc::new(Recorders {
            store,
            media,
            sink,
            clock,
            running: Mutex::new(HashMap::new()),
            shutting_down: AtomicBool::new(false),
        })
    }

    /// Starts recording a stored capture pipeline. Its tap is open before this returns, so the
    /// recording holds everything heard from now on.
    pub fn start(self: &Arc<Self>, record: &MediaPipelineRecord, target: CaptureTarget) {
        let Some(Ok(meeting_id)) = record
            .meeting_id
            .as_deref()
            .map(|id| MeetingId::parse("MeetingId", id))
        else {
            return;
        };
        let tap = self
            .media
            .tap_audio(&meeting_id, AudioSource::Mix, RECORDER_TAP_FRAMES);
        let (stop, stopped) = watch::channel(false);
        let recorders = self.clone();
        let (account, id) = (record.account_id.clone(), record.media_pipeline_id.clone());
        // Held while the task is spawned and entered, so that a task that ends at once (its
        // meeting just ended) removes its own entry after it is there, never before.
        let Ok(mut running) = self.running.lock() else {
            return;
        };
        let task = tokio::spawn(async move {
            recorders
                .set_status(&account, &id, status::IN_PROGRESS)
                .await;
            let outcome = record_audio(tap, recorders.sink.clone(), target, stopped).await;
            let status = match &outcome {
                Ok(stats) => {
                    tracing::info!(media_pipeline_id = %id, ?stats, "capture stopped");
                    status::STOPPED
                }
                Err(error) => {
                    tracing::warn!(media_pipeline_id = %id, %error, "capture failed");
                    status::FAILED
                }
            };
            if !recorders.shutting_down.load(Ordering::Relaxed) {
                recorders.set_status(&account, &id, status).await;
            }
            if let Ok(mut running) = recorders.running.lock() {
                running.remove(&id);
            }
        });
        running.insert(record.media_pipeline_id.clone(), Running { stop, task });
    }

    /// Stops a pipeline's recorder and waits (a bounded while) for its last chunk to be
    /// written. False if it was not recording on this node.
    pub async fn stop(&self, media_pipeline_id: &str) -> bool {
        let running = self
            .running
            .lock()
            .ok()
            .and_then(|mut running| running.remove(media_pipeline_id));
        let Some(running) = running else {
            return false;
        };
        let _ = running.stop.send(true);
        if tokio::time::timeout(FLUSH_WAIT, running.task)
            .await
            .is_err()
        {
            tracing::warn!(%media_pipeline_id, "a stopped capture is still writing its last chunk");
        }
        true
    }

    /// The server is stopping: every recorder writes its last chunk; their pipelines stay
    /// InProgress in the store, for the restarted server to resume.
    pub async fn shut_down(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
        let ids: Vec<String> = self
            .running
            .lock()
            .map(|running| running.keys().cloned().collect())
            .unwrap_or_default();
        for id in ids {
            self.stop(&id).await;
        }
    }

    /// Whether a pipeline is recording on this node.
    pub fn is_recording(&self, media_pipeline_id: &str) -> bool {
        self.running
            .lock()
            .is_ok_and(|running| running.contains_key(media_pipeline_id))
    }

    /// Starts a stored concatenation pipeline: it waits for its capture to finish, then joins
    /// the capture's audio chunks into one file under its own destination.
    pub fn start_concatenation(self: &Arc<Self>, record: &MediaPipelineRecord) {
        let recorders = self.clone();
        let record = record.clone();
        tokio::spawn(async move { recorders.concatenate(record).await });
    }

    async fn concatenate(&self, record: MediaPipelineRecord) {
        let (account, id) = (&record.account_id, &record.media_pipeline_id);
        let source = record
            .configuration
            .get(CAPTURE_SINK_MEMBER)
            .and_then(serde_json::Value::as_str)
            .and_then(|sink_arn| {
                let capture_id = parse_media_pipeline_arn(&record.source_arn)?.1;
                target_of(sink_arn, &capture_id)
            });
        let (Some(source), Some(destination)) = (source, target_of(&record.sink_arn, id)) else {
            self.set_status(account, id, status::FAILED).await;
            return;
        };
        if !self.capture_finished(&record).await {
            return;
        }
        self.set_status(account, id, status::IN_PROGRESS).await;
        let joined = concatenate_audio(self.sink.as_ref(), &source, &destination, id).await;
        let status = match joined {
            Ok(joined) => {
                tracing::info!(media_pipeline_id = %id, ?joined, "concatenation done");
                status::STOPPED
            }
            Err(error) => {
                tracing::warn!(media_pipeline_id = %id, %error, "concatenation failed");
                status::FAILED
            }
        };
        self.set_status(account, id, status).await;
    }

    /// Waits until the concatenation's capture has finished (or was deleted, which flushes it);
    /// false if the concatenation pipeline itself was deleted meanwhile.
    async fn capture_finished(&self, record: &MediaPipelineRecord) -> bool {
        let capture_id = parse_media_pipeline_arn(&record.source_arn).map(|(_, id)| id);
        loop {
            match self
                .store
                .get_media_pipeline(&record.account_id, &record.media_pipeline_id)
                .await
            {
                Err(StoreError::PipelineNotFound) => return false,
                Err(error) => tracing::debug!(%error, "concatenation waits for the store"),
                Ok(_) => {}
            }
            let capture = match &capture_id {
                Some(capture_id) => {
                    self.store
                        .get_media_pipeline(&record.account_id, capture_id)
                        .await
                }
                None => Err(StoreError::PipelineNotFound),
            };
            match capture {
                Ok(capture) if MediaPipelineRecord::is_finished(&capture.status) => return true,
                Err(StoreError::PipelineNotFound) => return true,
                _ => tokio::time::sleep(CAPTURE_POLL).await,
            }
        }
    }

    /// After a restart: pipelines that were recording resume (in new chunks) if their meeting
    /// is still on, and are marked Stopped if it is not; concatenations start again.
    pub async fn resume_unfinished(self: &Arc<Self>) {
        let unfinished = match self.store.unfinished_media_pipelines().await {
            Ok(unfinished) => unfinished,
            Err(error) => {
                tracing::warn!(%error, "could not read the capture pipelines to resume");
                return;
            }
        };
        for record in unfinished {
            if record.kind == MediaPipelineRecord::CONCATENATION {
                self.start_concatenation(&record);
                continue;
            }
            let live = match record.meeting_id.as_deref() {
                Some(meeting_id) => self
                    .store
                    .get_meeting(&record.account_id, meeting_id)
                    .await
                    .is_ok(),
                None => false,
            };
            match capture_target(&record) {
                Some(target) if live => self.start(&record, target),
                _ => {
                    let (account, id) = (&record.account_id, &record.media_pipeline_id);
                    self.set_status(account, id, status::STOPPED).await;
                }
            }
        }
    }

    async fn set_status(&self, account_id: &str, media_pipeline_id: &str, status: &str) {
        let now = self.clock.now_ms();
        if let Err(error) = self
            .store
            .set_media_pipeline_status(account_id, media_pipeline_id, status, now)
            .await
        {
            // A pipeline deleted meanwhile has no status to keep.
            tracing::debug!(%media_pipeline_id, %error, "capture status not recorded");
        }
    }
}

/// Where a stored capture pipeline writes: its sink ARN's bucket, under the ARN's prefix or,
/// without one, the pipeline id.
pub fn capture_target(record: &MediaPipelineRecord) -> Option<CaptureTarget> {
    target_of(&record.sink_arn, &record.media_pipeline_id)
}

/// A bucket ARN's bucket, and its prefix or else `pipeline_id`.
fn target_of(sink_arn: &str, pipeline_id: &str) -> Option<CaptureTarget> {
    let bucket = parse_bucket_arn(sink_arn)?;
    let prefix = if bucket.prefix.is_empty() {
        pipeline_id.to_string()
    } else {
        bucket.prefix
    };
    Some(CaptureTarget {
        bucket: bucket.bucket,
        prefix,
    })
}
