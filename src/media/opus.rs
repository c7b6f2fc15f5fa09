//! A safe face on the Opus codec: one mono 48 kHz encoder or decoder per value.
//!
//! The codec is `unsafe-libopus`, libopus 1.3.1 translated to Rust. It builds with cargo alone
//! (the server must build on a machine without `libopus-dev` or cmake) and measured within
//! 1.25× of Debian's C libopus 1.3.1 on this kind of machine (`bench/mixer.rs` prints both).
//! Everything unsafe about it stays in this file.

use unsafe_libopus as unsafe_opus;

/// Samples in one 20 ms frame at 48 kHz: the mixer's tick.
pub const FRAME_SAMPLES: usize = 960;
/// The most samples one Opus packet can carry (120 ms at 48 kHz).
pub const MAX_PACKET_SAMPLES: usize = 5760;
/// Chime's audio bitrate.
const BITRATE: i32 = 32_000;
/// A concealed or FEC-rebuilt frame with a sample this loud is unsafe-libopus's broken
/// concealment of SILK and hybrid frames (CELT's is fine): it drifts to a constant full-scale
/// level within 2 ms and leaves the decoder's state so that the next frame comes out the same,
/// 40 ms of a full-scale thump where a packet was lost. Real voices peak far below this.
pub const FULL_SCALE_CONCEALMENT: f32 = 0.99;
/// Large enough for any 20 ms packet at our bitrate.
const MAX_PACKET_BYTES: usize = 1500;
/// The encoders' complexity (libopus's default is 10, libwebrtc's 9 on desktops and 5 on
/// phones). `cargo bench --bench media -- --scenario codec` measured a 20 ms encode at 120 µs
/// here against 275 µs at 9 or 10, with the decoded voice as close to the input (log-spectral
/// distance 0.8 dB at 5, 9 and 10): the mix's encodes are most of the mixer's CPU.
const COMPLEXITY: i32 = 5;

/// 20 ms of digital silence as one Opus packet: the TOC byte 0xF8 (CELT only, fullband, 20 ms,
/// one frame) and a two-byte CELT frame that codes silence. Sent to a listener with nothing to
/// hear, it decodes to zeros (no concealment, no comfort noise) at a fixed cost of three bytes,
/// without an encoder.
pub const SILENCE_FRAME: [u8; 3] = [0xf8, 0xff, 0xfe];

#[derive(Debug)]
pub struct OpusError(pub i32);

impl std::fmt::Display for OpusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "opus error {}", self.0)
    }
}

pub struct Encoder {
    state: *mut unsafe_opus::OpusEncoder,
    soft_clip_memory: [f32; 1],
}

// SAFETY: the encoder state is a plain heap block owned by this value; libopus keeps no
// thread-local or shared state, so moving it to another thread is sound.
unsafe impl Send for Encoder {}

impl Encoder {
    pub fn new() -> Result<Self, OpusError> {
        let mut error = 0;
        // SAFETY: valid sample rate, channel count and application; `error` outlives the call.
        let state = unsafe {
            unsafe_opus::opus_encoder_create(
                48_000,
                1,
                unsafe_opus::OPUS_APPLICATION_VOIP,
                &mut error,
            )
        };
        if state.is_null() || error != unsafe_opus::OPUS_OK {
            return Err(OpusError(error));
        }
        // SAFETY: `state` was just created and is valid.
        unsafe {
            unsafe_opus::opus_encoder_ctl!(state, unsafe_opus::OPUS_SET_BITRATE_REQUEST, BITRATE);
            unsafe_opus::opus_encoder_ctl!(
                state,
                unsafe_opus::OPUS_SET_COMPLEXITY_REQUEST,
                COMPLEXITY
            );
            // The mix is speech; in-band FEC lets receivers conceal a lost packet.
            unsafe_opus::opus_encoder_ctl!(state, unsafe_opus::OPUS_SET_INBAND_FEC_REQUEST, 1);
            unsafe_opus::opus_encoder_ctl!(
                state,
                unsafe_opus::OPUS_SET_PACKET_LOSS_PERC_REQUEST,
                5
            );
        }
        Ok(Encoder {
            state,
            soft_clip_memory: [0.0],
        })
    }

    /// An encoder for a recording whose audio does not come encoded by the mixer: the same
    /// 32 kbit/s voice settings and complexity, but no in-band FEC (a file loses no packets).
    pub fn for_recording() -> Result<Self, OpusError> {
        let encoder = Self::new()?;
        // SAFETY: `state` is a live encoder; the requests take one i32 each.
        unsafe {
            unsafe_opus::opus_encoder_ctl!(
                encoder.state,
                unsafe_opus::OPUS_SET_INBAND_FEC_REQUEST,
                0
            );
            unsafe_opus::opus_encoder_ctl!(
                encoder.state,
                unsafe_opus::OPUS_SET_PACKET_LOSS_PERC_REQUEST,
                0
            );
        }
        Ok(encoder)
    }

    /// Encodes `samples` one whole 20 ms frame at a time (a shorter tail is left out): a clip's
    /// packets, for tests and the media bench.
    pub fn encode_frames(&mut self, samples: &[f32]) -> Result<Vec<Vec<u8>>, OpusError> {
        samples
            .chunks_exact(FRAME_SAMPLES)
            .map(|frame| {
                let mut pcm = [0f32; FRAME_SAMPLES];
                pcm.copy_from_slice(frame);
                self.encode(&mut pcm)
            })
            .collect()
    }

    /// Sets libopus's complexity (0–10): how hard it searches for a better coding of each frame.
    pub fn set_complexity(&mut self, complexity: i32) {
        // SAFETY: `state` is a live encoder; the request takes one i32.
        unsafe {
            unsafe_opus::opus_encoder_ctl!(
                self.state,
                unsafe_opus::OPUS_SET_COMPLEXITY_REQUEST,
                complexity
            );
        }
    }

    /// Forgets the audio encoded so far: the next frame starts afresh, as after a stretch that
    /// was written without the encoder.
    pub fn reset(&mut self) {
        // SAFETY: `state` is a live encoder; OPUS_RESET_STATE takes no argument.
        unsafe {
            unsafe_opus::opus_encoder_ctl!(self.state, unsafe_opus::OPUS_RESET_STATE,);
        }
        self.soft_clip_memory = [0.0];
    }

    /// Soft-clips one 20 ms frame of f32 samples (full scale ±1.0) in place and encodes it.
    pub fn encode(&mut self, pcm: &mut [f32; FRAME_SAMPLES]) -> Result<Vec<u8>, OpusError> {
        let mut packet = vec![0u8; MAX_PACKET_BYTES];
        // SAFETY: `pcm` holds exactly FRAME_SAMPLES mono samples and `packet` MAX_PACKET_BYTES
        // bytes, the sizes passed; the state is valid for the life of `self`.
        let written = unsafe {
            unsafe_opus::opus_pcm_soft_clip(
                pcm.as_mut_ptr(),
                FRAME_SAMPLES as i32,
                1,
                self.soft_clip_memory.as_mut_ptr(),
            );
            unsafe_opus::opus_encode_float(
                self.state,
                pcm.as_ptr(),
                FRAME_SAMPLES as i32,
                packet.as_mut_ptr(),
                MAX_PACKET_BYTES as i32,
            )
        };
        let written = usize::try_from(written).map_err(|_| OpusError(written))?;
        packet.truncate(written);
        Ok(packet)
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        // SAFETY: created by opus_encoder_create and destroyed exactly once.
        unsafe { unsafe_opus::opus_encoder_destroy(self.state) }
    }
}

pub struct Decoder {
    state: *mut unsafe_opus::OpusDecoder,
}

// SAFETY: as for the encoder.
unsafe impl Send for Decoder {}

impl Decoder {
    pub fn new() -> Result<Self, OpusError> {
        let mut error = 0;
        // SAFETY: valid sample rate and channel count; `error` outlives the call.
        let state = unsafe { unsafe_opus::opus_decoder_create(48_000, 1, &mut error) };
        if state.is_null() || error != unsafe_opus::OPUS_OK {
            return Err(OpusError(error));
        }
        Ok(Decoder { state })
    }

    /// Decodes one packet into `pcm`, or conceals a lost one (`None`) for `conceal` samples.
    /// Returns how many samples were written. Packets come from clients: libopus checks them,
    /// and a malformed one is an error, not a crash.
    pub fn decode(
        &mut self,
        packet: Option<&[u8]>,
        conceal: usize,
        pcm: &mut [f32; MAX_PACKET_SAMPLES],
    ) -> Result<usize, OpusError> {
        self.decode_with(packet, conceal, pcm, false)
    }

    /// Rebuilds the `samples` before `next_packet` (a lost packet) from the in-band FEC copy the
    /// sender put in `next_packet` (Opus LBRR, RFC 6716 §2.1.7). When `next_packet` carries no
    /// FEC data, libopus conceals instead, so this is never worse than [`Decoder::decode`]
    /// with `None`. `next_packet` itself must still be decoded normally afterwards.
    pub fn decode_fec(
        &mut self,
        next_packet: &[u8],
        samples: usize,
        pcm: &mut [f32; MAX_PACKET_SAMPLES],
    ) -> Result<usize, OpusError> {
        self.decode_with(Some(next_packet), samples, pcm, true)
    }

    fn decode_with(
        &mut self,
        packet: Option<&[u8]>,
        conceal: usize,
        pcm: &mut [f32; MAX_PACKET_SAMPLES],
        fec: bool,
    ) -> Result<usize, OpusError> {
        let (data, len, frame) = match packet {
            Some(bytes) if !bytes.is_empty() => (
                bytes.as_ptr(),
                i32::try_from(bytes.len())
                    .map_err(|_| OpusError(unsafe_opus::OPUS_INVALID_PACKET))?,
                // FEC decoding must ask for exactly the lost duration.
                if fec {
                    conceal.min(MAX_PACKET_SAMPLES)
                } else {
                    MAX_PACKET_SAMPLES
                },
            ),
            _ => (std::ptr::null(), 0, conceal.min(MAX_PACKET_SAMPLES)),
        };
        // SAFETY: `data` is valid for `len` bytes (or null with len 0, which asks for
        // concealment); `pcm` has room for `frame` ≤ MAX_PACKET_SAMPLES mono samples.
        let decoded = unsafe {
            unsafe_opus::opus_decode_float(
                self.state,
                data,
                len,
                pcm.as_mut_ptr(),
                frame as i32,
                i32::from(fec),
            )
        };
        usize::try_from(decoded).map_err(|_| OpusError(decoded))
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: created by opus_decoder_create and destroyed exactly once.
        unsafe { unsafe_opus::opus_decoder_destroy(self.state) }
    }
}

/// The samples (at 48 kHz) that an Opus packet carries, read from its header without decoding:
/// how far a source's timeline moves when its packet is skipped rather than mixed.
pub fn packet_samples(packet: &[u8]) -> Option<usize> {
    if packet.is_empty() {
        return None;
    }
    let len = i32::try_from(packet.len()).ok()?;
    // SAFETY: `packet` is valid for `len` bytes; the function only reads the TOC and frame count.
    let samples = unsafe { unsafe_opus::opus_packet_get_nb_samples(packet.as_ptr(), len, 48_000) };
    usize::try_from(samples)
        .ok()
        .filter(|n| *n > 0 && *n <= MAX_PACKET_SAMPLES)
}

/// 10 s of a synthetic voice at 48 kHz, for tests and the media bench: a pitch gliding around
/// 120 Hz, its harmonics shaped by three formants that move with each syllable, four syllables a
/// second with short pauses.
pub fn synthetic_voice() -> Vec<f32> {
    const RATE: f32 = 48_000.0;
    const VOWELS: [[f32; 3]; 4] = [
        [700.0, 1200.0, 2600.0],
        [300.0, 2300.0, 3000.0],
        [500.0, 900.0, 2400.0],
        [400.0, 1900.0, 2550.0],
    ];
    let mut phase = 0f32;
    (0..(10 * 48_000))
        .map(|i| {
            let t = i as f32 / RATE;
            let f0 = 120.0 + 40.0 * (2.0 * std::f32::consts::PI * 0.7 * t).sin();
            phase = (phase + f0 / RATE).fract();
            let syllable = (t * 4.0) as usize;
            let within = (t * 4.0).fract();
            if within > 0.8 {
                return 0.0;
            }
            let envelope = (std::f32::consts::PI * within / 0.8).sin();
            let formants = VOWELS
                .get(syllable % VOWELS.len())
                .copied()
                .unwrap_or(VOWELS[0]);
            let mut sample = 0.0;
            for k in 1..=60 {
                let f = k as f32 * f0;
                if f > 7_500.0 {
                    break;
                }
                let gain: f32 = formants
                    .iter()
                    .map(|formant| 1.0 / (1.0 + ((f - formant) / 90.0).powi(2)))
                    .sum();
                sample += gain / k as f32 * (2.0 * std::f32::consts::PI * phase * k as f32).sin();
            }
            0.15 * envelope * sample
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tone_survives_encode_and_decode() {
        let mut encoder = Encoder::new().expect("encoder");
        let mut decoder = Decoder::new().expect("decoder");
        let mut out = [0f32; MAX_PACKET_SAMPLES];
        let mut energy = 0.0;
        for frame in 0..20 {
            let mut pcm = [0f32; FRAME_SAMPLES];
            for (i, sample) in pcm.iter_mut().enumerate() {
                let t = (frame * FRAME_SAMPLES + i) as f32 / 48_000.0;
                *sample = 0.3 * (2.0 * std::f32::consts::PI * 440.0 * t).sin();
            }
            let packet = encoder.encode(&mut pcm).expect("encode");
            assert_eq!(packet_samples(&packet), Some(FRAME_SAMPLES));
            let n = decoder.decode(Some(&packet), 0, &mut out).expect("decode");
            assert_eq!(n, FRAME_SAMPLES);
            energy = out[..n].iter().map(|s| s * s).sum::<f32>() / n as f32;
        }
        assert!(
            energy > 0.01,
            "the tone comes back with its energy: {energy}"
        );
    }

    /// What a decoder plays for frame `lost` of `packets` when that packet never came: rebuilt
    /// from the next packet's in-band FEC, or concealed.
    fn played_for_lost(packets: &[Vec<u8>], lost: usize, fec: bool) -> Vec<f32> {
        let mut decoder = Decoder::new().expect("decoder");
        let mut out = [0f32; MAX_PACKET_SAMPLES];
        for packet in &packets[..lost] {
            decoder.decode(Some(packet), 0, &mut out).expect("decode");
        }
        let n = if fec {
            decoder.decode_fec(&packets[lost + 1], FRAME_SAMPLES, &mut out)
        } else {
            decoder.decode(None, FRAME_SAMPLES, &mut out)
        }
        .expect("rebuild");
        out[..n].to_vec()
    }

    /// The FEC a client's packets carry rebuilds a lost frame with what was said in it, even a
    /// syllable that starts in the lost frame, which concealment could only guess from what came
    /// before. (A client encoder as Chrome's on a desktop: complexity 9, FEC on.)
    #[test]
    fn in_band_fec_rebuilds_what_was_said_in_a_lost_frame() {
        let mut encoder = Encoder::new().expect("encoder");
        encoder.set_complexity(9);
        let packets = encoder
            .encode_frames(&synthetic_voice()[..40 * FRAME_SAMPLES])
            .expect("encode");
        let clean: Vec<f32> = {
            let mut decoder = Decoder::new().expect("decoder");
            let mut out = [0f32; MAX_PACKET_SAMPLES];
            packets
                .iter()
                .flat_map(|p| {
                    let n = decoder.decode(Some(p), 0, &mut out).expect("decode");
                    out[..n].to_vec()
                })
                .collect()
        };
        // The second syllable starts at 0.25 s, in frame 12; frame 13 is its first whole frame.
        let lost = 13;
        let heard = &clean[lost * FRAME_SAMPLES..(lost + 1) * FRAME_SAMPLES];
        let error = |played: &[f32]| -> f32 {
            played
                .iter()
                .zip(heard)
                .map(|(a, b)| (a - b) * (a - b))
                .sum()
        };
        let energy: f32 = heard.iter().map(|s| s * s).sum();
        let with_fec = error(&played_for_lost(&packets, lost, true));
        assert!(
            with_fec < 0.25 * energy,
            "FEC rebuilds the lost frame: error {with_fec} against the frame's energy {energy}"
        );
        // Concealment of the same frame (SILK/hybrid) is what the mixer must not trust: see
        // `Source::decode_into_pcm`.
        let concealed = played_for_lost(&packets, lost, false);
        assert!(
            concealed.iter().any(|s| s.abs() >= FULL_SCALE_CONCEALMENT),
            "unsafe-libopus's concealment of this frame saturates; if this fails, the library was \
             fixed and the mixer's guard can go"
        );
    }

    #[test]
    fn garbage_packets_are_errors_and_loss_is_concealed() {
        let mut decoder = Decoder::new().expect("decoder");
        let mut out = [0f32; MAX_PACKET_SAMPLES];
        // A TOC byte promising more frames than the packet holds.
        assert!(decoder.decode(Some(&[0xff, 0xff]), 0, &mut out).is_err());
        assert_eq!(
            decoder.decode(None, FRAME_SAMPLES, &mut out).expect("plc"),
            FRAME_SAMPLES
        );
        assert_eq!(packet_samples(&[]), None);
    }
}
