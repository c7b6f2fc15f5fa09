//! A capture pipeline's video: each camera and content share as the publisher sent it (its best
//! simulcast layer, never decoded), cut into chunks of at most 5 s, each a WebM file named as
//! AWS names video chunks: `video/<yyyy-mm-dd-HH-MM-SS-mmm>-<attendee id>.webm`, with
//! `#content` after the attendee id for a content share.
//!
//! Why WebM and not AWS's MP4: the meeting's video is VP8 (the only video codec Carillon
//! negotiates), and Chromium does not play VP8 in MP4; in WebM it plays everywhere, ffmpeg
//! included, without transcoding.
//!
//! Every chunk must start on a keyframe to play on its own, so the recorder asks the publisher
//! for one 4 s into each chunk and starts the next chunk on it; if none has come at 5 s the
//! chunk ends there and the frames until the next keyframe are dropped (and counted).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::capture::{CaptureError, Chunk, ChunkWriter, chunk_time};
use super::webm::{VideoSample, WebmTrack, vp8_keyframe_size, webm_file};
use crate::domain::id::{MeetingId, StreamId};
use crate::join::JoinPlane;
use crate::join::video::RecordableVideo;
use crate::media::tap::VideoFrame;

/// The folder of cameras and content shares.
pub const VIDEO: &str = "video";
/// AWS's chunk length.
const CHUNK_MS: u64 = 5_000;
/// When a chunk asks the publisher for the keyframe that starts the next one: early enough for
/// a round trip and an encoder's next frame.
const ASK_KEYFRAME_AT_MS: u64 = 4_000;
/// How long after asking for a keyframe the recorder asks again.
const ASK_AGAIN_AFTER_MS: u64 = 400;
/// How far the RTP timeline may stray from frames' arrival before it is anchored again.
const REANCHOR: Duration = Duration::from_secs(2);
/// A jump in the publisher's RTP time larger than this (a restarted encoder) ends the chunk.
const MAX_FRAME_GAP_MS: u64 = 10_000;
/// Frames one stream's tap holds before it drops (about 10 s at 30 fps).
pub const VIDEO_TAP_FRAMES: usize = 300;
/// How often the recorder looks for cameras and shares that started, stopped or changed layer.
const PUBLICATIONS_POLL: Duration = Duration::from_secs(1);
/// RTP video clock.
const RTP_PER_MS: u64 = 90;

/// Which video a capture records, from its `ChimeSdkMeetingConfiguration`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoSelection {
    pub cameras: bool,
    pub content: bool,
    /// `SourceConfiguration.SelectedVideoStreams`: when either list is given, only cameras of
    /// these attendees are recorded.
    pub attendee_ids: Vec<String>,
    pub external_user_ids: Vec<String>,
}

impl VideoSelection {
    /// What a stored configuration asks for. Without `ArtifactsConfiguration` cameras and
    /// content shares are recorded, as AWS records video and content by default.
    pub fn from_configuration(configuration: &serde_json::Value) -> VideoSelection {
        let meeting = configuration.get("ChimeSdkMeetingConfiguration");
        let artifacts = meeting.and_then(|m| m.get("ArtifactsConfiguration"));
        let enabled = |name: &str| {
            artifacts.is_none_or(|artifacts| {
                artifacts
                    .get(name)
                    .and_then(|artifact| artifact.get("State"))
                    .and_then(serde_json::Value::as_str)
                    == Some("Enabled")
            })
        };
        let selected = |member: &str| -> Vec<String> {
            meeting
                .and_then(|m| m.get("SourceConfiguration"))
                .and_then(|source| source.get("SelectedVideoStreams"))
                .and_then(|streams| streams.get(member))
                .and_then(serde_json::Value::as_array)
                .map(|ids| {
                    ids.iter()
                        .filter_map(|id| id.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        VideoSelection {
            cameras: enabled("Video"),
            content: enabled("Content"),
            attendee_ids: selected("AttendeeIds"),
            external_user_ids: selected("ExternalUserIds"),
        }
    }

    pub fn any(&self) -> bool {
        self.cameras || self.content
    }

    /// Whether a publication is recorded.
    pub fn includes(&self, video: &RecordableVideo) -> bool {
        if video.content {
            return self.content;
        }
        if !self.cameras {
            return false;
        }
        if self.attendee_ids.is_empty() && self.external_user_ids.is_empty() {
            return true;
        }
        self.attendee_ids.contains(&video.attendee_id)
            || self.external_user_ids.contains(&video.external_user_id)
    }
}

/// What one stream's recorder did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VideoStats {
    pub chunks: u64,
    pub frames: u64,
    /// Frames dropped while waiting for a keyframe to start a chunk on.
    pub frames_before_keyframe: u64,
    /// Frames the tap dropped because the recorder fell behind.
    pub dropped: u64,
}

/// One stream's chunks in the making.
pub struct VideoChunker {
    /// The attendee id in the chunk names (`…#content` for a share).
    owner: String,
    samples: Vec<VideoSample>,
    /// The wall-clock time and RTP time of the chunk's first frame.
    start: Option<(SystemTime, u64)>,
    /// Where the stream's RTP timeline meets the wall clock: a frame's time is this anchor's
    /// plus its RTP time since, so that chunk names follow the chunks' lengths exactly instead
    /// of each keyframe's arrival jitter (and concatenated chunks never overlap).
    anchor: Option<(SystemTime, u64)>,
    size: (u16, u16),
    /// When (ms into the chunk) the publisher was last asked for the next chunk's keyframe.
    asked_at: Option<u64>,
    pub stats: VideoStats,
}

/// What pushing a frame did.
#[derive(Debug, Default)]
pub struct Pushed {
    pub chunk: Option<Chunk>,
    /// The recorder should ask the publisher for a keyframe.
    pub want_keyframe: bool,
}

impl VideoChunker {
    pub fn new(owner: &str) -> VideoChunker {
        VideoChunker {
            owner: owner.to_string(),
            samples: Vec::new(),
            start: None,
            anchor: None,
            size: (0, 0),
            asked_at: None,
            stats: VideoStats::default(),
        }
    }

    /// The frame's wall-clock time on the stream's RTP timeline. The anchor moves to the frame
    /// when the two clocks disagree by more than `REANCHOR` (a restarted encoder, a stream
    /// that paused): better a jump in the names than a chunk named seconds away from its time.
    fn wall_time(&mut self, frame: &VideoFrame) -> SystemTime {
        if let Some((wall, rtp)) = self.anchor
            && let Some(since) = frame.rtp_time.checked_sub(rtp)
        {
            let predicted = wall + Duration::from_millis(since / RTP_PER_MS);
            let apart = match predicted.duration_since(frame.at) {
                Ok(ahead) => ahead,
                Err(behind) => behind.duration(),
            };
            if apart <= REANCHOR {
                return predicted;
            }
        }
        self.anchor = Some((frame.at, frame.rtp_time));
        frame.at
    }

    pub fn push(&mut self, frame: &VideoFrame) -> Pushed {
        let mut pushed = Pushed::default();
        if let Some((_, first_rtp)) = self.start {
            let elapsed = frame
                .rtp_time
                .checked_sub(first_rtp)
                .map(|t| t / RTP_PER_MS);
            let resized = frame.keyframe
                && vp8_keyframe_size(&frame.data).is_some_and(|size| size != self.size);
            match elapsed {
                Some(ms) if ms < MAX_FRAME_GAP_MS => {
                    if (frame.keyframe && ms >= ASK_KEYFRAME_AT_MS) || resized || ms >= CHUNK_MS {
                        pushed.chunk = self.close(ms.min(CHUNK_MS));
                    } else {
                        self.samples.push(sample(ms, frame));
                        self.stats.frames += 1;
                        // Asked again if no keyframe came: the media task drops a request that
                        // follows another (a viewer's) too closely.
                        if ms >= ASK_KEYFRAME_AT_MS
                            && self
                                .asked_at
                                .is_none_or(|asked| ms >= asked + ASK_AGAIN_AFTER_MS)
                        {
                            self.asked_at = Some(ms);
                            pushed.want_keyframe = true;
                        }
                        return pushed;
                    }
                }
                // The publisher's clock went back or jumped: a restarted encoder.
                _ => pushed.chunk = self.finish(),
            }
        }
        let at = self.wall_time(frame);
        match vp8_keyframe_size(&frame.data).filter(|_| frame.keyframe) {
            Some(size) => {
                self.start = Some((at, frame.rtp_time));
                self.size = size;
                self.asked_at = None;
                self.samples.push(sample(0, frame));
                self.stats.frames += 1;
            }
            None => {
                self.stats.frames_before_keyframe += 1;
                pushed.want_keyframe = true;
            }
        }
        pushed
    }

    /// Closes the chunk being filled, if any, its length estimated from its frame rate.
    pub fn finish(&mut self) -> Option<Chunk> {
        let last = self.samples.last()?.at_ms;
        let frames = self.samples.len() as u64;
        let interval = if frames > 1 { last / (frames - 1) } else { 33 };
        self.close(last + interval.max(1))
    }

    /// Closes the chunk being filled as `duration_ms` long.
    fn close(&mut self, duration_ms: u64) -> Option<Chunk> {
        let (started, _) = self.start.take()?;
        let samples = std::mem::take(&mut self.samples);
        if samples.is_empty() {
            return None;
        }
        let track = WebmTrack {
            width: self.size.0,
            height: self.size.1,
            duration_ms,
            created_unix_ms: started
                .duration_since(SystemTime::UNIX_EPOCH)
                .ok()
                .and_then(|since| i64::try_from(since.as_millis()).ok()),
        };
        self.stats.chunks += 1;
        Some(Chunk {
            name: format!("{}-{}.webm", chunk_time(started), self.owner),
            body: webm_file(&track, &samples),
        })
    }
}

fn sample(at_ms: u64, frame: &VideoFrame) -> VideoSample {
    VideoSample {
        at_ms,
        keyframe: frame.keyframe,
        data: frame.data.clone(),
    }
}

/// Records one stream until its tap ends (the stream or the meeting's media ended) or `stop`.
async fn record_stream(
    join: Arc<JoinPlane>,
    meeting_id: MeetingId,
    video: RecordableVideo,
    writer: ChunkWriter,
    mut stop: watch::Receiver<bool>,
) -> Result<VideoStats, CaptureError> {
    let stream = StreamId(video.stream_id);
    let Some(mut tap) = join.media.tap_video(&meeting_id, stream, VIDEO_TAP_FRAMES) else {
        return Ok(VideoStats::default());
    };
    let mut chunker = VideoChunker::new(&video.attendee_id);
    loop {
        let frame = tokio::select! {
            frame = tap.frames.recv() => frame,
            _ = stop.wait_for(|stop| *stop) => None,
        };
        let Some(frame) = frame else { break };
        let pushed = chunker.push(&frame);
        if pushed.want_keyframe {
            join.media.request_keyframe(&meeting_id, stream);
        }
        if let Some(chunk) = pushed.chunk {
            writer.put(VIDEO, chunk).await?;
        }
    }
    if let Some(chunk) = chunker.finish() {
        writer.put(VIDEO, chunk).await?;
    }
    chunker.stats.dropped = tap.dropped();
    Ok(chunker.stats)
}

/// One stream being recorded.
struct StreamRecorder {
    stream_id: u32,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<VideoStats, CaptureError>>,
}

impl StreamRecorder {
    async fn stop(self) -> Result<VideoStats, CaptureError> {
        let _ = self.stop.send(true);
        self.task
            .await
            .unwrap_or_else(|_| Ok(VideoStats::default()))
    }
}

/// Records the meeting's cameras and content shares that `selection` includes, each in its
/// own chunks, until `stop`: a stream that starts is picked up within a second, one that stops
/// or changes layer writes its last chunk (a new layer starts new chunks).
pub async fn record_video(
    join: Arc<JoinPlane>,
    meeting_id: MeetingId,
    selection: VideoSelection,
    writer: ChunkWriter,
    mut stop: watch::Receiver<bool>,
) -> Result<VideoStats, CaptureError> {
    let mut recording: HashMap<String, StreamRecorder> = HashMap::new();
    let mut total = VideoStats::default();
    let mut failure = None;
    loop {
        let wanted: HashMap<String, RecordableVideo> = join
            .rooms
            .recordable_video(meeting_id.as_str())
            .await
            .into_iter()
            .filter(|video| selection.includes(video))
            .map(|video| (video.attendee_id.clone(), video))
            .collect();
        let ended: Vec<String> = recording
            .iter()
            .filter(|(owner, recorder)| {
                wanted
                    .get(*owner)
                    .is_none_or(|video| video.stream_id != recorder.stream_id)
                    || recorder.task.is_finished()
            })
            .map(|(owner, _)| owner.clone())
            .collect();
        for owner in ended {
            if let Some(recorder) = recording.remove(&owner) {
                add(&mut total, &mut failure, recorder.stop().await);
            }
        }
        for (owner, video) in wanted {
            if recording.contains_key(&owner) {
                continue;
            }
            let (stop_stream, stopped) = watch::channel(false);
            let task = tokio::spawn(record_stream(
                join.clone(),
                meeting_id.clone(),
                video.clone(),
                writer.clone(),
                stopped,
            ));
            recording.insert(
                owner,
                StreamRecorder {
                    stream_id: video.stream_id,
                    stop: stop_stream,
                    task,
                },
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(PUBLICATIONS_POLL) => {}
            _ = stop.wait_for(|stop| *stop) => break,
        }
    }
    for (_, recorder) in recording.drain() {
        add(&mut total, &mut failure, recorder.stop().await);
    }
    match failure {
        Some(error) => Err(error),
        None => Ok(total),
    }
}

fn add(
    total: &mut VideoStats,
    failure: &mut Option<CaptureError>,
    outcome: Result<VideoStats, CaptureError>,
) {
    match outcome {
        Ok(stats) => {
            total.chunks += stats.chunks;
            total.frames += stats.frames;
            total.frames_before_keyframe += stats.frames_before_keyframe;
            total.dropped += stats.dropped;
        }
        Err(error) => *failure = Some(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VP8 keyframe header of `width`×`height` (RFC 6386 §9.1) and some payload.
    fn keyframe(width: u16, height: u16) -> Arc<[u8]> {
        let mut data = vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a];
        data.extend(width.to_le_bytes());
        data.extend(height.to_le_bytes());
        data.extend([0u8; 20]);
        Arc::from(data)
    }

    fn frame(at: SystemTime, ms: u64, key: Option<(u16, u16)>) -> VideoFrame {
        VideoFrame {
            at: at + Duration::from_millis(ms),
            rtp_time: 1_000_000 + ms * RTP_PER_MS,
            codec: str0m::format::Codec::Vp8,
            keyframe: key.is_some(),
            data: key.map_or_else(|| Arc::from(vec![0x01u8; 30]), |(w, h)| keyframe(w, h)),
        }
    }

    #[test]
    fn chunks_start_on_keyframes_and_last_at_most_five_seconds() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_000_000_123);
        let mut chunker = VideoChunker::new("a1b2");
        let mut chunks = Vec::new();
        let mut asked = Vec::new();
        // Frames before the first keyframe are dropped and a keyframe is asked for.
        let pushed = chunker.push(&frame(start, 0, None));
        assert!(pushed.want_keyframe);
        assert_eq!(chunker.stats.frames_before_keyframe, 1);
        for n in 1..=200u64 {
            let ms = n * 66;
            // The publisher answers the request at 4 s with a keyframe at 4.29 s; none comes
            // for the second chunk, which is cut at 5 s.
            let key = (n == 1 || n == 65).then_some((640, 360));
            let pushed = chunker.push(&frame(start, ms, key));
            if pushed.want_keyframe {
                asked.push(ms);
            }
            chunks.extend(pushed.chunk);
        }
        chunks.extend(chunker.finish());
        let names: Vec<&str> = chunks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "2026-11-30-00-53-20-189-a1b2.webm",
                "2026-11-30-00-53-24-413-a1b2.webm"
            ],
            "the second chunk ends at 5 s without a keyframe; the rest waits for one"
        );
        assert_eq!(asked.first(), Some(&4092), "asked 4 s into the first chunk");
        let first = super::super::webm::read_webm(&chunks[0].body).expect("a WebM chunk");
        assert_eq!((first.width, first.height), (640, 360));
        assert_eq!(
            first.duration_ms,
            4_290 - 66,
            "ends where the next chunk starts"
        );
        assert!(
            first
                .samples
                .first()
                .is_some_and(|s| s.keyframe && s.at_ms == 0)
        );
        let second = super::super::webm::read_webm(&chunks[1].body).expect("a WebM chunk");
        assert_eq!(second.duration_ms, CHUNK_MS);
    }

    #[test]
    fn chunk_names_follow_the_rtp_timeline_not_arrival_jitter() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_000_000);
        let mut chunker = VideoChunker::new("a");
        let mut chunks = Vec::new();
        for n in 0..=100u64 {
            let ms = n * 50;
            let mut f = frame(start, ms, (n % 90 == 0).then_some((640, 360)));
            // Every other frame, the second keyframe among them, arrives 150 ms late.
            if n % 2 == 0 && n > 0 {
                f.at += Duration::from_millis(150);
            }
            chunks.extend(chunker.push(&f).chunk);
        }
        chunks.extend(chunker.finish());
        let names: Vec<&str> = chunks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "2026-11-30-00-53-20-000-a.webm",
                "2026-11-30-00-53-24-500-a.webm"
            ]
        );
        // A stream whose clock jumps far from the wall clock is anchored again.
        let mut late = frame(start, 6_000, Some((640, 360)));
        late.at += Duration::from_secs(30);
        chunker.push(&late);
        let chunk = chunker.finish().expect("a chunk");
        assert_eq!(chunk.name, "2026-11-30-00-53-56-000-a.webm");
    }

    #[test]
    fn a_new_size_starts_a_new_chunk() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_000_000);
        let mut chunker = VideoChunker::new("x#content");
        let mut chunks = Vec::new();
        chunks.extend(chunker.push(&frame(start, 0, Some((1280, 720)))).chunk);
        chunks.extend(chunker.push(&frame(start, 100, None)).chunk);
        chunks.extend(chunker.push(&frame(start, 200, Some((320, 180)))).chunk);
        chunks.extend(chunker.finish());
        assert_eq!(chunks.len(), 2);
        assert!(chunks[1].name.ends_with("-x#content.webm"));
        let second = super::super::webm::read_webm(&chunks[1].body).expect("a WebM chunk");
        assert_eq!((second.width, second.height), (320, 180));
    }

    #[test]
    fn the_selection_follows_the_configuration() {
        let camera = |attendee_id: &str, external: &str, content: bool| RecordableVideo {
            attendee_id: attendee_id.to_string(),
            external_user_id: external.to_string(),
            content,
            stream_id: 3,
        };
        let all = VideoSelection::from_configuration(&serde_json::json!({}));
        assert!(all.includes(&camera("a", "José", false)));
        assert!(all.includes(&camera("a#content", "José", true)));
        let chosen = VideoSelection::from_configuration(&serde_json::json!({
            "ChimeSdkMeetingConfiguration": {
                "ArtifactsConfiguration": {
                    "Audio": {"MuxType": "AudioOnly"},
                    "Video": {"State": "Enabled", "MuxType": "VideoOnly"},
                    "Content": {"State": "Disabled"}
                },
                "SourceConfiguration": {"SelectedVideoStreams": {"ExternalUserIds": ["Zoë"]}}
            }
        }));
        assert!(chosen.includes(&camera("b", "Zoë", false)));
        assert!(!chosen.includes(&camera("a", "José", false)));
        assert!(!chosen.includes(&camera("b#content", "Zoë", true)));
    }
}
