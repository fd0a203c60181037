//! What a copy is asked to do: its source, targets and options, the engine's limits, and the
//! progress callbacks the CLI draws bars from.

use std::sync::Arc;

use super::BlobOutcome;
use crate::digest::Digest;
use crate::manifest::Platform;
use crate::reference::Reference;
use crate::registry::Transport;

/// Receives progress events (for progress bars); every method defaults to doing nothing.
pub trait Progress: Send + Sync {
    /// A target starts receiving `blobs` blobs totalling `bytes`.
    fn target_started(&self, _target: &str, _blobs: usize, _bytes: u64) {}
    /// Bytes streamed from a source.
    fn bytes(&self, _n: u64) {}
    /// A blob reached a target.
    fn blob_done(&self, _target: &str, _digest: &Digest, _size: u64, _outcome: BlobOutcome) {}
}

/// Progress that is not shown.
pub struct NoProgress;
impl Progress for NoProgress {}

/// Where an image comes from.
#[derive(Clone)]
pub struct Source {
    /// The transport for the source registry.
    pub transport: Arc<dyn Transport>,
    /// Tag or digest reference.
    pub reference: Reference,
}

/// Where an image goes.
#[derive(Clone)]
pub struct Target {
    /// The transport for the target registry.
    pub transport: Arc<dyn Transport>,
    /// The target repository (tag and digest of the reference are ignored).
    pub reference: Reference,
    /// Tags to point at the image; none copies by digest only.
    pub tags: Vec<String>,
}

impl Target {
    pub(crate) fn repo(&self) -> &str {
        self.reference.repository()
    }
    pub(crate) fn display(&self) -> String {
        self.reference.repository_only().to_string()
    }
}

/// `registry/repository` for messages; an OCI layout (whose repository is empty) is its path,
/// an archive its path and image name.
pub(crate) fn location(transport: &dyn Transport, repo: &str) -> String {
    if repo.is_empty() {
        transport.name().to_string()
    } else if crate::reference::archive_of(transport.name()).is_some() {
        // A docker archive's repository is its image's name.
        format!("{}:{repo}", transport.name())
    } else {
        format!("{}/{repo}", transport.name())
    }
}

/// What to copy and how.
#[derive(Clone)]
pub struct CopyOptions {
    /// Platforms wanted; empty = all.
    pub platforms: Vec<Platform>,
    /// Move target tags that point at another image.
    pub force: bool,
    /// Read and check, write nothing.
    pub dry_run: bool,
    /// Copy foreign (non-distributable) layers.
    pub include_foreign: bool,
    /// Copy referrers (signatures, SBOMs, attestations).
    pub referrers: bool,
    /// Progress sink.
    pub progress: Arc<dyn Progress>,
    /// Before a target tag is moved off another image, tag that image with this template
    /// (see [`backup`]) so it stays reachable.
    pub backup_tag: Option<String>,
    /// The source repository's tags, when the caller has listed them already (saves the tag
    /// list that finding tag-attached signatures needs). Tags not of the `<algorithm>-<hex>…`
    /// form may be left out: only those are looked up.
    pub source_tags: Option<Arc<std::collections::HashSet<String>>>,
    /// Per target, in order: the digest the caller last confirmed that target's tags at (the
    /// daemon's memory). A target whose entry is what the source resolves to is up to date
    /// without being asked; empty or `None`: the target is asked.
    pub confirmed: Vec<Option<Digest>>,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            platforms: Vec::new(),
            force: false,
            dry_run: false,
            include_foreign: false,
            referrers: true,
            progress: Arc::new(NoProgress),
            backup_tag: None,
            source_tags: None,
            confirmed: Vec::new(),
        }
    }
}

/// Engine limits.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Blob transfers in flight in the whole process.
    pub max_concurrent_blobs: usize,
    /// Images copied at once in the whole process.
    pub max_concurrent_images: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            max_concurrent_blobs: 6,
            // As `[daemon] max_concurrent_images` (config::DEFAULT_MAX_CONCURRENT_IMAGES).
            max_concurrent_images: 8,
        }
    }
}
