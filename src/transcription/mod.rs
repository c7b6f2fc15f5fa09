//! Live transcription: StartMeetingTranscription with a local engine.
//!
//! One task per transcribed meeting on this node ([`Transcriptions`]). It follows who sends
//! audio (the rooms' audio senders, content shares left out, as AWS leaves them out) and gives
//! each a speaker task: the session's own decoded audio from a media tap, cut into utterances
//! ([`utterance::Segmenter`]), sent to the engine ([`engine::Engine`]) by a worker of its own
//! (a growing snapshot every second for a partial result while it may take a free slot, then
//! the final one under the same result id), the results sent to every client of the meeting as
//! `aws:chime:transcription` data messages ([`captions`]).
//!
//! Nothing here slows the meeting: taps drop rather than block, each speaker queues at most
//! [`QUEUED_UTTERANCES`] utterances (what does not fit is dropped and counted), and requests
//! are bounded by the engine's slots and timeout. An engine that fails makes the clients see
//! `interrupted`, and `resumed` at its next answer; one that refuses the request (4xx) ends the
//! transcription as `failed`.

pub mod captions;
pub mod engine;
pub mod utterance;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::domain::id::{MeetingId, SessionId};
use crate::domain::meeting_events::TranscriptionEvent;
use crate::join::JoinPlane;
use crate::join::observe::RoomEvent;
use crate::media::tap::{AudioSource, AudioTap};
use crate::store::Store;
use captions::{Speaker, Status};
use engine::Engine;
use utterance::{Segmenter, Utterance};

/// Utterances a speaker's worker queues behind the one it sends: past that, the speaker's
/// audio is dropped (and counted) rather than held.
pub const QUEUED_UTTERANCES: usize = 2;
/// Frames a speaker's tap queues (2 s) while its task is busy cutting.
const TAP_FRAMES: usize = 100;
/// With no frame for this long, a session has gone quiet (it sends nothing in silence with
/// DTX): what it said is final.
const QUIET_AFTER: Duration = Duration::from_millis(300);
/// How often the meeting's audio senders are looked at (a newcomer's first words wait at most
/// this long).
const SENDERS_EVERY: Duration = Duration::from_millis(250);
/// Tries of a final utterance's request (a partial one gets one).
const FINAL_TRIES: usize = 3;
/// Room events the meeting task queues (it only looks for the meeting's end).
const OBSERVER_EVENTS: usize = 64;

/// What became of a final utterance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Transcribed,
    /// The engine did not answer (down, busy, too slow) after every try.
    Failed,
    /// The speaker's queue was full: the engine was behind.
    Dropped,
}

/// Final utterances by outcome on this node, since it started (also in `/metrics` as
/// `carillon_transcription_utterances_total`).
#[derive(Debug, Default)]
pub struct UtteranceCounts {
    pub transcribed: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
}

impl UtteranceCounts {
    fn count(&self, outcome: Outcome) {
        let (counter, label) = match outcome {
            Outcome::Transcribed => (&self.transcribed, "transcribed"),
            Outcome::Failed => (&self.failed, "failed"),
            Outcome::Dropped => (&self.dropped, "dropped"),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(crate::metrics::name::TRANSCRIPTION_UTTERANCES, "outcome" => label)
            .increment(1);
    }
}

/// What a Start asked for, as the transcriber uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscriptionSettings {
    /// The language spoken (`en-US`), said back in each result; None when the engine is to
    /// identify it.
    pub language_code: Option<String>,
    /// Where AWS would transcribe: the settings' Region, else the meeting's media region.
    pub region: String,
    /// The TranscriptionConfiguration as the Start gave it (JSON), which clients are shown.
    pub configuration: String,
}

impl TranscriptionSettings {
    /// The language as engines take it: ISO 639-1 (`en` of `en-US`).
    fn engine_language(&self) -> Option<String> {
        let code = self.language_code.as_deref()?;
        Some(code.split('-').next().unwrap_or(code).to_ascii_lowercase())
    }
}

/// A running transcription: its settings (a Start on a transcribed meeting replaces them), how
/// to stop it, its task.
struct Running {
    /// Tells this run from a later one of the same meeting.
    run: u64,
    settings: watch::Sender<Arc<TranscriptionSettings>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// This node's live transcriptions, by meeting.
pub struct Transcriptions {
    engine: Option<Arc<Engine>>,
    join: Arc<JoinPlane>,
    store: Arc<dyn Store>,
    running: Mutex<HashMap<String, Running>>,
    runs: AtomicU64,
    counts: Arc<UtteranceCounts>,
}

/// Why a meeting's transcription ended.
enum End {
    Stopped,
    MeetingEnded,
    Failed(String),
}

impl Transcriptions {
    pub fn new(
        engine: Option<Engine>,
        join: Arc<JoinPlane>,
        store: Arc<dyn Store>,
    ) -> Arc<Transcriptions> {
        Arc::new(Transcriptions {
            engine: engine.map(Arc::new),
            join,
            store,
            running: Mutex::new(HashMap::new()),
            runs: AtomicU64::new(0),
            counts: Arc::default(),
        })
    }

    /// Final utterances by outcome on this node.
    pub fn utterances(&self) -> &UtteranceCounts {
        &self.counts
    }

    /// Whether an engine is configured (`--transcription-engine`).
    pub fn has_engine(&self) -> bool {
        self.engine.is_some()
    }

    /// Starts transcribing the meeting, or, when it is already, applies the new settings (the
    /// clients and the events stream see `started` again with them, as AWS sends it on an
    /// update). False without an engine.
    pub fn start(
        self: &Arc<Self>,
        meeting_id: &MeetingId,
        settings: TranscriptionSettings,
    ) -> bool {
        let Some(engine) = self.engine.clone() else {
            return false;
        };
        let Ok(mut running) = self.running.lock() else {
            return false;
        };
        let settings = Arc::new(settings);
        if let Some(current) = running.get(meeting_id.as_str())
            && !current.task.is_finished()
        {
            current.settings.send_if_modified(|old| {
                let changed = **old != *settings;
                *old = settings.clone();
                changed
            });
            return true;
        }
        let (settings_tx, settings_rx) = watch::channel(settings);
        let (stop, stopped) = watch::channel(false);
        let meeting = Arc::new(MeetingTranscription {
            meeting_id: meeting_id.clone(),
            join: self.join.clone(),
            store: self.store.clone(),
            engine,
            settings: settings_rx,
            interrupted: Mutex::new(None),
            counts: self.counts.clone(),
        });
        let this = self.clone();
        let id = meeting_id.as_str().to_string();
        let run = self.runs.fetch_add(1, Ordering::Relaxed);
        // The lock is held until the entry is in, so that a run that ends at once (its meeting
        // ended meanwhile) finds its own entry to remove.
        let task = tokio::spawn(async move {
            run_meeting(meeting, stopped).await;
            if let Ok(mut running) = this.running.lock()
                && running.get(&id).is_some_and(|r| r.run == run)
            {
                running.remove(&id);
            }
        });
        running.insert(
            meeting_id.as_str().to_string(),
            Running {
                run,
                settings: settings_tx,
                stop,
                task,
            },
        );
        true
    }

    /// Stops the meeting's transcription (clients see `stopped`). False if it was not running
    /// here.
    pub async fn stop(&self, meeting_id: &MeetingId) -> bool {
        let running = self
            .running
            .lock()
            .ok()
            .and_then(|mut running| running.remove(meeting_id.as_str()));
        let Some(running) = running else {
            return false;
        };
        let _ = running.stop.send(true);
        let _ = running.task.await;
        true
    }

    /// The server is stopping: every transcription stops.
    pub async fn shut_down(&self) {
        let ids: Vec<String> = self
            .running
            .lock()
            .map(|running| running.keys().cloned().collect())
            .unwrap_or_default();
        for id in ids {
            if let Ok(meeting_id) = MeetingId::parse("MeetingId", &id) {
                self.stop(&meeting_id).await;
            }
        }
    }
}

/// One meeting's transcription, shared by its task and its speakers.
struct MeetingTranscription {
    meeting_id: MeetingId,
    join: Arc<JoinPlane>,
    store: Arc<dyn Store>,
    engine: Arc<Engine>,
    settings: watch::Receiver<Arc<TranscriptionSettings>>,
    /// Why the engine last failed, while it has not answered since (clients were told
    /// `interrupted`).
    interrupted: Mutex<Option<String>>,
    counts: Arc<UtteranceCounts>,
}

fn now_ms() -> i64 {
    unix_ms(SystemTime::now())
}

fn unix_ms(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl MeetingTranscription {
    fn settings(&self) -> Arc<TranscriptionSettings> {
        self.settings.borrow().clone()
    }

    /// Tells every client (and, while it runs, every client that joins later) and the events
    /// stream that the transcription changed state.
    async fn announce(&self, status: Status, reason: Option<&str>) {
        let settings = self.settings();
        let at = now_ms();
        let message = captions::status(
            status,
            &settings.region,
            &settings.configuration,
            reason,
            at,
        );
        let meeting_id = self.meeting_id.as_str();
        let running = !matches!(status, Status::Stopped | Status::Failed);
        self.join
            .rooms
            .send_server_data(meeting_id, message, running)
            .await;
        if !running {
            self.join.rooms.unpin(meeting_id, captions::TOPIC);
        }
        self.observe(captions::status_line(status, &settings, reason, at));
        tracing::info!(
            meeting_id,
            event = status.event_name(),
            reason,
            "transcription"
        );
        let event = TranscriptionEvent {
            event_type: status.event_name(),
            region: settings.region.clone(),
            configuration: settings.configuration.clone(),
            message: reason.map(str::to_string),
            at_ms: at,
        };
        if let Err(error) = self
            .store
            .record_transcription_event(meeting_id, event)
            .await
        {
            tracing::warn!(meeting_id, %error, "could not record a transcription event");
        }
    }

    /// Hands a line to the meeting's observers (a capture pipeline's `transcription-messages/`).
    fn observe(&self, line: String) {
        let meeting_id = self.meeting_id.as_str();
        if self.join.rooms.observers.wants(meeting_id) {
            self.join
                .rooms
                .observers
                .emit(meeting_id, RoomEvent::Transcription { line });
        }
    }

    /// The engine answered: clients told it was interrupted hear that it resumed.
    async fn engine_answered(&self) {
        let was = self.interrupted.lock().ok().and_then(|mut i| i.take());
        if was.is_some() {
            self.announce(Status::Resumed, None).await;
        }
    }

    /// The engine failed (down, busy, slow): clients hear once that it is interrupted.
    async fn engine_failed(&self, error: &engine::EngineError) {
        let reason = error.to_string();
        let first = self.interrupted.lock().is_ok_and(|mut interrupted| {
            let first = interrupted.is_none();
            *interrupted = Some(reason.clone());
            first
        });
        if first {
            self.announce(Status::Interrupted, Some(&reason)).await;
        }
    }

    /// Sends a result to every client of the meeting.
    async fn deliver(
        &self,
        utterance: &Utterance,
        recognized: &engine::Recognized,
        speaker: &Speaker,
        result_id: &str,
    ) {
        let settings = self.settings();
        let at = now_ms();
        let message = captions::transcript(
            utterance,
            recognized,
            speaker,
            result_id,
            settings.language_code.as_deref(),
            at,
        );
        self.join
            .rooms
            .send_server_data(self.meeting_id.as_str(), message, false)
            .await;
        if !utterance.partial {
            self.observe(captions::transcript_line(
                utterance, recognized, speaker, result_id, at,
            ));
        }
    }
}

/// A meeting's transcription from start to end.
async fn run_meeting(meeting: Arc<MeetingTranscription>, mut stop: watch::Receiver<bool>) {
    let meeting_id = meeting.meeting_id.as_str().to_string();
    let mut observer = meeting
        .join
        .rooms
        .observers
        .subscribe(&meeting_id, OBSERVER_EVENTS);
    meeting.announce(Status::Started, None).await;
    let mut settings = meeting.settings.clone();
    let (refused, mut refusals) = mpsc::channel::<String>(1);
    let mut speakers: HashMap<u64, JoinHandle<()>> = HashMap::new();
    let mut look = tokio::time::interval(SENDERS_EVERY);
    look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stopping = async move {
        let _ = stop.wait_for(|stop| *stop).await;
    };
    tokio::pin!(stopping);
    let end = loop {
        tokio::select! {
            () = &mut stopping => break End::Stopped,
            changed = settings.changed() => {
                if changed.is_err() {
                    break End::Stopped;
                }
                meeting.announce(Status::Started, None).await;
            }
            event = observer.events.recv() => {
                if event.is_none() {
                    break End::MeetingEnded;
                }
            }
            Some(reason) = refusals.recv() => break End::Failed(reason),
            _ = look.tick() => follow_speakers(&meeting, &mut speakers, &refused).await,
        }
    };
    // Stopping is at once, as AWS's: what speakers were saying is not transcribed.
    for task in speakers.values() {
        task.abort();
    }
    match end {
        End::Stopped => meeting.announce(Status::Stopped, None).await,
        End::Failed(reason) => meeting.announce(Status::Failed, Some(&reason)).await,
        // Its clients are gone; the events stream hears it.
        End::MeetingEnded => meeting.announce(Status::Stopped, None).await,
    }
}

/// Gives every audio sender of the meeting a speaker task (again, when its last one ended: its
/// tap closes while its media is not up yet).
async fn follow_speakers(
    meeting: &Arc<MeetingTranscription>,
    speakers: &mut HashMap<u64, JoinHandle<()>>,
    refused: &mpsc::Sender<String>,
) {
    speakers.retain(|_, task| !task.is_finished());
    let senders = meeting
        .join
        .rooms
        .audio_senders(meeting.meeting_id.as_str())
        .await;
    for (session, attendee_id, external_user_id) in senders {
        if speakers.contains_key(&session) {
            continue;
        }
        let tap = meeting.join.media.tap_audio(
            &meeting.meeting_id,
            AudioSource::Session(SessionId(session)),
            TAP_FRAMES,
        );
        let speaker = Speaker {
            attendee_id,
            external_user_id,
        };
        let task = tokio::spawn(transcribe_speaker(
            meeting.clone(),
            tap,
            speaker,
            refused.clone(),
        ));
        speakers.insert(session, task);
    }
}

/// One session's audio, cut into utterances for its worker, until the session leaves (its tap
/// ends). Aborted, it takes its worker with it.
async fn transcribe_speaker(
    meeting: Arc<MeetingTranscription>,
    mut tap: AudioTap,
    speaker: Speaker,
    refused: mpsc::Sender<String>,
) {
    let mut segmenter = Segmenter::new(true);
    let (queue, queued) = mpsc::channel::<Utterance>(QUEUED_UTTERANCES);
    let busy = Arc::new(AtomicBool::new(false));
    let mut worker = JoinSet::new();
    worker.spawn(work(
        meeting.clone(),
        queued,
        speaker,
        refused,
        busy.clone(),
    ));
    let submit = |utterance: Utterance| {
        // A partial result is worth asking for only when the worker has nothing else to do.
        if utterance.partial
            && (busy.load(Ordering::Relaxed) || queue.capacity() < queue.max_capacity())
        {
            return;
        }
        let partial = utterance.partial;
        if queue.try_send(utterance).is_err() && !partial {
            meeting.counts.count(Outcome::Dropped);
            tracing::debug!(
                meeting_id = meeting.meeting_id.as_str(),
                "an utterance was dropped: the engine is behind"
            );
        }
    };
    loop {
        match tokio::time::timeout(QUIET_AFTER, tap.frames.recv()).await {
            Ok(Some(frame)) => {
                for utterance in segmenter.push(frame.tick, unix_ms(frame.at), &frame.samples) {
                    submit(utterance);
                }
            }
            Ok(None) => break,
            Err(_) => {
                if let Some(utterance) = segmenter.finish() {
                    submit(utterance);
                }
            }
        }
    }
    if let Some(utterance) = segmenter.finish() {
        submit(utterance);
    }
    drop(queue);
    while worker.join_next().await.is_some() {}
}

/// Sends a speaker's utterances to the engine, one at a time, and their results to the meeting.
async fn work(
    meeting: Arc<MeetingTranscription>,
    mut queued: mpsc::Receiver<Utterance>,
    speaker: Speaker,
    refused: mpsc::Sender<String>,
    busy: Arc<AtomicBool>,
) {
    let mut result: (u64, String) = (0, String::new());
    while let Some(utterance) = queued.recv().await {
        if result.0 != utterance.number {
            result = (utterance.number, uuid::Uuid::new_v4().to_string());
        }
        let slot = if utterance.partial {
            meeting.engine.free_slot()
        } else {
            meeting.engine.slot().await
        };
        let Some(slot) = slot else {
            continue;
        };
        busy.store(true, Ordering::Relaxed);
        let language = meeting.settings().engine_language();
        let tries = if utterance.partial { 1 } else { FINAL_TRIES };
        let started = std::time::Instant::now();
        let answer = meeting
            .engine
            .transcribe(&slot, &utterance.wav(), language.as_deref(), tries)
            .await;
        drop(slot);
        busy.store(false, Ordering::Relaxed);
        metrics::histogram!(crate::metrics::name::TRANSCRIPTION_ENGINE)
            .record(started.elapsed().as_secs_f64());
        match answer {
            Ok(recognized) => {
                meeting.engine_answered().await;
                if !utterance.partial {
                    meeting.counts.count(Outcome::Transcribed);
                }
                if !recognized.text.is_empty() {
                    meeting
                        .deliver(&utterance, &recognized, &speaker, &result.1)
                        .await;
                }
            }
            Err(error) if error.is_refusal() => {
                let _ = refused.try_send(error.to_string());
                return;
            }
            Err(error) => {
                if !utterance.partial {
                    meeting.counts.count(Outcome::Failed);
                }
                meeting.engine_failed(&error).await;
            }
        }
    }
}
