//! Attendee operations: create (one or a batch), get, list, delete and capabilities.

use axum::body::Bytes;
use axum::http::StatusCode;
use serde_json::json;

use super::dto::{AttendeeItemIn, AttendeeOut, AttendeePageOut, CreateAttendeeErrorOut};
use super::error::{ApiError, ErrorKind};
use super::input;
use super::page_cache::{AttendeeKey, CacheKey, CachedPage, PageCache, PageKey};
use super::{ApiState, Call, Reply};
use crate::domain::capabilities::MeetingFeatures;
use crate::domain::tokens::{self, PageKind};
use crate::domain::{ids, validate};
use crate::events::CapabilityTarget;
use crate::store::{AttendeeOutcome, AttendeePage, AttendeeRecord, NewAttendee, VersionedAttendee};

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
    let item = input::attendee_item(call.is_legacy(), member, item, features)?;
    let attendee_id = ids::new_attendee_id();
    Ok(NewAttendee {
        join_token: tokens::new_join_token(&attendee_id),
        attendee_id,
        external_user_id: item.external_user_id,
        capabilities: item.capabilities,
        tags: item.tags,
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

/// The features of the caller's meeting (see [`super::meeting_features`]): remembered, or read
/// from the store, which answers NotFound for a meeting that is gone or another account's.
async fn meeting_features(
    state: &ApiState,
    call: &Call,
    meeting_id: &str,
) -> Result<MeetingFeatures, ApiError> {
    if let Some(features) = state.meeting_features.get(&call.account_id, meeting_id) {
        return Ok(features);
    }
    let meeting = state
        .store
        .get_meeting(&call.account_id, meeting_id)
        .await?;
    let features = meeting.features.unwrap_or_default();
    state
        .meeting_features
        .insert(&call.account_id, meeting_id, features.clone());
    Ok(features)
}

pub async fn create(state: &ApiState, call: &Call) -> Result<Reply, ApiError> {
    let meeting_id = call.meeting_id()?;
    let body: AttendeeItemIn = input::json_body(&call.body)?;
    let features = meeting_features(state, call, &meeting_id).await?;
    let new = attendee_item(call, "", &body, &features, state.clock.now_unix())?;
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
    let items = input::batch_create_attendee(&call.body)?;
    let features = meeting_features(state, call, &meeting_id).await?;
    let (valid, mut errors) = attendee_items(call, &items, &features, state.clock.now_unix())?;
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

/// The cached body for `key`, if no write (through any node sharing the store) has changed the
/// meeting's attendees since it was read. The version lookup is the account check too: a
/// meeting of another account, or one gone, is an error and its entry is dropped.
async fn fresh<K: CacheKey>(
    state: &ApiState,
    cache: &PageCache<K>,
    key: &K,
) -> Result<Option<Bytes>, ApiError> {
    let hit = match cache.get(key) {
        Some(cached) => {
            let (account_id, meeting_id) = key.meeting();
            let current = state
                .store
                .attendees_version(account_id, meeting_id)
                .await
                .inspect_err(|_| cache.remove(key))?;
            (current == cached.version).then_some(cached.body)
        }
        None => None,
    };
    cache.count(hit.is_some());
    Ok(hit)
}

pub async fn get(state: &ApiState, call: &Call) -> Result<Reply, ApiError> {
    let key = AttendeeKey {
        account_id: call.account_id.clone(),
        namespace: call.namespace,
        meeting_id: call.meeting_id()?,
        attendee_id: call.attendee_id()?,
    };
    if let Some(body) = fresh(state, &state.attendee_cache, &key).await? {
        return Ok(Reply::JsonText(StatusCode::OK, body));
    }
    let VersionedAttendee { version, attendee } = state
        .store
        .get_attendee_versioned(&key.account_id, &key.meeting_id, &key.attendee_id)
        .await
        .inspect_err(|_| state.attendee_cache.remove(&key))?;
    // The same Value, printed the same way, as an uncached answer would be.
    let json = json!({ "Attendee": attendee_json(call, &attendee) });
    let body = Bytes::from(serde_json::to_vec(&json).map_err(|_| ApiError::service_failure())?);
    state.attendee_cache.insert(
        key,
        CachedPage {
            version,
            body: body.clone(),
        },
    );
    Ok(Reply::JsonText(StatusCode::OK, body))
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
    let key = PageKey {
        account_id: call.account_id.clone(),
        namespace: call.namespace,
        meeting_id,
        after,
        limit,
    };
    if let Some(body) = fresh(state, &state.list_cache, &key).await? {
        return Ok(Reply::JsonText(StatusCode::OK, body));
    }
    // One row more than the page tells whether another page exists, so the last page never
    // carries a NextToken.
    let AttendeePage {
        version,
        mut attendees,
    } = state
        .store
        .list_attendees_versioned(
            &key.account_id,
            &key.meeting_id,
            key.after.as_deref(),
            limit + 1,
        )
        .await?;
    let more = attendees.len() > limit;
    attendees.truncate(limit);
    let next_token = match (more, attendees.last()) {
        (true, Some(last)) => Some(state.pages.encode(
            PageKind::Attendees,
            &key.meeting_id,
            &last.attendee_id,
        )),
        _ => None,
    };
    let page = AttendeePageOut {
        attendees: attendees.iter().map(|a| attendee_out(call, a)).collect(),
        next_token,
    };
    let mut json = serde_json::to_vec(&page).map_err(|_| ApiError::service_failure())?;
    // Bytes keeps the Vec's whole allocation: trimmed, the cache's byte budget counts what it
    // really holds.
    json.shrink_to_fit();
    let body = Bytes::from(json);
    // The version was read with the rows, in one snapshot, so the entry is never newer than
    // what it shows.
    state.list_cache.insert(
        key,
        CachedPage {
            version,
            body: body.clone(),
        },
    );
    Ok(Reply::JsonText(StatusCode::OK, body))
}

pub async fn delete(state: &ApiState, call: &Call) -> Result<Reply, ApiError> {
    let meeting_id = call.meeting_id()?;
    let attendee_id = call.attendee_id()?;
    state
        .store
        .delete_attendee(
            &call.account_id,
            &meeting_id,
            &attendee_id,
            state.clock.now_unix(),
        )
        .await?;
    // The JoinToken is gone with the row; a connected client is removed now.
    state.events.attendee_deleted(&meeting_id, &attendee_id);
    Ok(Reply::Empty(StatusCode::NO_CONTENT))
}

/// Requested capabilities, checked against the features of the meeting.
async fn allowed_capabilities(
    state: &ApiState,
    call: &Call,
    meeting_id: &str,
    caps: crate::domain::capabilities::Capabilities,
) -> Result<crate::domain::capabilities::Capabilities, ApiError> {
    meeting_features(state, call, meeting_id)
        .await?
        .check_capabilities(&caps)?;
    Ok(caps)
}

pub async fn update_capabilities(state: &ApiState, call: &Call) -> Result<Reply, ApiError> {
    let meeting_id = call.meeting_id()?;
    let attendee_id = call.attendee_id()?;
    let caps = input::update_capabilities(&call.body)?;
    let caps = allowed_capabilities(state, call, &meeting_id, caps).await?;
    let attendee = state
        .store
        .update_capabilities(&call.account_id, &meeting_id, &attendee_id, caps)
        .await?;
    state.events.capabilities_changed(
        &meeting_id,
        &CapabilityTarget::Attendee(attendee_id.clone()),
        caps,
    );
    Ok(Reply::Json(
        StatusCode::OK,
        json!({ "Attendee": attendee_json(call, &attendee) }),
    ))
}

pub async fn update_capabilities_except(state: &ApiState, call: &Call) -> Result<Reply, ApiError> {
    let meeting_id = call.meeting_id()?;
    let (excluded, caps) = input::update_capabilities_except(&call.body)?;
    let caps = allowed_capabilities(state, call, &meeting_id, caps).await?;
    state
        .store
        .update_capabilities_except(&call.account_id, &meeting_id, &excluded, caps)
        .await?;
    state
        .events
        .capabilities_changed(&meeting_id, &CapabilityTarget::AllExcept(excluded), caps);
    Ok(Reply::Empty(StatusCode::OK))
}
