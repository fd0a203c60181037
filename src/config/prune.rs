//! The rule keys of issue 16 — `prune`, `prune_limit` and `prune_backups` — checked and
//! resolved into a [`PrunePolicy`] apart from the rest of a rule, so that every bad key is
//! reported even when the rest of the rule is wrong too; and, once every rule is known, the
//! check across rules that pruning needs ([`shared_targets`]).

use super::error::{KeyPath, Problems};
use super::raw::RawRule;
use crate::rule::prune::{PruneLimit, PrunePolicy};
use crate::rule::{IndexPlan, RulePlan};

/// The prune settings of rule `index` as written; problems are recorded at their key paths,
/// naming the rule.
pub(super) fn policy(index: usize, raw: &RawRule, problems: &mut Problems<'_>) -> PrunePolicy {
    let path = KeyPath::root().key("rules").index(index);
    let rule = match &raw.name {
        Some(n) => format!("rule {n:?}"),
        None => format!("rules[{index}]"),
    };
    let mut policy = PrunePolicy {
        enabled: raw.prune.unwrap_or(false),
        ..PrunePolicy::default()
    };
    if let Some(limit) = &raw.prune_limit {
        match PruneLimit::parse(&limit.0) {
            Ok(PruneLimit::Count(0) | PruneLimit::Percent(0)) => problems.add(
                &path.key("prune_limit"),
                format!(
                    "{rule}: a limit of 0 lets no tag be pruned; give at least 1 (or \"1%\"), \
                     or set prune = false"
                ),
            ),
            Ok(l) => policy.limit = l,
            Err(e) => problems.add(&path.key("prune_limit"), format!("{rule}: {e}")),
        }
    }
    if let Some(age) = &raw.prune_backups {
        let key = path.key("prune_backups");
        match humantime::parse_duration(age) {
            Ok(d) if d.is_zero() => problems.add(
                &key,
                format!("{rule}: an age of 0 would prune every backup tag; give e.g. \"30d\""),
            ),
            Ok(d) => policy.backups = Some(d),
            Err(e) => problems.add(
                &key,
                format!("{rule}: invalid age {age:?}: {e} (write e.g. \"30d\", \"12h\")"),
            ),
        }
    }
    policy
}

/// Puts `policy` into the rule's plan, once its `backup_tag` (its own or `[defaults]`'s) is
/// known: `prune_backups` without one has no backup tags to recognize.
pub(super) fn apply(
    plan: &mut RulePlan,
    policy: PrunePolicy,
    index: usize,
    problems: &mut Problems<'_>,
) {
    let key = KeyPath::root()
        .key("rules")
        .index(index)
        .key("prune_backups");
    let dated = |t: &str| t.contains("{date}") || t.contains("{datetime}");
    match &plan.backup_tag {
        _ if policy.backups.is_none() => {}
        Some(t) if !dated(t) => problems.add(
            &key,
            format!(
                "rule {:?}: its backup_tag {t:?} puts no date in the tag ({{date}} or \
                 {{datetime}}), so no backup tag is ever old enough; add one or remove \
                 prune_backups",
                plan.name
            ),
        ),
        Some(_) => {}
        None => problems.add(
            &key,
            format!(
                "rule {:?}: prune_backups needs a backup_tag (the rule's or [defaults]'), which \
                 names the backup tags and carries their date; set backup_tag (e.g. \
                 \"{{tag}}-backup-{{date}}\") or remove prune_backups",
                plan.name
            ),
        ),
    }
    plan.prune = policy;
}

/// Refuses each `prune = true` rule whose target repository another rule (or index rule) fills
/// from another source (see [`crate::rule::shared_targets`]). `rules` pairs each plan with its
/// position in the file.
pub(super) fn shared_targets(
    rules: &[(usize, &RulePlan)],
    indexes: &[IndexPlan],
    problems: &mut Problems<'_>,
) {
    let plans: Vec<&RulePlan> = rules.iter().map(|(_, r)| *r).collect();
    for shared in crate::rule::shared_targets(&plans, indexes, &|r| r.prune.enabled) {
        let at = rules[shared.rule].0;
        problems.add(
            &KeyPath::root().key("rules").index(at).key("prune"),
            shared.message("give each rule its own target repository, or set prune = false"),
        );
    }
}
