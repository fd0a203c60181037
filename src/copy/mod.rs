//! The copy engine: one source image to one or more target repositories, byte for byte.
//!
//! A copy runs in named phases, each handing a typed result to the next, in the order that
//! makes a mirror safe to read while it is being written:
//! 1. **resolve** the source reference to a digest **once** and read everything by that digest
//!    ([`resolve`] → `Resolved`);
//! 2. **check** the targets, cheapest first: a target tag already at the wanted digest costs one
//!    HEAD and nothing else; a target tag at another digest stops the copy before anything is
//!    written, unless forced ([`check`] → `Checked`); the tag HEADs are sent while phase 1 runs,
//!    since they need nothing from it;
//! 3. **walk** the source tree once for every target ([`walk`] → [`SourceImage`]);
//! 4. **transfer** the blobs (configs and layers) to every target at once, each read from the
//!    source once and verified on the way ([`transfer`], [`blob`] → a failure or not per target,
//!    counted in [`TransferCounts`]);
//! 5. **publish** image manifests by digest, then nested indexes, then the top manifest — by tag
//!    when there are tags, so the tag moves **last**, when every part it points at is present —
//!    then the referrers ([`publish`]);
//! 6. **report** what happened at each target ([`report`] → [`CopyReport`]).
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
mod check;
pub mod compose;
mod error;
#[cfg(test)]
mod memory;
mod options;
mod publish;
mod referrers;
mod report;
mod resolve;
mod tee;
#[cfg(test)]
mod tests;
mod transfer;
mod walk;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::future::{BoxFuture, Shared, join, join_all};
use tokio::sync::Semaphore;

pub use blob::BlobOutcome;
pub use error::CopyError;
pub(crate) use options::location;
pub use options::{CopyOptions, EngineOptions, NoProgress, Progress, Source, Target};
pub use report::{CopyReport, TargetReport, TargetStatus, TransferCounts, error_chain};
pub use walk::SourceImage;

use crate::digest::Digest;
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
    /// copy, which already holds one: taking another could deadlock). The phases in order.
    async fn copy_unlimited(
        &self,
        source: &Source,
        targets: &[Target],
        opts: &CopyOptions,
    ) -> Result<CopyReport, CopyError> {
        let started = Instant::now();
        // The targets' tags are HEADed while the source resolves (see `check`).
        let (resolved, looked) = join(
            self.resolve(source, opts),
            check::look(targets, &opts.confirmed),
        )
        .await;
        let resolved = resolved?;
        let checked = self
            .judge_targets(targets, looked, &resolved.wanted, opts)
            .await?;
        let mut report = CopyReport::new(source, &resolved.source_digest, opts.dry_run);
        if checked.pending.is_empty() {
            return Ok(report.finish(checked.reports, started));
        }
        let image = self.read_source(source, resolved, opts).await?;
        report.describe(&image);
        let pending: Vec<&Target> = checked.pending.iter().map(|&i| &targets[i]).collect();
        let discovery = referrers::discovery(source, &image, opts);
        let mut counts = vec![TransferCounts::default(); pending.len()];
        let transfer = self.transfer(source, &pending, &image, opts, &mut counts);
        let (failures, _) = join(transfer, discovery.clone()).await;
        // Futures are collected before they are polled: a stream adapter holding a closure
        // across an await makes the whole copy future !Send (rust-lang/rust#102211).
        let publish: Vec<_> = checked
            .pending
            .iter()
            .zip(&pending)
            .zip(failures.into_iter().zip(counts))
            .map(|((&i, t), (failure, mut counts))| {
                let (image, discovery) = (&image, discovery.clone());
                let previous = &checked.reports[i].previous;
                async move {
                    if let Some(e) = failure {
                        return Err(e);
                    }
                    let published = self
                        .publish(source, t, image, opts, previous, discovery)
                        .await?;
                    counts.manifests_pushed += published.manifests;
                    counts.referrers_copied += published.referrers;
                    Ok((counts, published.backups))
                }
            })
            .collect();
        let published = join_all(publish).await;
        let mut reports = checked.reports;
        for (&i, outcome) in checked.pending.iter().zip(published) {
            reports[i].settle(outcome, opts.dry_run);
        }
        Ok(report.finish(reports, started))
    }
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
