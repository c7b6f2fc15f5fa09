//! The join plane: the signaling WebSocket and WebRTC media that let amazon-chime-sdk-js join a
//! meeting with the JoinToken the API handed out. A meeting's sessions live on one node.

pub mod client_events;
pub mod frames;
pub mod limits;
pub mod observe;
pub mod relay;
pub use crate::media;
pub mod room;
pub mod rooms;
pub mod setup;
pub mod signaling;
pub mod video;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::routing::get;

use crate::clock::Clock;
use crate::domain::capabilities::Capabilities;
use crate::domain::meeting_events::EventType;
use crate::events::{CapabilityTarget, MeetingEvents};
use crate::store::{AttendeeRecord, PresenceChange, Store};
use frames::{audio_status, close_code};
pub use limits::JoinLimits;

pub struct JoinPlane {
    pub store: Arc<dyn Store>,
    pub rooms: rooms::Rooms,
    pub media: media::Media,
    pub clock: Arc<dyn Clock>,
    /// What one client may cost; [`JoinLimits::default`] unless set with [`JoinPlane::with_limits`].
    pub limits: JoinLimits,
    /// Sockets that have not joined yet, capped by `limits.max_unjoined_sockets`.
    unjoined: limits::Unjoined,
    next_session: AtomicU64,
    /// JoinTokens of sessions that ended lately, good for the client's last event batches.
    pub farewells: client_events::Farewells,
    /// Mints the TURN credentials of each JOIN_ACK when TURN is on (off by default).
    pub turn: Option<Arc<crate::turn::TurnMinter>>,
    /// The nodes sharing the store; without it (tests of the join plane alone) every meeting is
    /// taken to be hosted here.
    cluster: Option<Arc<crate::cluster::Cluster>>,
}

/// Whether a JoinToken admits its bearer to the meeting in the URL.
pub enum Admission {
    Admitted(AttendeeRecord),
    Refused(u16, &'static str),
}

/// Where a signaling socket for a meeting is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinRoute {
    /// By this node: it hosts the meeting, or has just taken it over, or cannot tell (the
    /// admission then decides).
    Here,
    /// Relayed to the live node at this public URL, which hosts the meeting.
    Relay(String),
}

/// Camera and content-share starts and stops waiting to be written as meeting events.
const VIDEO_ACTIVITY_BACKLOG: usize = 4096;

impl JoinPlane {
    pub fn new(store: Arc<dyn Store>, media: media::Media, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            rooms: rooms::Rooms::new(media.clone()),
            media,
            clock,
            limits: JoinLimits::default(),
            unjoined: limits::Unjoined::default(),
            next_session: AtomicU64::new(1),
            farewells: client_events::Farewells::default(),
            turn: None,
            cluster: None,
        }
    }

    /// The same join plane, refusing meetings that `cluster` says are hosted on another node.
    pub fn with_cluster(mut self, cluster: Arc<crate::cluster::Cluster>) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// The nodes sharing the store, when this join plane knows them.
    pub fn cluster(&self) -> Option<&Arc<crate::cluster::Cluster>> {
        self.cluster.as_ref()
    }

    /// The same join plane with TURN credentials in every JOIN_ACK.
    pub fn with_turn(mut self, turn: Option<Arc<crate::turn::TurnMinter>>) -> Self {
        self.turn = turn;
        self
    }

    /// The same join plane with other limits (before it is shared and serving).
    pub fn with_limits(mut self, limits: JoinLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Sockets open but not joined yet.
    pub fn unjoined_count(&self) -> usize {
        self.unjoined.count()
    }

    /// Records cameras and content shares starting and stopping as meeting events, for as long
    /// as the join plane exists.
    pub fn start_video_events(self: &Arc<Self>) {
        self.start_video_activity_events();
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/control/{meeting_id}", get(signaling::upgrade))
            .route(
                "/v1/client-events",
                axum::routing::post(client_events::ingest).options(client_events::preflight),
            )
            .with_state(self)
    }

    /// Ends every signaling session for a server that stops: with `End`, AUDIO_STATUS 410 and
    /// close 4410, so the SDK stops cleanly with MeetingEnded; with `Reconnect`, close 4503,
    /// a code the client retries on (4500–4599), for a server that comes back.
    pub fn shut_down(&self, mode: crate::config::ShutdownMode) {
        match mode {
            crate::config::ShutdownMode::End => self.rooms.end_all("server shutting down"),
            crate::config::ShutdownMode::Reconnect => self
                .rooms
                .close_all(close_code::SERVER_GOING_AWAY, "server shutting down"),
        }
    }

    fn next_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    /// A token admits when its attendee exists in this meeting. A deleted attendee or a token of
    /// another meeting is "attendee unavailable" (4403); a meeting that is gone has ended (4410).
    ///
    /// `<JoinToken>#content` admits the content-share session of the token's attendee, as
    /// attendee `<AttendeeId>#content`, for as long as that attendee exists.
    pub async fn admit(
        &self,
        meeting_id: &str,
        token: Option<&crate::domain::id::JoinToken>,
    ) -> Admission {
        let unavailable =
            Admission::Refused(close_code::ATTENDEE_UNAVAILABLE, "attendee unavailable");
        let (token, content) = match token.map(|token| video::split_content(token.expose())) {
            Some((token, content)) => (Some(token), content),
            None => (None, false),
        };
        let attendee = match token {
            Some(token) => self.store.find_attendee_by_join_token(token).await,
            None => Ok(None),
        };
        match attendee {
            Ok(Some(mut attendee)) if attendee.meeting_id == meeting_id => {
                if let Some(refusal) = self.hosted_elsewhere(meeting_id).await {
                    return refusal;
                }
                if content {
                    attendee.attendee_id = video::content_attendee_id(&attendee.attendee_id);
                }
                Admission::Admitted(attendee)
            }
            Ok(_) => match self.store.meeting_exists(meeting_id).await {
                Ok(true) => unavailable,
                Ok(false) => Admission::Refused(close_code::MEETING_ENDED, "meeting ended"),
                Err(error) => {
                    tracing::error!(
                        %error,
                        meeting_id = %frames::loggable(meeting_id),
                        "store failure while admitting a JoinToken"
                    );
                    Admission::Refused(4500, "internal error")
                }
            },
            Err(error) => {
                tracing::error!(
                    %error,
                    meeting_id = %frames::loggable(meeting_id),
                    "store failure while admitting a JoinToken"
                );
                Admission::Refused(4500, "internal error")
            }
        }
    }

    /// A refusal when the meeting is hosted on another node: its sessions, mixer and forwarder
    /// all live there, and a session here would hear nobody. Joins are routed to the host before
    /// they get here (`route_join`); this catches a handshake relayed here by a node whose view
    /// of the host differs, or a host that changed in between. A meeting whose URL the node
    /// registry does not know is admitted (one from an earlier run of this machine under
    /// another URL).
    async fn hosted_elsewhere(&self, meeting_id: &str) -> Option<Admission> {
        let cluster = self.cluster.as_ref()?;
        let host = match self.store.meeting_host(meeting_id).await {
            Ok(Some(host)) => host,
            // Gone since the token was read: the meeting's end reaches the client anyway.
            Ok(None) => return None,
            Err(error) => {
                tracing::error!(%error, "store failure while looking up a meeting's node");
                return Some(Admission::Refused(4500, "internal error"));
            }
        };
        let (code, reason) = match cluster.host(&host) {
            crate::cluster::Host::Here | crate::cluster::Host::Unknown => return None,
            crate::cluster::Host::Live(_) => (
                close_code::HOSTED_ELSEWHERE,
                "meeting is hosted on another node: use its SignalingUrl",
            ),
            crate::cluster::Host::Gone(_) => (
                close_code::HOST_GONE,
                "the node hosting this meeting is gone",
            ),
        };
        tracing::info!(
            meeting_id = %frames::loggable(meeting_id),
            host,
            code,
            "refusing a join for a meeting hosted on another node"
        );
        Some(Admission::Refused(code, reason))
    }

    /// How long a join waits for a host that cannot be reached before giving up: until the
    /// registry counts the host as gone (`--node-timeout`, plus a beat to learn it).
    pub fn host_wait(&self) -> std::time::Duration {
        self.cluster
            .as_ref()
            .map_or(std::time::Duration::ZERO, |cluster| {
                cluster.timeout() + cluster.timeout() / 2
            })
    }

    /// Where a join of `meeting_id` is served. A meeting hosted on another live node is relayed
    /// there. A meeting whose host stopped beating moves to this node (failover): one atomic
    /// change of host in the store, so that of several nodes taking reconnects for it at once
    /// one wins and the others relay to the winner. A handshake another node relayed here is
    /// never relayed on (`relayed`): the admission decides.
    pub async fn route_join(&self, meeting_id: &str, relayed: bool) -> JoinRoute {
        let Some(cluster) = self.cluster.as_ref().filter(|_| !relayed) else {
            return JoinRoute::Here;
        };
        let Ok(Some(mut host)) = self.store.meeting_host(meeting_id).await else {
            // Gone, or the store cannot tell now: the admission answers either.
            return JoinRoute::Here;
        };
        // Bounded: a winner that is itself gone by now is taken over in turn, a few times.
        for _ in 0..3 {
            let gone = match cluster.host(&host) {
                crate::cluster::Host::Here | crate::cluster::Host::Unknown => {
                    return JoinRoute::Here;
                }
                crate::cluster::Host::Live(url) => return JoinRoute::Relay(url),
                crate::cluster::Host::Gone(url) => url,
            };
            match self
                .store
                .move_meeting(meeting_id, &gone, cluster.own_url())
                .await
            {
                Ok(Some(now)) if now == cluster.own_url() => {
                    tracing::info!(
                        meeting_id = %frames::loggable(meeting_id),
                        from = gone,
                        "took over a meeting whose node stopped beating"
                    );
                    crate::metrics::record_meeting_moved_here();
                    return JoinRoute::Here;
                }
                Ok(Some(now)) => host = now,
                Ok(None) => return JoinRoute::Here,
                Err(error) => {
                    tracing::error!(%error, "store failure while moving a meeting off a gone node");
                    return JoinRoute::Here;
                }
            }
        }
        JoinRoute::Here
    }

    /// Whether the token's attendee still exists (a store failure counts as yes: the admission
    /// already succeeded, and a later DeleteAttendee will still find the session).
    async fn still_admitted(&self, token: Option<&crate::domain::id::JoinToken>) -> bool {
        match token.map(|token| video::split_content(token.expose())) {
            Some((token, _)) => !matches!(
                self.store.find_attendee_by_join_token(token).await,
                Ok(None)
            ),
            None => false,
        }
    }

    /// Checks the attendees connected to this node against the store every `interval`, for as
    /// long as the join plane exists: one whose attendee is gone is told 411 (or 410 when its
    /// meeting is gone too) and closed. Notices over the bus do this at once; this is what
    /// catches a lost notice, or a change made through another node without a bus.
    pub fn start_presence_check(self: &Arc<Self>, interval: std::time::Duration) {
        let plane = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(plane) = plane.upgrade() else { return };
                plane.check_presence().await;
            }
        });
    }

    async fn check_presence(&self) {
        let connected = self.rooms.connected_attendees().await;
        self.hand_over_moved_meetings(&connected).await;
        let mut meeting_gone: Option<(String, bool)> = None;
        for (meeting_id, attendee_id) in connected {
            match self.store.presence(&meeting_id, &attendee_id).await {
                Err(crate::store::StoreError::AttendeeNotFound) => {}
                // Present, or the store cannot tell now: the next check asks again.
                _ => continue,
            }
            // One meeting lookup per meeting, not per attendee (the list is sorted).
            let gone = match &meeting_gone {
                Some((id, gone)) if *id == meeting_id => *gone,
                _ => {
                    let Ok(exists) = self.store.meeting_exists(&meeting_id).await else {
                        continue;
                    };
                    meeting_gone = Some((meeting_id.clone(), !exists));
                    !exists
                }
            };
            tracing::info!(
                meeting_id,
                attendee_id,
                meeting_gone = gone,
                "disconnecting an attendee the store no longer has"
            );
            if gone {
                self.rooms.end_meeting(&meeting_id);
            } else {
                self.rooms.remove_attendee(
                    &meeting_id,
                    &attendee_id,
                    audio_status::ATTENDEE_REMOVED,
                );
            }
        }
    }

    /// Closes, with a code the client reconnects on, the sessions here of meetings that another
    /// node has taken over: this node was counted gone (paused, cut off from the store) while
    /// its clients stayed, and their reconnects now reach the meeting's new host.
    async fn hand_over_moved_meetings(&self, connected: &[(String, String)]) {
        let Some(cluster) = self.cluster.as_ref() else {
            return;
        };
        let mut meetings: Vec<&str> = connected.iter().map(|(m, _)| m.as_str()).collect();
        meetings.dedup();
        for meeting_id in meetings {
            let Ok(Some(host)) = self.store.meeting_host(meeting_id).await else {
                continue;
            };
            if matches!(cluster.host(&host), crate::cluster::Host::Live(_)) {
                tracing::warn!(
                    meeting_id,
                    host,
                    "another node took this node's meeting over: closing its sessions here"
                );
                self.rooms.close_meeting(
                    meeting_id,
                    close_code::SERVER_GOING_AWAY,
                    "the meeting moved to another node",
                );
            }
        }
    }

    /// Turns cameras and content shares starting and stopping into meeting events
    /// (`chime:AttendeeVideoStarted`, `chime:AttendeeContentVideoStopped`, ...).
    fn start_video_activity_events(&self) {
        let (sink, mut activity) = tokio::sync::mpsc::channel(VIDEO_ACTIVITY_BACKLOG);
        self.rooms.report_video_to(sink);
        let (store, clock) = (self.store.clone(), self.clock.clone());
        tokio::spawn(async move {
            while let Some(change) = activity.recv().await {
                let rooms::VideoActivity {
                    meeting_id,
                    attendee_id,
                    started,
                } = change;
                let (_, content) = video::split_content(&attendee_id);
                let kind = match (content, started) {
                    (false, true) => EventType::AttendeeVideoStarted,
                    (false, false) => EventType::AttendeeVideoStopped,
                    (true, true) => EventType::AttendeeContentVideoStarted,
                    (true, false) => EventType::AttendeeContentVideoStopped,
                };
                record_media_event(&*store, &meeting_id, &attendee_id, kind, clock.now_unix())
                    .await;
            }
        });
    }

    /// A content share joining, leaving or dropping, as a meeting event (`chime:AttendeeContent…`).
    async fn record_content_presence(
        &self,
        meeting_id: &str,
        content_attendee_id: &str,
        change: PresenceChange,
    ) {
        let kind = match change {
            PresenceChange::Joined => EventType::AttendeeContentJoined,
            PresenceChange::Left => EventType::AttendeeContentLeft,
            PresenceChange::Dropped => EventType::AttendeeContentDropped,
        };
        let now = self.clock.now_unix();
        record_media_event(&*self.store, meeting_id, content_attendee_id, kind, now).await;
    }

    async fn record_presence(&self, meeting_id: &str, attendee_id: &str, change: PresenceChange) {
        let now = self.clock.now_unix();
        if let Err(error) = self
            .store
            .record_presence(meeting_id, attendee_id, change, now)
            .await
        {
            tracing::warn!(%error, meeting_id, attendee_id, ?change, "could not record presence");
        }
    }
}

/// Records a media event for a session's attendee id (`<AttendeeId>#content` for a content
/// share, whose attendee in the store is `<AttendeeId>`); a store failure is logged, as the
/// media itself goes on.
async fn record_media_event(
    store: &dyn Store,
    meeting_id: &str,
    session_attendee_id: &str,
    kind: EventType,
    at: i64,
) {
    let (attendee_id, _) = video::split_content(session_attendee_id);
    if let Err(error) = store
        .record_media_event(meeting_id, attendee_id, session_attendee_id, kind, at)
        .await
    {
        tracing::warn!(%error, meeting_id, attendee_id = session_attendee_id, event = kind.name(), "could not record a media event");
    }
}

impl MeetingEvents for JoinPlane {
    fn attendee_deleted(&self, meeting_id: &str, attendee_id: &str) {
        self.rooms
            .remove_attendee(meeting_id, attendee_id, audio_status::ATTENDEE_REMOVED);
    }

    fn meeting_ended(&self, meeting_id: &str) {
        self.rooms.end_meeting(meeting_id);
        self.media.end_meeting_taps(meeting_id);
    }

    fn capabilities_changed(
        &self,
        meeting_id: &str,
        target: &CapabilityTarget,
        capabilities: Capabilities,
    ) {
        self.media.set_audio_role(
            meeting_id,
            target.clone(),
            media::AudioRole::from_capability(capabilities.audio),
        );
        self.rooms
            .capabilities_changed(meeting_id, target, capabilities);
    }
}
