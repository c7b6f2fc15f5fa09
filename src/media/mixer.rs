//! The mixer threads: plain OS threads, never the async executor, each ticking every 20 ms over
//! the meetings assigned to it. Meetings feed them received Opus packets (bounded: past a limit
//! they are dropped, never waited for) and get each tick's downlink frames back through a bounded
//! channel.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::mix::{AudioRole, Downlink, MeetingMix, TappedAudio};
use super::tap::{AudioFrame, AudioSource, AudioTapSender, AudioTaps};
use crate::domain::id::SessionId;

const TICK: Duration = Duration::from_millis(20);
/// Packets queued for one mixer thread (about 2 s of a 40-speaker load); past it they are
/// dropped. Control messages are few (one per join, leave or capability change) and never wait.
const PACKET_QUEUE: usize = 4096;

pub enum MixerInput {
    Open {
        meeting: u64,
        downlinks: mpsc::Sender<Vec<Downlink>>,
    },
    Close {
        meeting: u64,
    },
    Role {
        meeting: u64,
        session: u64,
        role: AudioRole,
    },
    Remove {
        meeting: u64,
        session: u64,
    },
    /// A media tap on the meeting's audio (see [`super::tap`]); on a meeting the mixer does not
    /// have, the tap is dropped and its consumer sees the stream end at once.
    Tap {
        meeting: u64,
        tap: AudioTapSender,
    },
    Packet {
        meeting: u64,
        session: u64,
        rtp_time: u64,
        packet: Vec<u8>,
        level: Option<i8>,
    },
}

/// Counters the benchmark and the metrics read.
#[derive(Default)]
pub struct MixerStats {
    pub ticks: AtomicU64,
    /// Nanoseconds spent mixing, summed over threads.
    pub busy_nanos: AtomicU64,
    /// Packets dropped because a mixer's queue was full.
    pub dropped_packets: AtomicU64,
    /// Tick results dropped because a meeting did not take them in time.
    pub dropped_ticks: AtomicU64,
    /// Lost uplink packets rebuilt from the next packet's in-band FEC.
    pub fec_recovered: AtomicU64,
    /// Lost uplink packets concealed.
    pub concealed: AtomicU64,
    /// Of the rebuilt and concealed packets, those played as silence because the codec's
    /// concealment came out at full scale (see `opus::FULL_SCALE_CONCEALMENT`).
    pub silenced: AtomicU64,
    /// Downlink frames of silence sent to listeners with nobody else to hear.
    pub silence_frames: AtomicU64,
}

/// One mixer thread's input: an unbounded channel, so that no sender ever blocks an executor
/// thread, with packets bounded by a count of those in flight.
struct MixerThread {
    inputs: Sender<MixerInput>,
    queued_packets: Arc<AtomicUsize>,
}

#[derive(Clone)]
pub struct Mixers {
    threads: Arc<[MixerThread]>,
    pub stats: Arc<MixerStats>,
}

impl Mixers {
    /// Starts `threads` mixer threads, each mixing with `speakers` picked speakers.
    pub fn start(threads: usize, speakers: usize) -> std::io::Result<Mixers> {
        let stats = Arc::new(MixerStats::default());
        let mut mixer_threads = Vec::new();
        for index in 0..threads.max(1) {
            let (inputs, receiver) = channel();
            let queued_packets = Arc::new(AtomicUsize::new(0));
            let (stats, queued) = (stats.clone(), queued_packets.clone());
            std::thread::Builder::new()
                .name(format!("carillon-mixer-{index}"))
                .spawn(move || run(receiver, speakers, &stats, &queued))?;
            mixer_threads.push(MixerThread {
                inputs,
                queued_packets,
            });
        }
        Ok(Mixers {
            threads: mixer_threads.into(),
            stats,
        })
    }

    fn thread(&self, meeting: u64) -> Option<&MixerThread> {
        let count = self.threads.len() as u64;
        self.threads
            .get(usize::try_from(meeting % count.max(1)).ok()?)
    }

    /// Control messages always go through, without waiting.
    pub fn control(&self, meeting: u64, input: MixerInput) {
        if let Some(thread) = self.thread(meeting) {
            let _ = thread.inputs.send(input);
        }
    }

    /// A packet is worth nothing late: when the mixer is behind it is dropped and counted.
    pub fn packet(&self, meeting: u64, input: MixerInput) {
        let Some(thread) = self.thread(meeting) else {
            return;
        };
        if thread.queued_packets.fetch_add(1, Ordering::Relaxed) >= PACKET_QUEUE {
            thread.queued_packets.fetch_sub(1, Ordering::Relaxed);
            self.stats.dropped_packets.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if thread.inputs.send(input).is_err() {
            thread.queued_packets.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

struct Meeting {
    mix: MeetingMix,
    downlinks: mpsc::Sender<Vec<Downlink>>,
    taps: AudioTaps,
}

impl Meeting {
    /// One tick: the downlinks, and the PCM the meeting's taps asked for handed to them.
    fn tick(&mut self) -> Vec<Downlink> {
        if self.taps.is_empty() {
            return self.mix.tick();
        }
        let sessions = self.taps.sessions();
        let wants_mix = self.taps.wants(AudioSource::Mix);
        let (downlinks, tapped) = self.mix.tick_with_taps(wants_mix, &sessions);
        self.publish(tapped);
        downlinks
    }

    fn publish(&mut self, tapped: TappedAudio) {
        let at = std::time::SystemTime::now();
        let frame = |samples: Box<[f32; super::opus::FRAME_SAMPLES]>, packet: Option<Arc<[u8]>>| {
            AudioFrame {
                tick: tapped.tick,
                at,
                samples: Arc::from(samples.as_slice()),
                packet,
            }
        };
        if let Some(mix) = tapped.mix {
            self.taps
                .publish(AudioSource::Mix, &frame(mix, tapped.mix_packet));
        }
        for (session, samples) in tapped.sessions {
            self.taps.publish(
                AudioSource::Session(SessionId(session)),
                &frame(samples, None),
            );
        }
    }
}

fn run(
    inputs: Receiver<MixerInput>,
    speakers: usize,
    stats: &MixerStats,
    queued_packets: &AtomicUsize,
) {
    let mut meetings: HashMap<u64, Meeting> = HashMap::new();
    let mut next_tick = Instant::now() + TICK;
    loop {
        // Sleep to the tick, then take everything queued meanwhile. Waiting in `recv` instead
        // woke this thread (a futex wake and two context switches) for every packet a meeting
        // handed over: 9 % of the server's CPU in meetings of 10 and 15 % in one of 250 when
        // encoding was cheap (bench/results/2026-12-07-audio-cost.md). A packet is only
        // needed at the tick, and control messages can wait one tick too.
        std::thread::sleep(next_tick.saturating_duration_since(Instant::now()));
        loop {
            match inputs.try_recv() {
                Ok(input) => apply(&mut meetings, input, speakers, queued_packets),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        let started = Instant::now();
        for meeting in meetings.values_mut() {
            let downlinks = meeting.tick();
            if !downlinks.is_empty() && meeting.downlinks.try_send(downlinks).is_err() {
                stats.dropped_ticks.fetch_add(1, Ordering::Relaxed);
            }
            let counters = meeting.mix.take_counters();
            stats
                .fec_recovered
                .fetch_add(counters.recovered, Ordering::Relaxed);
            stats
                .concealed
                .fetch_add(counters.concealed, Ordering::Relaxed);
            stats
                .silenced
                .fetch_add(counters.silenced, Ordering::Relaxed);
            stats
                .silence_frames
                .fetch_add(counters.silence, Ordering::Relaxed);
        }
        let busy = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        stats.busy_nanos.fetch_add(busy, Ordering::Relaxed);
        stats.ticks.fetch_add(1, Ordering::Relaxed);
        next_tick += TICK;
        if next_tick + TICK < Instant::now() {
            // Far behind (the machine stalled): skip the lost ticks instead of bursting.
            next_tick = Instant::now() + TICK;
        }
    }
}

fn apply(
    meetings: &mut HashMap<u64, Meeting>,
    input: MixerInput,
    speakers: usize,
    queued_packets: &AtomicUsize,
) {
    if matches!(input, MixerInput::Packet { .. }) {
        queued_packets.fetch_sub(1, Ordering::Relaxed);
    }
    match input {
        MixerInput::Open { meeting, downlinks } => {
            meetings.insert(
                meeting,
                Meeting {
                    mix: MeetingMix::new(speakers),
                    downlinks,
                    taps: AudioTaps::default(),
                },
            );
        }
        MixerInput::Close { meeting } => {
            meetings.remove(&meeting);
        }
        MixerInput::Role {
            meeting,
            session,
            role,
        } => {
            if let Some(m) = meetings.get_mut(&meeting) {
                m.mix.set_role(session, role);
            }
        }
        MixerInput::Remove { meeting, session } => {
            if let Some(m) = meetings.get_mut(&meeting) {
                m.mix.remove(session);
                m.taps.close(AudioSource::Session(SessionId(session)));
            }
        }
        MixerInput::Tap { meeting, tap } => {
            if let Some(m) = meetings.get_mut(&meeting) {
                m.taps.add(tap);
            }
        }
        MixerInput::Packet {
            meeting,
            session,
            rtp_time,
            packet,
            level,
        } => {
            if let Some(m) = meetings.get_mut(&meeting) {
                m.mix.push(session, rtp_time, packet, level);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::opus::{Encoder, FRAME_SAMPLES};
    use crate::media::tap::{DEFAULT_TAP_FRAMES, tap};

    /// A consumer that never reads: its tap fills, then loses every further frame, counted,
    /// while each tick still serves every listener its downlink frame.
    #[test]
    fn a_slow_tap_consumer_loses_frames_without_slowing_the_meeting() {
        let (downlinks, _downlinks_rx) = mpsc::channel(1);
        let mut meeting = Meeting {
            mix: MeetingMix::new(3),
            downlinks,
            taps: AudioTaps::default(),
        };
        meeting.mix.set_role(1, AudioRole::FULL);
        meeting.mix.set_role(2, AudioRole::FULL);
        let (sender, mut stalled) = tap(AudioSource::Mix, DEFAULT_TAP_FRAMES);
        meeting.taps.add(sender);
        let (sender, mut reading) = tap(AudioSource::Session(SessionId(1)), DEFAULT_TAP_FRAMES);
        meeting.taps.add(sender);
        let mut encoder = Encoder::new().expect("encoder");
        let ticks = 3 * DEFAULT_TAP_FRAMES;
        let mut session_frames = 0;
        for tick in 0..ticks {
            let mut pcm = [0.1f32; FRAME_SAMPLES];
            let packet = encoder.encode(&mut pcm).expect("encode");
            meeting
                .mix
                .push(1, (tick * FRAME_SAMPLES) as u64, packet, Some(-20));
            let served = meeting.tick();
            let listeners: Vec<u64> = served.iter().map(|d| d.listener).collect();
            assert!(
                listeners.contains(&1) && listeners.contains(&2),
                "tick {tick}: every listener gets its frame"
            );
            // The session tap's consumer keeps up and loses nothing.
            while reading.frames.try_recv().is_ok() {
                session_frames += 1;
            }
        }
        let queued = std::iter::from_fn(|| stalled.frames.try_recv().ok()).count();
        assert_eq!(queued, DEFAULT_TAP_FRAMES, "the stalled queue is bounded");
        assert_eq!(stalled.dropped(), (ticks - DEFAULT_TAP_FRAMES) as u64);
        assert_eq!(reading.dropped(), 0);
        // The source starts playing once its jitter buffer holds two frames.
        assert!(session_frames >= ticks - 2, "{session_frames} of {ticks}");
        // A session that leaves ends its taps.
        meeting.mix.remove(1);
        meeting.taps.close(AudioSource::Session(SessionId(1)));
        assert!(reading.frames.try_recv().is_err() && reading.frames.is_closed());
    }
}
