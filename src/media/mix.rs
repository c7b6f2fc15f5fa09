//! Mix-minus for one meeting, one 20 ms tick at a time: pure audio logic, no threads or sockets.
//!
//! Every source has a jitter buffer ordered by RTP timestamp. Each tick the mixer picks the
//! sources to hear (all of them in a small meeting, else the `speakers` loudest by the RTP
//! audio-level extension), decodes only those, and sums them in f32. Each picked speaker gets
//! the sum without itself from an encoder of its own; every other listener shares one encoder
//! of the whole sum, so a 250-person meeting with three talkers runs four encoders, not 250.
//! Each listener's downlink keeps its own timeline (+960 per tick), so changes of speaker
//! never make its RTP timestamps jump.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::domain::capabilities::MediaCapability;

use super::opus::{self, Decoder, Encoder, FRAME_SAMPLES, MAX_PACKET_SAMPLES};

/// Frames a source buffers before it starts playing: 40 ms of jitter absorbed.
const JITTER_FRAMES: usize = 2;
/// Past this depth the source is running ahead (clock drift, a burst after a stall): the oldest
/// frames are dropped so the added latency stays at most about 60 ms.
const MAX_DEPTH_FRAMES: usize = 4;
/// A hard bound on what one source may buffer, whatever it sends.
const MAX_BUFFERED_FRAMES: usize = 50;
/// Lost frames concealed in a row before a source counts as stopped (100 ms).
const MAX_CONCEALED: u32 = 5;
/// Ticks an encoder for a speaker that stopped is kept, to avoid churn between words.
const ENCODER_LINGER_TICKS: u64 = 50;
/// -dBov at or above which a source counts as silent (the audio-level extension: 0 loudest).
const SILENT_LEVEL: f32 = 90.0;

/// What one source plays in one slot of its timeline.
enum Frame<'a> {
    Received(&'a [u8]),
    /// Lost, with the packet that follows it, whose in-band FEC may carry it.
    Recovered {
        follower: &'a [u8],
    },
    /// Lost for good: concealed.
    Lost,
}

/// How a meeting's sources played since the counters were last taken (metrics, tests, bench).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MixCounters {
    /// Lost packets rebuilt from the next packet's in-band FEC.
    pub recovered: u64,
    /// Lost packets concealed (no FEC could be used).
    pub concealed: u64,
    /// Of those rebuilt or concealed, the ones played as silence because the codec's concealment
    /// came out at full scale.
    pub silenced: u64,
    /// Downlink frames of encoded silence (nobody else audible).
    pub silence: u64,
}

impl MixCounters {
    fn add(&mut self, other: MixCounters) {
        self.recovered += other.recovered;
        self.concealed += other.concealed;
        self.silenced += other.silenced;
        self.silence += other.silence;
    }
}

/// What an attendee's capabilities allow on the audio channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioRole {
    /// Mixed into what others hear.
    pub send: bool,
    /// Gets the mix.
    pub receive: bool,
}

impl AudioRole {
    /// What the attendee's `Audio` capability allows.
    pub fn from_capability(audio: MediaCapability) -> Self {
        AudioRole {
            send: matches!(audio, MediaCapability::SendReceive | MediaCapability::Send),
            receive: matches!(
                audio,
                MediaCapability::SendReceive | MediaCapability::Receive
            ),
        }
    }

    pub const FULL: AudioRole = AudioRole {
        send: true,
        receive: true,
    };
}

/// The PCM of one tick that media taps asked for (see [`MeetingMix::tick_with_taps`]).
#[derive(Debug, Default)]
pub struct TappedAudio {
    /// The meeting's tick number (20 ms each).
    pub tick: u64,
    /// Everyone heard this tick, summed, nobody subtracted.
    pub mix: Option<Box<[f32; FRAME_SAMPLES]>>,
    /// The same mix encoded: the packet listeners who are not speaking get (one encoder for
    /// both), or the silence packet when nobody was heard.
    pub mix_packet: Option<Arc<[u8]>>,
    /// Each tapped session that played this tick, with its own decoded audio.
    pub sessions: Vec<(u64, Box<[f32; FRAME_SAMPLES]>)>,
}

/// One encoded downlink frame for one listener.
#[derive(Debug, Clone)]
pub struct Downlink {
    pub listener: u64,
    /// On the listener's own timeline, 48 kHz.
    pub rtp_time: u64,
    pub packet: Arc<[u8]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Mix {
    /// Everyone picked except this session.
    Without(u64),
    /// Everyone picked.
    All,
}

struct Source {
    role: AudioRole,
    /// Packets waiting to play, by (extended) RTP timestamp.
    buffer: BTreeMap<u64, Vec<u8>>,
    /// The timestamp that plays next, once playing.
    playout: Option<u64>,
    concealed: u32,
    /// Decoded samples not yet mixed.
    pcm: Vec<f32>,
    decoder: Option<Decoder>,
    /// The decoder skipped packets while the source was not picked: reset before next use.
    decoder_stale: bool,
    /// Smoothed -dBov (0 loudest, 127 silent); None until a level arrives.
    level: Option<f32>,
    /// The first tick this session received on: its downlink timeline starts there.
    first_tick: u64,
    counters: MixCounters,
}

impl Source {
    fn new(role: AudioRole, tick: u64) -> Self {
        Source {
            role,
            buffer: BTreeMap::new(),
            playout: None,
            concealed: 0,
            pcm: Vec::with_capacity(2 * FRAME_SAMPLES),
            decoder: None,
            decoder_stale: false,
            level: None,
            first_tick: tick,
            counters: MixCounters::default(),
        }
    }

    fn playing(&self) -> bool {
        self.playout.is_some()
    }

    fn audible(&self) -> bool {
        self.level.is_none_or(|level| level < SILENT_LEVEL)
    }

    fn push(&mut self, rtp_time: u64, packet: Vec<u8>, level: Option<i8>) {
        if !self.role.send || self.playout.is_some_and(|next| rtp_time < next) {
            return; // not mixed in, or too late to play
        }
        if let Some(level) = level {
            let level = f32::from(level.unsigned_abs().min(127));
            // Fast attack, slow release: a speaker who starts is heard from the first packet,
            // and a pause between words does not drop her from the mix.
            self.level = Some(match self.level {
                Some(previous) if level > previous => 0.7 * previous + 0.3 * level,
                _ => level,
            });
        }
        self.buffer.insert(rtp_time, packet);
        while self.buffer.len() > MAX_BUFFERED_FRAMES {
            self.buffer.pop_first();
        }
    }

    /// Starts playing once enough is buffered; drops what runs too far ahead.
    fn settle(&mut self) {
        if self.playout.is_none() && self.buffer.len() >= JITTER_FRAMES {
            self.playout = self.buffer.keys().next().copied();
            self.concealed = 0;
        }
        if self.playing() && self.buffer.len() > MAX_DEPTH_FRAMES {
            while self.buffer.len() > JITTER_FRAMES {
                self.buffer.pop_first();
            }
            self.playout = self.buffer.keys().next().copied();
            self.pcm.clear();
        }
    }

    /// Advances the source by one tick. When `decode` is false the packets are consumed without
    /// decoding (the source is not heard this tick). Returns the tick's samples when decoded.
    fn advance(&mut self, decode: bool, scratch: &mut [f32; MAX_PACKET_SAMPLES]) -> bool {
        let Some(mut next) = self.playout else {
            return false;
        };
        if decode && self.decoder_stale {
            self.decoder = None;
            self.decoder_stale = false;
            self.pcm.clear();
        }
        if !decode {
            self.decoder_stale = true;
        }
        let mut consumed = if decode { self.pcm.len() } else { 0 };
        while consumed < FRAME_SAMPLES {
            let (packet, recovery) = self.take_due(&mut next);
            let samples = match (&packet, &recovery) {
                (Some(bytes), _) | (None, Some(bytes)) => {
                    opus::packet_samples(bytes).unwrap_or(FRAME_SAMPLES)
                }
                (None, None) => {
                    self.concealed += 1;
                    if self.concealed > MAX_CONCEALED {
                        // Stopped (muted, left, or a long outage): wait for a buffer again.
                        tracing::debug!(
                            rtp_time = next,
                            first_tick = self.first_tick,
                            "an audio source stopped: no packet for 100 ms"
                        );
                        self.playout = None;
                        self.pcm.clear();
                        self.decoder_stale = true;
                        return false;
                    }
                    self.counters.concealed += 1;
                    FRAME_SAMPLES
                }
            };
            if packet.is_some() {
                self.concealed = 0;
            }
            if recovery.is_some() {
                self.counters.recovered += 1;
            }
            // The timestamp is the client's: it must not overflow however large it is.
            next = next.saturating_add(samples as u64);
            consumed += samples;
            let frame = match (&packet, &recovery) {
                (Some(packet), _) => Frame::Received(packet),
                (None, Some(follower)) => Frame::Recovered { follower },
                (None, None) => Frame::Lost,
            };
            if decode && !self.decode_into_pcm(frame, samples, scratch) {
                self.pcm.resize(self.pcm.len() + samples, 0.0);
            }
        }
        self.playout = Some(next);
        decode
    }

    /// The packet due at `next` (moved on when the source resynchronises), or else the packet
    /// whose in-band FEC rebuilds it; neither when it is lost. Late packets are dropped.
    fn take_due(&mut self, next: &mut u64) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
        while self
            .buffer
            .first_key_value()
            .is_some_and(|(ts, _)| *ts < *next)
        {
            self.buffer.pop_first();
        }
        match self.buffer.first_key_value() {
            Some((ts, _)) if *ts == *next => (self.buffer.pop_first().map(|(_, p)| p), None),
            // The packet due now is missing and the one right after it is here: its in-band
            // FEC copy (which browsers send when the answer says `useinbandfec=1`) rebuilds
            // the lost one, better than concealment and without skipping any time.
            Some((ts, follower))
                if opus::packet_samples(follower)
                    .is_some_and(|samples| ts.checked_sub(*next) == Some(samples as u64)) =>
            {
                (None, Some(follower.clone()))
            }
            // A gap with later packets waiting beyond the jitter allowance: resynchronise.
            Some((ts, _)) if self.buffer.len() >= JITTER_FRAMES => {
                *next = *ts;
                (self.buffer.pop_first().map(|(_, p)| p), None)
            }
            _ => (None, None),
        }
    }

    /// Decodes, rebuilds or conceals one packet's worth into the PCM queue. A codec failure or
    /// panic on a client's packet costs that packet (replaced by silence) and the decoder's
    /// state, nothing more.
    fn decode_into_pcm(
        &mut self,
        frame: Frame<'_>,
        samples: usize,
        scratch: &mut [f32; MAX_PACKET_SAMPLES],
    ) -> bool {
        if self.decoder.is_none() {
            self.decoder = Decoder::new().ok();
        }
        let Some(decoder) = self.decoder.as_mut() else {
            return false;
        };
        let rebuilt = !matches!(frame, Frame::Received(_));
        let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match frame {
            Frame::Received(packet) => decoder.decode(Some(packet), samples, scratch),
            Frame::Recovered { follower } => decoder.decode_fec(follower, samples, scratch),
            Frame::Lost => decoder.decode(None, samples, scratch),
        }));
        match decoded {
            // A rebuilt frame at full scale is the codec library's broken SILK concealment
            // (see `opus::FULL_SCALE_CONCEALMENT`): silence, and a fresh decoder, whose next
            // frames are clean, instead of a thump in everyone's mix.
            Ok(Ok(n))
                if rebuilt
                    && scratch
                        .iter()
                        .take(n)
                        .any(|s| s.abs() >= opus::FULL_SCALE_CONCEALMENT) =>
            {
                self.decoder = None;
                self.counters.silenced += 1;
                false
            }
            Ok(Ok(n)) => {
                self.pcm.extend(scratch.iter().take(n));
                true
            }
            Ok(Err(_)) => false,
            Err(_) => {
                self.decoder = None;
                false
            }
        }
    }

    /// The next 20 ms of decoded samples.
    fn take_frame(&mut self, into: &mut [f32; FRAME_SAMPLES]) {
        for (slot, sample) in into
            .iter_mut()
            .zip(self.pcm.drain(..FRAME_SAMPLES.min(self.pcm.len())))
        {
            *slot = sample;
        }
    }
}

/// The mixer state of one meeting.
pub struct MeetingMix {
    /// Sources picked per tick when the meeting is larger than `speakers + 2` senders (in a smaller
    /// one, every audible sender is mixed).
    speakers: usize,
    tick: u64,
    sessions: HashMap<u64, Source>,
    encoders: HashMap<Mix, (Encoder, u64)>,
    scratch: Box<[f32; MAX_PACKET_SAMPLES]>,
    /// The frame sent to a listener with nothing to hear.
    silence: Arc<[u8]>,
    counters: MixCounters,
}

impl MeetingMix {
    pub fn new(speakers: usize) -> Self {
        MeetingMix {
            speakers: speakers.max(1),
            tick: 0,
            sessions: HashMap::new(),
            encoders: HashMap::new(),
            scratch: Box::new([0.0; MAX_PACKET_SAMPLES]),
            silence: Arc::from(opus::SILENCE_FRAME),
            counters: MixCounters::default(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Adds a session or changes what it may do (UpdateAttendeeCapabilities in a live session).
    pub fn set_role(&mut self, session: u64, role: AudioRole) {
        let tick = self.tick;
        let source = self
            .sessions
            .entry(session)
            .or_insert_with(|| Source::new(role, tick));
        source.role = role;
        if !role.send {
            source.buffer.clear();
            source.playout = None;
            source.pcm.clear();
        }
    }

    pub fn remove(&mut self, session: u64) {
        self.sessions.remove(&session);
        self.encoders.remove(&Mix::Without(session));
    }

    /// One received Opus packet of a session, with its extended RTP timestamp.
    pub fn push(&mut self, session: u64, rtp_time: u64, packet: Vec<u8>, level: Option<i8>) {
        if let Some(source) = self.sessions.get_mut(&session) {
            source.push(rtp_time, packet, level);
        }
    }

    /// Which sessions are heard this tick.
    fn pick(&mut self) -> Vec<u64> {
        for source in self.sessions.values_mut() {
            source.settle();
        }
        let mut playing: Vec<(u64, f32)> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.role.send && s.playing())
            .map(|(id, s)| (*id, s.level.unwrap_or(60.0)))
            .collect();
        // Silence adds nothing to a mix but the cost of decoding it and of one more encoder.
        playing.retain(|(id, _)| self.sessions.get(id).is_some_and(Source::audible));
        let senders = self.sessions.values().filter(|s| s.role.send).count();
        if senders > self.speakers + 2 {
            // A big meeting: the loudest few.
            playing.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            playing.truncate(self.speakers);
        }
        playing.into_iter().map(|(id, _)| id).collect()
    }

    /// Mixes one 20 ms tick and returns each listener's encoded frame.
    pub fn tick(&mut self) -> Vec<Downlink> {
        self.tick_with_taps(false, &[]).0
    }

    /// As [`MeetingMix::tick`], and also returns the PCM the media taps asked for: the whole
    /// mix when `mix_tapped`, and the decoded audio of each of `tapped_sessions` that played
    /// this tick, decoded even when it is not among the speakers mixed.
    pub fn tick_with_taps(
        &mut self,
        mix_tapped: bool,
        tapped_sessions: &[u64],
    ) -> (Vec<Downlink>, TappedAudio) {
        self.tick += 1;
        let picked = self.pick();
        let mut tapped = TappedAudio {
            tick: self.tick,
            ..TappedAudio::default()
        };
        let frames = self.decode(&picked, tapped_sessions, &mut tapped.sessions);
        let mut sum = [0f32; FRAME_SAMPLES];
        for (_, frame) in &frames {
            for (total, sample) in sum.iter_mut().zip(frame.iter()) {
                *total += sample;
            }
        }
        let (downlinks, shared) = self.encode_downlinks(&frames, &sum);
        if mix_tapped {
            tapped.mix = Some(Box::new(sum));
            // A recorder needs the mix encoded: the packet of the listeners who hear everyone,
            // from the same encoder when one of them made it this tick, so that a recorded
            // meeting with a silent listener costs no encoding of its own.
            tapped.mix_packet = if frames.is_empty() {
                Some(self.silence.clone())
            } else {
                shared.or_else(|| {
                    let mut pcm = sum;
                    encode(&mut self.encoders, Mix::All, &mut pcm, self.tick)
                })
            };
        }
        let now = self.tick;
        self.encoders
            .retain(|_, (_, last_used)| now - *last_used <= ENCODER_LINGER_TICKS);
        (downlinks, tapped)
    }

    /// Advances every source one tick and returns the frames of those heard; the frames of
    /// tapped sessions go to `tapped`, heard or not.
    fn decode(
        &mut self,
        picked: &[u64],
        tapped_sessions: &[u64],
        tapped: &mut Vec<(u64, Box<[f32; FRAME_SAMPLES]>)>,
    ) -> Vec<(u64, Box<[f32; FRAME_SAMPLES]>)> {
        let mut frames = Vec::with_capacity(picked.len());
        for (id, source) in self.sessions.iter_mut() {
            let heard = picked.contains(id);
            let tap = tapped_sessions.contains(id);
            if source.advance(heard || tap, &mut self.scratch) {
                let mut frame = Box::new([0f32; FRAME_SAMPLES]);
                source.take_frame(&mut frame);
                match (heard, tap) {
                    (true, true) => {
                        tapped.push((*id, frame.clone()));
                        frames.push((*id, frame));
                    }
                    (true, false) => frames.push((*id, frame)),
                    (false, _) => tapped.push((*id, frame)),
                }
            }
        }
        frames
    }

    /// Each listener's frame of this tick: the sum of those heard, less its own voice.
    /// Every listener gets a frame every tick, so that its jitter buffer never sees a hole (a
    /// hole is concealed: the browser stretches the last sound). A listener with nobody else to
    /// hear gets encoded silence; a lone speaker is a listener too.
    fn encode_downlinks(
        &mut self,
        frames: &[(u64, Box<[f32; FRAME_SAMPLES]>)],
        sum: &[f32; FRAME_SAMPLES],
    ) -> (Vec<Downlink>, Option<Arc<[u8]>>) {
        let mut downlinks = Vec::with_capacity(self.sessions.len());
        let mut shared: Option<Arc<[u8]>> = None;
        let tick = self.tick;
        for (listener, source) in &self.sessions {
            if !source.role.receive {
                continue;
            }
            let own = frames.iter().find(|(id, _)| id == listener);
            let others_heard = frames.len() > usize::from(own.is_some());
            let packet = match own {
                _ if !others_heard => {
                    self.counters.silence += 1;
                    Some(self.silence.clone())
                }
                // A speaker hears everyone picked but itself.
                Some((_, own)) => {
                    let mut pcm = *sum;
                    for (total, sample) in pcm.iter_mut().zip(own.iter()) {
                        *total -= sample;
                    }
                    encode(&mut self.encoders, Mix::Without(*listener), &mut pcm, tick)
                }
                None => match &shared {
                    Some(packet) => Some(packet.clone()),
                    None => {
                        let mut pcm = *sum;
                        shared = encode(&mut self.encoders, Mix::All, &mut pcm, tick);
                        shared.clone()
                    }
                },
            };
            if let Some(packet) = packet {
                downlinks.push(Downlink {
                    listener: *listener,
                    rtp_time: (tick - source.first_tick) * FRAME_SAMPLES as u64,
                    packet,
                });
            }
        }
        (downlinks, shared)
    }

    /// What happened since the last call, summed over the meeting's sources.
    pub fn take_counters(&mut self) -> MixCounters {
        let mut total = std::mem::take(&mut self.counters);
        for source in self.sessions.values_mut() {
            total.add(std::mem::take(&mut source.counters));
        }
        total
    }

    /// Encoders alive now (for tests and metrics).
    pub fn encoder_count(&self) -> usize {
        self.encoders.len()
    }
}

fn encode(
    encoders: &mut HashMap<Mix, (Encoder, u64)>,
    mix: Mix,
    pcm: &mut [f32; FRAME_SAMPLES],
    tick: u64,
) -> Option<Arc<[u8]>> {
    let entry = match encoders.entry(mix) {
        std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
        std::collections::hash_map::Entry::Vacant(entry) => {
            entry.insert((Encoder::new().ok()?, tick))
        }
    };
    entry.1 = tick;
    entry.0.encode(pcm).ok().map(Arc::from)
}

/// The strength of one frequency in a block of samples (the Goertzel algorithm): how tests and
/// the benchmark tell which tones a downlink carries.
pub fn tone_power(samples: &[f32], frequency: f32, sample_rate: f32) -> f32 {
    let omega = 2.0 * std::f32::consts::PI * frequency / sample_rate;
    let coefficient = 2.0 * omega.cos();
    let (mut previous, mut before) = (0.0f32, 0.0f32);
    for sample in samples {
        let current = sample + coefficient * previous - before;
        before = previous;
        previous = current;
    }
    let power = previous * previous + before * before - coefficient * previous * before;
    power / (samples.len().max(1) as f32).powi(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TONES: [f32; 4] = [440.0, 700.0, 1100.0, 1500.0];

    /// A client's uplink: a tone encoded as Chrome on a desktop encodes (complexity 9), not as
    /// the server's own encoders do.
    fn tone_packets(frequency: f32, frames: usize) -> Vec<Vec<u8>> {
        let mut encoder = Encoder::new().expect("encoder");
        encoder.set_complexity(9);
        (0..frames)
            .map(|frame| {
                let mut pcm = [0f32; FRAME_SAMPLES];
                for (i, sample) in pcm.iter_mut().enumerate() {
                    let t = (frame * FRAME_SAMPLES + i) as f32 / 48_000.0;
                    *sample = 0.2 * (2.0 * std::f32::consts::PI * frequency * t).sin();
                }
                encoder.encode(&mut pcm).expect("encode")
            })
            .collect()
    }

    /// Runs `ticks` ticks with `talkers` sending their tone each tick, and decodes each
    /// listener's downlink over the last half.
    fn run(
        mix: &mut MeetingMix,
        talkers: &[(u64, f32, i8)],
        listeners: &[u64],
        ticks: usize,
    ) -> HashMap<u64, (Vec<f32>, Vec<u64>)> {
        run_from(mix, talkers, listeners, 0, ticks)
    }

    fn run_from(
        mix: &mut MeetingMix,
        talkers: &[(u64, f32, i8)],
        listeners: &[u64],
        start: usize,
        ticks: usize,
    ) -> HashMap<u64, (Vec<f32>, Vec<u64>)> {
        let packets: Vec<Vec<Vec<u8>>> = talkers
            .iter()
            .map(|(_, f, _)| tone_packets(*f, ticks))
            .collect();
        let mut decoders: HashMap<u64, Decoder> = listeners
            .iter()
            .map(|l| (*l, Decoder::new().expect("decoder")))
            .collect();
        let mut heard: HashMap<u64, (Vec<f32>, Vec<u64>)> = HashMap::new();
        let mut out = [0f32; MAX_PACKET_SAMPLES];
        for tick in 0..ticks {
            for ((session, _, level), packets) in talkers.iter().zip(&packets) {
                mix.push(
                    *session,
                    1000 + ((start + tick) * FRAME_SAMPLES) as u64,
                    packets[tick].clone(),
                    Some(*level),
                );
            }
            for downlink in mix.tick() {
                let Some(decoder) = decoders.get_mut(&downlink.listener) else {
                    continue;
                };
                let n = decoder
                    .decode(Some(&downlink.packet), 0, &mut out)
                    .expect("decode");
                let entry = heard.entry(downlink.listener).or_default();
                entry.1.push(downlink.rtp_time);
                if tick >= ticks / 2 {
                    entry.0.extend_from_slice(&out[..n]);
                }
            }
        }
        heard
    }

    fn hears(samples: &[f32], frequency: f32) -> bool {
        tone_power(samples, frequency, 48_000.0) > 1e-4
    }

    #[test]
    fn everyone_hears_every_other_speaker_and_never_themselves() {
        let mut mix = MeetingMix::new(3);
        for session in 1..=3 {
            mix.set_role(session, AudioRole::FULL);
        }
        let talkers = [(1, TONES[0], -20), (2, TONES[1], -20), (3, TONES[2], -20)];
        let heard = run(&mut mix, &talkers, &[1, 2, 3], 60);
        for (session, own, _) in talkers {
            let (samples, _) = &heard[&session];
            for (other, tone, _) in talkers {
                assert_eq!(
                    hears(samples, tone),
                    other != session,
                    "session {session} hearing {tone} Hz (own tone {own} Hz)"
                );
            }
        }
    }

    #[test]
    fn a_big_meeting_mixes_the_loudest_and_shares_one_encoder() {
        let mut mix = MeetingMix::new(2);
        for session in 1..=10 {
            mix.set_role(session, AudioRole::FULL);
        }
        // Three talk; 3 is the quietest, so with two speakers picked nobody hears it.
        let talkers = [(1, TONES[0], -10), (2, TONES[1], -20), (3, TONES[2], -60)];
        let heard = run(&mut mix, &talkers, &(1..=10).collect::<Vec<_>>(), 60);
        let (listener, _) = &heard[&7];
        assert!(hears(listener, TONES[0]) && hears(listener, TONES[1]));
        assert!(!hears(listener, TONES[2]), "only the two loudest are mixed");
        let (speaker, _) = &heard[&1];
        assert!(hears(speaker, TONES[1]) && !hears(speaker, TONES[0]));
        assert_eq!(
            mix.encoder_count(),
            3,
            "one per picked speaker plus one shared"
        );
    }

    #[test]
    fn taps_get_the_whole_mix_and_a_session_that_is_not_mixed() {
        let mut mix = MeetingMix::new(2);
        for session in 1..=6 {
            mix.set_role(session, AudioRole::FULL);
        }
        // Two speakers are mixed; 3 is the quietest and is not, but its tap still hears it.
        let talkers = [(1, TONES[0], -10), (2, TONES[1], -20), (3, TONES[2], -60)];
        let packets: Vec<Vec<Vec<u8>>> = talkers
            .iter()
            .map(|(_, tone, _)| tone_packets(*tone, 60))
            .collect();
        let (mut whole_mix, mut session_three) = (Vec::new(), Vec::new());
        let mut ticks = Vec::new();
        let mut decoder = crate::media::opus::Decoder::new().expect("decoder");
        let mut pcm = [0f32; crate::media::opus::MAX_PACKET_SAMPLES];
        let mut encoded_mix = Vec::new();
        for tick in 0..60 {
            for ((session, _, level), packets) in talkers.iter().zip(&packets) {
                let rtp_time = 1000 + (tick * FRAME_SAMPLES) as u64;
                mix.push(*session, rtp_time, packets[tick].clone(), Some(*level));
            }
            let (downlinks, tapped) = mix.tick_with_taps(true, &[3]);
            assert!(!downlinks.is_empty(), "the meeting is served as usual");
            ticks.push(tapped.tick);
            let frame = tapped.mix.expect("the mix is tapped every tick");
            // The mix comes encoded too: the very packet the non-speaking listeners (4 to 6)
            // get, from one encoder.
            let packet = tapped.mix_packet.expect("the mix is encoded every tick");
            assert!(
                downlinks
                    .iter()
                    .filter(|d| d.listener >= 4)
                    .all(|d| d.packet == packet),
                "the recording and the listeners share the packet"
            );
            let n = decoder
                .decode(Some(&packet), FRAME_SAMPLES, &mut pcm)
                .expect("a valid packet");
            if tick >= 30 {
                encoded_mix.extend_from_slice(&pcm[..n]);
                whole_mix.extend_from_slice(frame.as_slice());
                for (session, samples) in tapped.sessions {
                    assert_eq!(session, 3, "only the tapped session is handed over");
                    session_three.extend_from_slice(samples.as_slice());
                }
            }
        }
        assert!(ticks.windows(2).all(|pair| pair[1] == pair[0] + 1));
        assert!(hears(&whole_mix, TONES[0]) && hears(&whole_mix, TONES[1]));
        assert!(hears(&encoded_mix, TONES[0]) && hears(&encoded_mix, TONES[1]));
        assert!(
            !hears(&whole_mix, TONES[2]),
            "the mix is what listeners hear"
        );
        assert_eq!(
            session_three.len(),
            30 * FRAME_SAMPLES,
            "a frame every tick"
        );
        assert!(hears(&session_three, TONES[2]));
        assert!(!hears(&session_three, TONES[0]) && !hears(&session_three, TONES[1]));
    }

    #[test]
    fn silent_senders_cost_no_decoder_and_no_encoder() {
        let mut mix = MeetingMix::new(3);
        for session in 1..=3 {
            mix.set_role(session, AudioRole::FULL);
        }
        // One talks; two send silence at the silent level (-127 dBov), as a quiet browser does.
        let talkers = [(1, TONES[0], -20), (2, TONES[1], -127), (3, TONES[2], -127)];
        let heard = run(&mut mix, &talkers, &[1, 2, 3], 40);
        assert!(hears(&heard[&2].0, TONES[0]) && !hears(&heard[&2].0, TONES[1]));
        assert!(
            hears(&heard[&3].0, TONES[0]) && !hears(&heard[&3].0, TONES[1]),
            "a sender at the silent level is not mixed in, whatever its packets hold"
        );
        let (lone_speaker, _) = &heard[&1];
        assert!(
            peak(lone_speaker) < SILENT_PEAK,
            "alone in the mix, the speaker hears silence, not itself"
        );
        assert_eq!(mix.encoder_count(), 1, "only the shared mix is encoded");
    }

    #[test]
    fn roles_decide_who_is_mixed_in_and_who_gets_the_mix() {
        let mut mix = MeetingMix::new(3);
        mix.set_role(
            1,
            AudioRole {
                send: true,
                receive: false,
            },
        );
        mix.set_role(
            2,
            AudioRole {
                send: false,
                receive: true,
            },
        );
        mix.set_role(
            3,
            AudioRole {
                send: false,
                receive: false,
            },
        );
        mix.set_role(4, AudioRole::FULL);
        let talkers = [(1, TONES[0], -20), (2, TONES[1], -20), (3, TONES[2], -20)];
        let heard = run(&mut mix, &talkers, &[1, 2, 3, 4], 40);
        assert!(!heard.contains_key(&1), "Send gets no downlink");
        assert!(!heard.contains_key(&3), "None gets no downlink");
        let (listener, _) = &heard[&4];
        assert!(hears(listener, TONES[0]), "Send is mixed in");
        assert!(!hears(listener, TONES[1]), "Receive is never mixed in");
        assert!(!hears(listener, TONES[2]), "None is never mixed in");
        assert!(hears(&heard[&2].0, TONES[0]));
    }

    #[test]
    fn each_downlink_keeps_its_own_timeline_across_speaker_changes() {
        let mut mix = MeetingMix::new(1);
        for session in 1..=5 {
            mix.set_role(session, AudioRole::FULL);
        }
        let first = run(
            &mut mix,
            &[(1, TONES[0], -10), (2, TONES[1], -40)],
            &[5],
            20,
        );
        let second = run_from(
            &mut mix,
            &[(1, TONES[0], -40), (2, TONES[1], -10)],
            &[5],
            20,
            20,
        );
        let times: Vec<u64> = first[&5].1.iter().chain(&second[&5].1).copied().collect();
        assert!(times.len() > 30);
        for pair in times.windows(2) {
            assert!(pair[1] > pair[0], "timestamps only move forward: {pair:?}");
            assert_eq!((pair[1] - pair[0]) % FRAME_SAMPLES as u64, 0);
        }
        assert!(hears(&second[&5].0, TONES[1]), "the new loudest is heard");
    }

    #[test]
    fn reordered_and_lost_packets_are_played_in_order_or_concealed() {
        let mut mix = MeetingMix::new(3);
        mix.set_role(1, AudioRole::FULL);
        mix.set_role(2, AudioRole::FULL);
        let packets = tone_packets(TONES[0], 40);
        let mut sent = 0;
        for tick in 0..40usize {
            // Swap every other pair and drop one in ten.
            let index = if tick % 2 == 0 { tick + 1 } else { tick - 1 };
            if index < 40 && index % 10 != 3 {
                mix.push(
                    1,
                    (index * FRAME_SAMPLES) as u64,
                    packets[index].clone(),
                    Some(-20),
                );
            }
            sent += mix.tick().len();
        }
        assert!(sent >= 35, "2 hears 1 on almost every tick: {sent}");
        // Garbage is not fatal.
        mix.push(
            1,
            41 * FRAME_SAMPLES as u64,
            vec![0xff, 0xff, 0xff],
            Some(-20),
        );
        mix.push(1, 42 * FRAME_SAMPLES as u64, vec![], Some(-20));
        for _ in 0..5 {
            mix.tick();
        }
    }

    #[test]
    fn every_listener_gets_one_frame_every_tick_whoever_talks() {
        let mut mix = MeetingMix::new(3);
        for session in 1..=3 {
            mix.set_role(session, AudioRole::FULL);
        }
        let packets = tone_packets(TONES[0], 150);
        let mut received: HashMap<u64, Vec<u64>> = HashMap::new();
        let mut decoder = Decoder::new().expect("decoder");
        let mut out = [0f32; MAX_PACKET_SAMPLES];
        for tick in 0..300usize {
            // Nobody talks for 1 s, then 1 talks alone for 3 s, then silence again.
            if (50..200).contains(&tick) {
                mix.push(
                    1,
                    (tick * FRAME_SAMPLES) as u64,
                    packets[tick - 50].clone(),
                    Some(-20),
                );
            }
            let downlinks = mix.tick();
            let mut listeners: Vec<u64> = downlinks.iter().map(|d| d.listener).collect();
            listeners.sort_unstable();
            assert_eq!(listeners, [1, 2, 3], "tick {tick}: one frame per listener");
            for downlink in downlinks {
                received
                    .entry(downlink.listener)
                    .or_default()
                    .push(downlink.rtp_time);
                if downlink.listener == 1 {
                    // What the lone speaker hears decodes cleanly, as silence.
                    let n = decoder
                        .decode(Some(&downlink.packet), 0, &mut out)
                        .expect("decode");
                    assert_eq!(n, FRAME_SAMPLES);
                    assert!(
                        peak(&out[..n]) < SILENT_PEAK,
                        "tick {tick}: {}",
                        peak(&out[..n])
                    );
                }
            }
        }
        for (listener, times) in received {
            for pair in times.windows(2) {
                assert_eq!(
                    pair[1] - pair[0],
                    FRAME_SAMPLES as u64,
                    "listener {listener}: timestamps step 20 ms, never jump"
                );
            }
        }
        let counters = mix.take_counters();
        assert!(counters.silence >= 400, "{counters:?}");
        // Only the end of the talk spurt, before the source counts as stopped.
        assert!(
            counters.concealed <= u64::from(MAX_CONCEALED),
            "{counters:?}"
        );
    }

    #[test]
    fn the_silence_frame_decodes_to_20_ms_of_zeros() {
        let mut decoder = Decoder::new().expect("decoder");
        let mut out = [1f32; MAX_PACKET_SAMPLES];
        assert_eq!(
            opus::packet_samples(&opus::SILENCE_FRAME),
            Some(FRAME_SAMPLES)
        );
        let n = decoder
            .decode(Some(&opus::SILENCE_FRAME), 0, &mut out)
            .expect("decode");
        assert_eq!(n, FRAME_SAMPLES);
        assert!(peak(&out[..n]) < SILENT_PEAK, "peak {}", peak(&out[..n]));
    }

    /// Below -80 dBFS: what counts as silence in these tests.
    const SILENT_PEAK: f32 = 1e-4;

    fn peak(samples: &[f32]) -> f32 {
        samples.iter().fold(0.0, |max, s| max.max(s.abs()))
    }

    /// The mixed downlink of listener 2 while 1 talks, with 1's packets in `lost` never arriving.
    fn heard_with_loss(lost: &[usize]) -> (Vec<f32>, MixCounters) {
        heard_of(&tone_packets(TONES[0], 60), lost)
    }

    /// What listener 2 hears of listener 1 sending `packets`, less those in `lost`.
    fn heard_of(packets: &[Vec<u8>], lost: &[usize]) -> (Vec<f32>, MixCounters) {
        let mut mix = MeetingMix::new(3);
        mix.set_role(1, AudioRole::FULL);
        mix.set_role(2, AudioRole::FULL);
        let mut decoder = Decoder::new().expect("decoder");
        let mut out = [0f32; MAX_PACKET_SAMPLES];
        let mut heard = Vec::new();
        for (index, packet) in packets.iter().enumerate() {
            if !lost.contains(&index) {
                mix.push(1, (index * FRAME_SAMPLES) as u64, packet.clone(), Some(-20));
            }
            for downlink in mix.tick().into_iter().filter(|d| d.listener == 2) {
                let n = decoder
                    .decode(Some(&downlink.packet), 0, &mut out)
                    .expect("decode");
                heard.extend_from_slice(&out[..n]);
            }
        }
        (heard, mix.take_counters())
    }

    #[test]
    fn a_lost_packet_is_rebuilt_from_the_next_ones_fec() {
        let (clean, clean_counters) = heard_with_loss(&[]);
        assert_eq!(clean_counters.recovered + clean_counters.concealed, 0);
        let lost = [20, 35];
        let (repaired, counters) = heard_with_loss(&lost);
        assert_eq!(
            (counters.recovered, counters.concealed),
            (2, 0),
            "both lost packets come back from FEC, none is concealed"
        );
        // Same length: nothing was skipped, and the tone plays on through the losses.
        assert_eq!(repaired.len(), clean.len());
        for index in lost {
            // The listener hears it a couple of ticks later (the jitter buffer): compare the
            // frames around the loss with what the clean run heard there.
            let window = index.saturating_sub(1) * FRAME_SAMPLES..(index + 4) * FRAME_SAMPLES;
            let error: f32 = repaired[window.clone()]
                .iter()
                .zip(&clean[window.clone()])
                .map(|(a, b)| (a - b) * (a - b))
                .sum();
            let energy: f32 = clean[window].iter().map(|s| s * s).sum();
            assert!(
                error < 0.25 * energy,
                "around lost packet {index}, the repair is close to what was sent: error {error}, energy {energy}"
            );
        }
    }

    /// A voice's lost packets with no FEC to rebuild them are concealed by the codec, whose
    /// SILK concealment (unsafe-libopus) comes out at full scale: the listener must hear at
    /// most a short silence there, never a thump louder than the voice.
    #[test]
    fn a_concealed_voice_frame_is_never_louder_than_the_voice() {
        let mut encoder = Encoder::new().expect("encoder");
        encoder.set_complexity(9); // as Chrome on a desktop
        let packets = encoder
            .encode_frames(&opus::synthetic_voice()[..60 * FRAME_SAMPLES])
            .expect("encode");
        let (clean, _) = heard_of(&packets, &[]);
        let (lossy, counters) = heard_of(&packets, &[20, 21, 22, 40]);
        assert!(
            counters.concealed > 0,
            "something was concealed: {counters:?}"
        );
        assert!(
            peak(&lossy) <= 2.0 * peak(&clean),
            "concealment stays within the voice's level: {} against {} ({counters:?})",
            peak(&lossy),
            peak(&clean)
        );
    }
}
