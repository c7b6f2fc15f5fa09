//! Fuzz target `sigv4`: the body is `harness::sigv4::run`, shared with tests/fuzz_regressions.rs.
#![no_main]

#[path = "../harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::sigv4::run(data);
});
