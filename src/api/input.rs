//! Decoding and validating request input: JSON bodies, query members and path labels. Every
//! failure is a 400 BadRequestException whose message names the member and the rule.

use serde::de::DeserializeOwned;

use super::dto::{CapabilitiesIn, TagIn, TranscriptionConfigurationIn};
use super::error::ApiError;
use crate::domain::capabilities::{Capabilities, MediaCapability, MeetingFeatures};
use crate::domain::validate::{self, Violation};
use crate::store::Tag;

impl From<Violation> for ApiError {
    fn from(violation: Violation) -> Self {
        ApiError::bad_request(violation)
    }
}

/// Decodes a JSON object body. An empty body is `{}` (the SDKs send none when no member is set).
pub fn json_body<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("The request body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "The request body must be a JSON object",
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        ApiError::bad_request(format!("Invalid value for {path}: {}", e.into_inner()))
    })
}

pub fn required<'a, T>(member: &str, value: &'a Option<T>) -> Result<&'a T, ApiError> {
    value
        .as_ref()
        .ok_or_else(|| ApiError::bad_request(format!("{member} is required")))
}

/// A path label that must be a GUID: a malformed one is a 400, an unknown one later a 404.
pub fn guid_label(member: &str, value: Option<&String>) -> Result<String, ApiError> {
    let value = value.ok_or_else(|| ApiError::bad_request(format!("{member} is required")))?;
    validate::guid(member, value)?;
    Ok(crate::domain::ids::normalize(value))
}

/// `max-results`: decimal text within the namespace's range; absent means the maximum.
pub fn max_results(raw: Option<&str>, max: i64) -> Result<usize, ApiError> {
    let Some(raw) = raw else {
        return Ok(max as usize);
    };
    let value: i64 = raw.parse().map_err(|_| {
        ApiError::bad_request(format!("MaxResults must be an integer, but is '{raw}'"))
    })?;
    validate::range("MaxResults", value, 1, max)?;
    Ok(value as usize)
}

fn media_capability(member: &str, value: &Option<String>) -> Result<MediaCapability, ApiError> {
    let value = required(member, value)?;
    MediaCapability::parse(value).ok_or_else(|| {
        ApiError::bad_request(format!(
            "{member} must be one of [SendReceive, Send, Receive, None], but is '{value}'"
        ))
    })
}

pub fn capabilities(member: &str, caps: &CapabilitiesIn) -> Result<Capabilities, ApiError> {
    Ok(Capabilities {
        audio: media_capability(&format!("{member}.Audio"), &caps.audio)?,
        video: media_capability(&format!("{member}.Video"), &caps.video)?,
        content: media_capability(&format!("{member}.Content"), &caps.content)?,
    })
}

/// Which tag constraints apply: the two models differ.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TagRules {
    /// chime-sdk-meetings: key pattern, value 0..256 with pattern.
    Meetings,
    /// Legacy: key 1..128, value 1..256, no patterns.
    Legacy,
}

pub fn tags(member: &str, tags: &[TagIn], rules: TagRules) -> Result<Vec<Tag>, ApiError> {
    let mut out = Vec::with_capacity(tags.len());
    for (i, tag) in tags.iter().enumerate() {
        let key_member = format!("{member}[{i}].Key");
        let value_member = format!("{member}[{i}].Value");
        let key = required(&key_member, &tag.key)?;
        let value = required(&value_member, &tag.value)?;
        match rules {
            TagRules::Meetings => {
                validate::tag_key(&key_member, key)?;
                validate::tag_value(&value_member, value)?;
            }
            TagRules::Legacy => {
                validate::length(&key_member, key, 1, 128)?;
                validate::length(&value_member, value, 1, 256)?;
            }
        }
        if out.iter().any(|t: &Tag| &t.key == key) {
            return Err(ApiError::bad_request(format!(
                "{key_member} '{key}' appears more than once"
            )));
        }
        out.push(Tag {
            key: key.clone(),
            value: value.clone(),
        });
    }
    Ok(out)
}

pub fn tag_keys(member: &str, keys: &[String], rules: TagRules) -> Result<(), ApiError> {
    for (i, key) in keys.iter().enumerate() {
        let key_member = format!("{member}[{i}]");
        match rules {
            TagRules::Meetings => validate::tag_key(&key_member, key)?,
            TagRules::Legacy => validate::length(&key_member, key, 1, 128)?,
        }
    }
    Ok(())
}

/// Checks the enums and range of `MeetingFeatures`.
pub fn meeting_features(features: &MeetingFeatures) -> Result<(), ApiError> {
    if let Some(v) = features
        .audio
        .as_ref()
        .and_then(|a| a.echo_reduction.as_deref())
    {
        validate::one_of(
            "MeetingFeatures.Audio.EchoReduction",
            v,
            &["AVAILABLE", "UNAVAILABLE"],
        )?;
    }
    if let Some(v) = features
        .video
        .as_ref()
        .and_then(|a| a.max_resolution.as_deref())
    {
        validate::one_of(
            "MeetingFeatures.Video.MaxResolution",
            v,
            &["None", "HD", "FHD"],
        )?;
    }
    if let Some(v) = features
        .content
        .as_ref()
        .and_then(|a| a.max_resolution.as_deref())
    {
        validate::one_of(
            "MeetingFeatures.Content.MaxResolution",
            v,
            &["None", "FHD", "UHD"],
        )?;
    }
    if let Some(v) = features.attendee.as_ref().and_then(|a| a.max_count) {
        validate::range("MeetingFeatures.Attendee.MaxCount", v, 1, 250)?;
    }
    Ok(())
}

const TRANSCRIBE_LANGUAGES: &[&str] = &[
    "en-US", "en-GB", "es-US", "fr-CA", "fr-FR", "en-AU", "it-IT", "de-DE", "pt-BR", "ja-JP",
    "ko-KR", "zh-CN", "th-TH", "hi-IN",
];

fn optional_enum(member: &str, value: &Option<String>, allowed: &[&str]) -> Result<(), ApiError> {
    if let Some(value) = value {
        validate::one_of(member, value, allowed)?;
    }
    Ok(())
}

fn optional_prefixed(
    member: &str,
    value: &Option<String>,
    (min, max): (usize, usize),
    pattern: &str,
    ok: fn(char) -> bool,
) -> Result<(), ApiError> {
    if let Some(value) = value {
        validate::length(member, value, min, max)?;
        validate::prefix_class(member, value, pattern, ok)?;
    }
    Ok(())
}

/// Validates `TranscriptionConfiguration` as the models constrain it. `gov_region` says whether
/// `us-gov-west-1` is a valid EngineTranscribeSettings.Region (chime-sdk-meetings only).
pub fn transcription(
    config: &TranscriptionConfigurationIn,
    gov_region: bool,
) -> Result<(), ApiError> {
    if let Some(s) = &config.engine_transcribe_settings {
        let m = "TranscriptionConfiguration.EngineTranscribeSettings";
        optional_enum(
            &format!("{m}.LanguageCode"),
            &s.language_code,
            TRANSCRIBE_LANGUAGES,
        )?;
        optional_enum(
            &format!("{m}.PreferredLanguage"),
            &s.preferred_language,
            TRANSCRIBE_LANGUAGES,
        )?;
        optional_enum(
            &format!("{m}.VocabularyFilterMethod"),
            &s.vocabulary_filter_method,
            &["remove", "mask", "tag"],
        )?;
        let mut regions = vec![
            "us-east-2",
            "us-east-1",
            "us-west-2",
            "ap-northeast-2",
            "ap-southeast-2",
            "ap-northeast-1",
            "ca-central-1",
            "eu-central-1",
            "eu-west-1",
            "eu-west-2",
            "sa-east-1",
            "auto",
        ];
        if gov_region {
            regions.push("us-gov-west-1");
        }
        optional_enum(&format!("{m}.Region"), &s.region, &regions)?;
        optional_enum(
            &format!("{m}.PartialResultsStability"),
            &s.partial_results_stability,
            &["low", "medium", "high"],
        )?;
        optional_enum(
            &format!("{m}.ContentIdentificationType"),
            &s.content_identification_type,
            &["PII"],
        )?;
        optional_enum(
            &format!("{m}.ContentRedactionType"),
            &s.content_redaction_type,
            &["PII"],
        )?;
        for (name, value) in [
            ("VocabularyFilterName", &s.vocabulary_filter_name),
            ("VocabularyName", &s.vocabulary_name),
        ] {
            if let Some(v) = value {
                validate::length(&format!("{m}.{name}"), v, 0, 4096)?;
            }
        }
        optional_prefixed(
            &format!("{m}.PiiEntityTypes"),
            &s.pii_entity_types,
            (1, 300),
            "^[A-Z_, ]+",
            |c| c.is_ascii_uppercase() || "_, ".contains(c),
        )?;
        optional_prefixed(
            &format!("{m}.LanguageModelName"),
            &s.language_model_name,
            (1, 200),
            "^[0-9a-zA-Z._-]+",
            |c| c.is_ascii_alphanumeric() || "._-".contains(c),
        )?;
        optional_prefixed(
            &format!("{m}.LanguageOptions"),
            &s.language_options,
            (1, 200),
            "^[a-zA-Z-,]+",
            |c| c.is_ascii_alphabetic() || "-,".contains(c),
        )?;
        for (name, value) in [
            ("VocabularyNames", &s.vocabulary_names),
            ("VocabularyFilterNames", &s.vocabulary_filter_names),
        ] {
            optional_prefixed(
                &format!("{m}.{name}"),
                value,
                (1, 3000),
                "^[a-zA-Z0-9,-._]+",
                |c| c.is_ascii_alphanumeric() || ",-._".contains(c),
            )?;
        }
    }
    if let Some(s) = &config.engine_transcribe_medical_settings {
        let m = "TranscriptionConfiguration.EngineTranscribeMedicalSettings";
        validate::one_of(
            &format!("{m}.LanguageCode"),
            required(&format!("{m}.LanguageCode"), &s.language_code)?,
            &["en-US"],
        )?;
        validate::one_of(
            &format!("{m}.Specialty"),
            required(&format!("{m}.Specialty"), &s.specialty)?,
            &[
                "PRIMARYCARE",
                "CARDIOLOGY",
                "NEUROLOGY",
                "ONCOLOGY",
                "RADIOLOGY",
                "UROLOGY",
            ],
        )?;
        validate::one_of(
            &format!("{m}.Type"),
            required(&format!("{m}.Type"), &s.r#type)?,
            &["CONVERSATION", "DICTATION"],
        )?;
        optional_enum(
            &format!("{m}.Region"),
            &s.region,
            &[
                "us-east-1",
                "us-east-2",
                "us-west-2",
                "ap-southeast-2",
                "ca-central-1",
                "eu-west-1",
                "auto",
            ],
        )?;
        optional_enum(
            &format!("{m}.ContentIdentificationType"),
            &s.content_identification_type,
            &["PHI"],
        )?;
        if let Some(v) = &s.vocabulary_name {
            validate::length(&format!("{m}.VocabularyName"), v, 0, 4096)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::dto::CreateMeetingIn;

    #[test]
    fn bodies_decode_with_member_paths_in_errors() {
        let err =
            json_body::<CreateMeetingIn>(br#"{"Attendees":[{"ExternalUserId":5}]}"#).unwrap_err();
        assert!(
            err.message.contains("Attendees[0].ExternalUserId"),
            "{}",
            err.message
        );
        assert!(
            json_body::<CreateMeetingIn>(b"{")
                .unwrap_err()
                .message
                .contains("not valid JSON")
        );
        assert!(
            json_body::<CreateMeetingIn>(b"[1]")
                .unwrap_err()
                .message
                .contains("JSON object")
        );
        assert!(json_body::<CreateMeetingIn>(b"").is_ok());
    }

    #[test]
    fn max_results_range() {
        assert_eq!(max_results(None, 100).ok(), Some(100));
        assert_eq!(max_results(Some("5"), 100).ok(), Some(5));
        assert!(max_results(Some("0"), 100).is_err());
        assert!(max_results(Some("101"), 100).is_err());
        assert!(max_results(Some("100"), 99).is_err());
        assert!(
            max_results(Some("ten"), 100)
                .unwrap_err()
                .message
                .contains("integer")
        );
    }

    #[test]
    fn tags_follow_their_namespace_rules() {
        let tag = |k: &str, v: &str| TagIn {
            key: Some(k.into()),
            value: Some(v.into()),
        };
        assert!(tags("Tags", &[tag("a", "")], TagRules::Meetings).is_ok());
        assert!(tags("Tags", &[tag("a", "")], TagRules::Legacy).is_err());
        assert!(tags("Tags", &[tag("a b", "x")], TagRules::Meetings).is_err());
        assert!(tags("Tags", &[tag("a b", "x")], TagRules::Legacy).is_ok());
        assert!(tags("Tags", &[tag("a", "x"), tag("a", "y")], TagRules::Meetings).is_err());
    }
}
