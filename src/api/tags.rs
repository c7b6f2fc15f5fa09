//! Tag operations: on MeetingArns (both namespaces), on meeting and attendee paths (legacy),
//! and on media pipeline ARNs (the media pipelines API's, on the same paths as the meetings
//! API's).

use axum::http::StatusCode;
use serde_json::json;

use super::dto::{TagIn, TagOut, TagsIn};
use super::error::ApiError;
use super::input::{self, TagRules};
use super::operation::Operation;
use super::{ApiState, Call, Namespace, Reply};
use crate::domain::arn::parse_media_pipeline_arn;
use crate::domain::validate;
use crate::store::{StoreError, Tag, TagTarget};

const MEETING_TAG_LIMIT: usize = 50;
const ATTENDEE_TAG_LIMIT: usize = 10;
/// The tags one media pipeline can have (AWS's quota for the API's resources).
const PIPELINE_TAG_LIMIT: usize = 50;
/// The media pipelines model's `TagList` and `TagKeyList` bounds.
const PIPELINE_TAG_LIST_MAX: usize = 200;

/// Which API a request to a tag operation on an ARN speaks. The media pipelines API's
/// TagResource, UntagResource and ListTagsForResource have the very paths of the meetings API's,
/// so only their ResourceARN tells them apart: one of the media pipelines API's resources
/// (`arn:aws:chime:<region>:<account>:media-…`) makes the request that API's, answered in its
/// words. A request whose ARN cannot be read stays where its path put it, which says why.
pub fn namespace_of_resource(
    namespace: Namespace,
    operation: Operation,
    query: &[(String, String)],
    body: &[u8],
) -> Namespace {
    if namespace != Namespace::Meetings {
        return namespace;
    }
    let arn = match operation {
        Operation::ListTagsForResource => query
            .iter()
            .find(|(name, _)| name == "arn")
            .map(|(_, value)| value.clone()),
        Operation::TagResource | Operation::UntagResource => {
            serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|body| Some(body.get("ResourceARN")?.as_str()?.to_string()))
        }
        _ => None,
    };
    if arn.is_some_and(|arn| is_media_pipelines_resource(&arn)) {
        Namespace::MediaPipelines
    } else {
        namespace
    }
}

/// Whether an ARN names a resource of the media pipelines API (a media pipeline, or one of the
/// resources Carillon does not implement: insights configurations, stream pools).
fn is_media_pipelines_resource(arn: &str) -> bool {
    let mut parts = arn.splitn(6, ':');
    parts.next() == Some("arn")
        && parts.nth(1) == Some("chime")
        && parts
            .nth(2)
            .is_some_and(|resource| resource.starts_with("media-"))
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
    if call.namespace == Namespace::MediaPipelines {
        return tag_pipeline(state, call).await;
    }
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
    if call.namespace == Namespace::MediaPipelines {
        return untag_pipeline(state, call).await;
    }
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
    if call.namespace == Namespace::MediaPipelines {
        return list_pipeline_tags(state, call, resource_arn).await;
    }
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

/// The `Tags` of CreateMediaCapturePipeline and CreateMediaConcatenationPipeline: none, or as
/// many as a pipeline can have.
pub fn pipeline_tags_at_create(tags: &Option<Vec<TagIn>>) -> Result<Vec<Tag>, ApiError> {
    let Some(tags) = tags else {
        return Ok(Vec::new());
    };
    let tags = pipeline_tag_list(tags)?;
    if tags.len() > PIPELINE_TAG_LIMIT {
        return Err(too_many_pipeline_tags(PIPELINE_TAG_LIMIT));
    }
    Ok(tags)
}

/// A media pipelines `TagList`: 1..200 tags, keys 1..128 and values 0..256 characters, each
/// key once.
fn pipeline_tag_list(tags: &[TagIn]) -> Result<Vec<Tag>, ApiError> {
    validate::count("Tags", tags.len(), 1, PIPELINE_TAG_LIST_MAX)?;
    input::tags("Tags", tags, TagRules::MediaPipelines)
}

/// The model lists no tag-limit error for the media pipelines API's operations: too many tags
/// is bad input.
fn too_many_pipeline_tags(limit: usize) -> ApiError {
    ApiError::bad_request(format!(
        "A media pipeline can have at most {limit} tags; remove some (UntagResource) first"
    ))
}

fn pipeline_not_found(resource_arn: &str) -> ApiError {
    ApiError::not_found(format!("The media pipeline {resource_arn} was not found"))
}

/// The id of the caller's media pipeline that a ResourceARN (the model's `AmazonResourceName`)
/// names; NotFound for any other resource, this API's or not.
fn pipeline_id(call: &Call, resource_arn: &str) -> Result<String, ApiError> {
    validate::length("ResourceARN", resource_arn, 1, 1011)?;
    validate::arn("ResourceARN", resource_arn)?;
    parse_media_pipeline_arn(resource_arn)
        .filter(|(account, _)| *account == call.account_id)
        .map(|(_, id)| id)
        .ok_or_else(|| pipeline_not_found(resource_arn))
}

/// The store's errors for a media pipeline's tags, in that API's words.
fn for_pipeline(resource_arn: &str) -> impl Fn(StoreError) -> ApiError + '_ {
    move |error| match error {
        StoreError::PipelineNotFound => pipeline_not_found(resource_arn),
        StoreError::TooManyTags { limit } => too_many_pipeline_tags(limit),
        other => other.into(),
    }
}

/// TagResource on a media pipeline: a key it already has takes the new value.
async fn tag_pipeline(state: &ApiState, call: &Call) -> Result<Reply, ApiError> {
    let body: TagsIn = input::json_body(&call.body)?;
    let resource_arn = input::required("ResourceARN", &body.resource_arn)?;
    let tags = pipeline_tag_list(input::required("Tags", &body.tags)?)?;
    let id = pipeline_id(call, resource_arn)?;
    state
        .store
        .change_media_pipeline_tags(&call.account_id, &id, tags, Vec::new(), PIPELINE_TAG_LIMIT)
        .await
        .map_err(for_pipeline(resource_arn))?;
    Ok(Reply::Empty(StatusCode::NO_CONTENT))
}

/// UntagResource on a media pipeline: keys it does not have are no error.
async fn untag_pipeline(state: &ApiState, call: &Call) -> Result<Reply, ApiError> {
    let body: TagsIn = input::json_body(&call.body)?;
    let resource_arn = input::required("ResourceARN", &body.resource_arn)?;
    let keys = input::required("TagKeys", &body.tag_keys)?;
    validate::count("TagKeys", keys.len(), 1, PIPELINE_TAG_LIST_MAX)?;
    input::tag_keys("TagKeys", keys, TagRules::MediaPipelines)?;
    let id = pipeline_id(call, resource_arn)?;
    state
        .store
        .change_media_pipeline_tags(
            &call.account_id,
            &id,
            Vec::new(),
            keys.clone(),
            PIPELINE_TAG_LIMIT,
        )
        .await
        .map_err(for_pipeline(resource_arn))?;
    Ok(Reply::Empty(StatusCode::NO_CONTENT))
}

async fn list_pipeline_tags(
    state: &ApiState,
    call: &Call,
    resource_arn: &str,
) -> Result<Reply, ApiError> {
    let id = pipeline_id(call, resource_arn)?;
    let record = state
        .store
        .get_media_pipeline(&call.account_id, &id)
        .await
        .map_err(for_pipeline(resource_arn))?;
    Ok(Reply::Json(
        StatusCode::OK,
        json!({ "Tags": tags_json(&record.tags()) }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &[(&str, &str)]) -> Vec<(String, String)> {
        query
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn a_media_pipelines_resource_arn_makes_a_request_of_that_api() {
        let pipeline = "arn:aws:chime:us-east-1:111122223333:media-pipeline/\
                        0b6d8a6e-5f0c-4b4c-9a43-1a2b3c4d5e6f";
        let meeting = "arn:aws:chime:us-east-1:111122223333:meeting/\
                       0b6d8a6e-5f0c-4b4c-9a43-1a2b3c4d5e6f";
        let ns = |namespace, operation, query: &[(&str, &str)], body: &str| {
            namespace_of_resource(namespace, operation, &pairs(query), body.as_bytes())
        };
        let listed = |arn| {
            ns(
                Namespace::Meetings,
                Operation::ListTagsForResource,
                &[("arn", arn)],
                "",
            )
        };
        assert_eq!(listed(pipeline), Namespace::MediaPipelines);
        assert_eq!(
            listed("arn:aws:chime:us-east-1:1:media-insights-pipeline-configuration/x"),
            Namespace::MediaPipelines
        );
        assert_eq!(listed(meeting), Namespace::Meetings);
        assert_eq!(listed("arn:aws:s3:::media-bucket"), Namespace::Meetings);
        let body = json!({"ResourceARN": pipeline, "TagKeys": ["k"]}).to_string();
        for operation in [Operation::TagResource, Operation::UntagResource] {
            assert_eq!(
                ns(Namespace::Meetings, operation, &[], &body),
                Namespace::MediaPipelines
            );
            assert_eq!(
                ns(Namespace::Meetings, operation, &[], "{not json"),
                Namespace::Meetings
            );
        }
        // The legacy API's tag operations are its own, whatever they name.
        assert_eq!(
            ns(Namespace::Legacy, Operation::TagResource, &[], &body),
            Namespace::Legacy
        );
    }

    #[test]
    fn create_takes_up_to_fifty_tags_with_empty_values() {
        let tag = |i: usize| TagIn {
            key: Some(format!("key-{i}")),
            value: Some(String::new()),
        };
        assert_eq!(pipeline_tags_at_create(&None), Ok(vec![]));
        let fifty: Vec<TagIn> = (0..50).map(tag).collect();
        assert_eq!(
            pipeline_tags_at_create(&Some(fifty)).map(|t| t.len()),
            Ok(50)
        );
        let too_many =
            pipeline_tags_at_create(&Some((0..51).map(tag).collect())).expect_err("51 tags");
        assert!(
            too_many.message.contains("at most 50"),
            "{}",
            too_many.message
        );
        assert!(
            pipeline_tags_at_create(&Some(vec![])).is_err(),
            "TagList has min 1"
        );
        let long_key = TagIn {
            key: Some("k".repeat(129)),
            value: Some("v".into()),
        };
        assert!(pipeline_tags_at_create(&Some(vec![long_key])).is_err());
    }
}
