//! Live transcription against a real engine: the pocketsphinx fixture of tests/transcription
//! (an OpenAI-compatible server around PyPI's pocketsphinx and its US-English model), fed
//! sentences that Debian's espeak-ng speaks. Native attendees (str0m) join, one sends the
//! spoken sentences as Opus; every attendee's signaling must carry the transcription's status
//! and its partial and final results, attributed to the speaker, on `aws:chime:transcription`.
//! Skipped with a loud NOTE unless CARILLON_TEST_TRANSCRIPTION_PYTHON names the fixture's
//! Python (scripts/test sets it, and installs espeak-ng and ffmpeg).

mod common;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_chimesdkmeetings as meetings;
use carillon::join::frames::proto::{
    SdkSignalFrame, SdkTranscriptFrame, SdkTranscriptResult, sdk_transcript_event,
    sdk_transcription_status,
};
use common::TestServer;
use common::talk::{Talk, read_wav, talk};
use prost::Message;
use tokio::io::{AsyncBufReadExt, BufReader};

const TOPIC: &str = "aws:chime:transcription";
/// Sentences the fixture recognises from espeak-ng's voice, and words each must yield.
const SENTENCES: [(&str, &[&str]); 2] = [
    ("i would like a cup of coffee", &["cup", "coffee"]),
    ("the meeting starts at nine o'clock", &["meeting", "starts"]),
];

/// The fixture engine, a child process on a free port, killed when dropped.
struct Engine {
    _child: tokio::process::Child,
    url: String,
}

impl Engine {
    /// The fixture listening (`port` 0 picks one), or None (and a NOTE) when the test
    /// environment does not have it.
    async fn start(test: &str, port: u16, delay_seconds: f32) -> Option<Engine> {
        let Ok(python) = std::env::var("CARILLON_TEST_TRANSCRIPTION_PYTHON") else {
            eprintln!(
                "NOTE: {test} skipped: CARILLON_TEST_TRANSCRIPTION_PYTHON is not set (scripts/test sets it)"
            );
            return None;
        };
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/transcription/engine.py");
        let mut child = tokio::process::Command::new(python)
            .arg(script)
            .args(["--port", &port.to_string()])
            .args(["--delay-seconds", &delay_seconds.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("the fixture engine starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("the engine is ready within 60 s")
            .expect("reads")
            .expect("a line");
        let url = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("the engine says where it listens: {line}"))
            .to_string();
        Some(Engine { _child: child, url })
    }
}

/// The spoken sentences as one 48 kHz WAV (espeak-ng, through tests/transcription/speak.sh),
/// after `lead` of silence.
fn speech(dir: &std::path::Path, sentences: &[&str], lead: Duration) -> Arc<[f32]> {
    let path = dir.join("speech.wav");
    let status = std::process::Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/transcription/speak.sh"
    ))
    .arg(&path)
    .args(sentences)
    .status()
    .expect("speak.sh runs (espeak-ng and ffmpeg installed)");
    assert!(status.success(), "speak.sh wrote {}", path.display());
    let spoken = read_wav(&path);
    let silence = (lead.as_secs_f32() * 48_000.0) as usize;
    std::iter::repeat_n(0.0, silence)
        .chain(spoken.iter().copied())
        .collect()
}

/// What an attendee received on the transcription topic, in order.
#[derive(Debug, Default)]
struct Captions {
    statuses: Vec<(i32, Option<String>)>,
    results: Vec<SdkTranscriptResult>,
}

impl Captions {
    fn of(frames: &[SdkSignalFrame]) -> Captions {
        let mut captions = Captions::default();
        let messages = frames
            .iter()
            .filter_map(|frame| frame.data_message.as_ref())
            .flat_map(|data| data.messages.iter())
            .filter(|message| message.topic.as_deref() == Some(TOPIC));
        for message in messages {
            let frame = SdkTranscriptFrame::decode(message.data.as_deref().unwrap_or_default())
                .expect("a transcript frame");
            for event in frame.events {
                match event.event {
                    Some(sdk_transcript_event::Event::Status(status)) => captions
                        .statuses
                        .push((status.r#type.unwrap_or_default(), status.message)),
                    Some(sdk_transcript_event::Event::Transcript(transcript)) => {
                        captions.results.extend(transcript.results)
                    }
                    None => {}
                }
            }
        }
        captions
    }

    fn status_types(&self) -> Vec<i32> {
        self.statuses.iter().map(|(kind, _)| *kind).collect()
    }

    fn finals(&self) -> Vec<&SdkTranscriptResult> {
        self.results
            .iter()
            .filter(|r| r.is_partial == Some(false))
            .collect()
    }

    /// Every final transcript, lower case, joined.
    fn final_text(&self) -> String {
        self.finals()
            .iter()
            .filter_map(|r| r.alternatives.first()?.transcript.clone())
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    }
}

fn status(kind: sdk_transcription_status::Type) -> i32 {
    kind as i32
}

fn en_us() -> meetings::types::TranscriptionConfiguration {
    meetings::types::TranscriptionConfiguration::builder()
        .engine_transcribe_settings(
            meetings::types::EngineTranscribeSettings::builder()
                .language_code(meetings::types::TranscribeLanguageCode::EnUs)
                .build(),
        )
        .build()
}

fn signaling_url(meeting: &meetings::types::Meeting) -> String {
    meeting
        .media_placement
        .as_ref()
        .and_then(|p| p.signaling_url.clone())
        .expect("signaling url")
}

async fn attendee(client: &meetings::Client, meeting_id: &str, name: &str) -> (String, String) {
    let created = client
        .create_attendee()
        .meeting_id(meeting_id)
        .external_user_id(name)
        .send()
        .await
        .expect("attendee")
        .attendee
        .expect("attendee");
    (
        created.attendee_id.expect("id"),
        created.join_token.expect("token"),
    )
}

/// The official flow against the fixture engine: Start while two attendees are in the
/// meeting; the speaker says two sentences; both attendees receive `started`, partial results,
/// then finals that hold the sentences' key words with every item attributed to the speaker
/// (attendee id and ExternalUserId), a partial and its final under one result id, times inside
/// the call; a late joiner is told `started` when it joins; Stop makes everyone see `stopped`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attendees_receive_attributed_partial_and_final_transcripts() {
    let Some(engine) = Engine::start(
        "attendees_receive_attributed_partial_and_final_transcripts",
        0,
        0.0,
    )
    .await
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let engine_url = engine.url.clone();
    let server = TestServer::start_with(move |config| {
        config.transcription_engine = Some(engine_url);
    })
    .await;
    let client = server.client();
    let meeting = common::create_meeting(&client, "transcribed").await;
    let meeting_id = meeting.meeting_id.clone().expect("id");
    let signaling_url = signaling_url(&meeting);
    let (speaker_id, speaker_token) = attendee(&client, &meeting_id, "José «Pepe»").await;
    let (_, listener_token) = attendee(&client, &meeting_id, "Zoë").await;

    let sentences: Vec<&str> = SENTENCES.iter().map(|(s, _)| *s).collect();
    let spoken = speech(dir.path(), &sentences, Duration::from_secs(4));
    let call = Duration::from_secs_f32(spoken.len() as f32 / 48_000.0 + 5.0);
    let speaker = tokio::spawn({
        let (url, token) = (signaling_url.clone(), speaker_token.clone());
        async move { talk(&url, &token, spoken, call).await }
    });
    let listener = tokio::spawn({
        let (url, token) = (signaling_url.clone(), listener_token.clone());
        async move { talk(&url, &token, Arc::from(Vec::new()), call).await }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    client
        .start_meeting_transcription()
        .meeting_id(&meeting_id)
        .transcription_configuration(en_us())
        .send()
        .await
        .expect("StartMeetingTranscription answers 200");

    // A late joiner hears that the meeting is transcribed.
    let (_, late_token) = attendee(&client, &meeting_id, "Ana").await;
    let mut late = common::signal::SignalClient::connect(&signaling_url, &late_token).await;
    late.join().await;
    let mut told = Vec::new();
    for _ in 0..5 {
        told.push(late.frame().await);
        if !Captions::of(&told).statuses.is_empty() {
            break;
        }
    }
    assert_eq!(
        Captions::of(&told).status_types(),
        [status(sdk_transcription_status::Type::Started)],
        "a late joiner is told the transcription started"
    );
    drop(late);

    tokio::time::sleep(call - Duration::from_secs(4)).await;
    client
        .stop_meeting_transcription()
        .meeting_id(&meeting_id)
        .send()
        .await
        .expect("StopMeetingTranscription answers 200");
    let speaker: Talk = speaker.await.expect("speaker");
    let listener: Talk = listener.await.expect("listener");
    assert!(speaker.connected && listener.connected);

    for (who, talked) in [("speaker", &speaker), ("listener", &listener)] {
        let captions = Captions::of(&talked.frames);
        let statuses = captions.status_types();
        assert_eq!(
            statuses.first(),
            Some(&status(sdk_transcription_status::Type::Started)),
            "the {who} hears started first: {:?}",
            captions.statuses
        );
        assert_eq!(
            statuses.last(),
            Some(&status(sdk_transcription_status::Type::Stopped)),
            "the {who} hears stopped last: {:?}",
            captions.statuses
        );
        let text = captions.final_text();
        for (sentence, words) in SENTENCES {
            for word in words {
                assert!(
                    text.contains(word),
                    "the {who}'s finals hold {word:?} of {sentence:?}: {text:?}"
                );
            }
        }
        assert!(
            captions.results.iter().any(|r| r.is_partial == Some(true)),
            "the {who} sees partial results while a sentence runs"
        );
        for result in captions.finals() {
            let items = &result.alternatives[0].items;
            assert!(!items.is_empty());
            for item in items {
                assert_eq!(
                    item.speaker_attendee_id.as_deref(),
                    Some(speaker_id.as_str())
                );
                assert_eq!(
                    item.speaker_external_user_id.as_deref(),
                    Some("José «Pepe»")
                );
                let (start, end) = (item.start_time.unwrap_or(0), item.end_time.unwrap_or(0));
                assert!(start >= result.start_time.unwrap_or(0) && start <= end);
            }
        }
        let partial_ids: Vec<&str> = captions
            .results
            .iter()
            .filter(|r| r.is_partial == Some(true))
            .filter_map(|r| r.result_id.as_deref())
            .collect();
        assert!(
            captions
                .finals()
                .iter()
                .any(|f| partial_ids.contains(&f.result_id.as_deref().unwrap_or_default())),
            "a final comes under its partials' result id"
        );
    }
    drop(engine);
}

/// An engine that is down when the speaker talks: attendees are told `interrupted` (with
/// why); once it is up, the next sentence is transcribed and they are told `resumed` first.
/// Start and Stop in the legacy namespace answer as the current one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_that_is_down_interrupts_and_one_that_comes_back_resumes() {
    if std::env::var("CARILLON_TEST_TRANSCRIPTION_PYTHON").is_err() {
        eprintln!(
            "NOTE: an_engine_that_is_down_interrupts_and_one_that_comes_back_resumes skipped: CARILLON_TEST_TRANSCRIPTION_PYTHON is not set (scripts/test sets it)"
        );
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let port = common::free_port();
    let server = TestServer::start_with(move |config| {
        config.transcription_engine = Some(format!("http://127.0.0.1:{port}"));
    })
    .await;
    let client = server.client();
    let meeting = common::create_meeting(&client, "interrupted").await;
    let meeting_id = meeting.meeting_id.clone().expect("id");
    let signaling_url = signaling_url(&meeting);
    let (_, token) = attendee(&client, &meeting_id, "Zoë").await;
    // The first sentence at 3 s, while the engine is down; the engine comes up at 9 s; the
    // second sentence at 12 s.
    let first = speech(dir.path(), &[SENTENCES[0].0], Duration::from_secs(3));
    let second = speech(dir.path(), &[SENTENCES[1].0], Duration::ZERO);
    let gap = (12.0 * 48_000.0) as usize - first.len().min((12.0 * 48_000.0) as usize);
    let spoken: Arc<[f32]> = first
        .iter()
        .copied()
        .chain(std::iter::repeat_n(0.0, gap))
        .chain(second.iter().copied())
        .collect();
    let call = Duration::from_secs_f32(spoken.len() as f32 / 48_000.0 + 4.0);
    let speaker = tokio::spawn({
        let url = signaling_url.clone();
        async move { talk(&url, &token, spoken, call).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Legacy Start answers as the current one: 200, no body.
    let started = server
        .raw()
        .post(
            &format!("/legacy/meetings/{meeting_id}/transcription?operation=start"),
            r#"{"TranscriptionConfiguration":{"EngineTranscribeSettings":{"LanguageCode":"en-US"}}}"#,
        )
        .await;
    assert_eq!(started.status, 200, "{}", started.body);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let engine = Engine::start("an engine that comes back", port, 0.0)
        .await
        .expect("the engine starts");
    let talked = speaker.await.expect("speaker");
    let stopped = server
        .raw()
        .post(
            &format!("/legacy/meetings/{meeting_id}/transcription?operation=stop"),
            "",
        )
        .await;
    assert_eq!(stopped.status, 200, "{}", stopped.body);

    let captions = Captions::of(&talked.frames);
    use sdk_transcription_status::Type;
    assert_eq!(
        captions.status_types(),
        [
            status(Type::Started),
            status(Type::Interrupted),
            status(Type::Resumed)
        ],
        "{:?}",
        captions.statuses
    );
    let why = captions.statuses[1].1.clone().unwrap_or_default();
    assert!(why.contains("cannot reach"), "interrupted says why: {why}");
    let text = captions.final_text();
    assert!(
        SENTENCES[1].1.iter().all(|word| text.contains(word)),
        "the sentence after the engine came back is transcribed: {text:?}"
    );
    drop(engine);
}

/// An engine slower than speech (6 s a request, one at a time) while an attendee says six
/// sentences 0.8 s apart: each speaker queues at most two utterances and drops the rest
/// (counted), and slowness alone is no failure (no `interrupted`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_engine_loses_utterances_not_the_meeting() {
    let Some(engine) =
        Engine::start("a_slow_engine_loses_utterances_not_the_meeting", 0, 6.0).await
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let engine_url = engine.url.clone();
    let server = TestServer::start_with(move |config| {
        config.transcription_engine = Some(engine_url);
        config.transcription_concurrency = 1;
    })
    .await;
    let client = server.client();
    let meeting = common::create_meeting(&client, "slow engine").await;
    let meeting_id = meeting.meeting_id.clone().expect("id");
    let signaling_url = signaling_url(&meeting);
    let (_, token) = attendee(&client, &meeting_id, "«Ana»").await;
    // The sentence without speak.sh's second of silence on each side.
    let sentence = speech(dir.path(), &[SENTENCES[0].0], Duration::ZERO);
    let loud = |s: &&f32| s.abs() > 1e-3;
    let first = sentence.iter().position(|s| loud(&s)).unwrap_or(0);
    let last = sentence.iter().rposition(|s| loud(&s)).unwrap_or(0);
    let sentence: Arc<[f32]> = sentence.get(first..=last).unwrap_or_default().into();
    let pause = std::iter::repeat_n(0.0, 48_000 * 4 / 5);
    let spoken: Arc<[f32]> = std::iter::repeat_n(0.0, 48_000 * 3)
        .chain((0..6).flat_map(|_| sentence.iter().copied().chain(pause.clone())))
        .collect();
    let call = Duration::from_secs_f32(spoken.len() as f32 / 48_000.0 + 1.0);
    let speaker = tokio::spawn({
        let url = signaling_url.clone();
        async move { talk(&url, &token, spoken, call).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    client
        .start_meeting_transcription()
        .meeting_id(&meeting_id)
        .transcription_configuration(en_us())
        .send()
        .await
        .expect("StartMeetingTranscription answers 200");
    let talked = speaker.await.expect("speaker");
    assert!(talked.connected);
    let captions = Captions::of(&talked.frames);
    assert_eq!(
        captions.status_types(),
        [status(sdk_transcription_status::Type::Started)],
        "a slow engine is not a failure: {:?}",
        captions.statuses
    );
    let counts = server
        .running
        .as_ref()
        .expect("running")
        .api
        .transcriptions
        .utterances();
    let dropped = counts.dropped.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        dropped >= 1,
        "utterances past the queue are dropped and counted: {counts:?}"
    );
    drop(engine);
}
