//! Failing and recovering: a server error then success is retried, persistent errors give up
//! with a retryable error, `Retry-After` is waited out in seconds or as an HTTP date, and the
//! registry's `RateLimit-Remaining` is recorded.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crossdock::registry::http::HttpOptions;
use crossdock::registry::retry::RetryPolicy;
use crossdock::registry::{ErrorKind, Transport};

use crate::{manifest_bytes, manifest_response, serve, transport, transport_with};

/// Answers the first `failures` requests with `fail()`, then with `ok()`; counts requests.
fn failing_then_ok(
    failures: usize,
    fail: impl Fn() -> Response + Clone + Send + Sync + 'static,
) -> (Router, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let router = Router::new().route(
        "/v2/app/manifests/v1",
        get(move || {
            let c = c.clone();
            let fail = fail.clone();
            async move {
                if c.fetch_add(1, Ordering::SeqCst) < failures {
                    fail()
                } else {
                    manifest_response(manifest_bytes())
                }
            }
        }),
    );
    (router, count)
}

#[tokio::test]
async fn a_server_error_then_success_is_retried() {
    let (router, count) = failing_then_ok(1, || {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"errors":[{"code":"UNKNOWN","message":"storage hiccup"}]}"#,
        )
            .into_response()
    });
    let t = transport(serve(router).await);
    let m = t
        .manifest_get("app", "v1")
        .await
        .expect("retried to success");
    assert_eq!(m.bytes(), &manifest_bytes());
    assert_eq!(count.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn persistent_server_errors_give_up_with_a_retryable_error() {
    let (router, count) = failing_then_ok(usize::MAX, || {
        (StatusCode::SERVICE_UNAVAILABLE, "upstream down").into_response()
    });
    let t = transport(serve(router).await);
    let e = t.manifest_get("app", "v1").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::ServerError, "{e}");
    assert!(e.is_retryable());
    assert_eq!(e.status, Some(503));
    assert_eq!(count.load(Ordering::SeqCst), 4, "max_attempts");
}

#[tokio::test]
async fn retry_after_in_seconds_is_honoured() {
    let (router, count) = failing_then_ok(1, || {
        (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "1")],
            r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#,
        )
            .into_response()
    });
    let t = transport(serve(router).await);
    let start = Instant::now();
    t.manifest_get("app", "v1").await.expect("after waiting");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(950),
        "waited only {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    assert_eq!(count.load(Ordering::SeqCst), 2);

    // Without retries the 429 surfaces, classified, with the wait the registry asked for.
    let (router, _) = failing_then_ok(1, || {
        (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "7")]).into_response()
    });
    let addr = serve(router).await;
    let once = transport_with(
        addr,
        HttpOptions {
            retry: RetryPolicy::never(),
            ..HttpOptions::for_registry(&addr.to_string())
        },
    );
    let e = once.manifest_get("app", "v1").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::RateLimited, "{e}");
    assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
}

#[tokio::test]
async fn retry_after_as_an_http_date_is_honoured() {
    let (router, count) = failing_then_ok(1, || {
        // HTTP-dates have whole seconds: +2 s from now is 1 to 2 s away.
        let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(2));
        (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, at)]).into_response()
    });
    let t = transport(serve(router).await);
    let start = Instant::now();
    t.manifest_get("app", "v1").await.expect("after waiting");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(950),
        "waited only {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    assert_eq!(count.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn ratelimit_remaining_is_recorded() {
    let router = Router::new().route(
        "/v2/",
        get(|| async { ([("ratelimit-remaining", "76;w=21600")], "{}") }),
    );
    let addr = serve(router).await;
    let t = transport(addr);
    assert_eq!(t.ratelimit_remaining(), None);
    t.ping().await.unwrap();
    assert_eq!(t.ratelimit_remaining(), Some(76));
    let text = crossdock::metrics::global().render();
    assert!(
        text.contains(&format!(
            "crossdock_registry_ratelimit_remaining{{registry=\"{addr}\"}} 76"
        )),
        "{text}"
    );
}
