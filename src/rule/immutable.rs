//! Immutable tags cost a listing (issue 18, item 1): a tag that never changes once written —
//! every tag of an `on_conflict = "keep"` rule, and those matching its `immutable_tags` — is
//! done when the target already lists it, with no HEAD at either side. A run that changes
//! nothing then costs the source's tag list and each target's, page by page.
//!
//! Each target repository of a source is listed once per run, before that source's copies
//! start. A tag deleted at the target is absent from the list, so it is copied again. A target
//! repository that does not exist yet lists no tags. A listing that fails for any other reason
//! is not trusted either way: that target's tags are checked one by one, as without this.
//!
//! What is given up, knowingly: a tag found in the list is not read, so a referrer (a
//! signature, an SBOM) attached at the source after the tag was copied does not follow it.
//!
//! A rule that also prunes plans its pruning from these lists ([`Listed`]) rather than listing
//! each target again after the copies: the tags the run wrote since are the selected tags the
//! list lacks, which are counted, and never pruned (the source listed them). Whatever deletes
//! by digest, or removes a pruned image's signatures, lists the target again first (see
//! [`super::prune_run`]): a tag written meanwhile must keep its image.

use std::collections::HashSet;
use std::sync::Arc;

use futures_util::future::join_all;

use super::mirror::{OnConflict, RulePlan};
use super::run::RunContext;
use crate::copy::error_chain;
use crate::reference::Reference;

/// The tag lists of one source's target repositories, for the rule's immutable tags.
pub(crate) struct TargetTags {
    /// Per target repository, in target order: its tags, or `None` when it was not listed (the
    /// rule has no immutable tags, or the listing failed).
    lists: Vec<Option<Arc<HashSet<String>>>>,
    /// Every tag is immutable (`on_conflict = "keep"`).
    keep: bool,
    /// Tags matching this are (`immutable_tags`).
    pattern: Option<regex::Regex>,
}

impl TargetTags {
    /// Lists each of `repositories` (the targets of one source) when `rule` has immutable tags.
    pub(crate) async fn list(
        rule: &RulePlan,
        ctx: &RunContext,
        repositories: &[Reference],
    ) -> TargetTags {
        let keep = rule.on_conflict == OnConflict::Keep;
        let pattern = rule.immutable_tags.clone();
        if !keep && pattern.is_none() {
            return TargetTags {
                lists: Vec::new(),
                keep,
                pattern,
            };
        }
        let lists = join_all(repositories.iter().map(|repo| async move {
            let transport = match ctx.connector.get(repo.registry()) {
                Ok(t) => t,
                // The copies report the transport that cannot be built.
                Err(_) => return None,
            };
            match transport.tags(repo.repository()).await {
                Ok(tags) => Some(Arc::new(tags.into_iter().collect())),
                Err(e) if e.is_not_found() => Some(Arc::default()),
                Err(e) => {
                    tracing::warn!(
                        rule = %rule.name,
                        target = %repo,
                        "listing the target's tags failed; its immutable tags are checked one by one: {}",
                        error_chain(&e)
                    );
                    None
                }
            }
        }))
        .await;
        TargetTags {
            lists,
            keep,
            pattern,
        }
    }

    /// Per target, in order, whether `tag` is done there: immutable and listed.
    pub(crate) fn done(&self, tag: &str) -> Vec<bool> {
        let immutable = self.keep || self.pattern.as_ref().is_some_and(|p| p.is_match(tag));
        self.lists
            .iter()
            .map(|l| immutable && l.as_ref().is_some_and(|l| l.contains(tag)))
            .collect()
    }

    /// Per target, in order, what pruning may reuse of its listing, given the tags the rule
    /// selected at the source (`None`: not listed).
    pub(crate) fn for_prune(&self, selected: &[String]) -> Vec<Option<Listed>> {
        self.lists
            .iter()
            .map(|l| {
                let tags = Arc::clone(l.as_ref()?);
                let unlisted_selected = selected.iter().filter(|t| !tags.contains(*t)).count();
                Some(Listed {
                    tags,
                    unlisted_selected,
                })
            })
            .collect()
    }
}

/// A target repository's tags as this run listed them before its copies.
pub(crate) struct Listed {
    /// The tags listed.
    pub(crate) tags: Arc<HashSet<String>>,
    /// How many of the source's selected tags the list lacks (the run wrote them, or tried).
    pub(crate) unlisted_selected: usize,
}
