//! A WebM (Matroska/EBML) file with one VP8 video track: how a recording's video chunks are
//! stored.
//!
//! Why WebM: the publishers send VP8, and Chromium's `<video>` does not play VP8 in MP4, while
//! it (and ffmpeg) plays VP8 in WebM; VP8 is kept as sent, never re-encoded. Each chunk is a
//! whole file written at once, so every size is known: the Segment and its Clusters carry real
//! sizes (never EBML's "unknown size" of live streams), a SeekHead at the start points at the
//! Info, the Tracks and the Cues at the end, and there is one CuePoint per Cluster that starts
//! with a keyframe, so that players can seek. A Cluster starts at every keyframe, and whenever a
//! block's 16-bit relative timecode would grow past [`MAX_CLUSTER_SPAN_MS`].
//!
//! The reader reads back what the writer wrote (concatenation joins chunks by reading them and
//! writing one longer file), from a bucket that anyone with write access could have altered: it
//! is bounded (sizes checked against their parent, a cap on the elements it visits, no
//! recursion on what the file says) and answers anything else with an error, never a panic.

use std::cell::Cell;
use std::sync::Arc;

/// Nanoseconds per tick of the timecodes written: 1 ms.
const TIMECODE_SCALE: u64 = 1_000_000;
/// The longest stretch one Cluster covers, in ms: blocks' relative timecodes are signed 16 bits.
pub const MAX_CLUSTER_SPAN_MS: u64 = 30_000;
/// The track number of the one video track (written as the EBML varint 0x81 in blocks).
const VIDEO_TRACK: u64 = 1;
/// The track's UID: any non-zero value, there being one track.
const VIDEO_TRACK_UID: u64 = 1;
/// Matroska's TrackType for video.
const TRACK_TYPE_VIDEO: u64 = 1;
const CODEC_VP8: &str = "V_VP8";
const APP_NAME: &str = "carillon";
/// DocTypeVersion 4 (what current muxers write), DocTypeReadVersion 2 (SimpleBlock).
const DOC_TYPE_VERSION: u64 = 4;
const DOC_TYPE_READ_VERSION: u64 = 2;
/// SimpleBlock flag: the frame is a keyframe.
const FLAG_KEYFRAME: u8 = 0x80;
/// Block flags: the lacing bits (several frames in one block), never written here.
const FLAG_LACING: u8 = 0x06;
/// Milliseconds from 1970-01-01 to 2001-01-01 (Matroska's DateUTC epoch).
const MATROSKA_EPOCH_UNIX_MS: i64 = 978_307_200_000;
/// The most elements the reader visits in one file (about 4 M; a day of 30 fps video is 2.6 M
/// frames): a bound on the frames, and so on the memory, that a hostile file of tiny elements
/// makes it allocate.
const MAX_ELEMENTS: u32 = 1 << 22;
/// The VP8 keyframe start code (RFC 6386 §9.1).
const VP8_START_CODE: [u8; 3] = [0x9d, 0x01, 0x2a];

/// The EBML and Matroska element ids used here, with their marker bits, as written.
mod id {
    pub const EBML: u32 = 0x1A45_DFA3;
    pub const EBML_VERSION: u32 = 0x4286;
    pub const EBML_READ_VERSION: u32 = 0x42F7;
    pub const EBML_MAX_ID_LENGTH: u32 = 0x42F2;
    pub const EBML_MAX_SIZE_LENGTH: u32 = 0x42F3;
    pub const DOC_TYPE: u32 = 0x4282;
    pub const DOC_TYPE_VERSION: u32 = 0x4287;
    pub const DOC_TYPE_READ_VERSION: u32 = 0x4285;
    pub const SEGMENT: u32 = 0x1853_8067;
    pub const SEEK_HEAD: u32 = 0x114D_9B74;
    pub const SEEK: u32 = 0x4DBB;
    pub const SEEK_ID: u32 = 0x53AB;
    pub const SEEK_POSITION: u32 = 0x53AC;
    pub const INFO: u32 = 0x1549_A966;
    pub const TIMECODE_SCALE: u32 = 0x2A_D7B1;
    pub const DURATION: u32 = 0x4489;
    pub const DATE_UTC: u32 = 0x4461;
    pub const MUXING_APP: u32 = 0x4D80;
    pub const WRITING_APP: u32 = 0x5741;
    pub const TRACKS: u32 = 0x1654_AE6B;
    pub const TRACK_ENTRY: u32 = 0xAE;
    pub const TRACK_NUMBER: u32 = 0xD7;
    pub const TRACK_UID: u32 = 0x73C5;
    pub const TRACK_TYPE: u32 = 0x83;
    pub const FLAG_LACING: u32 = 0x9C;
    pub const CODEC_ID: u32 = 0x86;
    pub const VIDEO: u32 = 0xE0;
    pub const PIXEL_WIDTH: u32 = 0xB0;
    pub const PIXEL_HEIGHT: u32 = 0xBA;
    pub const CLUSTER: u32 = 0x1F43_B675;
    pub const TIMECODE: u32 = 0xE7;
    pub const SIMPLE_BLOCK: u32 = 0xA3;
    pub const BLOCK_GROUP: u32 = 0xA0;
    pub const BLOCK: u32 = 0xA1;
    pub const REFERENCE_BLOCK: u32 = 0xFB;
    pub const CUES: u32 = 0x1C53_BB6B;
    pub const CUE_POINT: u32 = 0xBB;
    pub const CUE_TIME: u32 = 0xB3;
    pub const CUE_TRACK_POSITIONS: u32 = 0xB7;
    pub const CUE_TRACK: u32 = 0xF7;
    pub const CUE_CLUSTER_POSITION: u32 = 0xF1;
}

/// One encoded VP8 frame as the publisher sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoSample {
    /// When it plays, ms from the file's start.
    pub at_ms: u64,
    pub keyframe: bool,
    pub data: Arc<[u8]>,
}

/// The track's header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebmTrack {
    pub width: u16,
    pub height: u16,
    /// The wall-clock length of the file, written as the Segment's Duration.
    pub duration_ms: u64,
    /// When the file's first frame was taken, ms since the Unix epoch, written as DateUTC.
    pub created_unix_ms: Option<i64>,
}

/// The whole file: the EBML header, then one Segment of SeekHead, Info, Tracks, the Clusters
/// and the Cues. Samples out of order, or at the same time, are written at the latest time so
/// far (timecodes never go back).
pub fn webm_file(track: &WebmTrack, samples: &[VideoSample]) -> Vec<u8> {
    let clusters = clusters(samples);
    let info = info(track);
    let tracks = tracks(track);
    // SeekPositions are written on 8 bytes, so the SeekHead's length does not depend on them:
    // measure it with zeros, then write it with the real positions.
    let with_cues = clusters.iter().any(|c| c.keyframe);
    let seek_len = seek_head(0, 0, with_cues.then_some(0)).len();
    let info_at = seek_len;
    let tracks_at = info_at + info.len();
    let mut cluster_at = tracks_at + tracks.len();
    let mut cues = Vec::new();
    for cluster in &clusters {
        if cluster.keyframe {
            let mut positions = Vec::new();
            put_uint(&mut positions, id::CUE_TRACK, VIDEO_TRACK);
            put_uint(&mut positions, id::CUE_CLUSTER_POSITION, cluster_at as u64);
            let mut point = Vec::new();
            put_uint(&mut point, id::CUE_TIME, cluster.timecode);
            put_element(&mut point, id::CUE_TRACK_POSITIONS, &positions);
            put_element(&mut cues, id::CUE_POINT, &point);
        }
        cluster_at += cluster.bytes.len();
    }
    let cues_at = cluster_at;
    let seek = seek_head(
        info_at as u64,
        tracks_at as u64,
        with_cues.then_some(cues_at as u64),
    );

    let mut segment = Vec::with_capacity(cues_at + cues.len() + 64);
    segment.extend_from_slice(&seek);
    segment.extend_from_slice(&info);
    segment.extend_from_slice(&tracks);
    for cluster in &clusters {
        segment.extend_from_slice(&cluster.bytes);
    }
    if with_cues {
        put_element(&mut segment, id::CUES, &cues);
    }

    let mut file = ebml_header();
    file.reserve(segment.len() + 12);
    put_element(&mut file, id::SEGMENT, &segment);
    file
}

fn ebml_header() -> Vec<u8> {
    let mut body = Vec::new();
    put_uint(&mut body, id::EBML_VERSION, 1);
    put_uint(&mut body, id::EBML_READ_VERSION, 1);
    put_uint(&mut body, id::EBML_MAX_ID_LENGTH, 4);
    put_uint(&mut body, id::EBML_MAX_SIZE_LENGTH, 8);
    put_element(&mut body, id::DOC_TYPE, b"webm");
    put_uint(&mut body, id::DOC_TYPE_VERSION, DOC_TYPE_VERSION);
    put_uint(&mut body, id::DOC_TYPE_READ_VERSION, DOC_TYPE_READ_VERSION);
    let mut out = Vec::new();
    put_element(&mut out, id::EBML, &body);
    out
}

/// The SeekHead: where Info, Tracks and (when there are any) Cues start, from the start of the
/// Segment's body.
fn seek_head(info_at: u64, tracks_at: u64, cues_at: Option<u64>) -> Vec<u8> {
    let mut body = Vec::new();
    let entries = [
        Some((id::INFO, info_at)),
        Some((id::TRACKS, tracks_at)),
        cues_at.map(|at| (id::CUES, at)),
    ];
    for (target, at) in entries.into_iter().flatten() {
        let mut seek = Vec::new();
        let mut target_id = Vec::new();
        put_id(&mut target_id, target);
        put_element(&mut seek, id::SEEK_ID, &target_id);
        put_element(&mut seek, id::SEEK_POSITION, &at.to_be_bytes());
        put_element(&mut body, id::SEEK, &seek);
    }
    let mut out = Vec::new();
    put_element(&mut out, id::SEEK_HEAD, &body);
    out
}

fn info(track: &WebmTrack) -> Vec<u8> {
    let mut body = Vec::new();
    put_uint(&mut body, id::TIMECODE_SCALE, TIMECODE_SCALE);
    // Milliseconds as a double: exact for any length a recording has.
    put_element(
        &mut body,
        id::DURATION,
        &(track.duration_ms as f64).to_be_bytes(),
    );
    let date = track.created_unix_ms.and_then(|ms| {
        ms.checked_sub(MATROSKA_EPOCH_UNIX_MS)?
            .checked_mul(1_000_000)
    });
    if let Some(nanos) = date {
        put_element(&mut body, id::DATE_UTC, &nanos.to_be_bytes());
    }
    put_element(&mut body, id::MUXING_APP, APP_NAME.as_bytes());
    put_element(&mut body, id::WRITING_APP, APP_NAME.as_bytes());
    let mut out = Vec::new();
    put_element(&mut out, id::INFO, &body);
    out
}

fn tracks(track: &WebmTrack) -> Vec<u8> {
    let mut video = Vec::new();
    put_uint(&mut video, id::PIXEL_WIDTH, u64::from(track.width));
    put_uint(&mut video, id::PIXEL_HEIGHT, u64::from(track.height));
    let mut entry = Vec::new();
    put_uint(&mut entry, id::TRACK_NUMBER, VIDEO_TRACK);
    put_uint(&mut entry, id::TRACK_UID, VIDEO_TRACK_UID);
    put_uint(&mut entry, id::TRACK_TYPE, TRACK_TYPE_VIDEO);
    put_uint(&mut entry, id::FLAG_LACING, 0);
    put_element(&mut entry, id::CODEC_ID, CODEC_VP8.as_bytes());
    put_element(&mut entry, id::VIDEO, &video);
    let mut body = Vec::new();
    put_element(&mut body, id::TRACK_ENTRY, &entry);
    let mut out = Vec::new();
    put_element(&mut out, id::TRACKS, &body);
    out
}

/// One written Cluster: its timecode, whether its first block is a keyframe, its bytes.
struct ClusterOut {
    timecode: u64,
    keyframe: bool,
    bytes: Vec<u8>,
}

/// The samples in Clusters: a new one at every keyframe and when the span would pass
/// [`MAX_CLUSTER_SPAN_MS`].
fn clusters(samples: &[VideoSample]) -> Vec<ClusterOut> {
    // (timecode, first block is a keyframe, body)
    let mut open: Vec<(u64, bool, Vec<u8>)> = Vec::new();
    let mut last_at = 0u64;
    for sample in samples {
        let at = sample.at_ms.max(last_at);
        last_at = at;
        let continues = match open.last() {
            Some((timecode, _, _)) if !sample.keyframe => at
                .checked_sub(*timecode)
                .is_some_and(|span| span <= MAX_CLUSTER_SPAN_MS),
            _ => false,
        };
        if !continues {
            let mut body = Vec::new();
            put_uint(&mut body, id::TIMECODE, at);
            open.push((at, sample.keyframe, body));
        }
        let Some((timecode, _, body)) = open.last_mut() else {
            continue;
        };
        let relative = i16::try_from(at.saturating_sub(*timecode)).unwrap_or(i16::MAX);
        let mut block = Vec::with_capacity(sample.data.len() + 4);
        block.push(0x80 | VIDEO_TRACK as u8); // the track number as a 1-byte EBML varint
        block.extend_from_slice(&relative.to_be_bytes());
        block.push(if sample.keyframe { FLAG_KEYFRAME } else { 0 });
        block.extend_from_slice(&sample.data);
        put_element(body, id::SIMPLE_BLOCK, &block);
    }
    open.into_iter()
        .map(|(timecode, keyframe, body)| {
            let mut bytes = Vec::with_capacity(body.len() + 12);
            put_element(&mut bytes, id::CLUSTER, &body);
            ClusterOut {
                timecode,
                keyframe,
                bytes,
            }
        })
        .collect()
}

/// An element id, as its bytes (the marker bits are part of the id).
fn put_id(out: &mut Vec<u8>, element: u32) {
    let bytes = element.to_be_bytes();
    let skip = (element.leading_zeros() / 8).min(3) as usize;
    out.extend_from_slice(bytes.get(skip..).unwrap_or(&bytes));
}

/// An element size as the shortest EBML varint (a value of all ones means "unknown", so it
/// takes the next length).
fn put_size(out: &mut Vec<u8>, size: u64) {
    let size = size.min((1 << 56) - 2);
    let len = (1..=8u32)
        .find(|n| size < (1u64 << (7 * n)) - 1)
        .unwrap_or(8);
    let marked = size | (1u64 << (7 * len));
    let bytes = marked.to_be_bytes();
    out.extend_from_slice(bytes.get(8 - len as usize..).unwrap_or(&bytes));
}

fn put_element(out: &mut Vec<u8>, element: u32, body: &[u8]) {
    put_id(out, element);
    put_size(out, body.len() as u64);
    out.extend_from_slice(body);
}

/// An unsigned integer element on as few bytes as hold it.
fn put_uint(out: &mut Vec<u8>, element: u32, value: u64) {
    let bytes = value.to_be_bytes();
    let skip = (value.leading_zeros() / 8).min(7) as usize;
    put_element(out, element, bytes.get(skip..).unwrap_or(&bytes));
}

/// Why a WebM file could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebmError {
    #[error("not an EBML file")]
    NotEbml,
    #[error("an EBML file, but not WebM or Matroska")]
    NotWebm,
    #[error("element past the end of the file or of its parent")]
    PastEnd,
    #[error("element of unknown size (a live stream's, not a whole file's)")]
    UnknownSize,
    #[error("malformed EBML variable-length integer")]
    BadVarint,
    #[error("malformed {0} value")]
    BadValue(&'static str),
    #[error("more than {MAX_ELEMENTS} elements in the file")]
    TooManyElements,
    #[error("no {0} where a WebM file written by Carillon has one")]
    Missing(&'static str),
    #[error("no VP8 video track")]
    NoVideoTrack,
    #[error("frame size {0}x{1} out of range")]
    FrameSize(u64, u64),
    #[error("block shorter than its header")]
    ShortBlock,
    #[error("laced block (Carillon writes one frame per block)")]
    Laced,
    #[error("block time out of range")]
    TimeOutOfRange,
}

/// What [`read_webm`] finds in a file [`webm_file`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebmContents {
    pub width: u16,
    pub height: u16,
    /// The Segment's Duration, or the last frame's time if it has none.
    pub duration_ms: u64,
    /// The video track's frames in file order, with their times from the file's start.
    pub samples: Vec<VideoSample>,
}

/// Reads back the VP8 frames of a WebM file: the first VP8 video track of its first Segment.
/// Unknown elements (Void, Cues, Tags, other tracks' blocks, …) are skipped; anything malformed
/// is an error, never a panic.
pub fn read_webm(bytes: &[u8]) -> Result<WebmContents, WebmError> {
    read_within(bytes, &Budget(Cell::new(MAX_ELEMENTS)))
}

/// [`read_webm`], visiting at most `budget` elements.
fn read_within(bytes: &[u8], budget: &Budget) -> Result<WebmContents, WebmError> {
    if bytes.get(..4) != Some(&id::EBML.to_be_bytes()[..]) {
        return Err(WebmError::NotEbml);
    }
    let (_, header, mut rest) = element(bytes)?;
    // DocType defaults to "matroska" when absent.
    let mut doc_type: &[u8] = b"matroska";
    for child in children(header, budget) {
        let (element_id, body) = child?;
        if element_id == id::DOC_TYPE {
            doc_type = body;
        }
    }
    if doc_type != b"webm" && doc_type != b"matroska" {
        return Err(WebmError::NotWebm);
    }
    let segment = loop {
        if rest.is_empty() {
            return Err(WebmError::Missing("Segment"));
        }
        budget.take()?;
        let (element_id, body, after) = element(rest)?;
        if element_id == id::SEGMENT {
            break body;
        }
        rest = after;
    };

    let mut info = None;
    let mut tracks = None;
    let mut clusters = Vec::new();
    for child in children(segment, budget) {
        let (element_id, body) = child?;
        match element_id {
            id::INFO if info.is_none() => info = Some(body),
            id::TRACKS if tracks.is_none() => tracks = Some(body),
            id::CLUSTER => clusters.push(body),
            _ => {}
        }
    }
    let (scale, duration) = read_info(info.ok_or(WebmError::Missing("Info"))?, budget)?;
    let video = read_tracks(tracks.ok_or(WebmError::Missing("Tracks"))?, budget)?;
    let mut samples = Vec::new();
    for cluster in clusters {
        read_cluster(cluster, video.number, scale, budget, &mut samples)?;
    }
    let duration_ms = match duration {
        Some(ticks) => ticks_to_ms_f64(ticks, scale)?,
        None => samples.last().map_or(0, |s| s.at_ms),
    };
    Ok(WebmContents {
        width: video.width,
        height: video.height,
        duration_ms,
        samples,
    })
}

/// The elements the reader may still visit, shared by the walks of nested elements.
struct Budget(Cell<u32>);

impl Budget {
    fn take(&self) -> Result<(), WebmError> {
        let left = self
            .0
            .get()
            .checked_sub(1)
            .ok_or(WebmError::TooManyElements)?;
        self.0.set(left);
        Ok(())
    }
}

/// An EBML varint: its value (marker bit removed) and its length in bytes.
fn varint(data: &[u8]) -> Result<(u64, usize), WebmError> {
    let first = *data.first().ok_or(WebmError::PastEnd)?;
    if first == 0 {
        return Err(WebmError::BadVarint);
    }
    let len = first.leading_zeros() as usize + 1;
    let bytes = data.get(..len).ok_or(WebmError::PastEnd)?;
    let value = bytes
        .iter()
        .skip(1)
        .fold(u64::from(first) & (0xFF >> len), |acc, b| {
            acc << 8 | u64::from(*b)
        });
    Ok((value, len))
}

/// The element at the start of `data`: its id, its body and what follows it.
fn element(data: &[u8]) -> Result<(u32, &[u8], &[u8]), WebmError> {
    let first = *data.first().ok_or(WebmError::PastEnd)?;
    let id_len = first.leading_zeros() as usize + 1;
    if id_len > 4 {
        return Err(WebmError::BadVarint);
    }
    let id_bytes = data.get(..id_len).ok_or(WebmError::PastEnd)?;
    let element_id = id_bytes
        .iter()
        .fold(0u32, |acc, b| acc << 8 | u32::from(*b));
    let rest = data.get(id_len..).ok_or(WebmError::PastEnd)?;
    let (size, size_len) = varint(rest)?;
    let unknown = size_len
        .checked_mul(7)
        .and_then(|bits| 1u64.checked_shl(u32::try_from(bits).ok()?))
        .map(|limit| limit - 1);
    if Some(size) == unknown {
        return Err(WebmError::UnknownSize);
    }
    let rest = rest.get(size_len..).ok_or(WebmError::PastEnd)?;
    let size = usize::try_from(size).map_err(|_| WebmError::PastEnd)?;
    let body = rest.get(..size).ok_or(WebmError::PastEnd)?;
    let after = rest.get(size..).ok_or(WebmError::PastEnd)?;
    Ok((element_id, body, after))
}

/// The elements that make up `data` (a parent's body), each as (id, body), each taken from
/// the budget; after an error, nothing more.
fn children<'a, 'b>(data: &'a [u8], budget: &'b Budget) -> Children<'a, 'b> {
    Children { data, budget }
}

struct Children<'a, 'b> {
    data: &'a [u8],
    budget: &'b Budget,
}

impl<'a> Iterator for Children<'a, '_> {
    type Item = Result<(u32, &'a [u8]), WebmError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.data.is_empty() {
            return None;
        }
        let next = self.budget.take().and_then(|()| element(self.data)).map(
            |(element_id, body, after)| {
                self.data = after;
                (element_id, body)
            },
        );
        if next.is_err() {
            self.data = &[];
        }
        Some(next)
    }
}

fn uint(body: &[u8], name: &'static str) -> Result<u64, WebmError> {
    if body.len() > 8 {
        return Err(WebmError::BadValue(name));
    }
    Ok(body.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b)))
}

fn float(body: &[u8], name: &'static str) -> Result<f64, WebmError> {
    let value = match body.len() {
        0 => 0.0,
        4 => f64::from(f32::from_be_bytes(
            body.try_into().map_err(|_| WebmError::BadValue(name))?,
        )),
        8 => f64::from_be_bytes(body.try_into().map_err(|_| WebmError::BadValue(name))?),
        _ => return Err(WebmError::BadValue(name)),
    };
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(WebmError::BadValue(name))
    }
}

/// The Info's TimecodeScale (ns per tick) and Duration (in ticks), if any.
fn read_info(info: &[u8], budget: &Budget) -> Result<(u64, Option<f64>), WebmError> {
    let mut scale = TIMECODE_SCALE;
    let mut duration = None;
    for child in children(info, budget) {
        let (element_id, body) = child?;
        match element_id {
            id::TIMECODE_SCALE => scale = uint(body, "TimecodeScale")?,
            id::DURATION => duration = Some(float(body, "Duration")?),
            _ => {}
        }
    }
    if scale == 0 {
        return Err(WebmError::BadValue("TimecodeScale"));
    }
    Ok((scale, duration))
}

/// The video track a file's frames are read from.
struct VideoTrack {
    number: u64,
    width: u16,
    height: u16,
}

/// The first VP8 video track.
fn read_tracks(tracks: &[u8], budget: &Budget) -> Result<VideoTrack, WebmError> {
    for child in children(tracks, budget) {
        let (element_id, entry) = child?;
        if element_id != id::TRACK_ENTRY {
            continue;
        }
        let mut number = None;
        let mut kind = None;
        let mut codec: &[u8] = b"";
        let mut size = (None, None);
        for child in children(entry, budget) {
            let (field, body) = child?;
            match field {
                id::TRACK_NUMBER => number = Some(uint(body, "TrackNumber")?),
                id::TRACK_TYPE => kind = Some(uint(body, "TrackType")?),
                id::CODEC_ID => codec = body,
                id::VIDEO => {
                    for child in children(body, budget) {
                        let (video_field, value) = child?;
                        match video_field {
                            id::PIXEL_WIDTH => size.0 = Some(uint(value, "PixelWidth")?),
                            id::PIXEL_HEIGHT => size.1 = Some(uint(value, "PixelHeight")?),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if kind != Some(TRACK_TYPE_VIDEO) || codec != CODEC_VP8.as_bytes() {
            continue;
        }
        let number = number.ok_or(WebmError::Missing("TrackNumber"))?;
        let width = size.0.ok_or(WebmError::Missing("PixelWidth"))?;
        let height = size.1.ok_or(WebmError::Missing("PixelHeight"))?;
        let (Ok(w), Ok(h)) = (u16::try_from(width), u16::try_from(height)) else {
            return Err(WebmError::FrameSize(width, height));
        };
        return Ok(VideoTrack {
            number,
            width: w,
            height: h,
        });
    }
    Err(WebmError::NoVideoTrack)
}

/// The video track's frames in one Cluster, appended to `samples`.
fn read_cluster(
    cluster: &[u8],
    track: u64,
    scale: u64,
    budget: &Budget,
    samples: &mut Vec<VideoSample>,
) -> Result<(), WebmError> {
    // The Timecode should come first, but need not: find it, then read the blocks. (The walk
    // that finds it is not charged: it stops at the first Timecode, and the blocks' walk that
    // follows goes over the same elements at least.)
    let mut rest = cluster;
    let timecode = loop {
        if rest.is_empty() {
            return Err(WebmError::Missing("Cluster Timecode"));
        }
        let (element_id, body, after) = element(rest)?;
        if element_id == id::TIMECODE {
            break uint(body, "Cluster Timecode")?;
        }
        rest = after;
    };
    for child in children(cluster, budget) {
        let (element_id, body) = child?;
        let (block, keyframe) = match element_id {
            id::SIMPLE_BLOCK => {
                let block = parse_block(body)?;
                let keyframe = block.flags & FLAG_KEYFRAME != 0;
                (block, keyframe)
            }
            id::BLOCK_GROUP => {
                let mut block = None;
                let mut referenced = false;
                for child in children(body, budget) {
                    let (field, value) = child?;
                    match field {
                        id::BLOCK if block.is_none() => block = Some(parse_block(value)?),
                        id::REFERENCE_BLOCK => referenced = true,
                        _ => {}
                    }
                }
                // A Block without a ReferenceBlock depends on no other frame: a keyframe.
                (block.ok_or(WebmError::Missing("Block"))?, !referenced)
            }
            _ => continue,
        };
        if block.track != track {
            continue;
        }
        let ticks = i128::from(timecode) + i128::from(block.relative);
        let at_ms = ticks_to_ms(ticks.max(0), scale)?;
        samples.push(VideoSample {
            at_ms,
            keyframe,
            data: Arc::from(block.frame),
        });
    }
    Ok(())
}

/// A Block's or SimpleBlock's header and frame.
struct Block<'a> {
    track: u64,
    relative: i16,
    flags: u8,
    frame: &'a [u8],
}

fn parse_block(body: &[u8]) -> Result<Block<'_>, WebmError> {
    let (track, len) = varint(body).map_err(|_| WebmError::ShortBlock)?;
    let [hi, lo, flags]: [u8; 3] = body
        .get(len..len + 3)
        .and_then(|header| header.try_into().ok())
        .ok_or(WebmError::ShortBlock)?;
    if flags & FLAG_LACING != 0 {
        return Err(WebmError::Laced);
    }
    Ok(Block {
        track,
        relative: i16::from_be_bytes([hi, lo]),
        flags,
        frame: body.get(len + 3..).ok_or(WebmError::ShortBlock)?,
    })
}

/// Ticks of `scale` ns as whole ms.
fn ticks_to_ms(ticks: i128, scale: u64) -> Result<u64, WebmError> {
    let ns = ticks
        .checked_mul(i128::from(scale))
        .ok_or(WebmError::TimeOutOfRange)?;
    u64::try_from(ns / i128::from(TIMECODE_SCALE)).map_err(|_| WebmError::TimeOutOfRange)
}

/// A Duration (a float number of ticks) as whole ms, rounded.
fn ticks_to_ms_f64(ticks: f64, scale: u64) -> Result<u64, WebmError> {
    let ms = (ticks * scale as f64 / TIMECODE_SCALE as f64).round();
    if ms.is_finite() && ms >= 0.0 && ms < u64::MAX as f64 {
        Ok(ms as u64)
    } else {
        Err(WebmError::BadValue("Duration"))
    }
}

/// The frame size a VP8 keyframe carries in its uncompressed header (RFC 6386 §9.1: a 3-byte
/// frame tag whose lowest bit is 0 for a keyframe, the start code 9d 01 2a, then the width and
/// the height, each 14 bits with a 2-bit scale above), or None for an interframe or a frame
/// too short to say.
pub fn vp8_keyframe_size(frame: &[u8]) -> Option<(u16, u16)> {
    let tag = *frame.first()?;
    if tag & 1 != 0 || frame.get(3..6)? != VP8_START_CODE {
        return None;
    }
    let dimension = |at: usize| -> Option<u16> {
        let bytes: [u8; 2] = frame.get(at..at + 2)?.try_into().ok()?;
        Some(u16::from_le_bytes(bytes) & 0x3fff)
    };
    Some((dimension(6)?, dimension(8)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VOID: u32 = 0xEC;
    const TAGS: u32 = 0x1254_C367;

    /// A 10-byte VP8 keyframe header for `width`×`height`, then `rest`.
    fn keyframe(width: u16, height: u16, rest: &[u8]) -> Vec<u8> {
        // Frame tag: key frame (bit 0 = 0), version 0, shown (bit 4), first partition size 0.
        let mut frame = vec![0x10, 0x00, 0x00];
        frame.extend_from_slice(&VP8_START_CODE);
        frame.extend_from_slice(&width.to_le_bytes());
        frame.extend_from_slice(&height.to_le_bytes());
        frame.extend_from_slice(rest);
        frame
    }

    /// Deterministic bytes that look random enough.
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (state >> 56) as u8
            })
            .collect()
    }

    /// 5 s of 15 fps video at 640×360: keyframes at 0 and 2 s.
    fn five_seconds() -> Vec<VideoSample> {
        (0..75u64)
            .map(|i| {
                let key = i == 0 || i == 30;
                let payload = noise(i, 40 + (i as usize * 37) % 1500);
                VideoSample {
                    at_ms: i * 1000 / 15,
                    keyframe: key,
                    data: if key {
                        keyframe(640, 360, &payload).into()
                    } else {
                        payload.into()
                    },
                }
            })
            .collect()
    }

    fn track(duration_ms: u64) -> WebmTrack {
        WebmTrack {
            width: 640,
            height: 360,
            duration_ms,
            created_unix_ms: Some(1_800_000_000_123),
        }
    }

    /// The ids of a file's Segment's children, and the Segment's body.
    fn segment_children(file: &[u8]) -> Vec<(u32, Vec<u8>)> {
        let (_, _, rest) = element(file).expect("EBML header");
        let (segment_id, segment, after) = element(rest).expect("Segment");
        assert_eq!(segment_id, id::SEGMENT);
        assert!(after.is_empty(), "the Segment ends the file");
        children(segment, &unlimited())
            .map(|child| child.expect("Segment child"))
            .map(|(i, b)| (i, b.to_vec()))
            .collect()
    }

    #[test]
    fn five_seconds_round_trip_in_two_clusters() {
        let samples = five_seconds();
        let file = webm_file(&track(5000), &samples);
        let read = read_webm(&file).expect("reads back");
        assert_eq!((read.width, read.height), (640, 360));
        assert_eq!(read.duration_ms, 5000);
        assert_eq!(read.samples, samples, "times, flags and bytes as written");

        let (header_id, header, _) = element(&file).expect("EBML header");
        assert_eq!(header_id, id::EBML);
        let header = all(header);
        assert!(header.contains(&(id::DOC_TYPE, &b"webm"[..])));
        assert!(header.contains(&(id::DOC_TYPE_VERSION, &[4u8][..])));
        assert!(header.contains(&(id::DOC_TYPE_READ_VERSION, &[2u8][..])));

        let top = segment_children(&file);
        let ids: Vec<u32> = top.iter().map(|(i, _)| *i).collect();
        assert_eq!(
            ids,
            [
                id::SEEK_HEAD,
                id::INFO,
                id::TRACKS,
                id::CLUSTER,
                id::CLUSTER,
                id::CUES
            ]
        );
        // Every SeekHead entry and CuePoint points at the element it names.
        let offsets: Vec<(u32, usize)> = top
            .iter()
            .scan(0usize, |at, (i, body)| {
                let here = *at;
                let mut whole = Vec::new();
                put_element(&mut whole, *i, body);
                *at += whole.len();
                Some((*i, here))
            })
            .collect();
        for (_, seek) in all(&top[0].1) {
            let fields = all(seek);
            let target = fields[0].1.iter().fold(0u32, |a, b| a << 8 | u32::from(*b));
            let at = uint(fields[1].1, "SeekPosition").expect("position") as usize;
            assert!(offsets.contains(&(target, at)), "{target:x} at {at}");
        }
        let cues = all(&top[5].1);
        assert_eq!(cues.len(), 2, "one CuePoint per cluster");
        for ((_, point), (time, cluster)) in cues.iter().zip([(0, 3), (2000, 4)]) {
            let fields = all(point);
            assert_eq!(fields[0], (id::CUE_TIME, &uint_bytes(time)[..]));
            let positions = all(fields[1].1);
            let at = uint(positions[1].1, "CueClusterPosition").expect("position") as usize;
            assert_eq!(offsets[cluster], (id::CLUSTER, at));
        }
    }

    fn unlimited() -> Budget {
        Budget(Cell::new(u32::MAX))
    }

    /// The children of an element's body, which must all be well-formed.
    fn all(body: &[u8]) -> Vec<(u32, &[u8])> {
        children(body, &unlimited())
            .map(|child| child.expect("a well-formed element"))
            .collect()
    }

    fn uint_bytes(value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        put_uint(&mut out, id::TIMECODE, value);
        out[2..].to_vec()
    }

    #[test]
    fn long_gaps_start_new_clusters_and_times_never_go_back() {
        let sample = |at_ms, keyframe| VideoSample {
            at_ms,
            keyframe,
            data: noise(at_ms, 20).into(),
        };
        let samples = vec![
            sample(1_000, true),
            sample(31_000, false), // exactly the longest span: same cluster
            sample(31_001, false), // past it: a new cluster
            sample(100_000, false),
            sample(90_000, false), // out of order: written at 100 000
            sample(100_000, false),
            sample(100_000, true), // same time, keyframe: a new cluster
        ];
        let file = webm_file(&track(100_000), &samples);
        let clusters = segment_children(&file)
            .iter()
            .filter(|(i, _)| *i == id::CLUSTER)
            .count();
        assert_eq!(clusters, 4);
        let read = read_webm(&file).expect("reads back");
        let times: Vec<(u64, bool)> = read.samples.iter().map(|s| (s.at_ms, s.keyframe)).collect();
        assert_eq!(
            times,
            [
                (1_000, true),
                (31_000, false),
                (31_001, false),
                (100_000, false),
                (100_000, false),
                (100_000, false),
                (100_000, true)
            ]
        );
        assert_eq!(read.samples[4].data, samples[4].data);
    }

    #[test]
    fn an_empty_file_has_no_cues_and_reads_back_empty() {
        let file = webm_file(&track(0), &[]);
        let ids: Vec<u32> = segment_children(&file).iter().map(|(i, _)| *i).collect();
        assert_eq!(ids, [id::SEEK_HEAD, id::INFO, id::TRACKS]);
        let read = read_webm(&file).expect("reads back");
        assert!(read.samples.is_empty());
        assert_eq!(read.duration_ms, 0);
    }

    /// A file as another muxer might write it: Void, Tags, a second track, BlockGroups.
    #[test]
    fn block_groups_and_unknown_elements_are_read() {
        let mut info = Vec::new();
        put_uint(&mut info, id::TIMECODE_SCALE, TIMECODE_SCALE);
        let mut audio = Vec::new();
        put_uint(&mut audio, id::TRACK_NUMBER, 2);
        put_uint(&mut audio, id::TRACK_TYPE, 2);
        put_element(&mut audio, id::CODEC_ID, b"A_OPUS");
        let mut video = Vec::new();
        put_uint(&mut video, id::PIXEL_WIDTH, 320);
        put_uint(&mut video, id::PIXEL_HEIGHT, 240);
        let mut entry = Vec::new();
        put_uint(&mut entry, id::TRACK_NUMBER, 3);
        put_uint(&mut entry, id::TRACK_TYPE, 1);
        put_element(&mut entry, id::CODEC_ID, b"V_VP8");
        put_element(&mut entry, VOID, &[0; 3]);
        put_element(&mut entry, id::VIDEO, &video);
        let mut tracks = Vec::new();
        put_element(&mut tracks, id::TRACK_ENTRY, &audio);
        put_element(&mut tracks, id::TRACK_ENTRY, &entry);
        let block = |track: u8, relative: i16, flags: u8, data: &[u8]| {
            let mut b = vec![0x80 | track];
            b.extend_from_slice(&relative.to_be_bytes());
            b.push(flags);
            b.extend_from_slice(data);
            b
        };
        let mut key_group = Vec::new();
        put_element(&mut key_group, id::BLOCK, &block(3, 0, 0, b"key"));
        let mut delta_group = Vec::new();
        put_element(&mut delta_group, id::BLOCK, &block(3, 40, 0, b"delta"));
        put_uint(&mut delta_group, id::REFERENCE_BLOCK, 0xFF); // -40 as a signed byte
        let mut cluster = Vec::new();
        put_uint(&mut cluster, id::TIMECODE, 500);
        put_element(&mut cluster, id::BLOCK_GROUP, &key_group);
        put_element(&mut cluster, id::SIMPLE_BLOCK, &block(2, 10, 0x80, b"opus"));
        put_element(&mut cluster, VOID, &[]);
        put_element(&mut cluster, id::BLOCK_GROUP, &delta_group);
        put_element(
            &mut cluster,
            id::SIMPLE_BLOCK,
            &block(3, -20, 0x80, b"early"),
        );
        let mut segment = Vec::new();
        put_element(&mut segment, VOID, &[0; 10]);
        put_element(&mut segment, id::INFO, &info);
        put_element(&mut segment, id::TRACKS, &tracks);
        put_element(&mut segment, id::CLUSTER, &cluster);
        put_element(&mut segment, TAGS, b"whatever");
        let mut file = ebml_header();
        put_element(&mut file, id::SEGMENT, &segment);

        let read = read_webm(&file).expect("reads");
        assert_eq!((read.width, read.height), (320, 240));
        let got: Vec<(u64, bool, &[u8])> = read
            .samples
            .iter()
            .map(|s| (s.at_ms, s.keyframe, &s.data[..]))
            .collect();
        assert_eq!(
            got,
            [
                (500, true, &b"key"[..]),
                (540, false, &b"delta"[..]),
                (480, true, &b"early"[..])
            ]
        );
        assert_eq!(read.duration_ms, 480, "no Duration: the last frame's time");
    }

    #[test]
    fn damaged_files_are_errors_that_say_what_is_wrong() {
        assert_eq!(read_webm(b"RIFF....WEBP"), Err(WebmError::NotEbml));
        assert_eq!(WebmError::NotEbml.to_string(), "not an EBML file");
        let file = webm_file(&track(5000), &five_seconds());
        for cut in [0, 3, 4, 20, 40, 100, file.len() / 2, file.len() - 1] {
            assert!(read_webm(&file[..cut]).is_err(), "truncated at {cut}");
        }
        assert_eq!(read_webm(&file[..file.len() - 1]), Err(WebmError::PastEnd));
        assert_eq!(
            WebmError::PastEnd.to_string(),
            "element past the end of the file or of its parent"
        );
        // The Segment's size made "unknown", as a live stream writes it.
        let (_, _, rest) = element(&file).expect("header");
        let at = file.len() - rest.len() + 4;
        let mut live = file[..at].to_vec();
        live.push(0x01);
        live.extend_from_slice(&[0xFF; 7]);
        live.extend_from_slice(&file[at + varint(&file[at..]).expect("size").1..]);
        assert_eq!(read_webm(&live), Err(WebmError::UnknownSize));
        // Another DocType.
        let mut other = file.clone();
        let at = other
            .windows(4)
            .position(|w| w == b"webm")
            .expect("DocType");
        other[at..at + 4].copy_from_slice(b"webp");
        assert_eq!(read_webm(&other), Err(WebmError::NotWebm));
        // A budget of elements: a file of many empty Voids is refused past it.
        let mut voids = ebml_header();
        put_element(&mut voids, id::SEGMENT, &[VOID as u8, 0x80].repeat(1000));
        assert_eq!(
            read_within(&voids, &Budget(Cell::new(1000))),
            Err(WebmError::TooManyElements)
        );
        assert!(read_within(&file, &Budget(Cell::new(1000))).is_ok());
        assert!(read_within(&file, &Budget(Cell::new(100))).is_err());
    }

    #[test]
    fn vp8_keyframe_headers_give_the_frame_size() {
        let frame = keyframe(640, 360, &[]);
        assert_eq!(frame.len(), 10);
        assert_eq!(vp8_keyframe_size(&frame), Some((640, 360)));
        // The 2-bit scale above the 14-bit size is not part of it.
        let mut scaled = frame.clone();
        scaled[7] |= 0x40;
        assert_eq!(vp8_keyframe_size(&scaled), Some((640, 360)));
        let mut inter = frame.clone();
        inter[0] |= 1;
        assert_eq!(vp8_keyframe_size(&inter), None, "an interframe");
        assert_eq!(vp8_keyframe_size(&frame[..9]), None, "too short");
        assert_eq!(vp8_keyframe_size(&[]), None);
        let mut no_start_code = frame;
        no_start_code[4] = 0;
        assert_eq!(vp8_keyframe_size(&no_start_code), None);
    }

    fn small_file() -> Vec<u8> {
        let samples: Vec<VideoSample> = five_seconds().into_iter().step_by(8).collect();
        webm_file(&track(5000), &samples)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = read_webm(&bytes);
            // And behind a valid EBML id, to get past the first check.
            let mut ebml = id::EBML.to_be_bytes().to_vec();
            ebml.extend_from_slice(&bytes);
            let _ = read_webm(&ebml);
        }

        #[test]
        fn damaged_files_never_panic(
            cut in any::<prop::sample::Index>(),
            flips in prop::collection::vec((any::<prop::sample::Index>(), 0u8..8), 0..6),
        ) {
            let file = small_file();
            let _ = read_webm(&file[..cut.index(file.len() + 1)]);
            let mut flipped = file.clone();
            for (at, bit) in &flips {
                flipped[at.index(file.len())] ^= 1 << bit;
            }
            let _ = read_webm(&flipped);
            // Bytes overwritten with values that make varints long or sizes huge.
            let mut stomped = file.clone();
            for (at, bit) in flips {
                stomped[at.index(file.len())] = [0x00, 0x01, 0xFF, 0x7F, 0x80, 0x40, 0x10, 0x08][bit as usize];
            }
            let _ = read_webm(&stomped);
        }
    }
}
