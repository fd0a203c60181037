//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) and the inputs of past findings
//! (`fuzz/regressions/<target>/`) through the same checks the cargo-fuzz targets run, on stable
//! Rust and without cargo-fuzz, so that `cargo test` in CI keeps every input the fuzzers found
//! interesting passing. The checks live in `fuzz/checks.rs`, included here and by each fuzz
//! target with `#[path]`; to fuzz for real, see `fuzz/replay.sh` and the README's "Fuzzing".

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

#[path = "../fuzz/checks.rs"]
mod checks;
#[path = "support/config_keys.rs"]
mod config_keys;

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

/// The `config` fuzzer's dictionary names every key the configuration accepts: keys it lacks
/// the fuzzer must spell out byte by byte, and the keys added with the cloud, prune, trust and
/// steady-tag rules went unreached that way until they were listed. The keys are read from the
/// loader itself ([`config_keys`]), so a key added without its dictionary entry fails here.
#[test]
fn config_dictionary_names_every_key() {
    let dict_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/dict/config.dict");
    let text = std::fs::read_to_string(&dict_path).expect("read the config dictionary");
    let dict: std::collections::HashSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix('"')?.strip_suffix('"'))
        .collect();
    let mut missing = Vec::new();
    for table in config_keys::TABLES {
        missing.extend(
            config_keys::accepted_keys(table)
                .into_iter()
                .filter(|k| !dict.contains(k.as_str()))
                .map(|k| format!("{table:?} {k}")),
        );
    }
    assert!(
        missing.is_empty(),
        "add to {}: {missing:?}",
        dict_path.display()
    );
}
