//! The registration of crossdock's metrics, one function per family of metrics (the
//! transport's per-registry counts, the copy engine's, the rule runs', the daemon's), so that
//! each name, help text and label set is written once, next to its neighbours. The rendered
//! order is the registration order: registry, copy, rule, daemon.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::{
    AuditLabels, NotificationLabels, OutcomeLabels, ReasonLabels, RegistryLabels, RequestLabels,
    RuleLabels, RunLabels, duration_histogram,
};

/// Registers `metric` under `name` (after the `crossdock_` prefix) with `help`, and returns it.
fn add<M: prometheus_client::registry::Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// What the transport counts per registry.
pub(super) struct RegistryMetrics {
    pub(super) requests: Family<RequestLabels, Counter>,
    pub(super) ratelimit_remaining: Family<RegistryLabels, Gauge>,
    pub(super) concurrency_limit: Family<RegistryLabels, Gauge>,
}

impl RegistryMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        RegistryMetrics {
            requests: add(
                registry,
                "registry_requests",
                "HTTP requests sent to registries, by registry, method and status class",
                Family::default(),
            ),
            ratelimit_remaining: add(
                registry,
                "registry_ratelimit_remaining",
                "Last ratelimit-remaining header value seen from a registry (Docker Hub pulls left)",
                Family::default(),
            ),
            concurrency_limit: add(
                registry,
                "registry_concurrency_limit",
                "Requests a registry may have in flight now: max_concurrency, lowered while the \
                 registry answers 429 or 503 or its latency rises, growing back while it is healthy",
                Family::default(),
            ),
        }
    }
}

/// What the copy engine counts: blobs, images, refusals, audits.
pub(super) struct CopyMetrics {
    pub(super) blobs: Family<OutcomeLabels, Counter>,
    pub(super) bytes: Family<OutcomeLabels, Counter>,
    pub(super) images: Counter,
    pub(super) images_refused: Family<ReasonLabels, Counter>,
    pub(super) audited: Family<AuditLabels, Counter>,
}

impl CopyMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        CopyMetrics {
            blobs: add(
                registry,
                "blobs",
                "Blobs handled by the copy engine, by outcome (copied, skipped: target had it, mounted)",
                Family::default(),
            ),
            bytes: add(
                registry,
                "blob_bytes",
                "Bytes of blobs handled by the copy engine, by outcome",
                Family::default(),
            ),
            images: add(
                registry,
                "images_pushed",
                "Images (top-level manifests) written to a target",
                Counter::default(),
            ),
            images_refused: add(
                registry,
                "images_refused",
                "Images not copied because no signature by a trusted key or keyless signer covers \
                 them, by reason",
                Family::default(),
            ),
            audited: add(
                registry,
                "audited_objects",
                "Manifests and blobs re-read at targets by audits, by rule and result \
                 (intact, corrupt, missing, unreadable)",
                Family::default(),
            ),
        }
    }
}

/// What rule runs record, by rule.
pub(super) struct RuleMetrics {
    pub(super) runs: Family<RunLabels, Counter>,
    pub(super) last_success: Family<RuleLabels, Gauge>,
    pub(super) run_duration: Family<RuleLabels, Histogram>,
    pub(super) rule_images: Family<RunLabels, Counter>,
    pub(super) consecutive_failures: Family<RuleLabels, Gauge>,
    pub(super) rule_pruned: Family<RuleLabels, Counter>,
}

impl RuleMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        RuleMetrics {
            runs: add(
                registry,
                "rule_runs",
                "Rule runs, by rule and result (ok, failed, timeout)",
                Family::default(),
            ),
            last_success: add(
                registry,
                "rule_last_success_timestamp_seconds",
                "Unix time at which each rule last finished successfully",
                Family::default(),
            ),
            run_duration: add(
                registry,
                "rule_run_duration_seconds",
                "Duration of rule runs in seconds",
                Family::new_with_constructor(duration_histogram as fn() -> Histogram),
            ),
            rule_images: add(
                registry,
                "rule_images",
                "Images handled by rule runs, by rule and result (copied, up_to_date, kept, \
                 dry_run, skipped, failed, refused, pruned, would_prune, not_pruned, present, \
                 would_prune_by_tag)",
                Family::default(),
            ),
            consecutive_failures: add(
                registry,
                "rule_consecutive_failures",
                "Failed runs of each rule since its last good run (0: the last run was good); a \
                 failed rule is retried with backoff before its next scheduled run",
                Family::default(),
            ),
            rule_pruned: add(
                registry,
                "rule_pruned",
                "Target tags deleted because their source tag is gone (prune = true), by rule",
                Family::default(),
            ),
        }
    }
}

/// What the daemon records: notifications, schedules, its start.
pub(super) struct DaemonMetrics {
    pub(super) notifications: Family<NotificationLabels, Counter>,
    pub(super) rule_interval: Family<RuleLabels, Gauge>,
    pub(super) start_time: Gauge,
}

impl DaemonMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let notifications = add(
            registry,
            "notifications",
            "Registry notifications: events accepted (a sync queued) or ignored (no rule covers \
             them, or not a tagged push), and requests rejected (token, body)",
            Family::default(),
        );
        let rule_interval = add(
            registry,
            "rule_interval_seconds",
            "Seconds between a rule's next two scheduled runs",
            Family::default(),
        );
        let start_time = Gauge::default();
        start_time.set(chrono::Utc::now().timestamp());
        let start_time = add(
            registry,
            "start_time_seconds",
            "Unix time at which this crossdock process started",
            start_time,
        );
        DaemonMetrics {
            notifications,
            rule_interval,
            start_time,
        }
    }
}
