//! A rule run in words: the one line that logs, `sync` and the status page say of a run.
//!
//! Kept apart from [`super::run`] (what a run records) so that every place that speaks of a
//! run's pruned tags uses the same words.

use super::run::{Counts, RuleRun};

/// A short one-line account of a run, for logs and `sync` output. A run that could not even
/// start on a source says so, and never passes for "0 failed".
pub fn summary_line(run: &RuleRun) -> String {
    let c = &run.counts;
    let mut parts = Vec::new();
    if run.dry_run {
        parts.push(format!("{} would copy", c.would_copy));
    } else {
        parts.push(format!("{} copied", c.copied));
    }
    parts.push(format!("{} up to date", c.up_to_date));
    parts.push(format!("{} kept", c.kept));
    parts.push(format!("{} failed", c.failed));
    if c.skipped > 0 {
        parts.push(format!("{} skipped (rate limit reserve)", c.skipped));
    }
    if c.refused > 0 {
        parts.push(format!("{} refused (no valid signature)", c.refused));
    }
    parts.extend(prune_words(c));
    if c.present > 0 {
        parts.push(format!(
            "{} present (immutable, listed at the target)",
            c.present
        ));
    }
    let images = parts.join(", ");
    let head = format!(
        "rule {}: {} in {:.1}s",
        run.rule,
        run.result.as_str(),
        run.seconds
    );
    match run.errors.as_slice() {
        [] => format!("{head} — {images}"),
        [only] if c.total() == 0 => format!("{head} — {only} (no image tried)"),
        errors => format!(
            "{head} — {images}; {} problem{} outside any image: {}",
            errors.len(),
            if errors.len() == 1 { "" } else { "s" },
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ),
    }
}

/// What pruning did (or a dry run found it would do), one phrase per state that happened:
/// `1 pruned`, `2 would prune`, `1 would prune only where the registry deletes by tag`, `1 not
/// removable alone`.
pub fn prune_words(c: &Counts) -> impl Iterator<Item = String> {
    [
        (c.pruned, "pruned"),
        (c.would_prune, "would prune"),
        (
            c.would_prune_by_tag,
            "would prune only where the registry deletes by tag",
        ),
        (c.not_pruned, "not removable alone"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, words)| format!("{n} {words}"))
}
