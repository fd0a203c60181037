//! Artifacts attached to an image: signatures, SBOMs, attestations.
//!
//! A mirror without the signatures of what it mirrors cannot be verified, so by default every
//! copied manifest brings what refers to it. Two conventions exist and both are followed:
//! - the OCI Referrers API (`GET /v2/<repo>/referrers/<digest>`), where the source has it;
//! - tags derived from the subject digest: the OCI fallback `sha256-<hex>` (an index of
//!   referrers) and cosign's `sha256-<hex>.sig`, `.att`, `.sbom`. Registries without the API
//!   (distribution 2.8) only have these. One tag list of the source repository finds them all.
//!
//! Discovery is best effort: a failure to list referrers is logged and does not fail the image,
//! while a failure to copy a referrer that was found does.

use std::collections::HashSet;
use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};

use super::{CopyError, CopyOptions, Engine, Source, SourceImage, Target, TargetStatus};
use crate::digest::Digest;
use crate::registry::Transport;

/// Suffixes of tags that attach artifacts to a subject digest.
const TAG_SUFFIXES: [&str; 4] = ["", ".sig", ".att", ".sbom"];

/// One artifact to copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ReferrerItem {
    /// The artifact manifest (or referrers index) digest at the source.
    pub digest: Digest,
    /// The tag it is found under, to be set at the target too (tag-based conventions).
    pub tag: Option<String>,
}

/// The referrers of an image being found at the source, awaited by every target.
pub(super) type Discovery<'a> = Shared<BoxFuture<'a, Vec<ReferrerItem>>>;

/// Starts finding the artifacts referring to `image` (none when `opts` does not copy them).
/// They are needed only once an image's own manifests are written, so the discovery (a
/// referrers request and a tag list at most) runs while the blobs move instead of before them.
pub(super) fn discovery<'a>(
    source: &'a Source,
    image: &'a SourceImage,
    opts: &'a CopyOptions,
) -> Discovery<'a> {
    async move {
        if !opts.referrers {
            return Vec::new();
        }
        let repo = source.reference.repository();
        discover(&source.transport, repo, image, opts.source_tags.as_deref()).await
    }
    .boxed()
    .shared()
}

/// Finds the artifacts referring to any manifest of `image`.
pub(super) async fn discover(
    src: &Arc<dyn Transport>,
    repo: &str,
    image: &SourceImage,
    known_tags: Option<&HashSet<String>>,
) -> Vec<ReferrerItem> {
    let mut subjects: Vec<Digest> = vec![image.source_digest.clone()];
    subjects.extend(image.children.iter().map(|m| m.digest().clone()));
    let mut items = Vec::new();
    let mut seen = HashSet::new();
    match src.referrers(repo, &image.source_digest).await {
        Ok(Some(first)) => {
            for d in first {
                if seen.insert(d.digest.clone()) {
                    items.push(ReferrerItem {
                        digest: d.digest,
                        tag: None,
                    });
                }
            }
            for s in &subjects[1..] {
                match src.referrers(repo, s).await {
                    Ok(Some(list)) => {
                        for d in list {
                            if seen.insert(d.digest.clone()) {
                                items.push(ReferrerItem {
                                    digest: d.digest,
                                    tag: None,
                                });
                            }
                        }
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(subject = %s, error = %e, "listing referrers failed"),
                }
            }
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(subject = %image.source_digest, error = %e, "listing referrers failed")
        }
    }
    // Tag conventions, from one tag list.
    let listed;
    let tags: &HashSet<String> = match known_tags {
        Some(t) => t,
        None => match src.tags(repo).await {
            Ok(t) => {
                listed = t.into_iter().collect();
                &listed
            }
            Err(e) => {
                tracing::warn!(repo, error = %e, "listing tags for signatures failed");
                return items;
            }
        },
    };
    for s in &subjects {
        for suffix in TAG_SUFFIXES {
            let tag = format!("{}{suffix}", s.tag_form());
            if tags.contains(&tag) {
                match src.manifest_head(repo, &tag).await {
                    Ok(Some(h)) => items.push(ReferrerItem {
                        digest: h.digest,
                        tag: Some(tag),
                    }),
                    Ok(None) => {}
                    Err(e) => tracing::warn!(tag, error = %e, "reading attached artifact failed"),
                }
            }
        }
    }
    items
}

/// Copies every referrer to one target; how many were copied.
pub(super) async fn copy_all(
    engine: &Engine,
    source: &Source,
    target: &Target,
    items: &[ReferrerItem],
    opts: &CopyOptions,
) -> Result<u64, CopyError> {
    let mut copied = 0;
    // Artifacts are copied whole (all platforms), without their own referrers, and their tags
    // are moved freely: a `.sig` tag changes whenever a signature is added.
    let sub_opts = CopyOptions {
        platforms: Vec::new(),
        force: true,
        referrers: false,
        ..opts.clone()
    };
    for item in items {
        let src = Source {
            transport: source.transport.clone(),
            reference: source
                .reference
                .repository_only()
                .with_digest(item.digest.clone()),
        };
        let tgt = Target {
            transport: target.transport.clone(),
            reference: target.reference.clone(),
            tags: item.tag.iter().cloned().collect(),
        };
        let report =
            Box::pin(engine.copy_unlimited(&src, std::slice::from_ref(&tgt), &sub_opts)).await?;
        for t in report.targets {
            match t.status {
                TargetStatus::Copied => copied += 1,
                TargetStatus::Failed(e) => {
                    return Err(CopyError::Referrer {
                        digest: item.digest.clone(),
                        error: super::error_chain(&*e),
                    });
                }
                _ => {}
            }
        }
    }
    Ok(copied)
}
