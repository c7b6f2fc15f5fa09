//! A capture pipeline's text artifacts, as AWS lays them out: `meeting-events/` (attendees
//! joining and leaving, video starting and stopping, mutes, the capture's own start and end)
//! `data-channel/` (the data messages relayed) and `transcription-messages/` (a live
//! transcription's statuses and final results), each a `.txt` chunk of one JSON object per
//! line, named by the UTC time of its first line and closed 5 s after it.
//!
//! Events come from the join plane's observer (see [`crate::join::observe`]), which drops
//! rather than slows the meeting when this recorder falls behind; drops are counted.

use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::capture::{CaptureError, Chunk, ChunkWriter};
use crate::domain::civil::{dashed_millis, iso8601_millis};
use crate::join::observe::{ObservedEvent, Observer, RoomEvent};

/// A text chunk closes this long after its first line.
const CHUNK_MS: i64 = 5_000;
/// How often open chunks are checked for closing when nothing happens.
const CLOSE_CHECK: Duration = Duration::from_millis(500);
/// Events an observer queues before it drops.
pub const OBSERVER_EVENTS: usize = 4096;
/// The most lines one chunk holds: a flood of data messages makes more, smaller chunks rather
/// than one unbounded buffer.
const MAX_LINES: usize = 10_000;

pub const MEETING_EVENTS: &str = "meeting-events";
pub const DATA_CHANNEL: &str = "data-channel";
pub const TRANSCRIPTION_MESSAGES: &str = "transcription-messages";

/// What the text recorder did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TextStats {
    pub chunks: u64,
    pub meeting_events: u64,
    pub data_messages: u64,
    pub transcription_messages: u64,
    /// Events the observer dropped because the recorder fell behind.
    pub dropped: u64,
}

/// One folder's chunk in the making.
#[derive(Default)]
pub struct TextChunker {
    first_ms: Option<i64>,
    lines: Vec<String>,
}

impl TextChunker {
    /// Adds a line; returns the chunk it filled, if any.
    pub fn push(&mut self, at_ms: i64, line: String) -> Option<Chunk> {
        let full = self.lines.len() >= MAX_LINES;
        let closed = if full { self.close() } else { None };
        self.first_ms.get_or_insert(at_ms);
        self.lines.push(line);
        closed
    }

    /// The chunk, once 5 s have passed since its first line.
    pub fn due(&mut self, now_ms: i64) -> Option<Chunk> {
        let first = self.first_ms?;
        (now_ms.saturating_sub(first) >= CHUNK_MS).then(|| self.close())?
    }

    pub fn close(&mut self) -> Option<Chunk> {
        let first = self.first_ms.take()?;
        let lines = std::mem::take(&mut self.lines);
        let mut body = lines.join("\n").into_bytes();
        body.push(b'\n');
        Some(Chunk {
            name: format!("{}.txt", dashed_millis(first)),
            body,
        })
    }
}

/// A meeting event as a `meeting-events/` line: `{"Timestamp", "EventType", "EventParameters"}`.
pub fn meeting_event_line(at_ms: i64, event: &RoomEvent, meeting_id: &str) -> Option<String> {
    let (kind, parameters) = match event {
        RoomEvent::AttendeeJoined {
            attendee_id,
            external_user_id,
        } => (
            "AttendeeJoined",
            json!({"AttendeeId": attendee_id, "ExternalUserId": external_user_id}),
        ),
        RoomEvent::AttendeeLeft {
            attendee_id,
            external_user_id,
        } => (
            "AttendeeLeft",
            json!({"AttendeeId": attendee_id, "ExternalUserId": external_user_id}),
        ),
        RoomEvent::VideoStarted { attendee_id } => {
            ("AttendeeVideoJoined", json!({"AttendeeId": attendee_id}))
        }
        RoomEvent::VideoStopped { attendee_id } => {
            ("AttendeeVideoLeft", json!({"AttendeeId": attendee_id}))
        }
        RoomEvent::Muted { attendee_id } => ("AudioTrackMute", json!({"AttendeeId": attendee_id})),
        RoomEvent::Unmuted { attendee_id } => {
            ("AudioTrackUnmute", json!({"AttendeeId": attendee_id}))
        }
        RoomEvent::Data { .. } | RoomEvent::Transcription { .. } => return None,
    };
    Some(event_line(at_ms, kind, parameters, meeting_id))
}

fn event_line(at_ms: i64, kind: &str, mut parameters: Value, meeting_id: &str) -> String {
    if let Some(object) = parameters.as_object_mut() {
        object.insert("MeetingId".to_string(), json!(meeting_id));
    }
    json!({
        "Timestamp": iso8601_millis(at_ms),
        "EventType": kind,
        "EventParameters": parameters,
    })
    .to_string()
}

/// A data message as a `data-channel/` line: `{"Timestamp", "Topic", "Data",
/// "SenderAttendeeId"}`. Data that is not UTF-8 text is written in base64, marked by
/// `"DataEncoding": "base64"` (AWS's files only show text).
pub fn data_line(at_ms: i64, event: &RoomEvent) -> Option<String> {
    let RoomEvent::Data {
        topic,
        data,
        sender_attendee_id,
        sender_external_user_id,
    } = event
    else {
        return None;
    };
    let mut line = json!({
        "Timestamp": iso8601_millis(at_ms),
        "Topic": topic,
        "SenderAttendeeId": sender_attendee_id,
        "SenderExternalUserId": sender_external_user_id,
    });
    if let Some(object) = line.as_object_mut() {
        match std::str::from_utf8(data) {
            Ok(text) => {
                object.insert("Data".to_string(), json!(text));
            }
            Err(_) => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(data);
                object.insert("Data".to_string(), json!(encoded));
                object.insert("DataEncoding".to_string(), json!("base64"));
            }
        }
    }
    Some(line.to_string())
}

/// The chunks in the making of each text folder.
#[derive(Default)]
struct Folders {
    events: TextChunker,
    data: TextChunker,
    transcription: TextChunker,
}

impl Folders {
    /// Writes an observed event into its folder's chunk; returns a chunk it filled.
    fn take(
        &mut self,
        observed: ObservedEvent,
        meeting_id: &str,
        stats: &mut TextStats,
    ) -> Option<(&'static str, Chunk)> {
        let ObservedEvent { at_ms, event } = observed;
        if let RoomEvent::Transcription { line } = event {
            stats.transcription_messages += 1;
            return self
                .transcription
                .push(at_ms, line)
                .map(|c| (TRANSCRIPTION_MESSAGES, c));
        }
        if let Some(line) = data_line(at_ms, &event) {
            stats.data_messages += 1;
            return self.data.push(at_ms, line).map(|c| (DATA_CHANNEL, c));
        }
        let line = meeting_event_line(at_ms, &event, meeting_id)?;
        stats.meeting_events += 1;
        self.events.push(at_ms, line).map(|c| (MEETING_EVENTS, c))
    }

    /// The chunks whose time is up.
    fn due(&mut self, now_ms: i64) -> Vec<(&'static str, Chunk)> {
        [
            self.events.due(now_ms).map(|c| (MEETING_EVENTS, c)),
            self.data.due(now_ms).map(|c| (DATA_CHANNEL, c)),
            self.transcription
                .due(now_ms)
                .map(|c| (TRANSCRIPTION_MESSAGES, c)),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// Every open chunk, the recording ending.
    fn close(&mut self) -> Vec<(&'static str, Chunk)> {
        [
            self.events.close().map(|c| (MEETING_EVENTS, c)),
            self.data.close().map(|c| (DATA_CHANNEL, c)),
            self.transcription
                .close()
                .map(|c| (TRANSCRIPTION_MESSAGES, c)),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

fn now_ms() -> i64 {
    crate::join::frames::timestamp_ms() as i64
}

/// Records the meeting's events and data messages until `stop`, framed by `CaptureStarted` and
/// `CaptureEnded` events; writes the open chunks last.
pub async fn record_text(
    mut observer: Observer,
    meeting_id: String,
    writer: ChunkWriter,
    mut stop: watch::Receiver<bool>,
) -> Result<TextStats, CaptureError> {
    let mut folders = Folders::default();
    let mut stats = TextStats::default();
    let started = now_ms();
    folders.events.push(
        started,
        event_line(started, "CaptureStarted", json!({}), &meeting_id),
    );
    stats.meeting_events += 1;
    let mut ticker = tokio::time::interval(CLOSE_CHECK);
    loop {
        let mut filled: Vec<(&str, Chunk)> = Vec::new();
        tokio::select! {
            event = observer.events.recv() => {
                let Some(observed) = event else { break };
                filled.extend(folders.take(observed, &meeting_id, &mut stats));
            }
            _ = ticker.tick() => filled.extend(folders.due(now_ms())),
            _ = stop.wait_for(|stop| *stop) => break,
        }
        for (folder, chunk) in filled {
            stats.chunks += 1;
            writer.put(folder, chunk).await?;
        }
    }
    // What the observer still holds happened before the stop.
    while let Ok(observed) = observer.events.try_recv() {
        if let Some((folder, chunk)) = folders.take(observed, &meeting_id, &mut stats) {
            stats.chunks += 1;
            writer.put(folder, chunk).await?;
        }
    }
    let ended = now_ms();
    stats.meeting_events += 1;
    let last_events = folders.events.push(
        ended,
        event_line(ended, "CaptureEnded", json!({}), &meeting_id),
    );
    let closing = last_events
        .map(|c| (MEETING_EVENTS, c))
        .into_iter()
        .chain(folders.close());
    for (folder, chunk) in closing {
        stats.chunks += 1;
        writer.put(folder, chunk).await?;
    }
    stats.dropped = observer.dropped();
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_the_documented_json_and_chunks_close_after_five_seconds() {
        let joined = RoomEvent::AttendeeJoined {
            attendee_id: "a1".to_string(),
            external_user_id: "«Ana»".to_string(),
        };
        let line = meeting_event_line(1_796_000_000_123, &joined, "m1").expect("an event");
        let parsed: Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(parsed["EventType"], "AttendeeJoined");
        assert_eq!(parsed["Timestamp"], "2026-11-30T00:53:20.123Z");
        assert_eq!(parsed["EventParameters"]["ExternalUserId"], "«Ana»");
        assert_eq!(parsed["EventParameters"]["MeetingId"], "m1");

        let text = RoomEvent::Data {
            topic: "chat".to_string(),
            data: "Zoë says hi".as_bytes().to_vec(),
            sender_attendee_id: "a1".to_string(),
            sender_external_user_id: "Zoë".to_string(),
        };
        let parsed: Value =
            serde_json::from_str(&data_line(0, &text).expect("a line")).expect("JSON");
        assert_eq!(parsed["Data"], "Zoë says hi");
        assert!(parsed.get("DataEncoding").is_none());
        let binary = RoomEvent::Data {
            topic: "bin".to_string(),
            data: vec![0xff, 0x00, 0xfe],
            sender_attendee_id: "a1".to_string(),
            sender_external_user_id: "x".to_string(),
        };
        let parsed: Value =
            serde_json::from_str(&data_line(0, &binary).expect("a line")).expect("JSON");
        assert_eq!(parsed["Data"], "/wD+");
        assert_eq!(parsed["DataEncoding"], "base64");

        let mut chunker = TextChunker::default();
        assert!(chunker.push(1_796_000_000_000, "one".to_string()).is_none());
        assert!(chunker.push(1_796_000_004_000, "two".to_string()).is_none());
        assert!(chunker.due(1_796_000_004_999).is_none());
        let chunk = chunker.due(1_796_000_005_000).expect("closed at 5 s");
        assert_eq!(chunk.name, "2026-11-30-00-53-20-000.txt");
        assert_eq!(chunk.body, b"one\ntwo\n");
        assert!(chunker.close().is_none());
    }
}
