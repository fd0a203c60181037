//! One run of one rule: resolve its sources to (source, target) pairs, copy each, tally.
//!
//! Shared by the daemon's schedule, `crossdock sync` and (later) event-triggered syncs, so every
//! path applies a rule the same way. Images of a rule are copied concurrently up to the engine's
//! image limit; one failing image does not stop the others. A tag that differs at the target is
//! moved (`on_conflict = "overwrite"`) or left alone and counted as kept (`"keep"`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use futures_util::{StreamExt, stream};
use serde::Serialize;

use super::{OnConflict, RulePlan};
use crate::copy::{CopyError, CopyOptions, Engine, Source, Target, TargetStatus, error_chain};
use crate::reference::Reference;
use crate::registry::connect::Connector;

/// What a rule run needs besides the rule.
#[derive(Clone)]
pub struct RunContext {
    /// The engine shared by every rule of the process.
    pub engine: Engine,
    /// Transports shared by every rule of the process.
    pub connector: Arc<Connector>,
    /// Images copied at once within one rule.
    pub image_concurrency: usize,
    /// `ratelimit-remaining` floor per registry: stop pulling from it below this.
    pub ratelimit_reserve: Arc<dyn Fn(&str) -> u32 + Send + Sync>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunResult {
    /// Everything copied or already up to date.
    Ok,
    /// Some image or source failed.
    Failed,
    /// The rule's time limit passed.
    Timeout,
}

impl RunResult {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Ok => "ok",
            RunResult::Failed => "failed",
            RunResult::Timeout => "timeout",
        }
    }
}

/// One image's outcome within a run.
#[derive(Debug, Clone, Serialize)]
pub struct ImageOutcome {
    /// Source reference.
    pub source: String,
    /// Target reference.
    pub target: String,
    /// `copied`, `up_to_date`, `kept` (target tag differs and the rule keeps it), `dry_run`,
    /// `skipped` (rate-limit reserve reached), `refused` (no valid signature, see
    /// [`crate::trust`]) or `failed`.
    pub state: String,
    /// The digest written (or that would be).
    pub digest: Option<String>,
    /// Bytes streamed.
    pub bytes_copied: u64,
    /// The error, when failed.
    pub error: Option<String>,
}

/// A finished run.
#[derive(Debug, Clone, Serialize)]
pub struct RuleRun {
    /// The rule.
    pub rule: String,
    /// How it ended.
    pub result: RunResult,
    /// Wall time.
    pub seconds: f64,
    /// Each image.
    pub images: Vec<ImageOutcome>,
    /// Problems outside any one image (listing tags, connecting).
    pub errors: Vec<String>,
}

impl RuleRun {
    /// Images in a given state.
    pub fn count(&self, state: &str) -> u64 {
        self.images.iter().filter(|i| i.state == state).count() as u64
    }
}

/// Runs `rule` once, within its time limit.
pub async fn run_rule(rule: &RulePlan, ctx: &RunContext, dry_run: bool) -> RuleRun {
    let started = Instant::now();
    let mut run = RuleRun {
        rule: rule.name.clone(),
        result: RunResult::Ok,
        seconds: 0.0,
        images: Vec::new(),
        errors: Vec::new(),
    };
    let images = Arc::new(std::sync::Mutex::new(Vec::new()));
    let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
    let work = run_inner(rule, ctx, dry_run, images.clone(), errors.clone());
    let timed_out = tokio::time::timeout(rule.timeout, work).await.is_err();
    run.images = std::mem::take(&mut *images.lock().expect("images lock"));
    run.errors = std::mem::take(&mut *errors.lock().expect("errors lock"));
    run.result = if timed_out {
        run.errors.push(format!(
            "rule {} did not finish within its time limit of {}",
            rule.name,
            humantime::format_duration(rule.timeout)
        ));
        RunResult::Timeout
    } else if run.errors.is_empty()
        && run
            .images
            .iter()
            .all(|i| i.state != "failed" && i.state != "refused")
    {
        RunResult::Ok
    } else {
        RunResult::Failed
    };
    run.seconds = started.elapsed().as_secs_f64();
    run
}

async fn run_inner(
    rule: &RulePlan,
    ctx: &RunContext,
    dry_run: bool,
    images: Arc<std::sync::Mutex<Vec<ImageOutcome>>>,
    errors: Arc<std::sync::Mutex<Vec<String>>>,
) {
    // Each pair carries its source's tag list when resolving fetched one: the copy needs it to
    // find signature tags, and listing once per source instead of once per image is what keeps
    // a sync of many tags cheap (1,000 tags: 1 listing instead of 1,001).
    type Listed = Option<Arc<HashSet<String>>>;
    let mut pairs: Vec<(Reference, Reference, Listed)> = Vec::new();
    for source in &rule.sources {
        let transport = match ctx.connector.get(source.registry()) {
            Ok(t) => t,
            Err(e) => {
                errors
                    .lock()
                    .expect("errors lock")
                    .push(format!("{source}: {}", error_chain(&e)));
                continue;
            }
        };
        match rule.resolve_listing(source, &*transport).await {
            Ok((p, listed)) => {
                let listed: Listed = listed.map(|t| Arc::new(t.into_iter().collect()));
                pairs.extend(p.into_iter().map(|(s, t)| (s, t, listed.clone())));
            }
            Err(e) => errors.lock().expect("errors lock").push(error_chain(&e)),
        }
    }
    let opts = CopyOptions {
        platforms: rule.platforms.clone(),
        force: rule.on_conflict == OnConflict::Overwrite,
        dry_run,
        referrers: rule.referrers,
        backup_tag: rule.backup_tag.clone(),
        ..CopyOptions::default()
    };
    // Pairs of one source image go out as one copy to all its targets: each blob is then
    // read from the source once, however many targets the rule has.
    let mut groups: Vec<(Reference, Vec<Reference>, Listed)> = Vec::new();
    for (src, tgt, listed) in pairs {
        match groups.iter_mut().find(|(s, _, _)| *s == src) {
            Some((_, targets, _)) => targets.push(tgt),
            None => groups.push((src, vec![tgt], listed)),
        }
    }
    let copies: Vec<_> = groups
        .into_iter()
        .map(|(src, tgts, listed)| {
            let opts = CopyOptions {
                source_tags: listed,
                ..opts.clone()
            };
            let images = images.clone();
            async move {
                let verify = rule.verify.as_deref();
                let outcomes = copy_one(ctx, &src, &tgts, &opts, verify).await;
                images.lock().expect("images lock").extend(outcomes);
            }
        })
        .collect();
    stream::iter(copies)
        .buffer_unordered(ctx.image_concurrency.max(1))
        .collect::<Vec<()>>()
        .await;
}

async fn copy_one(
    ctx: &RunContext,
    src: &Reference,
    tgts: &[Reference],
    opts: &CopyOptions,
    verify: Option<&crate::trust::Policy>,
) -> Vec<ImageOutcome> {
    let mut outs: Vec<ImageOutcome> = tgts
        .iter()
        .map(|tgt| ImageOutcome {
            source: src.to_string(),
            target: tgt.to_string(),
            state: "failed".into(),
            digest: None,
            bytes_copied: 0,
            error: None,
        })
        .collect();
    let fail_all = |outs: &mut Vec<ImageOutcome>, state: &str, e: String| {
        for o in outs.iter_mut() {
            o.state = state.into();
            o.error = Some(e.clone());
        }
    };
    let s = match ctx.connector.get(src.registry()) {
        Ok(s) => s,
        Err(e) => {
            fail_all(&mut outs, "failed", error_chain(&e));
            return outs;
        }
    };
    let reserve = (ctx.ratelimit_reserve)(src.registry());
    if reserve > 0
        && let Some(left) = s.ratelimit_remaining()
        && left < i64::from(reserve)
    {
        let e = format!(
            "{} has {left} pulls left, under the reserve of {reserve}: not pulling",
            src.registry()
        );
        fail_all(&mut outs, "skipped", e);
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
                fail_all(&mut outs, "refused", refusal.to_string());
                return outs;
            }
        },
    };
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
            Err(e) => outs[i].error = Some(error_chain(&e)),
        }
    }
    let source = Source {
        transport: s,
        reference: src.clone(),
    };
    match ctx.engine.copy(&source, &targets, opts).await {
        Ok(r) => {
            for (t, &i) in r.targets.iter().zip(&reached) {
                let out = &mut outs[i];
                out.digest = Some(t.digest.to_string());
                out.bytes_copied = t.counts.bytes_copied;
                out.state = match &t.status {
                    TargetStatus::Copied => "copied".into(),
                    TargetStatus::UpToDate => "up_to_date".into(),
                    TargetStatus::DryRun => "dry_run".into(),
                    TargetStatus::Failed(e) => {
                        out.error = Some(e.clone());
                        "failed".into()
                    }
                    TargetStatus::Pending => "failed".into(),
                };
            }
        }
        // A target tag at another image and a rule that keeps it: with several targets the
        // engine stops before writing any, so each target is retried on its own.
        Err(CopyError::Conflict { .. }) if !opts.force && targets.len() > 1 => {
            for &i in &reached {
                let one = Box::pin(copy_one(
                    ctx,
                    src,
                    std::slice::from_ref(&tgts[i]),
                    opts,
                    None,
                ))
                .await;
                outs[i] = one.into_iter().next().expect("one outcome per target");
            }
        }
        Err(CopyError::Conflict { existing, .. }) if !opts.force => {
            for &i in &reached {
                outs[i].state = "kept".into();
                outs[i].digest = Some(existing.to_string());
            }
        }
        Err(e) => {
            let e = error_chain(&e);
            for &i in &reached {
                outs[i].error = Some(e.clone());
            }
        }
    }
    outs
}

/// A short one-line account of a run, for logs and `sync` output.
pub fn summary_line(run: &RuleRun) -> String {
    format!(
        "rule {}: {} in {:.1}s — {} copied, {} up to date, {} kept, {} failed{}{}",
        run.rule,
        run.result.as_str(),
        run.seconds,
        run.count("copied") + run.count("dry_run"),
        run.count("up_to_date"),
        run.count("kept"),
        run.count("failed"),
        if run.count("skipped") > 0 {
            format!(", {} skipped (rate limit reserve)", run.count("skipped"))
        } else {
            String::new()
        },
        if run.count("refused") > 0 {
            format!(", {} refused (no valid signature)", run.count("refused"))
        } else {
            String::new()
        }
    )
}
