//! The keys the configuration loader accepts, table by table, read from the loader itself: the
//! list of valid keys its error gives for an unknown one. Tests hold the fuzzing dictionary and
//! the configuration reference (`config.example.toml`) against it, so that a new key left out
//! of either fails CI instead of going unnoticed. Included with `#[path]` by
//! `tests/fuzz_corpus.rs`, which does not take in the rest of `support`.

use std::path::Path;

/// Every table of the configuration, as its TOML header (`""`: the top level); the registry is
/// `localhost:5000`.
pub(crate) const TABLES: [&str; 11] = [
    "",
    "[server]",
    "[daemon]",
    "[defaults]",
    "[registries.\"localhost:5000\"]",
    "[registries.\"localhost:5000\".ecr]",
    "[registries.\"localhost:5000\".acr]",
    "[registries.\"localhost:5000\".gcp]",
    "[[rules]]",
    "[rules.tags]",
    "[[indexes]]",
];

/// The keys `table` (one of [`TABLES`]) accepts, from the "expected one of" list that comes with
/// an unknown key.
pub(crate) fn accepted_keys(table: &str) -> Vec<String> {
    // A `[rules.tags]` table needs its rule first.
    let parent = if table == "[rules.tags]" {
        "[[rules]]\n"
    } else {
        ""
    };
    let text = format!("{parent}{table}\nzz_not_a_key = 1\n");
    let errors = crossdock::config::load_str(Path::new("/x/c.toml"), &text, [])
        .expect_err("an unknown key is refused");
    let message = errors.to_string();
    let (_, expected) = message
        .split_once("expected one of")
        .unwrap_or_else(|| panic!("{table:?}: no list of keys in {message:?}"));
    let line = expected.lines().next().unwrap_or_default();
    let keys: Vec<String> = line
        .split('`')
        .skip(1)
        .step_by(2)
        .map(String::from)
        .collect();
    assert!(!keys.is_empty(), "{table:?}: no keys in {message:?}");
    keys
}
