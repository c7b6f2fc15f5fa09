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
use super::sink::ObjectSink;
use crate::clock::Clock;
use crate::domain::id::MeetingId;
use crate::media::Media;
use crate::media::tap::AudioSource;
use crate::store::{MediaPipelineRecord, Store};

/// The statuses a capture pipeline goes through, as the model spells them.
pub mod status {
    pub const INITIALIZING: &str = "Initializing";
    pub const IN_PROGRESS: &str = "InProgress";
    pub const STOPPED: &str = "Stopped";
    pub const FAILED: &str = "Failed";
}

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

    /// After a restart: pipelines that were recording resume (in new chunks) if their meeting
    /// is still on, and are marked Stopped if it is not.
    pub async fn resume_unfinished(self: &Arc<Self>) {
        let unfinished = match self.store.unfinished_media_pipelines().await {
            Ok(unfinished) => unfinished,
            Err(error) => {
                tracing::warn!(%error, "could not read the capture pipelines to resume");
                return;
            }
        };
        for record in unfinished {
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
    let bucket = crate::domain::arn::parse_bucket_arn(&record.sink_arn)?;
    let prefix = if bucket.prefix.is_empty() {
        record.media_pipeline_id.clone()
    } else {
        bucket.prefix
    };
    Some(CaptureTarget {
        bucket: bucket.bucket,
        prefix,
    })
}
