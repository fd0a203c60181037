//! What registry notifications ask of a rule: pushed tags waiting ([`Pending`]), waiting until
//! a pushed tag shows its digest, and a run narrowed to the pushed images.
//!
//! The daemon's notification endpoint ([`crate::daemon::events`]) matches events against
//! [`Rule::wants`] and queues them; the rule's task takes the queue and calls
//! [`Rule::settle`] then [`Rule::run_pushed`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::run::{RuleRun, RunContext};
use super::{Rule, RulePlan, TagSelector, Wanted, run_rule};
use crate::digest::Digest;
use crate::reference::Reference;

/// Pushes waiting for a rule's task.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Pushed tags by repository path, each with the digest its latest push put there (as the
    /// event says; empty when it says none).
    pub images: BTreeMap<String, BTreeMap<String, String>>,
    /// The whole rule must run (see [`Wanted::Whole`]).
    pub whole: bool,
}

impl Pending {
    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.images.is_empty() && !self.whole
    }
}

impl Rule {
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
                    // A pushed tag exists at the source: a run over it alone has nothing to
                    // prune, and the scheduled run prunes with the whole selection.
                    prune: Default::default(),
                    ..rule.clone()
                });
            }
        }
        let mut merged: Option<RuleRun> = None;
        for r in &narrowed {
            let run = run_rule(r, ctx, false).await;
            merged = Some(match merged {
                None => run,
                Some(m) => m.merge(run),
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
