//! What a copy did, for people (the CLI summary) and for programs (`--json`, the daemon status).

use serde::Serialize;

use super::CopyError;
use crate::digest::Digest;

/// The outcome at one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
    /// Failed with this error (whole cause chain).
    Failed(String),
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
            blobs_copied: 0,
            blobs_skipped: 0,
            blobs_mounted: 0,
            bytes_copied: 0,
            bytes_mounted: 0,
            bytes_skipped: 0,
            manifests_pushed: 0,
            referrers_copied: 0,
            backups: Vec::new(),
        }
    }

    pub(super) fn fail(&mut self, e: CopyError) {
        self.status = TargetStatus::Failed(error_chain(&e));
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
