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
mod fanout;
mod referrers;
mod report;
mod walk;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use tokio::sync::Semaphore;

pub use blob::BlobOutcome;
pub use report::{CopyReport, TargetReport, TargetStatus, error_chain};
pub use walk::SourceImage;

use crate::digest::Digest;
use crate::manifest::{Manifest, Platform};
use crate::reference::Reference;
use crate::registry::{RegistryError, Transport};

/// Why a copy failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// Reading the source failed.
    #[error("reading {reference}: {error}")]
    Source {
        /// What was being read.
        reference: String,
        /// The transport error.
        #[source]
        error: Box<RegistryError>,
    },
    /// Checking or writing a target failed outside a blob transfer.
    #[error("target {target}: {error}")]
    Target {
        /// The target reference.
        target: String,
        /// The transport error.
        #[source]
        error: Box<RegistryError>,
    },
    /// A target tag points at another image and the copy was not forced.
    #[error(
        "target tag {target} already points at {existing}, not at {wanted} (the source); \
         nothing was copied — use --force (or on_conflict = \"overwrite\") to move it"
    )]
    Conflict {
        /// The target tag reference.
        target: String,
        /// What it points at now.
        existing: Digest,
        /// What the copy would put there.
        wanted: Digest,
    },
    /// One blob could not be transferred.
    #[error("blob {digest} from {source_repo} to {target_repo}: {error}")]
    Blob {
        /// The blob.
        digest: Digest,
        /// Where it was read.
        source_repo: String,
        /// Where it was written.
        target_repo: String,
        /// The transport error (DigestInvalid for content that failed verification).
        #[source]
        error: Box<RegistryError>,
    },
    /// The platform filter matched nothing.
    #[error("no platform of the source matches {wanted:?}; it has {available:?}")]
    NoPlatformMatch {
        /// Platforms asked for.
        wanted: Vec<String>,
        /// Platforms present.
        available: Vec<String>,
    },
    /// Indexes nested too deep.
    #[error("image {digest} nests indexes deeper than {max} levels")]
    TooDeep {
        /// Root digest.
        digest: Digest,
        /// The limit.
        max: usize,
    },
    /// Too many manifests in one tree.
    #[error("image {digest} has more than {max} manifests")]
    TooLarge {
        /// Root digest.
        digest: Digest,
        /// The limit.
        max: usize,
    },
    /// An index entry that is not a manifest.
    #[error("index entry {digest} has media type {media_type:?}, which is not a manifest")]
    UnsupportedChild {
        /// The entry.
        digest: Digest,
        /// Its media type.
        media_type: String,
    },
    /// A descriptor's size disagrees with the content.
    #[error("manifest {digest} is {actual} bytes but its descriptor says {declared}")]
    SizeLies {
        /// The manifest.
        digest: Digest,
        /// Declared size.
        declared: u64,
        /// Real size.
        actual: u64,
    },
    /// An attached artifact (signature, SBOM) could not be copied.
    #[error("copying attached artifact {digest}: {error}")]
    Referrer {
        /// The artifact.
        digest: Digest,
        /// What went wrong (cause chain).
        error: String,
    },
    /// A failure shared by several waiters on the same transfer.
    #[error(transparent)]
    Shared(Arc<CopyError>),
    /// A bug.
    #[error("internal error: {message}")]
    Internal {
        /// What happened.
        message: String,
    },
}

impl CopyError {
    fn source(what: impl std::fmt::Display, error: RegistryError) -> Self {
        CopyError::Source {
            reference: what.to_string(),
            error: Box::new(error),
        }
    }
}

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
    fn repo(&self) -> &str {
        self.reference.repository()
    }
    fn display(&self) -> String {
        self.reference.repository_only().to_string()
    }
}

/// `registry/repository` for messages; an OCI layout (whose repository is empty) is its path.
pub(crate) fn location(transport: &dyn Transport, repo: &str) -> String {
    if repo.is_empty() {
        transport.name().to_string()
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
    /// list that finding tag-attached signatures needs).
    pub source_tags: Option<Arc<std::collections::HashSet<String>>>,
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
            max_concurrent_images: 4,
        }
    }
}

type SharedTransfer = Shared<BoxFuture<'static, Result<BlobOutcome, Arc<CopyError>>>>;
/// (target registry, target repository, blob digest): one transfer each at a time.
type TransferKey = (String, String, Digest);

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
        Engine {
            inner: Arc::new(Inner {
                blob_permits: Arc::new(Semaphore::new(opts.max_concurrent_blobs.max(1))),
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

        // Several targets: each blob is read from the source once and teed to every target
        // that needs it ([`fanout`]); a target whose blobs failed gets no manifest.
        let fanned = pending.len() > 1;
        let mut blob_failures: Vec<Option<CopyError>> = pending.iter().map(|_| None).collect();
        let all_counters: Vec<Counters> = pending.iter().map(|_| Counters::default()).collect();
        if fanned {
            let ts: Vec<&Target> = pending.iter().map(|&i| &targets[i]).collect();
            let fan_out =
                self.fan_out_blobs(source, &ts, &image, opts, &all_counters, &mut blob_failures);
            futures_util::future::join(fan_out, discovery.clone()).await;
        }

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
                        if !fanned {
                            self.push_blobs(source, t, image, opts, &counters).await?;
                        }
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

    /// Counts a blob outcome for a target.
    fn count_blob(
        counters: &Counters,
        opts: &CopyOptions,
        target_name: &str,
        d: &crate::manifest::Descriptor,
        outcome: BlobOutcome,
    ) {
        let (n, bytes) = match outcome {
            BlobOutcome::Skipped => (&counters.blobs_skipped, &counters.bytes_skipped),
            BlobOutcome::Mounted | BlobOutcome::WouldMount => {
                (&counters.blobs_mounted, &counters.bytes_mounted)
            }
            BlobOutcome::Copied | BlobOutcome::WouldCopy => {
                (&counters.blobs_copied, &counters.bytes_copied)
            }
        };
        n.fetch_add(1, Ordering::Relaxed);
        bytes.fetch_add(d.size, Ordering::Relaxed);
        crate::metrics::record_blob(outcome, d.size);
        opts.progress
            .blob_done(target_name, &d.digest, d.size, outcome);
    }

    /// Every blob of `image` to several targets, each read from the source once.
    async fn fan_out_blobs(
        &self,
        source: &Source,
        targets: &[&Target],
        image: &SourceImage,
        opts: &CopyOptions,
        counters: &[Counters],
        failures: &mut [Option<CopyError>],
    ) {
        let names: Vec<String> = targets.iter().map(|t| t.display()).collect();
        for n in &names {
            opts.progress.target_started(
                n,
                image.blobs.len(),
                image
                    .blobs
                    .iter()
                    .fold(0u64, |n, d| n.saturating_add(d.size)),
            );
        }
        let jobs: Vec<_> = image
            .blobs
            .iter()
            .map(|d| {
                let job = fanout::GroupJob {
                    source: source.transport.clone(),
                    source_repo: source.reference.repository().to_string(),
                    descriptor: d.clone(),
                    branches: targets
                        .iter()
                        .map(|t| fanout::Branch {
                            target: t.transport.clone(),
                            repo: t.repo().to_string(),
                            mount_from: self.mount_source(source, t, &d.digest),
                        })
                        .collect(),
                    dry_run: opts.dry_run,
                };
                let permits = self.inner.blob_permits.clone();
                async move {
                    let _permit = permits.acquire_owned().await;
                    (d, job.run(&opts.progress).await)
                }
            })
            .collect();
        for (d, outcomes) in futures_util::future::join_all(jobs).await {
            for (k, r) in outcomes.into_iter().enumerate() {
                match r {
                    Ok(outcome) => {
                        if !opts.dry_run {
                            self.remember(targets[k], &d.digest);
                        }
                        Self::count_blob(&counters[k], opts, &names[k], d, outcome);
                    }
                    Err(e) => {
                        failures[k].get_or_insert(e);
                    }
                }
            }
        }
    }

    /// Every blob of `image` to one target.
    async fn push_blobs(
        &self,
        source: &Source,
        t: &Target,
        image: &SourceImage,
        opts: &CopyOptions,
        counters: &Counters,
    ) -> Result<(), CopyError> {
        let target_name = t.display();
        opts.progress.target_started(
            &target_name,
            image.blobs.len(),
            image
                .blobs
                .iter()
                .fold(0u64, |n, d| n.saturating_add(d.size)),
        );
        let fresh = !opts.dry_run && !image.blobs.is_empty() && self.target_is_fresh(t).await;
        // Blobs, concurrently; a shared transfer serves every image needing the same blob.
        let blob_futs: Vec<_> = image
            .blobs
            .iter()
            .map(|d| {
                let target_name = &target_name;
                async move {
                    let outcome = self.ensure_blob(source, t, d, opts, fresh).await?;
                    Self::count_blob(counters, opts, target_name, d, outcome);
                    Ok::<_, CopyError>(())
                }
            })
            .collect();
        // Every blob is polled at once; the engine's blob permits bound the transfers.
        futures_util::future::try_join_all(blob_futs).await?;
        Ok(())
    }

    /// The manifests of `image` to one target whose blobs are all present: image manifests
    /// (all independent), then indexes deepest first, then the root — under its tags last.
    async fn push_manifests(
        &self,
        t: &Target,
        image: &SourceImage,
        opts: &CopyOptions,
        counters: &Counters,
        previous: &[(String, Digest)],
    ) -> Result<Digest, CopyError> {
        if opts.dry_run {
            return Ok(image.root.digest().clone());
        }
        let target_name = t.display();
        let put = |m: &Manifest, reference: String| {
            let tr = t.transport.clone();
            let m = m.clone();
            let target_name = target_name.clone();
            async move {
                tr.manifest_put(t.repo(), &reference, &m)
                    .await
                    .map_err(|error| CopyError::Target {
                        target: format!("{target_name}@{}", m.digest()),
                        error: Box::new(error),
                    })?;
                counters.manifests_pushed.fetch_add(1, Ordering::Relaxed);
                Ok::<_, CopyError>(())
            }
        };
        // Tags about to move keep their old image reachable under a backup tag first.
        if let Some(template) = &opts.backup_tag {
            for (tag, old) in previous {
                self.backup(t, template, tag, old, counters).await?;
            }
        }
        // distribution 2.8's filesystem storage can lose a race between two identical manifest
        // PUTs into one repository (two processes mirroring the same image): the parent is then
        // refused with MANIFEST_BLOB_UNKNOWN although its children were just written. Writing
        // the children again and retrying is safe (the bytes are the same) and settles it.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = async {
                let image_puts: Vec<_> = image
                    .children
                    .iter()
                    .filter(|m| !m.is_index())
                    .map(|m| put(m, m.digest().to_string()))
                    .collect();
                futures_util::future::try_join_all(image_puts).await?;
                for m in image.children.iter().filter(|m| m.is_index()) {
                    put(m, m.digest().to_string()).await?;
                }
                // The root goes up under its tags — each PUT by tag both stores the manifest
                // and moves the tag, after every part it refers to is present. Without tags, by
                // digest.
                if t.tags.is_empty() {
                    put(&image.root, image.root.digest().to_string()).await?;
                } else {
                    for tag in &t.tags {
                        put(&image.root, tag.clone()).await?;
                    }
                }
                Ok::<_, CopyError>(())
            }
            .await;
            match result {
                Ok(()) => break,
                Err(CopyError::Target { error, .. })
                    if error.kind == crate::registry::ErrorKind::ManifestBlobUnknown
                        && attempt < 3 =>
                {
                    tracing::warn!(target = %target_name, error = %error, "manifest refused for a missing child; writing the children again");
                    tokio::time::sleep(std::time::Duration::from_millis(200 * attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
        crate::metrics::record_image();
        Ok(image.root.digest().clone())
    }

    /// Tags the image `tag` points at (`old`) with the expanded backup template.
    async fn backup(
        &self,
        t: &Target,
        template: &str,
        tag: &str,
        old: &Digest,
        counters: &Counters,
    ) -> Result<(), CopyError> {
        let name = backup::expand(template, tag, old, chrono::Utc::now())
            .map_err(|message| CopyError::Internal { message })?;
        let target_err = |error| CopyError::Target {
            target: format!("{}:{name} (backup of {tag})", t.display()),
            error: Box::new(error),
        };
        let m = t
            .transport
            .manifest_get(t.repo(), &old.to_string())
            .await
            .map_err(target_err)?;
        t.transport
            .manifest_put(t.repo(), &name, &m)
            .await
            .map_err(target_err)?;
        counters
            .backups
            .lock()
            .expect("backups lock")
            .push((name, old.clone()));
        Ok(())
    }

    /// Gets one blob into the target, sharing the transfer with any concurrent request for the
    /// same blob and repository.
    async fn ensure_blob(
        &self,
        source: &Source,
        t: &Target,
        d: &crate::manifest::Descriptor,
        opts: &CopyOptions,
        fresh_target: bool,
    ) -> Result<BlobOutcome, CopyError> {
        let key = (
            t.transport.name().to_string(),
            t.repo().to_string(),
            d.digest.clone(),
        );
        let (id, fut) = {
            let mut inflight = self.inner.inflight.lock().expect("inflight lock");
            if let Some((id, f)) = inflight.get(&key).filter(|_| !opts.dry_run) {
                (*id, f.clone())
            } else {
                let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
                let mount_from = self.mount_source(source, t, &d.digest);
                let job = blob::BlobJob {
                    source: source.transport.clone(),
                    source_repo: source.reference.repository().to_string(),
                    target: t.transport.clone(),
                    target_repo: t.repo().to_string(),
                    descriptor: d.clone(),
                    mount_from,
                    fresh_target,
                    dry_run: opts.dry_run,
                };
                let permits = self.inner.blob_permits.clone();
                let progress = opts.progress.clone();
                let fut: BoxFuture<'static, Result<BlobOutcome, Arc<CopyError>>> = async move {
                    let _permit = permits.acquire_owned().await.map_err(|_| {
                        Arc::new(CopyError::Internal {
                            message: "engine closed".into(),
                        })
                    })?;
                    job.run(&progress).await.map_err(Arc::new)
                }
                .boxed();
                let fut = fut.shared();
                if !opts.dry_run {
                    inflight.insert(key.clone(), (id, fut.clone()));
                }
                (id, fut)
            }
        };
        // The map's entry goes when this waiter is done — or dropped: a copy that fails on
        // one blob drops its other blob futures, and an entry left behind kept that transfer
        // alive but never polled, holding the engine's blob permit and any request permit it
        // had been granted, for good (with max_concurrency = 1, every later request hung).
        let _forget = ForgetTransfer {
            engine: self,
            key: &key,
            id,
        };
        let result = fut.await;
        match result {
            Ok(outcome) => {
                if !opts.dry_run {
                    self.remember(t, &d.digest);
                }
                Ok(outcome)
            }
            Err(e) => Err(CopyError::Shared(e)),
        }
    }

    /// Whether `t`'s repository has no tags: a new repository (or one an interrupted copy left
    /// untagged), whose blobs are then not HEADed one by one ([`blob`] says what replaces it).
    /// One tag question per repository serves every copy into it that starts within [`FRESH_TTL`];
    /// copies starting together share the request in flight. An error counts as "has tags":
    /// the HEADs are the safe way.
    async fn target_is_fresh(&self, t: &Target) -> bool {
        let key = (t.transport.name().to_string(), t.repo().to_string());
        let probe = {
            let mut fresh = self.inner.fresh.lock().expect("fresh lock");
            match fresh.get(&key) {
                Some((at, probe)) if at.elapsed() < FRESH_TTL => probe.clone(),
                _ => {
                    if fresh.len() >= MAX_FRESH {
                        fresh.clear();
                    }
                    let transport = t.transport.clone();
                    let repo = key.1.clone();
                    let probe: FreshProbe = async move {
                        match transport.has_tags(&repo).await {
                            Ok(tagged) => !tagged,
                            // distribution: 404 NAME_UNKNOWN for a repository never pushed to.
                            Err(e) => e.kind == crate::registry::ErrorKind::NotFound,
                        }
                    }
                    .boxed()
                    .shared();
                    fresh.insert(key, (Instant::now(), probe.clone()));
                    probe
                }
            }
        };
        probe.await
    }

    /// A repository of the target registry known to hold `digest`: the source repository when
    /// source and target are the same registry, else one this process put it in.
    fn mount_source(&self, source: &Source, t: &Target, digest: &Digest) -> Option<String> {
        if source.transport.name() == t.transport.name()
            && source.reference.repository() != t.repo()
        {
            return Some(source.reference.repository().to_string());
        }
        let located = self.inner.located.lock().expect("located lock");
        located
            .get(&(t.transport.name().to_string(), digest.clone()))
            .filter(|repo| repo.as_str() != t.repo())
            .cloned()
    }

    fn remember(&self, t: &Target, digest: &Digest) {
        let mut located = self.inner.located.lock().expect("located lock");
        if located.len() >= MAX_LOCATIONS {
            located.clear();
        }
        located.insert(
            (t.transport.name().to_string(), digest.clone()),
            t.repo().to_string(),
        );
    }
}

/// Removes an in-flight transfer from the engine's map when dropped, unless a newer transfer
/// for the same key has replaced it. Waiters still holding the transfer keep it running.
struct ForgetTransfer<'a> {
    engine: &'a Engine,
    key: &'a TransferKey,
    id: u64,
}

impl Drop for ForgetTransfer<'_> {
    fn drop(&mut self) {
        let mut inflight = self.engine.inner.inflight.lock().expect("inflight lock");
        if inflight.get(self.key).is_some_and(|(i, _)| *i == self.id) {
            inflight.remove(self.key);
        }
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
