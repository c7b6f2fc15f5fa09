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
    /// The last frame was digital silence, written without the encoder: the next sound starts
    /// it afresh.
    after_silence: bool,
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
            encoder: Encoder::for_recording()?,
            after_silence: false,
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
        // The mixer's own packet of the mix when it gave one (the stream listeners who are not
        // speaking hear: no encoding here). Otherwise: a mix of nobody (digital silence) is the
        // silence packet, not an encoder's work, and anything else is encoded here.
        let packet = if let Some(packet) = &frame.packet {
            packet.to_vec()
        } else if frame.samples.iter().all(|sample| *sample == 0.0) {
            self.after_silence = true;
            SILENCE_FRAME.to_vec()
        } else {
            if std::mem::take(&mut self.after_silence) {
                self.encoder.reset();
            }
            let mut pcm = [0f32; FRAME_SAMPLES];
            for (slot, sample) in pcm.iter_mut().zip(frame.samples.iter()) {
                *slot = *sample;
            }
            self.encoder
                .encode(&mut pcm)
                .unwrap_or_else(|_| SILENCE_FRAME.to_vec())
        };
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
    use std::sync::atomic::AtomicU32;

    fn frame(at: SystemTime, tick: u64) -> AudioFrame {
        AudioFrame {
            tick,
            at,
            samples: Arc::from(vec![0.1f32; FRAME_SAMPLES]),
            packet: None,
        }
    }

    /// A sink whose first `failures` puts fail, with `permanent` errors or passing ones.
    struct FlakySink {
        failures: std::sync::atomic::AtomicU32,
        permanent: bool,
        puts: std::sync::atomic::AtomicU32,
    }

    #[async_trait::async_trait]
    impl ObjectSink for FlakySink {
        async fn put(&self, _: &str, key: &str, _: Vec<u8>) -> Result<(), SinkError> {
            use std::sync::atomic::Ordering::SeqCst;
            self.puts.fetch_add(1, SeqCst);
            if self.failures.load(SeqCst) == 0 {
                return Ok(());
            }
            self.failures.fetch_sub(1, SeqCst);
            Err(if self.permanent {
                SinkError::UnsafeKey(key.to_string())
            } else {
                SinkError::Io {
                    path: key.into(),
                    source: std::io::Error::other("the disk is busy"),
                }
            })
        }
        async fn list(&self, _: &str, _: &str) -> Result<Vec<String>, SinkError> {
            Ok(Vec::new())
        }
        async fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>, SinkError> {
            Err(SinkError::UnsafeKey(format!("{bucket}/{key}")))
        }
        async fn bucket_exists(&self, _: &str) -> Result<bool, SinkError> {
            Ok(true)
        }
        fn describe(&self) -> String {
            "a flaky test sink".to_string()
        }
    }

    fn writer_over(
        failures: u32,
        permanent: bool,
    ) -> (Arc<FlakySink>, ChunkWriter, Arc<AtomicU32>) {
        let sink = Arc::new(FlakySink {
            failures: AtomicU32::new(failures),
            permanent,
            puts: AtomicU32::new(0),
        });
        let reported = Arc::new(AtomicU32::new(0));
        let counter = reported.clone();
        let target = CaptureTarget {
            bucket: "b".into(),
            prefix: "p".into(),
        };
        let writer = ChunkWriter::new(sink.clone(), target).reporting_retries(Arc::new(
            move |_: &SinkError| {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            },
        ));
        (sink, writer, reported)
    }

    fn chunk() -> Chunk {
        Chunk {
            name: "2026-12-07-00-00-00-000.mp4".into(),
            body: vec![1, 2, 3],
        }
    }

    #[tokio::test]
    async fn a_refused_chunk_is_retried_and_reported_unless_the_refusal_is_permanent() {
        use std::sync::atomic::Ordering::SeqCst;
        let (sink, writer, reported) = writer_over(2, false);
        writer
            .put(AUDIO, chunk())
            .await
            .expect("stored on the third try");
        assert_eq!((sink.puts.load(SeqCst), reported.load(SeqCst)), (3, 2));

        let (sink, writer, reported) = writer_over(10, false);
        let error = writer.put(AUDIO, chunk()).await.expect_err("never stored");
        assert!(
            error
                .to_string()
                .contains("p/audio/2026-12-07-00-00-00-000.mp4"),
            "{error}"
        );
        assert_eq!(sink.puts.load(SeqCst), WRITE_ATTEMPTS);
        assert_eq!(reported.load(SeqCst), WRITE_ATTEMPTS - 1);

        let (sink, writer, reported) = writer_over(1, true);
        assert!(writer.put(AUDIO, chunk()).await.is_err());
        assert_eq!(
            (sink.puts.load(SeqCst), reported.load(SeqCst)),
            (1, 0),
            "a permanent refusal is not tried again"
        );
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
    fn digital_silence_needs_no_encoder_and_the_sound_after_it_plays() {
        use crate::media::mix::tone_power;
        use crate::media::opus::{Decoder, MAX_PACKET_SAMPLES};
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_000_000);
        let mut recorder = AudioRecorder::new().expect("encoder");
        let tone = |tick: u32| -> Arc<[f32]> {
            (0..FRAME_SAMPLES)
                .map(|i| {
                    let t = (tick as usize * FRAME_SAMPLES + i) as f32 / 48_000.0;
                    0.3 * (2.0 * std::f32::consts::PI * 440.0 * t).sin()
                })
                .collect()
        };
        let mut chunks = Vec::new();
        for tick in 0..250u32 {
            let samples = if (50..100).contains(&tick) || tick >= 150 {
                tone(tick)
            } else {
                Arc::from(vec![0.0f32; FRAME_SAMPLES])
            };
            let at = start + FRAME * tick;
            chunks.extend(recorder.push(&AudioFrame {
                tick: 0,
                at,
                samples,
                packet: None,
            }));
        }
        let [chunk] = chunks.as_slice() else {
            panic!("one 5 s chunk, got {}", chunks.len());
        };
        let file = crate::recording::mp4::read_opus_file(&chunk.body).expect("a valid file");
        assert!(
            file.samples[..50]
                .iter()
                .chain(&file.samples[100..150])
                .all(|s| s.packet == SILENCE_FRAME),
            "silent ticks are the silence packet"
        );
        let mut decoder = Decoder::new().expect("decoder");
        let mut pcm = [0f32; MAX_PACKET_SAMPLES];
        let mut decoded = Vec::new();
        for sample in &file.samples {
            let n = decoder
                .decode(Some(&sample.packet), FRAME_SAMPLES, &mut pcm)
                .expect("a valid packet");
            decoded.extend_from_slice(&pcm[..n]);
        }
        // The second stretch of tone, after silence and a reset encoder, is as clear as the
        // first.
        let power = |frames: std::ops::Range<usize>| {
            tone_power(
                &decoded[frames.start * FRAME_SAMPLES..frames.end * FRAME_SAMPLES],
                440.0,
                48_000.0,
            )
        };
        let (first, second, silence) = (power(60..95), power(160..245), power(110..145));
        assert!(
            second > first * 0.5 && first > silence * 1000.0,
            "tone {first} then {second}, silence {silence}"
        );
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
