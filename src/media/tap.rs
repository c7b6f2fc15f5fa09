//! Media taps: bounded subscriptions to a meeting's media for consumers beside the meeting
//! (recording, transcription, tests): its mixed audio and each session's decoded audio from the
//! mixer threads, each published video stream's frames from the meeting task.
//!
//! A tap never slows the meeting: the mixer hands each frame over with `try_send`, and when the
//! consumer's queue is full the frame is dropped and counted on the tap, where the consumer can
//! read how much it lost. A consumer that goes away (drops its [`AudioTap`]) is forgotten at the
//! next frame. Nothing here blocks or allocates more than one frame per tap per tick.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use tokio::sync::mpsc;

use crate::domain::id::{SessionId, StreamId};

/// Frames a tap queues by default: 2 s of 20 ms frames, room for a consumer that stalls
/// briefly (a disk flush, an upload) without losing audio.
pub const DEFAULT_TAP_FRAMES: usize = 100;

/// What an audio tap hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AudioSource {
    /// The meeting's mix of everyone heard, nobody subtracted (what a recording plays): one
    /// frame every tick, silence included, so that its timeline has no holes.
    Mix,
    /// One session's own decoded audio (what a transcriber needs), decoded whether or not it
    /// is among the speakers mixed: one frame for every tick the session played something
    /// (received, rebuilt from FEC or concealed), none while it is silent or stopped.
    Session(SessionId),
}

/// One 20 ms frame of 48 kHz mono PCM.
#[derive(Debug, Clone)]
pub struct AudioFrame {
    /// The mixer's tick for the meeting: ticks are 20 ms apart, so a jump in this number on a
    /// session tap is time in which that session played nothing.
    pub tick: u64,
    /// When the mixer produced the frame.
    pub at: SystemTime,
    /// `opus::FRAME_SAMPLES` samples in [-1, 1].
    pub samples: Arc<[f32]>,
    /// On the mix's tap, the same frame Opus-encoded by the mixer (what a recorder writes, so
    /// that it needs no encoder of its own); None on a session's tap.
    pub packet: Option<Arc<[u8]>>,
}

/// What a video tap sees: one published stream (a simulcast layer, a content share), by the
/// stream id signaling allocated to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VideoSource(pub StreamId);

/// One video frame as the publisher sent it (depacketized, never decoded): what a recorder
/// writes into a container as is.
#[derive(Debug, Clone)]
pub struct VideoFrame {
    /// When the server received it.
    pub at: SystemTime,
    /// The publisher's RTP time, 90 kHz.
    pub rtp_time: u64,
    /// The codec as negotiated with the publisher.
    pub codec: str0m::format::Codec,
    /// Whether a decoder can start here.
    pub keyframe: bool,
    pub data: Arc<[u8]>,
}

/// The consumer's end of a tap.
#[derive(Debug)]
pub struct Tap<S, F> {
    pub source: S,
    pub frames: mpsc::Receiver<F>,
    dropped: Arc<AtomicU64>,
}

impl<S, F> Tap<S, F> {
    /// Frames dropped because this consumer's queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The producer's end of a tap.
#[derive(Debug)]
pub struct TapSender<S, F> {
    source: S,
    frames: mpsc::Sender<F>,
    dropped: Arc<AtomicU64>,
}

impl<S: Copy, F> TapSender<S, F> {
    pub fn source(&self) -> S {
        self.source
    }

    /// Whether the consumer is gone.
    pub fn is_closed(&self) -> bool {
        self.frames.is_closed()
    }
}

/// Another producer on the same tap: the consumer's stream ends when the last one is dropped.
impl<S: Copy, F> Clone for TapSender<S, F> {
    fn clone(&self) -> Self {
        TapSender {
            source: self.source,
            frames: self.frames.clone(),
            dropped: self.dropped.clone(),
        }
    }
}

pub type AudioTap = Tap<AudioSource, AudioFrame>;
pub type AudioTapSender = TapSender<AudioSource, AudioFrame>;
pub type AudioTaps = Taps<AudioSource, AudioFrame>;
pub type VideoTap = Tap<VideoSource, VideoFrame>;
pub type VideoTapSender = TapSender<VideoSource, VideoFrame>;
pub type VideoTaps = Taps<VideoSource, VideoFrame>;

/// A new tap on `source` that queues at most `capacity` frames (at least one).
pub fn tap<S: Copy, F>(source: S, capacity: usize) -> (TapSender<S, F>, Tap<S, F>) {
    let (frames, receiver) = mpsc::channel(capacity.max(1));
    let dropped = Arc::new(AtomicU64::new(0));
    (
        TapSender {
            source,
            frames,
            dropped: dropped.clone(),
        },
        Tap {
            source,
            frames: receiver,
            dropped,
        },
    )
}

/// The taps open on one meeting's audio or video.
#[derive(Debug)]
pub struct Taps<S, F> {
    taps: Vec<TapSender<S, F>>,
}

impl<S, F> Default for Taps<S, F> {
    fn default() -> Self {
        Taps { taps: Vec::new() }
    }
}

impl<S: Copy + PartialEq, F: Clone> Taps<S, F> {
    /// Adds a tap; one already here (the same consumer, reached twice while a meeting's media
    /// starts) is not added again, so that no frame is delivered twice.
    pub fn add(&mut self, tap: TapSender<S, F>) {
        if !self.taps.iter().any(|t| t.frames.same_channel(&tap.frames)) {
            self.taps.push(tap);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.taps.is_empty()
    }

    /// The sources someone listens to (repeated when several do).
    pub fn sources(&self) -> impl Iterator<Item = S> + '_ {
        self.taps.iter().map(|tap| tap.source)
    }

    /// Whether anyone listens to `source`.
    pub fn wants(&self, source: S) -> bool {
        self.taps.iter().any(|tap| tap.source == source)
    }

    /// Hands a frame of `source` to every tap on it: dropped and counted where the queue is
    /// full, and taps whose consumer is gone are removed.
    pub fn publish(&mut self, source: S, frame: &F) {
        self.taps.retain(|tap| {
            if tap.source != source {
                return !tap.frames.is_closed();
            }
            match tap.frames.try_send(frame.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tap.dropped.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }

    /// Ends the taps on a source that is gone (a session that left, a stream unpublished):
    /// their consumers see the end of the stream.
    pub fn close(&mut self, source: S) {
        self.taps.retain(|tap| tap.source != source);
    }
}

impl AudioTaps {
    /// The sessions someone listens to.
    pub fn sessions(&self) -> Vec<u64> {
        self.sources()
            .filter_map(|source| match source {
                AudioSource::Session(SessionId(session)) => Some(session),
                AudioSource::Mix => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tick: u64) -> AudioFrame {
        AudioFrame {
            tick,
            at: SystemTime::now(),
            samples: Arc::from(vec![0.0; 960]),
            packet: None,
        }
    }

    #[test]
    fn a_full_tap_drops_and_counts_and_a_closed_one_is_forgotten() {
        let mut taps = AudioTaps::default();
        let (sender, mut slow) = tap(AudioSource::Mix, 2);
        taps.add(sender);
        let (sender, gone) = tap(AudioSource::Session(SessionId(7)), 2);
        taps.add(sender);
        for tick in 1..=5 {
            taps.publish(AudioSource::Mix, &frame(tick));
        }
        assert_eq!(slow.dropped(), 3);
        assert_eq!(slow.frames.try_recv().map(|f| f.tick).ok(), Some(1));
        assert_eq!(slow.frames.try_recv().map(|f| f.tick).ok(), Some(2));
        assert!(slow.frames.try_recv().is_err());
        drop(gone);
        taps.publish(AudioSource::Mix, &frame(6));
        assert!(
            taps.sessions().is_empty(),
            "the dropped consumer's tap is gone"
        );
        assert!(taps.wants(AudioSource::Mix));
    }
}

/// The meeting-long taps (on the mix) of every meeting, kept by the media plane so that they
/// outlive the meeting's mixing, which stops when its last peer leaves and starts again with the
/// next (its task may stop too): each start hands them to the mixer. A meeting's taps end when
/// the meeting does.
#[derive(Default)]
pub struct MeetingTaps {
    meetings: std::sync::Mutex<std::collections::HashMap<String, Vec<AudioTapSender>>>,
}

impl MeetingTaps {
    /// Keeps `tap` for as long as `meeting_id` lives (or its consumer does).
    pub fn keep(&self, meeting_id: &str, tap: AudioTapSender) {
        if let Ok(mut meetings) = self.meetings.lock() {
            let taps = meetings.entry(meeting_id.to_string()).or_default();
            taps.retain(|tap| !tap.is_closed());
            taps.push(tap);
        }
    }

    /// The live taps of a meeting whose media starts, for its mixer.
    pub fn of(&self, meeting_id: &str) -> Vec<AudioTapSender> {
        let Ok(mut meetings) = self.meetings.lock() else {
            return Vec::new();
        };
        let Some(taps) = meetings.get_mut(meeting_id) else {
            return Vec::new();
        };
        taps.retain(|tap| !tap.is_closed());
        let live = taps.clone();
        if live.is_empty() {
            meetings.remove(meeting_id);
        }
        live
    }

    /// Forgets a meeting that ended: its taps end once its media task (if any) has stopped.
    pub fn end(&self, meeting_id: &str) {
        if let Ok(mut meetings) = self.meetings.lock() {
            meetings.remove(meeting_id);
        }
    }
}
