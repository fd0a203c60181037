//! The rules the daemon runs, whatever their kind: a mirror rule (`[[rules]]`, copied by
//! [`run`]) or an index rule (`[[indexes]]`, composed by [`index_run`]).
//!
//! Both kinds share everything around a run — one name space, schedules, shards by name, the
//! per-rule lock, `/status`, metrics, `sync --rule NAME` and registry notifications — so the
//! daemon handles one type and asks it only for its name, its schedule, how to run it, and what
//! a pushed tag asks of it.

use std::collections::BTreeSet;
use std::time::Duration;

pub mod index;
pub mod index_run;
pub mod mirror;
pub mod run;

pub use index::IndexPlan;
pub use mirror::{
    OnConflict, ResolveError, RulePlan, TagFilter, TagSelector, TargetTemplate, TemplateError,
    tag_version,
};
pub use run::{ImageOutcome, RuleRun, RunContext, RunResult, run_rule, summary_line};

use crate::config::{Plan, Shard};
use crate::daemon::events::Pending;
use crate::digest::Digest;
use crate::reference::Reference;
use crate::schedule::Schedule;
use index_run::run_index;

/// A rule of either kind.
#[derive(Debug, Clone)]
pub enum Rule {
    /// Copies tags of source repositories to targets.
    Mirror(RulePlan),
    /// Keeps a multi-platform index composed from per-platform tags.
    Index(IndexPlan),
}

/// What a pushed tag asks of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    /// Copy that one image.
    Image,
    /// Run the whole rule: an index rule, or a mirror rule whose `newest` filter can only
    /// decide over the full tag list (whether a pushed tag is among the newest N depends on
    /// every other tag, and it may push an older one out).
    Whole,
}

impl Rule {
    /// The rule's name, unique across both kinds.
    pub fn name(&self) -> &str {
        match self {
            Rule::Mirror(r) => &r.name,
            Rule::Index(i) => &i.name,
        }
    }

    /// When it runs.
    pub fn schedule(&self) -> &Schedule {
        match self {
            Rule::Mirror(r) => &r.schedule,
            Rule::Index(i) => &i.schedule,
        }
    }

    /// Every rule of `plan` that `shard` owns: mirror rules, then index rules, in file order.
    pub fn for_shard(plan: &Plan, shard: Shard) -> Vec<Rule> {
        Self::all(plan).filter(|r| shard.owns(r.name())).collect()
    }

    /// The rule of either kind named `name`.
    pub fn named(plan: &Plan, name: &str) -> Option<Rule> {
        Self::all(plan).find(|r| r.name() == name)
    }

    /// Every rule's name, for messages.
    pub fn names(plan: &Plan) -> Vec<String> {
        Self::all(plan).map(|r| r.name().to_string()).collect()
    }

    fn all(plan: &Plan) -> impl Iterator<Item = Rule> + '_ {
        plan.rules
            .iter()
            .cloned()
            .map(Rule::Mirror)
            .chain(plan.indexes.iter().cloned().map(Rule::Index))
    }

    /// Runs the whole rule once.
    pub async fn run(&self, ctx: &RunContext, dry_run: bool) -> RuleRun {
        match self {
            Rule::Mirror(r) => run_rule(r, ctx, dry_run).await,
            Rule::Index(i) => run_index(i, ctx, dry_run).await,
        }
    }

    /// What a push of `repository:tag` asks of this rule: nothing when no source of it has that
    /// repository path or its tag selection leaves the tag out.
    pub fn wants(&self, repository: &str, tag: &str) -> Option<Wanted> {
        match self {
            Rule::Index(i) => i.covers(repository, tag).then_some(Wanted::Whole),
            Rule::Mirror(r) => {
                if !r.sources.iter().any(|s| s.repository() == repository) {
                    return None;
                }
                // Without the tag list a filter is applied to the pushed tag alone, which is
                // exact for include, exclude and semver; not for newest (see `Wanted::Whole`).
                if !r.tags.select(&[tag.to_string()]).iter().any(|t| t == tag) {
                    return None;
                }
                match &r.tags.filter {
                    Some(f) if f.newest.is_some() => Some(Wanted::Whole),
                    _ => Some(Wanted::Image),
                }
            }
        }
    }

    /// The sources of this rule a push of `repository:tag` concerns, as tagged references.
    fn pushed_sources(&self, repository: &str, tag: &str) -> Vec<Reference> {
        if self.wants(repository, tag).is_none() {
            return Vec::new();
        }
        let sources = match self {
            Rule::Mirror(r) => &r.sources,
            Rule::Index(i) => &i.sources,
        };
        sources
            .iter()
            .filter(|s| s.repository() == repository)
            .filter(|s| matches!(self, Rule::Mirror(_)) || s.tag() == Some(tag))
            .filter_map(|s| s.with_tag(tag).ok())
            .collect()
    }

    /// Waits (a few seconds at most) until each pushed tag of the rule's sources points at the
    /// digest its push event named.
    ///
    /// Registry quirk (CNCF distribution 2.8): a manifest push event is queued for delivery
    /// when the manifest is stored, before the tag is moved to it, so a daemon that answers at
    /// once can read the tag's previous digest — or none, for a new tag — and sync nothing.
    /// A source that never shows the digest (a push to another registry with the same path,
    /// or a tag pushed again since) is given up on after the last attempt; the run then syncs
    /// whatever the tag points at.
    pub async fn settle(&self, pending: &Pending, ctx: &RunContext) {
        let mut waits = Vec::new();
        for (repository, tags) in &pending.images {
            for (tag, digest) in tags {
                let Ok(digest) = digest.parse::<Digest>() else {
                    continue;
                };
                for source in self.pushed_sources(repository, tag) {
                    waits.push(wait_for_tag(ctx, source, digest.clone()));
                }
            }
        }
        futures_util::future::join_all(waits).await;
    }

    /// Syncs what pushes asked for: the pushed images of a mirror rule, each through the
    /// rule's own copy path (the rule narrowed to that source and tag list), or the whole rule.
    /// Pushes the rule no longer wants (it was reloaded since) are dropped; `None` when
    /// nothing is left to do.
    pub async fn run_pushed(&self, pending: Pending, ctx: &RunContext) -> Option<RuleRun> {
        let Rule::Mirror(rule) = self else {
            return Some(self.run(ctx, false).await);
        };
        if pending.whole {
            return Some(self.run(ctx, false).await);
        }
        let mut narrowed = Vec::new();
        for (repository, tags) in &pending.images {
            let mut list = Vec::new();
            for tag in tags.keys() {
                match self.wants(repository, tag) {
                    Some(Wanted::Whole) => return Some(self.run(ctx, false).await),
                    Some(Wanted::Image) => list.push(tag.clone()),
                    None => {}
                }
            }
            if list.is_empty() {
                continue;
            }
            for source in rule.sources.iter().filter(|s| s.repository() == repository) {
                narrowed.push(RulePlan {
                    sources: vec![source.clone()],
                    tags: TagSelector {
                        list: list.clone(),
                        filter: None,
                    },
                    ..rule.clone()
                });
            }
        }
        let mut merged: Option<RuleRun> = None;
        for r in &narrowed {
            let run = run_rule(r, ctx, false).await;
            merged = Some(match merged {
                None => run,
                Some(m) => merge(m, run),
            });
        }
        merged
    }
}

/// HEADs `source` until it points at `digest`: right away, then after 50 ms, doubling, about
/// 3 s in all. Errors end the wait (the run that follows reports them).
async fn wait_for_tag(ctx: &RunContext, source: Reference, digest: Digest) {
    const ATTEMPTS: u32 = 7;
    let Ok(transport) = ctx.connector.get(source.registry()) else {
        return;
    };
    let tag = source.manifest_reference();
    let mut delay = Duration::from_millis(50);
    for attempt in 1..=ATTEMPTS {
        match transport.manifest_head(source.repository(), &tag).await {
            Ok(Some(h)) if h.digest == digest => return,
            Err(_) => return,
            _ if attempt == ATTEMPTS => {}
            _ => {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
    tracing::debug!(%source, %digest, "the pushed tag does not point at the pushed digest; syncing what it points at");
}

/// Two runs of one rule as one: everything they did, the worse result.
fn merge(mut a: RuleRun, b: RuleRun) -> RuleRun {
    let rank = |r: RunResult| match r {
        RunResult::Ok => 0,
        RunResult::Failed => 1,
        RunResult::Timeout => 2,
    };
    if rank(b.result) > rank(a.result) {
        a.result = b.result;
    }
    a.seconds += b.seconds;
    a.images.extend(b.images);
    a.errors.extend(b.errors);
    a
}

/// The repositories and tags a set of pending pushes names, for logs.
pub(crate) fn describe(pending: &Pending) -> String {
    let images: BTreeSet<String> = pending
        .images
        .iter()
        .flat_map(|(repo, tags)| tags.keys().map(move |t| format!("{repo}:{t}")))
        .collect();
    let list = images.into_iter().collect::<Vec<_>>().join(", ");
    if pending.whole {
        format!("{list} (the whole rule)")
    } else {
        list
    }
}
