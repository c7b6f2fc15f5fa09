//! The bodies of the fuzz targets, shared with `tests/fuzz_regressions.rs` so that every saved
//! input is replayed through exactly the code the fuzzer ran.
//!
//! Each `run` takes the raw fuzz input, drives the real parsing and validation code, panics when an
//! invariant breaks, and returns a short description of the outcome (`ok ...` or `err ...`) that a
//! regression file may pin with a `.expect` file beside it.
//!
//! The inputs are plain bytes split by hand (no `arbitrary`), so seeds are readable text and the
//! regression test needs no dependency the main crate does not already have.

#![allow(dead_code)]

pub mod request_json;
pub mod route;
pub mod signaling_frame;
pub mod sigv4;

/// Splits at the first occurrence of `separator`.
fn split_once<'a>(data: &'a [u8], separator: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    let at = data
        .windows(separator.len())
        .position(|window| window == separator)?;
    Some((&data[..at], &data[at + separator.len()..]))
}

/// Whether every byte is printable ASCII or a space.
fn is_printable_ascii(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b))
}
