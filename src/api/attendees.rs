//! Attendee operations: create (one or a batch), get, list, delete and capabilities.

use axum::http::StatusCode;
use serde_json::json;

use super::dto::{
    AttendeeItemIn, AttendeeOut, AttendeePageOut, BatchCreateAttendeeIn,
    BatchUpdateCapabilitiesExceptIn, CreateAttendeeErrorOut, UpdateCapabilitiesIn,
};
use super::error::{ApiError, ErrorKind};
use super::input::{self, TagRules, required};
use super::{ApiState, Call, Reply};
use crate::domain::capabilities::MeetingFeatures;
use crate::domain::tokens::{self, PageKind};
use crate::domain::{ids, validate};
use crate::store::{AttendeeOutcome, AttendeeRecord, NewAttendee};

/// The Attendee shape of the caller's namespace: the legacy one has no Capabilities.
pub fn attendee_json(call: &Call, attendee: &AttendeeRecord) -> serde_json::Value {
    serde_json::to_value(attendee_out(call, attendee)).unwrap_or_default()
}

fn attendee_out(call: &Call, attendee: &AttendeeRecord) -> AttendeeOut {
    AttendeeOut {
        external_user_id: attendee.external_user_id.clone(),
        attendee_id: attendee.attendee_id.clone(),
        join_token: attendee.join_token.clone(),
        capabilities: (!call.is_legacy()).then_some(attendee.capabilities),
    }
}

/// Validates one attendee request item and mints its id and JoinToken.
fn attendee_item(
    call: &Call,
    member: &str,
    item: &AttendeeItemIn,
    features: &MeetingFeatures,
    now: i64,
) -> Result<NewAttendee, ApiError> {
    let external_user_id = required(&format!("{member}ExternalUserId"), &item.external_user_id)?;
    let mut tags = Vec::new();
    let capabilities = if call.is_legacy() {
        validate::length(&format!("{member}ExternalUserId"), external_user_id, 2, 64)?;
        if let Some(item_tags) = &item.tags {
            validate::count(&format!("{member}Tags"), item_tags.len(), 1, 10)?;
            tags = input::tags(&format!("{member}Tags"), item_tags, TagRules::Legacy)?;
        }
        features.default_capabilities()
    } else {
        validate::external_id(&format!("{member}ExternalUserId"), external_user_id)?;
        match &item.capabilities {
            Some(caps) => {
                let caps = input::capabilities(&format!("{member}Capabilities"), caps)?;
                features.check_capabilities(&caps)?;
                caps
            }
            None => features.default_capabilities(),
        }
    };
    let attendee_id = ids::new_id();
    Ok(NewAttendee {
        join_token: tokens::new_join_token(&attendee_id),
        attendee_id,
        external_user_id: external_user_id.clone(),
        capabilities,
        tags,
        created_at: now,
    })
}

/// Validates a list of attendee items. Invalid items do not fail the call: they come back as
/// `CreateAttendeeError` entries, and the valid ones are created.
pub fn attendee_items(
    call: &Call,
    items: &[AttendeeItemIn],
    features: &MeetingFeatures,
    now: i64,
) -> Result<(Vec<NewAttendee>, Vec<serde_json::Value>), ApiError> {
    let mut valid = Vec::new();
    let mut errors = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match attendee_item(call, &format!("Attendees[{i}]."), item, features, now) {
            Ok(attendee) => valid.push(attendee),
            Err(error) => errors.push(error_entry(
                item.external_user_id.clone().unwrap_or_default(),
                ErrorKind::BadRequest.code(call.namespace),
                error.message,
            )),
        }
    }
    Ok((valid, errors))
}

fn error_entry(external_user_id: String, code: &str, message: String) -> serde_json::Value {
    serde_json::to_value(CreateAttendeeErrorOut {
        external_user_id,
        error_code: code.to_string(),
        error_message: message,
    })
    .unwrap_or_default()
}

fn meeting_full_message(cap: u32) -> String {
    format!("The meeting already has its maximum of {cap} attendees")
}

/// Splits create outcomes into the `Attendees` and `Errors` lists of a batch response.
pub fn outcomes_json(
    call: &Call,
    outcomes: &[AttendeeOutcome],
) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let mut attendees = Vec::new();
    let mut errors = Vec::new();
    for outcome in outcomes {
        match outcome {
            AttendeeOutcome::Created(a) | AttendeeOutcome::Existing(a) => {
                attendees.push(attendee_json(call, a))
            }
            AttendeeOutcome::MeetingFull {
                external_user_id,
                cap,
            } => errors.push(error_entry(
                external_user_id.clone(),
                ErrorKind::LimitExceeded.code(call.namespace),
                meeting_full_message(*cap),
            )),
        }
    }
    (attendees, errors)
}

fn meeting_features(meeting: &crate::store::MeetingRecord) -> MeetingFeatures {
    meeting.features.clone().unwrap_or_default()
}

pub async fn create(state: &ApiState, call: &Call) -> Result<Reply, ApiError> {
    let meeting_id = call.meeting_id()?;
    let body: AttendeeItemIn = input::json_body(&call.body)?;
    let meeting = state
        .store
        .get_meeting(&call.account_id, &meeting_id)
        .await?;
    let new = attendee_item(
        call,
        "",
        &body,
        &meeting_features(&meeting),
        state.clock.now_unix(),
    )?;
    let outcomes = state
        .store
        .create_attendees(&call.account_id, &meeting_id, vec![new])
        .await?;
    match outcomes.into_iter().next() {
        Some(AttendeeOutcome::Created(a) | AttendeeOutcome::Existing(a)) => Ok(Reply::created(
            call,
            json!({ "Attendee": attendee_json(call, &a) }),
        )),
        Some(AttendeeOutcome::MeetingFull { cap, .. }) => Err(ApiError::new(
            ErrorKind::LimitExceeded,
            meeting_full_message(cap),
        )),
        None => Err(ApiError::service_failure()),
    }
}

pub async fn batch_create(state: &ApiState, call: &Call) -> Result<Reply, ApiError> {
    let meeting_id = call.meeting_id()?;
    let body: BatchCreateAttendeeIn = input::json_body(&call.body)?;
    let items = required("Attendees", &body.attendees)?;
    // The legacy model gives no bounds, but its documentation says "up to 100".
    validate::count("Attendees", items.len(), 1, 100)?;
    let meeting = state
        .store
        .get_meeting(&call.account_id, &meeting_id)
        .await?;
    let (valid, mut errors) = attendee_items(
        call,
        items,
        &meeting_features(&meeting),
        state.clock.now_unix(),
    )?;
    let outcomes = if valid.is_empty() {
        Vec::new()
    } else {
        state
            .store
            .create_attendees(&call.account_id, &meeting_id, valid)
            .await?
    };
    let (attendees, full) = outcomes_json(call, &outcomes);
    errors.extend(full);
    Ok(Reply::created(
        call,
        json!({ "Attendees": attendees, "Errors": errors }),
    ))
}

pub async fn get(state: &ApiState, call: &Call) -> Result<Reply, ApiError> {
    let meeting_id = call.meeting_id()?;
    let attendee_id = call.attendee_id()?;
    let attendee = state
        .store
        .get_attendee(&call.account_id, &meeting_id, &attendee_id)
        .await?;
    Ok(Reply::Json(
        StatusCode::OK,
        json!({ "Attendee": attendee_json(call, &attendee) }),
    ))
}

pub async fn list(state: &ApiState, call: &Call) -> Result<Reply, ApiError> {
    let meeting_id = call.meeting_id()?;
    let max = if call.is_legacy() { 99 } else { 100 };
    let limit = input::max_results(call.query("max-results"), max)?;
    let after = match call.query("next-token") {
        Some(token) => {
            if !call.is_legacy() {
                validate::length("NextToken", token, 0, 4096)?;
            }
            Some(
                state
                    .pages
                    .decode(PageKind::Attendees, &meeting_id, token)
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "NextToken is invalid, or was not issued for ListAttendees on this meeting",
                        )
                    })?,
            )
        }
        None => None,
    };
    // One row more than the page tells whether another page exists, so the last page never
    // carries a NextToken.
    let mut attendees = state
        .store
        .list_attendees(&call.account_id, &meeting_id, after.as_deref(), limit + 1)
        .await?;
    let more = attendees.len() > limit;
    attendees.truncate(limit);
    let next_token = match (more, attendees.last()) {
        (true, Some(last)) => Some(state.pages.encode(
            PageKind::Attendees,
            &meeting_id,
            &last.attendee_id,
        )),
        _ => None,
    };
    let page = AttendeePageOut {
        attendees: attendees.iter().map(|a| attendee_out(call, a)).collect(),
        next_token,
    };
    let body = serde_json::to_string(&page).map_err(|_| ApiError::service_failure())?;
    Ok(Reply::JsonText(StatusCode::OK, body))
}

pub async fn delete(state: &ApiState, call: &Call) -> Result<Reply, ApiError> {
    let meeting_id = call.meeting_id()?;
    let attendee_id = call.attendee_id()?;
    state
        .store
        .delete_attendee(&call.account_id, &meeting_id, &attendee_id)
        .await?;
    // The JoinToken is gone with the row; a connected client is removed now.
    state.events.attendee_deleted(&meeting_id, &attendee_id);
    Ok(Reply::Empty(StatusCode::NO_CONTENT))
}

/// The required `Capabilities` member, checked against the meeting's features.
async fn requested_capabilities(
    state: &ApiState,
    call: &Call,
    meeting_id: &str,
    capabilities: &Option<super::dto::CapabilitiesIn>,
) -> Result<crate::domain::capabilities::Capabilities, ApiError> {
    let caps = input::capabilities("Capabilities", required("Capabilities", capabilities)?)?;
    let meeting = state
        .store
        .get_meeting(&call.account_id, meeting_id)
        .await?;
    meeting_features(&meeting).check_capabilities(&caps)?;
    Ok(caps)
}

pub async fn update_capabilities(state: &ApiState, call: &Call) -> Result<Reply, ApiError> {
    let meeting_id = call.meeting_id()?;
    let attendee_id = call.attendee_id()?;
    let body: UpdateCapabilitiesIn = input::json_body(&call.body)?;
    let caps = requested_capabilities(state, call, &meeting_id, &body.capabilities).await?;
    let attendee = state
        .store
        .update_capabilities(&call.account_id, &meeting_id, &attendee_id, caps)
        .await?;
    Ok(Reply::Json(
        StatusCode::OK,
        json!({ "Attendee": attendee_json(call, &attendee) }),
    ))
}

pub async fn update_capabilities_except(state: &ApiState, call: &Call) -> Result<Reply, ApiError> {
    let meeting_id = call.meeting_id()?;
    let body: BatchUpdateCapabilitiesExceptIn = input::json_body(&call.body)?;
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
    let caps = requested_capabilities(state, call, &meeting_id, &body.capabilities).await?;
    state
        .store
        .update_capabilities_except(&call.account_id, &meeting_id, &excluded, caps)
        .await?;
    Ok(Reply::Empty(StatusCode::OK))
}
