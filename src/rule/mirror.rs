//! Mirror rules, resolved: which tags of which source repositories go to which target
//! references.
//!
//! A [`RulePlan`] is one `[[rules]]` entry after validation (see [`crate::config`]): every regex
//! compiled, the semver range parsed, the target template checked against every source. Turning
//! it into concrete `(source, target)` pairs is the only step that needs the network, and only
//! when the tag selector has to see the tag list: an explicit list of tags costs no request,
//! which matters on Docker Hub, where every call counts against a rate limit. Which tags are
//! selected is [`super::select`]'s business, where they land [`super::template`]'s.

use std::time::Duration;

use serde::Deserialize;

use super::select::TagSelector;
use super::template::TargetTemplate;
use crate::manifest::Platform;
use crate::reference::{Reference, ReferenceError};
use crate::registry::{RegistryError, Transport};
use crate::schedule::Schedule;

/// What to do when the target tag already exists and points at a different image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnConflict {
    /// Move the target tag to the source's image (for moving tags like `latest`).
    #[default]
    Overwrite,
    /// Leave the target tag alone (for tags meant to be immutable).
    Keep,
}

impl OnConflict {
    /// The name as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            OnConflict::Overwrite => "overwrite",
            OnConflict::Keep => "keep",
        }
    }
}
/// Why a rule could not be turned into copy pairs.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// Listing the source repository's tags failed.
    #[error("listing tags of {repository}: {source}")]
    Tags {
        /// The source repository.
        repository: String,
        /// The transport's error.
        #[source]
        source: Box<RegistryError>,
    },
    /// A source or target reference could not be formed for a tag.
    #[error("tag {tag:?} of {repository}: {source}")]
    Reference {
        /// The source repository.
        repository: String,
        /// The tag.
        tag: String,
        /// Why the reference was refused.
        #[source]
        source: Box<ReferenceError>,
    },
}

/// One import rule with every default resolved; built by [`crate::config`].
#[derive(Debug, Clone)]
pub struct RulePlan {
    /// Unique name (metrics label, `--rule NAME`, shard key).
    pub name: String,
    /// Source repositories (no tag, no digest).
    pub sources: Vec<Reference>,
    /// Where each source lands.
    pub target: TargetTemplate,
    /// Further targets: each image goes to all of them, read from the source once.
    pub extra_targets: Vec<TargetTemplate>,
    /// Which tags to copy.
    pub tags: TagSelector,
    /// Platforms to copy out of multi-platform images; empty means all.
    pub platforms: Vec<Platform>,
    /// Whether to copy referrers (signatures, SBOMs, attestations).
    pub referrers: bool,
    /// What to do when a target tag points elsewhere.
    pub on_conflict: OnConflict,
    /// When the rule runs (UTC).
    pub schedule: Schedule,
    /// Time limit for one run of the rule.
    pub timeout: Duration,
    /// First wait before a failed run is tried again (doubling after each failure); zero:
    /// only the schedule tries again.
    pub retry_backoff: Duration,
    /// Backup tag template: before a tag moves off another image, that image is tagged with it.
    pub backup_tag: Option<String>,
    /// Signature policy: copy only images signed with one of these keys (`verify_keys`).
    pub verify: Option<std::sync::Arc<crate::trust::Policy>>,
    /// When to audit the rule's targets (`audit`), if ever.
    pub audit: Option<Schedule>,
    /// Whether and how target tags whose source tag is gone are deleted (`prune`).
    pub prune: super::prune::PrunePolicy,
    /// Tags that never change once written (`immutable_tags`): done when the target lists them
    /// (see [`super::immutable`]). With `on_conflict = "keep"` every tag is.
    pub immutable_tags: Option<regex::Regex>,
    /// When the daemon checks again at the target what it remembers having confirmed there
    /// (`full_check`, see [`super::confirmed`]).
    pub full_check: Schedule,
}

impl RulePlan {
    /// The (first) target reference for `tag` of `source`.
    pub fn target_for(&self, source: &Reference, tag: &str) -> Result<Reference, ReferenceError> {
        self.target.expand(source)?.with_tag(tag)
    }

    /// Every target template, the first one first.
    pub fn targets(&self) -> impl Iterator<Item = &TargetTemplate> {
        std::iter::once(&self.target).chain(self.extra_targets.iter())
    }

    /// The target repositories (no tag) of one of this rule's sources, in target order.
    pub fn target_repositories(
        &self,
        source: &Reference,
    ) -> Result<Vec<Reference>, ReferenceError> {
        self.targets().map(|t| t.expand(source)).collect()
    }

    /// The tags of `source` this rule copies, asking `transport` (the source registry's) for
    /// the tag list only if the selector needs it; the list, when fetched, comes back too, so
    /// that the copies can reuse it (finding signature tags needs it) instead of listing again
    /// per image.
    pub async fn select_tags(
        &self,
        source: &Reference,
        transport: &dyn Transport,
    ) -> Result<Selected, ResolveError> {
        if !self.tags.needs_tag_list() {
            return Ok(Selected {
                tags: self.tags.select(&[]),
                listed: None,
            });
        }
        let available =
            transport
                .tags(source.repository())
                .await
                .map_err(|e| ResolveError::Tags {
                    repository: source.to_string(),
                    source: Box::new(e),
                })?;
        Ok(Selected {
            tags: self.tags.select(&available),
            listed: Some(available),
        })
    }

    /// The `(source, target)` pairs for one of this rule's sources (one pair per target of
    /// each tag, in target order), from [`RulePlan::select_tags`]. Holds every pair at once:
    /// a run streams tags instead (see [`super::mirror_run`]).
    pub async fn resolve(
        &self,
        source: &Reference,
        transport: &dyn Transport,
    ) -> Result<Vec<(Reference, Reference)>, ResolveError> {
        let selected = self.select_tags(source, transport).await?;
        let err = |tag: &str, e| ResolveError::Reference {
            repository: source.to_string(),
            tag: tag.to_string(),
            source: Box::new(e),
        };
        let repositories = self.target_repositories(source).map_err(|e| err("", e))?;
        let mut pairs = Vec::new();
        for tag in &selected.tags {
            let src = source.with_tag(tag).map_err(|e| err(tag, e))?;
            for repo in &repositories {
                pairs.push((src.clone(), repo.with_tag(tag).map_err(|e| err(tag, e))?));
            }
        }
        Ok(pairs)
    }
}

/// The tags a rule copies from one source.
#[derive(Debug, Clone, Default)]
pub struct Selected {
    /// The tags selected, in [`TagSelector::select`]'s order.
    pub tags: Vec<String>,
    /// The registry's whole tag list, when it was fetched.
    pub listed: Option<Vec<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_for_keeps_the_tag() {
        let rule = RulePlan {
            name: "r".into(),
            sources: vec![],
            target: TargetTemplate::parse("localhost:5001/m/{repo}").unwrap(),
            extra_targets: vec![],
            tags: TagSelector::default(),
            platforms: vec![],
            referrers: true,
            backup_tag: None,
            verify: None,
            audit: None,
            prune: Default::default(),
            immutable_tags: None,
            full_check: Schedule::Every(Duration::from_secs(24 * 3600)),
            on_conflict: OnConflict::Keep,
            schedule: Schedule::Every(Duration::from_secs(60)),
            timeout: Duration::from_secs(60),
            retry_backoff: Duration::from_secs(30),
        };
        let src = Reference::parse("quay.io/org/img").unwrap();
        assert_eq!(
            rule.target_for(&src, "v1").unwrap().to_string(),
            "localhost:5001/m/org/img:v1"
        );
        assert!(rule.target_for(&src, "bad tag").is_err());
    }
}
