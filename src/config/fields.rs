//! Field readers that every part of validation shares: durations and rule names.
//!
//! A module of its own so that the validators of mirror rules ([`super::validate`]) and of
//! index rules ([`super::indexes`]) both depend on it, and not on each other.

use std::time::Duration;

use super::error::{KeyPath, Problems};

/// Longest rule name: it is a metrics label and part of environment variable names.
pub(super) const MAX_RULE_NAME: usize = 63;

/// A duration as written (`"30s"`, `"1h 30m"`), `default` when absent or invalid (the
/// problem then recorded at `path`).
pub(super) fn duration(
    text: Option<&str>,
    default: Duration,
    path: &KeyPath,
    problems: &mut Problems<'_>,
) -> Duration {
    let Some(t) = text else { return default };
    match humantime::parse_duration(t) {
        Ok(d) => d,
        Err(e) => {
            problems.add(
                path,
                format!("invalid duration {t:?}: {e} (write e.g. \"30s\", \"15m\", \"1h 30m\")"),
            );
            default
        }
    }
}

/// Whether `n` is a valid rule name (of either kind).
pub(super) fn valid_rule_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_RULE_NAME
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
}

/// A rule's `name` (of either kind) checked: present, valid, and not taken — `taken` gives the
/// message when another rule has it. `None` when a problem was recorded.
pub(super) fn rule_name(
    raw: Option<&String>,
    path: &KeyPath,
    missing: &str,
    taken: impl FnOnce(&str) -> Option<String>,
    problems: &mut Problems<'_>,
) -> Option<String> {
    let Some(n) = raw else {
        problems.missing(path, missing);
        return None;
    };
    if !valid_rule_name(n) {
        problems.add(
            path,
            format!(
                "invalid rule name {n:?}: use letters, digits, '-', '_', '.' \
                 (starting with a letter or digit, at most {MAX_RULE_NAME})"
            ),
        );
        return None;
    }
    if let Some(message) = taken(n) {
        problems.add(path, message);
        return None;
    }
    Some(n.clone())
}
