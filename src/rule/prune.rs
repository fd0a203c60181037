//! Prune planning: which target tags a rule deletes because its source no longer has them.
//!
//! Pure logic, no network: [`plan`] takes what a run learned (the source's tag list, the
//! target's, whether every copy succeeded) and the rule's settings, and answers the tags to
//! delete or a typed [`Refusal`]. Deleting them is the caller's business.
//!
//! Guard rails, in order: nothing is pruned when the source listing failed or came back empty
//! (an upstream outage must not wipe a mirror), when any copy of the run failed, or when more
//! tags would go than the limit allows (then none go). Only tags the rule's tag selection would
//! take are candidates; signature and attestation tags (`sha256-<hex>.sig/.att/.sbom`) never
//! are (they go with their digest), nor are tags written by `backup_tag`, unless
//! `prune_backups` is set and the date in the tag is older than that.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use regex::Regex;

use super::select::TagSelector;

/// How many tags one run may delete in one target repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PruneLimit {
    /// At most this many.
    Count(usize),
    /// At most this percentage (rounded down) of the target's tags the selection takes.
    Percent(u8),
}

impl Default for PruneLimit {
    fn default() -> Self {
        PruneLimit::Count(10)
    }
}

impl PruneLimit {
    /// Reads `10` or `"10%"` (as written in the configuration).
    pub fn parse(text: &str) -> Result<PruneLimit, String> {
        let bad = || format!("{text:?} is neither a count (10) nor a percentage (\"10%\")");
        match text.trim().strip_suffix('%') {
            Some(p) => match p.trim().parse::<u8>() {
                Ok(p) if p <= 100 => Ok(PruneLimit::Percent(p)),
                _ => Err(bad()),
            },
            None => text
                .trim()
                .parse()
                .map(PruneLimit::Count)
                .map_err(|_| bad()),
        }
    }

    /// The number of tags allowed out of `selected` target tags.
    pub fn allowed(self, selected: usize) -> usize {
        match self {
            PruneLimit::Count(n) => n,
            PruneLimit::Percent(p) => selected * usize::from(p) / 100,
        }
    }
}

/// A rule's prune settings.
#[derive(Debug, Clone, Default)]
pub struct PrunePolicy {
    /// Whether the rule prunes (`prune = true`, or `sync --prune`).
    pub enabled: bool,
    /// The most tags one run deletes per target repository.
    pub limit: PruneLimit,
    /// Backup tags older than this (by the date in the tag) are pruned too; `None`: never.
    pub backups: Option<Duration>,
}

/// Why nothing was pruned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The source's tags could not be listed.
    #[error("not pruned: the source's tags could not be listed")]
    ListingFailed,
    /// The source listed no tags at all (an outage looks like this).
    #[error("not pruned: the source listed no tags ({would} tags would have been deleted)")]
    SourceEmpty {
        /// How many would have gone.
        would: usize,
    },
    /// A copy of the run failed (or a problem outside any copy).
    #[error(
        "not pruned: this run had failures ({failed}: failed copies and problems outside any \
         image); {would} tags would have been deleted"
    )]
    CopiesFailed {
        /// How many.
        failed: usize,
        /// How many would have gone.
        would: usize,
    },
    /// More tags would have gone than the limit allows.
    #[error("not pruned: {would} tags would have been deleted, more than the limit of {limit}")]
    OverLimit {
        /// How many would have gone.
        would: usize,
        /// The limit that applied.
        limit: usize,
    },
}

/// What [`plan`] needs to know; `T` is the target's tags (a list, or a set this run kept).
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a, T> {
    /// The source's tag list; `None` when listing it failed.
    pub source_tags: Option<&'a [String]>,
    /// The target repository's tags: listed now, or listed by this run before its copies.
    pub target_tags: T,
    /// Tags the rule selected that `target_tags` does not hold because it predates this run's
    /// copies: they count among the selected target tags (a percentage limit), and are never
    /// candidates themselves (the source listed them).
    pub unlisted_selected: usize,
    /// The rule's tag selection.
    pub selector: &'a TagSelector,
    /// The rule's `backup_tag` template.
    pub backup_tag: Option<&'a str>,
    /// How many copies of the run failed.
    pub failed_copies: usize,
    /// Now, for the age of backup tags.
    pub now: DateTime<Utc>,
}

/// Whether `tag` is a signature, attestation or SBOM tag (`sha256-<64 hex>.sig/.att/.sbom`,
/// cosign's) or a referrers fallback tag (`sha256-<64 hex>`, OCI 1.1's tag schema); the
/// digest it belongs to (`sha256:<hex>`) if so.
pub fn artifact_subject(tag: &str) -> Option<String> {
    let rest = tag.strip_prefix("sha256-")?;
    let (hex, suffix) = rest.split_once('.').unwrap_or((rest, ""));
    let hex_ok = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    (hex_ok && matches!(suffix, "" | "sig" | "att" | "sbom")).then(|| format!("sha256:{hex}"))
}

/// The tags a `backup_tag` template writes, recognized back, with the date they carry.
#[derive(Debug, Clone)]
pub struct BackupPattern {
    regex: Regex,
}

impl BackupPattern {
    /// Compiles `template` (`{tag}`, `{date}`, `{datetime}`, `{digest}`) into a matcher.
    pub fn new(template: &str) -> BackupPattern {
        let mut pattern = String::from("^");
        let mut rest = template;
        while let Some(start) = rest.find('{') {
            pattern.push_str(&regex::escape(&rest[..start]));
            let Some(len) = rest[start..].find('}') else {
                break;
            };
            pattern.push_str(match &rest[start + 1..start + len] {
                "tag" => ".+?",
                "date" => r"(?P<date>\d{8})",
                "datetime" => r"(?P<datetime>\d{14})",
                "digest" => "[0-9a-f]{12}",
                _ => ".*?",
            });
            rest = &rest[start + len + 1..];
        }
        pattern.push_str(&regex::escape(rest));
        pattern.push('$');
        BackupPattern {
            regex: Regex::new(&pattern).expect("escaped template is a valid regex"),
        }
    }

    /// `None`: not a backup tag; `Some(None)`: one without a date; else its date (UTC midnight).
    pub fn date_of(&self, tag: &str) -> Option<Option<DateTime<Utc>>> {
        let caps = self.regex.captures(tag)?;
        let day = caps
            .name("date")
            .or(caps.name("datetime"))
            .and_then(|m| NaiveDate::parse_from_str(&m.as_str()[..8], "%Y%m%d").ok());
        Some(day.map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc()))
    }
}

/// Whether the rule's selection would take `tag` (its filter applied to the tag alone, as a
/// pushed tag is judged: exact for include, exclude and semver; `newest` counts as taking it).
fn selection_takes(selector: &TagSelector, tag: &str) -> bool {
    if selector.list.iter().any(|t| t == tag) {
        return true;
    }
    let Some(filter) = &selector.filter else {
        return false;
    };
    let mut alone = filter.clone();
    alone.newest = alone.newest.map(|_| 1);
    let one = TagSelector {
        list: Vec::new(),
        filter: Some(alone),
    };
    !one.select(std::slice::from_ref(&tag.to_string()))
        .is_empty()
}

/// The target tags to delete, sorted, or why none are. The guard rails bite only when
/// something would go: a run with nothing to prune is never failed by them.
pub fn plan<'t, T: IntoIterator<Item = &'t String>>(
    input: PlanInput<'_, T>,
    policy: &PrunePolicy,
) -> Result<Vec<String>, Refusal> {
    let listed = input.source_tags.ok_or(Refusal::ListingFailed)?;
    let source: HashSet<&str> = listed.iter().map(String::as_str).collect();
    let backups = input.backup_tag.map(BackupPattern::new);
    let cutoff = policy
        .backups
        .and_then(|age| chrono::Duration::from_std(age).ok())
        .map(|age| input.now - age);
    let mut selected = input.unlisted_selected;
    let mut doomed = Vec::new();
    for tag in input.target_tags {
        if artifact_subject(tag).is_some() {
            continue;
        }
        let backup_date = backups.as_ref().and_then(|b| b.date_of(tag));
        if let Some(date) = backup_date {
            // A backup tag goes only when old enough by its own date (never when it has none).
            if let (Some(date), Some(cutoff)) = (date, cutoff)
                && date < cutoff
            {
                doomed.push(tag.clone());
            }
            continue;
        }
        if !selection_takes(input.selector, tag) {
            continue;
        }
        selected += 1;
        if !source.contains(tag.as_str()) {
            doomed.push(tag.clone());
        }
    }
    doomed.sort_unstable();
    let would = doomed.len();
    if would == 0 {
        return Ok(doomed);
    }
    if source.is_empty() {
        return Err(Refusal::SourceEmpty { would });
    }
    if input.failed_copies > 0 {
        return Err(Refusal::CopiesFailed {
            failed: input.failed_copies,
            would,
        });
    }
    let limit = policy.limit.allowed(selected);
    if would > limit {
        return Err(Refusal::OverLimit { would, limit });
    }
    Ok(doomed)
}

#[cfg(test)]
mod tests;
