//! The join plane's way to the meetings' rooms. A [`Room`] lives in its meeting's task
//! ([`crate::media::meeting`]), which runs each change to it in turn with the meeting's media:
//! there is no lock around presence. What meetings share is the registry of their tasks, locked
//! only to find a task and queue a command on it, never while a room is read or changed.
//!
//! A session's own changes are awaited, answer or not: a client that sends frames faster than
//! its meeting's task runs them then waits on its socket, so the task's queue (unbounded, as the
//! control plane's changes must not be refused) never grows with what one client sends. Changes
//! from elsewhere (the API, recordings, transcriptions) that answer nothing are sent and not
//! waited for; commands reach a meeting's task in the order they are sent.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::{mpsc, oneshot};

use super::frames::proto::SdkStreamDescriptor;
use super::frames::proto::{SdkDataMessagePayload, SdkSignalFrame, SdkStreamAllocation};
use super::frames::timestamp_ms;
use super::limits::JoinLimits;
use super::observe::Observers;
pub use super::room::{
    AtCapacity, Inlet, Outbound, Outlet, Room, RoomReports, SessionTracks, VideoActivity, outlet,
};
use super::video::{RecordableVideo, ViewOnly};
use crate::domain::capabilities::Capabilities;
use crate::events::CapabilityTarget;
use crate::media::Media;

/// Every meeting's room on this node, reached through the media plane's meeting tasks.
pub struct Rooms {
    media: Media,
    activity: OnceLock<mpsc::Sender<VideoActivity>>,
    /// Who observes each meeting (see [`super::observe`]).
    pub observers: Arc<Observers>,
    /// Sessions in every room here, kept by the rooms themselves.
    sessions: Arc<AtomicUsize>,
}

impl Rooms {
    pub fn new(media: Media) -> Rooms {
        Rooms {
            media,
            activity: OnceLock::new(),
            observers: Arc::default(),
            sessions: Arc::default(),
        }
    }

    /// Where cameras and content shares starting and stopping are reported from now on (set
    /// once, before sessions join).
    pub fn report_video_to(&self, sink: mpsc::Sender<VideoActivity>) {
        let _ = self.activity.set(sink);
    }

    /// Runs `change` on the meeting's room and waits for its answer. With `open`, a meeting
    /// without a room here gets one (and a task); without, the answer is None.
    async fn ask<T: Send + 'static>(
        &self,
        meeting_id: &str,
        open: bool,
        change: impl FnOnce(&mut Room) -> T + Send + 'static,
    ) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        let new_room = open.then(|| {
            let meeting_id = meeting_id.to_string();
            let reports = RoomReports {
                activity: self.activity.get().cloned(),
                observers: self.observers.clone(),
                sessions: self.sessions.clone(),
            };
            move || Room::new(&meeting_id, reports)
        });
        let visit = move |slot: &mut Option<Room>| {
            let room = match (slot.as_mut(), new_room) {
                (Some(room), _) => room,
                (None, Some(new_room)) => slot.insert(new_room()),
                (None, None) => return,
            };
            let _ = reply.send(change(room));
        };
        if !self.media.visit_room(meeting_id, open, Box::new(visit)) {
            return None;
        }
        answer.await.ok()
    }

    /// Runs `change` on the meeting's room, if it has one here, without waiting.
    fn tell(&self, meeting_id: &str, change: impl FnOnce(&mut Room) + Send + 'static) {
        self.media.visit_room(
            meeting_id,
            false,
            Box::new(move |slot: &mut Option<Room>| {
                if let Some(room) = slot.as_mut() {
                    change(room);
                }
            }),
        );
    }

    /// Asks every room on this node, all at once, and gathers the answers.
    async fn ask_all<T: Send + 'static>(
        &self,
        change: impl Fn(&mut Room) -> T + Clone + Send + 'static,
    ) -> Vec<(String, T)> {
        let mut asked = Vec::new();
        for meeting_id in self.media.meeting_ids() {
            let (reply, answer) = oneshot::channel();
            let change = change.clone();
            let visit = move |slot: &mut Option<Room>| {
                if let Some(room) = slot.as_mut() {
                    let _ = reply.send(change(room));
                }
            };
            if self.media.visit_room(&meeting_id, false, Box::new(visit)) {
                asked.push((meeting_id, answer));
            }
        }
        let mut answers = Vec::with_capacity(asked.len());
        for (meeting_id, answer) in asked {
            if let Ok(value) = answer.await {
                answers.push((meeting_id, value));
            }
        }
        answers
    }

    /// Sends a data message of the server's own to every session of the meeting; with `pin`,
    /// sessions joining later get it too (see [`Room::send_server_data`]).
    pub async fn send_server_data(
        &self,
        meeting_id: &str,
        message: SdkDataMessagePayload,
        pin: bool,
    ) {
        if pin {
            self.ask(meeting_id, true, move |room| {
                room.send_server_data(message, true)
            })
            .await;
        } else {
            self.tell(meeting_id, move |room| {
                room.send_server_data(message, false)
            });
        }
    }

    /// Forgets the meeting's pinned message on `topic`.
    pub fn unpin(&self, meeting_id: &str, topic: &str) {
        let topic = topic.to_string();
        self.tell(meeting_id, move |room| room.unpin(&topic));
    }

    /// The meeting's sessions that send audio of their own: (session, attendee id,
    /// ExternalUserId).
    pub async fn audio_senders(&self, meeting_id: &str) -> Vec<(u64, String, String)> {
        self.ask(meeting_id, false, |room| room.audio_senders())
            .await
            .unwrap_or_default()
    }

    /// Lists an attendee without a session (a capture pipeline's) in the meeting's roster.
    pub async fn add_guest(&self, meeting_id: &str, attendee_id: &str, external_user_id: &str) {
        let (attendee_id, external_user_id) =
            (attendee_id.to_string(), external_user_id.to_string());
        self.ask(meeting_id, true, move |room| {
            room.add_guest(&attendee_id, &external_user_id)
        })
        .await;
    }

    /// Takes a guest out of the meeting's roster.
    pub fn remove_guest(&self, meeting_id: &str, attendee_id: &str) {
        let attendee_id = attendee_id.to_string();
        self.tell(meeting_id, move |room| room.remove_guest(&attendee_id));
    }

    /// The pinned and kept data messages for a session that has just joined.
    pub async fn kept_data_frames(
        &self,
        meeting_id: &str,
        now_ms: i64,
        limits: &JoinLimits,
    ) -> Vec<SdkSignalFrame> {
        let limits = limits.clone();
        self.ask(meeting_id, false, move |room| {
            room.kept_data_frames(now_ms, &limits)
        })
        .await
        .unwrap_or_default()
    }

    /// Registers a joined session (see [`Room::join`]), opening the meeting's room if needed.
    pub async fn join(
        &self,
        meeting_id: &str,
        session: u64,
        attendee_id: &str,
        external_user_id: &str,
        outlet: Outlet,
        max_sessions: usize,
    ) -> Result<usize, AtCapacity> {
        let (attendee_id, external_user_id) =
            (attendee_id.to_string(), external_user_id.to_string());
        self.ask(meeting_id, true, move |room| {
            room.join(
                session,
                &attendee_id,
                &external_user_id,
                outlet,
                max_sessions,
            )
        })
        .await
        // Only a media plane that has stopped takes no room: the server is going away.
        .unwrap_or(Err(AtCapacity::Sessions(0)))
    }

    /// Narrows what video a session may receive and publish to its attendee's capabilities.
    pub async fn set_video_rights(
        &self,
        meeting_id: &str,
        session: u64,
        capabilities: Capabilities,
    ) {
        self.ask(meeting_id, false, move |room| {
            room.set_video_rights(session, capabilities)
        })
        .await;
    }

    /// Applies UpdateAttendeeCapabilities to the targeted attendees' live sessions.
    pub fn capabilities_changed(
        &self,
        meeting_id: &str,
        target: &CapabilityTarget,
        capabilities: Capabilities,
    ) {
        let target = target.clone();
        self.tell(meeting_id, move |room| {
            room.capabilities_changed(&target, capabilities)
        });
    }

    /// The INDEX for a session that has just joined.
    pub async fn index_for(&self, meeting_id: &str, session: u64) -> SdkSignalFrame {
        self.ask(meeting_id, false, move |room| room.index_for(session))
            .await
            .unwrap_or_else(|| super::frames::index(timestamp_ms(), Vec::new(), false, 0))
    }

    /// Publishes a session's camera or content share (see [`Room::publish_video`]).
    pub async fn publish_video(
        &self,
        meeting_id: &str,
        session: u64,
        descriptors: Vec<SdkStreamDescriptor>,
    ) -> Result<Vec<SdkStreamAllocation>, ViewOnly> {
        self.ask(meeting_id, false, move |room| {
            let descriptors: Vec<&SdkStreamDescriptor> = descriptors.iter().collect();
            room.publish_video(session, &descriptors)
        })
        .await
        .unwrap_or(Err(ViewOnly("the session has left")))
    }

    /// The meeting's cameras and content shares, each by its best layer's stream.
    pub async fn recordable_video(&self, meeting_id: &str) -> Vec<RecordableVideo> {
        self.ask(meeting_id, false, |room| room.recordable_video())
            .await
            .unwrap_or_default()
    }

    /// Stops a session's video; the meeting gets an INDEX without it.
    pub async fn unpublish_video(&self, meeting_id: &str, session: u64) {
        self.ask(meeting_id, false, move |room| room.unpublish_video(session))
            .await;
    }

    /// A SUBSCRIBE's wanted streams, those the session may not receive now replaced by 0.
    pub async fn receivable_streams(
        &self,
        meeting_id: &str,
        session: u64,
        wanted: Vec<u32>,
        limit: usize,
    ) -> Vec<u32> {
        let none = vec![0; wanted.len()];
        self.ask(meeting_id, false, move |room| {
            room.receivable_streams(session, &wanted, limit)
        })
        .await
        .unwrap_or(none)
    }

    /// Audio check-in: the session gets a stream id and the roster, the others the newcomer.
    pub async fn check_in(&self, meeting_id: &str, session: u64, muted: bool) {
        self.ask(meeting_id, false, move |room| room.check_in(session, muted))
            .await;
    }

    /// AUDIO_CONTROL from a session.
    pub async fn set_muted(&self, meeting_id: &str, session: u64, muted: bool) {
        self.ask(meeting_id, false, move |room| {
            room.set_muted(session, muted)
        })
        .await;
    }

    /// Relays a session's data messages (see [`Room::relay_data`]); the answer is the frame of
    /// refused messages for the sender, if any.
    pub async fn relay_data(
        &self,
        meeting_id: &str,
        session: u64,
        messages: Vec<SdkDataMessagePayload>,
        limits: &JoinLimits,
        now_ms: i64,
    ) -> Option<SdkSignalFrame> {
        let limits = limits.clone();
        self.ask(meeting_id, false, move |room| {
            room.relay_data(session, messages, &limits, now_ms)
        })
        .await
        .flatten()
    }

    /// Removes a session; the others see its stream leave (`dropped` for an unexpected end).
    pub async fn leave(&self, meeting_id: &str, session: u64, dropped: bool) {
        self.ask(meeting_id, false, move |room| room.leave(session, dropped))
            .await;
    }

    /// Ends every session of the attendee, its content share included, with `status`.
    pub fn remove_attendee(&self, meeting_id: &str, attendee_id: &str, status: u32) {
        let attendee_id = attendee_id.to_string();
        self.tell(meeting_id, move |room| {
            room.remove_attendee(&attendee_id, status)
        });
    }

    /// Ends every session of the meeting with AUDIO_STATUS 410 (MeetingEnded); the room forgets
    /// what it kept, and the meeting's observers see the end of their stream.
    pub fn end_meeting(&self, meeting_id: &str) {
        self.observers.end(meeting_id);
        self.tell(meeting_id, |room| room.end_meeting("meeting ended"));
    }

    /// Whether the attendee has a session in the meeting other than `session`.
    pub async fn has_other_session(
        &self,
        meeting_id: &str,
        attendee_id: &str,
        session: u64,
    ) -> bool {
        let attendee_id = attendee_id.to_string();
        self.ask(meeting_id, false, move |room| {
            room.has_other_session(&attendee_id, session)
        })
        .await
        .unwrap_or(false)
    }

    /// Tells every session of every meeting that its meeting ended (AUDIO_STATUS 410, close
    /// 4410), which the client takes as a clean end.
    pub fn end_all(&self, reason: &'static str) {
        for meeting_id in self.media.meeting_ids() {
            self.tell(&meeting_id, move |room| room.end_meeting(reason));
        }
    }

    /// Closes every session of the meeting with `code`.
    pub fn close_meeting(&self, meeting_id: &str, code: u16, reason: &'static str) {
        self.tell(meeting_id, move |room| room.close_all(code, reason));
    }

    /// Closes every session of every meeting.
    pub fn close_all(&self, code: u16, reason: &'static str) {
        for meeting_id in self.media.meeting_ids() {
            self.close_meeting(&meeting_id, code, reason);
        }
    }

    /// Waits until the meeting's task has run every command sent to it so far (a session's
    /// media commands, which answer nothing, are followed by this).
    pub async fn caught_up(&self, meeting_id: &str) {
        self.ask(meeting_id, false, |_| ()).await;
    }

    /// Sessions of the meeting told to close as slow consumers whose tasks have not ended yet.
    pub async fn slow_consumers(&self, meeting_id: &str) -> usize {
        self.ask(meeting_id, false, |room| room.slow_consumers())
            .await
            .unwrap_or(0)
    }

    /// Meetings with someone connected to this node, and attendees connected (content shares
    /// and second devices not counted).
    pub async fn live_counts(&self) -> (usize, usize) {
        let rooms = self
            .ask_all(|room| (room.session_count(), room.live_attendees()))
            .await;
        let meetings = rooms
            .iter()
            .filter(|(_, (sessions, _))| *sessions > 0)
            .count();
        let attendees = rooms.iter().map(|(_, (_, attendees))| attendees).sum();
        (meetings, attendees)
    }

    /// Every (meeting, attendee) with a session here, content shares left out (they end with
    /// their attendee).
    pub async fn connected_attendees(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .ask_all(|room| room.connected_attendees())
            .await
            .into_iter()
            .flat_map(|(meeting_id, attendees)| {
                attendees
                    .into_iter()
                    .map(move |attendee_id| (meeting_id.clone(), attendee_id))
            })
            .collect();
        out.sort();
        out
    }

    /// Sessions connected across all meetings.
    pub fn session_count(&self) -> usize {
        self.sessions.load(Ordering::Relaxed)
    }

    /// The connected sessions of a meeting as the admin page shows them.
    pub async fn tracks(&self, meeting_id: &str) -> Vec<SessionTracks> {
        self.ask(meeting_id, false, |room| room.tracks())
            .await
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::MediaAddresses;

    async fn rooms() -> Rooms {
        let addresses = MediaAddresses::bound("127.0.0.1:0".parse().expect("an address"));
        let media = Media::start_with(&addresses, 1, 3)
            .await
            .expect("media sockets");
        Rooms::new(media)
    }

    /// Waits (boundedly) until the node has no meeting task left.
    async fn no_task_left(rooms: &Rooms) -> bool {
        for _ in 0..100 {
            if rooms.media.meeting_ids().is_empty() {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        false
    }

    #[tokio::test]
    async fn a_room_lives_in_its_meeting_task_while_it_holds_anything() {
        let rooms = rooms().await;
        let (way_in, mut inlet) = outlet(8);
        assert_eq!(
            rooms.join("m1", 1, "a", "José", way_in, 10).await,
            Ok(1),
            "the first JOIN opens the room and its task"
        );
        assert_eq!(rooms.media.meeting_ids(), ["m1"]);
        assert_eq!(rooms.session_count(), 1);
        // Another meeting's room is its own: nothing there reaches José.
        let (other, _zoe) = outlet(8);
        assert_eq!(rooms.join("m2", 2, "b", "Zoë", other, 10).await, Ok(1));
        rooms.check_in("m2", 2, false).await;
        rooms.check_in("m1", 1, false).await;
        assert_eq!(rooms.audio_senders("m1").await.len(), 1);
        let roster = inlet.queue.recv().await.expect("José's roster");
        assert!(matches!(roster, Outbound::Frame(_)));
        assert!(inlet.queue.try_recv().is_err(), "nothing from m2");
        assert_eq!(rooms.live_counts().await, (2, 2));

        // A guest keeps the room (and its task) after the last session leaves.
        rooms
            .add_guest("m1", "pipeline", "aws:MediaPipeline-1")
            .await;
        rooms.leave("m1", 1, false).await;
        rooms.leave("m2", 2, false).await;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(
            rooms.session_count(),
            0,
            "counted as each room lets them go"
        );
        assert_eq!(rooms.media.meeting_ids(), ["m1"], "m2 held nothing more");
        rooms.remove_guest("m1", "pipeline");
        assert!(no_task_left(&rooms).await, "an idle room's task ends");
        // What asks a meeting with no room here gets the empty answer, and opens nothing.
        assert!(rooms.audio_senders("m1").await.is_empty());
        assert!(rooms.media.meeting_ids().is_empty());
    }
}
