//! One run of a mirror rule: select each source's tags, copy each image to every target, fold
//! the outcomes into the run's tally.
//!
//! The work is a stream, not a list: a source's tags are listed when the copies of the
//! previous source's tags have all been started, and each tag becomes its copy only when one
//! of the rule's image slots frees up ([`RunContext::image_concurrency`]), and each finished copy
//! is counted and dropped. A run over 100,000 tags therefore holds the tag list and a handful
//! of copies in flight, never 100,000 of anything larger than a tag. One failing image does not
//! stop the others. A tag that differs at the target is moved (`on_conflict = "overwrite"`) or
//! left alone and counted as kept (`"keep"`). Once every copy is done, a rule that prunes
//! deletes the target tags whose source tag is gone ([`super::prune_run`]).
//!
//! A run that changes nothing stays cheap (issue 18): an immutable tag the target already lists
//! is done without a request of its own ([`super::immutable`]), and in the daemon a target the
//! memory confirmed at the digest the source resolves to is not asked ([`super::confirmed`]).

use std::collections::HashSet;
use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use super::confirmed::RunMemory;
use super::immutable::{Listed, TargetTags};
use super::mirror::{OnConflict, RulePlan};
use super::run::{Failure, ImageOutcome, ImageState, RuleRun, RunContext, RunError, Tally};
use crate::copy::{CopyError, CopyOptions, Source, Target, TargetStatus, error_chain};
use crate::reference::Reference;

/// Runs `rule` once, within its time limit.
pub async fn run_rule(rule: &RulePlan, ctx: &RunContext, dry_run: bool) -> RuleRun {
    let tally = Tally::new(&rule.name, dry_run, ctx);
    tally
        .within(rule.timeout, copy_all(rule, ctx, dry_run, &tally))
        .await
}

/// One source image and where it goes: copied once to all its targets, so that each blob is
/// read from the source once however many targets the rule has.
struct Job {
    source: Reference,
    targets: Vec<Reference>,
    listed: Option<Arc<HashSet<String>>>,
    /// Per target: the tag is immutable and the target lists it already.
    done: Vec<bool>,
}

/// The jobs of one source and, for a rule that prunes, the target listings pruning may reuse;
/// or `None` (the problem recorded) when it cannot be listed.
async fn source_jobs(
    rule: &RulePlan,
    ctx: &RunContext,
    source: &Reference,
    tally: &Tally,
) -> Option<(impl Iterator<Item = Job> + use<>, Vec<Option<Listed>>)> {
    let transport = match ctx.connector.get(source.registry()) {
        Ok(t) => t,
        Err(e) => {
            tally.error(RunError::Connect {
                source: source.to_string(),
                error: error_chain(&e),
            });
            return None;
        }
    };
    let selected = match rule.select_tags(source, &*transport).await {
        Ok(s) => s,
        Err(e) => {
            tally.error(RunError::Resolve(error_chain(&e)));
            return None;
        }
    };
    let repositories = match rule.target_repositories(source) {
        Ok(r) => r,
        Err(e) => {
            tally.error(RunError::Resolve(format!("{source}: {e}")));
            return None;
        }
    };
    // The copies need the tag list to find signature tags; listing once per source instead of
    // once per image is what keeps a sync of many tags cheap (1,000 tags: 1 listing, not 1,001).
    // Only tags of the `<algorithm>-<hex>[.sig|.att|.sbom]` form can be such artifacts, so only
    // they are kept: a set of every tag would cost ~5 MiB at 100,000 tags.
    let listed = selected.listed.map(|l| {
        Arc::new(
            l.into_iter()
                .filter(|t| t.starts_with("sha256-") || t.starts_with("sha512-"))
                .collect(),
        )
    });
    let present = TargetTags::list(rule, ctx, &repositories).await;
    let for_prune = match rule.prune.enabled {
        true => present.for_prune(&selected.tags),
        false => Vec::new(),
    };
    let source = source.clone();
    let jobs = selected.tags.into_iter().filter_map(move |tag| {
        let targets: Result<Vec<Reference>, _> =
            repositories.iter().map(|r| r.with_tag(&tag)).collect();
        // Selected tags are valid tag names, and the repositories valid references: a failure
        // here is a reference grown past the length limit, reported as the copy's.
        Some(Job {
            source: source.with_tag(&tag).ok()?,
            targets: targets.ok()?,
            listed: listed.clone(),
            done: present.done(&tag),
        })
    });
    Some((jobs, for_prune))
}

async fn copy_all(rule: &RulePlan, ctx: &RunContext, dry_run: bool, tally: &Tally) {
    let opts = CopyOptions {
        platforms: rule.platforms.clone(),
        force: rule.on_conflict == OnConflict::Overwrite,
        dry_run,
        referrers: rule.referrers,
        backup_tag: rule.backup_tag.clone(),
        ..CopyOptions::default()
    };
    // A bounded set of copies in flight: a tag becomes a copy only when a slot is free.
    let limit = ctx.image_concurrency.max(1);
    let memory = RunMemory::for_run(ctx, rule, dry_run);
    let mut in_flight = FuturesUnordered::new();
    let mut listed = Vec::new();
    for source in &rule.sources {
        // Copies in flight keep going while the next source is listed.
        let mut listing = std::pin::pin!(source_jobs(rule, ctx, source, tally));
        let jobs = loop {
            tokio::select! {
                jobs = &mut listing => break jobs,
                Some(outcomes) = in_flight.next(), if !in_flight.is_empty() => {
                    record(tally, outcomes);
                }
            }
        };
        let Some((jobs, for_prune)) = jobs else {
            continue;
        };
        listed.push((source, for_prune));
        for job in jobs {
            if in_flight.len() >= limit
                && let Some(outcomes) = in_flight.next().await
            {
                record(tally, outcomes);
            }
            in_flight.push(copy_job(
                ctx,
                job,
                &opts,
                rule.verify.as_deref(),
                memory.as_ref(),
            ));
        }
    }
    while let Some(outcomes) = in_flight.next().await {
        record(tally, outcomes);
    }
    if rule.prune.enabled {
        super::prune_run::prune(rule, ctx, dry_run, tally, &listed).await;
    }
}

fn record(tally: &Tally, outcomes: Vec<ImageOutcome>) {
    for o in outcomes {
        tally.image(o);
    }
}

/// Copies one job's image to the targets where it is not done already.
async fn copy_job(
    ctx: &RunContext,
    job: Job,
    opts: &CopyOptions,
    verify: Option<&crate::trust::Policy>,
    memory: Option<&RunMemory<'_>>,
) -> Vec<ImageOutcome> {
    let opts = CopyOptions {
        source_tags: job.listed,
        ..opts.clone()
    };
    let (done, rest): (Vec<_>, Vec<_>) = job
        .targets
        .into_iter()
        .zip(job.done.into_iter().chain(std::iter::repeat(false)))
        .partition(|(_, done)| *done);
    let rest: Vec<Reference> = rest.into_iter().map(|(t, _)| t).collect();
    let mut outs = match rest.is_empty() {
        true => Vec::new(),
        false => copy_one(ctx, &job.source, &rest, &opts, verify, memory).await,
    };
    outs.extend(done.into_iter().map(|(t, _)| ImageOutcome {
        source: job.source.to_string(),
        target: t.to_string(),
        state: ImageState::Present,
        digest: None,
        bytes_copied: 0,
    }));
    outs
}

/// Copies one source image to its targets; one outcome per target, in target order.
async fn copy_one(
    ctx: &RunContext,
    src: &Reference,
    tgts: &[Reference],
    opts: &CopyOptions,
    verify: Option<&crate::trust::Policy>,
    memory: Option<&RunMemory<'_>>,
) -> Vec<ImageOutcome> {
    let mut outs: Vec<_> = tgts.iter().map(|t| not_reached(src, t)).collect();
    let all = |outs: &mut Vec<ImageOutcome>, state: ImageState| {
        for o in outs.iter_mut() {
            o.state = state.clone();
        }
    };
    let s = match ctx.connector.get(src.registry()) {
        Ok(s) => s,
        Err(e) => {
            all(
                &mut outs,
                ImageState::Failed(Failure::Connect(error_chain(&e))),
            );
            return outs;
        }
    };
    if let Some(r) = ctx.reserve_reached(src.registry(), &*s) {
        all(&mut outs, ImageState::Skipped(r));
        return outs;
    }
    // Signature policy (issue 17): only the digest whose signature verified is copied.
    let pinned;
    let src = match verify {
        None => src,
        Some(policy) => match policy.admit(&*s, src).await {
            Ok((p, _)) => {
                pinned = p;
                &pinned
            }
            Err(refusal) => {
                all(&mut outs, ImageState::Refused(refusal.to_string()));
                return outs;
            }
        },
    };
    let known: Vec<_> = tgts.iter().map(|t| memory?.known(t)).collect();
    let (targets, reached) = connect_targets(ctx, tgts, &mut outs);
    let source = Source {
        transport: s,
        reference: src.clone(),
    };
    let opts = &CopyOptions {
        confirmed: reached.iter().map(|&i| known[i].clone()).collect(),
        ..opts.clone()
    };
    match ctx.engine.copy(&source, &targets, opts).await {
        Ok(r) => {
            for (t, &i) in r.targets.iter().zip(&reached) {
                let out = &mut outs[i];
                out.digest = Some(t.digest.to_string());
                out.bytes_copied = t.counts.bytes_copied;
                out.state = image_state(&t.status);
            }
        }
        // A target tag at another image and a rule that keeps it: with several targets the
        // engine stops before writing any, so each target is tried on its own.
        Err(CopyError::Conflict { .. }) if !opts.force && targets.len() > 1 => {
            for &i in &reached {
                let one = Box::pin(copy_one(
                    ctx,
                    src,
                    std::slice::from_ref(&tgts[i]),
                    opts,
                    // `src` is already the verified digest.
                    None,
                    memory,
                ))
                .await;
                outs[i] = one.into_iter().next().expect("one outcome per target");
            }
        }
        Err(CopyError::Conflict { existing, .. }) if !opts.force => {
            for &i in &reached {
                outs[i].state = ImageState::Kept;
                outs[i].digest = Some(existing.to_string());
            }
        }
        Err(e) => {
            let e = error_chain(&e);
            for &i in &reached {
                outs[i].state = ImageState::Failed(Failure::Copy(e.clone()));
            }
        }
    }
    if let Some(m) = memory {
        for &i in &reached {
            m.settle(&tgts[i], known[i].as_ref(), &outs[i]);
        }
    }
    outs
}

/// The outcome of `src` → `tgt` before anything happened.
fn not_reached(src: &Reference, tgt: &Reference) -> ImageOutcome {
    ImageOutcome {
        source: src.to_string(),
        target: tgt.to_string(),
        state: ImageState::Failed(Failure::NotReached),
        digest: None,
        bytes_copied: 0,
    }
}

/// The copy targets of `tgts` whose registry can be reached, and their indices; the others'
/// outcomes say why not.
fn connect_targets(
    ctx: &RunContext,
    tgts: &[Reference],
    outs: &mut [ImageOutcome],
) -> (Vec<Target>, Vec<usize>) {
    let mut targets = Vec::new();
    let mut reached = Vec::new();
    for (i, tgt) in tgts.iter().enumerate() {
        match ctx.connector.get(tgt.registry()) {
            Ok(t) => {
                targets.push(Target {
                    transport: t,
                    reference: tgt.repository_only(),
                    tags: tgt.tag().map(str::to_string).into_iter().collect(),
                });
                reached.push(i);
            }
            Err(e) => outs[i].state = ImageState::Failed(Failure::Connect(error_chain(&e))),
        }
    }
    (targets, reached)
}

/// What the engine's status at one target means for the rule.
fn image_state(status: &TargetStatus) -> ImageState {
    match status {
        TargetStatus::Copied => ImageState::Copied,
        TargetStatus::UpToDate => ImageState::UpToDate,
        TargetStatus::DryRun => ImageState::WouldCopy,
        TargetStatus::Failed(e) => ImageState::Failed(Failure::Target(error_chain(&**e))),
        TargetStatus::Pending => ImageState::Failed(Failure::NotReached),
    }
}
