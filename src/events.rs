//! What the control plane tells the join plane: an attendee was deleted, a meeting ended.
//! On one node this is a direct call; across nodes it will travel over NATS.

pub trait MeetingEvents: Send + Sync + 'static {
    fn attendee_deleted(&self, meeting_id: &str, attendee_id: &str);
    fn meeting_ended(&self, meeting_id: &str);
}

/// For an API served without a join plane.
pub struct NoJoinPlane;

impl MeetingEvents for NoJoinPlane {
    fn attendee_deleted(&self, _: &str, _: &str) {}
    fn meeting_ended(&self, _: &str) {}
}
