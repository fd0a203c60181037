//! Reading the source image: the manifest tree under one digest, fetched and verified.
//!
//! The walk starts from a digest, never a tag, so a tag that moves while we copy cannot mix two
//! images. Every manifest is fetched by digest and verified against it by the transport, so the
//! tree is content-addressed end to end: a cycle would need a hash collision, but a hostile
//! registry can still serve absurd trees, hence the depth and size bounds.

use std::collections::HashSet;
use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt, stream};

use super::CopyError;
use crate::digest::Digest;
use crate::manifest::{Descriptor, Manifest, ManifestView, Platform, media_type};
use crate::registry::Transport;

/// Deepest nesting of indexes accepted.
const MAX_DEPTH: usize = 8;
/// Most manifests accepted in one image tree.
const MAX_MANIFESTS: usize = 10_000;
/// Child manifests fetched at once.
const FETCH_CONCURRENCY: usize = 8;

/// Everything one image consists of at the source, in push order.
#[derive(Debug, Clone)]
pub struct SourceImage {
    /// The digest the source reference resolved to.
    pub source_digest: Digest,
    /// The manifest the target gets at the top: the source's, or a platform-filtered index.
    pub root: Manifest,
    /// Whether `root` is a new index written by the platform filter (its digest differs).
    pub filtered: bool,
    /// Child manifests, deepest first, each once: pushed before `root`.
    pub children: Vec<Manifest>,
    /// Every blob (configs and layers), each once, in first-seen order.
    pub blobs: Vec<Descriptor>,
    /// Foreign layers left out (they carry `urls` and are not copied by default).
    pub skipped_foreign: Vec<Descriptor>,
    /// The platforms of the image manifests copied.
    pub platforms: Vec<String>,
}

impl SourceImage {
    /// Number of image (platform) manifests.
    pub fn image_count(&self) -> usize {
        self.children
            .iter()
            .chain(std::iter::once(&self.root))
            .filter(|m| !m.is_index())
            .count()
    }

    /// Every manifest, children first then the root.
    pub fn manifests(&self) -> impl Iterator<Item = &Manifest> {
        self.children.iter().chain(std::iter::once(&self.root))
    }
}

/// Walk options.
pub(super) struct WalkOptions {
    /// Copy foreign layers too.
    pub include_foreign: bool,
}

/// What the target gets at the top for `root` under a platform filter: `root` itself, or a
/// new index holding only the wanted entries (`true`: it is new, its digest differs). Needs no
/// request, so a filtered no-op costs only the source index read and the target HEAD.
pub(super) fn select_platforms(
    root: Manifest,
    platforms: &[Platform],
) -> Result<(Manifest, bool), CopyError> {
    let ManifestView::Index(index) = root.view() else {
        return Ok((root, false));
    };
    if platforms.is_empty() {
        return Ok((root, false));
    }
    let keep = |d: &Descriptor| {
        d.platform
            .as_ref()
            .is_some_and(|p| platforms.iter().any(|w| p.matches(w)))
    };
    if !index.manifests.iter().any(keep) {
        return Err(CopyError::NoPlatformMatch {
            wanted: platforms.iter().map(|p| p.to_string()).collect(),
            available: index
                .manifests
                .iter()
                .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
                .collect(),
        });
    }
    if index.manifests.iter().all(keep) {
        return Ok((root, false));
    }
    let filtered = root.filter_index(keep).ok_or_else(|| CopyError::Internal {
        message: "could not rewrite the index for the platform filter".into(),
    })?;
    Ok((filtered, true))
}

/// Fetches the tree under `root`, the manifest the target gets at the top (after
/// [`select_platforms`]); `source_digest` is what the source reference resolved to.
pub(super) async fn walk(
    source: &Arc<dyn Transport>,
    repo: &str,
    source_digest: Digest,
    root: Manifest,
    filtered: bool,
    opts: &WalkOptions,
) -> Result<SourceImage, CopyError> {
    let mut out = SourceImage {
        source_digest,
        root: root.clone(),
        filtered,
        children: Vec::new(),
        blobs: Vec::new(),
        skipped_foreign: Vec::new(),
        platforms: Vec::new(),
    };
    let mut seen_blobs = HashSet::new();
    let mut seen_manifests = HashSet::from([root.digest().clone()]);
    // Breadth-first by level; children are pushed deepest level first.
    let mut level: Vec<(Manifest, Option<Platform>)> = vec![(root, None)];
    let mut levels: Vec<Vec<Manifest>> = Vec::new();
    for depth in 0..=MAX_DEPTH {
        let mut next_descs: Vec<Descriptor> = Vec::new();
        for (m, platform) in &level {
            match m.view() {
                ManifestView::Index(index) => {
                    for d in &index.manifests {
                        if seen_manifests.insert(d.digest.clone()) {
                            next_descs.push(d.clone());
                        }
                    }
                }
                ManifestView::Image(img) => {
                    if let Some(p) = platform {
                        out.platforms.push(p.to_string());
                    }
                    for d in std::iter::once(&img.config).chain(img.layers.iter()) {
                        if d.is_foreign() && !opts.include_foreign {
                            out.skipped_foreign.push(d.clone());
                            continue;
                        }
                        if seen_blobs.insert(d.digest.clone()) {
                            out.blobs.push(d.clone());
                        }
                    }
                }
            }
        }
        if depth > 0 {
            levels.push(level.into_iter().map(|(m, _)| m).collect());
        }
        if next_descs.is_empty() {
            break;
        }
        if depth == MAX_DEPTH {
            return Err(CopyError::TooDeep {
                digest: out.source_digest.clone(),
                max: MAX_DEPTH,
            });
        }
        if seen_manifests.len() > MAX_MANIFESTS {
            return Err(CopyError::TooLarge {
                digest: out.source_digest.clone(),
                max: MAX_MANIFESTS,
            });
        }
        level = fetch_level(source, repo, next_descs).await?;
    }
    for lvl in levels.into_iter().rev() {
        out.children.extend(lvl);
    }
    Ok(out)
}

/// Fetches the manifests `descs` of one level of the tree (a few at a time), each checked to be
/// a manifest of the size its descriptor declares.
async fn fetch_level(
    source: &Arc<dyn Transport>,
    repo: &str,
    descs: Vec<Descriptor>,
) -> Result<Vec<(Manifest, Option<Platform>)>, CopyError> {
    if let Some(d) = descs
        .iter()
        .find(|d| !media_type::is_manifest(&d.media_type))
    {
        return Err(CopyError::UnsupportedChild {
            digest: d.digest.clone(),
            media_type: d.media_type.clone(),
        });
    }
    let fetches: Vec<_> = descs
        .into_iter()
        .map(|d| {
            let source = source.clone();
            async move {
                let m = source
                    .manifest_get(repo, &d.digest.to_string())
                    .await
                    .map_err(|e| CopyError::source(repo, e))?;
                if m.size() != d.size {
                    return Err(CopyError::SizeLies {
                        digest: d.digest.clone(),
                        declared: d.size,
                        actual: m.size(),
                    });
                }
                Ok::<_, CopyError>((m, d.platform.clone()))
            }
        })
        .collect();
    stream::iter(fetches)
        .buffered(FETCH_CONCURRENCY)
        .try_collect()
        .await
}
