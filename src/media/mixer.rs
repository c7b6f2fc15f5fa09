//! The mixer threads: plain OS threads, never the async executor, each ticking every 20 ms over
//! the meetings assigned to it. Meetings feed them received Opus packets through a bounded
//! channel and get each tick's downlink frames back through another.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::mix::{AudioRole, Downlink, MeetingMix};

const TICK: Duration = Duration::from_millis(20);
/// Packets and commands queued for one mixer thread (about 2 s of a 40-speaker load).
const INPUT_QUEUE: usize = 4096;

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
}

#[derive(Clone)]
pub struct Mixers {
    threads: Arc<[SyncSender<MixerInput>]>,
    pub stats: Arc<MixerStats>,
}

impl Mixers {
    /// Starts `threads` mixer threads, each mixing with `speakers` picked speakers.
    pub fn start(threads: usize, speakers: usize) -> std::io::Result<Mixers> {
        let stats = Arc::new(MixerStats::default());
        let mut senders = Vec::new();
        for index in 0..threads.max(1) {
            let (sender, receiver) = sync_channel(INPUT_QUEUE);
            let stats = stats.clone();
            std::thread::Builder::new()
                .name(format!("carillon-mixer-{index}"))
                .spawn(move || run(receiver, speakers, &stats))?;
            senders.push(sender);
        }
        Ok(Mixers {
            threads: senders.into(),
            stats,
        })
    }

    fn thread(&self, meeting: u64) -> Option<&SyncSender<MixerInput>> {
        let count = self.threads.len() as u64;
        self.threads
            .get(usize::try_from(meeting % count.max(1)).ok()?)
    }

    /// Control messages must arrive: they wait for room (briefly, the mixer drains every tick).
    pub fn control(&self, meeting: u64, input: MixerInput) {
        if let Some(thread) = self.thread(meeting) {
            let _ = thread.send(input);
        }
    }

    /// A packet is worth nothing late: when the mixer is behind it is dropped and counted.
    pub fn packet(&self, meeting: u64, input: MixerInput) {
        if let Some(thread) = self.thread(meeting) {
            match thread.try_send(input) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                Err(TrySendError::Full(_)) => {
                    self.stats.dropped_packets.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

struct Meeting {
    mix: MeetingMix,
    downlinks: mpsc::Sender<Vec<Downlink>>,
}

fn run(inputs: Receiver<MixerInput>, speakers: usize, stats: &MixerStats) {
    let mut meetings: HashMap<u64, Meeting> = HashMap::new();
    let mut next_tick = Instant::now() + TICK;
    loop {
        let wait = next_tick.saturating_duration_since(Instant::now());
        match inputs.recv_timeout(wait) {
            Ok(input) => {
                apply(&mut meetings, input, speakers);
                // Take whatever else is queued before checking the clock again.
                while let Ok(input) = inputs.try_recv() {
                    apply(&mut meetings, input, speakers);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        if now < next_tick {
            continue;
        }
        let started = Instant::now();
        for meeting in meetings.values_mut() {
            let downlinks = meeting.mix.tick();
            if !downlinks.is_empty() && meeting.downlinks.try_send(downlinks).is_err() {
                stats.dropped_ticks.fetch_add(1, Ordering::Relaxed);
            }
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

fn apply(meetings: &mut HashMap<u64, Meeting>, input: MixerInput, speakers: usize) {
    match input {
        MixerInput::Open { meeting, downlinks } => {
            meetings.insert(
                meeting,
                Meeting {
                    mix: MeetingMix::new(speakers),
                    downlinks,
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
