//! The daemon's HTTP face: liveness, readiness, status and Prometheus metrics on one port.
//!
//! Kubernetes reads `/healthz` (the process answers) and `/readyz` (configuration loaded and the
//! scheduler started — false again while shutting down, so no new traffic is routed); people read
//! `/status` (each rule, its next run and last result, as JSON) or `/`, the same as an HTML page
//! ([`page`]); Prometheus scrapes `/metrics`;
//! registries POST their push events to `/notifications` (served by
//! [`crate::daemon::events`], merged into this router by the daemon).
//! The paths are constants so the deployment manifests can be checked against them.

mod page;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// Liveness path.
pub const HEALTHZ: &str = "/healthz";
/// Readiness path.
pub const READYZ: &str = "/readyz";
/// Prometheus metrics path.
pub const METRICS: &str = "/metrics";
/// JSON status path.
pub const STATUS: &str = "/status";
/// The status page (HTML).
pub const PAGE: &str = "/";
/// Registry notifications path (POST, bearer token; see [`crate::daemon::events`]).
pub const NOTIFICATIONS: &str = "/notifications";

/// The last run of a rule.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// When it started.
    pub started: DateTime<Utc>,
    /// How long it took.
    pub seconds: f64,
    /// `ok`, `failed` or `timeout`.
    pub result: String,
    /// Images looked at.
    pub images: u64,
    /// Images written (the rest were up to date).
    pub images_copied: u64,
    /// Images that failed.
    pub images_failed: u64,
    /// First errors, if any.
    pub errors: Vec<String>,
    /// Target tags the run pruned (or would have, or could not remove alone), with their
    /// digests: at most [`crate::rule::run::FAILURES_KEPT`].
    pub pruned: Vec<crate::rule::ImageOutcome>,
    /// Images and pruned tags by state, as `sync --json` counts them.
    pub counts: crate::rule::Counts,
}

/// What `/status` shows for one rule.
#[derive(Debug, Clone, Serialize, Default)]
pub struct RuleStatus {
    /// The schedule as written.
    pub schedule: String,
    /// When it runs next.
    pub next_run: Option<DateTime<Utc>>,
    /// Whether a run is in progress.
    pub running: bool,
    /// The last finished run.
    pub last_run: Option<RunSummary>,
    /// When it last succeeded.
    pub last_success: Option<DateTime<Utc>>,
    /// Failed runs since the last good one.
    pub consecutive_failures: u32,
    /// When a failed rule is tried again, if before its next scheduled run.
    pub next_retry: Option<DateTime<Utc>>,
}

/// State shared between the scheduler and the server.
#[derive(Default)]
pub struct DaemonState {
    ready: AtomicBool,
    rules: RwLock<BTreeMap<String, RuleStatus>>,
    shard: RwLock<Option<String>>,
}

impl DaemonState {
    /// Marks the daemon ready (or not).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Whether ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Records which shard this process serves (for `/status`).
    pub fn set_shard(&self, shard: Option<String>) {
        *self.shard.write().expect("shard lock") = shard;
    }

    /// Replaces the rule set (after a (re)load), keeping the history of rules that remain.
    pub fn set_rules(&self, rules: impl IntoIterator<Item = (String, String)>) {
        let mut map = self.rules.write().expect("rules lock");
        let mut next = BTreeMap::new();
        for (name, schedule) in rules {
            let mut st = map.remove(&name).unwrap_or_default();
            st.schedule = schedule;
            next.insert(name, st);
        }
        let now = Utc::now();
        crate::metrics::record_rule_intervals(next.iter().map(|(name, st)| {
            let interval = crate::schedule::Schedule::parse(&st.schedule)
                .ok()
                .and_then(|s| s.interval_after(now))
                .map(|d| d.as_secs());
            (name.as_str(), interval)
        }));
        *map = next;
    }

    /// Updates one rule's status.
    pub fn update(&self, rule: &str, f: impl FnOnce(&mut RuleStatus)) {
        let mut map = self.rules.write().expect("rules lock");
        if let Some(st) = map.get_mut(rule) {
            f(st);
        }
    }

    /// A copy of one rule's status.
    pub fn rule(&self, rule: &str) -> Option<RuleStatus> {
        self.rules.read().expect("rules lock").get(rule).cloned()
    }
}

#[derive(Serialize)]
struct StatusDoc {
    ready: bool,
    shard: Option<String>,
    rules: BTreeMap<String, RuleStatus>,
}

/// The router.
pub fn router(state: Arc<DaemonState>) -> Router {
    Router::new()
        .route(HEALTHZ, get(|| async { "ok\n" }))
        .route(READYZ, get(readyz))
        .route(METRICS, get(metrics))
        .route(STATUS, get(status))
        .route(PAGE, get(page))
        .with_state(state)
}

async fn readyz(State(s): State<Arc<DaemonState>>) -> Response {
    if s.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::global().render(),
    )
        .into_response()
}

impl DaemonState {
    fn doc(&self) -> StatusDoc {
        StatusDoc {
            ready: self.is_ready(),
            shard: self.shard.read().expect("shard lock").clone(),
            rules: self.rules.read().expect("rules lock").clone(),
        }
    }
}

async fn status(State(s): State<Arc<DaemonState>>) -> Response {
    axum::Json(s.doc()).into_response()
}

async fn page(State(s): State<Arc<DaemonState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page::render(&s.doc(), Utc::now()),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get_path(app: Router, path: &str) -> (StatusCode, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let resp = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
        (resp.status(), resp.text().await.unwrap())
    }

    #[tokio::test]
    async fn readiness_follows_state_and_status_lists_rules() {
        let state = Arc::new(DaemonState::default());
        state.set_rules([("alpine".to_string(), "@every 1h".to_string())]);
        let (code, _) = get_path(router(state.clone()), READYZ).await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        state.set_ready(true);
        let (code, _) = get_path(router(state.clone()), READYZ).await;
        assert_eq!(code, StatusCode::OK);
        let (code, body) = get_path(router(state.clone()), HEALTHZ).await;
        assert_eq!((code, body.as_str()), (StatusCode::OK, "ok\n"));
        let (code, body) = get_path(router(state.clone()), PAGE).await;
        assert_eq!(code, StatusCode::OK);
        assert!(body.contains("<td class=\"rule\">alpine</td>"), "{body}");
        let (_, body) = get_path(router(state.clone()), STATUS).await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["rules"]["alpine"]["schedule"], "@every 1h");
        crate::metrics::record_request("server-test:1", "GET", Some(200));
        let (_, body) = get_path(router(state), METRICS).await;
        assert!(body.contains("crossdock_registry_requests_total"), "{body}");
    }
}
