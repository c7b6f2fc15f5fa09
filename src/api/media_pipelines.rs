//! The media pipelines API's capture and concatenation operations (issue 26): a capture
//! pipeline records a meeting's mixed audio into a bucket while the meeting runs; a
//! concatenation pipeline joins a finished capture's chunks into one file.
//!
//! What is recorded (see `crate::recording`): under `<bucket>/<prefix or pipeline id>/`, the
//! audio mix as 5 s Opus-in-MP4 chunks in `audio/`, each camera and content share as 5 s VP8
//! WebM chunks in `video/`, and `meeting-events/` and `data-channel/` as JSON-lines text. Mixes
//! of audio with video in one file (active speaker, composited) are refused with a message that
//! says so, rather than accepted and silently left out.

use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::dto::TagIn;
use super::error::{ApiError, ErrorKind};
use super::input::{self, json_body, required};
use super::operation::Operation;
use super::tags::pipeline_tags_at_create;
use super::{ApiState, Call, Reply};
use crate::domain::arn::{
    media_pipeline_arn, parse_bucket_arn, parse_legacy_meeting_arn, parse_media_pipeline_arn,
    parse_meeting_arn,
};
use crate::domain::civil::iso8601_millis;
use crate::domain::tokens::PageKind;
use crate::domain::validate;
use crate::recording::pipelines::{CAPTURE_SINK_MEMBER, capture_target, status};
use crate::store::{MediaPipelineRecord, PipelineCreated, StoreError, Tag};

/// The model's `ResultMax`.
const MAX_RESULTS: i64 = 100;
/// The legacy model's `ResultMax`.
const LEGACY_MAX_RESULTS: i64 = 99;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateCaptureIn {
    pub source_type: Option<String>,
    pub source_arn: Option<String>,
    pub sink_type: Option<String>,
    pub sink_arn: Option<String>,
    pub client_request_token: Option<String>,
    pub chime_sdk_meeting_configuration: Option<Value>,
    pub sse_aws_key_management_params: Option<Value>,
    pub sink_iam_role_arn: Option<String>,
    pub tags: Option<Vec<TagIn>>,
}

/// A CreateMediaCapturePipeline request that passed the model's checks and Carillon's.
struct CaptureRequest {
    request: CreateCaptureIn,
    meeting_id: String,
    source_arn: String,
    sink_arn: String,
    tags: Vec<Tag>,
}

/// Checks the request's members against its API's model (the media pipelines API's, or the
/// legacy `chime` API's), then what Carillon records and where.
fn capture_request(call: &Call) -> Result<CaptureRequest, ApiError> {
    let mut request: CreateCaptureIn = json_body(&call.body)?;
    if call.is_legacy() {
        // Members the legacy model does not have: ignored, as any member a model lacks is.
        request.sse_aws_key_management_params = None;
        request.sink_iam_role_arn = None;
        request.tags = None;
    }
    let source_type = required("SourceType", &request.source_type)?;
    validate::one_of("SourceType", source_type, &["ChimeSdkMeeting"])?;
    let source_arn = required("SourceArn", &request.source_arn)?.clone();
    validate::arn("SourceArn", &source_arn)?;
    let sink_type = required("SinkType", &request.sink_type)?;
    validate::one_of("SinkType", sink_type, &["S3Bucket"])?;
    let sink_arn = required("SinkArn", &request.sink_arn)?.clone();
    validate::arn("SinkArn", &sink_arn)?;
    if let Some(token) = &request.client_request_token {
        validate::client_request_token(token)?;
    }
    if let Some(role) = &request.sink_iam_role_arn {
        validate::arn("SinkIamRoleArn", role)?;
    }
    let tags = pipeline_tags_at_create(&request.tags)?;
    if let Some(configuration) = &request.chime_sdk_meeting_configuration {
        meeting_configuration(configuration)?;
    }
    let account = &call.account_id;
    // The legacy API's callers also write the global form of its documentation.
    let (meeting, forms) = if call.is_legacy() {
        (
            parse_legacy_meeting_arn(&source_arn),
            format!(
                "arn:aws:chime::{account}:meeting:<MeetingId> or \
                 arn:aws:chime:<region>:{account}:meeting/<MeetingId>"
            ),
        )
    } else {
        (
            parse_meeting_arn(&source_arn),
            format!("arn:aws:chime:<region>:{account}:meeting/<MeetingId>"),
        )
    };
    let meeting = meeting
        .filter(|arn| arn.account == *account)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "SourceArn must be the ARN of one of this account's meetings ({forms}), not \
                 '{source_arn}'"
            ))
        })?;
    if parse_bucket_arn(&sink_arn).is_none() {
        return Err(ApiError::bad_request(format!(
            "SinkArn must be an S3 bucket ARN (arn:aws:s3:::<bucket>[/<prefix>]) with a valid \
             bucket name, not '{sink_arn}'"
        )));
    }
    Ok(CaptureRequest {
        request,
        meeting_id: meeting.meeting_id,
        source_arn,
        sink_arn,
        tags,
    })
}

/// CreateMediaCapturePipeline, of either API: the same pipelines, recorded the same way.
pub async fn create_capture(state: &ApiState, call: &Call) -> Result<Reply, ApiError> {
    let CaptureRequest {
        request,
        meeting_id,
        source_arn,
        sink_arn,
        tags,
    } = capture_request(call)?;
    let meeting = match state.store.get_meeting(&call.account_id, &meeting_id).await {
        Ok(meeting) => meeting,
        // The model lists no NotFound for Create.
        Err(StoreError::MeetingNotFound) => {
            return Err(ApiError::bad_request(format!(
                "The meeting {meeting_id} was not found (it may have ended)"
            )));
        }
        Err(error) => return Err(error.into()),
    };
    check_bucket(state, "SinkArn", &sink_arn).await?;
    let now = state.clock.now_ms();
    let record = MediaPipelineRecord {
        account_id: call.account_id.clone(),
        media_pipeline_id: crate::domain::ids::new_id(),
        kind: MediaPipelineRecord::CAPTURE.to_string(),
        client_request_token: request.client_request_token,
        control_region: call.region.clone(),
        source_arn,
        meeting_id: Some(meeting_id.clone()),
        sink_arn,
        status: status::INITIALIZING.to_string(),
        configuration: json!({
            "ChimeSdkMeetingConfiguration": request.chime_sdk_meeting_configuration,
            "SseAwsKeyManagementParams": request.sse_aws_key_management_params,
            "SinkIamRoleArn": request.sink_iam_role_arn,
            MediaPipelineRecord::TAGS: tags_member(&tags),
            MediaPipelineRecord::MEETING_FACTS: {
                "ExternalMeetingId": meeting.external_meeting_id,
                "MediaRegion": meeting.media_region,
                "NotificationsConfiguration": meeting.notifications,
            },
        }),
        created_at: now,
        updated_at: now,
    };
    let stored = match state.store.create_media_pipeline(record).await {
        Ok(PipelineCreated::New(record)) => {
            if let Some(target) = capture_target(&record) {
                state.recorders.start(&record, target);
            }
            record
        }
        Ok(PipelineCreated::Existing(record)) => record,
        Err(StoreError::PipelineConflict) => {
            return Err(ApiError::new(
                ErrorKind::LimitExceeded,
                format!(
                    "The meeting {meeting_id} already has a media capture pipeline that is not \
                     stopped; a meeting can have one at a time"
                ),
            ));
        }
        Err(error) => return Err(error.into()),
    };
    Ok(Reply::Json(
        StatusCode::CREATED,
        json!({ "MediaCapturePipeline": capture_json(&stored, call.is_legacy()) }),
    ))
}

/// The stored configuration's [`MediaPipelineRecord::TAGS`] member of a new pipeline: none
/// (null, as the other members not given) without tags.
fn tags_member(tags: &[Tag]) -> Option<Value> {
    (!tags.is_empty()).then(|| MediaPipelineRecord::tags_json(tags))
}

/// Refuses a bucket that the recording sink does not have, before anything is stored: a
/// pipeline into it would fail at its first chunk, after its Create had been accepted. A store
/// that cannot be asked now is a 503, which the SDKs retry; a store that refuses to answer
/// (wrong credentials, no access to the bucket) is the configuration's fault, a 400 that says so.
async fn check_bucket(state: &ApiState, member: &str, bucket_arn: &str) -> Result<(), ApiError> {
    // The ARN was validated with the request; nothing to check without a bucket.
    let Some(bucket) = parse_bucket_arn(bucket_arn).map(|arn| arn.bucket) else {
        return Ok(());
    };
    let sink = state.recorders.sink();
    match sink.bucket_exists(&bucket).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(ApiError::bad_request(format!(
            "The S3 bucket \"{bucket}\" of {member} does not exist in {}. Create it there \
             first.",
            sink.describe()
        ))),
        Err(error) if error.is_permanent() => Err(ApiError::bad_request(format!(
            "The S3 bucket \"{bucket}\" of {member} cannot be used in {}: {error}",
            sink.describe()
        ))),
        Err(error) => {
            tracing::warn!(%error, "the recording sink could not say whether a bucket exists");
            Err(ApiError::new(
                ErrorKind::ServiceUnavailable,
                format!(
                    "{} could not be asked whether the S3 bucket \"{bucket}\" of {member} \
                     exists; try again later ({error})",
                    capitalized(&sink.describe())
                ),
            ))
        }
    }
}

/// `text` with its first letter upper-case, to begin a sentence.
fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Checks `ChimeSdkMeetingConfiguration` against the model, and refuses what Carillon does not
/// record: the mixes of audio with video in one file (active speaker, composited).
fn meeting_configuration(configuration: &Value) -> Result<(), ApiError> {
    let not_yet = |what: &str| {
        ApiError::bad_request(format!(
            "{what} is not supported by Carillon: it records the meeting's audio \
             (ArtifactsConfiguration.Audio.MuxType AudioOnly), and each camera and content \
             share in files of its own (Video.MuxType VideoOnly, Content.MuxType ContentOnly)"
        ))
    };
    if let Some(source) = configuration.get("SourceConfiguration") {
        selected_video_streams(source)?;
    }
    let Some(artifacts) = configuration.get("ArtifactsConfiguration") else {
        return Ok(());
    };
    let artifact = |name: &str, mux_types: &[&str]| -> Result<(), ApiError> {
        let member = format!("ChimeSdkMeetingConfiguration.ArtifactsConfiguration.{name}");
        let Some(artifact) = artifacts.get(name) else {
            return Err(ApiError::bad_request(format!("{member} is required")));
        };
        let state = artifact
            .get("State")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::bad_request(format!("{member}.State is required")))?;
        validate::one_of(&format!("{member}.State"), state, &["Enabled", "Disabled"])?;
        if let Some(mux) = artifact.get("MuxType") {
            let mux = mux.as_str().unwrap_or_default();
            validate::one_of(&format!("{member}.MuxType"), mux, mux_types)?;
        }
        Ok(())
    };
    let mux_member = "ChimeSdkMeetingConfiguration.ArtifactsConfiguration.Audio.MuxType";
    let mux = artifacts
        .get("Audio")
        .and_then(|audio| audio.get("MuxType"))
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request(format!("{mux_member} is required")))?;
    validate::one_of(
        mux_member,
        mux,
        &[
            "AudioOnly",
            "AudioWithActiveSpeakerVideo",
            "AudioWithCompositedVideo",
        ],
    )?;
    artifact("Video", &["VideoOnly"])?;
    artifact("Content", &["ContentOnly"])?;
    if mux != "AudioOnly" {
        return Err(not_yet(&format!("Audio.MuxType {mux}")));
    }
    if artifacts.get("CompositedVideo").is_some() {
        return Err(not_yet("CompositedVideo"));
    }
    Ok(())
}

/// `SourceConfiguration.SelectedVideoStreams`: attendee ids and external user ids, each list
/// non-empty when given, 25 streams at most in all.
fn selected_video_streams(source: &Value) -> Result<(), ApiError> {
    let Some(streams) = source.get("SelectedVideoStreams") else {
        return Ok(());
    };
    let member = "ChimeSdkMeetingConfiguration.SourceConfiguration.SelectedVideoStreams";
    let list = |name: &str| -> Result<Vec<String>, ApiError> {
        let Some(value) = streams.get(name) else {
            return Ok(Vec::new());
        };
        let items = value
            .as_array()
            .ok_or_else(|| ApiError::bad_request(format!("{member}.{name} must be a list")))?;
        validate::count(&format!("{member}.{name}"), items.len(), 1, 25)?;
        items
            .iter()
            .map(|item| {
                item.as_str().map(str::to_string).ok_or_else(|| {
                    ApiError::bad_request(format!("{member}.{name} must list strings"))
                })
            })
            .collect()
    };
    let attendee_ids = list("AttendeeIds")?;
    let external_user_ids = list("ExternalUserIds")?;
    for id in &attendee_ids {
        validate::guid(&format!("{member}.AttendeeIds"), id)?;
    }
    for id in &external_user_ids {
        validate::length(&format!("{member}.ExternalUserIds"), id, 2, 64)?;
    }
    if attendee_ids.len() + external_user_ids.len() > 25 {
        return Err(ApiError::bad_request(format!(
            "{member} selects {} streams; a media capture pipeline records at most 25",
            attendee_ids.len() + external_user_ids.len()
        )));
    }
    Ok(())
}

pub async fn get_capture(state: &ApiState, call: &Call) -> Result<Reply, ApiError> {
    let record = find(state, call, Some(MediaPipelineRecord::CAPTURE)).await?;
    Ok(Reply::Json(
        StatusCode::OK,
        json!({ "MediaCapturePipeline": capture_json(&record, call.is_legacy()) }),
    ))
}

/// GetMediaPipeline: any pipeline, wrapped by its kind.
pub async fn get_any(state: &ApiState, call: &Call) -> Result<Reply, ApiError> {
    let record = find(state, call, None).await?;
    let shape = if record.kind == MediaPipelineRecord::CONCATENATION {
        json!({ "MediaConcatenationPipeline": concatenation_json(&record) })
    } else {
        json!({ "MediaCapturePipeline": capture_json(&record, false) })
    };
    Ok(Reply::Json(
        StatusCode::OK,
        json!({ "MediaPipeline": shape }),
    ))
}

/// DeleteMediaCapturePipeline and DeleteMediaPipeline: the recorder stops and writes its last
/// chunk before the answer, so everything recorded is in the bucket when the caller looks.
pub async fn delete(state: &ApiState, call: &Call) -> Result<Reply, ApiError> {
    let kind = (call.route.operation == Operation::DeleteMediaCapturePipeline)
        .then_some(MediaPipelineRecord::CAPTURE);
    let record = find(state, call, kind).await?;
    state.recorders.stop(&record.media_pipeline_id).await;
    match state
        .store
        .delete_media_pipeline(&call.account_id, &record.media_pipeline_id)
        .await
    {
        Ok(_) | Err(StoreError::PipelineNotFound) => Ok(Reply::Empty(StatusCode::NO_CONTENT)),
        Err(error) => Err(error.into()),
    }
}

/// ListMediaCapturePipelines (`capture_only`) and ListMediaPipelines: ids and ARNs, a page at
/// a time; the legacy API's ListMediaCapturePipelines lists whole pipelines.
pub async fn list(state: &ApiState, call: &Call, capture_only: bool) -> Result<Reply, ApiError> {
    let max = if call.is_legacy() {
        LEGACY_MAX_RESULTS
    } else {
        MAX_RESULTS
    };
    let limit = input::max_results(call.query("max-results"), max)?;
    let kind = if capture_only {
        PageKind::CapturePipelines
    } else {
        PageKind::MediaPipelines
    };
    let after = match call.query("next-token") {
        Some(token) => Some(
            state
                .pages
                .decode(kind, &call.account_id, token)
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "NextToken is invalid or was not issued for {}",
                        call.route.operation.name()
                    ))
                })?,
        ),
        None => None,
    };
    let mut records = state
        .store
        .list_media_pipelines(
            &call.account_id,
            capture_only.then_some(MediaPipelineRecord::CAPTURE),
            after.as_deref(),
            limit + 1,
        )
        .await?;
    let more = records.len() > limit;
    records.truncate(limit);
    let summaries: Vec<Value> = records
        .iter()
        .map(|record| {
            if call.is_legacy() {
                capture_json(record, true)
            } else {
                json!({
                    "MediaPipelineId": record.media_pipeline_id,
                    "MediaPipelineArn": arn_of(record),
                })
            }
        })
        .collect();
    let list_member = if capture_only {
        "MediaCapturePipelines"
    } else {
        "MediaPipelines"
    };
    let mut response = json!({ list_member: summaries });
    if let (true, Some(last), Some(fields)) = (more, records.last(), response.as_object_mut()) {
        let token = state
            .pages
            .encode(kind, &call.account_id, &last.list_cursor());
        fields.insert("NextToken".into(), token.into());
    }
    Ok(Reply::Json(StatusCode::OK, response))
}

/// The caller's pipeline named in the path (of `kind` when given), or NotFound.
async fn find(
    state: &ApiState,
    call: &Call,
    kind: Option<&str>,
) -> Result<MediaPipelineRecord, ApiError> {
    let id = input::guid_label("MediaPipelineId", call.route.media_pipeline_id.as_ref())?;
    match state.store.get_media_pipeline(&call.account_id, &id).await {
        Ok(record) if kind.is_none_or(|kind| record.kind == kind) => Ok(record),
        Ok(_) => Err(ApiError::not_found(format!(
            "The media capture pipeline {id} was not found"
        ))),
        Err(StoreError::PipelineNotFound) => Err(ApiError::not_found(format!(
            "The media pipeline {id} was not found"
        ))),
        Err(error) => Err(error.into()),
    }
}

fn arn_of(record: &MediaPipelineRecord) -> String {
    media_pipeline_arn(
        &record.control_region,
        &record.account_id,
        &record.media_pipeline_id,
    )
}

/// The `MediaCapturePipeline` shape; the legacy model's (`legacy`) has no MediaPipelineArn, and
/// of the request's members only ChimeSdkMeetingConfiguration. Of the stored configuration,
/// only the model's members are answered: not the tags, nor Carillon's own.
fn capture_json(record: &MediaPipelineRecord, legacy: bool) -> Value {
    let replayed: &[&str] = if legacy {
        &["ChimeSdkMeetingConfiguration"]
    } else {
        &[
            "ChimeSdkMeetingConfiguration",
            "SseAwsKeyManagementParams",
            "SinkIamRoleArn",
        ]
    };
    let mut shape = json!({
        "MediaPipelineId": record.media_pipeline_id,
        "MediaPipelineArn": arn_of(record),
        "SourceType": "ChimeSdkMeeting",
        "SourceArn": record.source_arn,
        "Status": record.status,
        "SinkType": "S3Bucket",
        "SinkArn": record.sink_arn,
        "CreatedTimestamp": iso8601_millis(record.created_at),
        "UpdatedTimestamp": iso8601_millis(record.updated_at),
    });
    if let Some(fields) = shape.as_object_mut() {
        if legacy {
            fields.remove("MediaPipelineArn");
        }
        for member in replayed {
            if let Some(value) = record.configuration.get(*member).filter(|v| !v.is_null()) {
                fields.insert((*member).to_string(), value.clone());
            }
        }
    }
    shape
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateConcatenationIn {
    pub sources: Option<Vec<Value>>,
    pub sinks: Option<Vec<Value>>,
    pub client_request_token: Option<String>,
    pub tags: Option<Vec<TagIn>>,
}

/// A text member at `path` inside `value`, required.
fn member<'a>(value: &'a Value, path: &[&str], name: &str) -> Result<&'a str, ApiError> {
    path.iter()
        .try_fold(value, |value, key| value.get(key))
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request(format!("{name} is required")))
}

/// The one source and the one sink of a CreateMediaConcatenationPipeline request, checked:
/// (capture pipeline ARN, destination bucket ARN).
fn concatenation_request(request: &CreateConcatenationIn) -> Result<(String, String), ApiError> {
    let sources = required("Sources", &request.sources)?;
    validate::count("Sources", sources.len(), 1, 1)?;
    let sinks = required("Sinks", &request.sinks)?;
    validate::count("Sinks", sinks.len(), 1, 1)?;
    let (Some(source), Some(sink)) = (sources.first(), sinks.first()) else {
        return Err(ApiError::bad_request(
            "Sources and Sinks need one member each",
        ));
    };
    validate::one_of(
        "Sources[0].Type",
        member(source, &["Type"], "Sources[0].Type")?,
        &["MediaCapturePipeline"],
    )?;
    let config = "Sources[0].MediaCapturePipelineSourceConfiguration";
    let capture_arn = member(
        source,
        &[
            "MediaCapturePipelineSourceConfiguration",
            "MediaPipelineArn",
        ],
        &format!("{config}.MediaPipelineArn"),
    )?;
    validate::arn(&format!("{config}.MediaPipelineArn"), capture_arn)?;
    check_concatenated_artifacts(source, config)?;
    validate::one_of(
        "Sinks[0].Type",
        member(sink, &["Type"], "Sinks[0].Type")?,
        &["S3Bucket"],
    )?;
    let destination_name = "Sinks[0].S3BucketSinkConfiguration.Destination";
    let destination = member(
        sink,
        &["S3BucketSinkConfiguration", "Destination"],
        destination_name,
    )?;
    validate::arn(destination_name, destination)?;
    if parse_bucket_arn(destination).is_none() {
        return Err(ApiError::bad_request(format!(
            "{destination_name} must be an S3 bucket ARN (arn:aws:s3:::<bucket>[/<prefix>]) \
             with a valid bucket name, not '{destination}'"
        )));
    }
    Ok((capture_arn.to_string(), destination.to_string()))
}

/// The source's artifact states, each required: Audio must be enabled, CompositedVideo (which
/// Carillon's captures never record) disabled.
fn check_concatenated_artifacts(source: &Value, config: &str) -> Result<(), ApiError> {
    let artifacts = [
        "MediaCapturePipelineSourceConfiguration",
        "ChimeSdkMeetingConfiguration",
        "ArtifactsConfiguration",
    ];
    for artifact in [
        "Audio",
        "Video",
        "Content",
        "DataChannel",
        "TranscriptionMessages",
        "MeetingEvents",
        "CompositedVideo",
    ] {
        let name = format!(
            "{config}.ChimeSdkMeetingConfiguration.ArtifactsConfiguration.{artifact}.State"
        );
        let path: Vec<&str> = artifacts
            .iter()
            .copied()
            .chain([artifact, "State"])
            .collect();
        let state = member(source, &path, &name)?;
        let allowed: &[&str] = if artifact == "Audio" {
            &["Enabled"]
        } else {
            &["Enabled", "Disabled"]
        };
        validate::one_of(&name, state, allowed)?;
        if artifact == "CompositedVideo" && state == "Enabled" {
            return Err(ApiError::bad_request(format!(
                "Concatenating {artifact} is not supported by Carillon: its captures record no \
                 composited video (set {artifact}.State to Disabled)"
            )));
        }
    }
    Ok(())
}

/// CreateMediaConcatenationPipeline: joins a capture's audio chunks into one file once the
/// capture has finished (at once if it already has).
pub async fn create_concatenation(state: &ApiState, call: &Call) -> Result<Reply, ApiError> {
    let request: CreateConcatenationIn = json_body(&call.body)?;
    if let Some(token) = &request.client_request_token {
        validate::client_request_token(token)?;
    }
    let tags = pipeline_tags_at_create(&request.tags)?;
    let (capture_arn, destination) = concatenation_request(&request)?;
    let unknown = || {
        ApiError::bad_request(format!(
            "MediaPipelineArn '{capture_arn}' names no media capture pipeline of this account"
        ))
    };
    let capture_id = parse_media_pipeline_arn(&capture_arn)
        .filter(|(account, _)| *account == call.account_id)
        .map(|(_, id)| id)
        .ok_or_else(unknown)?;
    let capture = match state
        .store
        .get_media_pipeline(&call.account_id, &capture_id)
        .await
    {
        Ok(capture) if capture.kind == MediaPipelineRecord::CAPTURE => capture,
        Ok(_) | Err(StoreError::PipelineNotFound) => return Err(unknown()),
        Err(error) => return Err(error.into()),
    };
    check_bucket(
        state,
        "Sinks[0].S3BucketSinkConfiguration.Destination",
        &destination,
    )
    .await?;
    let now = state.clock.now_ms();
    let record = MediaPipelineRecord {
        account_id: call.account_id.clone(),
        media_pipeline_id: crate::domain::ids::new_id(),
        kind: MediaPipelineRecord::CONCATENATION.to_string(),
        client_request_token: request.client_request_token.clone(),
        control_region: call.region.clone(),
        source_arn: capture_arn,
        meeting_id: capture.meeting_id.clone(),
        sink_arn: destination,
        status: status::INITIALIZING.to_string(),
        configuration: json!({
            "Sources": request.sources,
            "Sinks": request.sinks,
            CAPTURE_SINK_MEMBER: capture.sink_arn,
            MediaPipelineRecord::TAGS: tags_member(&tags),
            MediaPipelineRecord::MEETING_FACTS:
                capture.configuration.get(MediaPipelineRecord::MEETING_FACTS),
        }),
        created_at: now,
        updated_at: now,
    };
    let stored = match state.store.create_media_pipeline(record).await? {
        PipelineCreated::New(record) => {
            state.recorders.start_concatenation(&record);
            record
        }
        PipelineCreated::Existing(record) => record,
    };
    Ok(Reply::Json(
        StatusCode::CREATED,
        json!({ "MediaConcatenationPipeline": concatenation_json(&stored) }),
    ))
}

/// The `MediaConcatenationPipeline` shape.
fn concatenation_json(record: &MediaPipelineRecord) -> Value {
    let stored = |member: &str| record.configuration.get(member).cloned();
    json!({
        "MediaPipelineId": record.media_pipeline_id,
        "MediaPipelineArn": arn_of(record),
        "Sources": stored("Sources"),
        "Sinks": stored("Sinks"),
        "Status": record.status,
        "CreatedTimestamp": iso8601_millis(record.created_at),
        "UpdatedTimestamp": iso8601_millis(record.updated_at),
    })
}
