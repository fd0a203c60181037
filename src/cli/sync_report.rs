//! What `crossdock sync` prints: per rule, its summary line, then per source and target
//! repository the tags selected and what became of each — compactly, one line per state
//! (copied / would copy / up to date / kept / pruned / would prune), and one line per failed,
//! skipped or refused tag, or tag not pruned (or, in a dry run, prunable by tag only), with
//! its reason.
//!
//! Built from the outcomes as the runs report them ([`crate::rule::RunContext::observer`]),
//! keeping at most [`SAMPLE`] tag names per state and group: a sync of 100,000 tags prints
//! (and holds) a few lines, not 100,000.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use crate::rule::{ImageOutcome, ImageState, Observer, RuleRun, summary_line};

/// Tag names listed per state and group; past it they are counted.
pub(super) const SAMPLE: usize = 12;

/// Tags of one state in one group.
#[derive(Default)]
struct Tags {
    count: u64,
    names: Vec<String>,
}

/// One source repository and one target repository of a rule.
#[derive(Default)]
struct Group {
    /// By state ([`key`]), in the order lines are printed.
    states: BTreeMap<(u8, &'static str), Tags>,
    /// Failed or skipped tags with their reasons (at most [`SAMPLE`]).
    failures: Vec<((u8, &'static str), String, String)>,
    failed: u64,
}

/// A rule's groups, by (source repository, target repository).
type Groups = BTreeMap<(String, String), Group>;

/// The outcomes of every run of one `sync`, grouped for printing.
#[derive(Default, Clone)]
pub(super) struct SyncReport(Arc<Mutex<HashMap<String, Groups>>>);

/// A reference's repository and tag: `localhost:5001/app:v1` → (`localhost:5001/app`, `v1`);
/// no tag (or a list of references, for an index rule's sources) → the whole text and "".
fn split_tag(reference: &str) -> (&str, &str) {
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') && !repo.contains(", ") => (repo, tag),
        _ => (reference, ""),
    }
}

/// Where `state`'s lines come in a group (copies, then skips and failures, then pruning), and
/// its word.
fn key(state: &ImageState) -> (u8, &'static str) {
    let order = match state {
        ImageState::Copied => 0,
        ImageState::WouldCopy => 1,
        ImageState::UpToDate => 2,
        ImageState::Kept => 3,
        ImageState::Skipped(_) => 4,
        ImageState::Failed(_) => 5,
        ImageState::Refused(_) => 6,
        ImageState::Pruned => 7,
        ImageState::WouldPrune => 8,
        ImageState::NotPruned(_) => 9,
        ImageState::Present => 10,
        ImageState::WouldPruneByTagOnly(_) => 11,
    };
    (order, state.display_word())
}

impl SyncReport {
    /// The observer to put in the runs' context.
    pub(super) fn observer(&self) -> Observer {
        let me = self.clone();
        Arc::new(move |rule: &str, o: &ImageOutcome| me.add(rule, o))
    }

    fn add(&self, rule: &str, o: &ImageOutcome) {
        let (source, _) = split_tag(&o.source);
        let (target, tag) = split_tag(&o.target);
        let mut all = self.0.lock().expect("sync report lock");
        let group = all
            .entry(rule.to_string())
            .or_default()
            .entry((source.to_string(), target.to_string()))
            .or_default();
        let tag = if tag.is_empty() {
            o.target.as_str()
        } else {
            tag
        };
        match o.state.reason() {
            Some(reason) => {
                // Not a failure, but said with its reason all the same.
                group.failed += 1;
                if group.failures.len() < SAMPLE {
                    group
                        .failures
                        .push((key(&o.state), tag.to_string(), reason));
                }
            }
            None => {
                let tags = group.states.entry(key(&o.state)).or_default();
                tags.count += 1;
                if tags.names.len() < SAMPLE {
                    tags.names.push(tag.to_string());
                }
            }
        }
    }

    /// The text for `run`: its summary line (which names problems outside any image), then
    /// its groups.
    pub(super) fn render(&self, run: &RuleRun) -> String {
        let mut out = summary_line(run);
        out.push('\n');
        let mut all = self.0.lock().expect("sync report lock");
        for ((source, target), group) in all.remove(&run.rule).unwrap_or_default() {
            let total = group.failed + group.states.values().map(|t| t.count).sum::<u64>();
            let _ = writeln!(
                out,
                "  {source} → {target}: {total} tag{}",
                if total == 1 { "" } else { "s" }
            );
            for ((_, word), mut tags) in group.states {
                tags.names.sort();
                let more = tags.count - tags.names.len() as u64;
                let _ = writeln!(
                    out,
                    "    {:<11} {}{}",
                    word,
                    tags.names.join(", "),
                    if more > 0 {
                        format!(" … and {more} more")
                    } else {
                        String::new()
                    }
                );
            }
            let mut failures = group.failures;
            failures.sort();
            for ((_, word), tag, reason) in &failures {
                let _ = writeln!(out, "    {word:<11} {tag}: {reason}");
            }
            let more = group.failed - failures.len() as u64;
            if more > 0 {
                let _ = writeln!(out, "    {:<11} … and {more} more", "not shown");
            }
        }
        // Problems outside any image are on the summary line already.
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_repository_and_tag() {
        assert_eq!(
            split_tag("localhost:5001/app:v1"),
            ("localhost:5001/app", "v1")
        );
        assert_eq!(split_tag("localhost:5001/app"), ("localhost:5001/app", ""));
        assert_eq!(split_tag("a:1, b:2"), ("a:1, b:2", ""));
    }
}
