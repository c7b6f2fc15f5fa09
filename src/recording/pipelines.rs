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

use super::capture::{
    CaptureError, CaptureStats, CaptureTarget, ChunkWriter, RECORDER_TAP_FRAMES, RetryReport,
    record_audio,
};
use super::concat::{ConcatError, Joined, concatenate_audio, concatenate_text, concatenate_video};
use super::sink::ObjectSink;
use super::text::{
    DATA_CHANNEL, MEETING_EVENTS, OBSERVER_EVENTS, TRANSCRIPTION_MESSAGES, TextStats, record_text,
};
use super::video::{VideoSelection, VideoStats, record_video};
use crate::clock::Clock;
use crate::domain::arn::{parse_bucket_arn, parse_media_pipeline_arn};
use crate::domain::capabilities::{Capabilities, MediaCapability};
use crate::domain::id::MeetingId;
use crate::domain::meeting_events::PipelineEventType;
use crate::join::JoinPlane;
use crate::media::tap::AudioSource;
use crate::store::{AttendeeOutcome, MediaPipelineRecord, NewAttendee, Store, StoreError};

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

/// At most one `chime:MediaPipelineTemporaryFailure` per pipeline in this long.
const TEMPORARY_FAILURE_EVERY: Duration = Duration::from_secs(60);

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
    /// The meeting's media (its audio mix and video streams) and its rooms (who joins, what
    /// data messages pass).
    join: Arc<JoinPlane>,
    sink: Arc<dyn ObjectSink>,
    clock: Arc<dyn Clock>,
    running: Mutex<HashMap<String, Running>>,
    /// Set while the server stops: recorders flush their last chunk but keep their status, so
    /// that the restarted server resumes them.
    shutting_down: AtomicBool,
}

/// How one recorder of a capture ended: a recorder's task that panicked.
type Recorded<T> = Result<Result<T, CaptureError>, tokio::task::JoinError>;

/// A capture's status once its recorders have ended (logged): failed when any of them failed.
fn capture_status(
    id: &str,
    audio: Result<CaptureStats, CaptureError>,
    video: Option<Recorded<VideoStats>>,
    text: Recorded<TextStats>,
) -> &'static str {
    let failure: Option<String> = match (&audio, &video, &text) {
        (Err(error), _, _) => Some(error.to_string()),
        (_, Some(Ok(Err(error))), _) => Some(error.to_string()),
        (_, _, Ok(Err(error))) => Some(error.to_string()),
        (_, Some(Err(panicked)), _) | (_, _, Err(panicked)) => Some(panicked.to_string()),
        _ => None,
    };
    match failure {
        None => {
            tracing::info!(
                media_pipeline_id = %id,
                audio = ?audio.ok(),
                video = ?video.and_then(|v| v.ok()).and_then(Result::ok),
                text = ?text.ok().and_then(Result::ok),
                "capture stopped"
            );
            status::STOPPED
        }
        Some(error) => {
            tracing::warn!(media_pipeline_id = %id, %error, "capture failed");
            status::FAILED
        }
    }
}

impl Recorders {
    pub fn new(
        store: Arc<dyn Store>,
        join: Arc<JoinPlane>,
        sink: Arc<dyn ObjectSink>,
        clock: Arc<dyn Clock>,
    ) -> Arc<Recorders> {
        Arc::new(Recorders {
            store,
            join,
            sink,
            clock,
            running: Mutex::new(HashMap::new()),
            shutting_down: AtomicBool::new(false),
        })
    }

    /// Where this node's recordings go (the API checks a sink's bucket before it stores a
    /// pipeline).
    pub fn sink(&self) -> &Arc<dyn ObjectSink> {
        &self.sink
    }

    /// Starts recording a stored capture pipeline: the meeting's mixed audio, the cameras and
    /// content shares its configuration selects, its events and data messages. The audio tap
    /// and the observer are open before this returns, so the recording holds everything from
    /// now on.
    pub fn start(self: &Arc<Self>, record: &MediaPipelineRecord, target: CaptureTarget) {
        let Some(Ok(meeting_id)) = record
            .meeting_id
            .as_deref()
            .map(|id| MeetingId::parse("MeetingId", id))
        else {
            return;
        };
        let tap = self
            .join
            .media
            .tap_audio(&meeting_id, AudioSource::Mix, RECORDER_TAP_FRAMES);
        let observer = self
            .join
            .rooms
            .observers
            .subscribe(meeting_id.as_str(), OBSERVER_EVENTS);
        let selection = VideoSelection::from_configuration(&record.configuration);
        let (stop, stopped) = watch::channel(false);
        let recorders = self.clone();
        let (account, id) = (record.account_id.clone(), record.media_pipeline_id.clone());
        // Held while the task is spawned and entered, so that a task that ends at once (its
        // meeting just ended) removes its own entry after it is there, never before.
        let Ok(mut running) = self.running.lock() else {
            return;
        };
        let task = tokio::spawn(async move {
            let attendee = recorders.join_meeting(&account, &meeting_id, &id).await;
            recorders
                .set_status(&account, &id, status::IN_PROGRESS)
                .await;
            // Video and text stop when the audio does: when the meeting ends (its mix tap
            // closes) or the pipeline is stopped.
            let (stop_others, others_stopped) = watch::channel(false);
            let writer = ChunkWriter::new(recorders.sink.clone(), target)
                .reporting_retries(recorders.temporary_failures(&account, &id));
            let video = selection.any().then(|| {
                tokio::spawn(record_video(
                    recorders.join.clone(),
                    meeting_id.clone(),
                    selection,
                    writer.clone(),
                    others_stopped.clone(),
                ))
            });
            let text = tokio::spawn(record_text(
                observer,
                meeting_id.as_str().to_string(),
                writer.clone(),
                others_stopped,
            ));
            let audio = record_audio(tap, writer, stopped).await;
            let _ = stop_others.send(true);
            let video = match video {
                Some(task) => Some(task.await),
                None => None,
            };
            let status = capture_status(&id, audio, video, text.await);
            if !recorders.shutting_down.load(Ordering::Relaxed) {
                recorders.set_status(&account, &id, status).await;
            }
            if let Some(attendee_id) = attendee {
                recorders
                    .leave_meeting(&account, &meeting_id, &attendee_id)
                    .await;
            }
            if let Ok(mut running) = recorders.running.lock() {
                running.remove(&id);
            }
        });
        running.insert(record.media_pipeline_id.clone(), Running { stop, task });
    }

    /// The capture joins its meeting as AWS's does: an attendee of its own, ExternalUserId
    /// `aws:MediaPipeline-<pipeline id>`, in ListAttendees and in every client's roster (as
    /// present and muted). It counts against the meeting's attendee cap like any attendee; in a
    /// meeting already full it records without one. A resumed capture finds its attendee again
    /// (the ExternalUserId makes the create idempotent). Returns the attendee id.
    async fn join_meeting(
        &self,
        account_id: &str,
        meeting_id: &MeetingId,
        media_pipeline_id: &str,
    ) -> Option<String> {
        let attendee_id = crate::domain::ids::new_attendee_id();
        let attendee = NewAttendee {
            join_token: crate::domain::tokens::new_join_token(&attendee_id),
            attendee_id,
            external_user_id: pipeline_external_user_id(media_pipeline_id),
            capabilities: Capabilities {
                audio: MediaCapability::Receive,
                video: MediaCapability::Receive,
                content: MediaCapability::Receive,
            },
            tags: Vec::new(),
            created_at: self.clock.now_ms(),
        };
        let created = self
            .store
            .create_attendees(account_id, meeting_id.as_str(), vec![attendee])
            .await;
        let record = match created.map(|outcomes| outcomes.into_iter().next()) {
            Ok(Some(AttendeeOutcome::Created(record) | AttendeeOutcome::Existing(record))) => {
                record
            }
            Ok(Some(AttendeeOutcome::MeetingFull { cap, .. })) => {
                tracing::info!(%media_pipeline_id, cap, "the meeting is full: the capture records without an attendee of its own");
                return None;
            }
            Ok(None) => return None,
            Err(error) => {
                tracing::debug!(%media_pipeline_id, %error, "the capture's attendee was not created");
                return None;
            }
        };
        self.join
            .rooms
            .add_guest(
                meeting_id.as_str(),
                &record.attendee_id,
                &record.external_user_id,
            )
            .await;
        Some(record.attendee_id)
    }

    /// The capture's attendee leaves the roster, and is deleted unless the server is only
    /// stopping (a restarted server resumes the capture with it).
    async fn leave_meeting(&self, account_id: &str, meeting_id: &MeetingId, attendee_id: &str) {
        self.join
            .rooms
            .remove_guest(meeting_id.as_str(), attendee_id);
        if self.shutting_down.load(Ordering::Relaxed) {
            return;
        }
        let now = self.clock.now_ms();
        if let Err(error) = self
            .store
            .delete_attendee(account_id, meeting_id.as_str(), attendee_id, now)
            .await
        {
            // Gone with its meeting, most often.
            tracing::debug!(%attendee_id, %error, "the capture's attendee was not deleted");
        }
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
        let joined = self
            .join_artifacts(&record.configuration, &source, &destination, id)
            .await;
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

    /// Joins each artifact the concatenation's configuration enables: the audio always (the
    /// model allows nothing else), cameras and content shares, and the text folders.
    async fn join_artifacts(
        &self,
        configuration: &serde_json::Value,
        source: &CaptureTarget,
        destination: &CaptureTarget,
        id: &str,
    ) -> Result<Vec<Joined>, ConcatError> {
        let enabled = |artifact: &str| {
            configuration
                .pointer(&format!(
                    "/Sources/0/MediaCapturePipelineSourceConfiguration/\
                     ChimeSdkMeetingConfiguration/ArtifactsConfiguration/{artifact}/State"
                ))
                .and_then(serde_json::Value::as_str)
                == Some("Enabled")
        };
        let sink = self.sink.as_ref();
        let mut joined = vec![concatenate_audio(sink, source, destination, id).await?];
        let video = (enabled("Video"), enabled("Content"));
        if video.0 || video.1 {
            joined.extend(concatenate_video(sink, source, destination, id, video).await?);
        }
        for (artifact, folder) in [
            ("MeetingEvents", MEETING_EVENTS),
            ("DataChannel", DATA_CHANNEL),
            ("TranscriptionMessages", TRANSCRIPTION_MESSAGES),
        ] {
            if enabled(artifact) {
                joined.extend(concatenate_text(sink, source, destination, folder, id).await?);
            }
        }
        Ok(joined)
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

    /// What a capture's writer calls when its sink refuses a chunk: a
    /// `chime:MediaPipelineTemporaryFailure` event, at most one per `TEMPORARY_FAILURE_EVERY`
    /// for a sink that keeps refusing.
    fn temporary_failures(
        self: &Arc<Self>,
        account_id: &str,
        media_pipeline_id: &str,
    ) -> RetryReport {
        let recorders = Arc::downgrade(self);
        let (account_id, id) = (account_id.to_string(), media_pipeline_id.to_string());
        let last_announced = Arc::new(Mutex::new(None::<std::time::Instant>));
        Arc::new(move |_error| {
            let now = std::time::Instant::now();
            let due = last_announced.lock().is_ok_and(|mut last| {
                let due = last.is_none_or(|at| now.duration_since(at) >= TEMPORARY_FAILURE_EVERY);
                if due {
                    *last = Some(now);
                }
                due
            });
            let Some(recorders) = recorders.upgrade().filter(|_| due) else {
                return;
            };
            let (account_id, id) = (account_id.clone(), id.clone());
            tokio::spawn(async move {
                let at = recorders.clock.now_ms();
                if let Err(error) = recorders
                    .store
                    .announce_media_pipeline(
                        &account_id,
                        &id,
                        PipelineEventType::TemporaryFailure,
                        at,
                    )
                    .await
                {
                    tracing::debug!(media_pipeline_id = %id, %error, "temporary failure not announced");
                }
            });
        })
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

/// The ExternalUserId of a capture pipeline's attendee, as AWS names it.
pub fn pipeline_external_user_id(media_pipeline_id: &str) -> String {
    format!("aws:MediaPipeline-{media_pipeline_id}")
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
