//! Prometheus metrics, served by the admin listener at `/metrics`. Counters and histograms are
//! recorded where things happen (the dispatcher, the throttle, the event sinks); gauges of live
//! state are read when a scrape comes.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Buckets for request and delivery durations, in seconds: 0.1 ms to 10 s.
const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder (installed on first use) and the handle that renders it.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), DURATION_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
        }
        handle
    })
}

/// Names, so that every place records under the same one.
pub mod name {
    pub const API_REQUESTS: &str = "carillon_api_requests_total";
    pub const API_DURATION: &str = "carillon_api_request_duration_seconds";
    pub const THROTTLED: &str = "carillon_api_throttled_total";
    pub const SHED: &str = "carillon_api_shed_total";
    /// ListAttendees pages served from the page cache (`result="hit"`) or read from the store
    /// (`result="miss"`).
    pub const LIST_CACHE: &str = "carillon_list_cache_total";
    /// GetAttendee answers served from the cache (`result="hit"`) or read from the store
    /// (`result="miss"`).
    pub const ATTENDEE_CACHE: &str = "carillon_attendee_cache_total";
    pub const SESSIONS: &str = "carillon_signaling_sessions";
    /// Joins this node carried to their meeting's host node (behind `--cluster-url`).
    pub const JOINS_RELAYED: &str = "carillon_joins_relayed_total";
    /// Meetings this node took over from a host that had stopped beating (failover).
    pub const MEETINGS_MOVED_HERE: &str = "carillon_meetings_moved_here_total";
    pub const LIVE_MEETINGS: &str = "carillon_live_meetings";
    pub const LIVE_ATTENDEES: &str = "carillon_live_attendees";
    pub const STORE_DURATION: &str = "carillon_store_duration_seconds";
    pub const EVENTS_DELIVERED: &str = "carillon_events_delivered_total";
    pub const EVENTS_DEAD: &str = "carillon_events_dead_lettered_total";
    pub const EVENT_DELIVERY: &str = "carillon_event_delivery_duration_seconds";
    pub const EVENT_BACKLOG: &str = "carillon_event_backlog";
    pub const MEDIA_PEERS: &str = "carillon_media_peers";
    pub const MEDIA_MEETINGS: &str = "carillon_media_meetings";
    pub const MEDIA_DATAGRAMS: &str = "carillon_media_datagrams_received_total";
    pub const MEDIA_DROPPED: &str = "carillon_media_datagrams_dropped_total";
    pub const MIXER_TICKS: &str = "carillon_mixer_ticks_total";
    pub const MIXER_BUSY: &str = "carillon_mixer_busy_microseconds_total";
    pub const MIXER_DROPPED: &str = "carillon_mixer_dropped_total";
    /// Lost uplink audio packets by what the mixer did about them (`how="fec"` rebuilt from the
    /// next packet's in-band FEC, `how="concealed"`).
    pub const MIXER_LOST: &str = "carillon_mixer_lost_packets_total";
    pub const MIXER_SILENCE: &str = "carillon_mixer_silence_frames_total";
    /// Lost uplink packets (of those above) played as silence because the codec's concealment
    /// came out at full scale: unsafe-libopus's SILK concealment defect, guarded in the mixer.
    pub const MIXER_SILENCED: &str = "carillon_mixer_silenced_rebuilds_total";
    pub const VIDEO_FRAMES: &str = "carillon_video_frames_forwarded_total";
    pub const VIDEO_BYTES: &str = "carillon_video_bytes_forwarded_total";
    pub const KEYFRAME_REQUESTS: &str = "carillon_video_keyframe_requests_total";
    /// Final utterances of live transcription by outcome: `transcribed`, `failed` (the engine
    /// did not answer) or `dropped` (the engine was behind).
    pub const TRANSCRIPTION_UTTERANCES: &str = "carillon_transcription_utterances_total";
    /// How long the transcription engine took per request (partial and final).
    pub const TRANSCRIPTION_ENGINE: &str = "carillon_transcription_engine_seconds";
}

/// Times one store read or write (a write until it is committed, queueing and retries
/// included), by backend.
pub fn record_store(backend: &'static str, kind: &'static str, started: std::time::Instant) {
    metrics::histogram!(name::STORE_DURATION, "backend" => backend, "kind" => kind)
        .record(started.elapsed().as_secs_f64());
}

/// A join carried to its meeting's host node.
pub fn record_join_relayed() {
    metrics::counter!(name::JOINS_RELAYED).increment(1);
}

/// A meeting taken over from a host that stopped beating.
pub fn record_meeting_moved_here() {
    metrics::counter!(name::MEETINGS_MOVED_HERE).increment(1);
}

/// Copies the media plane's counters into the recorder (at scrape time: the hot path only bumps
/// atomics).
pub fn record_media(stats: &crate::media::MediaStats) {
    use name::*;
    metrics::gauge!(MEDIA_PEERS).set(stats.peers as f64);
    metrics::gauge!(MEDIA_MEETINGS).set(stats.meetings as f64);
    metrics::counter!(MEDIA_DATAGRAMS).absolute(stats.datagrams_received);
    metrics::counter!(MEDIA_DROPPED, "reason" => "unroutable").absolute(stats.datagrams_unroutable);
    metrics::counter!(MEDIA_DROPPED, "reason" => "meeting_inbox_full")
        .absolute(stats.datagrams_dropped);
    metrics::counter!(MIXER_TICKS).absolute(stats.mixer_ticks);
    metrics::counter!(MIXER_BUSY)
        .absolute(u64::try_from(stats.mixer_busy.as_micros()).unwrap_or(u64::MAX));
    metrics::counter!(MIXER_DROPPED, "what" => "packet").absolute(stats.mixer_dropped_packets);
    metrics::counter!(MIXER_DROPPED, "what" => "tick").absolute(stats.mixer_dropped_ticks);
    metrics::counter!(MIXER_LOST, "how" => "fec").absolute(stats.mixer_fec_recovered);
    metrics::counter!(MIXER_LOST, "how" => "concealed").absolute(stats.mixer_concealed);
    metrics::counter!(MIXER_SILENCE).absolute(stats.mixer_silence_frames);
    metrics::counter!(MIXER_SILENCED).absolute(stats.mixer_silenced);
    metrics::counter!(VIDEO_FRAMES).absolute(stats.video_frames_forwarded);
    metrics::counter!(VIDEO_BYTES).absolute(stats.video_bytes_forwarded);
    metrics::counter!(KEYFRAME_REQUESTS).absolute(stats.keyframe_requests);
}
