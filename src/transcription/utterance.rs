//! Cutting one attendee's decoded audio into utterances by voice activity, and the 16 kHz WAV a
//! transcription engine reads.
//!
//! The mixer hands a session's tap a 20 ms frame of 48 kHz PCM for every tick the session
//! played something. A frame is voiced when its level is above a threshold; an utterance
//! starts after a few voiced frames (with a little audio from before, so that its first
//! consonant is not clipped) and ends after a stretch of unvoiced ones, a gap in the ticks as
//! long (the session stopped sending; a shorter gap is silence within the utterance), or at its
//! longest. While it runs, a growing snapshot is offered
//! every second for a partial result.
//!
//! Audio is kept at 16 kHz in 16-bit samples, what every OpenAI-compatible server reads: a
//! third of the samples and half the bytes of the mixer's floats, so that an utterance at its
//! longest holds 320 KB.

use std::collections::VecDeque;

use crate::media::opus::FRAME_SAMPLES;

/// The rate engines are sent.
pub const ENGINE_RATE: u32 = 16_000;
/// 16 kHz samples in one 20 ms frame.
const FRAME_16K: usize = FRAME_SAMPLES / 3;
/// A frame is voiced above this level (dBFS of its RMS). Speech into a browser microphone sits
/// at -35 to -15 dBFS; a quiet room and Opus's comfort noise well below -50.
const VOICED_DBFS: f32 = -45.0;
/// Voiced frames in a row that start an utterance (60 ms): a click does not.
const START_FRAMES: usize = 3;
/// Audio kept from before the start (200 ms).
const PRE_ROLL_FRAMES: usize = 10;
/// Unvoiced frames in a row that end an utterance (600 ms): a pause between sentences, not
/// between words.
const END_FRAMES: usize = 30;
/// The longest utterance (10 s): a longer monologue is cut, so that captions keep coming and
/// memory stays bounded.
const MAX_FRAMES: usize = 500;
/// An utterance with fewer voiced frames than this (200 ms) is dropped as noise.
const MIN_VOICED_FRAMES: usize = 10;
/// A partial snapshot every this many frames (1 s).
const PARTIAL_EVERY: usize = 50;

/// One utterance, or a snapshot of one still running.
#[derive(Debug, Clone, PartialEq)]
pub struct Utterance {
    /// Counts the session's utterances: a partial and its final share it.
    pub number: u64,
    /// Wall-clock milliseconds of its first sample and just past its last.
    pub start_ms: i64,
    pub end_ms: i64,
    /// 16 kHz mono.
    pub samples: Vec<i16>,
    /// A snapshot of an utterance still running.
    pub partial: bool,
}

impl Utterance {
    /// The utterance as a WAV file: 16 kHz, mono, 16-bit PCM.
    pub fn wav(&self) -> Vec<u8> {
        wav(&self.samples)
    }
}

/// A RIFF/WAVE file of 16 kHz mono 16-bit samples.
pub fn wav(samples: &[i16]) -> Vec<u8> {
    let data_bytes = u32::try_from(samples.len() * 2).unwrap_or(u32::MAX - 36);
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_bytes).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&ENGINE_RATE.to_le_bytes());
    out.extend_from_slice(&(ENGINE_RATE * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_bytes.to_le_bytes());
    for sample in samples {
        out.extend_from_slice(&sample.to_le_bytes());
    }
    out
}

/// Taps of the low-pass filter before decimation.
const FILTER_TAPS: usize = 48;

/// 48 kHz to 16 kHz: a windowed-sinc low-pass (Blackman, cut at 7 kHz) then every third sample.
/// Speech recognisers lose words to aliasing: the 8 to 16 kHz band that a plain decimation, or a
/// mean of three, folds back over the consonants.
struct Downsampler {
    taps: [f32; FILTER_TAPS],
    /// The last `FILTER_TAPS - 1` input samples (newest last), then the frame being filtered:
    /// one contiguous run that every output's window is a slice of.
    input: Vec<f32>,
}

impl Downsampler {
    fn new() -> Downsampler {
        let cutoff = 7_000.0 / 48_000.0;
        let middle = (FILTER_TAPS - 1) as f32 / 2.0;
        let mut taps = [0f32; FILTER_TAPS];
        for (i, tap) in taps.iter_mut().enumerate() {
            let x = i as f32 - middle;
            let sinc = if x == 0.0 {
                2.0 * cutoff
            } else {
                (2.0 * std::f32::consts::PI * cutoff * x).sin() / (std::f32::consts::PI * x)
            };
            let phase = 2.0 * std::f32::consts::PI * i as f32 / (FILTER_TAPS - 1) as f32;
            let window = 0.42 - 0.5 * phase.cos() + 0.08 * (2.0 * phase).cos();
            *tap = sinc * window;
        }
        let gain: f32 = taps.iter().sum();
        for tap in &mut taps {
            *tap /= gain;
        }
        Downsampler {
            taps,
            input: vec![0.0; FILTER_TAPS - 1],
        }
    }

    /// One 20 ms frame at 16 kHz.
    fn frame(&mut self, frame: &[f32]) -> [i16; FRAME_16K] {
        self.input.extend_from_slice(frame);
        let mut out = [0i16; FRAME_16K];
        for (k, slot) in out.iter_mut().enumerate() {
            // The window ending at this output's third input sample.
            let window = self.input.get(3 * k + 2..3 * k + 2 + FILTER_TAPS);
            let filtered: f32 = window
                .unwrap_or_default()
                .iter()
                .zip(self.taps.iter())
                .map(|(x, tap)| x * tap)
                .sum();
            *slot = (filtered.clamp(-1.0, 1.0) * f32::from(i16::MAX)) as i16;
        }
        let keep_from = self.input.len().saturating_sub(FILTER_TAPS - 1);
        self.input.drain(..keep_from);
        out
    }
}

/// The RMS level of a frame in dBFS (-inf for digital silence).
fn level_dbfs(frame: &[f32]) -> f32 {
    if frame.is_empty() {
        return f32::NEG_INFINITY;
    }
    let energy: f32 = frame.iter().map(|s| s * s).sum::<f32>() / frame.len() as f32;
    10.0 * energy.log10()
}

/// An utterance being collected.
struct Running {
    number: u64,
    start_ms: i64,
    samples: Vec<i16>,
    frames: usize,
    voiced: usize,
    unvoiced_run: usize,
    since_partial: usize,
}

/// One session's segmenter. Feed it every frame of the session's tap in order; it answers with
/// the utterances (and partial snapshots) to transcribe.
pub struct Segmenter {
    /// The last frames heard outside an utterance, with their wall-clock times: the pre-roll,
    /// and the voiced run that may start one.
    recent: VecDeque<(i64, [i16; FRAME_16K], bool)>,
    running: Option<Running>,
    last_tick: Option<u64>,
    utterances: u64,
    /// Whether running utterances offer partial snapshots.
    partials: bool,
    downsampler: Downsampler,
}

impl Segmenter {
    pub fn new(partials: bool) -> Segmenter {
        Segmenter {
            recent: VecDeque::with_capacity(PRE_ROLL_FRAMES + START_FRAMES),
            running: None,
            last_tick: None,
            utterances: 0,
            partials,
            downsampler: Downsampler::new(),
        }
    }

    /// Takes the next frame: the mixer's tick, its wall-clock time, 48 kHz samples. Returns
    /// what is ready: the utterance a gap or a pause ended, and the new one's first snapshot.
    pub fn push(&mut self, tick: u64, at_ms: i64, samples: &[f32]) -> Vec<Utterance> {
        let mut ready = Vec::new();
        // A gap in the ticks: the session played nothing for a while. A long one (as long as
        // the pause that ends an utterance) ends what it said; a short one (the mixer waiting
        // for late packets) is a hole of silence in it, so that a sentence is not cut in two.
        let missing = self
            .last_tick
            .map_or(0, |last| tick.saturating_sub(last).saturating_sub(1));
        self.last_tick = Some(tick);
        if missing >= END_FRAMES as u64 {
            ready.extend(self.finish());
        } else if missing > 0
            && let Some(running) = &mut self.running
        {
            let missing = missing as usize;
            running
                .samples
                .resize(running.samples.len() + missing * FRAME_16K, 0);
            running.frames += missing;
            running.since_partial += missing;
            running.unvoiced_run += missing;
        }
        let voiced = level_dbfs(samples) > VOICED_DBFS;
        let pcm = self.downsampler.frame(samples);
        match &mut self.running {
            Some(running) => {
                running.samples.extend_from_slice(&pcm);
                running.frames += 1;
                running.since_partial += 1;
                if voiced {
                    running.voiced += 1;
                    running.unvoiced_run = 0;
                } else {
                    running.unvoiced_run += 1;
                }
                if running.unvoiced_run >= END_FRAMES || running.frames >= MAX_FRAMES {
                    ready.extend(self.finish());
                } else if self.partials && running.since_partial >= PARTIAL_EVERY {
                    running.since_partial = 0;
                    ready.push(snapshot(running, at_ms + 20, true));
                }
            }
            None => {
                if self.recent.len() == PRE_ROLL_FRAMES + START_FRAMES {
                    self.recent.pop_front();
                }
                self.recent.push_back((at_ms, pcm, voiced));
                let run = self.recent.iter().rev().take_while(|f| f.2).count();
                if run >= START_FRAMES {
                    self.utterances += 1;
                    let start_ms = self.recent.front().map_or(at_ms, |f| f.0);
                    let mut samples = Vec::with_capacity(MAX_FRAMES * FRAME_16K);
                    for (_, frame, _) in self.recent.drain(..) {
                        samples.extend_from_slice(&frame);
                    }
                    self.running = Some(Running {
                        number: self.utterances,
                        start_ms,
                        frames: samples.len() / FRAME_16K,
                        samples,
                        voiced: run,
                        unvoiced_run: 0,
                        since_partial: 0,
                    });
                }
            }
        }
        ready
    }

    /// Ends the running utterance (the session went quiet, left, or the transcription stops):
    /// the final utterance, unless it was too short to be speech.
    pub fn finish(&mut self) -> Option<Utterance> {
        self.recent.clear();
        let mut running = self.running.take()?;
        // The silence that ended it is not sent, except a little after the last word.
        let trailing = running.unvoiced_run.saturating_sub(PRE_ROLL_FRAMES / 2);
        running.frames -= trailing.min(running.frames);
        running.samples.truncate(running.frames * FRAME_16K);
        (running.voiced >= MIN_VOICED_FRAMES).then(|| {
            let end_ms = running.start_ms + 20 * running.frames as i64;
            snapshot(&running, end_ms, false)
        })
    }

    /// Whether an utterance is running.
    pub fn is_speaking(&self) -> bool {
        self.running.is_some()
    }
}

fn snapshot(running: &Running, end_ms: i64, partial: bool) -> Utterance {
    Utterance {
        number: running.number,
        start_ms: running.start_ms,
        end_ms,
        samples: running.samples.clone(),
        partial,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(amplitude: f32) -> Vec<f32> {
        (0..FRAME_SAMPLES)
            .map(|i| amplitude * (i as f32 * 2.0 * std::f32::consts::PI * 440.0 / 48_000.0).sin())
            .collect()
    }

    /// Feeds `frames` frames of `samples` from tick `from`, returning what came out.
    fn feed(segmenter: &mut Segmenter, from: u64, frames: u64, samples: &[f32]) -> Vec<Utterance> {
        (from..from + frames)
            .flat_map(|tick| segmenter.push(tick, tick as i64 * 20, samples))
            .collect()
    }

    #[test]
    fn speech_between_pauses_is_one_utterance_with_partials_then_a_final() {
        let mut segmenter = Segmenter::new(true);
        let (speech, quiet) = (tone(0.3), tone(0.001));
        assert!(feed(&mut segmenter, 0, 50, &quiet).is_empty());
        let partials = feed(&mut segmenter, 50, 150, &speech);
        assert_eq!(partials.len(), 2, "a snapshot each second of speech");
        assert!(partials.iter().all(|u| u.partial && u.number == 1));
        assert!(partials[1].samples.len() > partials[0].samples.len());
        let ended: Vec<Utterance> = feed(&mut segmenter, 200, 40, &quiet)
            .into_iter()
            .filter(|u| !u.partial)
            .collect();
        assert_eq!(ended.len(), 1);
        let utterance = &ended[0];
        assert!(!utterance.partial);
        assert_eq!(utterance.number, 1);
        // It starts with the pre-roll, 200 ms before the voiced frames that started it.
        assert_eq!(utterance.start_ms, (50 - PRE_ROLL_FRAMES as i64) * 20);
        let seconds = utterance.samples.len() as f32 / ENGINE_RATE as f32;
        assert!(
            (3.0..3.6).contains(&seconds),
            "speech plus pre-roll and a little of the pause: {seconds} s"
        );
        assert_eq!(
            utterance.end_ms - utterance.start_ms,
            (utterance.samples.len() / FRAME_16K) as i64 * 20
        );
        assert!(!segmenter.is_speaking());
    }

    #[test]
    fn a_click_is_no_utterance_and_a_gap_or_the_longest_length_ends_one() {
        let mut segmenter = Segmenter::new(false);
        let (speech, quiet) = (tone(0.3), tone(0.0));
        // Four voiced frames start an utterance that is too short to keep.
        assert!(feed(&mut segmenter, 0, 4, &speech).is_empty());
        assert!(feed(&mut segmenter, 4, 40, &quiet).is_empty());
        // Speech with a 100 ms hole (the mixer waiting for late packets) is one utterance;
        // then the session stops sending, and the next frame after that gap ends it.
        assert!(feed(&mut segmenter, 100, 30, &speech).is_empty());
        assert!(feed(&mut segmenter, 135, 30, &speech).is_empty());
        let ended = feed(&mut segmenter, 400, 1, &quiet);
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].number, 2);
        assert_eq!(
            ended[0].samples.len(),
            65 * FRAME_16K,
            "speech, the hole, speech"
        );
        // Twelve seconds without a pause come out as a 10 s utterance and the rest.
        let long = feed(&mut segmenter, 500, 600, &speech);
        assert_eq!(long.len(), 1);
        assert_eq!((long[0].number, long[0].partial), (3, false));
        assert_eq!(long[0].samples.len(), MAX_FRAMES * FRAME_16K);
        assert!(segmenter.finish().is_some_and(|rest| rest.number == 4));
    }

    /// The power of a 16 kHz signal at `frequency` (one DFT bin).
    fn power_at(samples: &[i16], frequency: f32) -> f32 {
        let (mut re, mut im) = (0f32, 0f32);
        for (i, s) in samples.iter().enumerate() {
            let phase = 2.0 * std::f32::consts::PI * frequency * i as f32 / 16_000.0;
            re += f32::from(*s) * phase.cos();
            im += f32::from(*s) * phase.sin();
        }
        (re * re + im * im) / (samples.len() as f32).powi(2)
    }

    #[test]
    fn downsampling_keeps_speech_and_stops_what_would_alias() {
        let run = |frequency: f32| {
            let mut downsampler = Downsampler::new();
            let mut out = Vec::new();
            for frame in 0..20 {
                let samples: Vec<f32> = (0..FRAME_SAMPLES)
                    .map(|i| {
                        let t = (frame * FRAME_SAMPLES + i) as f32 / 48_000.0;
                        0.5 * (2.0 * std::f32::consts::PI * frequency * t).sin()
                    })
                    .collect();
                out.extend_from_slice(&downsampler.frame(&samples));
            }
            out
        };
        // 1 kHz passes at its level; 11 kHz (which would fold to 5 kHz) is gone.
        let speech = power_at(&run(1_000.0), 1_000.0);
        let expected = (0.5 * f32::from(i16::MAX) / 2.0).powi(2);
        assert!(
            (speech / expected - 1.0).abs() < 0.1,
            "{speech} vs {expected}"
        );
        let folded = power_at(&run(11_000.0), 5_000.0);
        assert!(
            folded < expected * 1e-3,
            "11 kHz folds to 5 kHz at {folded}"
        );
    }

    #[test]
    fn the_wav_header_describes_16_khz_mono_pcm() {
        let file = wav(&[0, 1, -1, i16::MAX]);
        assert_eq!(&file[0..4], b"RIFF");
        assert_eq!(
            u32::from_le_bytes([file[4], file[5], file[6], file[7]]),
            36 + 8
        );
        assert_eq!(&file[8..16], b"WAVEfmt ");
        assert_eq!(
            u32::from_le_bytes([file[24], file[25], file[26], file[27]]),
            16_000
        );
        assert_eq!(&file[36..40], b"data");
        assert_eq!(file.len(), 44 + 8);
        assert_eq!(i16::from_le_bytes([file[50], file[51]]), i16::MAX);
    }
}
