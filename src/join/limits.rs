//! What one signaling client may cost the server: message sizes, deadlines, socket and session
//! caps, outbound queue depth and the data-message rules. Every number is a field of
//! [`JoinLimits`] so that an operator flag can change it later; the defaults fit a browser running
//! amazon-chime-sdk-js with room to spare, and keep a hostile client's cost small and bounded.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Limits of the join plane. `Default` holds the values the server runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinLimits {
    /// Largest WebSocket message (and frame) accepted at all, in bytes. A SUBSCRIBE with an SDP
    /// offer is a few KB, a simulcast video offer perhaps 20 KB; tungstenite refuses anything
    /// bigger while reading the frame header or the fragments, before buffering it.
    pub max_message_bytes: usize,
    /// Largest message accepted before JOIN, in bytes: a JOIN frame is a few hundred bytes, and a
    /// socket nobody has authenticated yet should cost next to nothing.
    pub max_unjoined_message_bytes: usize,
    /// Bytes each socket reads from TCP at a time. tungstenite allocates (and zero-fills) this
    /// much per socket up front, so it bounds the cost of idle and unauthenticated sockets.
    pub read_buffer_bytes: usize,
    /// Bytes the WebSocket collects before it writes them to TCP (every send is flushed anyway).
    pub write_buffer_bytes: usize,
    /// Most bytes a socket's write buffer may hold when TCP does not take them: one roster of a
    /// full meeting with long external user ids, with room to spare. Past it the send fails and
    /// the session ends, instead of the buffer growing for a client that does not read.
    pub max_write_buffer_bytes: usize,
    /// How long a new socket has to send JOIN. Unlike the idle timeout, no other message (a
    /// ping, say) extends it: a socket that never joins is closed after this long whatever it
    /// sends.
    pub join_timeout: Duration,
    /// How long a joined socket may stay silent before it is taken as dropped (clients ping
    /// every 10 s).
    pub idle_timeout: Duration,
    /// How long one write to a socket may take. A client that stops reading fills TCP; its
    /// session is then dropped instead of waiting on it for ever.
    pub send_timeout: Duration,
    /// Sockets that are open but have not joined yet, across the server. New sockets past it are
    /// closed at once with a retryable code.
    pub max_unjoined_sockets: usize,
    /// Joined sessions in one meeting: 250 attendees, each with a content-share session.
    pub max_sessions_per_meeting: usize,
    /// Frames waiting for one session's socket. A session whose queue is full is a slow consumer
    /// and is dropped (it reconnects and gets a fresh roster) instead of the queue growing.
    pub outbound_queue_frames: usize,
    /// Largest `data` of one data message, in bytes, as amazon-chime-sdk-js checks it.
    pub data_message_max_bytes: usize,
    /// Longest data message topic, in characters. The SDK also requires `[A-Za-z0-9_-]`, which
    /// [`valid_topic`] checks too.
    pub data_topic_max_chars: usize,
    /// Data messages in one DATA_MESSAGE frame (the SDK sends one); extras are refused.
    pub data_messages_per_frame: usize,
    /// Data messages an attendee may send per second, on average.
    pub data_messages_per_second: f64,
    /// Data messages an attendee may send at once after being quiet.
    pub data_message_burst: f64,
    /// Data messages with a `lifetime_ms` kept per meeting for attendees who join later; past
    /// it the oldest are dropped first.
    pub retained_data_messages: usize,
    /// Bytes (data and topic) of the data messages kept per meeting; past it the oldest are
    /// dropped first.
    pub retained_data_bytes: usize,
    /// Bytes of kept data messages replayed in one DATA_MESSAGE frame (a late joiner gets as
    /// many frames as needed), well under `max_write_buffer_bytes`.
    pub replay_frame_bytes: usize,
}

impl Default for JoinLimits {
    fn default() -> Self {
        Self {
            max_message_bytes: 64 * 1024,
            max_unjoined_message_bytes: 4 * 1024,
            read_buffer_bytes: 8 * 1024,
            write_buffer_bytes: 16 * 1024,
            max_write_buffer_bytes: 512 * 1024,
            join_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(10),
            max_unjoined_sockets: 1024,
            max_sessions_per_meeting: 500,
            outbound_queue_frames: 512,
            data_message_max_bytes: 2048,
            data_topic_max_chars: 36,
            data_messages_per_frame: 10,
            data_messages_per_second: 100.0,
            data_message_burst: 200.0,
            retained_data_messages: 1024,
            retained_data_bytes: 1024 * 1024,
            replay_frame_bytes: 128 * 1024,
        }
    }
}

impl JoinLimits {
    /// Why a data message is refused before it costs a token, if it is.
    pub fn data_message_refusal(
        &self,
        message: &super::frames::proto::SdkDataMessagePayload,
    ) -> Option<&'static str> {
        let topic = message.topic.as_deref().unwrap_or_default();
        if topic.chars().count() > self.data_topic_max_chars {
            return Some("topic too long");
        }
        if !valid_topic(topic) {
            return Some("invalid topic");
        }
        if message.data.as_ref().map_or(0, Vec::len) > self.data_message_max_bytes {
            return Some("data too big");
        }
        None
    }
}

/// The topic pattern amazon-chime-sdk-js enforces before sending (`^[a-zA-Z0-9_-]{1,36}$`, the
/// length checked apart): a topic outside it did not come from the SDK.
pub fn valid_topic(topic: &str) -> bool {
    !topic.is_empty()
        && topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A token bucket: `rate` tokens a second up to `burst`, starting full. On tokio's clock, so
/// that a runtime with paused time pauses it too.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            tokens: burst,
            last: Instant::now(),
            rate,
            burst,
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self) -> bool {
        self.try_take_at(Instant::now())
    }

    /// Takes one token if there is one at `now` (tests pass their own instants).
    pub fn try_take_at(&mut self, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Counts sockets that have not joined yet, so that unauthenticated sockets stay few.
#[derive(Debug, Default)]
pub struct Unjoined {
    count: AtomicUsize,
}

/// One socket's place among the unjoined; the place is given back when this is dropped (on JOIN,
/// or when the socket ends first).
#[derive(Debug)]
pub struct UnjoinedSlot<'a> {
    gauge: &'a Unjoined,
}

impl Unjoined {
    /// A place for one more socket, unless `max` are already waiting.
    pub fn try_take(&self, max: usize) -> Option<UnjoinedSlot<'_>> {
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| UnjoinedSlot { gauge: self })
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }
}

impl Drop for UnjoinedSlot<'_> {
    fn drop(&mut self) {
        self.gauge.count.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::join::frames::proto::SdkDataMessagePayload;

    fn message(topic: &str, data_len: usize) -> SdkDataMessagePayload {
        SdkDataMessagePayload {
            topic: Some(topic.into()),
            data: Some(vec![0; data_len]),
            ..Default::default()
        }
    }

    #[test]
    fn data_messages_are_checked_as_the_sdk_checks_them() {
        let limits = JoinLimits::default();
        assert_eq!(limits.data_message_refusal(&message("chat", 2048)), None);
        assert_eq!(
            limits.data_message_refusal(&message("chat", 2049)),
            Some("data too big")
        );
        let longest = "a".repeat(36);
        assert_eq!(limits.data_message_refusal(&message(&longest, 0)), None);
        assert_eq!(
            limits.data_message_refusal(&message(&"a".repeat(37), 0)),
            Some("topic too long")
        );
        // Counted in characters: 36 'é' are 72 bytes but not too long, only outside the pattern.
        assert_eq!(
            limits.data_message_refusal(&message(&"é".repeat(36), 0)),
            Some("invalid topic")
        );
        assert_eq!(
            limits.data_message_refusal(&message("Zoë", 0)),
            Some("invalid topic")
        );
        assert_eq!(
            limits.data_message_refusal(&message("", 0)),
            Some("invalid topic")
        );
        assert!(valid_topic("team-chat_2"));
    }

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let mut bucket = TokenBucket::new(100.0, 200.0);
        let start = bucket.last;
        let mut take_at = |at: Instant| (0..300).filter(|_| bucket.try_take_at(at)).count();
        assert_eq!(take_at(start), 200);
        assert_eq!(take_at(start + Duration::from_millis(100)), 10);
        assert_eq!(
            take_at(start + Duration::from_secs(60)),
            200,
            "never more than the burst"
        );
        assert_eq!(take_at(start), 0, "a clock going back refills nothing");
    }

    #[test]
    fn unjoined_places_are_given_back() {
        let gauge = Unjoined::default();
        let first = gauge.try_take(2);
        let second = gauge.try_take(2);
        assert!(first.is_some() && second.is_some());
        assert!(gauge.try_take(2).is_none(), "the cap holds");
        drop(first);
        assert_eq!(gauge.count(), 1);
        assert!(gauge.try_take(2).is_some());
    }
}
