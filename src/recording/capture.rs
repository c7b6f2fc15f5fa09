//! A capture pipeline's audio recorder: the meeting's mix (everyone, nobody subtracted) from its
//! media tap, encoded to Opus and cut into chunks of at most 5 s, each an MP4 file named by the
//! UTC time of its first sample (`audio/yyyy-mm-dd-HH-MM-SS-mmm.mp4`), as AWS names them.
//!
//! One encoder runs for the whole capture, so the chunks are pieces of one continuous stream:
//! joined, they play without a seam. The timeline has no holes: frames the tap dropped (a
//! recorder that fell behind) and stretches with nobody connected are filled with encoded
//! silence, up to `MAX_SILENCE_FILL`; a longer gap starts the next chunk at its own time.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::mp4::{OpusSample, OpusTrack, opus_file};
use super::sink::{ObjectSink, SinkError};
use crate::domain::civil::dashed_millis;
use crate::media::opus::{Encoder, FRAME_SAMPLES, OpusError, SILENCE_FRAME};
use crate::media::tap::{AudioFrame, AudioTap};

/// 20 ms frames in one chunk: 5 s, AWS's chunk length.
pub const CHUNK_FRAMES: usize = 250;
/// Frames a recorder's tap holds before it drops (10 s): room for a slow write.
pub const RECORDER_TAP_FRAMES: usize = 500;
/// libopus's look-ahead at 48 kHz (2.5 ms plus 4 ms of delay compensation): samples a decoder
/// drops at the start of the stream, so that the first chunk begins on time.
const ENCODER_LOOKAHEAD: u16 = 312;
/// The longest gap filled with silence; past it, the recording resumes in a new chunk.
const MAX_SILENCE_FILL: Duration = Duration::from_secs(60);
/// How many times a chunk's write is tried, and the pause before the first retry (doubled
/// after each).
const WRITE_ATTEMPTS: u32 = 4;
const FIRST_RETRY: Duration = Duration::from_millis(250);
/// One 20 ms frame.
const FRAME: Duration = Duration::from_millis(20);
/// The folder of the meeting's mixed audio.
pub const AUDIO: &str = "audio";

/// Where a capture's objects go: `<bucket>/<prefix>/audio/…`, the prefix being the sink ARN's
/// key prefix or else the pipeline id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureTarget {
    pub bucket: String,
    pub prefix: String,
}

impl CaptureTarget {
    pub fn key(&self, folder: &str, name: &str) -> String {
        format!("{}/{folder}/{name}", self.prefix)
    }
}

/// What a recorder did, for the pipeline's status and the operator.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CaptureStats {
    pub chunks: u64,
    /// Frames recorded as heard.
    pub frames: u64,
    /// Frames of silence written where the tap gave none.
    pub silence_frames: u64,
    /// Frames the tap dropped because the recorder fell behind.
    pub dropped: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("starting the Opus encoder: {0}")]
    Encoder(OpusError),
    #[error("storing {key} after {WRITE_ATTEMPTS} attempts: {source}")]
    Sink {
        key: String,
        #[source]
        source: SinkError,
    },
}

/// A finished chunk: its file name and the whole MP4.
#[derive(Debug)]
pub struct Chunk {
    pub name: String,
    pub body: Vec<u8>,
}

/// The encoder and the chunk being filled.
pub struct AudioRecorder {
    encoder: Encoder,
    samples: Vec<OpusSample>,
    /// Where the chunk being filled begins on the timeline.
    chunk_start: Option<SystemTime>,
    /// Where the timeline expects the next frame.
    next_at: Option<SystemTime>,
    /// Whether the next chunk begins the stream (and carries the encoder's pre-skip).
    first: bool,
    pub stats: CaptureStats,
}

impl AudioRecorder {
    pub fn new() -> Result<AudioRecorder, OpusError> {
        Ok(AudioRecorder {
            encoder: Encoder::new()?,
            samples: Vec::with_capacity(CHUNK_FRAMES),
            chunk_start: None,
            next_at: None,
            first: true,
            stats: CaptureStats::default(),
        })
    }

    /// Records one frame of the mix; returns the chunks it completed.
    pub fn push(&mut self, frame: &AudioFrame) -> Vec<Chunk> {
        let mut done = Vec::new();
        if let Some(expected) = self.next_at {
            let late = frame.at.duration_since(expected).unwrap_or_default();
            if late > MAX_SILENCE_FILL {
                done.extend(self.finish());
                self.next_at = None;
            } else {
                // Half a frame of slack: the mixer's ticks are 20 ms apart, give or take.
                let missing = (late + FRAME / 2).as_millis() / FRAME.as_millis();
                for _ in 0..missing {
                    self.stats.silence_frames += 1;
                    done.extend(self.append(SILENCE_FRAME.to_vec(), frame.at));
                }
            }
        }
        let mut pcm = [0f32; FRAME_SAMPLES];
        for (slot, sample) in pcm.iter_mut().zip(frame.samples.iter()) {
            *slot = *sample;
        }
        let packet = self
            .encoder
            .encode(&mut pcm)
            .unwrap_or_else(|_| SILENCE_FRAME.to_vec());
        self.stats.frames += 1;
        done.extend(self.append(packet, frame.at));
        done
    }

    /// Appends one packet, which plays where the timeline expects the next frame (or at `at`
    /// when the timeline starts or restarts), and closes the chunk when it is full.
    fn append(&mut self, packet: Vec<u8>, at: SystemTime) -> Option<Chunk> {
        let here = self.next_at.unwrap_or(at);
        self.chunk_start.get_or_insert(here);
        self.samples.push(OpusSample {
            packet,
            samples: FRAME_SAMPLES as u32,
        });
        self.next_at = Some(here + FRAME);
        (self.samples.len() >= CHUNK_FRAMES).then(|| self.close())?
    }

    /// Closes the chunk being filled, if it has anything.
    pub fn finish(&mut self) -> Option<Chunk> {
        if self.samples.is_empty() {
            return None;
        }
        self.close()
    }

    fn close(&mut self) -> Option<Chunk> {
        let start = self.chunk_start.take()?;
        let samples = std::mem::replace(&mut self.samples, Vec::with_capacity(CHUNK_FRAMES));
        let unix = start
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let track = OpusTrack {
            pre_skip: if self.first { ENCODER_LOOKAHEAD } else { 0 },
            created_unix_secs: unix.as_secs(),
        };
        self.first = false;
        self.stats.chunks += 1;
        Some(Chunk {
            name: format!("{}.mp4", chunk_time(start)),
            body: opus_file(track, &samples),
        })
    }
}

/// `yyyy-mm-dd-HH-MM-SS-mmm` in UTC, as AWS names chunks.
pub fn chunk_time(at: SystemTime) -> String {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    dashed_millis(i64::try_from(since.as_millis()).unwrap_or(0))
}

/// Records the tap until it ends (the meeting ended) or `stop` is set (the pipeline was
/// deleted), then writes the last partial chunk. A write that keeps failing ends the capture
/// with an error; what was written before stays.
pub async fn record_audio(
    mut tap: AudioTap,
    writer: ChunkWriter,
    mut stop: watch::Receiver<bool>,
) -> Result<CaptureStats, CaptureError> {
    let mut recorder = AudioRecorder::new().map_err(CaptureError::Encoder)?;
    loop {
        let frame = tokio::select! {
            frame = tap.frames.recv() => frame,
            _ = stop.wait_for(|stop| *stop) => None,
        };
        let Some(frame) = frame else { break };
        for chunk in recorder.push(&frame) {
            writer.put(AUDIO, chunk).await?;
        }
    }
    if let Some(chunk) = recorder.finish() {
        writer.put(AUDIO, chunk).await?;
    }
    recorder.stats.dropped = tap.dropped();
    Ok(recorder.stats)
}

/// Called when the sink refused a chunk that will be tried again.
pub type RetryReport = Arc<dyn Fn(&SinkError) + Send + Sync>;

/// Where a capture's chunks go (its sink and folder), and whom it tells when the sink refuses
/// one for a while (the pipeline, which announces `chime:MediaPipelineTemporaryFailure`).
#[derive(Clone)]
pub struct ChunkWriter {
    sink: Arc<dyn ObjectSink>,
    target: CaptureTarget,
    on_retry: Option<RetryReport>,
}

impl ChunkWriter {
    pub fn new(sink: Arc<dyn ObjectSink>, target: CaptureTarget) -> ChunkWriter {
        ChunkWriter {
            sink,
            target,
            on_retry: None,
        }
    }

    /// The same writer, calling `report` before each retry.
    pub fn reporting_retries(mut self, report: RetryReport) -> ChunkWriter {
        self.on_retry = Some(report);
        self
    }

    /// Stores a chunk under `folder`, retrying with backoff; an error the sink says is
    /// permanent (no such bucket, access denied) is not retried.
    pub async fn put(&self, folder: &str, chunk: Chunk) -> Result<(), CaptureError> {
        let key = self.target.key(folder, &chunk.name);
        let mut pause = FIRST_RETRY;
        let mut attempt = 1;
        loop {
            match self
                .sink
                .put(&self.target.bucket, &key, chunk.body.clone())
                .await
            {
                Ok(()) => return Ok(()),
                Err(source) if attempt >= WRITE_ATTEMPTS || source.is_permanent() => {
                    return Err(CaptureError::Sink { key, source });
                }
                Err(error) => {
                    tracing::warn!(%error, attempt, "a recording chunk was not stored; retrying");
                    if let Some(report) = &self.on_retry {
                        report(&error);
                    }
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    attempt += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(at: SystemTime, tick: u64) -> AudioFrame {
        AudioFrame {
            tick,
            at,
            samples: Arc::from(vec![0.1f32; FRAME_SAMPLES]),
        }
    }

    #[test]
    fn chunks_are_five_seconds_named_by_their_start() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_000_000_123);
        let mut recorder = AudioRecorder::new().expect("encoder");
        let mut chunks = Vec::new();
        for tick in 0..600u32 {
            chunks.extend(recorder.push(&frame(start + FRAME * tick, u64::from(tick))));
        }
        chunks.extend(recorder.finish());
        let names: Vec<&str> = chunks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "2026-11-30-00-53-20-123.mp4",
                "2026-11-30-00-53-25-123.mp4",
                "2026-11-30-00-53-30-123.mp4"
            ]
        );
        assert_eq!(recorder.stats.frames, 600);
        assert_eq!(recorder.stats.silence_frames, 0);
    }

    #[test]
    fn missing_frames_become_silence_and_a_long_gap_a_new_chunk() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_000_000);
        let mut recorder = AudioRecorder::new().expect("encoder");
        let mut chunks = Vec::new();
        for tick in 0..100u32 {
            chunks.extend(recorder.push(&frame(start + FRAME * tick, 0)));
        }
        // 1 s dropped by the tap: 50 frames of silence keep the timeline.
        for tick in 150..200u32 {
            chunks.extend(recorder.push(&frame(start + FRAME * tick, 0)));
        }
        assert_eq!(recorder.stats.silence_frames, 50);
        // Nobody for two minutes: the next chunk starts at its own time.
        let later = start + Duration::from_secs(124);
        chunks.extend(recorder.push(&frame(later, 0)));
        chunks.extend(recorder.finish());
        let names: Vec<&str> = chunks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["2026-11-30-00-53-20-000.mp4", "2026-11-30-00-55-24-000.mp4"]
        );
        assert_eq!(recorder.stats.silence_frames, 50);
    }
}
