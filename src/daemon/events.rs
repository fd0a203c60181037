//! Registry notifications: a push to a source registry syncs the image at once instead of at
//! the rule's next scheduled run.
//!
//! CNCF distribution (and registries built on it) POSTs an envelope of events to each endpoint
//! in its `notifications:` configuration, with the headers configured there — here a bearer
//! token, `[server] notifications_token`, compared in constant time. Without a token configured
//! the endpoint does not exist (404): an open endpoint would let anyone make the daemon hit its
//! registries. Distribution waits for the answer (its `timeout`) and retries failed deliveries
//! in order, so the handler only matches and queues; the sync happens in the rule's own task.
//!
//! Matching. Only `push` events with a tag are looked at (distribution also reports pulls,
//! blob pushes and pushes by digest). A push of `repository:tag` concerns a rule when one of its
//! sources has that repository path and its tag selection takes the tag (for an index rule:
//! one of its sources is that repository and tag). The registry host is not compared: the
//! event only tells the Host header the pusher used and the registry's own address, which
//! rarely equal the name crossdock reaches it by (`localhost:5000` vs `127.0.0.1:5000`, a load
//! balancer's name, a pod name). A push that only looks like a rule's source (same path in
//! another registry) therefore costs that rule a check — a HEAD per target — and never a wrong
//! copy: every copy reads from the rule's own source.
//!
//! Coalescing. Each rule has a queue of pushed tags that outlives configuration reloads. The
//! rule's task takes the whole queue under the rule's lock, so a push never runs beside a
//! scheduled run of the same rule; pushes that arrive during a run wait in the queue and run
//! right after it (a scheduled run takes the queue too: it reads every source afresh). The same
//! tag pushed twice before its sync is synced once; pushed again after, the second sync finds
//! the target up to date. Nothing here can lose a push, at worst sync it twice.
//!
//! Registry quirk (CNCF distribution 2.8): the push event is queued when the manifest is stored,
//! before the tag moves to it, so a sync started at once can still read the tag's old digest.
//! The queue keeps the digest each event names, and the rule's task first waits (briefly) until
//! the tag shows it ([`Rule::settle`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::sync::watch;

use crate::registry::auth::Secret;
use crate::rule::{Pending, Rule, Wanted};

/// The media type distribution sends envelopes with.
pub const ENVELOPE_MEDIA_TYPE: &str = "application/vnd.docker.distribution.events.v1+json";

/// A notification request body: distribution's envelope.
#[derive(Debug, Deserialize)]
pub struct Envelope {
    /// The events, oldest first.
    pub events: Vec<Event>,
}

/// One event. Only the fields matching needs are read; the rest of distribution's event
/// (request, actor, source) is ignored.
#[derive(Debug, Default, Deserialize)]
pub struct Event {
    /// Event id (distribution retries send the same id again).
    #[serde(default)]
    pub id: String,
    /// `push`, `pull`, `delete`, `mount`.
    #[serde(default)]
    pub action: String,
    /// What was pushed.
    #[serde(default)]
    pub target: EventTarget,
}

/// The `target` of an event.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventTarget {
    /// Media type of what was pushed (a manifest type, or `application/octet-stream` for a blob).
    #[serde(default)]
    pub media_type: String,
    /// Its digest.
    #[serde(default)]
    pub digest: String,
    /// Repository path, e.g. `library/alpine`.
    #[serde(default)]
    pub repository: String,
    /// The tag pushed, if the push was by tag.
    #[serde(default)]
    pub tag: Option<String>,
}

/// One rule's queue of pushes, and the signal that wakes its task.
pub struct Queue {
    pending: Mutex<Pending>,
    // A watch and not a `Notify`: every receiver (the task of the current configuration, and
    // one of the previous configuration that is finishing) sees the change, and a change made
    // while the task was busy is still seen when it next waits.
    wake: watch::Sender<u64>,
}

impl Queue {
    fn new() -> Queue {
        Queue {
            pending: Mutex::new(Pending::default()),
            wake: watch::Sender::new(0),
        }
    }

    fn push(&self, repository: &str, tag: &str, digest: &str, wanted: Wanted) {
        {
            let mut p = self.pending.lock().expect("pending lock");
            p.whole |= wanted == Wanted::Whole;
            // Events come in push order: the last digest is the one the tag ends at.
            p.images
                .entry(repository.to_string())
                .or_default()
                .insert(tag.to_string(), digest.to_string());
        }
        self.wake.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Takes every waiting push; `None` when there is none.
    pub fn take(&self) -> Option<Pending> {
        let p = std::mem::take(&mut *self.pending.lock().expect("pending lock"));
        (!p.is_empty()).then_some(p)
    }

    /// Whether pushes are waiting.
    pub fn has_pending(&self) -> bool {
        !self.pending.lock().expect("pending lock").is_empty()
    }

    /// A receiver that wakes when a push is queued.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.wake.subscribe()
    }
}

/// What became of the events of one envelope.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Dispatched {
    /// Events that queued a sync for at least one rule.
    pub accepted: u64,
    /// Events no rule is concerned by (and events that are no tagged push).
    pub ignored: u64,
    /// The rules that got work, by name.
    pub rules: BTreeSet<String>,
}

/// The notification side of the daemon: the token, the rules events are matched against, and
/// each rule's queue.
#[derive(Default)]
pub struct Events {
    token: RwLock<Option<Secret>>,
    rules: RwLock<Vec<Rule>>,
    queues: Mutex<HashMap<String, Arc<Queue>>>,
}

impl Events {
    /// Sets the token (`None`: the endpoint is off) and the rules of this process, after a
    /// (re)load. Queues are kept: a push queued before a reload still runs, if the new rule of
    /// that name still wants it.
    pub fn configure(&self, token: Option<Secret>, rules: Vec<Rule>) {
        *self.token.write().expect("token lock") = token;
        *self.rules.write().expect("rules lock") = rules;
    }

    /// The queue of the rule named `rule`.
    pub fn queue(&self, rule: &str) -> Arc<Queue> {
        self.queues
            .lock()
            .expect("queues lock")
            .entry(rule.to_string())
            .or_insert_with(|| Arc::new(Queue::new()))
            .clone()
    }

    /// Matches each event against the rules and queues the pushes they want.
    pub fn dispatch(&self, envelope: &Envelope) -> Dispatched {
        let mut out = Dispatched::default();
        let rules = self.rules.read().expect("rules lock");
        for e in &envelope.events {
            let tag = e.target.tag.as_deref().filter(|t| !t.is_empty());
            let (true, Some(tag)) = (e.action == "push", tag) else {
                out.ignored += 1;
                continue;
            };
            let repo = e.target.repository.as_str();
            let mut wanted_by = Vec::new();
            for rule in rules.iter() {
                if let Some(w) = rule.wants(repo, tag) {
                    self.queue(rule.name()).push(repo, tag, &e.target.digest, w);
                    wanted_by.push(rule.name().to_string());
                }
            }
            if wanted_by.is_empty() {
                tracing::debug!(
                    repository = repo,
                    tag,
                    "registry notification: no rule covers this push"
                );
                out.ignored += 1;
                continue;
            }
            tracing::info!(
                repository = repo,
                tag,
                digest = %e.target.digest,
                rules = %wanted_by.join(", "),
                "registry notification: push queued"
            );
            out.accepted += 1;
            out.rules.extend(wanted_by);
        }
        out
    }

    fn authorized(&self, headers: &HeaderMap) -> Option<bool> {
        let token = self.token.read().expect("token lock");
        let expected = token.as_ref()?;
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim());
        Some(given.is_some_and(|g| same_secret(g, expected.expose())))
    }
}

/// Compares two secrets in time independent of where they differ: their SHA-256 digests are
/// compared in full (which also hides the length of the expected one).
fn same_secret(given: &str, expected: &str) -> bool {
    let (a, b) = (Sha256::digest(given), Sha256::digest(expected));
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The notification endpoint, to merge into the daemon's server.
pub fn router(events: Arc<Events>) -> Router {
    Router::new()
        .route(crate::server::NOTIFICATIONS, post(receive))
        .with_state(events)
}

fn refuse(status: StatusCode, message: String) -> Response {
    crate::metrics::record_notifications("rejected", 1);
    let mut r = (status, format!("{message}\n")).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"crossdock notifications\""),
        );
    }
    r
}

async fn receive(State(events): State<Arc<Events>>, headers: HeaderMap, body: Bytes) -> Response {
    match events.authorized(&headers) {
        None => {
            return refuse(
                StatusCode::NOT_FOUND,
                "registry notifications are off: set [server] notifications_token to turn them on"
                    .into(),
            );
        }
        Some(false) => {
            // Neither the expected nor the given value is logged.
            tracing::warn!("registry notification refused: missing or wrong bearer token");
            return refuse(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token".into(),
            );
        }
        Some(true) => {}
    }
    // The body is read as JSON whatever its Content-Type says: distribution sends
    // ENVELOPE_MEDIA_TYPE, and a hand-made `curl --data` should work too.
    let envelope: Envelope = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!("registry notification refused: malformed envelope: {e}");
            return refuse(
                StatusCode::BAD_REQUEST,
                format!(
                    "malformed notification envelope (expected {{\"events\": [...]}} as \
                     distribution sends it): {e}"
                ),
            );
        }
    };
    let done = events.dispatch(&envelope);
    crate::metrics::record_notifications("accepted", done.accepted);
    crate::metrics::record_notifications("ignored", done.ignored);
    let status = if done.accepted > 0 {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    (status, axum::Json(done)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;
    use std::path::Path;

    fn rules(text: &str) -> Vec<Rule> {
        let plan = load_str(Path::new("t.toml"), text, Vec::new()).unwrap();
        plan.rules_in(crate::config::Shard::ALL)
    }

    fn push(repo: &str, tag: Option<&str>) -> Event {
        Event {
            id: "x".into(),
            action: "push".into(),
            target: EventTarget {
                media_type: crate::manifest::media_type::OCI_MANIFEST.into(),
                digest: "sha256:00".into(),
                repository: repo.into(),
                tag: tag.map(str::to_string),
            },
        }
    }

    const RULES: &str = r#"
[[rules]]
name = "listed"
source = "localhost:5000/library/alpine"
target = "localhost:5001/m/{repo}"
tags = ["3.20", "latest"]
[[rules]]
name = "semver"
source = ["localhost:5000/library/alpine", "localhost:5000/other"]
target = "localhost:5001/s/{repo}"
tags = { semver = ">=3" }
[[rules]]
name = "newest"
source = "localhost:5000/library/alpine"
target = "localhost:5001/n/{repo}"
tags = { newest = 2 }
[[indexes]]
name = "app-latest"
target = "localhost:5001/app:latest"
sources = ["localhost:5000/app:amd64", "localhost:5000/app:arm64"]
"#;

    #[test]
    fn pushes_queue_the_rules_that_want_them_and_coalesce() {
        let events = Events::default();
        events.configure(Some(Secret::new("t")), rules(RULES));
        let env = Envelope {
            events: vec![
                push("library/alpine", Some("3.20")),
                push("library/alpine", Some("3.20")),
                push("library/alpine", Some("edge")),
                push("library/alpine", None),
                Event {
                    action: "pull".into(),
                    ..push("library/alpine", Some("3.20"))
                },
                push("unknown/repo", Some("3.20")),
                push("app", Some("arm64")),
                push("app", Some("latest")),
            ],
        };
        let d = events.dispatch(&env);
        assert_eq!((d.accepted, d.ignored), (3, 5), "{d:?}");
        assert_eq!(
            d.rules.iter().map(String::as_str).collect::<Vec<_>>(),
            ["app-latest", "listed", "newest", "semver"]
        );
        let listed = events.queue("listed").take().unwrap();
        assert_eq!(
            listed.images["library/alpine"].len(),
            1,
            "duplicates coalesce"
        );
        assert!(!listed.whole);
        assert_eq!(listed.images["library/alpine"]["3.20"], "sha256:00");
        assert!(events.queue("listed").take().is_none(), "taken once");
        assert!(events.queue("newest").take().unwrap().whole);
        assert!(events.queue("app-latest").take().unwrap().whole);
        let semver = events.queue("semver").take().unwrap();
        assert!(semver.images["library/alpine"].contains_key("3.20"));
        assert!(!semver.images["library/alpine"].contains_key("edge"));
    }

    #[tokio::test]
    async fn a_push_while_the_task_is_busy_still_wakes_it() {
        let q = Queue::new();
        let mut rx = q.subscribe();
        rx.borrow_and_update();
        q.push("r", "t", "", Wanted::Image);
        // The task was not waiting; it sees the change when it next does.
        tokio::time::timeout(std::time::Duration::from_secs(1), rx.changed())
            .await
            .expect("woken")
            .unwrap();
        assert!(q.has_pending());
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abd", "abc"));
        assert!(!same_secret("ab", "abc"));
        assert!(!same_secret("", "abc"));
        let events = Events::default();
        let mut h = HeaderMap::new();
        assert_eq!(events.authorized(&h), None, "no token: endpoint off");
        events.configure(Some(Secret::new("s3cret")), Vec::new());
        assert_eq!(events.authorized(&h), Some(false));
        h.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert_eq!(events.authorized(&h), Some(true));
        h.insert(header::AUTHORIZATION, "bearer s3cret".parse().unwrap());
        assert_eq!(events.authorized(&h), Some(true));
        h.insert(header::AUTHORIZATION, "Basic s3cret".parse().unwrap());
        assert_eq!(events.authorized(&h), Some(false));
        h.insert(header::AUTHORIZATION, "Bearer s3cre".parse().unwrap());
        assert_eq!(events.authorized(&h), Some(false));
    }

    #[test]
    fn distribution_envelope_parses() {
        let body = r#"{"events":[{"id":"c9cc","timestamp":"2026-11-26T15:58:25.876976393Z",
          "action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json",
          "size":259,"digest":"sha256:418c","length":259,"repository":"app",
          "url":"http://127.0.0.1:5998/v2/app/manifests/sha256:418c","tag":"v1"},
          "request":{"id":"025f","addr":"127.0.0.1:48456","host":"127.0.0.1:5998","method":"PUT",
          "useragent":"x"},"actor":{},"source":{"addr":"vm:5998","instanceID":"9c04"}}]}"#;
        let e: Envelope = serde_json::from_str(body).unwrap();
        assert_eq!(e.events[0].target.tag.as_deref(), Some("v1"));
        assert_eq!(e.events[0].target.repository, "app");
        assert!(serde_json::from_str::<Envelope>(r#"{"evnts":[]}"#).is_err());
    }
}
