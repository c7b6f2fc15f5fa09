//! What a viewer's downlink has been seen to carry, as a floor under its bandwidth estimate.
//!
//! str0m's send-side estimator reacts to congestion by backing off to a share of the rate the
//! viewer acknowledged, and then climbs back at its additive-increase pace. Traced on a
//! downlink capped at 500 kbit/s (bench/results/2026-12-06-step-down-drain-experiment.md), it
//! fell to about 213 kbit/s within a second of the cap and took some 16 s to come back to
//! 450 kbit/s: on the way, the low simulcast layer did not fit and the viewer's video was
//! paused for seconds on a link that carries it easily.
//!
//! While the link is saturated, though, what it delivers *is* its capacity: the bytes sent less
//! the share transport-cc feedback reports lost. That measurement is kept as a floor under the
//! estimate for a while, so that layer selection follows the link rather than the estimator's
//! overshoot. It is replaced by any newer saturated measurement (a link that gets narrower shows
//! loss again at once) and expires, so a stale one never outlives what it measured for long.

use std::time::{Duration, Instant};

/// Loss (from transport-cc, over the last second) at or above which the downlink is taken as
/// saturated: a queue on the path overflowing, not the odd random loss of a lossy link (the
/// network bench's lossy condition is 3 %).
const SATURATED_LOSS: f32 = 0.10;
/// Loss at or above which what arrives says nothing of the capacity: an outage or a burst, not
/// a queue. The floor is dropped and the estimator alone decides.
const OUTAGE_LOSS: f32 = 0.90;
/// The floor is this share of what a saturated link delivered, leaving the queue room to drain
/// (the estimator's own back-off factor on an acknowledged rate).
const FLOOR_SHARE: f64 = 0.85;
/// How long a saturated measurement stands without a newer one: long enough for the
/// estimator to climb back after congestion, short enough not to outlive the link it measured.
const FLOOR_LIFETIME: Duration = Duration::from_secs(10);

/// One viewer's delivered-capacity floor, fed by str0m's per-second peer stats.
#[derive(Debug, Default)]
pub struct DeliveredCapacity {
    /// Bytes sent to the peer so far and when, at the previous stats event.
    last: Option<(u64, Instant)>,
    /// The floor (bits per second) and when it was measured.
    floor: Option<(u64, Instant)>,
}

impl DeliveredCapacity {
    /// Records one stats event: `bytes_sent` is the running total of bytes sent to the peer,
    /// `loss` the share of them transport-cc feedback reported lost over the last second.
    pub fn on_stats(&mut self, bytes_sent: u64, loss: Option<f32>, at: Instant) {
        let previous = self.last.replace((bytes_sent, at));
        let (Some((before, then)), Some(loss)) = (previous, loss) else {
            return;
        };
        let seconds = at.saturating_duration_since(then).as_secs_f64();
        if seconds <= 0.0 || loss < SATURATED_LOSS {
            return;
        }
        if loss >= OUTAGE_LOSS {
            self.floor = None;
            return;
        }
        let sent_bps = bytes_sent.saturating_sub(before) as f64 * 8.0 / seconds;
        let delivered_bps = sent_bps * f64::from(1.0 - loss);
        self.floor = Some(((delivered_bps * FLOOR_SHARE) as u64, at));
    }

    /// The floor under the estimate now, if a recent saturated measurement gives one.
    pub fn floor(&self, now: Instant) -> Option<u64> {
        self.floor
            .filter(|(_, at)| now.saturating_duration_since(*at) < FLOOR_LIFETIME)
            .map(|(bps, _)| bps)
    }

    /// The estimate layer selection and the client go by: the estimator's, or the floor when
    /// that is higher.
    pub fn effective(&self, estimate: Option<u64>, now: Instant) -> Option<u64> {
        match (estimate, self.floor(now)) {
            (Some(estimate), Some(floor)) => Some(estimate.max(floor)),
            (estimate, floor) => estimate.or(floor),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds one second at `sent_bps` with `loss`, starting `t` seconds after `start`.
    fn second(
        capacity: &mut DeliveredCapacity,
        total: &mut u64,
        start: Instant,
        t: u64,
        sent_bps: u64,
        loss: f32,
    ) {
        *total += sent_bps / 8;
        capacity.on_stats(*total, Some(loss), start + Duration::from_secs(t));
    }

    #[test]
    fn a_saturated_link_sets_a_floor_at_what_it_delivered() {
        let start = Instant::now();
        let (mut capacity, mut total) = (DeliveredCapacity::default(), 0);
        second(&mut capacity, &mut total, start, 0, 1_300_000, 0.0);
        second(&mut capacity, &mut total, start, 1, 1_300_000, 0.0);
        assert_eq!(
            capacity.floor(start + Duration::from_secs(1)),
            None,
            "no loss, no floor"
        );
        // Capped at 500 kbit/s: 1.3 Mbit/s sent, 61.5 % lost.
        second(&mut capacity, &mut total, start, 2, 1_300_000, 0.615);
        let floor = capacity
            .floor(start + Duration::from_secs(2))
            .expect("floor");
        assert!((420_000..=430_000).contains(&floor), "{floor}");
        // The estimator undershoots; the floor holds it up.
        let now = start + Duration::from_secs(3);
        assert_eq!(capacity.effective(Some(213_000), now), Some(floor));
        assert_eq!(capacity.effective(Some(600_000), now), Some(600_000));
    }

    #[test]
    fn the_floor_expires_and_a_newer_saturated_measurement_replaces_it() {
        let start = Instant::now();
        let (mut capacity, mut total) = (DeliveredCapacity::default(), 0);
        second(&mut capacity, &mut total, start, 0, 1_000_000, 0.0);
        second(&mut capacity, &mut total, start, 1, 1_000_000, 0.5);
        let first = capacity
            .floor(start + Duration::from_secs(1))
            .expect("floor");
        // Seconds without loss keep it, until its lifetime is over.
        for t in 2..=10 {
            second(&mut capacity, &mut total, start, t, 300_000, 0.0);
        }
        assert_eq!(capacity.floor(start + Duration::from_secs(10)), Some(first));
        assert_eq!(capacity.floor(start + Duration::from_secs(11)), None);
        // A narrower link shows loss again: the new measurement stands, lower.
        second(&mut capacity, &mut total, start, 12, 400_000, 0.4);
        let narrower = capacity
            .floor(start + Duration::from_secs(12))
            .expect("floor");
        assert!(narrower < first, "{narrower} < {first}");
    }

    #[test]
    fn random_loss_and_outages_leave_the_estimator_alone() {
        let start = Instant::now();
        let (mut capacity, mut total) = (DeliveredCapacity::default(), 0);
        second(&mut capacity, &mut total, start, 0, 1_200_000, 0.0);
        second(&mut capacity, &mut total, start, 1, 1_200_000, 0.03);
        assert_eq!(
            capacity.floor(start + Duration::from_secs(1)),
            None,
            "3 % loss is no queue"
        );
        second(&mut capacity, &mut total, start, 2, 1_200_000, 0.5);
        assert!(capacity.floor(start + Duration::from_secs(2)).is_some());
        second(&mut capacity, &mut total, start, 3, 1_200_000, 1.0);
        assert_eq!(
            capacity.floor(start + Duration::from_secs(3)),
            None,
            "a burst measures nothing"
        );
        assert_eq!(
            capacity.effective(Some(200_000), start + Duration::from_secs(3)),
            Some(200_000)
        );
        assert_eq!(DeliveredCapacity::default().effective(None, start), None);
    }
}
