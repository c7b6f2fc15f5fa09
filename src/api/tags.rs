//! Tag operations: on MeetingArns (both namespaces), and on meeting and attendee paths (legacy).

use axum::http::StatusCode;
use serde_json::json;

use super::dto::{TagOut, TagsIn};
use super::error::{ApiError, ErrorKind};
use super::input::{self, TagRules, required};
use super::operation::Operation;
use super::{ApiState, Call, Reply};
use crate::domain::{arn, validate};
use crate::store::{StoreError, Tag, TagTarget};

const MEETING_TAG_LIMIT: usize = 50;
const ATTENDEE_TAG_LIMIT: usize = 10;

fn rules(call: &Call) -> TagRules {
    if call.is_legacy() {
        TagRules::Legacy
    } else {
        TagRules::Meetings
    }
}

fn tags_json(tags: &[Tag]) -> serde_json::Value {
    json!(
        tags.iter()
            .map(|t| TagOut {
                key: t.key.clone(),
                value: t.value.clone()
            })
            .collect::<Vec<_>>()
    )
}

/// Checks a ResourceARN against its namespace's model and resolves it to one of the caller's
/// meetings; any other ARN names no resource here.
fn meeting_target(call: &Call, resource_arn: &str) -> Result<TagTarget, ApiError> {
    if call.is_legacy() {
        validate::arn("ResourceARN", resource_arn)?;
    } else {
        validate::amazon_resource_name("ResourceARN", resource_arn)?;
    }
    match arn::parse_meeting_arn(resource_arn) {
        Some(parsed) if parsed.account == call.account_id => {
            Ok(TagTarget::Meeting(parsed.meeting_id))
        }
        _ => Err(resource_not_found(resource_arn)),
    }
}

fn resource_not_found(resource_arn: &str) -> ApiError {
    ApiError::new(
        ErrorKind::ResourceNotFound,
        format!("Resource {resource_arn} was not found"),
    )
    .with_resource(resource_arn)
}

/// Maps the store's not-found and tag-limit errors onto the ARN-addressed shapes.
fn for_arn(resource_arn: &str) -> impl Fn(StoreError) -> ApiError + '_ {
    move |error| match error {
        StoreError::MeetingNotFound => resource_not_found(resource_arn),
        other => ApiError::from(other).with_resource(resource_arn),
    }
}

fn checked_tags(call: &Call, body: &TagsIn) -> Result<Vec<Tag>, ApiError> {
    let tags = required("Tags", &body.tags)?;
    let min = if call.is_legacy() { 1 } else { 0 };
    validate::count("Tags", tags.len(), min, MEETING_TAG_LIMIT)?;
    input::tags("Tags", tags, rules(call))
}

fn checked_keys(call: &Call, body: &TagsIn, max: usize) -> Result<Vec<String>, ApiError> {
    let keys = required("TagKeys", &body.tag_keys)?;
    let min = if call.is_legacy() { 1 } else { 0 };
    validate::count("TagKeys", keys.len(), min, max)?;
    input::tag_keys("TagKeys", keys, rules(call))?;
    Ok(keys.clone())
}

pub async fn tag_resource(state: &ApiState, call: &Call) -> Result<Reply, ApiError> {
    let body: TagsIn = input::json_body(&call.body)?;
    let resource_arn = required("ResourceARN", &body.resource_arn)?;
    let target = meeting_target(call, resource_arn)?;
    let tags = checked_tags(call, &body)?;
    state
        .store
        .tag(&call.account_id, &target, tags, MEETING_TAG_LIMIT)
        .await
        .map_err(for_arn(resource_arn))?;
    Ok(Reply::Empty(StatusCode::NO_CONTENT))
}

pub async fn untag_resource(state: &ApiState, call: &Call) -> Result<Reply, ApiError> {
    let body: TagsIn = input::json_body(&call.body)?;
    let resource_arn = required("ResourceARN", &body.resource_arn)?;
    let target = meeting_target(call, resource_arn)?;
    let keys = checked_keys(call, &body, MEETING_TAG_LIMIT)?;
    state
        .store
        .untag(&call.account_id, &target, keys)
        .await
        .map_err(for_arn(resource_arn))?;
    Ok(Reply::Empty(StatusCode::NO_CONTENT))
}

pub async fn list_tags_for_resource(state: &ApiState, call: &Call) -> Result<Reply, ApiError> {
    let resource_arn = call
        .query("arn")
        .ok_or_else(|| ApiError::bad_request("ResourceARN (query parameter arn) is required"))?;
    let target = meeting_target(call, resource_arn)?;
    let tags = state
        .store
        .list_tags(&call.account_id, &target)
        .await
        .map_err(for_arn(resource_arn))?;
    Ok(Reply::Json(
        StatusCode::OK,
        json!({ "Tags": tags_json(&tags) }),
    ))
}

/// The legacy path-addressed target: a meeting, or an attendee of it.
fn path_target(call: &Call) -> Result<(TagTarget, usize), ApiError> {
    let meeting_id = call.meeting_id()?;
    match call.route.operation {
        Operation::TagAttendee | Operation::UntagAttendee | Operation::ListAttendeeTags => Ok((
            TagTarget::Attendee(meeting_id, call.attendee_id()?),
            ATTENDEE_TAG_LIMIT,
        )),
        _ => Ok((TagTarget::Meeting(meeting_id), MEETING_TAG_LIMIT)),
    }
}

pub async fn tag_path(state: &ApiState, call: &Call) -> Result<Reply, ApiError> {
    let (target, limit) = path_target(call)?;
    let body: TagsIn = input::json_body(&call.body)?;
    let tags = required("Tags", &body.tags)?;
    validate::count("Tags", tags.len(), 1, limit)?;
    let tags = input::tags("Tags", tags, TagRules::Legacy)?;
    state
        .store
        .tag(&call.account_id, &target, tags, limit)
        .await?;
    Ok(Reply::Empty(StatusCode::NO_CONTENT))
}

pub async fn untag_path(state: &ApiState, call: &Call) -> Result<Reply, ApiError> {
    let (target, limit) = path_target(call)?;
    let body: TagsIn = input::json_body(&call.body)?;
    let keys = checked_keys(call, &body, limit)?;
    state.store.untag(&call.account_id, &target, keys).await?;
    Ok(Reply::Empty(StatusCode::NO_CONTENT))
}

pub async fn list_path(state: &ApiState, call: &Call) -> Result<Reply, ApiError> {
    let (target, _) = path_target(call)?;
    let tags = state.store.list_tags(&call.account_id, &target).await?;
    Ok(Reply::Json(
        StatusCode::OK,
        json!({ "Tags": tags_json(&tags) }),
    ))
}
