//! Video forwarding (SFU) state of one meeting: which stream each publisher's camera or content
//! layer carries, and which receive section of which session shows which stream.
//!
//! Stream ids are the ones signaling allocated and advertised in INDEX. A subscription may name
//! a stream before the publisher's own offer has reached this meeting task (the client builds
//! its offer from INDEX, which goes out at allocation): it simply carries nothing until the
//! stream has a source.
//!
//! A layer switch (simulcast, REMOTE_VIDEO_UPDATE) takes effect at the first keyframe of the new
//! layer, so the viewer never gets frames it cannot decode; until then the old layer flows.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use str0m::media::{Mid, Rid};

/// A subscribed layer that has sent nothing for this long, while another layer of the same
/// publisher flows, is replaced by that layer (see [`Forwarding::fall_back`]).
pub const LAYER_SILENCE: Duration = Duration::from_millis(1500);

/// Streams one session may hold paused.
const MAX_PAUSED_STREAMS: usize = 64;

/// How often at most one stream's publisher is asked for a keyframe: viewers joining together,
/// or many viewers losing packets at once, cost the publisher one keyframe, not one each.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(300);

/// Of a viewer's downlink estimate, what its audio is given before any video: the mix's Opus
/// at 32 kbit/s (its in-band FEC inside that rate; no RED is sent), plus about 66 bytes of IP,
/// UDP, RTP with its extensions and SRTP tag on each of 50 packets a second (26 kbit/s), and
/// room to spare. It was 100 kbit/s, counting RED that the downlink never carried: 36 kbit/s
/// that a viewer on a narrow link lacked to keep the lowest video layer.
pub const AUDIO_RESERVE_BPS: u64 = 64_000;
/// A layer above the one shown must fit in this share of the video budget (the estimate less
/// the audio's share): room for retransmissions and keyframes above the average rate, and
/// without it a viewer near a layer's rate would switch up and down at every estimate.
pub const UPGRADE_MARGIN: f64 = 0.8;
/// The layer shown (or a lower one) is kept while its rate is within this factor of the video
/// budget. An estimator that sees congestion backs off to about 0.85x of what was acknowledged,
/// so an estimate at 0.85x of the current rate is the normal reaction to a passing delay spike
/// (on a busy machine, a few milliseconds of scheduling); stepping down on it would lower the
/// rate, then the estimate, and spiral down. A real bottleneck puts the estimate far lower.
const HOLD_MARGIN: f64 = 1.25;

/// Where a stream's frames come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    pub session: u64,
    pub mid: Mid,
    /// The simulcast layer, or None for a single-layer publisher.
    pub rid: Option<Rid>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Subscription {
    current: u32,
    /// The layer to switch to at its next keyframe.
    pending: Option<u32>,
    /// When it was wired up: a layer that never sent counts as silent from here.
    since: Instant,
    /// The layer the client asked for (SUBSCRIBE, REMOTE_VIDEO_UPDATE): the most it is sent
    /// when its downlink allows; [`Forwarding::fit_downlink`] may show a lower one.
    wanted: u32,
    /// Not forwarded: even the lowest layer does not fit the viewer's downlink.
    squeezed: bool,
}

/// One publisher's video section and its layers (rid, stream id), in descriptor order.
#[derive(Debug, Clone)]
struct Publication {
    mid: Mid,
    layers: Vec<(Option<Rid>, u32)>,
}

#[derive(Debug, Default)]
pub struct Forwarding {
    publications: HashMap<u64, Publication>,
    sources: HashMap<u32, Source>,
    subscriptions: HashMap<u64, HashMap<Mid, Subscription>>,
    /// Stream → the (session, mid) pairs that show it or switch to it: derived from
    /// `subscriptions`, rebuilt when they change (rare) so that each frame costs one lookup.
    viewers: HashMap<u32, Vec<(u64, Mid)>>,
    keyframe_asked: HashMap<u32, Instant>,
    /// When each stream last carried a frame.
    last_frame: HashMap<u32, Instant>,
    /// Streams each session paused (the user paused a remote tile): not forwarded to it.
    paused: HashMap<u64, HashSet<u32>>,
    /// Each stream's measured bitrate, bits per second.
    rates: HashMap<u32, u64>,
}

impl Forwarding {
    /// Sets what a session publishes (replacing what it published before); no layers means it
    /// publishes nothing.
    pub fn publish(&mut self, session: u64, mid: Mid, layers: Vec<(Option<Rid>, u32)>) {
        self.unpublish(session);
        if layers.is_empty() {
            return;
        }
        for (rid, stream) in &layers {
            self.sources.insert(
                *stream,
                Source {
                    session,
                    mid,
                    rid: *rid,
                },
            );
        }
        self.publications
            .insert(session, Publication { mid, layers });
    }

    pub fn unpublish(&mut self, session: u64) {
        if let Some(old) = self.publications.remove(&session) {
            for (_, stream) in old.layers {
                if self
                    .sources
                    .get(&stream)
                    .is_some_and(|s| s.session == session)
                {
                    self.sources.remove(&stream);
                    self.keyframe_asked.remove(&stream);
                    self.last_frame.remove(&stream);
                    self.rates.remove(&stream);
                }
            }
        }
    }

    /// The stream a publisher's frame on `mid` (layer `rid`) belongs to.
    pub fn stream_of(&self, session: u64, mid: Mid, rid: Option<Rid>) -> Option<u32> {
        let publication = self.publications.get(&session)?;
        if publication.mid != mid {
            return None;
        }
        match rid {
            None => publication.layers.first().map(|(_, stream)| *stream),
            Some(rid) => publication
                .layers
                .iter()
                .find(|(layer, _)| *layer == Some(rid))
                .map(|(_, stream)| *stream),
        }
    }

    pub fn source(&self, stream: u32) -> Option<Source> {
        self.sources.get(&stream).copied()
    }

    /// Replaces a session's subscriptions (one SUBSCRIBE: mid → stream). Returns the streams
    /// newly wired up, whose publishers should send a keyframe for the new viewer.
    pub fn subscribe(&mut self, session: u64, wanted: Vec<(Mid, u32)>) -> Vec<u32> {
        let wired_at = Instant::now();
        let old = self.subscriptions.remove(&session).unwrap_or_default();
        let mut fresh = Vec::new();
        let mut now: HashMap<Mid, Subscription> = HashMap::with_capacity(wanted.len());
        for (mid, stream) in wanted {
            let kept = old
                .get(&mid)
                .filter(|s| s.current == stream || s.pending == Some(stream))
                .map(|s| Subscription {
                    wanted: stream,
                    ..*s
                });
            now.insert(
                mid,
                kept.unwrap_or_else(|| {
                    fresh.push(stream);
                    Subscription {
                        current: stream,
                        pending: None,
                        since: wired_at,
                        wanted: stream,
                        squeezed: false,
                    }
                }),
            );
        }
        if !now.is_empty() {
            self.subscriptions.insert(session, now);
        }
        self.rebuild_viewers();
        fresh
    }

    fn subscription_mut(&mut self, session: u64, mid: Mid) -> Option<&mut Subscription> {
        self.subscriptions.get_mut(&session)?.get_mut(&mid)
    }

    /// The client asks for another layer of the same publisher on a receive section
    /// (REMOTE_VIDEO_UPDATE), effective at that layer's next keyframe. Returns whether anything
    /// changed. The viewer's downlink may still hold it lower ([`Forwarding::fit_downlink`]).
    pub fn want(&mut self, session: u64, mid: Mid, stream: u32) -> bool {
        if let Some(subscription) = self.subscription_mut(session, mid) {
            subscription.wanted = stream;
        }
        self.switch(session, mid, stream)
    }

    /// Points a receive section at another layer, effective at that layer's next keyframe.
    /// Returns whether anything changed.
    fn switch(&mut self, session: u64, mid: Mid, stream: u32) -> bool {
        let Some(subscription) = self.subscription_mut(session, mid) else {
            return false;
        };
        if subscription.current == stream {
            let changed = subscription.pending.is_some();
            subscription.pending = None;
            if changed {
                self.rebuild_viewers();
            }
            return false;
        }
        if subscription.pending == Some(stream) {
            return false;
        }
        subscription.pending = Some(stream);
        // The grace period before a fallback starts again from the switch.
        subscription.since = Instant::now();
        self.rebuild_viewers();
        true
    }

    /// Forgets everything about a session (it left or its connection died).
    pub fn remove(&mut self, session: u64) {
        self.unpublish(session);
        self.paused.remove(&session);
        if self.subscriptions.remove(&session).is_some() {
            self.rebuild_viewers();
        }
    }

    /// PAUSE (true) or RESUME (false) of streams by a session that stopped or restarted
    /// watching a tile. Returns the streams resumed, which need a keyframe to restart from.
    pub fn pause(&mut self, session: u64, streams: &[u32], paused: bool) -> Vec<u32> {
        let set = self.paused.entry(session).or_default();
        let mut resumed = Vec::new();
        for &stream in streams {
            if paused {
                // Bounded whatever a client sends: a session sees at most 25 streams at once.
                if set.len() < MAX_PAUSED_STREAMS {
                    set.insert(stream);
                }
            } else if set.remove(&stream) {
                resumed.push(stream);
            }
        }
        if set.is_empty() {
            self.paused.remove(&session);
        }
        resumed
    }

    /// Notes that a frame of `stream` arrived.
    pub fn saw_frame(&mut self, stream: u32, now: Instant) {
        self.last_frame.insert(stream, now);
    }

    /// Moves viewers off silent layers. The SDK's simulcast uplink policy turns layers on and
    /// off as people join and leave, and a viewer can subscribe to a layer just as its publisher
    /// stops it (the INDEX it chose from was a moment old): rather than show a frozen tile until
    /// its next SUBSCRIBE, it gets the flowing layer nearest to the one it asked for, from that
    /// layer's next keyframe. Returns the streams to ask keyframes of.
    pub fn fall_back(&mut self, now: Instant) -> Vec<u32> {
        let flowing = |stream: u32| {
            self.last_frame
                .get(&stream)
                .is_some_and(|at| now.saturating_duration_since(*at) < LAYER_SILENCE)
        };
        let mut moves = Vec::new();
        let mut keyframes = Vec::new();
        for (session, subs) in &self.subscriptions {
            for (mid, subscription) in subs {
                let current = subscription.current;
                if let Some(pending) = subscription.pending
                    && flowing(pending)
                {
                    // Waiting for the new layer's keyframe: ask again (throttled), in case the
                    // request or its answer was lost. Whether or not the old layer still flows:
                    // a viewer stepped down for its downlink is losing packets of the old one
                    // until the switch completes, and a publisher sends no keyframe unasked.
                    keyframes.push(pending);
                    continue;
                }
                if flowing(current) {
                    continue;
                }
                // Neither what it shows nor what it switches to flows: after a grace period
                // (a camera that is starting), the nearest layer that flows.
                if now.saturating_duration_since(subscription.since) < LAYER_SILENCE {
                    continue;
                }
                let Some(layers) = self
                    .sources
                    .get(&current)
                    .and_then(|source| self.publications.get(&source.session))
                    .map(|p| &p.layers)
                else {
                    continue;
                };
                let Some(position) = layers.iter().position(|(_, s)| *s == current) else {
                    continue;
                };
                let nearest = layers
                    .iter()
                    .enumerate()
                    .filter(|(_, (_, stream))| flowing(*stream))
                    .min_by_key(|(index, _)| index.abs_diff(position))
                    .map(|(_, (_, stream))| *stream);
                if let Some(stream) = nearest {
                    moves.push((*session, *mid, stream));
                }
            }
        }
        for (session, mid, stream) in moves {
            if self.switch(session, mid, stream) {
                keyframes.push(stream);
            }
        }
        keyframes
    }

    /// The (session, mid) pairs a frame of `stream` goes to. A keyframe completes the switch of
    /// every viewer waiting for this layer.
    pub fn targets(&mut self, stream: u32, keyframe: bool, out: &mut Vec<(u64, Mid)>) {
        out.clear();
        let Some(viewers) = self.viewers.get(&stream) else {
            return;
        };
        let mut switched = false;
        for &(session, mid) in viewers {
            let Some(subscription) = self
                .subscriptions
                .get_mut(&session)
                .and_then(|subs| subs.get_mut(&mid))
            else {
                continue;
            };
            if self
                .paused
                .get(&session)
                .is_some_and(|paused| paused.contains(&stream))
            {
                continue;
            }
            if subscription.squeezed {
                continue;
            }
            if subscription.current == stream {
                // With a switch pending, the old layer keeps flowing until the new one's keyframe.
                out.push((session, mid));
            } else if subscription.pending == Some(stream) && keyframe {
                subscription.current = stream;
                subscription.pending = None;
                switched = true;
                out.push((session, mid));
            }
        }
        if switched {
            self.rebuild_viewers();
        }
    }

    /// The stream shown on a session's receive section (to route its keyframe requests).
    pub fn shown_on(&self, session: u64, mid: Mid) -> Option<u32> {
        let subscription = self.subscriptions.get(&session)?.get(&mid)?;
        Some(subscription.pending.unwrap_or(subscription.current))
    }

    /// Every stream a session shows (or is switching to).
    pub fn shown_to(&self, session: u64) -> Vec<u32> {
        self.subscriptions
            .get(&session)
            .map_or_else(Vec::new, |subs| {
                subs.values()
                    .map(|s| s.pending.unwrap_or(s.current))
                    .collect()
            })
    }

    /// Records a stream's measured bitrate.
    pub fn set_rate(&mut self, stream: u32, bps: u64) {
        self.rates.insert(stream, bps);
    }

    /// The bitrate a session's video would take at the highest layer of every publisher it
    /// shows: what its downlink estimator should probe for. Not the layers its client wants
    /// now: the client chooses from the estimate the server reports, so an estimate that only
    /// covered its current choice would never let it step up.
    pub fn probe_rate(&self, session: u64) -> u64 {
        self.subscriptions.get(&session).map_or(0, |subs| {
            subs.values()
                .map(|s| {
                    let top = self.layers_up_to(self.top_layer(s.wanted));
                    top.iter()
                        .map(|stream| self.rates.get(stream).copied().unwrap_or(0))
                        .max()
                        .unwrap_or(0)
                })
                .sum()
        })
    }

    /// The highest layer of `stream`'s publisher (`stream` itself when it has no other).
    fn top_layer(&self, stream: u32) -> u32 {
        self.sources
            .get(&stream)
            .and_then(|source| self.publications.get(&source.session))
            .and_then(|publication| publication.layers.last())
            .map_or(stream, |(_, top)| *top)
    }

    /// Fits what a viewer is sent into its downlink estimate (bits per second), as Chime's
    /// server-side network adaptation does: audio's share first, then each receive section in
    /// SDP order gets the highest layer of its publisher, at most the one its client wants, that
    /// still fits; a section where even the lowest layer does not fit is not forwarded
    /// (squeezed) until it fits again. Layers unmeasured so far count as free. Returns the
    /// streams whose publishers should send a keyframe (switches and resumes).
    pub fn fit_downlink(&mut self, session: u64, estimate_bps: u64) -> Vec<u32> {
        let Some(subs) = self.subscriptions.get(&session) else {
            return Vec::new();
        };
        let mut budget = estimate_bps.saturating_sub(AUDIO_RESERVE_BPS);
        let mut mids: Vec<Mid> = subs.keys().copied().collect();
        mids.sort_by_key(|mid| (mid.len(), mid.to_string()));
        let mut choices: Vec<(Mid, Option<u32>)> = Vec::with_capacity(mids.len());
        for mid in mids {
            let Some(subscription) = subs.get(&mid) else {
                continue;
            };
            let shown = subscription.pending.unwrap_or(subscription.current);
            let layers = self.layers_up_to(subscription.wanted);
            let shown_at = layers.iter().position(|s| *s == shown);
            let rate = |stream: &u32| self.rates.get(stream).copied().unwrap_or(0);
            let choice = layers.iter().enumerate().rev().find(|(index, stream)| {
                let upgrade = shown_at.is_none_or(|at| *index > at) || subscription.squeezed;
                let room = if upgrade {
                    (budget as f64 * UPGRADE_MARGIN) as u64
                } else {
                    (budget as f64 * HOLD_MARGIN) as u64
                };
                rate(stream) <= room
            });
            let choice = choice.map(|(_, stream)| *stream);
            if let Some(stream) = choice {
                budget = budget.saturating_sub(rate(&stream));
            }
            choices.push((mid, choice));
        }
        let mut keyframes = Vec::new();
        let mut changed = false;
        for (mid, choice) in choices {
            let Some(subscription) = self.subscription_mut(session, mid) else {
                continue;
            };
            match choice {
                None => {
                    changed |= !subscription.squeezed;
                    subscription.squeezed = true;
                }
                Some(stream) => {
                    if subscription.squeezed {
                        subscription.squeezed = false;
                        changed = true;
                        // Resumed: the viewer needs a keyframe to decode from.
                        if subscription.current == stream {
                            keyframes.push(stream);
                        }
                    }
                    let shown = subscription.pending.unwrap_or(subscription.current);
                    if shown != stream && self.switch(session, mid, stream) {
                        keyframes.push(stream);
                    }
                }
            }
        }
        if changed {
            self.rebuild_viewers();
        }
        keyframes
    }

    /// The layers of `stream`'s publisher from the lowest up to `stream` itself (just `stream`
    /// for a single-layer publisher or an unknown stream).
    fn layers_up_to(&self, stream: u32) -> Vec<u32> {
        let layers = self
            .sources
            .get(&stream)
            .and_then(|source| self.publications.get(&source.session))
            .map(|publication| &publication.layers);
        match layers {
            Some(layers) => {
                let top = layers.iter().position(|(_, s)| *s == stream).unwrap_or(0);
                layers.iter().take(top + 1).map(|(_, s)| *s).collect()
            }
            None => vec![stream],
        }
    }

    /// Whether the publisher of `stream` may be asked for a keyframe now; records the ask.
    pub fn may_ask_keyframe(&mut self, stream: u32, now: Instant) -> bool {
        match self.keyframe_asked.get(&stream) {
            Some(last) if now.saturating_duration_since(*last) < KEYFRAME_REQUEST_INTERVAL => false,
            _ => {
                self.keyframe_asked.insert(stream, now);
                true
            }
        }
    }

    /// Streams this meeting forwards at least once (for metrics and tests).
    pub fn subscription_count(&self) -> usize {
        self.subscriptions.values().map(HashMap::len).sum()
    }

    fn rebuild_viewers(&mut self) {
        self.viewers.clear();
        for (session, subs) in &self.subscriptions {
            for (mid, subscription) in subs {
                self.viewers
                    .entry(subscription.current)
                    .or_default()
                    .push((*session, *mid));
                if let Some(pending) = subscription.pending {
                    self.viewers
                        .entry(pending)
                        .or_default()
                        .push((*session, *mid));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mid(m: &str) -> Mid {
        Mid::from(m)
    }

    #[test]
    fn frames_reach_every_section_that_shows_their_stream() {
        let mut fwd = Forwarding::default();
        fwd.publish(1, mid("1"), vec![(None, 7)]);
        assert_eq!(fwd.stream_of(1, mid("1"), None), Some(7));
        assert_eq!(fwd.stream_of(1, mid("2"), None), None, "not the camera");
        assert_eq!(fwd.subscribe(2, vec![(mid("2"), 7)]), [7]);
        assert_eq!(fwd.subscribe(3, vec![(mid("3"), 7), (mid("4"), 9)]), [7, 9]);
        let mut out = Vec::new();
        fwd.targets(7, false, &mut out);
        out.sort_by_key(|(s, _)| *s);
        assert_eq!(out, [(2, mid("2")), (3, mid("3"))]);
        // Subscribing again to the same streams wires nothing new (no keyframe needed).
        assert!(fwd.subscribe(2, vec![(mid("2"), 7)]).is_empty());
        fwd.remove(3);
        fwd.targets(7, false, &mut out);
        assert_eq!(out, [(2, mid("2"))]);
        fwd.remove(1);
        assert_eq!(fwd.source(7), None, "the publisher left");
    }

    #[test]
    fn a_layer_switch_waits_for_a_keyframe_of_the_new_layer() {
        let mut fwd = Forwarding::default();
        let (low, hi) = (Rid::from("low"), Rid::from("hi"));
        fwd.publish(1, mid("1"), vec![(Some(low), 10), (Some(hi), 11)]);
        assert_eq!(fwd.stream_of(1, mid("1"), Some(hi)), Some(11));
        fwd.subscribe(2, vec![(mid("5"), 10)]);
        assert!(fwd.want(2, mid("5"), 11));
        assert!(!fwd.want(2, mid("5"), 11), "already pending");
        let mut out = Vec::new();
        fwd.targets(11, false, &mut out);
        assert!(
            out.is_empty(),
            "no delta frame of the new layer before its keyframe"
        );
        fwd.targets(10, false, &mut out);
        assert_eq!(out, [(2, mid("5"))], "the old layer keeps flowing");
        fwd.targets(11, true, &mut out);
        assert_eq!(out, [(2, mid("5"))], "switched at the keyframe");
        fwd.targets(10, true, &mut out);
        assert!(out.is_empty(), "the old layer no longer flows");
        assert_eq!(fwd.shown_on(2, mid("5")), Some(11));
    }

    #[test]
    fn a_viewer_of_a_silent_layer_falls_back_to_the_nearest_flowing_one() {
        let mut fwd = Forwarding::default();
        let (low, mid_layer, hi) = (Rid::from("low"), Rid::from("mid"), Rid::from("hi"));
        fwd.publish(
            1,
            mid("1"),
            vec![(Some(low), 10), (Some(mid_layer), 11), (Some(hi), 12)],
        );
        fwd.subscribe(2, vec![(mid("5"), 11)]);
        let start = Instant::now();
        let later = start + LAYER_SILENCE + Duration::from_millis(100);
        // Nothing flows at all (a camera starting): nobody moves.
        assert!(fwd.fall_back(later).is_empty());
        // Only low and hi flow; the subscribed middle layer stopped.
        fwd.saw_frame(10, later);
        fwd.saw_frame(12, later);
        assert_eq!(
            fwd.fall_back(later),
            [10],
            "the nearest, lower first on a tie"
        );
        let mut out = Vec::new();
        fwd.targets(10, true, &mut out);
        assert_eq!(out, [(2, mid("5"))], "switched at the keyframe");
        // A flowing subscription stays where it is.
        assert!(fwd.fall_back(later).is_empty());

        // A switch to a layer that never flows (the client chose from a stale INDEX) does not
        // strand the viewer either: after the grace period it goes to a flowing layer.
        fwd.remove(2);
        fwd.subscribe(3, vec![(mid("6"), 10)]);
        assert!(fwd.want(3, mid("6"), 11));
        let much_later = later + LAYER_SILENCE * 2;
        fwd.saw_frame(12, much_later);
        assert_eq!(
            fwd.fall_back(much_later),
            [12],
            "the only layer still flowing"
        );
        // While it waits for that layer's keyframe, each check asks for one again.
        assert_eq!(fwd.fall_back(much_later), [12]);
        fwd.targets(12, true, &mut out);
        assert_eq!(out, [(3, mid("6"))]);
        assert!(fwd.fall_back(much_later).is_empty());
    }

    #[test]
    fn a_paused_stream_is_not_forwarded_to_the_session_that_paused_it() {
        let mut fwd = Forwarding::default();
        fwd.publish(1, mid("1"), vec![(None, 7)]);
        fwd.subscribe(2, vec![(mid("2"), 7)]);
        fwd.subscribe(3, vec![(mid("2"), 7)]);
        assert!(fwd.pause(2, &[7], true).is_empty());
        let mut out = Vec::new();
        fwd.targets(7, false, &mut out);
        assert_eq!(out, [(3, mid("2"))], "only the other viewer");
        assert_eq!(
            fwd.pause(2, &[7, 8], false),
            [7],
            "resumed: wants a keyframe"
        );
        fwd.targets(7, false, &mut out);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn keyframe_requests_are_throttled_per_stream() {
        let mut fwd = Forwarding::default();
        let start = Instant::now();
        assert!(fwd.may_ask_keyframe(7, start));
        assert!(!fwd.may_ask_keyframe(7, start + Duration::from_millis(100)));
        assert!(fwd.may_ask_keyframe(8, start), "another stream");
        assert!(fwd.may_ask_keyframe(7, start + KEYFRAME_REQUEST_INTERVAL));
    }

    /// Session 1 publishes a low layer (stream 10, 150 kbit/s) and a high one (11, 1.2 Mbit/s).
    fn simulcast_publisher() -> Forwarding {
        let mut fwd = Forwarding::default();
        let (low, hi) = (Rid::from("low"), Rid::from("hi"));
        fwd.publish(1, mid("1"), vec![(Some(low), 10), (Some(hi), 11)]);
        fwd.set_rate(10, 150_000);
        fwd.set_rate(11, 1_200_000);
        fwd
    }

    #[test]
    fn a_viewer_gets_the_highest_layer_its_downlink_carries_and_none_when_nothing_fits() {
        let mut fwd = simulcast_publisher();
        // Two viewers want the high layer; one has 3 Mbit/s, the other 500 kbit/s.
        fwd.subscribe(2, vec![(mid("5"), 11)]);
        fwd.subscribe(3, vec![(mid("5"), 11)]);
        assert!(
            fwd.fit_downlink(2, 3_000_000).is_empty(),
            "it fits: no change"
        );
        assert_eq!(fwd.fit_downlink(3, 500_000), [10], "down to the low layer");
        assert_eq!(fwd.probe_rate(3), 1_200_000, "probes for the high one");
        // Until the low layer's keyframe comes, each check asks for it again, although the
        // high layer still flows.
        let now = Instant::now();
        fwd.saw_frame(10, now);
        fwd.saw_frame(11, now);
        assert_eq!(fwd.fall_back(now), [10]);
        let mut out = Vec::new();
        fwd.targets(10, true, &mut out);
        assert_eq!(out, [(3, mid("5"))], "switched at the low layer's keyframe");
        fwd.targets(11, false, &mut out);
        assert_eq!(
            out,
            [(2, mid("5"))],
            "the uncapped viewer keeps the high layer"
        );

        // 160 kbit/s: after audio, not even the low layer fits: video is not forwarded.
        assert!(fwd.fit_downlink(3, 160_000).is_empty());
        fwd.targets(10, true, &mut out);
        assert!(out.is_empty(), "squeezed out");
        // It fits again: resumed from a keyframe of the low layer.
        assert_eq!(fwd.fit_downlink(3, 500_000), [10]);
        fwd.targets(10, true, &mut out);
        assert_eq!(out, [(3, mid("5"))]);
        // Just above the high layer's rate is not enough to switch up (no flapping at the
        // edge); well above it is.
        assert!(fwd.fit_downlink(3, 1_500_000).is_empty());
        assert_eq!(fwd.fit_downlink(3, 2_500_000), [11]);
        let mut out = Vec::new();
        fwd.targets(11, true, &mut out);
        // A dip to 0.85x of what it receives (an estimator backing off after a delay spike)
        // does not step it down; a bottleneck well below does.
        assert!(fwd.fit_downlink(3, 1_100_000).is_empty());
        assert_eq!(fwd.fit_downlink(3, 800_000), [10]);
    }

    #[test]
    fn a_publishers_measured_rates_go_when_it_unpublishes() {
        let mut fwd = simulcast_publisher();
        fwd.subscribe(2, vec![(mid("5"), 11)]);
        assert_eq!(fwd.probe_rate(2), 1_200_000);
        // A camera turned off and on gets new stream ids: the old ones must not pile up.
        fwd.unpublish(1);
        assert!(fwd.rates.is_empty());
        assert_eq!(fwd.probe_rate(2), 0);
    }

    #[test]
    fn a_client_never_gets_more_than_it_asked_for() {
        let mut fwd = simulcast_publisher();
        fwd.subscribe(2, vec![(mid("5"), 10)]);
        assert!(
            fwd.fit_downlink(2, 10_000_000).is_empty(),
            "low is what it wants"
        );
    }
}
