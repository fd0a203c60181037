//! `config.example.toml` is the configuration reference (the README says so): every key the
//! loader accepts is written out there, set or commented, under its own table.

use std::collections::HashSet;
use std::path::Path;

use crate::support::config_keys;

/// A table header (`[x]`, `[[x]]`, or one commented out) as its dotted name, the registry
/// named `localhost:5000`; `None` for any other line.
fn header(line: &str) -> Option<String> {
    let line = line.trim_start_matches(['#', ' ']);
    let line = line.split(" #").next().unwrap_or_default().trim_end();
    let name = line.strip_prefix('[')?.strip_suffix(']')?;
    let name = name.trim_start_matches('[').trim_end_matches(']');
    // Any quoted registry name stands for every registry.
    let mut parts = name.split('"');
    let mut out = parts.next()?.to_string();
    if parts.next().is_some() {
        out.push_str("\"localhost:5000\"");
        out.push_str(parts.next()?);
    }
    Some(out)
}

/// A `key = ...` line, set or commented out, as its key.
fn assigned(line: &str) -> Option<&str> {
    let line = line.trim_start_matches(['#', ' ']);
    let (key, _) = line.split_once('=')?;
    let key = key.trim_end();
    let bare = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    bare.then_some(key)
}

#[test]
fn the_reference_names_every_key_under_its_table() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    let text = std::fs::read_to_string(&path).expect("read config.example.toml");
    // (table, key) for every key set or shown; a table header documents each of its parts as
    // a key of the table before it (`[rules.tags]`: `rules` at the top, `tags` in `rules`).
    let mut documented = HashSet::new();
    let mut table = String::new();
    for line in text.lines() {
        if let Some(h) = header(line) {
            let parts: Vec<&str> = h.split('.').collect();
            for (i, part) in parts.iter().enumerate() {
                documented.insert((parts[..i].join("."), part.to_string()));
            }
            table = h;
        } else if let Some(key) = assigned(line) {
            documented.insert((table.clone(), key.to_string()));
        }
    }
    let mut missing = Vec::new();
    for t in config_keys::TABLES {
        let name = header(t).unwrap_or_default();
        for key in config_keys::accepted_keys(t) {
            if !documented.contains(&(name.clone(), key.clone())) {
                missing.push(format!("{t} {key}"));
            }
        }
    }
    assert!(missing.is_empty(), "not in {}: {missing:?}", path.display());
}
