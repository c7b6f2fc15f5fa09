//! Time comes from a `Clock`, never straight from the system clock, so tests (and users, with
//! `--clock manual`) can move it. Only SigV4's ±15-minute window reads the real clock, so signed
//! clients keep working after the server's clock jumps.

use std::sync::atomic::{AtomicI64, Ordering};

pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;

    /// Seconds since the Unix epoch.
    fn now_unix(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// The manual clock behind this one, if it only moves when told to.
    fn as_manual(&self) -> Option<&ManualClock> {
        None
    }
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default()
    }
}

/// A clock that stands still until told to move.
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A manual clock starting at `now_unix` seconds.
    pub fn new(now_unix: i64) -> Self {
        Self(AtomicI64::new(now_unix.saturating_mul(1000)))
    }

    /// A manual clock starting at the real time.
    pub fn starting_now() -> Self {
        Self(AtomicI64::new(SystemClock.now_ms()))
    }

    pub fn advance(&self, seconds: i64) {
        self.advance_ms(seconds.saturating_mul(1000));
    }

    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }

    fn as_manual(&self) -> Option<&ManualClock> {
        Some(self)
    }
}

/// Why a duration (`90s`, `6m`, `2h`, `1d`) does not parse. The texts are what clap shows after
/// "invalid value" for a duration flag or argument.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("'{0}' is not a duration like 90s, 6m, 2h or 1d")]
    Malformed(String),
    /// More seconds than an `i64` holds.
    #[error("'{0}' is too long")]
    TooLong(String),
}

/// Parses a duration as people write it: `90`, `90s`, `6m`, `2h`, `1d` (seconds when bare).
pub fn parse_duration_seconds(text: &str) -> Result<i64, DurationError> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((index, _)) => text.split_at(index),
        None => (text, ""),
    };
    let value: i64 = digits
        .parse()
        .map_err(|_| DurationError::Malformed(text.to_string()))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(DurationError::Malformed(text.to_string())),
    };
    value
        .checked_mul(scale)
        .ok_or_else(|| DurationError::TooLong(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration_seconds("90"), Ok(90));
        assert_eq!(parse_duration_seconds("6m"), Ok(360));
        assert_eq!(parse_duration_seconds("24h"), Ok(86_400));
        assert_eq!(parse_duration_seconds("1d"), Ok(86_400));
        assert!(parse_duration_seconds("6 minutes").is_err());
        assert!(parse_duration_seconds("m").is_err());
        assert!(parse_duration_seconds("-5m").is_err());
        assert_eq!(
            parse_duration_seconds("6 minutes").map_err(|e| e.to_string()),
            Err("'6 minutes' is not a duration like 90s, 6m, 2h or 1d".to_string())
        );
        assert_eq!(
            parse_duration_seconds("9999999999999999d"),
            Err(DurationError::TooLong("9999999999999999d".to_string()))
        );
    }

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(100);
        assert_eq!(clock.now_unix(), 100);
        clock.advance(360);
        assert_eq!(clock.now_ms(), 460_000);
        assert!(clock.as_manual().is_some());
        assert!(SystemClock.as_manual().is_none());
    }
}
