//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) and the inputs of past findings
//! (`fuzz/regressions/<target>/`) through the same checks the cargo-fuzz targets run, on stable
//! Rust and without cargo-fuzz, so that `cargo test` in CI keeps every input the fuzzers found
//! interesting passing. The checks live in `fuzz/checks.rs`, included here and by each fuzz
//! target with `#[path]`; to fuzz for real, see `fuzz/replay.sh` and the README's "Fuzzing".

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

#[path = "../fuzz/checks.rs"]
mod checks;

/// Runs `check` on every file of the target's corpus and regressions, and reports every file
/// that fails, not only the first.
fn replay(target: &str, check: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
            continue;
        };
        files.extend(entries.map(|e| e.expect("read corpus folder").path()));
    }
    files.sort();
    // The seeds alone are a few dozen per target: an empty folder means a lost corpus.
    assert!(files.len() >= 10, "{target}: only {} inputs", files.len());
    let failed: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let data = std::fs::read(f).expect("read corpus file");
            catch_unwind(AssertUnwindSafe(|| check(&data)))
                .err()
                .map(|_| f.display().to_string())
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{target}: {} of {} inputs fail (reproduce with `RUSTC_BOOTSTRAP=1 cargo fuzz run \
         {target} FILE`):\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

#[test]
fn reference_corpus() {
    replay("reference", checks::reference);
}

#[test]
fn manifest_corpus() {
    replay("manifest", checks::manifest);
}

#[test]
fn challenge_corpus() {
    replay("challenge", checks::challenge);
}

#[test]
fn config_corpus() {
    replay("config", checks::config);
}
