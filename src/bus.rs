//! The cross-node bus: what the control plane tells the join plane (an attendee was deleted, a
//! meeting ended) reaches every node over NATS, because a meeting's clients may be connected
//! to a node other than the one that served the API call.
//!
//! Each notice is applied to this node's join plane at once and published on the bus subject;
//! every other node applies what it receives. Core NATS delivery is at most once: a node that
//! misses a notice (NATS down) keeps the session until its next presence check
//! (`JoinPlane::start_presence_check`, every `--presence-check` seconds) finds the attendee or
//! meeting gone in the store, or until the client reconnects and its JoinToken is checked again.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::domain::capabilities::Capabilities;
use crate::events::{CapabilityTarget, MeetingEvents};

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
    /// The node that published it, which has already applied it.
    node: String,
    #[serde(flatten)]
    notice: Notice,
}

pub struct NatsBus {
    node: String,
    subject: String,
    local: Arc<dyn MeetingEvents>,
    client: async_nats::Client,
}

impl NatsBus {
    /// Connects, subscribes and starts applying other nodes' notices to `local`.
    pub async fn connect(
        url: &str,
        subject: String,
        node: String,
        local: Arc<dyn MeetingEvents>,
    ) -> anyhow::Result<Arc<Self>> {
        let client = async_nats::connect(url)
            .await
            .map_err(|error| anyhow::anyhow!("connecting to the bus at {url}: {error}"))?;
        let mut subscription = client
            .subscribe(subject.clone())
            .await
            .map_err(|error| anyhow::anyhow!("subscribing to {subject}: {error}"))?;
        // The subscription must be registered before any notice this node relies on is sent.
        client
            .flush()
            .await
            .map_err(|error| anyhow::anyhow!("flushing the bus subscription: {error}"))?;
        let bus = Arc::new(Self {
            node,
            subject,
            local,
            client,
        });
        let applier = Arc::downgrade(&bus);
        tokio::spawn(async move {
            use futures_util::StreamExt;
            while let Some(message) = subscription.next().await {
                let Some(bus) = applier.upgrade() else { return };
                match serde_json::from_slice::<Envelope>(&message.payload) {
                    Ok(envelope) if envelope.node != bus.node => bus.apply(&envelope.notice),
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "ignoring an unreadable bus notice"),
                }
            }
        });
        Ok(bus)
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

    fn publish(&self, notice: Notice) {
        let envelope = Envelope {
            node: self.node.clone(),
            notice,
        };
        let Ok(payload) = serde_json::to_vec(&envelope) else {
            return;
        };
        let (client, subject) = (self.client.clone(), self.subject.clone());
        tokio::spawn(async move {
            if let Err(error) = client.publish(subject, payload.into()).await {
                tracing::warn!(%error, "could not publish a notice on the bus");
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
            node: "http://10.0.0.1:8080".into(),
            notice: Notice::AttendeeDeleted {
                meeting_id: "m".into(),
                attendee_id: "a".into(),
            },
        };
        let text = serde_json::to_string(&envelope).expect("json");
        assert_eq!(
            text,
            r#"{"node":"http://10.0.0.1:8080","kind":"attendee_deleted","meeting_id":"m","attendee_id":"a"}"#
        );
        let back: Envelope = serde_json::from_str(&text).expect("parses");
        assert_eq!(back.notice, envelope.notice);
    }
}
