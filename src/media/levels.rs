//! Each session's latest audio level, for the volume indicators (AUDIO_METADATA).
//!
//! A meeting task writes its peers' levels on the packet path with one atomic store per packet;
//! the board's lock is taken only when a peer comes or goes and when the indicators are read
//! (five times a second), never per packet.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a received audio level counts as current.
const FRESHNESS: Duration = Duration::from_millis(400);

/// One session's level: `(milliseconds since epoch + 1) << 8 | -dBov`, 0 before any level.
pub struct LevelCell {
    epoch: Instant,
    packed: AtomicU64,
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
    fn current(&self, now: Instant) -> Option<u8> {
        let packed = self.packed.load(Ordering::Relaxed);
        let at = Duration::from_millis((packed >> 8).checked_sub(1)?);
        let age = now.saturating_duration_since(self.epoch).saturating_sub(at);
        (age < FRESHNESS).then(|| u8::try_from(packed & 0xff).unwrap_or(127))
    }
}

#[derive(Default)]
pub struct LevelBoard {
    cells: Mutex<HashMap<u64, Arc<LevelCell>>>,
}

impl LevelBoard {
    /// A cell for a new peer.
    pub fn register(&self, session: u64) -> Arc<LevelCell> {
        let cell = Arc::new(LevelCell {
            epoch: Instant::now(),
            packed: AtomicU64::new(0),
        });
        if let Ok(mut cells) = self.cells.lock() {
            cells.insert(session, cell.clone());
        }
        cell
    }

    pub fn remove(&self, session: u64) {
        if let Ok(mut cells) = self.cells.lock() {
            cells.remove(&session);
        }
    }

    /// Peers on this node.
    pub fn len(&self) -> usize {
        self.cells.lock().map_or(0, |cells| cells.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every peer's session with its current level, None when no recent level arrived.
    pub fn snapshot(&self) -> Vec<(u64, Option<u8>)> {
        let now = Instant::now();
        self.cells.lock().map_or_else(
            |_| Vec::new(),
            |cells| {
                cells
                    .iter()
                    .map(|(session, cell)| (*session, cell.current(now)))
                    .collect()
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_level_is_current_until_it_goes_stale() {
        let board = LevelBoard::default();
        let cell = board.register(7);
        assert_eq!(board.snapshot(), vec![(7, None)], "no level yet");
        cell.record(-30);
        assert_eq!(board.snapshot(), vec![(7, Some(30))]);
        assert_eq!(cell.current(Instant::now() + FRESHNESS), None, "stale");
        cell.record(i8::MIN);
        assert_eq!(board.snapshot(), vec![(7, Some(127))], "clamped to silence");
        board.remove(7);
        assert!(board.is_empty());
    }
}
