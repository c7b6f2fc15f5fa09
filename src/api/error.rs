//! The error table: one row per exception, with its status and its name in each namespace.
//!
//! Every error goes out as the model's status, `x-amzn-ErrorType: <ExceptionName>` (the header is
//! what every SDK reads first, and the Rust SDK reads nothing else), `x-amzn-RequestId`, and a
//! JSON body `{"Code","Message","RequestId"}` whose Code is the short form the real service sends.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::namespace::Namespace;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    LimitExceeded,
    TooManyTags,
    /// The tagging operations' not-found (sdk-meetings `ResourceNotFoundException`).
    ResourceNotFound,
    Unprocessable,
    Throttled,
    ServiceFailure,
    ServiceUnavailable,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 12] = [
        Self::BadRequest,
        Self::Unauthorized,
        Self::Forbidden,
        Self::NotFound,
        Self::Conflict,
        Self::LimitExceeded,
        Self::TooManyTags,
        Self::ResourceNotFound,
        Self::Unprocessable,
        Self::Throttled,
        Self::ServiceFailure,
        Self::ServiceUnavailable,
    ];

    /// The kind whose exception name is `name` in either namespace
    /// (`ThrottlingException` and `ThrottledClientException` are both `Throttled`).
    pub fn from_shape_name(name: &str) -> Option<ErrorKind> {
        Self::ALL.into_iter().find(|kind| {
            [Namespace::Meetings, Namespace::Legacy]
                .iter()
                .any(|ns| kind.shape_name(*ns) == name)
        })
    }

    pub fn status(self) -> StatusCode {
        match self {
            Self::BadRequest | Self::LimitExceeded | Self::TooManyTags => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound | Self::ResourceNotFound => StatusCode::NOT_FOUND,
            Self::Conflict => StatusCode::CONFLICT,
            Self::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Throttled => StatusCode::TOO_MANY_REQUESTS,
            Self::ServiceFailure => StatusCode::INTERNAL_SERVER_ERROR,
            Self::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The exception shape name, which goes in `x-amzn-ErrorType`.
    pub fn shape_name(self, namespace: Namespace) -> &'static str {
        // The media pipelines model names its errors as the legacy model does.
        let legacy = matches!(namespace, Namespace::Legacy | Namespace::MediaPipelines);
        match self {
            Self::BadRequest => "BadRequestException",
            Self::Unauthorized if legacy => "UnauthorizedClientException",
            Self::Unauthorized => "UnauthorizedException",
            Self::Forbidden => "ForbiddenException",
            Self::NotFound => "NotFoundException",
            Self::ResourceNotFound if legacy => "NotFoundException",
            Self::ResourceNotFound => "ResourceNotFoundException",
            Self::Conflict => "ConflictException",
            Self::LimitExceeded if legacy => "ResourceLimitExceededException",
            Self::LimitExceeded => "LimitExceededException",
            Self::TooManyTags => "TooManyTagsException",
            Self::Unprocessable => "UnprocessableEntityException",
            Self::Throttled if legacy => "ThrottledClientException",
            Self::Throttled => "ThrottlingException",
            Self::ServiceFailure => "ServiceFailureException",
            Self::ServiceUnavailable => "ServiceUnavailableException",
        }
    }

    /// The short code for the body's `Code` (the legacy model's `ErrorCode` enum).
    pub fn code(self, namespace: Namespace) -> &'static str {
        match self {
            Self::BadRequest => "BadRequest",
            Self::Unauthorized => "Unauthorized",
            Self::Forbidden => "Forbidden",
            Self::NotFound | Self::ResourceNotFound => "NotFound",
            Self::Conflict => "Conflict",
            Self::LimitExceeded => "ResourceLimitExceeded",
            Self::TooManyTags => "TooManyTags",
            Self::Unprocessable => "Unprocessable",
            Self::Throttled if namespace != Namespace::Meetings => "Throttled",
            Self::Throttled => "Throttling",
            Self::ServiceFailure => "ServiceFailure",
            Self::ServiceUnavailable => "ServiceUnavailable",
        }
    }

    fn is_fault(self) -> bool {
        matches!(self, Self::ServiceFailure | Self::ServiceUnavailable)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
    /// `ResourceName` on ResourceNotFound and TooManyTags.
    pub resource_name: Option<String>,
    /// The API whose wire form the error takes when it is not the one its path names: the
    /// media pipelines API's tag operations share their paths with the meetings API's, and
    /// only their ResourceARN tells them apart (see `tags::namespace_of_resource`).
    pub namespace: Option<Namespace>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            resource_name: None,
            namespace: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn with_resource(mut self, arn: impl Into<String>) -> Self {
        self.resource_name = Some(arn.into());
        self
    }

    /// The error as `namespace` words it, whatever API its request's path names.
    pub fn in_namespace(mut self, namespace: Namespace) -> Self {
        self.namespace = Some(namespace);
        self
    }

    /// The message a caller sees for an internal failure: nothing about internals.
    pub fn service_failure() -> Self {
        Self::new(
            ErrorKind::ServiceFailure,
            "The service encountered an unexpected error",
        )
    }

    /// Replaces an error the operation's model does not list (`modelled`, from
    /// `Operation::errors`) with the nearest one it does, so that every SDK surfaces a modelled
    /// exception class rather than an "unhandled" one.
    fn modelled_for(mut self, namespace: Namespace, modelled: Option<&[ErrorKind]>) -> Self {
        let Some(modelled) = modelled else {
            return self;
        };
        if namespace != Namespace::Meetings && self.kind == ErrorKind::ResourceNotFound {
            self.kind = ErrorKind::NotFound;
        }
        let allows = |kind| modelled.contains(&kind);
        if allows(self.kind) {
            return self;
        }
        self.kind = match self.kind {
            ErrorKind::TooManyTags if allows(ErrorKind::LimitExceeded) => ErrorKind::LimitExceeded,
            ErrorKind::ResourceNotFound if allows(ErrorKind::NotFound) => ErrorKind::NotFound,
            ErrorKind::NotFound if allows(ErrorKind::ResourceNotFound) => {
                ErrorKind::ResourceNotFound
            }
            // An operation whose model lists no throttling error (legacy TagResource, ...)
            // still tells the caller to come back later, in a form every SDK retries.
            ErrorKind::Throttled => ErrorKind::ServiceUnavailable,
            kind if kind.is_fault() => ErrorKind::ServiceFailure,
            _ => ErrorKind::BadRequest,
        };
        self
    }

    pub fn render(
        self,
        namespace: Namespace,
        modelled: Option<&[ErrorKind]>,
        request_id: &str,
    ) -> Response {
        let error = self.modelled_for(namespace, modelled);
        let mut body = serde_json::json!({
            "Code": error.kind.code(namespace),
            "Message": error.message,
            "RequestId": request_id,
        });
        if let (Some(resource), Some(fields)) = (&error.resource_name, body.as_object_mut()) {
            fields.insert("ResourceName".into(), resource.clone().into());
        }
        let mut response = (
            error.kind.status(),
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
        let headers = response.headers_mut();
        headers.insert(
            "x-amzn-ErrorType",
            HeaderValue::from_static(error.kind.shape_name(namespace)),
        );
        if let Ok(id) = HeaderValue::from_str(request_id) {
            headers.insert("x-amzn-RequestId", id);
        }
        if error.kind == ErrorKind::ServiceUnavailable {
            headers.insert("Retry-After", HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(error: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match error {
            StoreError::MeetingNotFound => ApiError::not_found("The meeting was not found"),
            StoreError::AttendeeNotFound => ApiError::not_found("The attendee was not found"),
            StoreError::PipelineNotFound => ApiError::not_found("The media pipeline was not found"),
            StoreError::PipelineConflict => ApiError::new(
                ErrorKind::Conflict,
                "The meeting already has an active media capture pipeline",
            ),
            StoreError::TooManyTags { limit } => ApiError::new(
                ErrorKind::TooManyTags,
                format!("A resource can have at most {limit} tags"),
            ),
            StoreError::Abandoned => ApiError::new(
                ErrorKind::ServiceUnavailable,
                "The request took too long and was not carried out; try again",
            ),
            StoreError::Unavailable(detail) => {
                tracing::warn!(%detail, "store unavailable");
                ApiError::new(
                    ErrorKind::ServiceUnavailable,
                    "The service cannot reach its database right now; try again",
                )
            }
            StoreError::Backend(detail) => {
                // Logged by the dispatcher with the request id; the caller sees no internals.
                tracing::error!(%detail, "store failure");
                ApiError::service_failure()
            }
        }
    }
}
