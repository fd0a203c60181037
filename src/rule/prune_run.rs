//! Pruning carried out: after a mirror rule's copies, each target repository loses the tags
//! [`super::prune::plan`] names, and with an image that no tag keeps any more, its signature,
//! attestation and SBOM tags and its referrers.
//!
//! Deleting a tag alone needs a registry that deletes by tag (OCI 1.1, distribution 3, zot,
//! Harbor). distribution 2.8 deletes by digest only, which removes every tag on that digest:
//! there the digest is deleted only when no kept tag points at it, and otherwise the tag is
//! reported as not removable alone ([`ImageState::NotPruned`]), which does not fail the run.
//! Finding the kept tags' digests costs a HEAD per kept tag, so it is done once per target
//! repository and only when needed ([`super::prune_repo`]).
//!
//! A dry run cannot DELETE to learn which kind of registry the target is, so it says what is
//! true on both: a tag no kept tag shares its image with would go ([`ImageState::WouldPrune`]),
//! with the signatures and referrers that would go with its image; a tag that shares its image
//! with a kept tag would go only where the registry deletes by tag
//! ([`ImageState::WouldPruneByTagOnly`], naming the kept tags). A target that knows it deletes
//! a tag alone ([`TagDeletion::Alone`]: an OCI layout) needs no such answer: its doomed tags
//! would go, and its kept tags are not asked which image they point at (unless the image's
//! signatures are in question).
//!
//! The source's tags are listed again here, after the copies: the freshest view (a tag that
//! came back meanwhile is not deleted), one request per source, and the copies need not keep
//! their listing (a rule with an explicit tag list never lists at all). A target's tags are
//! not, when the run listed them before its copies ([`super::immutable::Listed`]): what to
//! delete is planned from that listing, so a run with nothing to prune costs no target request.
//! Either way the tags the rule selected that the target's listing lacks count among its
//! selected tags (a percentage `prune_limit`): those a dry run would copy, so that it refuses
//! exactly where the real run, whose listing holds them, would.
//!
//! Each deletion is an outcome of the run ([`ImageState::Pruned`]): logged with its tag, digest
//! and rule, counted, listed in the JSON report and `/status`, and printed by `sync`. A guard
//! rail that stops pruning is a problem of the run ([`RunError::PruneRefused`]), which fails it.

use std::collections::HashSet;

use super::immutable::Listed;
use super::mirror::RulePlan;
use super::prune::{PlanInput, PruneLimit, plan};
use super::prune_repo::Repo;
use super::run::{Failure, ImageOutcome, ImageState, RunContext, RunError, Tally};
use crate::copy::error_chain;
use crate::digest::Digest;
use crate::reference::Reference;
use crate::registry::{ErrorKind, TagDeletion};

/// What the run listed of each source's target repositories before its copies, in target
/// order (`None`: not listed).
pub(super) type Listings<'a> = [(&'a Reference, Vec<Option<Listed>>)];

/// Prunes every target repository of `rule` (after its copies; `dry_run`: says what would go).
pub(super) async fn prune(
    rule: &RulePlan,
    ctx: &RunContext,
    dry_run: bool,
    tally: &Tally,
    listings: &Listings<'_>,
) {
    let failed = tally.failed_so_far();
    for source in &rule.sources {
        let listed = match ctx.connector.get(source.registry()) {
            Ok(t) => t.tags(source.repository()).await,
            // Already recorded by the copies.
            Err(_) => continue,
        };
        let listed = match listed {
            Ok(l) => l,
            Err(e) => {
                // The copies listed the same tags: a failure there is already a problem of
                // the run, so it is said only when this is the first time it failed.
                if failed == 0 {
                    tally.error(RunError::Resolve(format!(
                        "listing tags of {source} to prune: {}",
                        error_chain(&e)
                    )));
                }
                continue;
            }
        };
        let Ok(targets) = rule.target_repositories(source) else {
            continue;
        };
        let known = listings
            .iter()
            .find(|(s, _)| *s == source)
            .map_or(&[][..], |(_, l)| l.as_slice());
        for (i, target) in targets.iter().enumerate() {
            let site = Site {
                rule,
                tally,
                source,
                target,
                dry_run,
            };
            let known = known.get(i).and_then(Option::as_ref);
            site.prune(ctx, &listed, failed, known).await;
        }
    }
}

/// One target repository being pruned.
struct Site<'a> {
    rule: &'a RulePlan,
    tally: &'a Tally,
    source: &'a Reference,
    target: &'a Reference,
    dry_run: bool,
}

impl Site<'_> {
    /// Prunes the target: plans from `known` (its listing before the copies) or a listing
    /// made now, then deletes, or in a dry run says what would go.
    async fn prune(
        &self,
        ctx: &RunContext,
        listed: &[String],
        failed: usize,
        known: Option<&Listed>,
    ) {
        let t = match ctx.connector.get(self.target.registry()) {
            Ok(t) => t,
            Err(_) => return, // already recorded by the copies
        };
        let repo = self.target.repository();
        let (doomed, tags) = match known {
            Some(k) => {
                let doomed = self.plan(listed, k.tags.iter(), k.unlisted_selected, failed);
                (doomed, None)
            }
            None => match t.tags(repo).await {
                Ok(tags) => {
                    let unlisted = self.unlisted_selected(listed, &tags);
                    (self.plan(listed, tags.iter(), unlisted, failed), Some(tags))
                }
                // A repository never written to has nothing to prune.
                Err(e) if e.kind == ErrorKind::NotFound => return,
                Err(e) => {
                    self.tally.error(RunError::Resolve(format!(
                        "listing tags of {} to prune: {}",
                        self.target,
                        error_chain(&e)
                    )));
                    return;
                }
            },
        };
        let Some(doomed) = doomed.filter(|d| !d.is_empty()) else {
            return;
        };
        let mut r = Repo::new(&*t, repo, tags, &doomed);
        // Grouped by digest: on a digest-only registry one DELETE removes them all.
        let mut groups: Vec<(Digest, Vec<String>)> = Vec::new();
        for tag in &doomed {
            match t.manifest_head(repo, tag).await {
                Ok(Some(head)) => match groups.iter_mut().find(|g| g.0 == head.digest) {
                    Some(g) => g.1.push(tag.clone()),
                    None => groups.push((head.digest, vec![tag.clone()])),
                },
                Ok(None) => {} // gone already
                Err(e) => self.outcome(tag, None, failed_state(tag, &e)),
            }
        }
        for (digest, group) in groups {
            if self.dry_run {
                self.foresee(&mut r, &digest, &group).await;
            } else if self.delete_group(&mut r, &digest, &group).await {
                self.delete_artifacts(&mut r, &digest).await;
            }
        }
    }

    /// The tags to delete, or `None` when a guard rail refused (recorded as a problem of the
    /// run).
    fn plan<'t>(
        &self,
        source_tags: &[String],
        target_tags: impl IntoIterator<Item = &'t String>,
        unlisted_selected: usize,
        failed: usize,
    ) -> Option<Vec<String>> {
        let input = PlanInput {
            source_tags: Some(source_tags),
            target_tags,
            unlisted_selected,
            selector: &self.rule.tags,
            backup_tag: self.rule.backup_tag.as_deref(),
            failed_copies: failed,
            now: chrono::Utc::now(),
        };
        match plan(input, &self.rule.prune) {
            Ok(doomed) => Some(doomed),
            Err(refusal) => {
                tracing::warn!(rule = %self.rule.name, target = %self.target, "{refusal}");
                self.tally.error(RunError::PruneRefused {
                    target: self.target.to_string(),
                    refusal,
                });
                None
            }
        }
    }

    /// How many tags the rule selects among the source's `listed` tags that the target's
    /// `tags` (listed after the copies) lack: in a dry run the tags it would copy, in a real
    /// run those whose copy did not land. Only a percentage limit reads it.
    fn unlisted_selected(&self, listed: &[String], tags: &[String]) -> usize {
        if !matches!(self.rule.prune.limit, PruneLimit::Percent(_)) {
            return 0;
        }
        let tags: HashSet<&str> = tags.iter().map(String::as_str).collect();
        let selected = self.rule.tags.select(listed);
        selected
            .iter()
            .filter(|t| !tags.contains(t.as_str()))
            .count()
    }

    /// A dry run: what deleting `group` (all on `digest`) would do, said without deleting.
    async fn foresee(&self, r: &mut Repo<'_>, digest: &Digest, group: &[String]) {
        // Where a tag goes alone, the kept tags sharing its image do not matter (the image's
        // signatures, below, still ask for them).
        let kept = match r.t.tag_deletion() {
            TagDeletion::Alone => Vec::new(),
            TagDeletion::Never | TagDeletion::Unknown => r.kept_on(digest).await,
        };
        if !kept.is_empty() {
            let why = format!(
                "would be pruned only where the registry deletes tags by name; where it deletes \
                 by digest only (distribution 2.8) it stays, because {} also point{} at {digest}",
                kept.join(", "),
                if kept.len() == 1 { "s" } else { "" }
            );
            for tag in group {
                let state = ImageState::WouldPruneByTagOnly(why.clone());
                self.outcome(tag, Some(digest), state);
            }
            return;
        }
        for tag in group {
            self.outcome(tag, Some(digest), ImageState::WouldPrune);
        }
        let (artifacts, referrers) = r.artifacts(digest).await;
        for tag in artifacts {
            match r.t.manifest_head(r.repo, &tag).await {
                Ok(Some(h)) => self.outcome(&tag, Some(&h.digest), ImageState::WouldPrune),
                Ok(None) => {}
                Err(e) => self.outcome(&tag, None, failed_state(&tag, &e)),
            }
        }
        for d in referrers {
            self.outcome(
                &d.digest.to_string(),
                Some(&d.digest),
                ImageState::WouldPrune,
            );
        }
    }

    /// Deletes the tags of `group` (all on `digest`); whether they all went.
    async fn delete_group(&self, r: &mut Repo<'_>, digest: &Digest, group: &[String]) -> bool {
        let mut left = group;
        while let Some((tag, rest)) = left.split_first() {
            match r.t.manifest_delete(r.repo, tag).await {
                Ok(_) => self.outcome(tag, Some(digest), ImageState::Pruned),
                Err(e) if e.kind == ErrorKind::Unsupported => break,
                Err(e) => {
                    self.outcome(tag, Some(digest), failed_state(tag, &e));
                    return false;
                }
            }
            left = rest;
        }
        if left.is_empty() {
            return true;
        }
        // A digest-only registry (distribution 2.8): deleting the digest removes every tag on
        // it, which is safe only when no kept tag is among them.
        let kept = r.kept_on(digest).await;
        if !kept.is_empty() {
            let why = format!(
                "the registry deletes by digest only and {} also point{} at {digest}: the tag \
                 could not be removed alone",
                kept.join(", "),
                if kept.len() == 1 { "s" } else { "" }
            );
            for tag in left {
                self.outcome(tag, Some(digest), ImageState::NotPruned(why.clone()));
            }
            return false;
        }
        match r.t.manifest_delete(r.repo, &digest.to_string()).await {
            Ok(_) => {
                for tag in left {
                    self.outcome(tag, Some(digest), ImageState::Pruned);
                }
                true
            }
            Err(e) => {
                for tag in left {
                    self.outcome(tag, Some(digest), failed_state(tag, &e));
                }
                false
            }
        }
    }

    /// Removes the signature, attestation and SBOM tags and the referrers of `digest`, once
    /// no kept tag points at it.
    async fn delete_artifacts(&self, r: &mut Repo<'_>, digest: &Digest) {
        let (artifacts, referrers) = r.artifacts(digest).await;
        for tag in &artifacts {
            let head = match r.t.manifest_head(r.repo, tag).await {
                Ok(Some(h)) => h,
                Ok(None) => continue,
                Err(e) => {
                    self.outcome(tag, None, failed_state(tag, &e));
                    continue;
                }
            };
            let deleted = match r.t.manifest_delete(r.repo, tag).await {
                // A signature manifest carries only its own tag: deleting its digest on a
                // digest-only registry removes nothing else.
                Err(e) if e.kind == ErrorKind::Unsupported => {
                    r.t.manifest_delete(r.repo, &head.digest.to_string()).await
                }
                other => other,
            };
            match deleted {
                Ok(_) => self.outcome(tag, Some(&head.digest), ImageState::Pruned),
                Err(e) => self.outcome(tag, Some(&head.digest), failed_state(tag, &e)),
            }
        }
        for d in referrers {
            let name = d.digest.to_string();
            match r.t.manifest_delete(r.repo, &name).await {
                Ok(_) => self.outcome(&name, Some(&d.digest), ImageState::Pruned),
                Err(e) => self.outcome(&name, Some(&d.digest), failed_state(&name, &e)),
            }
        }
    }

    /// Records what became of `tag` (a tag, or a referrer's digest) and logs a deletion.
    fn outcome(&self, tag: &str, digest: Option<&Digest>, state: ImageState) {
        let at = if tag.contains(':') { "@" } else { ":" };
        if state == ImageState::Pruned {
            tracing::info!(
                rule = %self.rule.name,
                target = %self.target,
                tag,
                digest = %digest.map(Digest::to_string).unwrap_or_default(),
                "pruned: its source tag is gone"
            );
        }
        self.tally.image(ImageOutcome {
            source: format!("{}{at}{tag}", self.source),
            target: format!("{}{at}{tag}", self.target),
            state,
            digest: digest.map(Digest::to_string),
            bytes_copied: 0,
        });
    }
}

fn failed_state(tag: &str, e: &crate::registry::RegistryError) -> ImageState {
    // distribution answers 405 UNSUPPORTED to a digest delete unless deletes are enabled.
    let hint = match e.kind {
        ErrorKind::Unsupported => {
            " (the registry refuses deletes; for distribution, set storage.delete.enabled: \
             true, or turn prune off for this rule)"
        }
        _ => "",
    };
    ImageState::Failed(Failure::Target(format!(
        "pruning {tag}: {}{hint}",
        error_chain(e)
    )))
}
