//! What the control plane tells the join plane: an attendee was deleted, a meeting ended, an
//! attendee's capabilities changed. On one node this is a direct call; across nodes it travels
//! over the NATS bus (`bus.rs`).

use serde::{Deserialize, Serialize};

use crate::domain::capabilities::Capabilities;

/// Whose capabilities an update changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CapabilityTarget {
    /// UpdateAttendeeCapabilities.
    Attendee(String),
    /// BatchUpdateAttendeeCapabilitiesExcept.
    AllExcept(Vec<String>),
}

impl CapabilityTarget {
    pub fn includes(&self, attendee_id: &str) -> bool {
        match self {
            CapabilityTarget::Attendee(id) => id == attendee_id,
            CapabilityTarget::AllExcept(excluded) => !excluded.iter().any(|id| id == attendee_id),
        }
    }
}

pub trait MeetingEvents: Send + Sync + 'static {
    fn attendee_deleted(&self, meeting_id: &str, attendee_id: &str);
    fn meeting_ended(&self, meeting_id: &str);
    /// Live sessions of these attendees now have these capabilities.
    fn capabilities_changed(
        &self,
        _meeting_id: &str,
        _target: &CapabilityTarget,
        _capabilities: Capabilities,
    ) {
    }
}

/// For an API served without a join plane.
pub struct NoJoinPlane;

impl MeetingEvents for NoJoinPlane {
    fn attendee_deleted(&self, _: &str, _: &str) {}
    fn meeting_ended(&self, _: &str) {}
}
