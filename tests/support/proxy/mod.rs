//! [`FaultProxy`]: an HTTP/1.1 proxy in front of a real [`TestRegistry`] that breaks chosen
//! requests on purpose, and records every request it saw.
//!
//! The real registry cannot be made to fail on demand, and a scripted server would only fail
//! the way its author imagined a registry works. So faults are injected *between* crossdock and
//! a real distribution: the proxy forwards everything byte for byte except the requests a
//! [`Rule`] picks (by method, path pattern and occurrence), which get a [`Fault`] instead —
//! a reset in the middle of a body (either direction), a 5xx, a 429 with `Retry-After`, a body
//! that stalls, crawls, ends early, is cut short or has one byte flipped, a response lost after
//! the registry committed a PUT, a redirect elsewhere, or a hook run at that moment (to move a
//! tag mid-copy).
//!
//! It is written on raw tokio TCP (with `httparse` for heads) rather than a server framework,
//! because the faults need control that frameworks hide: resetting (RST, not FIN) at a chosen
//! byte, keeping a connection open while sending nothing. It also measures how many requests
//! are in flight at once, which is how the load test checks crossdock's per-registry limits from
//! the outside, and can put a bearer-token challenge (with its own token endpoint) in front of a
//! registry that has no token auth.
//!
//! The proxy runs on its own thread and tokio runtime, so tests may block (run the crossdock
//! binary with `std::process`) while it serves. A request with a body, or with a fault that
//! may cut or stall it, is forwarded on a fresh upstream connection that is never reused, which
//! keeps a reset or stall on one request from leaking into the next. Other bodyless requests
//! (the load test sends thousands) reuse idle upstream connections, each handed back to the
//! pool only after its answer was relayed whole.
//!
//! Files: `rule` (faults and the rules that pick them), `gate` (the bearer gate), `connection`
//! (accepting, recording, in-flight counting), `handle` (one request, step by step), `answer`
//! (answers the proxy writes itself), `forward` (the registry side), `relay` (the answer back,
//! body faults applied), `wire` (HTTP/1.1 framing).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use super::registry::TestRegistry;
use connection::accept_loop;
use forward::Upstream;
use gate::Gate;

pub(crate) use rule::{Fault, Hook, RetryAfter, Rule, RuleStats};

mod answer;
mod connection;
mod forward;
mod gate;
mod handle;
mod relay;
mod rule;
mod wire;

/// One request the proxy saw.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub method: String,
    /// Path without query.
    pub path: String,
    pub query: Option<String>,
    /// Every header as received (names lowercase).
    pub headers: Vec<(String, String)>,
    /// When its head arrived.
    pub at: Instant,
    /// The status the client was sent, if an answer was sent.
    pub status: Option<u16>,
    /// The fault applied, if any.
    pub fault: Option<&'static str>,
}

impl Seen {
    /// A header's value (name in any case).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

struct Shared {
    upstream: SocketAddr,
    rules: Mutex<Vec<(Rule, RuleStats)>>,
    seen: Mutex<Vec<Seen>>,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    gate: Mutex<Option<Gate>>,
    token_requests: AtomicUsize,
    /// Idle upstream connections.
    pool: Mutex<Vec<Upstream>>,
}

/// A running proxy; stops when dropped.
pub(crate) struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl FaultProxy {
    /// A proxy in front of `registry`.
    pub(crate) fn start(registry: &TestRegistry) -> FaultProxy {
        Self::to(
            format!("127.0.0.1:{}", registry.port())
                .parse()
                .expect("registry address"),
        )
    }

    /// A proxy in front of any HTTP server.
    pub(crate) fn to(upstream: SocketAddr) -> FaultProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            upstream,
            rules: Mutex::default(),
            seen: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            gate: Mutex::default(),
            token_requests: AtomicUsize::new(0),
            pool: Mutex::default(),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("fault-proxy-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("proxy runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("tokio listener");
                    tokio::select! {
                        _ = accept_loop(listener, s) => {}
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime cancels connections still open (stalls included).
                rt.shutdown_timeout(Duration::from_millis(100));
            })
            .expect("spawn proxy thread");
        FaultProxy {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT`, the registry part of references through the proxy.
    pub(crate) fn host(&self) -> String {
        self.addr.to_string()
    }

    pub(crate) fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `HOST/REPO:TAG` or `HOST/REPO@DIGEST` through the proxy.
    pub(crate) fn image_ref(&self, repo: &str, reference: &str) -> String {
        let sep = if reference.contains(':') { '@' } else { ':' };
        format!("{}/{repo}{sep}{reference}", self.host())
    }

    /// Installs a rule (after those already there; the first rule that fires wins).
    pub(crate) fn add(&self, rule: Rule) -> RuleStats {
        let stats = RuleStats::default();
        self.shared
            .rules
            .lock()
            .unwrap()
            .push((rule, stats.clone()));
        stats
    }

    /// Removes every rule.
    pub(crate) fn clear_rules(&self) {
        self.shared.rules.lock().unwrap().clear();
    }

    /// Every request seen so far.
    pub(crate) fn requests(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// The most requests that were in flight at once (head received, answer not yet handed
    /// over in full).
    pub(crate) fn peak_in_flight(&self) -> usize {
        self.shared.peak.load(Ordering::SeqCst)
    }

    /// Requires `Authorization: Bearer <token>` on every `/v2/` request (401 with a Bearer
    /// challenge otherwise; the header is removed before forwarding), and serves the realm at
    /// `/token`, which grants `token` to Basic `user:password` only.
    pub(crate) fn require_bearer(&self, user: &str, password: &str, token: &str) {
        *self.shared.gate.lock().unwrap() = Some(Gate {
            user: user.into(),
            password: password.into(),
            token: token.into(),
        });
    }

    /// Token requests the realm answered.
    pub(crate) fn token_requests(&self) -> usize {
        self.shared.token_requests.load(Ordering::SeqCst)
    }
}
