//! cargo-fuzz target `manifest`: feeds libFuzzer's inputs to the shared check in `fuzz/checks.rs`,
//! which the main package's `tests/fuzz_corpus.rs` replays over the committed corpus in CI.
#![no_main]

#[allow(dead_code)] // each target uses one of the checks
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::manifest(data));
