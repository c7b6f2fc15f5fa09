//! Presence: who is connected to which meeting, their audio stream ids and mute state, and the
//! roster frames (AUDIO_STREAM_ID_INFO) that tell every client about the others.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::mpsc::UnboundedSender;

use super::frames::{self, audio_status, proto::SdkSignalFrame};

/// What the session task of one connection is told to do.
#[derive(Debug)]
pub enum Outbound {
    Frame(Box<SdkSignalFrame>),
    /// Close the WebSocket with this code and reason, ending the session.
    Close(u16, &'static str),
}

struct Participant {
    attendee_id: String,
    external_user_id: String,
    /// Assigned at audio check-in (the first SUBSCRIBE with `audio_host`).
    stream_id: Option<u32>,
    muted: bool,
    tx: UnboundedSender<Outbound>,
}

#[derive(Default)]
struct Room {
    participants: HashMap<u64, Participant>,
    next_stream_id: u32,
}

impl Room {
    fn broadcast(&self, except: Option<u64>, frame: &SdkSignalFrame) {
        for (session, p) in &self.participants {
            if Some(*session) != except {
                let _ = p.tx.send(Outbound::Frame(Box::new(frame.clone())));
            }
        }
    }
}

/// Every meeting's connected participants, keyed by session id (one per WebSocket).
#[derive(Default)]
pub struct Rooms {
    rooms: Mutex<HashMap<String, Room>>,
}

/// Wall-clock milliseconds for frame timestamps (the client estimates clock skew from them).
pub fn timestamp_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

impl Rooms {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Room>) -> T) -> T {
        let mut rooms = match self.rooms.lock() {
            Ok(guard) => guard,
            // A panic elsewhere cannot leave a room half-updated in a way that matters more
            // than losing every meeting's presence, so keep going with the data as it is.
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut rooms)
    }

    /// Registers a joined session and returns how many sessions the meeting now has. An older
    /// session of the same attendee is told AUDIO_STATUS 301 (joined from another device) and
    /// closed.
    pub fn join(
        &self,
        meeting_id: &str,
        session: u64,
        attendee_id: &str,
        external_user_id: &str,
        tx: UnboundedSender<Outbound>,
    ) -> usize {
        self.with(|rooms| {
            let room = rooms.entry(meeting_id.to_string()).or_default();
            for p in room
                .participants
                .values()
                .filter(|p| p.attendee_id == attendee_id)
            {
                let _ = p.tx.send(Outbound::Frame(Box::new(frames::audio_status(
                    timestamp_ms(),
                    audio_status::JOINED_FROM_ANOTHER_DEVICE,
                ))));
                let _ =
                    p.tx.send(Outbound::Close(1000, "joined from another device"));
            }
            room.participants.insert(
                session,
                Participant {
                    attendee_id: attendee_id.to_string(),
                    external_user_id: external_user_id.to_string(),
                    stream_id: None,
                    muted: false,
                    tx,
                },
            );
            room.participants.len()
        })
    }

    /// Audio check-in: gives the session a stream id, sends it the whole roster and sends
    /// everyone else the newcomer. Checking in twice (renegotiation) changes nothing.
    pub fn check_in(&self, meeting_id: &str, session: u64, muted: bool) {
        self.with(|rooms| {
            let Some(room) = rooms.get_mut(meeting_id) else {
                return;
            };
            let next = room.next_stream_id + 1;
            let Some(me) = room.participants.get_mut(&session) else {
                return;
            };
            if me.stream_id.is_some() {
                return;
            }
            room.next_stream_id = next;
            me.stream_id = Some(next);
            me.muted = muted;
            let entry = frames::present(next, &me.attendee_id, &me.external_user_id, muted);
            let roster: Vec<_> = room
                .participants
                .values()
                .filter_map(|p| {
                    p.stream_id
                        .map(|id| frames::present(id, &p.attendee_id, &p.external_user_id, p.muted))
                })
                .collect();
            if let Some(me) = room.participants.get(&session) {
                let _ = me.tx.send(Outbound::Frame(Box::new(frames::stream_info(
                    timestamp_ms(),
                    roster,
                ))));
            }
            room.broadcast(
                Some(session),
                &frames::stream_info(timestamp_ms(), vec![entry]),
            );
        })
    }

    pub fn set_muted(&self, meeting_id: &str, session: u64, muted: bool) {
        self.with(|rooms| {
            let Some(room) = rooms.get_mut(meeting_id) else {
                return;
            };
            let Some(me) = room.participants.get_mut(&session) else {
                return;
            };
            me.muted = muted;
            if let Some(stream) = me.stream_id {
                room.broadcast(
                    None,
                    &frames::stream_info(timestamp_ms(), vec![frames::muted(stream, muted)]),
                );
            }
        })
    }

    /// Relays realtime data messages from one session to the others in its meeting (the sending
    /// client delivers its own messages locally).
    pub fn relay_data(
        &self,
        meeting_id: &str,
        session: u64,
        messages: Vec<frames::proto::SdkDataMessagePayload>,
    ) {
        self.with(|rooms| {
            let Some(room) = rooms.get(meeting_id) else {
                return;
            };
            let Some(sender) = room.participants.get(&session) else {
                return;
            };
            let frame = frames::data_messages(
                timestamp_ms(),
                messages,
                &sender.attendee_id,
                &sender.external_user_id,
            );
            room.broadcast(Some(session), &frame);
        })
    }

    /// Removes a session; the others see its stream leave (`dropped` for an unexpected end).
    pub fn leave(&self, meeting_id: &str, session: u64, dropped: bool) {
        self.with(|rooms| {
            let Some(room) = rooms.get_mut(meeting_id) else {
                return;
            };
            if let Some(stream) = room.participants.remove(&session).and_then(|p| p.stream_id) {
                room.broadcast(
                    None,
                    &frames::stream_info(timestamp_ms(), vec![frames::departed(stream, dropped)]),
                );
            }
            if room.participants.is_empty() {
                rooms.remove(meeting_id);
            }
        })
    }

    /// Ends every session of the attendee with `status` (411 after DeleteAttendee).
    pub fn remove_attendee(&self, meeting_id: &str, attendee_id: &str, status: u32) {
        self.with(|rooms| {
            let Some(room) = rooms.get(meeting_id) else {
                return;
            };
            for p in room
                .participants
                .values()
                .filter(|p| p.attendee_id == attendee_id)
            {
                let _ = p.tx.send(Outbound::Frame(Box::new(frames::audio_status(
                    timestamp_ms(),
                    status,
                ))));
                let _ = p.tx.send(Outbound::Close(1000, "attendee removed"));
            }
        })
    }

    /// Ends every session of the meeting with AUDIO_STATUS 410 (MeetingEnded).
    pub fn end_meeting(&self, meeting_id: &str) {
        self.with(|rooms| {
            let Some(room) = rooms.get(meeting_id) else {
                return;
            };
            room.broadcast(
                None,
                &frames::audio_status(timestamp_ms(), audio_status::MEETING_ENDED),
            );
            for p in room.participants.values() {
                let _ = p.tx.send(Outbound::Close(1000, "meeting ended"));
            }
        })
    }

    /// Whether the attendee has a session in the meeting other than `session`.
    pub fn has_other_session(&self, meeting_id: &str, attendee_id: &str, session: u64) -> bool {
        self.with(|rooms| {
            rooms.get(meeting_id).is_some_and(|room| {
                room.participants
                    .iter()
                    .any(|(id, p)| *id != session && p.attendee_id == attendee_id)
            })
        })
    }

    /// Sends each meeting's checked-in sessions an AUDIO_METADATA frame built from the media
    /// task's current levels (session → minus-dB volume).
    pub fn send_volume_indicators(&self, levels: &std::collections::HashMap<u64, Option<u8>>) {
        self.with(|rooms| {
            for room in rooms.values() {
                let states: Vec<_> = room
                    .participants
                    .iter()
                    .filter_map(|(session, p)| {
                        let stream = p.stream_id?;
                        let volume = levels.get(session)?;
                        Some(frames::proto::SdkAudioAttendeeState {
                            audio_stream_id: Some(stream),
                            volume: volume.map(u32::from),
                            muted: Some(p.muted),
                            signal_strength: Some(2),
                        })
                    })
                    .collect();
                if !states.is_empty() {
                    room.broadcast(None, &frames::audio_metadata(timestamp_ms(), states));
                }
            }
        })
    }

    /// Closes every session of every meeting.
    pub fn close_all(&self, code: u16, reason: &'static str) {
        self.with(|rooms| {
            for p in rooms.values().flat_map(|r| r.participants.values()) {
                let _ = p.tx.send(Outbound::Close(code, reason));
            }
        })
    }

    /// Sessions connected across all meetings.
    pub fn session_count(&self) -> usize {
        self.with(|rooms| rooms.values().map(|r| r.participants.len()).sum())
    }
}
