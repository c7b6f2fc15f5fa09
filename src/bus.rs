//! The cross-node bus: what the control plane tells the join plane (an attendee was deleted, a
//! meeting ended, capabilities changed) reaches every node over NATS, because a meeting's
//! clients may be connected to a node other than the one that served the API call.
//!
//! Each notice is applied to this node's join plane at once and published on the bus subject;
//! every other node applies what it receives. Delivery is at least once, through JetStream:
//! - the subject is captured by a stream (file storage, notices kept 10 minutes), so a notice
//!   published while a node is disconnected waits for it;
//! - a publish is retried until JetStream acknowledges it (for up to a minute: NATS restarting,
//!   say), under one message id, which JetStream's duplicate window turns into one notice;
//! - each node reads the stream through an ordered consumer from where it joined, which
//!   resumes after the sequence it last saw when NATS comes back;
//! - receivers drop an id they have already applied.
//!
//! The presence check (`JoinPlane::start_presence_check`, every `--presence-check`) remains
//! the backstop for a notice older than the stream keeps.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::domain::capabilities::Capabilities;
use crate::events::{CapabilityTarget, MeetingEvents};

/// How long the stream keeps a notice for a node that has not read it yet.
const NOTICE_RETENTION: Duration = Duration::from_secs(600);
/// JetStream drops a second publish of the same message id within this window.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// How long a publish is retried before it is given up (and the presence check is left to
/// catch what it said).
const PUBLISH_RETRY_FOR: Duration = Duration::from_secs(60);
/// How long one pull for notices waits (the idle heartbeat is half of it).
const PULL_EXPIRY: Duration = Duration::from_secs(2);
/// Message ids remembered per node to drop a notice delivered twice.
const SEEN_IDS: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Notice {
    AttendeeDeleted {
        meeting_id: String,
        attendee_id: String,
    },
    MeetingEnded {
        meeting_id: String,
    },
    CapabilitiesChanged {
        meeting_id: String,
        target: CapabilityTarget,
        capabilities: Capabilities,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    /// Unique per notice: the JetStream message id, and what receivers deduplicate by.
    id: String,
    /// The node that published it, which has already applied it.
    node: String,
    #[serde(flatten)]
    notice: Notice,
}

/// The ids of the notices applied lately, oldest first.
#[derive(Default)]
struct Seen {
    order: VecDeque<String>,
    ids: HashSet<String>,
}

impl Seen {
    /// Whether `id` is new; remembers it.
    fn first_time(&mut self, id: &str) -> bool {
        if self.ids.contains(id) {
            return false;
        }
        if self.order.len() >= SEEN_IDS
            && let Some(oldest) = self.order.pop_front()
        {
            self.ids.remove(&oldest);
        }
        self.order.push_back(id.to_string());
        self.ids.insert(id.to_string());
        true
    }
}

/// The JetStream stream that captures `subject` (stream names allow no dots or wildcards).
fn stream_name(subject: &str) -> String {
    let safe: String = subject
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("CARILLON_BUS_{safe}")
}

pub struct NatsBus {
    node: String,
    subject: String,
    local: Arc<dyn MeetingEvents>,
    jetstream: jetstream::Context,
    seen: Mutex<Seen>,
}

impl NatsBus {
    /// Connects, makes sure the stream exists, and starts applying other nodes' notices to
    /// `local` from now on.
    pub async fn connect(
        url: &str,
        subject: String,
        node: String,
        local: Arc<dyn MeetingEvents>,
    ) -> anyhow::Result<Arc<Self>> {
        // Back within a second of NATS returning (the default waits up to minutes). A
        // reconnect also makes the reader start a new consumer at once: the old one may have
        // gone with the server, which the ordered consumer would only notice after two missed
        // idle heartbeats (30 s).
        let reconnected = Arc::new(tokio::sync::Notify::new());
        let on_event = reconnected.clone();
        let client = async_nats::ConnectOptions::new()
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis(100 * attempts.min(10) as u64)
            })
            .event_callback(move |event| {
                let reconnected = on_event.clone();
                async move {
                    if matches!(event, async_nats::Event::Connected) {
                        reconnected.notify_one();
                    }
                }
            })
            .connect(url)
            .await
            .map_err(|error| anyhow::anyhow!("connecting to the bus at {url}: {error}"))?;
        let jetstream = jetstream::new(client);
        let stream = jetstream
            .get_or_create_stream(jetstream::stream::Config {
                name: stream_name(&subject),
                subjects: vec![subject.clone()],
                max_age: NOTICE_RETENTION,
                duplicate_window: DUPLICATE_WINDOW,
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|error| {
                anyhow::anyhow!(
                    "the bus at {url} needs JetStream (nats-server -js) for the stream of \
                     {subject}: {error}"
                )
            })?;
        let start = stream.cached_info().state.last_sequence.saturating_add(1);
        let bus = Arc::new(Self {
            node,
            subject,
            local,
            jetstream,
            seen: Mutex::new(Seen::default()),
        });
        // The consumer must exist before any notice this node relies on is sent.
        let messages = Self::read_from(&stream, start).await?;
        tokio::spawn(Self::apply_notices(
            Arc::downgrade(&bus),
            stream,
            messages,
            start,
            reconnected,
        ));
        Ok(bus)
    }

    async fn read_from(
        stream: &jetstream::stream::Stream,
        sequence: u64,
    ) -> anyhow::Result<jetstream::consumer::pull::Ordered> {
        let consumer = stream
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: sequence,
                },
                // Short pulls (idle heartbeat half of it): a consumer lost some other way than
                // with a reconnect is noticed after two missed heartbeats, a few seconds.
                max_expires: PULL_EXPIRY,
                ..Default::default()
            })
            .await
            .map_err(|error| anyhow::anyhow!("reading the bus stream: {error}"))?;
        consumer
            .messages()
            .await
            .map_err(|error| anyhow::anyhow!("reading the bus stream: {error}"))
    }

    /// Applies what other nodes publish, for as long as the bus exists, reading on from the
    /// last sequence read with a new consumer whenever the connection comes back or the
    /// consumer's messages end.
    async fn apply_notices(
        bus: std::sync::Weak<Self>,
        stream: jetstream::stream::Stream,
        mut messages: jetstream::consumer::pull::Ordered,
        mut next: u64,
        reconnected: Arc<tokio::sync::Notify>,
    ) {
        loop {
            tokio::select! {
                message = messages.next() => match message {
                    Some(Ok(message)) => {
                        let Some(bus) = bus.upgrade() else { return };
                        if let Ok(info) = message.info() {
                            next = info.stream_sequence.saturating_add(1);
                        }
                        bus.receive(&message.payload);
                        continue;
                    }
                    Some(Err(error)) => {
                        tracing::debug!(%error, "reading the bus stream");
                        continue;
                    }
                    None => tokio::time::sleep(Duration::from_secs(1)).await,
                },
                () = reconnected.notified() => {}
            }
            if bus.upgrade().is_none() {
                return;
            }
            match Self::read_from(&stream, next).await {
                Ok(resumed) => messages = resumed,
                Err(error) => {
                    tracing::warn!(%error, "could not read the bus stream again; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    reconnected.notify_one();
                }
            }
        }
    }

    fn receive(&self, payload: &[u8]) {
        match serde_json::from_slice::<Envelope>(payload) {
            Ok(envelope) if envelope.node != self.node => {
                let new = self
                    .seen
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .first_time(&envelope.id);
                if new {
                    self.apply(&envelope.notice);
                }
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "ignoring an unreadable bus notice"),
        }
    }

    fn apply(&self, notice: &Notice) {
        match notice {
            Notice::AttendeeDeleted {
                meeting_id,
                attendee_id,
            } => self.local.attendee_deleted(meeting_id, attendee_id),
            Notice::MeetingEnded { meeting_id } => self.local.meeting_ended(meeting_id),
            Notice::CapabilitiesChanged {
                meeting_id,
                target,
                capabilities,
            } => self
                .local
                .capabilities_changed(meeting_id, target, *capabilities),
        }
    }

    /// Publishes `notice` until JetStream acknowledges it, in the background.
    fn publish(&self, notice: Notice) {
        let envelope = Envelope {
            id: uuid::Uuid::new_v4().simple().to_string(),
            node: self.node.clone(),
            notice,
        };
        let Ok(payload) = serde_json::to_vec(&envelope) else {
            return;
        };
        let (jetstream, subject) = (self.jetstream.clone(), self.subject.clone());
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let mut wait = Duration::from_millis(100);
            loop {
                let message = jetstream::message::PublishMessage::build()
                    .payload(payload.clone().into())
                    .message_id(&envelope.id);
                let acknowledged = match jetstream.send_publish(subject.clone(), message).await {
                    Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                    Err(error) => Err(error.to_string()),
                };
                match acknowledged {
                    Ok(()) => return,
                    Err(error) if started.elapsed() >= PUBLISH_RETRY_FOR => {
                        tracing::warn!(%error, "gave up publishing a notice on the bus");
                        return;
                    }
                    Err(error) => {
                        tracing::debug!(%error, "publishing a notice on the bus; retrying");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(1));
                    }
                }
            }
        });
    }
}

impl MeetingEvents for NatsBus {
    fn attendee_deleted(&self, meeting_id: &str, attendee_id: &str) {
        let notice = Notice::AttendeeDeleted {
            meeting_id: meeting_id.to_string(),
            attendee_id: attendee_id.to_string(),
        };
        self.apply(&notice);
        self.publish(notice);
    }

    fn meeting_ended(&self, meeting_id: &str) {
        let notice = Notice::MeetingEnded {
            meeting_id: meeting_id.to_string(),
        };
        self.apply(&notice);
        self.publish(notice);
    }

    fn capabilities_changed(
        &self,
        meeting_id: &str,
        target: &CapabilityTarget,
        capabilities: Capabilities,
    ) {
        let notice = Notice::CapabilitiesChanged {
            meeting_id: meeting_id.to_string(),
            target: target.clone(),
            capabilities,
        };
        self.apply(&notice);
        self.publish(notice);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip_as_json() {
        let envelope = Envelope {
            id: "n1".into(),
            node: "http://10.0.0.1:8080".into(),
            notice: Notice::AttendeeDeleted {
                meeting_id: "m".into(),
                attendee_id: "a".into(),
            },
        };
        let text = serde_json::to_string(&envelope).expect("json");
        assert_eq!(
            text,
            r#"{"id":"n1","node":"http://10.0.0.1:8080","kind":"attendee_deleted","meeting_id":"m","attendee_id":"a"}"#
        );
        let back: Envelope = serde_json::from_str(&text).expect("parses");
        assert_eq!(back.notice, envelope.notice);
    }

    #[test]
    fn a_notice_delivered_twice_is_applied_once_and_the_memory_is_bounded() {
        let mut seen = Seen::default();
        assert!(seen.first_time("a"));
        assert!(!seen.first_time("a"));
        for i in 0..SEEN_IDS {
            assert!(seen.first_time(&format!("id{i}")));
        }
        assert_eq!(seen.order.len(), SEEN_IDS);
        assert_eq!(seen.ids.len(), SEEN_IDS);
        // "a" was the oldest: forgotten to make room.
        assert!(seen.first_time("a"));
    }

    #[test]
    fn stream_names_are_what_jetstream_accepts() {
        assert_eq!(stream_name("carillon.bus"), "CARILLON_BUS_carillon_bus");
        assert_eq!(stream_name("a.*.>"), "CARILLON_BUS_a____");
    }
}
