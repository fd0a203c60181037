//! The adaptive request limit end to end (issue 18, item 4): a 429 storm shrinks the requests
//! crossdock has in flight at a registry, and healthy answers grow them back to
//! `max_concurrency`, seen both at the server (requests open at once) and in the
//! `crossdock_registry_concurrency_limit` gauge that `/metrics` serves.
//!
//! The server is a small in-test axum server, not a real registry: no registry here can be
//! made to answer 429 on demand (distribution has no rate limiting), and only a scripted one
//! can count the requests open at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;

use crossdock::registry::Transport;
use crossdock::registry::http::{HttpOptions, HttpRegistry};
use crossdock::registry::retry::RetryPolicy;

/// What the server sees: requests open now, the most open at once since the last reset, and
/// how many arrived.
#[derive(Default)]
struct Load {
    open: AtomicUsize,
    peak: AtomicUsize,
    seen: AtomicUsize,
    storm: AtomicBool,
}

impl Load {
    /// The peak since the last call, and the requests seen, both then reset.
    fn take(&self) -> (usize, usize) {
        (
            self.peak
                .swap(self.open.load(Ordering::SeqCst), Ordering::SeqCst),
            self.seen.swap(0, Ordering::SeqCst),
        )
    }
}

/// `/v2/` answering 429 while `storm` is set and 200 otherwise, each after 20 ms so that
/// requests overlap.
async fn serve(load: Arc<Load>) -> SocketAddr {
    let router = Router::new().route(
        "/v2/",
        get(move || {
            let load = load.clone();
            async move {
                let now = load.open.fetch_add(1, Ordering::SeqCst) + 1;
                load.peak.fetch_max(now, Ordering::SeqCst);
                load.seen.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                load.open.fetch_sub(1, Ordering::SeqCst);
                if load.storm.load(Ordering::SeqCst) {
                    (StatusCode::TOO_MANY_REQUESTS, "{}")
                } else {
                    (StatusCode::OK, "{}")
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// The gauge's value for `registry` in what `/metrics` renders.
fn gauge(registry: &str) -> Option<usize> {
    let text = crossdock::metrics::global().render();
    let key = format!("crossdock_registry_concurrency_limit{{registry=\"{registry}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
}

/// Waits up to 20 s for the gauge to read `want`.
async fn gauge_reaches(registry: &str, want: usize) {
    let start = Instant::now();
    while gauge(registry) != Some(want) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the limit of {registry} did not reach {want}: {:?}",
            gauge(registry)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_shrinks_the_requests_in_flight_and_they_grow_back() {
    let load = Arc::new(Load::default());
    load.storm.store(true, Ordering::SeqCst);
    let addr = serve(load.clone()).await;
    let name = addr.to_string();
    let t = Arc::new(
        HttpRegistry::new(
            &name,
            HttpOptions {
                max_concurrent_requests: 8,
                retry: RetryPolicy {
                    max_attempts: 2,
                    base_delay: Duration::from_millis(2),
                    max_delay: Duration::from_millis(5),
                    max_elapsed: Duration::from_secs(5),
                },
                ..HttpOptions::for_registry(&name)
            },
        )
        .unwrap(),
    );
    assert_eq!(gauge(&name), Some(8), "starts at max_concurrency");

    // Twice as many callers as the limit, each asking again as soon as it has an answer.
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..16)
        .map(|_| {
            let (t, stop) = (t.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let _ = t.ping().await;
                }
            })
        })
        .collect();

    // The storm: the limit comes down to 1, and the server then sees one request at a time.
    gauge_reaches(&name, 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    load.take();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (peak, seen) = load.take();
    assert_eq!(
        peak, 1,
        "requests open at once during the storm, at limit 1"
    );
    assert!(
        seen > 5,
        "only {seen} requests in 500 ms of storm at limit 1"
    );

    // Healthy again: back to 8, and the server sees 8 at once, never more.
    load.storm.store(false, Ordering::SeqCst);
    gauge_reaches(&name, 8).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (peak, _) = load.take();
    assert_eq!(peak, 8, "requests open at once once healthy");

    stop.store(true, Ordering::SeqCst);
    for c in callers {
        c.await.unwrap();
    }
}
