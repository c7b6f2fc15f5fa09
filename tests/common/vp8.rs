//! Synthetic VP8 frames for the video tests and the video benchmark: no encoder is needed, since
//! the server only forwards. Each frame has a valid VP8 frame tag (RFC 6386 §9.1; keyframes with
//! the start code 0x9d 0x01 0x2a and a width and height), then a marker, the frame's index and
//! filler bytes derived from the index, so a receiver can tell which frame it got and check it
//! byte for byte by generating it again.
#![allow(dead_code)]

/// What follows the VP8 header in every synthetic frame.
pub const MARKER: [u8; 4] = *b"CRLN";
pub const WIDTH: u16 = 640;
pub const HEIGHT: u16 = 360;

fn header_len(keyframe: bool) -> usize {
    if keyframe { 10 } else { 3 }
}

/// The smallest frame [`frame`] makes.
pub fn min_len(keyframe: bool) -> usize {
    header_len(keyframe) + MARKER.len() + 4
}

/// Frame number `index`, `len` bytes long (at least [`min_len`]).
pub fn frame(index: u32, keyframe: bool, len: usize) -> Vec<u8> {
    let len = len.max(min_len(keyframe));
    let mut out = Vec::with_capacity(len);
    // Frame tag: bit 0 is the inverse keyframe flag, bits 1-3 the version (0), bit 4
    // show_frame, bits 5-23 the size of the first partition (here: everything after the header).
    let first_partition = ((len - header_len(keyframe)) as u32).min((1 << 19) - 1);
    let tag = u32::from(!keyframe) | (1 << 4) | (first_partition << 5);
    out.extend_from_slice(&tag.to_le_bytes()[..3]);
    if keyframe {
        out.extend_from_slice(&[0x9d, 0x01, 0x2a]);
        out.extend_from_slice(&WIDTH.to_le_bytes());
        out.extend_from_slice(&HEIGHT.to_le_bytes());
    }
    out.extend_from_slice(&MARKER);
    out.extend_from_slice(&index.to_be_bytes());
    // Filler that differs from frame to frame and along the frame (xorshift, seeded by index).
    let mut state = (0x9E37_79B9u32 ^ index.wrapping_mul(0x85EB_CA6B)) | 1;
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        out.push(state as u8);
    }
    out
}

/// Whether a frame's tag says keyframe (and, for one, the start code is there).
pub fn is_keyframe(frame: &[u8]) -> bool {
    frame.len() >= 10 && frame[0] & 1 == 0 && frame[3..6] == [0x9d, 0x01, 0x2a]
}

/// The index of a synthetic frame, if it is one and every byte is what [`frame`] makes.
pub fn check(data: &[u8]) -> Option<u32> {
    let keyframe = is_keyframe(data);
    let at = header_len(keyframe);
    if data.len() < min_len(keyframe) || data[at..at + 4] != MARKER {
        return None;
    }
    let index = u32::from_be_bytes(data[at + 4..at + 8].try_into().ok()?);
    (frame(index, keyframe, data.len()) == data).then_some(index)
}

/// Frame sizes for an average `bits_per_second` at `fps` with a keyframe every
/// `keyframe_interval` frames, a keyframe being `keyframe_ratio` times a delta frame:
/// (keyframe bytes, delta frame bytes).
pub fn sizes(
    bits_per_second: u32,
    fps: u32,
    keyframe_interval: u32,
    keyframe_ratio: u32,
) -> (usize, usize) {
    let bytes_per_interval =
        u64::from(bits_per_second) / 8 * u64::from(keyframe_interval) / u64::from(fps.max(1));
    let delta = bytes_per_interval / u64::from(keyframe_interval - 1 + keyframe_ratio);
    let delta = (delta as usize).max(min_len(false));
    ((delta * keyframe_ratio as usize).max(min_len(true)), delta)
}
