//! Phase 1 of a copy, resolve: the source reference to a digest, **once** — everything after
//! reads by that digest, so a tag moving mid-copy cannot mix two images — and the digest the
//! targets will get. And the entry of phase 3, the walk, which starts from what was resolved.
//!
//! Cheapest first: without a platform filter one HEAD resolves a tag (a no-op copy then costs
//! that HEAD and the targets' HEADs, nothing else). With a filter the targets' digest is that of
//! the filtered index, which needs the source index: one GET (by tag, verified against its own
//! bytes) then serves both the digest and the filter.

use super::walk::{self, SourceImage, WalkOptions};
use super::{CopyError, CopyOptions, Engine, Source};
use crate::digest::Digest;
use crate::manifest::Manifest;

/// What the source resolved to: phase 1's hand-off to the target check and the walk.
pub(super) struct Resolved {
    /// The digest the source reference points at.
    pub source_digest: Digest,
    /// The digest the targets get: the source's, or the platform-filtered index's.
    pub wanted: Digest,
    /// The manifest the targets get at the top, when it was read already, and whether it is a
    /// new index written by the platform filter.
    top: Option<(Manifest, bool)>,
}

impl Engine {
    /// Phase 1: resolves `source` (see the module header).
    pub(super) async fn resolve(
        &self,
        source: &Source,
        opts: &CopyOptions,
    ) -> Result<Resolved, CopyError> {
        let (src, repo) = (&source.transport, source.reference.repository());
        let failed = |e| CopyError::source(&source.reference, e);
        let mut root: Option<Manifest> = None;
        let source_digest = match source.reference.digest() {
            Some(d) => d.clone(),
            None => {
                let tag = source.reference.manifest_reference();
                let head = if opts.platforms.is_empty() {
                    let head = src.manifest_head(repo, &tag).await.map_err(failed)?;
                    head.map(|h| h.digest)
                } else {
                    None
                };
                match head {
                    Some(d) => d,
                    None => {
                        let m = src.manifest_get(repo, &tag).await.map_err(failed)?;
                        let d = m.digest().clone();
                        root = Some(m);
                        d
                    }
                }
            }
        };
        if opts.platforms.is_empty() {
            return Ok(Resolved {
                wanted: source_digest.clone(),
                source_digest,
                top: root.map(|m| (m, false)),
            });
        }
        let m = match root {
            Some(m) => m,
            None => fetch(source, &source_digest).await?,
        };
        let (top, filtered) = walk::select_platforms(m, &opts.platforms)?;
        Ok(Resolved {
            wanted: top.digest().clone(),
            source_digest,
            top: Some((top, filtered)),
        })
    }

    /// Phase 3: reads the source tree under what was resolved, once for every target.
    pub(super) async fn read_source(
        &self,
        source: &Source,
        resolved: Resolved,
        opts: &CopyOptions,
    ) -> Result<SourceImage, CopyError> {
        let (top, filtered) = match resolved.top {
            Some(top) => top,
            None => (fetch(source, &resolved.source_digest).await?, false),
        };
        let walk_opts = WalkOptions {
            include_foreign: opts.include_foreign,
        };
        let repo = source.reference.repository();
        let digest = resolved.source_digest;
        walk::walk(&source.transport, repo, digest, top, filtered, &walk_opts).await
    }
}

/// The source's manifest `digest`.
async fn fetch(source: &Source, digest: &Digest) -> Result<Manifest, CopyError> {
    source
        .transport
        .manifest_get(source.reference.repository(), &digest.to_string())
        .await
        .map_err(|e| CopyError::source(&source.reference, e))
}
