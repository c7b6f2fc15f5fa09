//! One continuous RTP timeline per receive section.
//!
//! A viewer's receive section (one outgoing SSRC) shows different sources over its life: a
//! simulcast switch moves it to another layer, and the SDK reuses a section for another
//! publisher. Each source stamps its frames on its own RTP clock, and a browser starts every
//! simulcast encoding at its own random offset, so passing the source's timestamps on makes the
//! viewer's stream jump by an arbitrary amount at every switch (the server logged 494,459,525
//! ticks, then the same back). In a quarter of the network bench's runs Chrome then decoded
//! nothing for 3 s after a step-up although the new layer's keyframe had arrived
//! (bench/results/2026-12-07-video-timeline.md); with one timeline per section, never.
//! SFUs rewrite the timestamp for this reason (mediasoup's and LiveKit's simulcast forwarders
//! keep an offset per consumer). Here a section's timeline continues from the last frame it
//! sent, advanced by the time between the two frames' captures: each layer's RTCP sender
//! reports map its RTP clock to the publisher's wall clock, shared by all its layers. Without a
//! sender report yet, the time between the two frames' arrivals stands in (a large keyframe
//! arrives later after its capture than a small frame does, so that is less exact).

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use str0m::media::{MediaTime, Mid};
use str0m::rtp::rtcp::SenderInfo;

#[derive(Debug, Clone, Copy)]
struct Timeline {
    /// The stream whose frames the section carries now.
    stream: u32,
    /// Added to that stream's timestamps. RTP timestamps are 32 bits on the wire (str0m keeps
    /// them so too), so all of this arithmetic wraps at 2³².
    offset: u32,
    /// The last timestamp written, and when its frame arrived and (if known) was captured.
    last_out: u32,
    last_arrival: Instant,
    last_capture: Option<SystemTime>,
}

/// When a frame stamped `time` was captured, by the publisher's clock, from the last sender
/// report of its stream.
pub fn capture_time(time: MediaTime, report: Option<&SenderInfo>) -> Option<SystemTime> {
    let report = report?;
    let rate = f64::from(time.denom());
    // Both are 32-bit RTP timestamps of the same clock; a report is seconds old at most.
    let ticks = (time.numer() as u32).wrapping_sub(report.rtp_time.numer() as u32) as i32;
    let seconds = Duration::from_secs_f64(f64::from(ticks.unsigned_abs()) / rate);
    if ticks >= 0 {
        report.ntp_time.checked_add(seconds)
    } else {
        report.ntp_time.checked_sub(seconds)
    }
}

/// How far the capture interval between two frames may stray from their arrival interval and
/// still be taken as the same clock's: well past any network or frame-size delay.
const MAX_CAPTURE_SKEW: Duration = Duration::from_secs(1);

/// The timelines of every receive section of one meeting, keyed by (viewer session, mid).
#[derive(Debug, Default)]
pub struct Timelines {
    sections: HashMap<(u64, Mid), Timeline>,
}

impl Timelines {
    /// The timestamp to write for a frame of `stream` stamped `time` at its source, arrived at
    /// `arrival` and captured at `capture` (see [`capture_time`]), on a viewer's section. The
    /// first source a section shows keeps its own timestamps; a later one continues where the
    /// section's timeline stands.
    pub fn stamp(
        &mut self,
        viewer: u64,
        mid: Mid,
        stream: u32,
        time: MediaTime,
        arrival: Instant,
        capture: Option<SystemTime>,
    ) -> MediaTime {
        let source = time.numer() as u32;
        let timeline = self.sections.entry((viewer, mid)).or_insert(Timeline {
            stream,
            offset: 0,
            last_out: source,
            last_arrival: arrival,
            last_capture: capture,
        });
        if timeline.stream != stream {
            let arrived_after = arrival.saturating_duration_since(timeline.last_arrival);
            // Two layers of one publisher share its wall clock; another publisher (a section
            // the SDK reuses for someone else) has a clock of its own, whose offset shows as a
            // capture interval far from the arrival interval: then the arrivals are used.
            let captured_after = match (timeline.last_capture, capture) {
                (Some(last), Some(this)) => Some(this.duration_since(last).unwrap_or_default()),
                _ => None,
            }
            .filter(|captured| captured.abs_diff(arrived_after) <= MAX_CAPTURE_SKEW);
            let elapsed = captured_after.unwrap_or(arrived_after);
            // Truncated to 32 bits, as the timestamps themselves; at least one tick: two frames
            // must not share a timestamp.
            let ticks = (elapsed.as_secs_f64() * f64::from(time.denom())) as u64 as u32;
            let continued = timeline.last_out.wrapping_add(ticks.max(1));
            let offset = continued.wrapping_sub(source);
            tracing::debug!(
                viewer,
                %mid,
                from = timeline.stream,
                to = stream,
                jump_corrected = offset.wrapping_sub(timeline.offset),
                ?captured_after,
                ?arrived_after,
                "a receive section's source changed; its RTP timeline continues"
            );
            timeline.stream = stream;
            timeline.offset = offset;
        }
        let out = source.wrapping_add(timeline.offset);
        timeline.last_out = out;
        timeline.last_arrival = arrival;
        timeline.last_capture = capture;
        MediaTime::new(u64::from(out), time.frequency())
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
            out.push(timelines.stamp(
                7,
                mid,
                1,
                at90k(1_000 + 6_000 * u64::from(i)),
                arrival,
                None,
            ));
        }
        assert_eq!(
            out.iter().map(MediaTime::numer).collect::<Vec<_>>(),
            [1_000, 7_000, 13_000]
        );
        // The high layer's clock starts elsewhere (near the wrap, as a random offset can).
        let high = u64::from(u32::MAX) - 5_000;
        let next = timelines.stamp(7, mid, 2, at90k(high), start + frame * 3, None);
        assert_eq!(
            next.numer(),
            19_000,
            "one frame interval after the last frame sent"
        );
        // Its following frames keep their spacing, across the 32-bit wrap.
        let after = timelines.stamp(7, mid, 2, at90k(high + 6_000), start + frame * 4, None);
        assert_eq!(after.numer(), 25_000);
        // Another viewer's section has its own timeline: the source's timestamps as they are.
        let other = timelines.stamp(8, mid, 2, at90k(high + 12_000), start + frame * 5, None);
        assert_eq!(other.numer(), (high + 12_000) % (1 << 32));
    }

    #[test]
    fn two_frames_arriving_together_from_different_sources_never_share_a_timestamp() {
        let mut timelines = Timelines::default();
        let mid = Mid::from("2");
        let now = Instant::now();
        let first = timelines.stamp(7, mid, 1, at90k(500), now, None);
        let second = timelines.stamp(7, mid, 2, at90k(90), now, None);
        assert_eq!(second.numer(), first.numer() + 1);
    }

    #[test]
    fn a_viewer_that_leaves_starts_afresh() {
        let mut timelines = Timelines::default();
        let mid = Mid::from("2");
        let now = Instant::now();
        timelines.stamp(7, mid, 1, at90k(500), now, None);
        timelines.remove(7);
        assert_eq!(timelines.stamp(7, mid, 2, at90k(90), now, None).numer(), 90);
    }

    #[test]
    fn with_sender_reports_a_switch_follows_the_capture_times_not_the_arrivals() {
        let mut timelines = Timelines::default();
        let mid = Mid::from("2");
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        // Each layer's report maps its own RTP clock to the publisher's one wall clock.
        let low = SenderInfo {
            ssrc: 1.into(),
            ntp_time: wall,
            rtp_time: at90k(1_000),
            sender_packet_count: 0,
            sender_octet_count: 0,
        };
        let high = SenderInfo {
            ntp_time: wall,
            rtp_time: at90k(4_000_000_000),
            ..low
        };
        let arrived = Instant::now();
        // The low layer's frame captured 1 s after the report.
        let t = at90k(91_000);
        let captured = capture_time(t, Some(&low));
        assert_eq!(captured, Some(wall + Duration::from_secs(1)));
        assert_eq!(
            timelines.stamp(7, mid, 1, t, arrived, captured).numer(),
            91_000
        );
        // The high layer's keyframe of the next picture, 1/15 s later, arrives 200 ms after
        // it (a large frame, paced out): the section's clock moves by the capture interval.
        let t = at90k(4_000_096_000);
        let captured = capture_time(t, Some(&high));
        let out = timelines.stamp(7, mid, 2, t, arrived + Duration::from_millis(267), captured);
        assert_eq!(out.numer(), 97_000);
        // A report taken after the frame (negative offset) maps back as well.
        let later = SenderInfo {
            ntp_time: wall + Duration::from_secs(2),
            rtp_time: at90k(181_000),
            ..low
        };
        assert_eq!(
            capture_time(at90k(91_000), Some(&later)),
            Some(wall + Duration::from_secs(1))
        );
    }

    #[test]
    fn another_publishers_clock_is_not_taken_for_the_capture_interval() {
        let mut timelines = Timelines::default();
        let mid = Mid::from("2");
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let arrived = Instant::now();
        timelines.stamp(7, mid, 1, at90k(1_000), arrived, Some(wall));
        // The section now shows someone else, whose clock runs an hour ahead: the next frame
        // arrived one frame interval later, and that is what the timeline moves by.
        let out = timelines.stamp(
            7,
            mid,
            9,
            at90k(50),
            arrived + Duration::from_micros(66_667),
            Some(wall + Duration::from_secs(3_600)),
        );
        assert_eq!(out.numer(), 7_000);
    }
}
