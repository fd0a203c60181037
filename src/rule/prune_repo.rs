//! A target repository as pruning sees it once it knows what to delete: its tags as they are
//! now, which kept tag points at which image, and the signatures of an image.
//!
//! Everything here is asked lazily and at most once per repository and run: the listing (not at
//! all when the caller has one from after the copies), then a HEAD per kept tag the first time
//! an image's kept tags matter — deleting by digest, removing an image's signatures, or a dry
//! run saying whether a tag would go alone (on a target that cannot tell before a DELETE).
//! When in doubt (a listing or a HEAD that failed), a tag counts as keeping the image: nothing
//! that might still be wanted is deleted.

use std::collections::{HashMap, HashSet};

use super::prune::artifact_subject;
use crate::copy::error_chain;
use crate::digest::Digest;
use crate::manifest::Descriptor;
use crate::registry::Transport;

/// One target repository being pruned.
pub(super) struct Repo<'a> {
    /// Its transport.
    pub(super) t: &'a dyn Transport,
    /// Its name at the registry.
    pub(super) repo: &'a str,
    /// Its tags listed after this run's copies (`None`: not yet; `Err`: the listing failed).
    tags: Option<Result<Vec<String>, String>>,
    /// The tags being pruned (not kept, whatever they point at).
    doomed: HashSet<String>,
    kept: Option<HashMap<Digest, Vec<String>>>,
    /// Kept tags whose digest is unknown (their HEAD, or the listing, failed).
    unknown: Vec<String>,
}

impl<'a> Repo<'a> {
    /// `tags`: the repository's tags if listed after the copies; else they are listed when
    /// first needed.
    pub(super) fn new(
        t: &'a dyn Transport,
        repo: &'a str,
        tags: Option<Vec<String>>,
        doomed: &[String],
    ) -> Repo<'a> {
        Repo {
            t,
            repo,
            tags: tags.map(Ok),
            doomed: doomed.iter().cloned().collect(),
            kept: None,
            unknown: Vec::new(),
        }
    }

    /// The repository's tags as they are now (after this run's copies).
    async fn tags(&mut self) -> Result<&[String], &str> {
        if self.tags.is_none() {
            let listed = match self.t.tags(self.repo).await {
                Ok(tags) => Ok(tags),
                Err(e) if e.is_not_found() => Ok(Vec::new()),
                Err(e) => Err(error_chain(&e)),
            };
            self.tags = Some(listed);
        }
        match self.tags.as_ref().expect("listed above") {
            Ok(tags) => Ok(tags.as_slice()),
            Err(e) => Err(e.as_str()),
        }
    }

    /// The tags that stay (not pruned, not artifacts) pointing at `digest`. A tag whose HEAD
    /// fails counts as pointing at it, and so does every tag when the listing failed.
    pub(super) async fn kept_on(&mut self, digest: &Digest) -> Vec<String> {
        if self.kept.is_none() {
            let mut map: HashMap<Digest, Vec<String>> = HashMap::new();
            let mut unknown = Vec::new();
            let (t, repo) = (self.t, self.repo);
            let doomed = std::mem::take(&mut self.doomed);
            match self.tags().await {
                Ok(tags) => {
                    for tag in tags {
                        if doomed.contains(tag) || artifact_subject(tag).is_some() {
                            continue;
                        }
                        match t.manifest_head(repo, tag).await {
                            Ok(Some(h)) => map.entry(h.digest).or_default().push(tag.clone()),
                            Ok(None) => {}
                            Err(_) => unknown.push(format!("{tag} (digest unknown)")),
                        }
                    }
                }
                Err(e) => unknown.push(format!("the other tags (listing them failed: {e})")),
            }
            self.doomed = doomed;
            self.unknown = unknown;
            self.kept = Some(map);
        }
        let mut kept = self
            .kept
            .as_ref()
            .and_then(|m| m.get(digest))
            .cloned()
            .unwrap_or_default();
        kept.extend(self.unknown.iter().cloned());
        kept
    }

    /// The signature, attestation and SBOM tags and the referrers of `digest` that go with it:
    /// none while a kept tag points at it.
    pub(super) async fn artifacts(&mut self, digest: &Digest) -> (Vec<String>, Vec<Descriptor>) {
        let subject = digest.to_string();
        let tags: Vec<String> = match self.tags().await {
            Ok(tags) => tags
                .iter()
                .filter(|t| artifact_subject(t).as_deref() == Some(subject.as_str()))
                .cloned()
                .collect(),
            Err(_) => Vec::new(),
        };
        // Referrers the registry serves through the API (none on distribution 2.8, whose
        // referrers are the fallback tags above).
        let referrers = match self.t.referrers(self.repo, digest).await {
            Ok(Some(list)) => list,
            _ => Vec::new(),
        };
        if (tags.is_empty() && referrers.is_empty()) || !self.kept_on(digest).await.is_empty() {
            return (Vec::new(), Vec::new());
        }
        (tags, referrers)
    }
}
