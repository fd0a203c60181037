//! Every metric crossdock exports, defined in one place.
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
use prometheus_client::registry::Registry;

/// Labels for per-registry request counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Registry host.
    pub registry: String,
    /// HTTP method.
    pub method: String,
    /// `2xx`, `3xx`, `4xx`, `5xx` or `error` (no response).
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

/// The process-wide metrics.
pub struct Metrics {
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
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("crossdock");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "registry_requests",
            "HTTP requests sent to registries, by registry, method and status class",
            requests.clone(),
        );
        let ratelimit_remaining = Family::<RegistryLabels, Gauge>::default();
        registry.register(
            "registry_ratelimit_remaining",
            "Last ratelimit-remaining header value seen from a registry (Docker Hub pulls left)",
            ratelimit_remaining.clone(),
        );
        let blobs = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "blobs",
            "Blobs handled by the copy engine, by outcome (copied, skipped: target had it, mounted)",
            blobs.clone(),
        );
        let bytes = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "blob_bytes",
            "Bytes of blobs handled by the copy engine, by outcome",
            bytes.clone(),
        );
        let images = Counter::default();
        registry.register(
            "images_pushed",
            "Images (top-level manifests) written to a target",
            images.clone(),
        );
        Metrics {
            blobs,
            bytes,
            images,
            registry: std::sync::Mutex::new(registry),
            requests,
            ratelimit_remaining,
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

/// The process-wide metrics, created on first use.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Counts one HTTP request to `registry`; `status` is the response status or `None` when no
/// response arrived.
pub fn record_request(registry: &str, method: &str, status: Option<u16>) {
    let status = match status {
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

/// Counts one image written to a target.
pub fn record_image() {
    global().images.inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_requests_by_status_class() {
        record_request("metrics-test:1", "GET", Some(404));
        record_request("metrics-test:1", "GET", Some(404));
        record_request("metrics-test:1", "PUT", None);
        let text = global().render();
        assert!(
            text.contains(
                r#"crossdock_registry_requests_total{registry="metrics-test:1",method="GET",status="4xx"} 2"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"method="PUT",status="error"} 1"#), "{text}");
    }
}
