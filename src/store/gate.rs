//! The commit gate: a request that timed out must not commit after its caller was told 503.
//!
//! The dispatcher runs each request inside a gate (a task-local). A store write passes the gate
//! just before it commits; a timed-out request closes the gate. Whichever comes first wins: a
//! closed gate makes the write roll back, and a passed gate makes the dispatcher wait for the
//! request's real answer instead of reporting a failure for a write that is on disk.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

const OPEN: u8 = 0;
const COMMITTED: u8 = 1;
const CLOSED: u8 = 2;

#[derive(Debug, Default)]
pub struct CommitGate(AtomicU8);

tokio::task_local! {
    static CURRENT: Arc<CommitGate>;
}

impl CommitGate {
    pub fn new() -> Arc<Self> {
        Arc::new(Self(AtomicU8::new(OPEN)))
    }

    /// The gate of the request running on this task, if any (none outside the API).
    pub fn current() -> Option<Arc<CommitGate>> {
        CURRENT.try_with(Arc::clone).ok()
    }

    /// Runs `future` with this gate as the current one.
    pub async fn scope<F: Future>(self: Arc<Self>, future: F) -> F::Output {
        CURRENT.scope(self, future).await
    }

    /// Called by a write just before it commits: true when it may (the request has not timed
    /// out), and from then on the request can no longer be abandoned.
    pub fn pass(&self) -> bool {
        match self
            .0
            .compare_exchange(OPEN, COMMITTED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(state) => state == COMMITTED,
        }
    }

    /// Called when the request timed out: true when nothing has committed and nothing will.
    pub fn close(&self) -> bool {
        match self
            .0
            .compare_exchange(OPEN, CLOSED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(state) => state == CLOSED,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_to_the_gate_wins() {
        let gate = CommitGate::new();
        assert!(gate.pass());
        assert!(
            gate.pass(),
            "a second write of the same request may commit too"
        );
        assert!(!gate.close(), "a committed request cannot be abandoned");

        let gate = CommitGate::new();
        assert!(gate.close());
        assert!(
            !gate.pass(),
            "nothing commits after the caller was told 503"
        );
    }

    #[tokio::test]
    async fn the_gate_is_task_local() {
        assert!(CommitGate::current().is_none());
        let gate = CommitGate::new();
        let inside = gate
            .clone()
            .scope(async { CommitGate::current().is_some() })
            .await;
        assert!(inside);
    }
}
