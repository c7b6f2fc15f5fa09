//! Fuzz target `route`: the body is `harness::route::run`, shared with tests/fuzz_regressions.rs.
#![no_main]

#[path = "../harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::route::run(data);
});
