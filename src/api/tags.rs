//! Tag operations: on MeetingArns (both namespaces), and on meeting and attendee paths (legacy).

use axum::http::StatusCode;
use serde_json::json;

use super::dto::TagOut;
use super::error::ApiError;
use super::input;
use super::operation::Operation;
use super::{ApiState, Call, Reply};
use crate::store::{StoreError, Tag, TagTarget};

const MEETING_TAG_LIMIT: usize = 50;
const ATTENDEE_TAG_LIMIT: usize = 10;

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

fn meeting_target(call: &Call, resource_arn: &str) -> Result<TagTarget, ApiError> {
    input::meeting_target(call.is_legacy(), &call.account_id, resource_arn)
}

/// Maps the store's not-found and tag-limit errors onto the ARN-addressed shapes.
fn for_arn(resource_arn: &str) -> impl Fn(StoreError) -> ApiError + '_ {
    move |error| match error {
        StoreError::MeetingNotFound => input::resource_not_found(resource_arn),
        other => ApiError::from(other).with_resource(resource_arn),
    }
}

pub async fn tag_resource(state: &ApiState, call: &Call) -> Result<Reply, ApiError> {
    let input = input::tag_resource(
        &call.body,
        call.is_legacy(),
        &call.account_id,
        MEETING_TAG_LIMIT,
    )?;
    state
        .store
        .tag(
            &call.account_id,
            &input.target,
            input.tags,
            MEETING_TAG_LIMIT,
        )
        .await
        .map_err(for_arn(&input.resource_arn))?;
    Ok(Reply::Empty(StatusCode::NO_CONTENT))
}

pub async fn untag_resource(state: &ApiState, call: &Call) -> Result<Reply, ApiError> {
    let input = input::untag_resource(
        &call.body,
        call.is_legacy(),
        &call.account_id,
        MEETING_TAG_LIMIT,
    )?;
    state
        .store
        .untag(&call.account_id, &input.target, input.tags)
        .await
        .map_err(for_arn(&input.resource_arn))?;
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
    let tags = input::tag_path(&call.body, limit)?;
    state
        .store
        .tag(&call.account_id, &target, tags, limit)
        .await?;
    Ok(Reply::Empty(StatusCode::NO_CONTENT))
}

pub async fn untag_path(state: &ApiState, call: &Call) -> Result<Reply, ApiError> {
    let (target, limit) = path_target(call)?;
    let keys = input::untag_path(&call.body, call.is_legacy(), limit)?;
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
