//! What clients receive: `SdkTranscriptFrame`s in data messages on `aws:chime:transcription`,
//! which amazon-chime-sdk-js's `TranscriptEventConverter` turns into `TranscriptionStatus` and
//! `Transcript` events. Times are wall-clock milliseconds, as AWS's are.

use prost::Message;
use serde_json::{Value, json};

use super::engine::Recognized;
use super::utterance::Utterance;
use crate::domain::civil::iso8601_millis;
use crate::join::frames::proto::{
    SdkDataMessagePayload, SdkTranscript, SdkTranscriptAlternative, SdkTranscriptEvent,
    SdkTranscriptFrame, SdkTranscriptItem, SdkTranscriptResult, SdkTranscriptionStatus,
    sdk_transcript_event, sdk_transcript_item, sdk_transcription_status,
};

/// The data message topic the SDK's transcription controller listens to.
pub const TOPIC: &str = "aws:chime:transcription";

/// A transcription's lifecycle, as clients and the events stream see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Started,
    Interrupted,
    Resumed,
    Stopped,
    Failed,
}

impl Status {
    fn wire(self) -> sdk_transcription_status::Type {
        use sdk_transcription_status::Type;
        match self {
            Status::Started => Type::Started,
            Status::Interrupted => Type::Interrupted,
            Status::Resumed => Type::Resumed,
            Status::Stopped => Type::Stopped,
            Status::Failed => Type::Failed,
        }
    }

    /// The meeting event it announces (`chime:Transcription…`).
    pub fn event_name(self) -> &'static str {
        match self {
            Status::Started => "chime:TranscriptionStarted",
            Status::Interrupted => "chime:TranscriptionInterrupted",
            Status::Resumed => "chime:TranscriptionResumed",
            Status::Stopped => "chime:TranscriptionStopped",
            Status::Failed => "chime:TranscriptionFailed",
        }
    }
}

/// Who spoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Speaker {
    pub attendee_id: String,
    pub external_user_id: String,
}

/// A data message of the server's own carrying one transcript event.
fn message(event: sdk_transcript_event::Event, now_ms: i64) -> SdkDataMessagePayload {
    let frame = SdkTranscriptFrame {
        events: vec![SdkTranscriptEvent { event: Some(event) }],
    };
    SdkDataMessagePayload {
        topic: Some(TOPIC.to_string()),
        data: Some(frame.encode_to_vec()),
        lifetime_ms: None,
        sender_attendee_id: None,
        ingest_time_ns: Some(now_ms.max(1).saturating_mul(1_000_000)),
        sender_external_user_id: None,
    }
}

/// A status message: the transcription's region and configuration (the JSON the Start was
/// given), and for a failure or an interruption why.
pub fn status(
    status: Status,
    region: &str,
    configuration: &str,
    reason: Option<&str>,
    now_ms: i64,
) -> SdkDataMessagePayload {
    let status = SdkTranscriptionStatus {
        r#type: Some(status.wire() as i32),
        event_time: Some(now_ms),
        transcription_region: Some(region.to_string()),
        transcription_configuration: Some(configuration.to_string()),
        message: reason.map(str::to_string),
    };
    message(sdk_transcript_event::Event::Status(status), now_ms)
}

/// A transcript message: one result for an utterance (partial while it runs, then final under
/// the same result id), its words as items attributed to the speaker.
pub fn transcript(
    utterance: &Utterance,
    recognized: &Recognized,
    speaker: &Speaker,
    result_id: &str,
    language_code: Option<&str>,
    now_ms: i64,
) -> SdkDataMessagePayload {
    let items = items(utterance, recognized, speaker);
    let result = SdkTranscriptResult {
        alternatives: vec![SdkTranscriptAlternative {
            items,
            transcript: Some(recognized.text.clone()),
            entities: Vec::new(),
        }],
        channel_id: Some("ch_0".to_string()),
        end_time: Some(utterance.end_ms),
        is_partial: Some(utterance.partial),
        result_id: Some(result_id.to_string()),
        start_time: Some(utterance.start_ms),
        language_code: language_code.map(str::to_string),
        language_identification: Vec::new(),
    };
    message(
        sdk_transcript_event::Event::Transcript(SdkTranscript {
            results: vec![result],
        }),
        now_ms,
    )
}

/// The result's items: the engine's words with their times when it gives them, else the
/// transcript's words spread evenly over the utterance; punctuation after a word is an item of
/// its own, as Amazon Transcribe gives it.
fn items(
    utterance: &Utterance,
    recognized: &Recognized,
    speaker: &Speaker,
) -> Vec<SdkTranscriptItem> {
    let timed: Vec<(String, i64, i64, Option<f64>)> = if recognized.words.is_empty() {
        let words: Vec<&str> = recognized.text.split_whitespace().collect();
        let span = (utterance.end_ms - utterance.start_ms).max(1);
        let each = span / words.len().max(1) as i64;
        words
            .iter()
            .enumerate()
            .map(|(i, word)| {
                let start = utterance.start_ms + each * i as i64;
                (word.to_string(), start, start + each, None)
            })
            .collect()
    } else {
        recognized
            .words
            .iter()
            .map(|word| {
                let at = |seconds: f64| utterance.start_ms + (seconds.max(0.0) * 1000.0) as i64;
                (
                    word.word.trim().to_string(),
                    at(word.start),
                    at(word.end),
                    word.probability,
                )
            })
            .collect()
    };
    let mut items = Vec::with_capacity(timed.len());
    for (word, start, end, confidence) in timed {
        let spoken = word.trim_end_matches(|c: char| c.is_ascii_punctuation());
        let punctuation = word.get(spoken.len()..).unwrap_or_default();
        let item = |content: &str, kind: sdk_transcript_item::Type| SdkTranscriptItem {
            content: Some(content.to_string()),
            end_time: Some(end),
            speaker_attendee_id: Some(speaker.attendee_id.clone()),
            speaker_external_user_id: Some(speaker.external_user_id.clone()),
            start_time: Some(start),
            r#type: Some(kind as i32),
            vocabulary_filter_match: None,
            confidence,
            stable: utterance.partial.then_some(false),
        };
        if !spoken.is_empty() {
            items.push(item(spoken, sdk_transcript_item::Type::Pronunciation));
        }
        if !punctuation.is_empty() {
            items.push(item(punctuation, sdk_transcript_item::Type::Punctuation));
        }
    }
    items
}

/// A status as a capture pipeline's `transcription-messages/` line.
pub fn status_line(
    status: Status,
    settings: &super::TranscriptionSettings,
    reason: Option<&str>,
    now_ms: i64,
) -> String {
    let kind = match status {
        Status::Started => "started",
        Status::Interrupted => "interrupted",
        Status::Resumed => "resumed",
        Status::Stopped => "stopped",
        Status::Failed => "failed",
    };
    json!({
        "Timestamp": iso8601_millis(now_ms),
        "Type": "TranscriptionStatus",
        "TranscriptionStatus": {
            "Type": kind,
            "EventTimeMs": now_ms,
            "TranscriptionRegion": settings.region,
            "TranscriptionConfiguration": settings.configuration,
            "Message": reason,
        },
    })
    .to_string()
}

/// A final result as a capture pipeline's `transcription-messages/` line.
pub fn transcript_line(
    utterance: &Utterance,
    recognized: &Recognized,
    speaker: &Speaker,
    result_id: &str,
    now_ms: i64,
) -> String {
    let items: Vec<Value> = items(utterance, recognized, speaker)
        .into_iter()
        .map(|item| {
            let punctuation = item.r#type == Some(sdk_transcript_item::Type::Punctuation as i32);
            json!({
                "Content": item.content,
                "StartTimeMs": item.start_time,
                "EndTimeMs": item.end_time,
                "Type": if punctuation { "punctuation" } else { "pronunciation" },
                "Attendee": {
                    "AttendeeId": item.speaker_attendee_id,
                    "ExternalUserId": item.speaker_external_user_id,
                },
            })
        })
        .collect();
    json!({
        "Timestamp": iso8601_millis(now_ms),
        "Type": "Transcript",
        "Transcript": {
            "Results": [{
                "ResultId": result_id,
                "ChannelId": "ch_0",
                "StartTimeMs": utterance.start_ms,
                "EndTimeMs": utterance.end_ms,
                "IsPartial": utterance.partial,
                "Alternatives": [{ "Transcript": recognized.text, "Items": items }],
            }],
        },
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transcription::engine::Word;

    fn decode(message: &SdkDataMessagePayload) -> SdkTranscriptEvent {
        let frame = SdkTranscriptFrame::decode(message.data.as_deref().unwrap_or_default())
            .expect("a transcript frame");
        assert_eq!(frame.events.len(), 1);
        frame.events[0].clone()
    }

    fn utterance(partial: bool) -> Utterance {
        Utterance {
            number: 1,
            start_ms: 1_000_000,
            end_ms: 1_002_000,
            samples: Vec::new(),
            partial,
        }
    }

    fn speaker() -> Speaker {
        Speaker {
            attendee_id: "a1".into(),
            external_user_id: "Zoë «Ana»".into(),
        }
    }

    #[test]
    fn a_final_result_names_the_speaker_on_every_word_with_its_time() {
        let recognized = Recognized {
            text: "Hello, José.".into(),
            words: vec![
                Word {
                    word: " Hello,".into(),
                    start: 0.1,
                    end: 0.5,
                    probability: Some(0.8),
                },
                Word {
                    word: " José.".into(),
                    start: 0.6,
                    end: 1.2,
                    probability: None,
                },
            ],
            language: None,
        };
        let message = transcript(
            &utterance(false),
            &recognized,
            &speaker(),
            "r1",
            Some("en-US"),
            5,
        );
        assert_eq!(message.topic.as_deref(), Some(TOPIC));
        let Some(sdk_transcript_event::Event::Transcript(t)) = decode(&message).event else {
            panic!("a transcript");
        };
        let result = &t.results[0];
        assert_eq!(result.is_partial, Some(false));
        assert_eq!(result.result_id.as_deref(), Some("r1"));
        assert_eq!(
            (result.start_time, result.end_time),
            (Some(1_000_000), Some(1_002_000))
        );
        let items = &result.alternatives[0].items;
        let contents: Vec<&str> = items.iter().filter_map(|i| i.content.as_deref()).collect();
        assert_eq!(contents, ["Hello", ",", "José", "."]);
        assert!(
            items
                .iter()
                .all(|i| i.speaker_attendee_id.as_deref() == Some("a1")
                    && i.speaker_external_user_id.as_deref() == Some("Zoë «Ana»")
                    && i.stable.is_none())
        );
        assert_eq!(
            (items[0].start_time, items[0].end_time),
            (Some(1_000_100), Some(1_000_500))
        );
        assert_eq!(
            items[1].r#type,
            Some(sdk_transcript_item::Type::Punctuation as i32)
        );
        assert_eq!(items[0].confidence, Some(0.8));
    }

    #[test]
    fn words_without_times_are_spread_over_a_partial_and_statuses_carry_the_configuration() {
        let recognized = Recognized {
            text: "open the window".into(),
            ..Recognized::default()
        };
        let message = transcript(&utterance(true), &recognized, &speaker(), "r1", None, 5);
        let Some(sdk_transcript_event::Event::Transcript(t)) = decode(&message).event else {
            panic!("a transcript");
        };
        let items = &t.results[0].alternatives[0].items;
        assert_eq!(items.len(), 3);
        assert_eq!(items[2].start_time, Some(1_000_000 + 2 * 666));
        assert!(items.iter().all(|i| i.stable == Some(false)));
        let started = status(
            Status::Started,
            "us-east-1",
            "{\"EngineTranscribeSettings\":{}}",
            None,
            7,
        );
        let Some(sdk_transcript_event::Event::Status(s)) = decode(&started).event else {
            panic!("a status");
        };
        assert_eq!(
            s.r#type,
            Some(sdk_transcription_status::Type::Started as i32)
        );
        assert_eq!(s.transcription_region.as_deref(), Some("us-east-1"));
        assert_eq!(s.event_time, Some(7));
        assert_eq!(
            Status::Interrupted.event_name(),
            "chime:TranscriptionInterrupted"
        );
    }
}
