//! Fuzz target `signaling_frame`: the body is `harness::signaling_frame::run`, shared with tests/fuzz_regressions.rs.
#![no_main]

#[path = "../harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::signaling_frame::run(data);
});
