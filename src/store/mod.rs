//! Persistence behind one trait, so the embedded default (SQLite) and a distributed SQL engine
//! can be swapped without touching the API layer. Every write is durable before it returns.
//!
//! [`Store`] is the sum of one trait per aggregate: [`MeetingStore`] (meetings and their ends),
//! [`AttendeeStore`] (attendees, their capabilities and attendee versions), [`TagStore`],
//! [`PresenceStore`] (who is connected, and the events of live sessions), [`OutboxStore`] (the
//! event outbox, each sink's cursor and lease, dead letters), [`NodeStore`] (the node registry,
//! where each meeting is hosted), [`SettingStore`] and [`MediaPipelineStore`] (media capture
//! pipelines). Whatever implements them all is a `Store`; callers hold an `Arc<dyn Store>` and
//! call its methods without naming the aggregate traits.
//!
//! Each backend has a folder, `sqlite/` and `postgres/`: its connections and transactions in
//! `mod.rs` and `session.rs`, its schema in `schema.rs`, and one file per aggregate with that
//! aggregate's SQL. What the two do alike is written once in `shared/`: the interface a backend
//! implements (`shared/mod.rs`), and over it, one file per aggregate, the multi-step logic of each
//! method and the aggregate trait's implementation for every backend. (That interface is this
//! crate's own: a backend in another crate implements the aggregate traits themselves.)

pub mod gate;
pub mod postgres;
mod shared;
pub mod sqlite;

/// The conformance suite every backend passes (compiled for this crate's tests, and for other
/// crates with the `conformance` feature).
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

use crate::domain::capabilities::{Capabilities, MeetingFeatures};

/// A meeting as stored. Optional members are those the caller may leave out.
#[derive(Debug, Clone, PartialEq)]
pub struct MeetingRecord {
    pub account_id: String,
    pub meeting_id: String,
    pub client_request_token: String,
    /// The region the creating request was signed for; it goes into the MeetingArn.
    pub control_region: String,
    pub media_region: String,
    pub external_meeting_id: Option<String>,
    pub meeting_host_id: Option<String>,
    pub primary_meeting_id: Option<String>,
    pub tenant_ids: Vec<String>,
    pub features: Option<MeetingFeatures>,
    /// NotificationsConfiguration, kept as given.
    pub notifications: Option<serde_json::Value>,
    pub network_type: Option<String>,
    /// The public base URL of the node that hosts the meeting's media (its cell).
    pub media_base_url: String,
    pub max_attendees: u32,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttendeeRecord {
    pub meeting_id: String,
    pub attendee_id: String,
    pub external_user_id: String,
    pub join_token: String,
    pub capabilities: Capabilities,
    pub created_at: i64,
}

/// A page of a meeting's attendees and the attendee version it was read at (see
/// [`AttendeeStore::attendees_version`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttendeePage {
    pub version: i64,
    pub attendees: Vec<AttendeeRecord>,
}

/// An attendee and an attendee version of its meeting that the row is not older than.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedAttendee {
    pub version: i64,
    pub attendee: AttendeeRecord,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// What a tag operation addresses: a meeting, or (legacy API only) one of its attendees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagTarget {
    Meeting(String),
    Attendee(String, String),
}

/// An attendee to create. The id and token are minted by the caller so that the store stays a
/// plain persistence layer.
#[derive(Debug, Clone)]
pub struct NewAttendee {
    pub attendee_id: String,
    pub external_user_id: String,
    pub join_token: String,
    pub capabilities: Capabilities,
    pub tags: Vec<Tag>,
    pub created_at: i64,
}

/// The fate of one attendee in a create call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttendeeOutcome {
    Created(AttendeeRecord),
    /// The ExternalUserId already had an attendee in this meeting: it is returned unchanged.
    Existing(AttendeeRecord),
    /// The meeting already holds its maximum number of attendees.
    MeetingFull {
        external_user_id: String,
        cap: u32,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreatedMeeting {
    pub meeting: MeetingRecord,
    /// False when the ClientRequestToken had already created this meeting.
    pub created: bool,
    pub attendees: Vec<AttendeeOutcome>,
}

/// A media pipeline as stored (issue 26): a capture pipeline records one meeting into a bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaPipelineRecord {
    pub account_id: String,
    /// Lower-case UUID, the MediaPipelineId.
    pub media_pipeline_id: String,
    /// [`MediaPipelineRecord::CAPTURE`] or [`MediaPipelineRecord::CONCATENATION`].
    pub kind: String,
    /// The ClientRequestToken of the creating request, if it had one.
    pub client_request_token: Option<String>,
    /// The region the creating request was signed for (it goes into the ARN).
    pub control_region: String,
    pub source_arn: String,
    /// The meeting a capture pipeline records.
    pub meeting_id: Option<String>,
    pub sink_arn: String,
    /// Initializing, InProgress, Stopping, Stopped or Failed.
    pub status: String,
    /// The rest of the request as given (ChimeSdkMeetingConfiguration, SinkIamRoleArn,
    /// SseAwsKeyManagementParams), replayed by Get.
    pub configuration: serde_json::Value,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    pub updated_at: i64,
}

impl MediaPipelineRecord {
    /// The kind of a media capture pipeline.
    pub const CAPTURE: &str = "MediaCapturePipeline";
    /// The kind of a media concatenation pipeline.
    pub const CONCATENATION: &str = "MediaConcatenationPipeline";
    /// The member of the stored configuration that keeps the meeting's facts as they were at
    /// Create (`ExternalMeetingId`, `MediaRegion`, `NotificationsConfiguration`), for the
    /// pipeline's events: a capture's last ones are written after its meeting is gone.
    /// Members of the configuration named `Carillon…` are Carillon's own, never answered.
    pub const MEETING_FACTS: &str = "CarillonMeeting";
    /// The member of the stored configuration that keeps the pipeline's tags, as the model's
    /// `TagList` (`[{"Key", "Value"}]`). The pipeline shapes have no tags: only
    /// ListTagsForResource answers them.
    pub const TAGS: &str = "Tags";

    /// The pipeline's tags, in the order they were first set.
    pub fn tags(&self) -> Vec<Tag> {
        let listed = self
            .configuration
            .get(Self::TAGS)
            .and_then(serde_json::Value::as_array);
        listed
            .into_iter()
            .flatten()
            .filter_map(|tag| {
                let text = |member: &str| tag.get(member)?.as_str().map(str::to_string);
                Some(Tag {
                    key: text("Key")?,
                    value: text("Value")?,
                })
            })
            .collect()
    }

    /// `tags` as the configuration's [`Self::TAGS`] member keeps them.
    pub fn tags_json(tags: &[Tag]) -> serde_json::Value {
        tags.iter()
            .map(|tag| serde_json::json!({"Key": tag.key, "Value": tag.value}))
            .collect()
    }

    /// The statuses a pipeline ends in: one in any other is unfinished, and a capture pipeline
    /// in any other holds its meeting's one active capture.
    pub const FINISHED: [&str; 2] = ["Stopped", "Failed"];

    /// Whether a pipeline in this status has ended.
    pub fn is_finished(status: &str) -> bool {
        Self::FINISHED.contains(&status)
    }

    /// The cursor that [`MediaPipelineStore::list_media_pipelines`] continues after this
    /// pipeline with: `<created_at>:<media_pipeline_id>`. It names a position in the list's
    /// order rather than a row, so a page goes on where the previous one ended even if that
    /// pipeline has been deleted since.
    pub fn list_cursor(&self) -> String {
        format!("{}:{}", self.created_at, self.media_pipeline_id)
    }
}

/// A position read back from [`MediaPipelineRecord::list_cursor`]: (created_at, id).
fn parse_pipeline_cursor(cursor: &str) -> Option<(i64, &str)> {
    let (created_at, media_pipeline_id) = cursor.split_once(':')?;
    Some((created_at.parse().ok()?, media_pipeline_id))
}

/// What `create_media_pipeline` did.
#[derive(Debug, Clone, PartialEq)]
pub enum PipelineCreated {
    /// Stored as given.
    New(MediaPipelineRecord),
    /// The account already created a pipeline with this client_request_token: that one,
    /// unchanged.
    Existing(MediaPipelineRecord),
}

#[derive(Debug)]
pub enum StoreError {
    MeetingNotFound,
    AttendeeNotFound,
    /// The account has no such media pipeline.
    PipelineNotFound,
    /// The meeting already has an unfinished capture pipeline of the account (AWS allows one
    /// active capture per meeting).
    PipelineConflict,
    TooManyTags {
        limit: usize,
    },
    /// The request timed out before this write committed; nothing was kept.
    Abandoned,
    /// The backend cannot be reached or is overloaded now (a refused or dropped database
    /// connection, no free connection in time, a transaction that kept conflicting); the same
    /// call may succeed later.
    Unavailable(String),
    Backend(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::MeetingNotFound => write!(f, "meeting not found"),
            StoreError::AttendeeNotFound => write!(f, "attendee not found"),
            StoreError::PipelineNotFound => write!(f, "media pipeline not found"),
            StoreError::PipelineConflict => write!(
                f,
                "the meeting already has a media capture pipeline that is not stopped"
            ),
            StoreError::TooManyTags { limit } => write!(f, "more than {limit} tags"),
            StoreError::Abandoned => write!(f, "the request timed out before committing"),
            StoreError::Unavailable(e) => write!(f, "storage unavailable: {e}"),
            StoreError::Backend(e) => write!(f, "storage backend: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

pub type StoreResult<T> = Result<T, StoreError>;

/// What happened to an attendee's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceChange {
    /// Admitted by the signaling endpoint (JOIN answered).
    Joined,
    /// Left on purpose (LEAVE, a clean close, a kick).
    Left,
    /// Vanished: the socket died or went silent.
    Dropped,
}

/// An attendee's connection state, as the admin extension shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectionState {
    Connected,
    Left,
    Dropped,
    NeverJoined,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AttendeePresence {
    pub attendee_id: String,
    pub external_user_id: String,
    pub state: ConnectionState,
    /// Seconds since the epoch of the last join, and of the last leave or drop.
    pub joined_at: Option<i64>,
    pub left_at: Option<i64>,
}

/// One meeting event in the transactional outbox, written in the same transaction as the change
/// it announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    /// Increasing in the order the changes committed.
    pub seq: i64,
    pub meeting_id: String,
    /// The meeting's NotificationsConfiguration ARNs when the event happened.
    pub targets: Vec<String>,
    /// The EventBridge-shaped envelope, as JSON text.
    pub body: String,
    /// Real milliseconds since the epoch when it was recorded (for delivery latency).
    pub recorded_at_ms: i64,
}

/// An event a sink gave up on after its retries.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeadLetter {
    pub sink: String,
    pub seq: i64,
    pub error: String,
    pub at_ms: i64,
    pub body: String,
}

/// A node's entry in the registry of nodes sharing one store: its latest heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeBeat {
    /// The node's public URL: its identity, and what the MediaPlacement of the meetings it
    /// hosts names.
    pub url: String,
    /// Real milliseconds since the epoch of its latest beat.
    pub beat_at_ms: i64,
    /// Signaling sessions connected to it at that beat (its load, for placement).
    pub sessions: i64,
    /// It stopped on purpose at `beat_at_ms` (a graceful shutdown).
    pub stopped: bool,
}

/// When meetings end by themselves (`spec/behaviour.md` §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndRules {
    /// A meeting with no attendee connected for this long ends (counted from its creation, and
    /// again from whenever its last attendee left).
    pub idle_seconds: i64,
    /// A meeting ends this long after its creation, connected or not.
    pub max_seconds: i64,
}

/// Meetings: created with their tags and first attendees, read, and ended (with their replicas)
/// by a call or by the clock.
#[async_trait::async_trait]
pub trait MeetingStore: Send + Sync + 'static {
    /// Creates the meeting with its tags and attendees in one transaction, unless the account
    /// already used this ClientRequestToken, in which case the earlier meeting is returned and
    /// nothing is written.
    async fn create_meeting(
        &self,
        meeting: MeetingRecord,
        tags: Vec<Tag>,
        attendees: Vec<NewAttendee>,
    ) -> StoreResult<CreatedMeeting>;

    async fn get_meeting(&self, account_id: &str, meeting_id: &str) -> StoreResult<MeetingRecord>;

    /// The account's meetings ordered by id, starting after `after`.
    async fn list_meetings(
        &self,
        account_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<MeetingRecord>>;

    /// The newest meetings of every account (the operator's admin page), newest first.
    async fn recent_meetings(&self, limit: usize) -> StoreResult<Vec<MeetingRecord>>;

    /// Deletes the meeting with its attendees (and so their JoinTokens) and tags, and its replica
    /// meetings, which end with their primary. Returns the ids of every meeting that ended.
    async fn delete_meeting(
        &self,
        account_id: &str,
        meeting_id: &str,
        at: i64,
    ) -> StoreResult<Vec<String>>;

    /// Ends meetings that `rules` say are over at `now` (seconds), with their replicas, in one
    /// transaction, and returns the ids of all that ended. Ending a meeting deletes its
    /// attendees, so one call ends only as many as `attendee_budget` allows: the first due
    /// meeting whatever its size, then more while their attendees together stay within the
    /// budget. Callers repeat until a call ends none.
    async fn end_due_meetings(
        &self,
        now: i64,
        rules: EndRules,
        attendee_budget: usize,
    ) -> StoreResult<Vec<String>>;

    /// Whether a meeting exists, in any account (the join plane knows no account).
    async fn meeting_exists(&self, meeting_id: &str) -> StoreResult<bool>;
}

/// Attendees: created under their meeting's cap, read (with the attendee version a cached answer
/// is checked against), deleted, their capabilities changed, found by JoinToken.
#[async_trait::async_trait]
pub trait AttendeeStore: Send + Sync + 'static {
    /// Creates attendees atomically against the meeting's cap: concurrent calls never overshoot.
    async fn create_attendees(
        &self,
        account_id: &str,
        meeting_id: &str,
        attendees: Vec<NewAttendee>,
    ) -> StoreResult<Vec<AttendeeOutcome>>;

    async fn get_attendee(
        &self,
        account_id: &str,
        meeting_id: &str,
        attendee_id: &str,
    ) -> StoreResult<AttendeeRecord> {
        Ok(self
            .get_attendee_versioned(account_id, meeting_id, attendee_id)
            .await?
            .attendee)
    }

    /// `get_attendee` with the meeting's attendee version (see
    /// [`AttendeeStore::attendees_version`]), taken no later than the row was read (so the row is
    /// never older than it): what a cached GetAttendee answer is checked against.
    async fn get_attendee_versioned(
        &self,
        account_id: &str,
        meeting_id: &str,
        attendee_id: &str,
    ) -> StoreResult<VersionedAttendee>;

    /// The meeting's attendees ordered by id, starting after `after` (a keyset cursor).
    async fn list_attendees(
        &self,
        account_id: &str,
        meeting_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<AttendeeRecord>> {
        Ok(self
            .list_attendees_versioned(account_id, meeting_id, after, limit)
            .await?
            .attendees)
    }

    /// The version of what `list_attendees` returns for the account's meeting: every write that
    /// changes it (attendees created or deleted, capabilities updated) moves it before it is
    /// answered, and nothing else does; versions are only compared for equality. PostgreSQL keeps
    /// it in the meeting's row (one primary-key read), the embedded store in memory.
    /// MeetingNotFound for a meeting of another account.
    async fn attendees_version(&self, account_id: &str, meeting_id: &str) -> StoreResult<i64>;

    /// `list_attendees` with an attendee version taken no later than the rows were read, so the
    /// rows are never older than it.
    async fn list_attendees_versioned(
        &self,
        account_id: &str,
        meeting_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<AttendeePage>;

    /// Deletes the attendee (and its JoinToken) at `at` (seconds, for its event).
    async fn delete_attendee(
        &self,
        account_id: &str,
        meeting_id: &str,
        attendee_id: &str,
        at: i64,
    ) -> StoreResult<()>;

    async fn update_capabilities(
        &self,
        account_id: &str,
        meeting_id: &str,
        attendee_id: &str,
        capabilities: Capabilities,
    ) -> StoreResult<AttendeeRecord>;

    /// Sets the capabilities of every attendee of the meeting but the excluded ones.
    async fn update_capabilities_except(
        &self,
        account_id: &str,
        meeting_id: &str,
        excluded: &[String],
        capabilities: Capabilities,
    ) -> StoreResult<()>;

    /// The attendee a JoinToken belongs to, if it still exists (the join plane's admission).
    async fn find_attendee_by_join_token(
        &self,
        join_token: &str,
    ) -> StoreResult<Option<AttendeeRecord>>;
}

/// Tags of a meeting, or (legacy API only) of one of its attendees.
#[async_trait::async_trait]
pub trait TagStore: Send + Sync + 'static {
    /// Adds or overwrites tags; fails whole with TooManyTags if the target would exceed `limit`.
    async fn tag(
        &self,
        account_id: &str,
        target: &TagTarget,
        tags: Vec<Tag>,
        limit: usize,
    ) -> StoreResult<()>;

    async fn untag(
        &self,
        account_id: &str,
        target: &TagTarget,
        keys: Vec<String>,
    ) -> StoreResult<()>;

    async fn list_tags(&self, account_id: &str, target: &TagTarget) -> StoreResult<Vec<Tag>>;
}

/// Who is connected: attendees' joins, leaves and drops (with their events and the meeting's idle
/// clock), and the media events of their live sessions.
#[async_trait::async_trait]
pub trait PresenceStore: Send + Sync + 'static {
    /// Records a media event of an attendee's live session (camera on or off, a content share
    /// joining, leaving, dropping, showing or stopping its video) in the event outbox, named
    /// `shown_attendee_id` (`<AttendeeId>#content` for content), when the meeting and the
    /// attendee `attendee_id` still exist. Presence and the idle clock are left alone.
    async fn record_media_event(
        &self,
        meeting_id: &str,
        attendee_id: &str,
        shown_attendee_id: &str,
        kind: crate::domain::meeting_events::EventType,
        at: i64,
    ) -> StoreResult<()>;

    /// Records a change of the meeting's live transcription in the event outbox, when the
    /// meeting still exists.
    async fn record_transcription_event(
        &self,
        meeting_id: &str,
        event: crate::domain::meeting_events::TranscriptionEvent,
    ) -> StoreResult<()>;

    /// Records that an attendee's client joined, left or dropped at `at`, and keeps the
    /// meeting's idle clock: it starts when the last connected attendee goes.
    async fn record_presence(
        &self,
        meeting_id: &str,
        attendee_id: &str,
        change: PresenceChange,
        at: i64,
    ) -> StoreResult<()>;

    /// Every attendee of the account's meeting with its connection state.
    async fn meeting_presence(
        &self,
        account_id: &str,
        meeting_id: &str,
    ) -> StoreResult<Vec<AttendeePresence>>;

    /// Marks every connected attendee as dropped at `at`: on a single node, nobody is connected
    /// when the server starts, whatever the store remembers from before a crash.
    async fn reset_presence(&self, at: i64) -> StoreResult<()>;

    /// The attendee's last recorded presence: (joined, joined_at, left_at).
    async fn presence(
        &self,
        meeting_id: &str,
        attendee_id: &str,
    ) -> StoreResult<(Option<bool>, Option<i64>, Option<i64>)>;
}

/// The transactional outbox of meeting events, each sink's delivery cursor and lease, and the
/// events sinks gave up on.
#[async_trait::async_trait]
pub trait OutboxStore: Send + Sync + 'static {
    /// Outbox events after `after` (a sequence number), oldest first.
    async fn outbox_after(&self, after: i64, limit: usize) -> StoreResult<Vec<OutboxEvent>>;

    /// The newest event's sequence number (0 when there is none).
    async fn latest_event_seq(&self) -> StoreResult<i64>;

    /// Deletes those of the `limit` oldest outbox events recorded before `before_ms`, delivered
    /// or not (the retention), and returns how many went. Sequence numbers are never reused.
    async fn prune_events(&self, before_ms: i64, limit: usize) -> StoreResult<usize>;

    /// The last sequence number a sink has delivered (0 before its first).
    async fn sink_cursor(&self, sink: &str) -> StoreResult<i64>;

    /// Records that a sink delivered every event up to `seq`.
    async fn advance_sink(&self, sink: &str, seq: i64) -> StoreResult<()>;

    /// Takes or renews the lease on a sink for `node` until `now_ms + ttl_ms`: true when `node`
    /// holds it. With several nodes on one store, only the holder delivers the sink's events,
    /// so each event goes out once, not once per node.
    async fn lease_sink(
        &self,
        sink: &str,
        node: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> StoreResult<bool>;

    /// Gives up on one event for a sink: keeps it as a dead letter and moves the sink past it.
    async fn dead_letter(
        &self,
        sink: &str,
        event: &OutboxEvent,
        error: &str,
        at_ms: i64,
    ) -> StoreResult<()>;

    async fn dead_letters(&self) -> StoreResult<Vec<DeadLetter>>;
}

/// The registry of nodes sharing one store, and which node hosts a meeting.
#[async_trait::async_trait]
pub trait NodeStore: Send + Sync + 'static {
    /// Records `beat` in the node registry (inserting or replacing that node's entry), forgets
    /// every node whose latest beat is older than `forget_before_ms`, and returns the registry.
    async fn beat_node(&self, beat: &NodeBeat, forget_before_ms: i64)
    -> StoreResult<Vec<NodeBeat>>;

    /// The public URL of the node hosting the meeting (its MediaPlacement), or None when the
    /// meeting does not exist (any more).
    async fn meeting_host(&self, meeting_id: &str) -> StoreResult<Option<String>>;

    /// Failover: makes the node at `to` the meeting's host if the node at `from` still is, in
    /// one atomic step, and returns the host after it (None when the meeting is gone). Of two
    /// nodes moving the same meeting at once, one wins and the other reads the winner.
    async fn move_meeting(
        &self,
        meeting_id: &str,
        from: &str,
        to: &str,
    ) -> StoreResult<Option<String>>;
}

/// Server settings (the pagination key, generated credentials).
#[async_trait::async_trait]
pub trait SettingStore: Send + Sync + 'static {
    /// Returns the stored value, inserting `value` first if the name had none, so concurrent
    /// first starts agree.
    async fn setting_or_insert(&self, name: &str, value: &str) -> StoreResult<String>;
}

/// Media pipelines (issue 26): capture pipelines that record a meeting, created idempotently,
/// one active capture per meeting, and found again when a server restarts.
#[async_trait::async_trait]
pub trait MediaPipelineStore: Send + Sync + 'static {
    /// Stores a new pipeline, durably before returning. Idempotent on (account_id,
    /// client_request_token) when the token is Some: the pipeline that token created is returned
    /// and nothing is written. A capture pipeline whose meeting_id already has a capture
    /// pipeline of the same account that is not Stopped or Failed is refused with
    /// [`StoreError::PipelineConflict`] (AWS allows one active capture per meeting). The meeting
    /// is not required to exist in the store (the API checks that).
    async fn create_media_pipeline(
        &self,
        record: MediaPipelineRecord,
    ) -> StoreResult<PipelineCreated>;

    /// [`StoreError::PipelineNotFound`] when the account has no such pipeline.
    async fn get_media_pipeline(
        &self,
        account_id: &str,
        media_pipeline_id: &str,
    ) -> StoreResult<MediaPipelineRecord>;

    /// One page of the account's pipelines (of `kind` when Some), ordered by (created_at,
    /// media_pipeline_id), at most `limit`. `after` is a cursor from
    /// [`MediaPipelineRecord::list_cursor`] of the previous page's last pipeline
    /// (`<created_at>:<media_pipeline_id>`): the page starts after that position, whether or not
    /// that pipeline still exists. A cursor not in that form is a [`StoreError::Backend`]: the
    /// API hands out only cursors it made.
    async fn list_media_pipelines(
        &self,
        account_id: &str,
        kind: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<MediaPipelineRecord>>;

    /// Sets a pipeline's status and updated_at. [`StoreError::PipelineNotFound`] if it is gone;
    /// [`StoreError::PipelineConflict`] if a finished capture pipeline would become unfinished
    /// while another capture of its meeting is.
    async fn set_media_pipeline_status(
        &self,
        account_id: &str,
        media_pipeline_id: &str,
        status: &str,
        updated_at: i64,
    ) -> StoreResult<()>;

    /// Records a pipeline event that comes with no status change (a temporary failure).
    /// [`StoreError::PipelineNotFound`] if the pipeline is gone.
    async fn announce_media_pipeline(
        &self,
        account_id: &str,
        media_pipeline_id: &str,
        kind: crate::domain::meeting_events::PipelineEventType,
        at_ms: i64,
    ) -> StoreResult<()>;

    /// Deletes it and returns what it was. [`StoreError::PipelineNotFound`] if absent.
    async fn delete_media_pipeline(
        &self,
        account_id: &str,
        media_pipeline_id: &str,
    ) -> StoreResult<MediaPipelineRecord>;

    /// Every pipeline (all accounts) whose status is not Stopped or Failed, ordered by
    /// (created_at, media_pipeline_id): what a restarted server must resume or mark Failed.
    async fn unfinished_media_pipelines(&self) -> StoreResult<Vec<MediaPipelineRecord>>;

    /// Changes a pipeline's tags in one transaction: removes the keys of `untag`, then sets
    /// each of `tag` (a key it already has takes the new value, in its place; a new key goes
    /// last). Fails whole with [`StoreError::TooManyTags`] when it would have more than
    /// `limit`, and with [`StoreError::PipelineNotFound`] when the account has no such pipeline.
    async fn change_media_pipeline_tags(
        &self,
        account_id: &str,
        media_pipeline_id: &str,
        tag: Vec<Tag>,
        untag: Vec<String>,
        limit: usize,
    ) -> StoreResult<()>;
}

/// The whole store: every aggregate's trait. Implemented by whatever implements them all, so a
/// backend implements the aggregates and `Arc<dyn Store>` reaches every method.
pub trait Store:
    MeetingStore
    + AttendeeStore
    + TagStore
    + PresenceStore
    + OutboxStore
    + NodeStore
    + SettingStore
    + MediaPipelineStore
{
}

impl<T> Store for T where
    T: MeetingStore
        + AttendeeStore
        + TagStore
        + PresenceStore
        + OutboxStore
        + NodeStore
        + SettingStore
        + MediaPipelineStore
{
}
