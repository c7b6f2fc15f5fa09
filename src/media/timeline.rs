//! One continuous RTP timeline per receive section.
//!
//! A viewer's receive section (one outgoing SSRC) shows different sources over its life: a
//! simulcast switch moves it to another layer, and the SDK reuses a section for another
//! publisher. Each source stamps its frames on its own RTP clock, and a browser starts every
//! simulcast encoding at its own random offset, so passing the source's timestamps on makes the
//! viewer's stream jump by an arbitrary amount at every switch. Chrome's receiver reads such a
//! jump as a frame scheduled far from now: the new layer's keyframe arrived, yet nothing was
//! decoded until its timing logic gave up and reset (the 3 s freezes of issue 23 at a step up).
//! SFUs rewrite the timestamp for this reason (mediasoup's and LiveKit's simulcast forwarders
//! keep an offset per consumer). Here a section's timeline continues from the last frame it
//! sent, advanced by the wall-clock time between the two frames' arrivals.

use std::collections::HashMap;
use std::time::Instant;

use str0m::media::{MediaTime, Mid};

/// RTP timestamps are 32 bits on the wire; str0m keeps them that way too.
const RTP_TIMESTAMP_MODULUS: u64 = 1 << 32;

#[derive(Debug, Clone, Copy)]
struct Timeline {
    /// The stream whose frames the section carries now.
    stream: u32,
    /// Added (mod 2³²) to that stream's timestamps.
    offset: u64,
    /// The last timestamp written, and when its frame arrived.
    last_out: u64,
    last_arrival: Instant,
}

/// The timelines of every receive section of one meeting, keyed by (viewer session, mid).
#[derive(Debug, Default)]
pub struct Timelines {
    sections: HashMap<(u64, Mid), Timeline>,
}

impl Timelines {
    /// The timestamp to write for a frame of `stream` stamped `time` at its source, arrived at
    /// `arrival`, on a viewer's section. The first source a section shows keeps its own
    /// timestamps; a later one continues where the section's timeline stands.
    pub fn stamp(
        &mut self,
        viewer: u64,
        mid: Mid,
        stream: u32,
        time: MediaTime,
        arrival: Instant,
    ) -> MediaTime {
        let source = time.numer() % RTP_TIMESTAMP_MODULUS;
        let timeline = self.sections.entry((viewer, mid)).or_insert(Timeline {
            stream,
            offset: 0,
            last_out: source,
            last_arrival: arrival,
        });
        if timeline.stream != stream {
            let elapsed = arrival.saturating_duration_since(timeline.last_arrival);
            let ticks = (elapsed.as_secs_f64() * f64::from(time.denom())) as u64;
            // At least one tick: two frames must not share a timestamp.
            let continued = (timeline.last_out + ticks.max(1)) % RTP_TIMESTAMP_MODULUS;
            let offset = (continued + RTP_TIMESTAMP_MODULUS - source) % RTP_TIMESTAMP_MODULUS;
            tracing::debug!(
                viewer,
                %mid,
                from = timeline.stream,
                to = stream,
                jump_corrected = (offset + RTP_TIMESTAMP_MODULUS - timeline.offset) % RTP_TIMESTAMP_MODULUS,
                "a receive section's source changed; its RTP timeline continues"
            );
            timeline.stream = stream;
            timeline.offset = offset;
        }
        let out = (source + timeline.offset) % RTP_TIMESTAMP_MODULUS;
        timeline.last_out = out;
        timeline.last_arrival = arrival;
        MediaTime::new(out, time.frequency())
    }

    /// Forgets a viewer's sections (it left, or its connection died).
    pub fn remove(&mut self, viewer: u64) {
        self.sections.retain(|(session, _), _| *session != viewer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use str0m::media::Frequency;

    fn at90k(ticks: u64) -> MediaTime {
        MediaTime::new(ticks, Frequency::NINETY_KHZ)
    }

    #[test]
    fn a_layer_switch_continues_the_sections_timeline() {
        let mut timelines = Timelines::default();
        let mid = Mid::from("2");
        let start = Instant::now();
        let frame = Duration::from_micros(66_667);
        // The low layer, frames 6000 ticks apart at 15 fps, kept as they are.
        let mut out = Vec::new();
        for i in 0..3u32 {
            let arrival = start + frame * i;
            out.push(timelines.stamp(7, mid, 1, at90k(1_000 + 6_000 * u64::from(i)), arrival));
        }
        assert_eq!(
            out.iter().map(MediaTime::numer).collect::<Vec<_>>(),
            [1_000, 7_000, 13_000]
        );
        // The high layer's clock starts elsewhere (near the wrap, as a random offset can).
        let high = u64::from(u32::MAX) - 5_000;
        let next = timelines.stamp(7, mid, 2, at90k(high), start + frame * 3);
        assert_eq!(
            next.numer(),
            19_000,
            "one frame interval after the last frame sent"
        );
        // Its following frames keep their spacing, across the 32-bit wrap.
        let after = timelines.stamp(7, mid, 2, at90k(high + 6_000), start + frame * 4);
        assert_eq!(after.numer(), 25_000);
        // Another viewer's section has its own timeline: the source's timestamps as they are.
        let other = timelines.stamp(8, mid, 2, at90k(high + 12_000), start + frame * 5);
        assert_eq!(other.numer(), (high + 12_000) % RTP_TIMESTAMP_MODULUS);
    }

    #[test]
    fn two_frames_arriving_together_from_different_sources_never_share_a_timestamp() {
        let mut timelines = Timelines::default();
        let mid = Mid::from("2");
        let now = Instant::now();
        let first = timelines.stamp(7, mid, 1, at90k(500), now);
        let second = timelines.stamp(7, mid, 2, at90k(90), now);
        assert_eq!(second.numer(), first.numer() + 1);
    }

    #[test]
    fn a_viewer_that_leaves_starts_afresh() {
        let mut timelines = Timelines::default();
        let mid = Mid::from("2");
        let now = Instant::now();
        timelines.stamp(7, mid, 1, at90k(500), now);
        timelines.remove(7);
        assert_eq!(timelines.stamp(7, mid, 2, at90k(90), now).numer(), 90);
    }
}
