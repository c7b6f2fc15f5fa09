//! Fuzz target `request_json`: the body is `harness::request_json::run`, shared with tests/fuzz_regressions.rs.
#![no_main]

#[path = "../harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::request_json::run(data);
});
