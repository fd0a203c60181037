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
use std::time::Instant;

use super::IndexPlan;
use super::run::{ImageOutcome, RuleRun, RunContext, RunResult};
use crate::copy::compose::{ComposeError, ComposeOptions, build_index, compose, read_platform};
use crate::copy::{CopyOptions, Source, Target, error_chain};
use crate::digest::Digest;
use crate::manifest::{Descriptor, Manifest, ManifestView, media_type};
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
    let config = match m.view() {
        ManifestView::Image(img) => img.config.clone(),
        ManifestView::Index(i) => {
            return Err(ComposeError::SourceIsIndex {
                kind: if m.media_type() == media_type::DOCKER_MANIFEST_LIST {
                    "Docker manifest list"
                } else {
                    "OCI index"
                },
                count: i.manifests.len(),
                reference,
            });
        }
    };
    let platform = read_platform(&*source.transport, repo, &config)
        .await
        .map_err(|error| ComposeError::Platform {
            reference: reference.clone(),
            error,
        })?;
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
    let started = Instant::now();
    let mut out = ImageOutcome {
        source: plan
            .sources
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        target: plan.target.to_string(),
        state: "failed".into(),
        digest: None,
        bytes_copied: 0,
        error: None,
    };
    let mut run = RuleRun {
        rule: plan.name.clone(),
        result: RunResult::Ok,
        seconds: 0.0,
        images: Vec::new(),
        errors: Vec::new(),
    };
    match tokio::time::timeout(plan.timeout, run_inner(plan, ctx, dry_run, &mut out)).await {
        Ok(()) => {
            if out.state == "failed" {
                run.result = RunResult::Failed;
            }
            run.images.push(out);
        }
        Err(_) => {
            run.result = RunResult::Timeout;
            run.errors.push(format!(
                "rule {} did not finish within its time limit of {}",
                plan.name,
                humantime::format_duration(plan.timeout)
            ));
        }
    }
    run.seconds = started.elapsed().as_secs_f64();
    run
}

async fn run_inner(plan: &IndexPlan, ctx: &RunContext, dry_run: bool, out: &mut ImageOutcome) {
    let connect = || -> Result<(Vec<Source>, Target), String> {
        let sources = plan
            .sources
            .iter()
            .map(|r| {
                Ok(Source {
                    transport: ctx.connector.get(r.registry())?,
                    reference: r.clone(),
                })
            })
            .collect::<Result<Vec<_>, RegistryError>>()
            .map_err(|e| error_chain(&e))?;
        let target = Target {
            transport: ctx
                .connector
                .get(plan.target.registry())
                .map_err(|e| error_chain(&e))?,
            reference: plan.target.repository_only(),
            tags: plan.target.tag().map(str::to_string).into_iter().collect(),
        };
        Ok((sources, target))
    };
    let (sources, target) = match connect() {
        Ok(p) => p,
        Err(e) => {
            out.error = Some(e);
            return;
        }
    };
    for s in &sources {
        let reserve = (ctx.ratelimit_reserve)(s.reference.registry());
        if reserve > 0
            && let Some(left) = s.transport.ratelimit_remaining()
            && left < i64::from(reserve)
        {
            out.state = "skipped".into();
            out.error = Some(format!(
                "{} has {left} pulls left, under the reserve of {reserve}: not pulling",
                s.reference.registry()
            ));
            return;
        }
    }
    let lock = RepositoryLocks::get(plan.target.repository_only().to_string());
    let _turn = lock.lock().await;
    let checked = match check(plan, &sources, &target).await {
        Ok(c) => c,
        Err(e) => {
            out.error = Some(error_chain(&e));
            return;
        }
    };
    if checked.current.as_ref() == Some(checked.expected.digest()) {
        out.state = "up_to_date".into();
        out.digest = Some(checked.expected.digest().to_string());
        return;
    }
    if dry_run {
        out.state = "dry_run".into();
        out.digest = Some(checked.expected.digest().to_string());
        return;
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
        Ok(report) => {
            out.state = if report.up_to_date {
                "up_to_date"
            } else {
                "copied"
            }
            .into();
            out.digest = Some(report.digest.to_string());
        }
        Err(e) => out.error = Some(error_chain(&e)),
    }
}
