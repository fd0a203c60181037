//! The one check across rules that pruning needs: a pruning rule must not share its target
//! repository with a rule (or index rule) that fills it from another source.
//!
//! Pruning deletes the selected target tags its own source does not list. Another rule's tags,
//! copied from another source, are among them: they would be deleted on every run and copied
//! back on the next, and in between the mirror would lack them. Rules that share both the
//! source and the target agree on what is gone, and are let be. The configuration refuses
//! `prune = true` rules that overlap; `sync --prune` asks the same of every rule it prunes.
//! Pure logic over the plans: no network.

use std::collections::HashMap;

use super::{IndexPlan, RulePlan};
use crate::reference::Reference;

/// A pruning rule's target repository that another rule fills from another source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedTarget {
    /// The pruning rule, as its position in the rules given.
    pub rule: usize,
    /// The pruning rule's name.
    pub name: String,
    /// The pruning rule's source that lands on `target`.
    pub source: Reference,
    /// The target repository shared.
    pub target: Reference,
    /// The other writer: `rule "NAME"` or `index rule "NAME"`.
    pub other: String,
    /// Where the other writer copies from: its source repository, or an index's images.
    pub from: String,
}

impl SharedTarget {
    /// Says what is wrong; `fix` is the way out for the reader (a config key, a flag).
    pub fn message(&self, fix: &str) -> String {
        format!(
            "rule {:?} prunes {}, which {} also fills (from {}): pruning would delete the tags \
             {} does not list, {}'s among them, on every run; {fix}",
            self.name, self.target, self.other, self.from, self.source, self.other
        )
    }
}

/// Every target of a rule in `rules` for which `prunes` holds that another rule of `rules` or
/// an index of `indexes` also fills from another source; once per rule and target.
pub fn shared_targets(
    rules: &[&RulePlan],
    indexes: &[IndexPlan],
    prunes: &dyn Fn(&RulePlan) -> bool,
) -> Vec<SharedTarget> {
    // Who fills each target repository: the writer's description and its source repository.
    let mut writers: HashMap<Reference, Vec<(String, Option<Reference>)>> = HashMap::new();
    for rule in rules {
        for (source, target) in landings(rule) {
            let who = format!("rule {:?}", rule.name);
            writers.entry(target).or_default().push((who, Some(source)));
        }
    }
    for index in indexes {
        let who = format!("index rule {:?}", index.name);
        let target = index.target.repository_only();
        writers.entry(target).or_default().push((who, None));
    }
    let mut found = Vec::new();
    for (i, rule) in rules.iter().enumerate().filter(|(_, r)| prunes(r)) {
        let me = format!("rule {:?}", rule.name);
        for (source, target) in landings(rule) {
            let other = writers
                .get(&target)
                .into_iter()
                .flatten()
                .find(|(who, from)| *who != me && from.as_ref().is_none_or(|f| *f != source));
            if let Some((who, from)) = other {
                found.push(SharedTarget {
                    rule: i,
                    name: rule.name.clone(),
                    from: from
                        .as_ref()
                        .map_or("the index's images".to_string(), Reference::to_string),
                    source,
                    target,
                    other: who.clone(),
                });
            }
        }
    }
    found
}

/// Each source repository of `rule` with each target repository it lands on.
fn landings(rule: &RulePlan) -> Vec<(Reference, Reference)> {
    let mut out = Vec::new();
    for source in &rule.sources {
        for target in rule.target_repositories(source).unwrap_or_default() {
            out.push((source.repository_only(), target));
        }
    }
    out
}
