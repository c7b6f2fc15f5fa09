//! The wire shapes. Inputs keep every member optional so that a missing required member is our
//! own precise 400, not a serde message; enums arrive as strings for the same reason.

use serde::{Deserialize, Serialize};

use crate::domain::capabilities::{Capabilities, MeetingFeatures};

// ---- inputs ----

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagIn {
    pub key: Option<String>,
    pub value: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CapabilitiesIn {
    pub audio: Option<String>,
    pub video: Option<String>,
    pub content: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttendeeItemIn {
    pub external_user_id: Option<String>,
    /// chime-sdk-meetings only.
    pub capabilities: Option<CapabilitiesIn>,
    /// Legacy only.
    pub tags: Option<Vec<TagIn>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NotificationsIn {
    pub lambda_function_arn: Option<String>,
    pub sns_topic_arn: Option<String>,
    pub sqs_queue_arn: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateMeetingIn {
    pub client_request_token: Option<String>,
    pub media_region: Option<String>,
    pub meeting_host_id: Option<String>,
    pub external_meeting_id: Option<String>,
    pub notifications_configuration: Option<NotificationsIn>,
    pub meeting_features: Option<MeetingFeatures>,
    pub primary_meeting_id: Option<String>,
    pub tenant_ids: Option<Vec<String>>,
    pub tags: Option<Vec<TagIn>>,
    pub media_placement_network_type: Option<String>,
    /// CreateMeetingWithAttendees only.
    pub attendees: Option<Vec<AttendeeItemIn>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BatchCreateAttendeeIn {
    pub attendees: Option<Vec<AttendeeItemIn>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateCapabilitiesIn {
    pub capabilities: Option<CapabilitiesIn>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttendeeIdItemIn {
    pub attendee_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BatchUpdateCapabilitiesExceptIn {
    pub excluded_attendee_ids: Option<Vec<AttendeeIdItemIn>>,
    pub capabilities: Option<CapabilitiesIn>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagsIn {
    #[serde(rename = "ResourceARN")]
    pub resource_arn: Option<String>,
    pub tags: Option<Vec<TagIn>>,
    pub tag_keys: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TranscriptionIn {
    pub transcription_configuration: Option<TranscriptionConfigurationIn>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TranscriptionConfigurationIn {
    pub engine_transcribe_settings: Option<EngineTranscribeSettingsIn>,
    pub engine_transcribe_medical_settings: Option<EngineTranscribeMedicalSettingsIn>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EngineTranscribeSettingsIn {
    pub language_code: Option<String>,
    pub vocabulary_filter_method: Option<String>,
    pub vocabulary_filter_name: Option<String>,
    pub vocabulary_name: Option<String>,
    pub region: Option<String>,
    pub enable_partial_results_stabilization: Option<bool>,
    pub partial_results_stability: Option<String>,
    pub content_identification_type: Option<String>,
    pub content_redaction_type: Option<String>,
    pub pii_entity_types: Option<String>,
    pub language_model_name: Option<String>,
    pub identify_language: Option<bool>,
    pub language_options: Option<String>,
    pub preferred_language: Option<String>,
    pub vocabulary_names: Option<String>,
    pub vocabulary_filter_names: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EngineTranscribeMedicalSettingsIn {
    pub language_code: Option<String>,
    pub specialty: Option<String>,
    pub r#type: Option<String>,
    pub vocabulary_name: Option<String>,
    pub region: Option<String>,
    pub content_identification_type: Option<String>,
}

// ---- outputs ----

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MediaPlacementOut {
    pub audio_host_url: String,
    pub audio_fallback_url: String,
    pub signaling_url: String,
    pub turn_control_url: String,
    pub screen_data_url: String,
    pub screen_viewing_url: String,
    pub screen_sharing_url: String,
    pub event_ingestion_url: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MeetingOut {
    pub meeting_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meeting_host_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_meeting_id: Option<String>,
    pub media_region: String,
    pub media_placement: MediaPlacementOut,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meeting_features: Option<MeetingFeatures>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_meeting_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_ids: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meeting_arn: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttendeeOut {
    pub external_user_id: String,
    pub attendee_id: String,
    pub join_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
}

/// A ListAttendees page, serialised straight from typed shapes (pages are the largest bodies).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttendeePageOut {
    pub attendees: Vec<AttendeeOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateAttendeeErrorOut {
    pub external_user_id: String,
    pub error_code: String,
    pub error_message: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagOut {
    pub key: String,
    pub value: String,
}
