//! Proving a mirror intact: re-read an image at a target and check every digest and size.
//!
//! A registry's storage can rot (a flipped bit on disk, a blob deleted by hand, a garbage
//! collection that went wrong) while its tags still answer; nothing notices until a pull fails
//! on a node. An audit reads the image the way a pull does, through the same transport the
//! copy uses: the top manifest and every child manifest (each verified against its digest),
//! then every config and layer blob, streamed through a [`VerifyingStream`] (digest and exact
//! size, a chunk at a time: memory stays bounded whatever the layer size) and dropped.
//!
//! `--sample N%` checks the content of only some blobs, chosen by their digest: a blob is
//! read when the first 8 bytes of its digest, as a number, modulo 10,000 fall under N × 100.
//! Digests are uniform, so that is N% of the blobs (and roughly of the bytes); the choice is
//! the same on every run, so a repeated sampled audit re-reads the same blobs — run audits with
//! different N, or a full one now and then, to cover the rest. Blobs not sampled are still
//! HEADed: a missing blob is always found. Manifests are always read whole (they are small and
//! everything hangs off them).

pub mod rule;

use std::collections::HashSet;

use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use serde::Serialize;

use crate::digest::{Digest, VerifyingStream};
use crate::manifest::{Descriptor, Manifest, ManifestView};
use crate::reference::Reference;
use crate::registry::{ErrorKind, RegistryError, Transport};

/// Blobs read at once by one audit.
const BLOB_CONCURRENCY: usize = 4;

/// How much of an image's content to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Hundredths of a percent of blobs whose content is read (10,000 = all).
    basis_points: u32,
}

impl Sample {
    /// Every blob.
    pub const ALL: Sample = Sample {
        basis_points: 10_000,
    };

    /// Parses `N%` or `N` (0 < N ≤ 100, decimals allowed: `0.5%`).
    pub fn parse(s: &str) -> Result<Sample, String> {
        let n = s.trim().trim_end_matches('%');
        let pct: f64 = n
            .parse()
            .map_err(|_| format!("{s:?} is not a percentage (e.g. 10%)"))?;
        if !(pct > 0.0 && pct <= 100.0) {
            return Err(format!("{s:?}: give a percentage above 0 and at most 100"));
        }
        Ok(Sample {
            basis_points: ((pct * 100.0).round() as u32).max(1),
        })
    }

    /// Whether the content of the blob `digest` is read.
    pub fn includes(&self, digest: &Digest) -> bool {
        if self.basis_points >= 10_000 {
            return true;
        }
        let head = digest.hex().get(..16).unwrap_or("0");
        let n = u64::from_str_radix(head, 16).unwrap_or(0);
        (n % 10_000) < u64::from(self.basis_points)
    }
}

/// What is wrong with one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    /// The registry does not have it.
    Missing,
    /// Its content does not match its digest or size.
    Corrupt,
    /// It could not be read (registry error other than "not there").
    Unreadable,
}

/// One object that failed the audit.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// `manifest` or `blob`.
    pub kind: &'static str,
    /// Its digest.
    pub digest: String,
    /// What is wrong.
    pub problem: Problem,
    /// The registry's or the check's words.
    pub detail: String,
}

/// The audit of one image.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditReport {
    /// The image as asked.
    pub image: String,
    /// Its digest, when the top manifest could be read.
    pub digest: Option<String>,
    /// Manifests read and verified.
    pub manifests: u64,
    /// Blobs whose content was read and verified.
    pub blobs_read: u64,
    /// Blobs only checked to exist (sampled out).
    pub blobs_headed: u64,
    /// Bytes read and verified.
    pub bytes_read: u64,
    /// Non-distributable layers, not expected at a mirror, not checked.
    pub foreign_skipped: u64,
    /// Everything that failed.
    pub findings: Vec<Finding>,
}

impl AuditReport {
    /// Whether everything checked was intact.
    pub fn intact(&self) -> bool {
        self.findings.is_empty()
    }
}

fn classify(e: &RegistryError) -> Problem {
    match e.kind {
        ErrorKind::NotFound => Problem::Missing,
        ErrorKind::DigestInvalid | ErrorKind::Invalid => Problem::Corrupt,
        _ => Problem::Unreadable,
    }
}

/// Audits the image `reference` names at `t` (its repository at that registry).
pub async fn audit(t: &dyn Transport, reference: &Reference, sample: Sample) -> AuditReport {
    let repo = reference.repository();
    let mut report = AuditReport {
        image: reference.to_string(),
        ..AuditReport::default()
    };
    let top = match t.manifest_get(repo, &reference.manifest_reference()).await {
        Ok(m) => m,
        Err(e) => {
            report.findings.push(Finding {
                kind: "manifest",
                digest: reference.manifest_reference(),
                problem: classify(&e),
                detail: e.to_string(),
            });
            return report;
        }
    };
    report.digest = Some(top.digest().to_string());
    let blobs = walk_manifests(t, repo, top, &mut report).await;
    check_blobs(t, repo, blobs, sample, &mut report).await;
    report
}

/// Reads the manifest tree from `top`; the blobs it names, once each.
async fn walk_manifests(
    t: &dyn Transport,
    repo: &str,
    top: Manifest,
    report: &mut AuditReport,
) -> Vec<Descriptor> {
    let mut blobs = Vec::new();
    let mut seen = HashSet::new();
    let mut queue = vec![top];
    while let Some(m) = queue.pop() {
        report.manifests += 1;
        match m.view() {
            ManifestView::Image(i) => {
                for d in std::iter::once(&i.config).chain(&i.layers) {
                    if d.is_foreign() {
                        report.foreign_skipped += 1;
                    } else if seen.insert(d.digest.clone()) {
                        blobs.push(d.clone());
                    }
                }
            }
            ManifestView::Index(ix) => {
                for child in &ix.manifests {
                    if !seen.insert(child.digest.clone()) {
                        continue;
                    }
                    match t.manifest_get(repo, &child.digest.to_string()).await {
                        Ok(c) => queue.push(c),
                        Err(e) => report.findings.push(Finding {
                            kind: "manifest",
                            digest: child.digest.to_string(),
                            problem: classify(&e),
                            detail: e.to_string(),
                        }),
                    }
                }
            }
        }
    }
    blobs
}

enum BlobResult {
    Read(u64),
    Headed,
    Failed(Finding),
}

async fn check_blobs(
    t: &dyn Transport,
    repo: &str,
    blobs: Vec<Descriptor>,
    sample: Sample,
    report: &mut AuditReport,
) {
    let results: Vec<BlobResult> = stream::iter(blobs)
        .map(|d| check_blob(t, repo, d, sample))
        .buffer_unordered(BLOB_CONCURRENCY)
        .collect()
        .await;
    for r in results {
        match r {
            BlobResult::Read(n) => {
                report.blobs_read += 1;
                report.bytes_read += n;
            }
            BlobResult::Headed => report.blobs_headed += 1,
            BlobResult::Failed(f) => report.findings.push(f),
        }
    }
    report.findings.sort_by(|a, b| a.digest.cmp(&b.digest));
}

async fn check_blob(t: &dyn Transport, repo: &str, d: Descriptor, sample: Sample) -> BlobResult {
    let failed = |problem, detail: String| {
        BlobResult::Failed(Finding {
            kind: "blob",
            digest: d.digest.to_string(),
            problem,
            detail,
        })
    };
    if !sample.includes(&d.digest) {
        return match t.blob_head(repo, &d.digest).await {
            Ok(Some(size)) if size == d.size => BlobResult::Headed,
            Ok(Some(size)) => failed(
                Problem::Corrupt,
                format!("the registry says {size} bytes, the manifest {}", d.size),
            ),
            Ok(None) => failed(Problem::Missing, "not in the repository".into()),
            Err(e) => failed(classify(&e), e.to_string()),
        };
    }
    let body = match t.blob_get(repo, &d.digest).await {
        Ok(b) => b,
        Err(e) => return failed(classify(&e), e.to_string()),
    };
    let mut s = VerifyingStream::new(body.stream, d.digest.clone(), Some(d.size));
    let mut n = 0u64;
    loop {
        match s.try_next().await {
            Ok(Some(chunk)) => n += chunk.len() as u64,
            Ok(None) => return BlobResult::Read(n),
            Err(e) => {
                let problem = if crate::digest::VerifyError::digest_error(&e).is_some() {
                    Problem::Corrupt
                } else {
                    Problem::Unreadable
                };
                return failed(problem, e.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_parses_and_is_deterministic() {
        assert!(Sample::parse("0%").is_err());
        assert!(Sample::parse("101").is_err());
        assert!(Sample::parse("ten").is_err());
        assert_eq!(Sample::parse("100%").unwrap(), Sample::ALL);
        let s = Sample::parse("10%").unwrap();
        let digests: Vec<Digest> = (0..2000u32)
            .map(|i| Digest::sha256_of(&i.to_le_bytes()))
            .collect();
        let picked = digests.iter().filter(|d| s.includes(d)).count();
        // 10% of 2,000, give or take the binomial spread (σ ≈ 13).
        assert!((150..=250).contains(&picked), "{picked}");
        let again = digests.iter().filter(|d| s.includes(d)).count();
        assert_eq!(picked, again);
        assert!(digests.iter().all(|d| Sample::ALL.includes(d)));
    }
}
