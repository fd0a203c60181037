//! The rules the daemon runs, whatever their kind: a mirror rule (`[[rules]]`, copied by
//! [`mirror_run`]) or an index rule (`[[indexes]]`, composed by [`index_run`]).
//!
//! Both kinds share everything around a run — one name space, schedules, shards by name, the
//! per-rule lock, `/status`, metrics, `sync --rule NAME` and registry notifications — so the
//! daemon handles one type and asks it only for its name, its schedule, how to run it, and what
//! a pushed tag asks of it.
//!
//! Layout: the plans ([`RulePlan`] with [`select`] and [`template`], [`IndexPlan`]) are plain
//! data that [`crate::config`] builds; [`run`] holds what every run shares (context, image
//! states, the tally and its time limit); [`mirror_run`] and [`index_run`] run each kind;
//! [`pushed`] is what registry notifications ask of a rule; `immutable` (tags a target's listing
//! settles) and [`confirmed`] (the daemon's memory of target digests) keep a run that changes
//! nothing cheap (issue 18). Nothing here knows the daemon or the
//! configuration file: the dependencies point down, to the engine and the transport.

pub mod confirmed;
mod immutable;
pub mod index;
pub mod index_run;
pub mod mirror;
pub mod mirror_run;
pub mod prune;
mod prune_overlap;
mod prune_repo;
mod prune_run;
pub mod pushed;
pub mod run;
pub mod select;
mod summary;
pub mod template;

pub use confirmed::Confirmed;
pub use index::IndexPlan;
pub use index_run::run_index;
pub use mirror::{OnConflict, ResolveError, RulePlan, Selected};
pub use mirror_run::run_rule;
pub use prune_overlap::{SharedTarget, shared_targets};
pub use pushed::Pending;
pub use run::{
    Counts, Failure, ImageOutcome, ImageState, Observer, Reserve, RuleRun, RunContext, RunError,
    RunResult, Tally,
};
pub use select::{TagFilter, TagSelector, tag_version};
pub use summary::{prune_words, summary_line};
pub use template::{TargetTemplate, TemplateError};

use crate::schedule::Schedule;

/// A rule of either kind.
// A process holds a handful of rules: the variants' sizes do not matter, and boxing the plan
// would touch every caller (and the other branches editing rule keys) for nothing.
#[allow(clippy::large_enum_variant)]
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

    /// First wait before a failed run is tried again; zero: no retries.
    pub fn retry_backoff(&self) -> std::time::Duration {
        match self {
            Rule::Mirror(r) => r.retry_backoff,
            Rule::Index(i) => i.retry_backoff,
        }
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
}
