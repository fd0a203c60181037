//! One run of an index rule: is the target tag still the index of what the sources point at?
//! If not, compose it again.
//!
//! Most runs change nothing, so the check is made as cheap as the mirror rules' check: a HEAD
//! per source (its digest) and a HEAD of the target. That needs the index those digests would
//! make without reading them, and it can be known: an index entry (media type, digest, size,
//! platform) depends only on the child's content, which its digest names, so entries read once
//! are kept by digest for the life of the process ([`ChildCache`]); and the index bytes are
//! deterministic ([`build_index`]). A source whose digest is new is read once (its manifest and
//! config). Only when the expected index differs from the target's tag does
//! [`compose`] run — it reads the sources again and writes (children first, index last), so
//! every write goes through the one composing code path `crossdock index create` uses.
//!
//! Registry quirk (CNCF distribution 2.8, filesystem storage): writing a file truncates it
//! before writing it again, so a manifest PUT while the same manifest is being PUT into the same
//! repository can find it briefly unknown — an index PUT then fails with
//! `MANIFEST_BLOB_UNKNOWN`. Index rules of one target repository (`app:latest` and `app:stable`
//! from the same children) would do exactly that when a child moves, so they take turns
//! ([`RepositoryLocks`]); the second then finds the children present and writes only its index.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use super::IndexPlan;
use super::run::{Failure, ImageOutcome, ImageState, RuleRun, RunContext, Tally};
use crate::copy::compose::{ComposeError, ComposeOptions, build_index, compose, image_platform};
use crate::copy::{CopyOptions, Source, Target, error_chain};
use crate::digest::Digest;
use crate::manifest::{Descriptor, Manifest};
use crate::registry::{ErrorKind, RegistryError};

/// Index entries remembered at most; past it the cache starts over (a rule set with more
/// distinct children than this pays one read per child per run, nothing worse).
const CHILD_CACHE_LIMIT: usize = 4096;

/// Index entries of children already read, by manifest digest. Sound to share by everyone in
/// the process because the entry is a function of the content the digest names.
struct ChildCache(Mutex<HashMap<Digest, Descriptor>>);

impl ChildCache {
    fn global() -> &'static ChildCache {
        static CACHE: OnceLock<ChildCache> = OnceLock::new();
        CACHE.get_or_init(|| ChildCache(Mutex::new(HashMap::new())))
    }

    fn get(&self, digest: &Digest) -> Option<Descriptor> {
        self.0.lock().expect("child cache").get(digest).cloned()
    }

    fn insert(&self, entry: Descriptor) {
        let mut map = self.0.lock().expect("child cache");
        if map.len() >= CHILD_CACHE_LIMIT {
            map.clear();
        }
        map.insert(entry.digest.clone(), entry);
    }
}

/// One lock per target repository (`registry/repository`), held while an index rule checks
/// and composes.
struct RepositoryLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl RepositoryLocks {
    fn get(repository: String) -> Arc<tokio::sync::Mutex<()>> {
        static LOCKS: OnceLock<RepositoryLocks> = OnceLock::new();
        let locks = LOCKS.get_or_init(|| RepositoryLocks(Mutex::new(HashMap::new())));
        locks
            .0
            .lock()
            .expect("repository locks")
            .entry(repository)
            .or_default()
            .clone()
    }
}

/// What the cheap check found.
struct Check {
    /// The index the sources make now.
    expected: Manifest,
    /// What the target tag points at (`None`: nothing).
    current: Option<Digest>,
}

/// The index entry of one source: from the cache by the digest its tag points at, or read.
async fn entry(source: &Source) -> Result<Descriptor, ComposeError> {
    let reference = source.reference.to_string();
    let repo = source.reference.repository();
    let source_error = |error| ComposeError::Source {
        reference: reference.clone(),
        error: Box::new(error),
    };
    let head = source
        .transport
        .manifest_head(repo, &source.reference.manifest_reference())
        .await
        .map_err(source_error)?
        .ok_or_else(|| {
            source_error(
                RegistryError::new(ErrorKind::NotFound, "HEAD manifest", &reference)
                    .with_message("no such tag"),
            )
        })?;
    if let Some(d) = ChildCache::global().get(&head.digest) {
        return Ok(d);
    }
    let m = source
        .transport
        .manifest_get(repo, &head.digest.to_string())
        .await
        .map_err(source_error)?;
    let platform = image_platform(source, &m).await?;
    let d = Descriptor {
        platform: Some(platform),
        ..m.descriptor()
    };
    ChildCache::global().insert(d.clone());
    Ok(d)
}

async fn check(
    plan: &IndexPlan,
    sources: &[Source],
    target: &Target,
) -> Result<Check, ComposeError> {
    let entries = futures_util::future::try_join_all(sources.iter().map(entry)).await?;
    // Two sources of one platform make an index `compose` refuses; it then never matches the
    // target, so `compose` runs and says why.
    let (expected, _) = build_index(&entries, &plan.annotations, plan.wants_oci())?;
    let tag = plan.target.tag().unwrap_or("latest");
    let current = target
        .transport
        .manifest_head(plan.target.repository(), tag)
        .await
        .map_err(|error| ComposeError::Target {
            target: plan.target.to_string(),
            error: Box::new(error),
        })?
        .map(|h| h.digest);
    Ok(Check { expected, current })
}

/// Runs an index rule once, within its time limit. The run has one "image": the index.
pub async fn run_index(plan: &IndexPlan, ctx: &RunContext, dry_run: bool) -> RuleRun {
    let tally = Tally::new(&plan.name, dry_run, ctx);
    let work = async {
        let (state, digest) = keep_index(plan, ctx, dry_run).await;
        tally.image(ImageOutcome {
            source: plan
                .sources
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            target: plan.target.to_string(),
            state,
            digest: digest.map(|d| d.to_string()),
            bytes_copied: 0,
        });
    };
    tally.within(plan.timeout, work).await
}

/// The transports of an index rule's sources and target.
fn connect(plan: &IndexPlan, ctx: &RunContext) -> Result<(Vec<Source>, Target), RegistryError> {
    let sources = plan
        .sources
        .iter()
        .map(|r| {
            Ok(Source {
                transport: ctx.connector.get(r.registry())?,
                reference: r.clone(),
            })
        })
        .collect::<Result<Vec<_>, RegistryError>>()?;
    let target = Target {
        transport: ctx.connector.get(plan.target.registry())?,
        reference: plan.target.repository_only(),
        tags: plan.target.tag().map(str::to_string).into_iter().collect(),
    };
    Ok((sources, target))
}

/// Checks the index and composes it again if it moved: what became of it, and its digest.
async fn keep_index(
    plan: &IndexPlan,
    ctx: &RunContext,
    dry_run: bool,
) -> (ImageState, Option<Digest>) {
    let failed = |f| (ImageState::Failed(f), None);
    let (sources, target) = match connect(plan, ctx) {
        Ok(p) => p,
        Err(e) => return failed(Failure::Connect(error_chain(&e))),
    };
    for s in &sources {
        if let Some(r) = ctx.reserve_reached(s.reference.registry(), &*s.transport) {
            return (ImageState::Skipped(r), None);
        }
    }
    let lock = RepositoryLocks::get(plan.target.repository_only().to_string());
    let _turn = lock.lock().await;
    let checked = match check(plan, &sources, &target).await {
        Ok(c) => c,
        Err(e) => return failed(Failure::Copy(error_chain(&e))),
    };
    let expected = checked.expected.digest().clone();
    if checked.current.as_ref() == Some(&expected) {
        return (ImageState::UpToDate, Some(expected));
    }
    if dry_run {
        return (ImageState::WouldCopy, Some(expected));
    }
    let opts = ComposeOptions {
        annotations: plan.annotations.clone(),
        oci: plan.wants_oci(),
        copy: CopyOptions {
            referrers: plan.referrers,
            ..CopyOptions::default()
        },
    };
    match compose(&ctx.engine, &sources, &target, &opts).await {
        Ok(report) if report.up_to_date => (ImageState::UpToDate, Some(report.digest)),
        Ok(report) => (ImageState::Copied, Some(report.digest)),
        Err(e) => failed(Failure::Copy(error_chain(&e))),
    }
}
