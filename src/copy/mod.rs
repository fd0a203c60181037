//! The copy engine: one source image to one or more target repositories, byte for byte.
//!
//! Order of work, which is what makes a mirror safe to read while it is being written:
//! 1. resolve the source reference to a digest **once** and read everything by that digest;
//! 2. check the targets first, cheapest first: a target tag already at the wanted digest costs one
//!    HEAD and nothing else; a target tag at another digest stops the copy before anything is
//!    written, unless forced;
//! 3. blobs (configs and layers), each verified on the way ([`blob`]);
//! 4. image manifests by digest, then nested indexes, then the top manifest — by tag when there
//!    are tags, so the tag moves **last**, when every part it points at is present.
//!
//! Manifests are pushed with the bytes fetched, so digests at the target equal the source's. The
//! one exception is the platform filter, which must write a new index; the report says so and
//! gives the new digest.
//!
//! One engine is shared by everything a process copies: a blob bound for a repository is
//! transferred once however many images or platforms need it at the same time, and the engine
//! remembers where it put blobs so later copies into the same registry mount instead of upload.

pub mod backup;
mod blob;
pub mod compose;
mod error;
#[cfg(test)]
mod memory;
mod options;
mod push;
mod referrers;
mod report;
mod tee;
#[cfg(test)]
mod tests;
mod transfer;
mod walk;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use tokio::sync::Semaphore;

pub use blob::BlobOutcome;
pub use error::CopyError;
pub(crate) use options::location;
pub use options::{CopyOptions, EngineOptions, NoProgress, Progress, Source, Target};
pub use report::{CopyReport, TargetReport, TargetStatus, error_chain};
pub use walk::SourceImage;

use crate::digest::Digest;
use crate::manifest::Manifest;
use crate::registry::RegistryError;
use crate::registry::retry::RetryPolicy;

type SharedTransfer = Shared<BoxFuture<'static, Result<BlobOutcome, Arc<CopyError>>>>;
/// (target registry, target repository, blob digest): one transfer each at a time.
type TransferKey = (String, String, Digest);

/// How a failed blob upload is tried again: from a fresh source read, three times at most, and
/// never waiting longer in all than a minute (the HTTP layer below has already retried each
/// request that could be); a `Retry-After` beyond that fails the blob at once.
const BLOB_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 3,
    base_delay: std::time::Duration::from_millis(500),
    max_delay: std::time::Duration::from_secs(10),
    max_elapsed: std::time::Duration::from_secs(60),
};

/// Blob locations remembered for mounts, at most this many.
const MAX_LOCATIONS: usize = 200_000;

/// (target registry, target repository) → whether it had no tags, asked once for all the
/// images copied into it at the same time.
type FreshProbe = Shared<BoxFuture<'static, bool>>;
/// How long a target repository's "has no tags" answer is used. It changes as soon as the first
/// image lands, so it is trusted only for the copies that start together (one `sync` run), not
/// across a daemon's runs: a repository that has tags again gets its blobs HEADed first.
const FRESH_TTL: std::time::Duration = std::time::Duration::from_secs(60);
/// Most target repositories remembered (cleared past this).
const MAX_FRESH: usize = 10_000;

struct Inner {
    blob_permits: Arc<Semaphore>,
    /// How a failed blob upload is tried again.
    blob_retry: RetryPolicy,
    image_permits: Arc<Semaphore>,
    inflight: Mutex<HashMap<TransferKey, (u64, SharedTransfer)>>,
    located: Mutex<HashMap<(String, Digest), String>>,
    fresh: Mutex<HashMap<(String, String), (Instant, FreshProbe)>>,
    next_id: AtomicU64,
}

/// The copy engine. Cheap to clone; clones share limits, in-flight transfers and memory.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Default for Engine {
    fn default() -> Self {
        Engine::new(EngineOptions::default())
    }
}

#[derive(Default)]
struct Counters {
    blobs_copied: AtomicU64,
    blobs_skipped: AtomicU64,
    blobs_mounted: AtomicU64,
    bytes_copied: AtomicU64,
    bytes_mounted: AtomicU64,
    bytes_skipped: AtomicU64,
    manifests_pushed: AtomicU64,
    referrers_copied: AtomicU64,
    backups: Mutex<Vec<(String, Digest)>>,
}

impl Engine {
    /// A new engine.
    pub fn new(opts: EngineOptions) -> Self {
        Engine::with_blob_retry(opts, BLOB_RETRY)
    }

    /// A new engine retrying failed blob uploads by `blob_retry`.
    fn with_blob_retry(opts: EngineOptions, blob_retry: RetryPolicy) -> Self {
        Engine {
            inner: Arc::new(Inner {
                blob_permits: Arc::new(Semaphore::new(opts.max_concurrent_blobs.max(1))),
                blob_retry,
                image_permits: Arc::new(Semaphore::new(opts.max_concurrent_images.max(1))),
                inflight: Mutex::new(HashMap::new()),
                located: Mutex::new(HashMap::new()),
                fresh: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(0),
            }),
        }
    }

    /// Copies `source` to every target. Source problems and tag conflicts fail the whole call
    /// before anything is written; a failure at one target is reported in its [`TargetReport`]
    /// and does not stop the others.
    pub async fn copy(
        &self,
        source: &Source,
        targets: &[Target],
        opts: &CopyOptions,
    ) -> Result<CopyReport, CopyError> {
        let _permit = self
            .inner
            .image_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| CopyError::Internal {
                message: "engine closed".into(),
            })?;
        self.copy_unlimited(source, targets, opts).await
    }

    /// [`Engine::copy`] without taking an image permit (for artifacts copied inside an image
    /// copy, which already holds one: taking another could deadlock).
    async fn copy_unlimited(
        &self,
        source: &Source,
        targets: &[Target],
        opts: &CopyOptions,
    ) -> Result<CopyReport, CopyError> {
        let started = Instant::now();
        let src = &source.transport;
        let repo = source.reference.repository();
        let src_display = source.reference.to_string();

        // 1. Resolve the source to a digest, once. With a platform filter the target digest is
        // that of the filtered index, which needs the source index: one GET (by tag, verified
        // against its own bytes) then serves both; without a filter one HEAD does.
        let mut root: Option<Manifest> = None;
        let source_digest = match source.reference.digest() {
            Some(d) => d.clone(),
            None => {
                let tag = source.reference.manifest_reference();
                let head = if opts.platforms.is_empty() {
                    src.manifest_head(repo, &tag)
                        .await
                        .map_err(|e| CopyError::source(&src_display, e))?
                        .map(|h| h.digest)
                } else {
                    None
                };
                match head {
                    Some(d) => d,
                    None => {
                        let m = src
                            .manifest_get(repo, &tag)
                            .await
                            .map_err(|e| CopyError::source(&src_display, e))?;
                        let d = m.digest().clone();
                        root = Some(m);
                        d
                    }
                }
            }
        };
        let fetch_root = |root: Option<Manifest>| async {
            match root {
                Some(m) => Ok(m),
                None => src
                    .manifest_get(repo, &source_digest.to_string())
                    .await
                    .map_err(|e| CopyError::source(&src_display, e)),
            }
        };
        let mut selected: Option<(Manifest, bool)> = None;
        let wanted = if opts.platforms.is_empty() {
            source_digest.clone()
        } else {
            let m = fetch_root(root.take()).await?;
            let (top, filtered) = walk::select_platforms(m, &opts.platforms)?;
            let d = top.digest().clone();
            selected = Some((top, filtered));
            d
        };

        // 2. Check targets: up to date, conflicting, or to be written.
        let mut reports: Vec<TargetReport> = Vec::new();
        let mut pending: Vec<usize> = Vec::new();
        let mut conflicts = Vec::new();
        for (i, t) in targets.iter().enumerate() {
            let mut report = TargetReport::new(t.display(), t.tags.clone(), wanted.clone());
            let check = self.check_target(t, &wanted).await;
            match check {
                Err(error) => {
                    report.fail(CopyError::Target {
                        target: t.display(),
                        error: Box::new(error),
                    });
                }
                Ok(state) => {
                    if state.up_to_date {
                        report.status = TargetStatus::UpToDate;
                    } else {
                        pending.push(i);
                    }
                    report.previous = state.previous.clone();
                    for (tag, existing) in state.conflicts {
                        if opts.force {
                            continue;
                        }
                        conflicts.push(CopyError::Conflict {
                            target: format!("{}:{tag}", t.display()),
                            existing,
                            wanted: wanted.clone(),
                        });
                    }
                }
            }
            reports.push(report);
        }
        if let Some(c) = conflicts.into_iter().next() {
            return Err(c);
        }

        let mut report = CopyReport {
            source: src_display.clone(),
            source_digest: source_digest.clone(),
            media_type: String::new(),
            filtered: false,
            platforms: Vec::new(),
            images: 0,
            manifests: 0,
            blobs: 0,
            bytes: 0,
            skipped_foreign: 0,
            dry_run: opts.dry_run,
            targets: Vec::new(),
            seconds: 0.0,
        };
        if pending.is_empty() {
            report.targets = reports;
            report.seconds = started.elapsed().as_secs_f64();
            return Ok(report);
        }

        // 3. Read the source tree (once for all targets).
        let (top, filtered) = match selected {
            Some(sel) => sel,
            None => (fetch_root(root.take()).await?, false),
        };
        let walk_opts = walk::WalkOptions {
            include_foreign: opts.include_foreign,
        };
        let image = walk::walk(src, repo, source_digest.clone(), top, filtered, &walk_opts).await?;
        report.media_type = image.root.media_type().to_string();
        report.filtered = image.filtered;
        report.platforms = image.platforms.clone();
        report.images = image.image_count();
        report.manifests = image.children.len() + 1;
        report.blobs = image.blobs.len();
        // Saturating: a hostile manifest's sizes (2^63 twice) must not overflow (a panic in debug
        // builds); the verifying stream refuses such a blob when it is read.
        report.bytes = image
            .blobs
            .iter()
            .fold(0u64, |n, d| n.saturating_add(d.size));
        report.skipped_foreign = image.skipped_foreign.len();

        // Referrers are discovered once at the source, then copied to every target. They are
        // needed only once an image's own manifests are written, so the discovery (a referrers
        // request and a tag list at most) runs while the blobs move instead of before them.
        let discovery = async {
            if opts.referrers {
                referrers::discover(src, repo, &image, opts.source_tags.as_deref()).await
            } else {
                Vec::new()
            }
        }
        .boxed()
        .shared();

        // Blobs, to every target at once: each read from the source once ([`blob`]); a target
        // whose blobs failed gets no manifest.
        let all_counters: Vec<Counters> = pending.iter().map(|_| Counters::default()).collect();
        let ts: Vec<&Target> = pending.iter().map(|&i| &targets[i]).collect();
        let push = self.push_blobs(source, &ts, &image, opts, &all_counters);
        let (blob_failures, _) = futures_util::future::join(push, discovery.clone()).await;

        let previous: Vec<Vec<(String, Digest)>> =
            reports.iter().map(|r| r.previous.clone()).collect();
        // Futures are collected before they are polled: a stream adapter holding a closure
        // across an await makes the whole copy future !Send (rust-lang/rust#102211).
        let futs: Vec<_> = pending
            .into_iter()
            .zip(blob_failures)
            .zip(all_counters)
            .map(|((i, failure), counters)| {
                let image = &image;
                let t = &targets[i];
                let discovery = discovery.clone();
                let previous = &previous[i];
                async move {
                    if let Some(e) = failure {
                        return (i, Err(e));
                    }
                    let push = async {
                        self.push_manifests(t, image, opts, &counters, previous)
                            .await
                            .map(|_| ())
                    };
                    let (r, referrer_items) = futures_util::future::join(push, discovery).await;
                    let r = match r {
                        Ok(()) if !referrer_items.is_empty() && !opts.dry_run => {
                            referrers::copy_all(self, source, t, &referrer_items, opts, &counters)
                                .await
                        }
                        other => other,
                    };
                    (i, r.map(|()| counters))
                }
            })
            .collect();
        let results = futures_util::future::join_all(futs).await;
        for (i, r) in results {
            let tr = &mut reports[i];
            match r {
                Ok(c) => {
                    tr.status = if opts.dry_run {
                        TargetStatus::DryRun
                    } else {
                        TargetStatus::Copied
                    };
                    tr.blobs_copied = c.blobs_copied.load(Ordering::Relaxed);
                    tr.blobs_skipped = c.blobs_skipped.load(Ordering::Relaxed);
                    tr.blobs_mounted = c.blobs_mounted.load(Ordering::Relaxed);
                    tr.bytes_copied = c.bytes_copied.load(Ordering::Relaxed);
                    tr.bytes_mounted = c.bytes_mounted.load(Ordering::Relaxed);
                    tr.bytes_skipped = c.bytes_skipped.load(Ordering::Relaxed);
                    tr.manifests_pushed = c.manifests_pushed.load(Ordering::Relaxed);
                    tr.referrers_copied = c.referrers_copied.load(Ordering::Relaxed);
                    tr.backups = c.backups.into_inner().expect("backups lock");
                }
                Err(e) => tr.fail(e),
            }
        }
        report.targets = reports;
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }

    /// HEADs each target tag (or the digest when there are no tags).
    async fn check_target(
        &self,
        t: &Target,
        wanted: &Digest,
    ) -> Result<TargetState, RegistryError> {
        let mut state = TargetState {
            up_to_date: true,
            conflicts: Vec::new(),
            previous: Vec::new(),
        };
        if t.tags.is_empty() {
            let head = t
                .transport
                .manifest_head(t.repo(), &wanted.to_string())
                .await?;
            state.up_to_date = head.is_some();
            return Ok(state);
        }
        for tag in &t.tags {
            match t.transport.manifest_head(t.repo(), tag).await? {
                Some(h) if &h.digest == wanted => {}
                Some(h) => {
                    state.up_to_date = false;
                    state.previous.push((tag.clone(), h.digest.clone()));
                    state.conflicts.push((tag.clone(), h.digest));
                }
                None => state.up_to_date = false,
            }
        }
        Ok(state)
    }
}

struct TargetState {
    up_to_date: bool,
    conflicts: Vec<(String, Digest)>,
    previous: Vec<(String, Digest)>,
}

#[cfg(test)]
mod send_check {
    #[allow(dead_code)]
    fn copy_future_is_send(
        e: &super::Engine,
        s: &super::Source,
        t: &[super::Target],
        o: &super::CopyOptions,
    ) {
        fn is_send<T: Send>(_: T) {}
        is_send(e.copy(s, t, o));
    }
}
