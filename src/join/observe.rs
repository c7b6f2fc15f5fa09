//! What happens in a meeting's rooms, for consumers beside the meeting (a capture pipeline's
//! `meeting-events/` and `data-channel/` folders): attendees joining and leaving, cameras and
//! content shares starting and stopping, mutes, and the data messages relayed.
//!
//! Like the media taps, an observer never slows the meeting: events are handed over with
//! `try_send` into a bounded queue, and what does not fit is dropped and counted on the
//! observer. An observer that goes away is forgotten at the meeting's next event.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::mpsc;

/// One thing that happened in a meeting, as the rooms saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomEvent {
    /// The attendee's first session joined (a second device is not a new join).
    AttendeeJoined {
        attendee_id: String,
        external_user_id: String,
    },
    /// The attendee's last session left.
    AttendeeLeft {
        attendee_id: String,
        external_user_id: String,
    },
    /// A camera (or, with `#content` on the attendee id, a content share) started or stopped.
    VideoStarted {
        attendee_id: String,
    },
    VideoStopped {
        attendee_id: String,
    },
    Muted {
        attendee_id: String,
    },
    Unmuted {
        attendee_id: String,
    },
    /// A live transcription's status or final result, as a `transcription-messages/` line.
    Transcription {
        line: String,
    },
    /// A data message relayed to the meeting.
    Data {
        topic: String,
        data: Vec<u8>,
        sender_attendee_id: String,
        sender_external_user_id: String,
    },
}

/// An event and when it happened (Unix milliseconds, wall clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedEvent {
    pub at_ms: i64,
    pub event: RoomEvent,
}

/// The consumer's end. Dropped, it leaves its meeting's observers at once (a meeting that
/// ended emits nothing more that would find it gone).
pub struct Observer {
    pub events: mpsc::Receiver<ObservedEvent>,
    dropped: Arc<AtomicU64>,
    meeting_id: String,
    observers: Weak<Observers>,
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.events.close();
        if let Some(observers) = self.observers.upgrade() {
            observers.forget_closed(&self.meeting_id);
        }
    }
}

impl Observer {
    /// Events dropped because this consumer's queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

struct Subscriber {
    events: mpsc::Sender<ObservedEvent>,
    dropped: Arc<AtomicU64>,
}

/// The observers of every meeting, kept apart from the rooms (which go away when their last
/// session leaves) so that an observer outlives an empty meeting.
#[derive(Default)]
pub struct Observers {
    meetings: Mutex<HashMap<String, Vec<Subscriber>>>,
}

impl Observers {
    /// A new observer of `meeting_id` that queues at most `capacity` events.
    pub fn subscribe(self: &Arc<Self>, meeting_id: &str, capacity: usize) -> Observer {
        let (events, receiver) = mpsc::channel(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        if let Ok(mut meetings) = self.meetings.lock() {
            meetings
                .entry(meeting_id.to_string())
                .or_default()
                .push(Subscriber {
                    events,
                    dropped: dropped.clone(),
                });
        }
        Observer {
            events: receiver,
            dropped,
            meeting_id: meeting_id.to_string(),
            observers: Arc::downgrade(self),
        }
    }

    fn forget_closed(&self, meeting_id: &str) {
        if let Ok(mut meetings) = self.meetings.lock()
            && let Some(subscribers) = meetings.get_mut(meeting_id)
        {
            subscribers.retain(|subscriber| !subscriber.events.is_closed());
            if subscribers.is_empty() {
                meetings.remove(meeting_id);
            }
        }
    }

    /// Whether anyone observes the meeting (so that callers build events only when needed).
    pub fn wants(&self, meeting_id: &str) -> bool {
        self.meetings
            .lock()
            .is_ok_and(|meetings| meetings.contains_key(meeting_id))
    }

    /// Hands an event to every observer of the meeting.
    pub fn emit(&self, meeting_id: &str, event: RoomEvent) {
        let Ok(mut meetings) = self.meetings.lock() else {
            return;
        };
        let Some(subscribers) = meetings.get_mut(meeting_id) else {
            return;
        };
        let observed = ObservedEvent {
            at_ms: super::frames::timestamp_ms() as i64,
            event,
        };
        subscribers.retain(
            |subscriber| match subscriber.events.try_send(observed.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    subscriber.dropped.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            },
        );
        if subscribers.is_empty() {
            meetings.remove(meeting_id);
        }
    }

    /// Ends a meeting's observers: they see the end of their stream.
    pub fn end(&self, meeting_id: &str) {
        if let Ok(mut meetings) = self.meetings.lock() {
            meetings.remove(meeting_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(id: &str) -> RoomEvent {
        RoomEvent::AttendeeJoined {
            attendee_id: id.to_string(),
            external_user_id: format!("José {id}"),
        }
    }

    #[test]
    fn a_full_observer_drops_and_counts_and_a_gone_one_is_forgotten() {
        let observers = Arc::new(Observers::default());
        let mut slow = observers.subscribe("m", 2);
        let gone = observers.subscribe("m", 2);
        drop(gone);
        for id in ["a", "b", "c"] {
            observers.emit("m", joined(id));
        }
        assert_eq!(slow.dropped(), 1);
        let first = slow.events.try_recv().expect("the first event");
        assert_eq!(first.event, joined("a"));
        assert!(observers.wants("m"));
        observers.emit("other", joined("x"));
        drop(slow);
        assert!(!observers.wants("m"), "a dropped observer leaves at once");
    }

    #[tokio::test]
    async fn the_end_of_a_meeting_ends_its_observers() {
        let observers = Arc::new(Observers::default());
        let mut observer = observers.subscribe("m", 8);
        observers.emit("m", joined("a"));
        observers.end("m");
        assert!(observer.events.recv().await.is_some());
        assert!(observer.events.recv().await.is_none());
    }
}
