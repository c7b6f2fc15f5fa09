//! Which of the three AWS APIs a request speaks.

/// Which API a request speaks. The legacy `chime` API lives under `/legacy`, because both APIs
/// share routes and the signing name and cannot be told apart otherwise. The media pipelines
/// API (`chime-sdk-media-pipelines`, also signed for `chime`) has routes of its own
/// (`/sdk-media-…`, `/media-insights-…`, `/media-pipeline-…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Namespace {
    Meetings,
    Legacy,
    MediaPipelines,
}
