//! Meeting operations: create (with or without attendees), get, list (legacy), delete, and the
//! transcription operations, which this server answers with a modelled "not available" error.

use serde_json::json;

use super::attendees::{attendee_items, outcomes_json};
use super::dto::{MediaPlacementOut, MeetingOut};
use super::error::{ApiError, ErrorKind};
use super::input;
use super::{ApiState, Call, Reply};
use crate::domain::id::MeetingId;
use crate::domain::tokens::PageKind;
use crate::domain::{arn, ids};
use crate::store::MeetingRecord;
use crate::transcription::TranscriptionSettings;

/// Builds the MediaPlacement URLs from the public base URL of the node hosting the meeting.
pub fn media_placement(base_url: &str, meeting_id: &str) -> MediaPlacementOut {
    let base = base_url.trim_end_matches('/');
    let (scheme, rest) = base.split_once("://").unwrap_or(("http", base));
    let ws = if scheme == "https" { "wss" } else { "ws" };
    let authority = rest.split('/').next().unwrap_or(rest);
    MediaPlacementOut {
        audio_host_url: authority.to_string(),
        audio_fallback_url: format!("{ws}://{rest}/calls/{meeting_id}"),
        signaling_url: format!("{ws}://{rest}/control/{meeting_id}"),
        turn_control_url: format!("{scheme}://{rest}/v2/turn_sessions"),
        screen_data_url: format!("{ws}://{rest}/v2/screen/{meeting_id}"),
        screen_viewing_url: format!(
            "{ws}://{rest}/ws/connect?passcode=null&viewer_uuid=null&X-BitHub-Call-Id={meeting_id}"
        ),
        screen_sharing_url: format!("{ws}://{rest}/v2/screen/{meeting_id}"),
        event_ingestion_url: format!("{scheme}://{rest}/v1/client-events"),
    }
}

/// The Meeting shape of the caller's namespace: the legacy shape has only four members. Its
/// MediaPlacement names the cluster's one address when there is one, else the hosting node.
pub fn meeting_json(
    call: &Call,
    meeting: &MeetingRecord,
    settings: &super::ApiSettings,
) -> serde_json::Value {
    let base = settings
        .cluster_url
        .as_deref()
        .unwrap_or(&meeting.media_base_url);
    let placement = media_placement(base, &meeting.meeting_id);
    let out = if call.is_legacy() {
        MeetingOut {
            meeting_id: meeting.meeting_id.clone(),
            meeting_host_id: None,
            external_meeting_id: meeting.external_meeting_id.clone(),
            media_region: meeting.media_region.clone(),
            media_placement: placement,
            meeting_features: None,
            primary_meeting_id: None,
            tenant_ids: None,
            meeting_arn: None,
        }
    } else {
        MeetingOut {
            meeting_id: meeting.meeting_id.clone(),
            meeting_host_id: meeting.meeting_host_id.clone(),
            external_meeting_id: meeting.external_meeting_id.clone(),
            media_region: meeting.media_region.clone(),
            media_placement: placement,
            meeting_features: meeting.features.clone(),
            primary_meeting_id: meeting.primary_meeting_id.clone(),
            tenant_ids: Some(meeting.tenant_ids.clone()),
            meeting_arn: Some(arn::meeting_arn(
                &meeting.control_region,
                &meeting.account_id,
                &meeting.meeting_id,
            )),
        }
    };
    serde_json::to_value(out).unwrap_or_default()
}

/// Every ARN of a NotificationsConfiguration must be one this server delivers to, or the
/// caller would wait for events that never come.
fn check_notification_targets(
    state: &ApiState,
    notifications: Option<&serde_json::Value>,
) -> Result<(), ApiError> {
    let routed = &state.settings.notification_targets;
    match crate::domain::meeting_events::targets(notifications)
        .into_iter()
        .find(|arn| !routed.contains(arn))
    {
        None => Ok(()),
        Some(arn) => Err(ApiError::bad_request(format!(
            "NotificationsConfiguration names {arn}, which this server cannot deliver to: \
             route it with --notify-route '{arn}=<http:// or nats:// URL>'{}",
            if routed.is_empty() {
                String::new()
            } else {
                format!(" (routed: {})", routed.join(", "))
            }
        ))),
    }
}

pub async fn create(
    state: &ApiState,
    call: &Call,
    with_attendees: bool,
) -> Result<Reply, ApiError> {
    let input = input::create_meeting(&call.body, call.is_legacy(), with_attendees)?;
    check_notification_targets(state, input.notifications.as_ref())?;
    if let Some(primary) = &input.primary_meeting_id {
        check_primary(state, call, primary).await?;
    }

    let effective_features = input.features.clone().unwrap_or_default();
    let now = state.clock.now_unix();
    let (new_attendees, mut errors) =
        attendee_items(call, &input.attendees, &effective_features, now)?;

    let meeting = MeetingRecord {
        account_id: call.account_id.clone(),
        meeting_id: ids::new_id(),
        client_request_token: input.client_request_token,
        control_region: call.region.clone(),
        media_region: input.media_region,
        external_meeting_id: input.external_meeting_id,
        meeting_host_id: input.meeting_host_id,
        primary_meeting_id: input.primary_meeting_id,
        tenant_ids: input.tenant_ids.unwrap_or_default(),
        max_attendees: effective_features.attendee_cap(state.settings.max_attendees),
        features: input.features,
        notifications: input.notifications,
        network_type: input.network_type,
        media_base_url: state.cluster.place(),
        created_at: now,
    };
    let created = state
        .store
        .create_meeting(meeting, input.tags, new_attendees.clone())
        .await?;
    let outcomes = if created.created {
        created.attendees
    } else if new_attendees.is_empty() {
        Vec::new()
    } else {
        // A replay of the same ClientRequestToken: the attendees are idempotent by
        // ExternalUserId, so this returns the ones the first call created.
        state
            .store
            .create_attendees(&call.account_id, &created.meeting.meeting_id, new_attendees)
            .await?
    };

    let mut response = json!({ "Meeting": meeting_json(call, &created.meeting, &state.settings) });
    if with_attendees {
        let (attendees, full) = outcomes_json(call, &outcomes);
        errors.extend(full);
        if let Some(fields) = response.as_object_mut() {
            fields.insert("Attendees".into(), json!(attendees));
            fields.insert("Errors".into(), json!(errors));
        }
    }
    Ok(Reply::created(call, response))
}

/// A replica names an existing meeting of the same account that is not itself a replica (the
/// id is already known to be a GUID).
async fn check_primary(state: &ApiState, call: &Call, primary: &str) -> Result<(), ApiError> {
    match state
        .store
        .get_meeting(&call.account_id, &ids::normalize(primary))
        .await
    {
        Ok(meeting) if meeting.primary_meeting_id.is_none() => Ok(()),
        Ok(_) | Err(crate::store::StoreError::MeetingNotFound) => {
            Err(input::invalid_primary(primary))
        }
        Err(other) => Err(other.into()),
    }
}

pub async fn get(state: &ApiState, call: &Call) -> Result<Reply, ApiError> {
    let meeting_id = call.meeting_id()?;
    let meeting = state
        .store
        .get_meeting(&call.account_id, &meeting_id)
        .await?;
    Ok(Reply::Json(
        axum::http::StatusCode::OK,
        json!({ "Meeting": meeting_json(call, &meeting, &state.settings) }),
    ))
}

pub async fn list(state: &ApiState, call: &Call) -> Result<Reply, ApiError> {
    let limit = input::max_results(call.query("max-results"), 99)?;
    let after = match call.query("next-token") {
        Some(token) => Some(
            state
                .pages
                .decode(PageKind::Meetings, &call.account_id, token)
                .ok_or_else(|| {
                    ApiError::bad_request("NextToken is invalid or was not issued for ListMeetings")
                })?,
        ),
        None => None,
    };
    let mut meetings = state
        .store
        .list_meetings(&call.account_id, after.as_deref(), limit + 1)
        .await?;
    let more = meetings.len() > limit;
    meetings.truncate(limit);
    let mut response = json!({
        "Meetings": meetings.iter().map(|m| meeting_json(call, m, &state.settings)).collect::<Vec<_>>(),
    });
    if let (true, Some(last)) = (more, meetings.last()) {
        let next_token = json!(state.pages.encode(
            PageKind::Meetings,
            &call.account_id,
            &last.meeting_id
        ));
        if let Some(fields) = response.as_object_mut() {
            fields.insert("NextToken".into(), next_token);
        }
    }
    Ok(Reply::Json(axum::http::StatusCode::OK, response))
}

/// DeleteMeeting is idempotent, as on AWS: a well-formed id of a meeting that ended, was
/// deleted, never existed or belongs to another account is "already ended", answered 204 with
/// nothing changed.
pub async fn delete(state: &ApiState, call: &Call) -> Result<Reply, ApiError> {
    let meeting_id = call.meeting_id()?;
    state.meeting_features.remove(&meeting_id);
    match state
        .store
        .delete_meeting(&call.account_id, &meeting_id, state.clock.now_unix())
        .await
    {
        // The attendees and their JoinTokens went with the meeting (and its replicas);
        // connected clients are told now.
        Ok(ended) => {
            for id in &ended {
                state.events.meeting_ended(id);
            }
        }
        Err(crate::store::StoreError::MeetingNotFound) => {}
        Err(error) => return Err(error.into()),
    }
    Ok(Reply::Empty(axum::http::StatusCode::NO_CONTENT))
}

fn transcription_unavailable() -> ApiError {
    ApiError::new(
        ErrorKind::Unprocessable,
        "Meeting transcription is not available on this server: start it with --transcription-engine URL, naming a local engine that speaks the OpenAI-compatible transcription API (whisper.cpp's server, speaches, LocalAI)",
    )
}

/// StartMeetingTranscription: the meeting's attendees are transcribed by the local engine and
/// the results sent to every client; on a meeting already transcribed, the new configuration
/// replaces the old. Answered before the transcription starts, as AWS answers (clients and
/// the events stream hear `started`).
pub async fn start_transcription(state: &ApiState, call: &Call) -> Result<Reply, ApiError> {
    let meeting_id = call.meeting_id()?;
    let (configuration, configuration_text) =
        input::start_transcription(&call.body, call.is_legacy())?;
    let meeting = state
        .store
        .get_meeting(&call.account_id, &meeting_id)
        .await?;
    if !state.transcriptions.has_engine() {
        return Err(transcription_unavailable());
    }
    let settings =
        transcription_settings(&configuration, configuration_text, &meeting.media_region);
    // Checked by `call.meeting_id` and found in the store.
    let meeting_id = MeetingId::trusted(meeting.meeting_id.clone());
    if !state.transcriptions.start(&meeting_id, settings) {
        return Err(transcription_unavailable());
    }
    Ok(Reply::Empty(axum::http::StatusCode::OK))
}

/// What the transcriber needs of a TranscriptionConfiguration: the language (none when the
/// engine is to identify it), the region (the settings' own, else the meeting's media region),
/// the configuration's text.
fn transcription_settings(
    configuration: &crate::api::dto::TranscriptionConfigurationIn,
    text: String,
    media_region: &str,
) -> TranscriptionSettings {
    let (language_code, region) = match (
        &configuration.engine_transcribe_settings,
        &configuration.engine_transcribe_medical_settings,
    ) {
        (Some(settings), _) => (
            (settings.identify_language != Some(true))
                .then(|| settings.language_code.clone())
                .flatten(),
            settings.region.clone(),
        ),
        (None, Some(medical)) => (medical.language_code.clone(), medical.region.clone()),
        (None, None) => (None, None),
    };
    TranscriptionSettings {
        language_code,
        region: region
            .filter(|region| region != "auto")
            .unwrap_or_else(|| media_region.to_string()),
        configuration: text,
    }
}

/// StopMeetingTranscription: the meeting's transcription ends (clients hear `stopped`). A
/// meeting that is not transcribed is answered the same.
pub async fn stop_transcription(state: &ApiState, call: &Call) -> Result<Reply, ApiError> {
    let meeting_id = call.meeting_id()?;
    let meeting = state
        .store
        .get_meeting(&call.account_id, &meeting_id)
        .await?;
    if !state.transcriptions.has_engine() {
        return Err(transcription_unavailable());
    }
    let meeting_id = meeting.meeting_id;
    state
        .transcriptions
        .stop(&MeetingId::trusted(meeting_id))
        .await;
    Ok(Reply::Empty(axum::http::StatusCode::OK))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::capabilities::MeetingFeatures;

    #[test]
    fn placement_urls_follow_the_public_url() {
        let p = media_placement("http://127.0.0.1:8080", "m1");
        assert_eq!(p.signaling_url, "ws://127.0.0.1:8080/control/m1");
        assert_eq!(p.audio_host_url, "127.0.0.1:8080");
        let p = media_placement("https://chime.example.com/base/", "m1");
        assert_eq!(p.signaling_url, "wss://chime.example.com/base/control/m1");
        assert_eq!(p.audio_host_url, "chime.example.com");
        assert_eq!(
            p.event_ingestion_url,
            "https://chime.example.com/base/v1/client-events"
        );
    }

    #[test]
    fn features_default_is_empty() {
        assert_eq!(MeetingFeatures::default().attendee_cap(250), 250);
    }
}
