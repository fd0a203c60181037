//! What a copy did, for people (the CLI summary) and for programs (`--json`, the daemon status).

use std::sync::Arc;
use std::time::Instant;

use serde::{Serialize, Serializer};

use super::CopyError;
use crate::digest::Digest;

/// What the engine did at one target: counted as the work happens, reported as is (one type
/// for both, so no count is copied by hand).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TransferCounts {
    /// Blobs streamed from the source.
    pub blobs_copied: u64,
    /// Blobs the target had.
    pub blobs_skipped: u64,
    /// Blobs mounted from another repository.
    pub blobs_mounted: u64,
    /// Bytes streamed.
    pub bytes_copied: u64,
    /// Bytes mounted.
    pub bytes_mounted: u64,
    /// Bytes the target had.
    pub bytes_skipped: u64,
    /// Manifests written.
    pub manifests_pushed: u64,
    /// Referrer artifacts copied (signatures, SBOMs, attestations).
    pub referrers_copied: u64,
}

impl TransferCounts {
    /// Counts one blob that reached the target as `outcome`.
    pub(super) fn blob(&mut self, outcome: super::BlobOutcome, size: u64) {
        use super::BlobOutcome::*;
        let (n, bytes) = match outcome {
            Skipped => (&mut self.blobs_skipped, &mut self.bytes_skipped),
            Mounted | WouldMount => (&mut self.blobs_mounted, &mut self.bytes_mounted),
            Copied | WouldCopy => (&mut self.blobs_copied, &mut self.bytes_copied),
        };
        *n += 1;
        *bytes = bytes.saturating_add(size);
    }
}

/// The outcome at one target. A failure keeps the typed error (so callers can tell a conflict
/// from a transport failure); reports show its whole cause chain as text.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "error")]
pub enum TargetStatus {
    /// Not reached (the copy stopped before).
    Pending,
    /// Already at the wanted digest: nothing was written.
    UpToDate,
    /// Written.
    Copied,
    /// Dry run: nothing written; the counts say what would be.
    DryRun,
    /// Failed with this error.
    Failed(#[serde(serialize_with = "chain_text")] Arc<CopyError>),
}

impl TargetStatus {
    /// A failure with `error`.
    pub fn failed(error: CopyError) -> Self {
        TargetStatus::Failed(Arc::new(error))
    }

    /// The failure's whole cause chain as one line, if this target failed.
    pub fn error_text(&self) -> Option<String> {
        match self {
            TargetStatus::Failed(e) => Some(error_chain(&**e)),
            _ => None,
        }
    }
}

/// Two statuses are equal when they are the same state; two failures when their messages are.
impl PartialEq for TargetStatus {
    fn eq(&self, other: &Self) -> bool {
        use TargetStatus::*;
        match (self, other) {
            (Failed(a), Failed(b)) => Arc::ptr_eq(a, b) || error_chain(&**a) == error_chain(&**b),
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

impl Eq for TargetStatus {}

fn chain_text<S: Serializer>(e: &Arc<CopyError>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&error_chain(&**e))
}

/// What happened at one target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    /// `registry/repository`.
    pub target: String,
    /// Tags set (or to be set).
    pub tags: Vec<String>,
    /// The digest the target has (or would have) for the image.
    pub digest: Digest,
    /// Outcome.
    pub status: TargetStatus,
    /// Tags that pointed at another image before, and what at.
    pub previous: Vec<(String, Digest)>,
    /// What was moved, mounted, skipped and written there.
    #[serde(flatten)]
    pub counts: TransferCounts,
    /// Backup tags written before tags moved, and the image each keeps.
    pub backups: Vec<(String, Digest)>,
}

impl TargetReport {
    pub(super) fn new(target: String, tags: Vec<String>, digest: Digest) -> Self {
        TargetReport {
            target,
            tags,
            digest,
            status: TargetStatus::Pending,
            previous: Vec::new(),
            counts: TransferCounts::default(),
            backups: Vec::new(),
        }
    }

    pub(super) fn fail(&mut self, e: CopyError) {
        self.status = TargetStatus::failed(e);
    }

    /// Phase 6 for a target that was written: its counts and backups, or its failure.
    pub(super) fn settle(
        &mut self,
        outcome: Result<(TransferCounts, Vec<(String, Digest)>), CopyError>,
        dry_run: bool,
    ) {
        match outcome {
            Ok((counts, backups)) => {
                self.status = if dry_run {
                    TargetStatus::DryRun
                } else {
                    TargetStatus::Copied
                };
                self.counts = counts;
                self.backups = backups;
            }
            Err(e) => self.fail(e),
        }
    }

    /// Whether this target ended well.
    pub fn ok(&self) -> bool {
        !matches!(self.status, TargetStatus::Failed(_) | TargetStatus::Pending)
    }
}

/// What one copy did.
#[derive(Debug, Clone, Serialize)]
pub struct CopyReport {
    /// The source reference as given.
    pub source: String,
    /// The digest it resolved to.
    pub source_digest: Digest,
    /// Media type of what the targets get at the top.
    pub media_type: String,
    /// Whether the platform filter wrote a new index (target digest differs from the source's).
    pub filtered: bool,
    /// Platforms copied.
    pub platforms: Vec<String>,
    /// Image (platform) manifests.
    pub images: usize,
    /// Manifests in the tree.
    pub manifests: usize,
    /// Blobs in the tree.
    pub blobs: usize,
    /// Bytes of blobs in the tree.
    pub bytes: u64,
    /// Foreign layers left out.
    pub skipped_foreign: usize,
    /// Whether nothing was written on purpose.
    pub dry_run: bool,
    /// Each target's outcome.
    pub targets: Vec<TargetReport>,
    /// Wall time.
    pub seconds: f64,
}

impl CopyReport {
    /// The report of a copy of `source`, resolved to `source_digest`, before the walk.
    pub(super) fn new(source: &super::Source, source_digest: &Digest, dry_run: bool) -> Self {
        CopyReport {
            source: source.reference.to_string(),
            source_digest: source_digest.clone(),
            media_type: String::new(),
            filtered: false,
            platforms: Vec::new(),
            images: 0,
            manifests: 0,
            blobs: 0,
            bytes: 0,
            skipped_foreign: 0,
            dry_run,
            targets: Vec::new(),
            seconds: 0.0,
        }
    }

    /// What the walk found.
    pub(super) fn describe(&mut self, image: &super::SourceImage) {
        self.media_type = image.root.media_type().to_string();
        self.filtered = image.filtered;
        self.platforms = image.platforms.clone();
        self.images = image.image_count();
        self.manifests = image.children.len() + 1;
        self.blobs = image.blobs.len();
        // Saturating: a hostile manifest's sizes (2^63 twice) must not overflow (a panic in
        // debug builds); the verifying stream refuses such a blob when it is read.
        self.bytes = image
            .blobs
            .iter()
            .fold(0u64, |n, d| n.saturating_add(d.size));
        self.skipped_foreign = image.skipped_foreign.len();
    }

    /// The finished report, with `targets`, timed from `started`.
    pub(super) fn finish(mut self, targets: Vec<TargetReport>, started: Instant) -> Self {
        self.targets = targets;
        self.seconds = started.elapsed().as_secs_f64();
        self
    }

    /// Whether every target ended well.
    pub fn ok(&self) -> bool {
        self.targets.iter().all(TargetReport::ok)
    }
}

/// An error and all its causes on one line, each cause once.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let msg = s.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        cur = s.source();
    }
    out
}
