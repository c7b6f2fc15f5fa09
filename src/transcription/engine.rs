//! The transcription engine: any local server speaking the OpenAI-compatible transcription API
//! (`POST /v1/audio/transcriptions`, multipart: `file`, `model`, `language`,
//! `response_format`), as whisper.cpp's server, faster-whisper-server / speaches and LocalAI
//! serve it. One utterance per request, as a 16 kHz WAV file.
//!
//! Requests are bounded: at most `concurrency` at once for the whole node (a partial result
//! only takes a free slot, never waits for one), each within `timeout`, a failed final one
//! tried again a bounded number of times.

use std::time::Duration;

use axum::body::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The path requests go to when `--transcription-engine` names only a server.
pub const TRANSCRIPTIONS_PATH: &str = "/v1/audio/transcriptions";
/// The most of an engine's answer read (a transcript of 10 s of speech is a few KB).
const MAX_ANSWER_BYTES: usize = 1 << 20;
/// Pauses before the second and third try of a final utterance.
const RETRY_PAUSES: [Duration; 2] = [Duration::from_millis(250), Duration::from_millis(1000)];

/// How to reach the engine, from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineSettings {
    /// The full URL of the transcriptions endpoint.
    pub url: String,
    /// The `model` field of each request.
    pub model: String,
    pub timeout: Duration,
    pub concurrency: usize,
}

impl EngineSettings {
    /// The engine `--transcription-engine` names, if any.
    pub fn from_config(
        config: &crate::config::Config,
    ) -> Result<Option<EngineSettings>, EngineUrlError> {
        let Some(engine) = &config.transcription_engine else {
            return Ok(None);
        };
        Ok(Some(EngineSettings {
            url: Self::endpoint(engine)?,
            model: config.transcription_model.clone(),
            timeout: Duration::from_secs(config.transcription_timeout),
            concurrency: usize::try_from(config.transcription_concurrency).unwrap_or(1),
        }))
    }

    /// The endpoint for `--transcription-engine`: a server's URL (`http://host:port`) gets the
    /// standard path; a URL with a path is taken as the endpoint itself. Only `http://` (local
    /// engines; put a TLS proxy in front of a remote one).
    pub fn endpoint(engine: &str) -> Result<String, EngineUrlError> {
        let uri: http::Uri = engine
            .parse()
            .map_err(|error| EngineUrlError::NotAUrl(engine.to_string(), error))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(EngineUrlError::NotHttp(engine.to_string()));
        }
        let path = uri.path();
        Ok(if path.is_empty() || path == "/" {
            format!("{}{TRANSCRIPTIONS_PATH}", engine.trim_end_matches('/'))
        } else {
            engine.to_string()
        })
    }
}

/// Why `--transcription-engine` names no engine the server can call.
#[derive(Debug, thiserror::Error)]
pub enum EngineUrlError {
    #[error("--transcription-engine {0:?} is not a URL: {1}")]
    NotAUrl(String, #[source] http::uri::InvalidUri),
    #[error(
        "--transcription-engine {0:?} must be an http:// URL of an OpenAI-compatible transcription server (e.g. http://127.0.0.1:8080)"
    )]
    NotHttp(String),
}

/// What the engine heard.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recognized {
    pub text: String,
    /// Words with their times (seconds from the start of the audio), when the engine gives them.
    pub words: Vec<Word>,
    /// The language the engine says it heard (ISO 639-1 or its name), if it says.
    pub language: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Word {
    pub word: String,
    pub start: f64,
    pub end: f64,
    #[serde(default)]
    pub probability: Option<f64>,
}

/// The answer of `response_format=verbose_json`; servers that only know `json` answer `text`.
#[derive(Deserialize)]
struct Answer {
    text: String,
    #[serde(default)]
    words: Option<Vec<Word>>,
    #[serde(default)]
    segments: Option<Vec<Segment>>,
    #[serde(default)]
    language: Option<String>,
}

/// whisper.cpp and faster-whisper put words inside segments.
#[derive(Deserialize)]
struct Segment {
    #[serde(default)]
    words: Option<Vec<Word>>,
}

/// Why a request gave no transcript.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot reach the transcription engine: {0}")]
    Unreachable(String),
    #[error("the transcription engine answered HTTP {status}: {message}")]
    Status { status: u16, message: String },
    #[error("the transcription engine did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the transcription engine's answer is not a transcript: {0}")]
    BadAnswer(String),
}

impl EngineError {
    /// The engine refuses what it is asked (a language it does not know, a model it does not
    /// have): asking again will not help, unlike an engine that is down, busy or slow.
    pub fn is_refusal(&self) -> bool {
        matches!(self, EngineError::Status { status, .. }
            if (400..500).contains(status) && *status != 408 && *status != 429)
    }
}

/// A slot to send one request in.
pub type Slot = OwnedSemaphorePermit;

pub struct Engine {
    settings: EngineSettings,
    client: Client<HttpConnector, Full<Bytes>>,
    slots: std::sync::Arc<Semaphore>,
}

impl Engine {
    pub fn new(settings: EngineSettings) -> Engine {
        let slots = std::sync::Arc::new(Semaphore::new(settings.concurrency.max(1)));
        Engine {
            settings,
            client: Client::builder(TokioExecutor::new()).build_http(),
            slots,
        }
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// A slot, waiting for one (a final utterance).
    pub async fn slot(&self) -> Option<Slot> {
        self.slots.clone().acquire_owned().await.ok()
    }

    /// A slot if one is free now (a partial result, which is not worth waiting for).
    pub fn free_slot(&self) -> Option<Slot> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// Transcribes one WAV file, trying `tries` times in all (at least once) unless the
    /// engine refuses it.
    pub async fn transcribe(
        &self,
        _slot: &Slot,
        wav: &[u8],
        language: Option<&str>,
        tries: usize,
    ) -> Result<Recognized, EngineError> {
        let body = Bytes::from(multipart_body(wav, &self.settings.model, language));
        let mut attempt = 0;
        loop {
            let result = self.request(body.clone()).await;
            match result {
                Err(error) if !error.is_refusal() && attempt + 1 < tries => {
                    let pause = RETRY_PAUSES
                        .get(attempt)
                        .copied()
                        .unwrap_or(Duration::from_secs(1));
                    tracing::debug!(%error, ?pause, "transcription request failed; trying again");
                    tokio::time::sleep(pause).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn request(&self, body: Bytes) -> Result<Recognized, EngineError> {
        let request = http::Request::post(&self.settings.url)
            .header(
                http::header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(body))
            .map_err(|error| EngineError::Unreachable(error.to_string()))?;
        let timeout = self.settings.timeout;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|error| EngineError::Unreachable(error.to_string()))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|error| EngineError::Unreachable(error.to_string()))?
                .to_bytes();
            Ok::<_, EngineError>((status, body))
        };
        let (status, body) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| EngineError::Timeout(timeout))??;
        if !status.is_success() {
            return Err(EngineError::Status {
                status: status.as_u16(),
                message: error_message(&body),
            });
        }
        parse_answer(&body)
    }
}

/// The part boundary: no WAV header or model name contains it.
const BOUNDARY: &str = "carillon-7f3a9c1e5b2d4086";

/// The multipart/form-data body of one request: the audio, the model, the language when known
/// (engines detect it otherwise), and the verbose answer that carries word times.
fn multipart_body(wav: &[u8], model: &str, language: Option<&str>) -> Vec<u8> {
    let mut body = Vec::with_capacity(wav.len() + 1024);
    let mut field = |name: &str, value: &str| {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    };
    field("model", model);
    field("response_format", "verbose_json");
    field("timestamp_granularities[]", "word");
    if let Some(language) = language {
        field("language", language);
    }
    body.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"utterance.wav\"\r\nContent-Type: audio/wav\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(wav);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn parse_answer(body: &[u8]) -> Result<Recognized, EngineError> {
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|error| EngineError::BadAnswer(format!("{error} in {}", start_of(body))))?;
    let words = answer.words.unwrap_or_else(|| {
        answer
            .segments
            .unwrap_or_default()
            .into_iter()
            .flat_map(|segment| segment.words.unwrap_or_default())
            .collect()
    });
    Ok(Recognized {
        text: answer.text.trim().to_string(),
        words,
        language: answer.language,
    })
}

/// The message of an OpenAI-style error answer (`{"error":{"message":...}}`), else the start
/// of the body.
fn error_message(body: &[u8]) -> String {
    let parsed: Option<String> = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|value| {
            value
                .pointer("/error/message")
                .or_else(|| value.pointer("/error"))
                .or_else(|| value.pointer("/detail"))
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
        });
    parsed.unwrap_or_else(|| start_of(body).into_owned())
}

/// The first 200 bytes of an answer, for an error message.
fn start_of(body: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(body.get(..200).unwrap_or(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_gets_the_standard_path_unless_it_has_one() {
        assert_eq!(
            EngineSettings::endpoint("http://127.0.0.1:8080")
                .ok()
                .as_deref(),
            Some("http://127.0.0.1:8080/v1/audio/transcriptions")
        );
        assert_eq!(
            EngineSettings::endpoint("http://127.0.0.1:8080/")
                .ok()
                .as_deref(),
            Some("http://127.0.0.1:8080/v1/audio/transcriptions")
        );
        assert_eq!(
            EngineSettings::endpoint("http://whisper:9000/inference")
                .ok()
                .as_deref(),
            Some("http://whisper:9000/inference")
        );
        assert!(EngineSettings::endpoint("https://api.example.com").is_err());
        assert!(EngineSettings::endpoint("127.0.0.1:8080").is_err());
    }

    #[test]
    fn answers_with_words_at_the_top_or_in_segments_and_plain_json_all_read() {
        let top = br#"{"text":" hello world ","language":"en","words":[{"word":"hello","start":0.1,"end":0.5},{"word":"world","start":0.6,"end":1.0,"probability":0.9}]}"#;
        let read = parse_answer(top).expect("verbose answer");
        assert_eq!(read.text, "hello world");
        assert_eq!(read.words.len(), 2);
        assert_eq!(read.words[1].probability, Some(0.9));
        assert_eq!(read.language.as_deref(), Some("en"));
        let nested = br#"{"text":"hi","segments":[{"id":0,"words":[{"word":" hi","start":0.0,"end":0.3}]}]}"#;
        assert_eq!(parse_answer(nested).expect("segments").words[0].word, " hi");
        let plain = parse_answer("{\"text\":\"José\"}".as_bytes()).expect("json answer");
        assert_eq!((plain.text.as_str(), plain.words.len()), ("José", 0));
        assert!(matches!(
            parse_answer(b"<html>"),
            Err(EngineError::BadAnswer(_))
        ));
    }

    #[test]
    fn refusals_are_told_apart_from_an_engine_that_is_down_or_busy() {
        let status = |status| EngineError::Status {
            status,
            message: String::new(),
        };
        assert!(status(400).is_refusal());
        assert!(status(404).is_refusal());
        assert!(!status(429).is_refusal());
        assert!(!status(503).is_refusal());
        assert!(!EngineError::Timeout(Duration::from_secs(1)).is_refusal());
        assert_eq!(
            error_message(
                br#"{"error":{"message":"unsupported language","type":"invalid_request_error"}}"#
            ),
            "unsupported language"
        );
    }

    #[test]
    fn the_multipart_body_carries_the_fields_and_the_file() {
        let body = multipart_body(b"RIFFdata", "whisper-1", Some("en"));
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("name=\"model\"\r\n\r\nwhisper-1\r\n"));
        assert!(text.contains("name=\"language\"\r\n\r\nen\r\n"));
        assert!(
            text.contains(
                "filename=\"utterance.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFFdata\r\n"
            )
        );
        assert!(text.ends_with(&format!("--{BOUNDARY}--\r\n")));
    }
}
