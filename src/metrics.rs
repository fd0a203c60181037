//! Every metric crossdock exports, defined in one place (the registration of each family of
//! metrics, with its name and help text, is in `families`).
//!
//! Metrics live in one process-wide registry so that the transport and the copy engine can count
//! what they do without threading a handle through every call; the server renders it at
//! `/metrics` in Prometheus text format. Label values are registry hosts, rule names and
//! classes — never references with credentials, never unbounded user input.

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use families::{CopyMetrics, DaemonMetrics, RegistryMetrics, RuleMetrics};

mod families;

/// Labels for per-registry request counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Registry host.
    pub registry: String,
    /// HTTP method.
    pub method: String,
    /// `2xx`, `3xx`, `429`, `4xx` (other than 429), `5xx` or `error` (no response).
    pub status: String,
}

/// Labels keyed by registry only.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegistryLabels {
    /// Registry host.
    pub registry: String,
}

/// Labels for blob outcomes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `copied`, `skipped` or `mounted`.
    pub outcome: String,
}

/// Labels for rule runs.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    /// Rule name.
    pub rule: String,
    /// `ok`, `failed` or `timeout`.
    pub result: String,
}

/// Labels keyed by rule only.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    /// Rule name.
    pub rule: String,
}

/// Labels for registry notifications.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotificationLabels {
    /// `accepted`, `ignored` or `rejected`.
    pub result: String,
}

/// Labels for images refused by the signature policy.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// `unsigned`, `invalid_signature`, `lookup_failed`, `tlog_invalid`, `untrusted_certificate`
    /// or `identity_mismatch` (see `trust::Refusal::reason`).
    pub reason: String,
}

/// Labels for audit results.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuditLabels {
    /// Rule name.
    pub rule: String,
    /// `intact`, `corrupt` or `missing`.
    pub result: String,
}

/// The process-wide metrics.
pub struct Metrics {
    /// Rule runs by rule and result.
    pub runs: Family<RunLabels, Counter>,
    /// Unix time of each rule's last successful run.
    pub last_success: Family<RuleLabels, Gauge>,
    /// Run durations by rule.
    pub run_duration: Family<RuleLabels, Histogram>,
    /// Images by rule and outcome (copied, up_to_date, kept, dry_run, skipped, failed, refused, present).
    pub rule_images: Family<RunLabels, Counter>,
    /// Failed runs of each rule since its last good one.
    pub consecutive_failures: Family<RuleLabels, Gauge>,
    /// Target tags deleted by rules that prune, by rule.
    pub rule_pruned: Family<RuleLabels, Counter>,
    /// Blobs by outcome.
    pub blobs: Family<OutcomeLabels, Counter>,
    /// Blob bytes by outcome.
    pub bytes: Family<OutcomeLabels, Counter>,
    /// Images (top manifests) written to a target.
    pub images: Counter,
    registry: std::sync::Mutex<Registry>,
    /// HTTP requests sent, by registry, method and status class.
    pub requests: Family<RequestLabels, Counter>,
    /// Last `ratelimit-remaining` seen from a registry (Docker Hub).
    pub ratelimit_remaining: Family<RegistryLabels, Gauge>,
    /// Requests each registry may have in flight now (its adaptive limit).
    pub concurrency_limit: Family<RegistryLabels, Gauge>,
    /// Registry notification events by result; refused requests count as `rejected`.
    pub notifications: Family<NotificationLabels, Counter>,
    /// Seconds between a rule's next two scheduled runs (alerts compare the age of the last
    /// success with it).
    pub rule_interval: Family<RuleLabels, Gauge>,
    /// Unix time at which this process started.
    pub start_time: Gauge,
    /// Images the signature policy refused, by reason.
    pub images_refused: Family<ReasonLabels, Counter>,
    /// Objects (manifests and blobs) audited at targets, by rule and result.
    pub audited: Family<AuditLabels, Counter>,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("crossdock");
        // Registration order is the order of the rendered text; keep it.
        let RegistryMetrics {
            requests,
            ratelimit_remaining,
            concurrency_limit,
        } = RegistryMetrics::register(&mut registry);
        let CopyMetrics {
            blobs,
            bytes,
            images,
            images_refused,
            audited,
        } = CopyMetrics::register(&mut registry);
        let RuleMetrics {
            runs,
            last_success,
            run_duration,
            rule_images,
            consecutive_failures,
            rule_pruned,
        } = RuleMetrics::register(&mut registry);
        let DaemonMetrics {
            notifications,
            rule_interval,
            start_time,
        } = DaemonMetrics::register(&mut registry);
        Metrics {
            rule_interval,
            start_time,
            runs,
            last_success,
            run_duration,
            rule_images,
            consecutive_failures,
            rule_pruned,
            blobs,
            bytes,
            images,
            registry: std::sync::Mutex::new(registry),
            requests,
            ratelimit_remaining,
            concurrency_limit,
            notifications,
            images_refused,
            audited,
        }
    }

    /// Registers another metric (used by modules that own their metric, e.g. the scheduler).
    pub fn register(
        &self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        self.registry
            .lock()
            .expect("metrics registry lock")
            .register(name, help, metric);
    }

    /// Renders every metric in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let reg = self.registry.lock().expect("metrics registry lock");
        prometheus_client::encoding::text::encode(&mut out, &reg).expect("writing to a String");
        out
    }
}

/// Upper bounds of the duration buckets, in seconds: round numbers a person reads at a glance
/// (computed series such as 0.1·3ⁿ print as `0.30000000000000007`), from 10 ms to 4 h.
const DURATION_BUCKETS: [f64; 19] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1800.0, 3600.0, 7200.0, 14400.0,
];

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// The process-wide metrics, created on first use.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Counts one HTTP request to `registry`; `status` is the response status or `None` when no
/// response arrived.
pub fn record_request(registry: &str, method: &str, status: Option<u16>) {
    let status = match status {
        // 429 is counted apart from the other 4xx: it is the registry asking to slow down, which
        // an alert watches for, not a request that was wrong.
        Some(429) => "429".to_string(),
        Some(s) => format!("{}xx", s / 100),
        None => "error".to_string(),
    };
    global()
        .requests
        .get_or_create(&RequestLabels {
            registry: registry.to_string(),
            method: method.to_string(),
            status,
        })
        .inc();
}

/// Records the last `ratelimit-remaining` a registry announced.
pub fn record_ratelimit_remaining(registry: &str, remaining: i64) {
    global()
        .ratelimit_remaining
        .get_or_create(&RegistryLabels {
            registry: registry.to_string(),
        })
        .set(remaining);
}

/// Records the requests `registry` may have in flight now.
pub fn record_concurrency_limit(registry: &str, limit: usize) {
    global()
        .concurrency_limit
        .get_or_create(&RegistryLabels {
            registry: registry.to_string(),
        })
        .set(i64::try_from(limit).unwrap_or(i64::MAX));
}

/// Counts one blob handled by the copy engine (dry-run outcomes are not counted).
pub fn record_blob(outcome: crate::copy::BlobOutcome, size: u64) {
    use crate::copy::BlobOutcome;
    let outcome = match outcome {
        BlobOutcome::Copied => "copied",
        BlobOutcome::Skipped => "skipped",
        BlobOutcome::Mounted => "mounted",
        BlobOutcome::WouldCopy | BlobOutcome::WouldMount => return,
    };
    let labels = OutcomeLabels {
        outcome: outcome.to_string(),
    };
    global().blobs.get_or_create(&labels).inc();
    global().bytes.get_or_create(&labels).inc_by(size);
}

/// Records the rules this process schedules and their intervals (`None`: no further run),
/// forgetting rules no longer scheduled (after a reload).
pub fn record_rule_intervals<'a>(rules: impl IntoIterator<Item = (&'a str, Option<u64>)>) {
    set_rule_intervals(&global().rule_interval, rules);
}

fn set_rule_intervals<'a>(
    family: &Family<RuleLabels, Gauge>,
    rules: impl IntoIterator<Item = (&'a str, Option<u64>)>,
) {
    family.clear();
    for (rule, seconds) in rules {
        if let Some(seconds) = seconds {
            let labels = RuleLabels {
                rule: rule.to_string(),
            };
            family
                .get_or_create(&labels)
                .set(i64::try_from(seconds).unwrap_or(i64::MAX));
        }
    }
}

/// Counts one image written to a target.
pub fn record_image() {
    global().images.inc();
}

/// Records one finished rule run.
pub fn record_run(rule: &str, result: &str, seconds: f64, finished_unix: i64) {
    let m = global();
    m.runs
        .get_or_create(&RunLabels {
            rule: rule.to_string(),
            result: result.to_string(),
        })
        .inc();
    let rl = RuleLabels {
        rule: rule.to_string(),
    };
    m.run_duration.get_or_create(&rl).observe(seconds);
    if result == "ok" {
        m.last_success.get_or_create(&rl).set(finished_unix);
    }
}

/// Sets a rule's count of failed runs since its last good one.
pub fn set_consecutive_failures(rule: &str, n: u32) {
    global()
        .consecutive_failures
        .get_or_create(&RuleLabels {
            rule: rule.to_string(),
        })
        .set(i64::from(n));
}

/// Counts images handled by a rule run.
pub fn record_rule_images(rule: &str, result: &str, n: u64) {
    if n > 0 {
        global()
            .rule_images
            .get_or_create(&RunLabels {
                rule: rule.to_string(),
                result: result.to_string(),
            })
            .inc_by(n);
    }
}

/// Counts target tags a rule run pruned.
pub fn record_rule_pruned(rule: &str, n: u64) {
    if n > 0 {
        global()
            .rule_pruned
            .get_or_create(&RuleLabels {
                rule: rule.to_string(),
            })
            .inc_by(n);
    }
}

/// Counts `n` notification events (or refused requests) with `result`.
pub fn record_notifications(result: &str, n: u64) {
    if n > 0 {
        global()
            .notifications
            .get_or_create(&NotificationLabels {
                result: result.to_string(),
            })
            .inc_by(n);
    }
}

/// Counts one image refused by the signature policy.
pub fn record_refused(reason: &str) {
    global()
        .images_refused
        .get_or_create(&ReasonLabels {
            reason: reason.to_string(),
        })
        .inc();
}

/// Counts `n` objects audited by `rule` with `result`.
pub fn record_audited(rule: &str, result: &str, n: u64) {
    if n > 0 {
        global()
            .audited
            .get_or_create(&AuditLabels {
                rule: rule.to_string(),
                result: result.to_string(),
            })
            .inc_by(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_requests_by_status_class() {
        record_request("metrics-test:1", "GET", Some(404));
        record_request("metrics-test:1", "GET", Some(404));
        record_request("metrics-test:1", "PUT", None);
        record_request("metrics-test:1", "HEAD", Some(429));
        let text = global().render();
        assert!(
            text.contains(
                r#"crossdock_registry_requests_total{registry="metrics-test:1",method="GET",status="4xx"} 2"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"method="PUT",status="error"} 1"#), "{text}");
        assert!(text.contains(r#"method="HEAD",status="429"} 1"#), "{text}");
    }

    #[test]
    fn rule_intervals_replace_the_previous_set() {
        // A family of its own: the global one is rewritten by every DaemonState in the tests.
        let family = Family::<RuleLabels, Gauge>::default();
        let mut registry = Registry::default();
        registry.register("interval", "test", family.clone());
        let render = |registry: &Registry| {
            let mut out = String::new();
            prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
            out
        };
        set_rule_intervals(&family, [("a", Some(3600)), ("b", None)]);
        let text = render(&registry);
        assert!(text.contains(r#"interval{rule="a"} 3600"#), "{text}");
        assert!(!text.contains(r#"rule="b""#), "{text}");
        set_rule_intervals(&family, [("c", Some(60))]);
        let text = render(&registry);
        assert!(!text.contains(r#"rule="a""#), "{text}");
        assert!(text.contains(r#"interval{rule="c"} 60"#), "{text}");
        assert!(global().render().contains("crossdock_start_time_seconds "));
    }

    /// Every histogram bound renders as a short decimal (no float noise such as
    /// `0.30000000000000007`), and the buckets are the round ones listed.
    /// The `le` label of a histogram bucket line.
    fn le_of(l: &str) -> Option<&str> {
        let (_, rest) = l.split_once("{le=\"").or_else(|| l.split_once(",le=\""))?;
        rest.split('"').next()
    }

    #[test]
    fn histogram_bounds_are_short_decimals() {
        global()
            .run_duration
            .get_or_create(&RuleLabels {
                rule: "metrics-test-buckets".to_string(),
            })
            .observe(0.3);
        let text = global().render();
        for le in text.lines().filter_map(le_of) {
            let short = le == "+Inf"
                || (le.len() <= 7 && le.chars().all(|c| c.is_ascii_digit() || c == '.'));
            assert!(short, "le=\"{le}\" is not a short decimal:\n{text}");
        }
        let bounds: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("metrics-test-buckets"))
            .filter_map(le_of)
            .collect();
        assert_eq!(bounds.len(), DURATION_BUCKETS.len() + 1, "{text}");
        assert_eq!(bounds[4], "0.25", "{text}");
    }
}
