//! Throttling: a token bucket per access key, refilled continuously at the key's rate up to its
//! burst. A request takes one token or is refused with the time until the next one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::keys::RateLimit;

struct Bucket {
    tokens: f64,
    refilled_at: Instant,
    limit: RateLimit,
}

/// The buckets of every key that has made a request.
#[derive(Default)]
pub struct Throttle {
    /// The rate of keys that do not set their own; `None` is unlimited.
    default_limit: Option<RateLimit>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Throttle {
    pub fn new(default_limit: Option<RateLimit>) -> Self {
        Self {
            default_limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `access_key_id`, or says how long until one is available.
    pub fn admit(
        &self,
        access_key_id: &str,
        own_limit: Option<RateLimit>,
        now: Instant,
    ) -> Result<(), Duration> {
        let Some(limit) = own_limit.or(self.default_limit) else {
            return Ok(());
        };
        let mut buckets = match self.buckets.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let bucket = buckets
            .entry(access_key_id.to_string())
            .or_insert_with(|| Bucket {
                tokens: limit.burst,
                refilled_at: now,
                limit,
            });
        if bucket.limit != limit {
            // The keys file was reloaded with a new rate: start the key over at its new burst.
            *bucket = Bucket {
                tokens: limit.burst,
                refilled_at: now,
                limit,
            };
        }
        let elapsed = now
            .saturating_duration_since(bucket.refilled_at)
            .as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * limit.rate).min(limit.burst);
        bucket.refilled_at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / limit.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: RateLimit = RateLimit {
        rate: 10.0,
        burst: 3.0,
    };

    #[test]
    fn a_burst_then_the_rate() {
        let throttle = Throttle::new(None);
        let start = Instant::now();
        for _ in 0..3 {
            assert!(throttle.admit("K", Some(LIMIT), start).is_ok());
        }
        let wait = throttle.admit("K", Some(LIMIT), start).expect_err("empty");
        assert!(wait <= Duration::from_millis(100) && wait > Duration::ZERO);
        // 100 ms later one token has come back, and only one.
        let later = start + Duration::from_millis(100);
        assert!(throttle.admit("K", Some(LIMIT), later).is_ok());
        assert!(throttle.admit("K", Some(LIMIT), later).is_err());
        // Another key has its own bucket.
        assert!(throttle.admit("OTHER", Some(LIMIT), later).is_ok());
    }

    #[test]
    fn unlimited_unless_a_rate_is_set() {
        let throttle = Throttle::new(None);
        let now = Instant::now();
        assert!((0..10_000).all(|_| throttle.admit("K", None, now).is_ok()));
        let throttle = Throttle::new(Some(LIMIT));
        assert_eq!(
            (0..10)
                .filter(|_| throttle.admit("K", None, now).is_ok())
                .count(),
            3
        );
    }
}
