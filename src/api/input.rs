//! Decoding and validating request input: JSON bodies, query members and path labels. Every
//! failure is a 400 BadRequestException whose message names the member and the rule.

use serde::de::DeserializeOwned;

use serde_json::json;

use super::dto::{
    AttendeeItemIn, BatchCreateAttendeeIn, BatchUpdateCapabilitiesExceptIn, CapabilitiesIn,
    CreateMeetingIn, EngineTranscribeMedicalSettingsIn, EngineTranscribeSettingsIn,
    NotificationsIn, TagIn, TagsIn, TranscriptionConfigurationIn, TranscriptionIn,
    UpdateCapabilitiesIn,
};
use super::error::{ApiError, ErrorKind};
use crate::domain::capabilities::{
    Capabilities, CapabilityError, MediaCapability, MeetingFeatures,
};
use crate::domain::validate::{self, Violation};
use crate::domain::{arn, ids, regions};
use crate::store::{Tag, TagTarget};

impl From<Violation> for ApiError {
    fn from(violation: Violation) -> Self {
        ApiError::bad_request(violation.to_string())
    }
}

impl From<CapabilityError> for ApiError {
    fn from(error: CapabilityError) -> Self {
        ApiError::bad_request(error.to_string())
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
    /// chime-sdk-media-pipelines: key 1..128, value 0..256, no patterns.
    MediaPipelines,
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
            TagRules::MediaPipelines => {
                validate::length(&key_member, key, 1, 128)?;
                validate::length(&value_member, value, 0, 256)?;
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
            TagRules::Legacy | TagRules::MediaPipelines => {
                validate::length(&key_member, key, 1, 128)?
            }
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
    pattern: &'static str,
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
        engine_transcribe_enums(s, gov_region)?;
        engine_transcribe_names(s)?;
    }
    if let Some(s) = &config.engine_transcribe_medical_settings {
        engine_transcribe_medical(s)?;
    }
    Ok(())
}

const ENGINE_TRANSCRIBE: &str = "TranscriptionConfiguration.EngineTranscribeSettings";

/// EngineTranscribeSettings.Region; only the chime-sdk-meetings model lists `us-gov-west-1`.
fn transcribe_regions(gov_region: bool) -> Vec<&'static str> {
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
    regions
}

/// The enum members of EngineTranscribeSettings, checked before its names.
fn engine_transcribe_enums(
    s: &EngineTranscribeSettingsIn,
    gov_region: bool,
) -> Result<(), ApiError> {
    let m = ENGINE_TRANSCRIBE;
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
    optional_enum(
        &format!("{m}.Region"),
        &s.region,
        &transcribe_regions(gov_region),
    )?;
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
    )
}

/// The free-text members of EngineTranscribeSettings: names, lists and entity types.
fn engine_transcribe_names(s: &EngineTranscribeSettingsIn) -> Result<(), ApiError> {
    let m = ENGINE_TRANSCRIBE;
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
    Ok(())
}

fn engine_transcribe_medical(s: &EngineTranscribeMedicalSettingsIn) -> Result<(), ApiError> {
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
    Ok(())
}

// ---- whole operation inputs ----
//
// Each function below is everything a handler does with its request before it first touches the
// store: decoding and every check that needs nothing stored. Handlers call them, and the fuzz
// target `request_json` drives them directly.

/// A CreateMeeting or CreateMeetingWithAttendees request that passed every check that needs no
/// store. The handler then looks up the PrimaryMeetingId and checks each attendee item.
#[derive(Debug)]
pub struct CreateMeetingInput {
    pub client_request_token: String,
    pub media_region: String,
    pub external_meeting_id: Option<String>,
    pub meeting_host_id: Option<String>,
    /// NotificationsConfiguration, kept as given (only the members of the caller's model).
    pub notifications: Option<serde_json::Value>,
    pub features: Option<MeetingFeatures>,
    pub primary_meeting_id: Option<String>,
    pub tenant_ids: Option<Vec<String>>,
    pub network_type: Option<String>,
    pub tags: Vec<Tag>,
    /// The attendee items, each still to be checked with [`attendee_item`]: an invalid one is an
    /// `Errors` entry of the response, not a failed call.
    pub attendees: Vec<AttendeeItemIn>,
}

/// `ExternalMeetingId` and `MeetingHostId`: the legacy model only bounds the length.
fn meeting_external_id(legacy: bool, member: &str, value: &str) -> Result<(), ApiError> {
    if legacy {
        validate::length(member, value, 2, 64)?;
    } else {
        validate::external_id(member, value)?;
    }
    Ok(())
}

/// Decodes and checks a CreateMeeting (`with_attendees`: CreateMeetingWithAttendees) body.
pub fn create_meeting(
    body: &[u8],
    legacy: bool,
    with_attendees: bool,
) -> Result<CreateMeetingInput, ApiError> {
    let body: CreateMeetingIn = json_body(body)?;

    let token = required("ClientRequestToken", &body.client_request_token)?;
    validate::client_request_token(token)?;

    let media_region = create_media_region(&body.media_region, legacy)?;
    if !legacy {
        required("ExternalMeetingId", &body.external_meeting_id)?;
    }
    if let Some(id) = &body.external_meeting_id {
        meeting_external_id(legacy, "ExternalMeetingId", id)?;
    }
    if let Some(id) = &body.meeting_host_id {
        meeting_external_id(legacy, "MeetingHostId", id)?;
    }

    let notifications = match &body.notifications_configuration {
        Some(n) => Some(notifications_configuration(n, legacy)?),
        None => None,
    };

    let features = meetings_only(legacy, &body.meeting_features);
    if let Some(features) = &features {
        meeting_features(features)?;
    }
    let primary_meeting_id = meetings_only(legacy, &body.primary_meeting_id);
    if let Some(primary) = &primary_meeting_id {
        primary_meeting_id_form(primary)?;
    }
    let tenant_ids = meetings_only(legacy, &body.tenant_ids);
    if let Some(tenants) = &tenant_ids {
        tenant_id_list(tenants)?;
    }
    let network_type = meetings_only(legacy, &body.media_placement_network_type);
    if let Some(kind) = &network_type {
        validate::one_of(
            "MediaPlacementNetworkType",
            kind,
            &["Ipv4Only", "DualStack"],
        )?;
    }
    let tags = match &body.tags {
        Some(tags) => meeting_tags(tags, legacy)?,
        None => Vec::new(),
    };

    let attendees = create_attendees(body.attendees, legacy, with_attendees)?;
    Ok(CreateMeetingInput {
        client_request_token: token.clone(),
        media_region,
        external_meeting_id: body.external_meeting_id,
        meeting_host_id: body.meeting_host_id,
        notifications,
        features,
        primary_meeting_id,
        tenant_ids,
        network_type,
        tags,
        attendees,
    })
}

/// `MediaRegion`: the legacy model defaults it, and only the new one bounds its length.
fn create_media_region(region: &Option<String>, legacy: bool) -> Result<String, ApiError> {
    let media_region = match (region, legacy) {
        (Some(region), _) => region.clone(),
        (None, true) => regions::LEGACY_DEFAULT_MEDIA_REGION.to_string(),
        (None, false) => return Err(ApiError::bad_request("MediaRegion is required")),
    };
    if !legacy {
        validate::length("MediaRegion", &media_region, 2, 64)?;
    }
    if !regions::is_media_region(&media_region) {
        return Err(ApiError::bad_request(format!(
            "MediaRegion '{media_region}' is not a supported media region; use one of [{}]",
            regions::MEDIA_REGIONS.join(", ")
        )));
    }
    Ok(media_region)
}

/// NotificationsConfiguration as it is kept: only the targets of the caller's model, each a
/// valid ARN (the legacy model has no LambdaFunctionArn).
fn notifications_configuration(
    n: &NotificationsIn,
    legacy: bool,
) -> Result<serde_json::Value, ApiError> {
    let mut value = serde_json::Map::new();
    let targets = [
        ("LambdaFunctionArn", &n.lambda_function_arn, !legacy),
        ("SnsTopicArn", &n.sns_topic_arn, true),
        ("SqsQueueArn", &n.sqs_queue_arn, true),
    ];
    for (name, target, in_model) in targets {
        if let (Some(target), true) = (target, in_model) {
            validate::arn(&format!("NotificationsConfiguration.{name}"), target)?;
            value.insert(name.to_string(), json!(target));
        }
    }
    Ok(serde_json::Value::Object(value))
}

/// A member only the chime-sdk-meetings model has; the legacy API ignores it as unknown.
fn meetings_only<T: Clone>(legacy: bool, value: &Option<T>) -> Option<T> {
    if legacy { None } else { value.clone() }
}

/// The form of a PrimaryMeetingId; whether it names a primary meeting is the handler's to check.
fn primary_meeting_id_form(primary: &str) -> Result<(), ApiError> {
    validate::length("PrimaryMeetingId", primary, 2, 64)?;
    if !ids::is_guid(primary) {
        return Err(invalid_primary(primary));
    }
    Ok(())
}

fn tenant_id_list(tenants: &[String]) -> Result<(), ApiError> {
    validate::count("TenantIds", tenants.len(), 1, 5)?;
    for (i, tenant) in tenants.iter().enumerate() {
        validate::tenant_id(&format!("TenantIds[{i}]"), tenant)?;
    }
    Ok(())
}

/// A meeting's `Tags`: the legacy model wants at least one when the member is given.
fn meeting_tags(tags: &[TagIn], legacy: bool) -> Result<Vec<Tag>, ApiError> {
    if legacy {
        validate::count("Tags", tags.len(), 1, 50)?;
        self::tags("Tags", tags, TagRules::Legacy)
    } else {
        validate::count("Tags", tags.len(), 0, 50)?;
        self::tags("Tags", tags, TagRules::Meetings)
    }
}

/// CreateMeetingWithAttendees' `Attendees` (ignored by CreateMeeting); the legacy model lets it
/// be absent.
fn create_attendees(
    attendees: Option<Vec<AttendeeItemIn>>,
    legacy: bool,
    with_attendees: bool,
) -> Result<Vec<AttendeeItemIn>, ApiError> {
    match (attendees, with_attendees) {
        (Some(items), true) => {
            let max = if legacy { 10 } else { 20 };
            validate::count("Attendees", items.len(), 1, max)?;
            Ok(items)
        }
        (None, true) if !legacy => Err(ApiError::bad_request("Attendees is required")),
        _ => Ok(Vec::new()),
    }
}

/// The error for a PrimaryMeetingId that names no active primary meeting of the caller.
pub fn invalid_primary(primary: &str) -> ApiError {
    ApiError::bad_request(format!(
        "PrimaryMeetingId '{primary}' does not name an active primary meeting"
    ))
}

/// An attendee item that passed validation: what the handler mints an AttendeeId and a JoinToken
/// for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttendeeItem {
    pub external_user_id: String,
    pub capabilities: Capabilities,
    pub tags: Vec<Tag>,
}

/// Checks one attendee item (a CreateAttendee body, or one item of a batch; `member` prefixes the
/// member names, e.g. `Attendees[3].`) against the meeting's features.
pub fn attendee_item(
    legacy: bool,
    member: &str,
    item: &AttendeeItemIn,
    features: &MeetingFeatures,
) -> Result<AttendeeItem, ApiError> {
    let external_user_id = required(&format!("{member}ExternalUserId"), &item.external_user_id)?;
    let mut tags = Vec::new();
    let capabilities = if legacy {
        validate::length(&format!("{member}ExternalUserId"), external_user_id, 2, 64)?;
        if let Some(item_tags) = &item.tags {
            validate::count(&format!("{member}Tags"), item_tags.len(), 1, 10)?;
            tags = self::tags(&format!("{member}Tags"), item_tags, TagRules::Legacy)?;
        }
        features.default_capabilities()
    } else {
        validate::external_id(&format!("{member}ExternalUserId"), external_user_id)?;
        match &item.capabilities {
            Some(caps) => {
                let caps = capabilities(&format!("{member}Capabilities"), caps)?;
                features.check_capabilities(&caps)?;
                caps
            }
            None => features.default_capabilities(),
        }
    };
    Ok(AttendeeItem {
        external_user_id: external_user_id.clone(),
        capabilities,
        tags,
    })
}

/// Decodes a BatchCreateAttendee body: 1..100 items, each checked later on its own.
pub fn batch_create_attendee(body: &[u8]) -> Result<Vec<AttendeeItemIn>, ApiError> {
    let body: BatchCreateAttendeeIn = json_body(body)?;
    let items = body
        .attendees
        .ok_or_else(|| ApiError::bad_request("Attendees is required"))?;
    // The legacy model gives no bounds, but its documentation says "up to 100".
    validate::count("Attendees", items.len(), 1, 100)?;
    Ok(items)
}

/// The required `Capabilities` member of the capability updates (checked against the meeting's
/// features once the meeting is loaded).
pub fn required_capabilities(caps: &Option<CapabilitiesIn>) -> Result<Capabilities, ApiError> {
    capabilities("Capabilities", required("Capabilities", caps)?)
}

/// Decodes an UpdateAttendeeCapabilities body.
pub fn update_capabilities(body: &[u8]) -> Result<Capabilities, ApiError> {
    let body: UpdateCapabilitiesIn = json_body(body)?;
    required_capabilities(&body.capabilities)
}

/// Decodes a BatchUpdateAttendeeCapabilitiesExcept body: the normalised excluded attendee ids and
/// the capabilities.
pub fn update_capabilities_except(body: &[u8]) -> Result<(Vec<String>, Capabilities), ApiError> {
    let body: BatchUpdateCapabilitiesExceptIn = json_body(body)?;
    let excluded = required("ExcludedAttendeeIds", &body.excluded_attendee_ids)?;
    validate::count("ExcludedAttendeeIds", excluded.len(), 1, 250)?;
    let excluded = excluded
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let member = format!("ExcludedAttendeeIds[{i}].AttendeeId");
            let id = required(&member, &item.attendee_id)?;
            validate::guid(&member, id)?;
            Ok(ids::normalize(id))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let caps = required_capabilities(&body.capabilities)?;
    Ok((excluded, caps))
}

/// Decodes a StartMeetingTranscription body.
/// A validated StartMeetingTranscription body: its TranscriptionConfiguration, parsed and as
/// the JSON text it came as (clients are shown that text).
pub fn start_transcription(
    body: &[u8],
    legacy: bool,
) -> Result<(TranscriptionConfigurationIn, String), ApiError> {
    let parsed: TranscriptionIn = json_body(body)?;
    let config = required(
        "TranscriptionConfiguration",
        &parsed.transcription_configuration,
    )?;
    transcription(config, !legacy)?;
    // The body parsed as a TranscriptionIn just now, so it is a JSON object.
    let text = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|value| {
            value
                .get("TranscriptionConfiguration")
                .map(ToString::to_string)
        })
        .unwrap_or_default();
    let config = parsed.transcription_configuration.unwrap_or_default();
    Ok((config, text))
}

fn tag_rules(legacy: bool) -> TagRules {
    if legacy {
        TagRules::Legacy
    } else {
        TagRules::Meetings
    }
}

/// The ResourceNotFound error of the ARN-addressed tag operations.
pub fn resource_not_found(resource_arn: &str) -> ApiError {
    ApiError::new(
        ErrorKind::ResourceNotFound,
        format!("Resource {resource_arn} was not found"),
    )
    .with_resource(resource_arn)
}

/// Checks a ResourceARN against its namespace's model and resolves it to one of the caller's
/// meetings; any other ARN names no resource here.
pub fn meeting_target(
    legacy: bool,
    account_id: &str,
    resource_arn: &str,
) -> Result<TagTarget, ApiError> {
    if legacy {
        validate::arn("ResourceARN", resource_arn)?;
    } else {
        validate::amazon_resource_name("ResourceARN", resource_arn)?;
    }
    match arn::parse_meeting_arn(resource_arn) {
        Some(parsed) if parsed.account == account_id => Ok(TagTarget::Meeting(parsed.meeting_id)),
        _ => Err(resource_not_found(resource_arn)),
    }
}

/// The required `Tags` of a tag operation, at most `max`.
pub fn tag_list(legacy: bool, tags: &Option<Vec<TagIn>>, max: usize) -> Result<Vec<Tag>, ApiError> {
    let tags = required("Tags", tags)?;
    let min = if legacy { 1 } else { 0 };
    validate::count("Tags", tags.len(), min, max)?;
    self::tags("Tags", tags, tag_rules(legacy))
}

/// The required `TagKeys` of an untag operation, at most `max`.
pub fn tag_key_list(
    legacy: bool,
    keys: &Option<Vec<String>>,
    max: usize,
) -> Result<Vec<String>, ApiError> {
    let keys = required("TagKeys", keys)?;
    let min = if legacy { 1 } else { 0 };
    validate::count("TagKeys", keys.len(), min, max)?;
    tag_keys("TagKeys", keys, tag_rules(legacy))?;
    Ok(keys.clone())
}

/// A TagResource or UntagResource body: the ARN as sent, the meeting it names, and the tags
/// (TagResource) or tag keys (UntagResource).
#[derive(Debug)]
pub struct ResourceTagsInput<T> {
    pub resource_arn: String,
    pub target: TagTarget,
    pub tags: T,
}

/// Decodes a TagResource body; at most `max` tags.
pub fn tag_resource(
    body: &[u8],
    legacy: bool,
    account_id: &str,
    max: usize,
) -> Result<ResourceTagsInput<Vec<Tag>>, ApiError> {
    let body: TagsIn = json_body(body)?;
    let resource_arn = required("ResourceARN", &body.resource_arn)?;
    let target = meeting_target(legacy, account_id, resource_arn)?;
    let tags = tag_list(legacy, &body.tags, max)?;
    Ok(ResourceTagsInput {
        resource_arn: resource_arn.clone(),
        target,
        tags,
    })
}

/// Decodes an UntagResource body; at most `max` keys.
pub fn untag_resource(
    body: &[u8],
    legacy: bool,
    account_id: &str,
    max: usize,
) -> Result<ResourceTagsInput<Vec<String>>, ApiError> {
    let body: TagsIn = json_body(body)?;
    let resource_arn = required("ResourceARN", &body.resource_arn)?;
    let target = meeting_target(legacy, account_id, resource_arn)?;
    let tags = tag_key_list(legacy, &body.tag_keys, max)?;
    Ok(ResourceTagsInput {
        resource_arn: resource_arn.clone(),
        target,
        tags,
    })
}

/// Decodes the body of the legacy path-addressed TagMeeting and TagAttendee: 1..`limit` tags.
pub fn tag_path(body: &[u8], limit: usize) -> Result<Vec<Tag>, ApiError> {
    let body: TagsIn = json_body(body)?;
    let tags = required("Tags", &body.tags)?;
    validate::count("Tags", tags.len(), 1, limit)?;
    self::tags("Tags", tags, TagRules::Legacy)
}

/// Decodes the body of the legacy path-addressed UntagMeeting and UntagAttendee.
pub fn untag_path(body: &[u8], legacy: bool, limit: usize) -> Result<Vec<String>, ApiError> {
    let body: TagsIn = json_body(body)?;
    tag_key_list(legacy, &body.tag_keys, limit)
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

    #[test]
    fn create_meeting_checks_everything_before_the_store() {
        let base =
            r#""ClientRequestToken":"tok","MediaRegion":"us-east-1","ExternalMeetingId":"m1""#;
        let body = |extra: &str| format!("{{{base}{extra}}}");
        let ok = create_meeting(body("").as_bytes(), false, false).expect("valid");
        assert_eq!(ok.media_region, "us-east-1");
        let err = create_meeting(
            body(r#","PrimaryMeetingId":"not-a-guid""#).as_bytes(),
            false,
            false,
        )
        .unwrap_err();
        assert!(
            err.message
                .contains("does not name an active primary meeting")
        );
        // The legacy model has no PrimaryMeetingId: it is ignored.
        let legacy = create_meeting(body(r#","PrimaryMeetingId":"x""#).as_bytes(), true, false)
            .expect("ignored");
        assert_eq!(legacy.primary_meeting_id, None);
        assert!(
            create_meeting(body("").as_bytes(), false, true)
                .unwrap_err()
                .message
                .contains("Attendees is required")
        );
    }

    #[test]
    fn attendee_items_take_accented_names() {
        let item = |id: &str| AttendeeItemIn {
            external_user_id: Some(id.into()),
            ..Default::default()
        };
        let features = MeetingFeatures::default();
        for name in ["José", "Renée", "«Ana»"] {
            let checked = attendee_item(false, "", &item(name), &features).expect(name);
            assert_eq!(checked.external_user_id, name);
        }
        let err = attendee_item(false, "Attendees[2].", &item("aws:x"), &features).unwrap_err();
        assert!(err.message.starts_with("Attendees[2].ExternalUserId"));
    }

    #[test]
    fn resource_arns_resolve_to_the_callers_meetings() {
        let arn = "arn:aws:chime:us-east-1:123:meeting/0B6D8A6E-5F0C-4B4C-9A43-1A2B3C4D5E6F";
        assert_eq!(
            meeting_target(false, "123", arn),
            Ok(TagTarget::Meeting(
                "0b6d8a6e-5f0c-4b4c-9a43-1a2b3c4d5e6f".into()
            ))
        );
        assert_eq!(
            meeting_target(false, "456", arn).unwrap_err().kind,
            ErrorKind::ResourceNotFound
        );
        assert_eq!(
            meeting_target(true, "123", "nope").unwrap_err().kind,
            ErrorKind::BadRequest
        );
    }
}
