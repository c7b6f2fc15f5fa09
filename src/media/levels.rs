//! Each session's latest audio level, for the volume indicators (AUDIO_METADATA).
//!
//! A meeting task records its peers' levels on the packet path with one atomic store per packet
//! and reads them five times a second for the indicators.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a received audio level counts as current.
const FRESHNESS: Duration = Duration::from_millis(400);

/// One session's level: `(milliseconds since epoch + 1) << 8 | -dBov`, 0 before any level.
pub struct LevelCell {
    epoch: Instant,
    packed: AtomicU64,
}

impl Default for LevelCell {
    fn default() -> LevelCell {
        LevelCell {
            epoch: Instant::now(),
            packed: AtomicU64::new(0),
        }
    }
}

impl LevelCell {
    /// Records a level from the audio-level extension (-dBov, 0 loudest).
    pub fn record(&self, level: i8) {
        let millis = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX >> 9);
        let volume = u64::from(level.unsigned_abs().min(127));
        self.packed
            .store(((millis + 1) << 8) | volume, Ordering::Relaxed);
    }

    /// The level in minus-dB (0 loudest, 127 silent) if one arrived recently.
    pub(crate) fn current(&self, now: Instant) -> Option<u8> {
        let packed = self.packed.load(Ordering::Relaxed);
        let at = Duration::from_millis((packed >> 8).checked_sub(1)?);
        let age = now.saturating_duration_since(self.epoch).saturating_sub(at);
        (age < FRESHNESS).then(|| u8::try_from(packed & 0xff).unwrap_or(127))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_level_is_current_until_it_goes_stale() {
        let cell = LevelCell::default();
        assert_eq!(cell.current(Instant::now()), None, "no level yet");
        cell.record(-30);
        assert_eq!(cell.current(Instant::now()), Some(30));
        assert_eq!(cell.current(Instant::now() + FRESHNESS), None, "stale");
        cell.record(i8::MIN);
        assert_eq!(
            cell.current(Instant::now()),
            Some(127),
            "clamped to silence"
        );
    }
}
