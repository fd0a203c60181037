//! Auditing what a mirror rule wrote: every target repository of every source, every tag of it
//! the rule selects — for `crossdock verify --config` and the daemon's `audit = "CRON"`.
//!
//! The tags audited are those the target has **and** the rule selects (its tag list and filter
//! applied to the target's tag list): an audit checks what is there, and a tag the rule has
//! not copied yet is the next sync's business, not corruption.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{AuditReport, Sample, audit};
use crate::reference::Reference;
use crate::registry::connect::Connector;
use crate::rule::RulePlan;
use crate::schedule::Schedule;

/// The target images of `rule` present at the targets; problems listing them are returned
/// beside (one line each).
pub async fn targets(rule: &RulePlan, connector: &Connector) -> (Vec<Reference>, Vec<String>) {
    let mut images = Vec::new();
    let mut problems = Vec::new();
    for source in &rule.sources {
        for tpl in rule.targets() {
            let repo = match tpl.expand(source) {
                Ok(r) => r,
                Err(e) => {
                    problems.push(format!("rule {}: target of {source}: {e}", rule.name));
                    continue;
                }
            };
            let t = match connector.get(repo.registry()) {
                Ok(t) => t,
                Err(e) => {
                    problems.push(format!("rule {}: {repo}: {e}", rule.name));
                    continue;
                }
            };
            match t.tags(repo.repository()).await {
                Ok(tags) => {
                    for tag in rule.tags.select(&tags) {
                        if tags.contains(&tag) {
                            images.extend(repo.with_tag(&tag));
                        }
                    }
                }
                // A target repository never written to has nothing to audit.
                Err(e) if e.is_not_found() => {}
                Err(e) => problems.push(format!("rule {}: listing {repo}: {e}", rule.name)),
            }
        }
    }
    (images, problems)
}

/// Audits every target image of `rule`.
pub async fn audit_rule(
    rule: &RulePlan,
    connector: &Connector,
    sample: Sample,
) -> (Vec<AuditReport>, Vec<String>) {
    let (images, problems) = targets(rule, connector).await;
    let mut reports = Vec::new();
    for image in images {
        match connector.get(image.registry()) {
            Ok(t) => reports.push(audit(&*t, &image, sample).await),
            Err(e) => reports.push(AuditReport {
                image: image.to_string(),
                findings: vec![super::Finding {
                    kind: "manifest",
                    digest: image.manifest_reference(),
                    problem: super::Problem::Unreadable,
                    detail: e.to_string(),
                }],
                ..AuditReport::default()
            }),
        }
    }
    (reports, problems)
}

/// The daemon's audit of one rule on its `audit` schedule, until `stop`. Each audit is logged
/// (every finding as a warning) and counted in `crossdock_audited_objects_total{rule,result}`.
pub async fn audit_loop(
    rule: RulePlan,
    schedule: Schedule,
    connector: Arc<Connector>,
    stop: CancellationToken,
) {
    while let Some(next) = schedule.next_after(chrono::Utc::now()) {
        let wait = (next - chrono::Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        tracing::info!(rule = %rule.name, "audit starting");
        let (reports, problems) = audit_rule(&rule, &connector, Sample::ALL).await;
        record(&rule.name, &reports);
        for p in problems {
            tracing::warn!(rule = %rule.name, "audit: {p}");
        }
        for r in &reports {
            for f in &r.findings {
                tracing::warn!(rule = %rule.name, image = %r.image, kind = f.kind, digest = %f.digest,
                    problem = ?f.problem, "audit: {}", f.detail);
            }
        }
        let bad = reports.iter().filter(|r| !r.intact()).count();
        tracing::info!(rule = %rule.name, images = reports.len(), failed = bad, "audit finished");
    }
}

/// Counts one rule's audit in the metrics: objects intact, corrupt, missing (and unreadable).
pub fn record(rule: &str, reports: &[AuditReport]) {
    let mut intact = 0;
    let mut counts = std::collections::BTreeMap::new();
    for r in reports {
        intact += r.manifests + r.blobs_read + r.blobs_headed;
        for f in &r.findings {
            let name = match f.problem {
                super::Problem::Missing => "missing",
                super::Problem::Corrupt => "corrupt",
                super::Problem::Unreadable => "unreadable",
            };
            *counts.entry(name).or_insert(0u64) += 1;
        }
    }
    crate::metrics::record_audited(rule, "intact", intact);
    for (name, n) in counts {
        crate::metrics::record_audited(rule, name, n);
    }
}
