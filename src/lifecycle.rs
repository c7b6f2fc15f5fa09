//! Meetings end by themselves, as on AWS: after `EndRules::idle_seconds` with no attendee
//! connected (counted from creation, and again from whenever the last attendee left), and
//! `EndRules::max_seconds` after creation. Replicas end with their primary. A sweep finds what is
//! due by the server's `Clock`, so a manual clock ends idle meetings the moment it is advanced.
//!
//! The same tick keeps the event outbox to its retention (`--event-retention`): events recorded
//! longer ago than that are deleted, delivered or not, so the outbox stays bounded whatever
//! happens to the sinks. That is real time, whatever the clock says: it is about disk, not about
//! meetings.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::events::MeetingEvents;
use crate::store::{EndRules, Store, StoreResult};

/// AWS's rules: five idle minutes, 24 hours at most.
pub const AWS_RULES: EndRules = EndRules {
    idle_seconds: 5 * 60,
    max_seconds: 24 * 60 * 60,
};

/// Attendees one sweep transaction deletes beyond its first meeting: about one full meeting (a
/// few milliseconds of the single writer's time), or up to `DUE_MEETINGS_PER_CALL` small ones.
const SWEEP_ATTENDEE_BUDGET: usize = 256;

/// How often the background sweep looks for meetings that are due.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Outbox events one prune transaction looks at (the oldest), and how many such transactions
/// one tick runs at most: a store that kept millions of events catches up over some ticks
/// instead of holding back the meeting sweep.
const PRUNE_BATCH: usize = 2_000;
const PRUNE_BATCHES_PER_TICK: usize = 25;

pub struct Lifecycle {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    rules: EndRules,
    events: Arc<dyn MeetingEvents>,
    /// One sweep at a time, so a clock advance and the background tick do not race.
    sweeping: tokio::sync::Mutex<()>,
    /// How long outbox events are kept (None: for ever).
    event_retention: Option<Duration>,
}

impl Lifecycle {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        rules: EndRules,
        events: Arc<dyn MeetingEvents>,
    ) -> Self {
        Self {
            store,
            clock,
            rules,
            events,
            sweeping: tokio::sync::Mutex::new(()),
            event_retention: None,
        }
    }

    /// Keeps outbox events for `retention` (see the module's note).
    pub fn with_event_retention(mut self, retention: Duration) -> Self {
        self.event_retention = Some(retention);
        self
    }

    pub fn rules(&self) -> EndRules {
        self.rules
    }

    /// Ends every meeting that is due now, tells the join plane (connected clients get
    /// AUDIO_STATUS 410 and a 4410 close), and returns the ids that ended.
    pub async fn sweep(&self) -> StoreResult<Vec<String>> {
        let _one_at_a_time = self.sweeping.lock().await;
        let now = self.clock.now_unix();
        let mut all = Vec::new();
        // In bounded transactions, so the writes queued behind the sweep wait for one of them at
        // most: meetings created together idle out together, and ending 800 meetings of 250
        // attendees in one transaction held every write back for 6.4 s.
        loop {
            let ended = self
                .store
                .end_due_meetings(now, self.rules, SWEEP_ATTENDEE_BUDGET)
                .await?;
            if ended.is_empty() {
                return Ok(all);
            }
            for meeting_id in &ended {
                tracing::info!(%meeting_id, "meeting ended: idle, or past its maximum duration, or its primary ended");
                self.events.meeting_ended(meeting_id);
            }
            all.extend(ended);
        }
    }

    /// Deletes outbox events recorded longer ago than the retention, at most
    /// `PRUNE_BATCHES_PER_TICK` transactions' worth; returns how many went.
    pub async fn prune_outbox(&self) -> StoreResult<usize> {
        let Some(retention) = self.event_retention else {
            return Ok(0);
        };
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis());
        let before_ms =
            i64::try_from(now_ms.saturating_sub(retention.as_millis())).unwrap_or(i64::MAX);
        let mut pruned = 0;
        for _ in 0..PRUNE_BATCHES_PER_TICK {
            let removed = self.store.prune_events(before_ms, PRUNE_BATCH).await?;
            pruned += removed;
            if removed < PRUNE_BATCH {
                break;
            }
        }
        if pruned > 0 {
            tracing::info!(
                events = pruned,
                retention_seconds = retention.as_secs(),
                "outbox: deleted events past the retention"
            );
        }
        Ok(pruned)
    }

    /// Sweeps every second for as long as the lifecycle exists.
    pub fn start(self: &Arc<Self>) {
        let lifecycle = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(lifecycle) = lifecycle.upgrade() else {
                    return;
                };
                if let Err(error) = lifecycle.sweep().await {
                    tracing::warn!(%error, "the meeting-lifecycle sweep failed; retrying");
                }
                if let Err(error) = lifecycle.prune_outbox().await {
                    tracing::warn!(%error, "pruning the event outbox failed; retrying");
                }
            }
        });
    }
}
