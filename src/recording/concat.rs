//! Concatenation: a finished capture's chunks joined into one file per artifact, as AWS's media
//! concatenation pipelines do (`<prefix>/audio/<concatenation pipeline id>.mp4`,
//! `<prefix>/meeting-events/<id>.txt`, …), and for video one file per camera or content share
//! (`<prefix>/video/<id>-<attendee id>.webm`).
//!
//! The audio chunks are pieces of one Opus stream (one encoder per capture), so joining them is
//! copying their packets in order, without decoding: the result is gapless. A gap between two
//! chunks (the capture resumed after a restart, or nobody was connected for longer than the
//! recorder fills) becomes encoded silence, so the file's timeline is the meeting's. Video
//! chunks each start on a keyframe; joined, each keeps its place on the wall-clock timeline
//! (a camera turned off for a minute is a minute in which the last picture stays).

use std::time::Duration;

use super::capture::CaptureTarget;
use super::mp4::{Mp4Error, OpusSample, OpusTrack, opus_file, read_opus_file};
use super::sink::{ObjectSink, SinkError};
use super::webm::{VideoSample, WebmError, WebmTrack, read_webm, webm_file};
use crate::domain::civil::parse_dashed_millis;
use crate::media::opus::{FRAME_SAMPLES, SILENCE_FRAME};

/// The longest recording joined into one file (4 h, about 60 MB of Opus): the file is built in
/// memory.
const MAX_FRAMES: usize = 4 * 3600 * 50;
/// 20 ms.
const FRAME_MS: i64 = 20;

#[derive(Debug, thiserror::Error)]
pub enum ConcatError {
    #[error("reading or writing the bucket: {0}")]
    Sink(#[from] SinkError),
    #[error("chunk {key}: {source}")]
    Chunk {
        key: String,
        #[source]
        source: Mp4Error,
    },
    #[error("the capture has no audio chunks under {0}")]
    Empty(String),
    #[error("the recording is longer than the {} hours one file may hold", MAX_FRAMES / 180_000)]
    TooLong,
    #[error("video chunk {key}: {source}")]
    VideoChunk {
        key: String,
        #[source]
        source: WebmError,
    },
    #[error("{what} is larger than the {} GiB one file may hold", MAX_JOINED_BYTES >> 30)]
    TooLarge { what: String },
}

/// The most bytes of chunks joined into one video or text file: the file is built in memory.
const MAX_JOINED_BYTES: usize = 2 << 30;
/// The length of a chunk name's timestamp, `yyyy-mm-dd-HH-MM-SS-mmm`.
const STAMP_LEN: usize = 23;

/// What a concatenation wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub key: String,
    pub chunks: usize,
    /// 20 ms frames in the file, silence filled between chunks included.
    pub frames: usize,
    pub silence_frames: usize,
}

impl Joined {
    pub fn duration(&self) -> Duration {
        Duration::from_millis(self.frames as u64 * FRAME_MS as u64)
    }
}

/// Joins the audio chunks of the capture that wrote to `source` into
/// `<destination prefix>/audio/<name>.mp4`.
pub async fn concatenate_audio(
    sink: &dyn ObjectSink,
    source: &CaptureTarget,
    destination: &CaptureTarget,
    name: &str,
) -> Result<Joined, ConcatError> {
    let folder = format!("{}/audio", source.prefix);
    let keys: Vec<String> = sink
        .list(&source.bucket, &folder)
        .await?
        .into_iter()
        .filter(|key| key.ends_with(".mp4"))
        .collect();
    let mut samples: Vec<OpusSample> = Vec::new();
    let mut pre_skip = 0;
    let mut next_ms: Option<i64> = None;
    let mut silence_frames = 0;
    for key in &keys {
        let chunk = read_opus_file(&sink.get(&source.bucket, key).await?).map_err(|source| {
            ConcatError::Chunk {
                key: key.clone(),
                source,
            }
        })?;
        let start = chunk_start_ms(key);
        match (next_ms, start) {
            (None, _) => pre_skip = chunk.pre_skip,
            (Some(expected), Some(start)) if start > expected + FRAME_MS / 2 => {
                let missing = usize::try_from((start - expected + FRAME_MS / 2) / FRAME_MS)
                    .unwrap_or(usize::MAX)
                    .min(MAX_FRAMES + 1);
                silence_frames += missing;
                samples.extend((0..missing).map(|_| OpusSample {
                    packet: SILENCE_FRAME.to_vec(),
                    samples: FRAME_SAMPLES as u32,
                }));
            }
            _ => {}
        }
        let chunk_ms: i64 = chunk
            .samples
            .iter()
            .map(|s| i64::from(s.samples) * 1000 / 48_000)
            .sum();
        next_ms = start.map(|start| start + chunk_ms);
        samples.extend(chunk.samples);
        if samples.len() > MAX_FRAMES {
            return Err(ConcatError::TooLong);
        }
    }
    if keys.is_empty() {
        return Err(ConcatError::Empty(format!("{}/{folder}", source.bucket)));
    }
    let key = format!("{}/audio/{name}.mp4", destination.prefix);
    let frames = samples.len();
    let track = OpusTrack {
        pre_skip,
        created_unix_secs: keys
            .first()
            .and_then(|first| chunk_start_ms(first))
            .map_or(0, |ms| u64::try_from(ms / 1000).unwrap_or(0)),
    };
    sink.put(&destination.bucket, &key, opus_file(track, &samples))
        .await?;
    Ok(Joined {
        key,
        chunks: keys.len(),
        frames,
        silence_frames,
    })
}

/// When a chunk begins, from its name (`…/yyyy-mm-dd-HH-MM-SS-mmm.mp4`).
fn chunk_start_ms(key: &str) -> Option<i64> {
    let name = key.rsplit('/').next()?.strip_suffix(".mp4")?;
    parse_dashed_millis(name)
}

/// A video chunk's start and owner, from its name (`…/yyyy-mm-dd-HH-MM-SS-mmm-<owner>.webm`).
fn video_chunk(key: &str) -> Option<(i64, &str)> {
    let name = key.rsplit('/').next()?.strip_suffix(".webm")?;
    let start = parse_dashed_millis(name.get(..STAMP_LEN)?)?;
    let owner = name.get(STAMP_LEN..)?.strip_prefix('-')?;
    (!owner.is_empty()).then_some((start, owner))
}

/// Joins the text chunks of `folder` (`meeting-events`, `data-channel`, …) into
/// `<destination prefix>/<folder>/<name>.txt`, in order. None when the capture wrote none.
pub async fn concatenate_text(
    sink: &dyn ObjectSink,
    source: &CaptureTarget,
    destination: &CaptureTarget,
    folder: &str,
    name: &str,
) -> Result<Option<Joined>, ConcatError> {
    let keys: Vec<String> = sink
        .list(&source.bucket, &format!("{}/{folder}", source.prefix))
        .await?
        .into_iter()
        .filter(|key| key.ends_with(".txt"))
        .collect();
    if keys.is_empty() {
        return Ok(None);
    }
    let mut joined = Vec::new();
    for key in &keys {
        let chunk = sink.get(&source.bucket, key).await?;
        joined.extend_from_slice(&chunk);
        if !joined.is_empty() && !joined.ends_with(b"\n") {
            joined.push(b'\n');
        }
        if joined.len() > MAX_JOINED_BYTES {
            return Err(ConcatError::TooLarge {
                what: folder.to_string(),
            });
        }
    }
    let key = destination.key(folder, &format!("{name}.txt"));
    sink.put(&destination.bucket, &key, joined).await?;
    Ok(Some(Joined {
        key,
        chunks: keys.len(),
        frames: 0,
        silence_frames: 0,
    }))
}

/// Joins each camera's and content share's video chunks into
/// `<destination prefix>/video/<name>-<attendee id>.webm`, each chunk at its place on the
/// wall-clock timeline: cameras when `cameras`, content shares (`…#content`) when `content`.
/// One entry per file written.
pub async fn concatenate_video(
    sink: &dyn ObjectSink,
    source: &CaptureTarget,
    destination: &CaptureTarget,
    name: &str,
    (cameras, content): (bool, bool),
) -> Result<Vec<Joined>, ConcatError> {
    let keys = sink
        .list(&source.bucket, &format!("{}/video", source.prefix))
        .await?;
    let mut owners: std::collections::BTreeMap<String, Vec<(i64, String)>> = Default::default();
    for key in &keys {
        let wanted = |owner: &str| {
            if owner.ends_with(crate::join::video::CONTENT_SUFFIX) {
                content
            } else {
                cameras
            }
        };
        if let Some((start, owner)) = video_chunk(key).filter(|(_, owner)| wanted(owner)) {
            owners
                .entry(owner.to_string())
                .or_default()
                .push((start, key.clone()));
        }
    }
    let mut written = Vec::new();
    for (owner, mut chunks) in owners {
        chunks.sort();
        let first_start = chunks.first().map_or(0, |(start, _)| *start);
        let mut samples: Vec<VideoSample> = Vec::new();
        let (mut width, mut height, mut duration_ms, mut bytes) = (0, 0, 0u64, 0usize);
        for (start, key) in &chunks {
            let chunk = read_webm(&sink.get(&source.bucket, key).await?).map_err(|source| {
                ConcatError::VideoChunk {
                    key: key.clone(),
                    source,
                }
            })?;
            // A chunk's own times count from its start; its start is its name's.
            let offset = u64::try_from(start - first_start).unwrap_or(0);
            if width == 0 {
                (width, height) = (chunk.width, chunk.height);
            }
            duration_ms = duration_ms.max(offset + chunk.duration_ms);
            for sample in chunk.samples {
                bytes += sample.data.len();
                samples.push(VideoSample {
                    at_ms: offset + sample.at_ms,
                    ..sample
                });
            }
            if bytes > MAX_JOINED_BYTES {
                return Err(ConcatError::TooLarge {
                    what: format!("the video of {owner}"),
                });
            }
        }
        let track = WebmTrack {
            width,
            height,
            duration_ms,
            created_unix_ms: Some(first_start),
        };
        let key = destination.key("video", &format!("{name}-{owner}.webm"));
        sink.put(&destination.bucket, &key, webm_file(&track, &samples))
            .await?;
        written.push(Joined {
            key,
            chunks: chunks.len(),
            frames: samples.len(),
            silence_frames: 0,
        });
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::capture::AudioRecorder;
    use crate::recording::sink::FolderSink;
    use std::sync::Arc;
    use std::time::SystemTime;

    #[tokio::test]
    async fn chunks_join_into_one_gapless_file_and_gaps_become_silence() {
        let dir = tempfile::tempdir().expect("dir");
        let sink = FolderSink::in_data_dir(dir.path());
        let source = CaptureTarget {
            bucket: "team-recordings".into(),
            prefix: "capture-id".into(),
        };
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_000_000);
        let mut recorder = AudioRecorder::new().expect("encoder");
        let mut chunks = Vec::new();
        // 12 s, then (after a restart) 3 s more, 90 s later: two recorders' worth of chunks.
        let frame = |at: SystemTime| crate::media::tap::AudioFrame {
            tick: 0,
            at,
            samples: Arc::from(vec![0.1f32; FRAME_SAMPLES]),
            packet: None,
        };
        for tick in 0..600u32 {
            chunks.extend(recorder.push(&frame(start + Duration::from_millis(20) * tick)));
        }
        chunks.extend(recorder.finish());
        let mut resumed = AudioRecorder::new().expect("encoder");
        let later = start + Duration::from_secs(102);
        for tick in 0..150u32 {
            chunks.extend(resumed.push(&frame(later + Duration::from_millis(20) * tick)));
        }
        chunks.extend(resumed.finish());
        for chunk in chunks {
            let key = format!("capture-id/audio/{}", chunk.name);
            sink.put("team-recordings", &key, chunk.body)
                .await
                .expect("put");
        }
        let destination = CaptureTarget {
            bucket: "joined".into(),
            prefix: "standup".into(),
        };
        let joined = concatenate_audio(&sink, &source, &destination, "concat-id")
            .await
            .expect("joined");
        assert_eq!(joined.key, "standup/audio/concat-id.mp4");
        assert_eq!(joined.chunks, 4);
        assert_eq!(
            joined.silence_frames,
            90 * 50,
            "the 90 s between the two captures"
        );
        assert_eq!(joined.duration(), Duration::from_secs(12 + 90 + 3));
        let file = sink.get("joined", &joined.key).await.expect("file");
        let read = read_opus_file(&file).expect("a valid file");
        assert_eq!(read.samples.len(), joined.frames);
        assert_eq!(read.pre_skip, 312);

        let nothing = CaptureTarget {
            bucket: "team-recordings".into(),
            prefix: "no-such-capture".into(),
        };
        assert!(matches!(
            concatenate_audio(&sink, &nothing, &destination, "x").await,
            Err(ConcatError::Empty(_))
        ));
    }
}
