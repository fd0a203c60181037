//! The HTTP transport against small scripted servers, for what a real registry cannot be made
//! to do on demand: fail and recover (500, 429 with `Retry-After`), redirect a blob to another
//! host, paginate tags with `Link`, paginate forever, answer with HTML or an endless body, lie
//! in `Docker-Content-Digest`, serve a manifest that is too large, stall an upload.
//!
//! Each test starts its own axum server on a free loopback port; the registry parts each script
//! needs are written out in the test, so what is being simulated stays visible.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use bytes::Bytes;
use futures_util::{StreamExt, stream};

use crossdock::digest::Digest;
use crossdock::manifest::media_type;
use crossdock::registry::auth::{Credentials, Secret};
use crossdock::registry::http::{HttpOptions, HttpRegistry};
use crossdock::registry::retry::RetryPolicy;
use crossdock::registry::{ErrorKind, Transport};

/// Retries fast enough for tests, with room for a `Retry-After` of a second or two.
fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        max_elapsed: Duration::from_secs(10),
    }
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

fn transport_with(addr: SocketAddr, opts: HttpOptions) -> HttpRegistry {
    HttpRegistry::new(&addr.to_string(), opts).unwrap()
}

fn transport(addr: SocketAddr) -> HttpRegistry {
    transport_with(
        addr,
        HttpOptions {
            retry: fast_retries(),
            ..HttpOptions::for_registry(&addr.to_string())
        },
    )
}

/// A small valid OCI image manifest.
fn manifest_bytes() -> Bytes {
    let config = Digest::sha256_of(b"{}");
    Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{config}","size":2}},"layers":[]}}"#,
        media_type::OCI_MANIFEST,
        media_type::OCI_CONFIG
    ))
}

fn manifest_response(bytes: Bytes) -> Response {
    (
        [
            (header::CONTENT_TYPE, media_type::OCI_MANIFEST.to_string()),
            (
                header::HeaderName::from_static("docker-content-digest"),
                Digest::sha256_of(&bytes).to_string(),
            ),
        ],
        bytes,
    )
        .into_response()
}

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

/// What arrived at a storage endpoint: the Authorization header of each request, if any.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

fn storage_router(seen: Seen, blob: Bytes) -> Router {
    Router::new().route(
        "/storage/{name}",
        get(move |headers: HeaderMap, req: Request| {
            let seen = seen.clone();
            let blob = blob.clone();
            async move {
                let host = headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let auth = headers
                    .get(header::AUTHORIZATION)
                    .map(|v| v.to_str().unwrap_or("?").to_string());
                seen.lock()
                    .unwrap()
                    .push((format!("{host}{}", req.uri()), auth));
                blob
            }
        }),
    )
}

#[tokio::test]
async fn blob_redirects_to_another_host_never_carry_credentials() {
    let blob = Bytes::from_static(b"layer bytes from object storage");
    let digest = Digest::sha256_of(&blob);
    let seen: Seen = Arc::default();
    // Object storage on another port of the same address: another origin for reqwest.
    let storage = serve(storage_router(seen.clone(), blob.clone())).await;

    // The registry: Basic auth required; blob GETs redirect, depending on the digest, to the
    // storage port or to itself under another host name (`localhost` instead of 127.0.0.1).
    let registry_auth: Seen = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let other_port = format!(
        "http://127.0.0.1:{}/storage/a?X-Amz-Signature=s3cr3t",
        storage.port()
    );
    let other_name = format!("http://localhost:{}/storage/b", addr.port());
    let ra = registry_auth.clone();
    let registry = Router::new()
        .route(
            "/v2/app/blobs/{digest}",
            get(
                move |axum::extract::Path(d): axum::extract::Path<String>, headers: HeaderMap| {
                    let ra = ra.clone();
                    let (other_port, other_name) = (other_port.clone(), other_name.clone());
                    async move {
                        let auth = headers
                            .get(header::AUTHORIZATION)
                            .map(|v| v.to_str().unwrap().to_string());
                        ra.lock().unwrap().push((d.clone(), auth.clone()));
                        if auth.is_none() {
                            return (
                                StatusCode::UNAUTHORIZED,
                                [(header::WWW_AUTHENTICATE, "Basic realm=\"test\"")],
                            )
                                .into_response();
                        }
                        let to = if d.ends_with("1") {
                            other_name
                        } else {
                            other_port
                        };
                        (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, to)]).into_response()
                    }
                },
            ),
        )
        .merge(storage_router(seen.clone(), blob.clone()));
    tokio::spawn(async move { axum::serve(listener, registry).await.unwrap() });

    let t = transport_with(
        addr,
        HttpOptions {
            credentials: Some(Credentials::Basic {
                username: "alice".into(),
                password: Secret::new("pw"),
            }),
            retry: fast_retries(),
            ..HttpOptions::for_registry(&addr.to_string())
        },
    );
    // Two digests so that both redirect targets are used (the handler looks at the last char).
    let via_port = "sha256:".to_string() + &"a".repeat(64);
    let via_name = "sha256:".to_string() + &"a".repeat(63) + "1";
    for d in [&via_port, &via_name] {
        let d = Digest::parse(d).unwrap();
        let body = t.blob_get("app", &d).await.expect("redirected GET");
        let got: Vec<Bytes> = body.stream.map(|c| c.unwrap()).collect().await;
        assert_eq!(got.concat(), blob.to_vec());
    }
    let _ = digest;

    let at_registry = registry_auth.lock().unwrap().clone();
    assert!(
        at_registry
            .iter()
            .any(|(_, a)| a.as_deref().is_some_and(|a| a.starts_with("Basic "))),
        "the registry did get credentials: {at_registry:?}"
    );
    let at_storage = seen.lock().unwrap().clone();
    assert_eq!(at_storage.len(), 2, "{at_storage:?}");
    assert!(
        at_storage.iter().any(|(u, _)| u.starts_with("localhost:")),
        "{at_storage:?}"
    );
    assert!(
        at_storage
            .iter()
            .any(|(u, _)| u.contains("X-Amz-Signature")),
        "the pre-signed query arrives intact: {at_storage:?}"
    );
    for (url, auth) in &at_storage {
        assert_eq!(auth, &None, "Authorization leaked to {url}");
    }
}

#[derive(serde::Deserialize)]
struct TagQuery {
    n: Option<usize>,
    last: Option<String>,
}

#[tokio::test]
async fn tag_list_follows_link_pages() {
    let all: Vec<String> = (0..250).map(|i| format!("t{i:03}")).collect();
    let asked: Arc<Mutex<Vec<String>>> = Arc::default();
    let (tags, a) = (all.clone(), asked.clone());
    let router = Router::new().route(
        "/v2/app/tags/list",
        get(move |Query(q): Query<TagQuery>, req: Request| {
            let (tags, a) = (tags.clone(), a.clone());
            async move {
                a.lock().unwrap().push(req.uri().to_string());
                // Like many registries: pages of at most 100, whatever `n` asks.
                let n = q.n.unwrap_or(100).min(100);
                let start = match &q.last {
                    Some(l) => tags.iter().position(|t| t == l).map_or(0, |p| p + 1),
                    None => 0,
                };
                let page: Vec<&String> = tags.iter().skip(start).take(n).collect();
                let mut headers = HeaderMap::new();
                if start + n < tags.len() {
                    let link = format!(
                        "</v2/app/tags/list?n=100&last={}>; rel=\"next\"",
                        page.last().unwrap()
                    );
                    headers.insert(header::LINK, link.parse().unwrap());
                }
                (
                    headers,
                    axum::Json(serde_json::json!({"name":"app","tags":page})),
                )
            }
        }),
    );
    let t = transport(serve(router).await);
    let got = t.tags("app").await.unwrap();
    assert_eq!(got, all);
    let asked = asked.lock().unwrap().clone();
    assert_eq!(
        asked,
        [
            "/v2/app/tags/list?n=1000",
            "/v2/app/tags/list?n=100&last=t099",
            "/v2/app/tags/list?n=100&last=t199"
        ]
    );
}

#[tokio::test]
async fn endless_pagination_is_an_error_not_a_hang() {
    // A registry that always links to yet another page of the same tags.
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let same_tags = Router::new().route(
        "/v2/app/tags/list",
        get(move || {
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move {
                (
                    [(
                        header::LINK,
                        format!("</v2/app/tags/list?last=x{n}>; rel=\"next\""),
                    )],
                    axum::Json(serde_json::json!({"name":"app","tags":["a","b"]})),
                )
            }
        }),
    );
    let t = transport(serve(same_tags).await);
    let e = tokio::time::timeout(Duration::from_secs(10), t.tags("app"))
        .await
        .expect("no hang")
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Invalid, "{e}");
    assert!(e.to_string().contains("no progress"), "{e}");
    assert!(calls.load(Ordering::SeqCst) < 10);

    // A registry whose next page is always the first one, with ever new tags.
    let c = Arc::new(AtomicUsize::new(0));
    let loops = Router::new().route(
        "/v2/app/tags/list",
        get(move || {
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move {
                (
                    [(header::LINK, "</v2/app/tags/list?n=1000>; rel=\"next\"")],
                    axum::Json(serde_json::json!({"name":"app","tags":[format!("t{n}")]})),
                )
            }
        }),
    );
    let t = transport(serve(loops).await);
    let e = tokio::time::timeout(Duration::from_secs(10), t.tags("app"))
        .await
        .expect("no hang")
        .unwrap_err();
    assert!(e.to_string().contains("loops"), "{e}");
}

#[tokio::test]
async fn a_non_json_error_body_is_quoted_briefly() {
    let router = Router::new()
        .route(
            "/v2/app/manifests/v1",
            get(|| async {
                (
                    StatusCode::FORBIDDEN,
                    [(header::CONTENT_TYPE, "text/html")],
                    "<html>\n<body>\n<h1>Forbidden</h1> by the corporate proxy\n</body></html>",
                )
            }),
        )
        // An error body that never ends must not be read to its end.
        .route(
            "/v2/app/manifests/endless",
            get(|| async {
                let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
                let body = Body::from_stream(stream::repeat(chunk).map(Ok::<_, std::io::Error>));
                (StatusCode::BAD_REQUEST, body)
            }),
        );
    let t = transport(serve(router).await);
    let e = t.manifest_get("app", "v1").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Denied, "{e}");
    assert_eq!(e.status, Some(403));
    assert!(e.errors.is_empty());
    assert!(e.message.contains("by the corporate proxy"), "{e}");
    assert!(!e.message.contains('\n'), "{e}");
    assert!(e.to_string().contains("/v2/app/manifests/v1"), "{e}");

    let e = tokio::time::timeout(Duration::from_secs(10), t.manifest_get("app", "endless"))
        .await
        .expect("an endless error body is not read to its end")
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Invalid, "{e}");
    assert!(e.message.chars().count() <= 301, "{}", e.message.len());
}

#[tokio::test]
async fn manifest_digests_are_checked_against_the_bytes() {
    let good = manifest_bytes();
    let other = Digest::sha256_of(b"something else");
    let g = good.clone();
    let router = Router::new()
        .route(
            "/v2/app/manifests/lying",
            get(move || {
                let g = g.clone();
                async move {
                    (
                        [
                            (header::CONTENT_TYPE, media_type::OCI_MANIFEST.to_string()),
                            (
                                header::HeaderName::from_static("docker-content-digest"),
                                other.to_string(),
                            ),
                        ],
                        g,
                    )
                }
            }),
        )
        // Asked for by digest, serves other bytes without any header.
        .route(
            "/v2/app/manifests/{reference}",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, media_type::OCI_MANIFEST)],
                    manifest_bytes(),
                )
            }),
        );
    let t = transport(serve(router).await);
    let e = t.manifest_get("app", "lying").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::DigestInvalid, "{e}");
    assert!(e.to_string().contains("Docker-Content-Digest"), "{e}");

    let asked = Digest::sha256_of(b"the manifest I want");
    let e = t.manifest_get("app", &asked.to_string()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::DigestInvalid, "{e}");
    // The same bytes asked for by their own digest are fine.
    let own = Digest::sha256_of(&good);
    let m = t.manifest_get("app", &own.to_string()).await.unwrap();
    assert_eq!(m.digest(), &own);
}

#[tokio::test]
async fn manifests_over_4_mib_are_refused() {
    let big = || {
        let mut v = manifest_bytes().to_vec();
        v.resize(5 * 1024 * 1024, b' ');
        Bytes::from(v)
    };
    let router = Router::new()
        .route(
            "/v2/app/manifests/sized",
            get(move || async move { manifest_response(big()) }),
        )
        // No Content-Length: only counting while reading can stop it.
        .route(
            "/v2/app/manifests/streamed",
            get(move || async move {
                let chunks: Vec<Result<Bytes, std::io::Error>> = big()
                    .chunks(100_000)
                    .map(|c| Ok(Bytes::copy_from_slice(c)))
                    .collect();
                (
                    [(header::CONTENT_TYPE, media_type::OCI_MANIFEST)],
                    Body::from_stream(stream::iter(chunks)),
                )
            }),
        );
    let t = transport(serve(router).await);
    for reference in ["sized", "streamed"] {
        let e = t.manifest_get("app", reference).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid, "{reference}: {e}");
        assert!(e.to_string().contains("limit"), "{reference}: {e}");
    }
}

#[tokio::test]
async fn upload_puts_at_a_relative_location_keeping_its_query() {
    let data = Bytes::from(vec![7u8; 300_000]);
    let digest = Digest::sha256_of(&data);
    /// What the PUT brought: its query, its Content-Length, its body.
    type Arrived = Option<(String, Option<String>, Bytes)>;
    let got: Arc<Mutex<Arrived>> = Arc::default();
    let g = got.clone();
    let router = Router::new()
        .route(
            "/v2/app/blobs/uploads/",
            post(|| async {
                (
                    StatusCode::ACCEPTED,
                    [(header::LOCATION, "/upload/abc?_state=x%3Dy")],
                )
            }),
        )
        .route(
            "/upload/abc",
            put(move |headers: HeaderMap, req: Request| {
                let g = g.clone();
                async move {
                    let query = req.uri().query().unwrap_or("").to_string();
                    let body = axum::body::to_bytes(req.into_body(), usize::MAX)
                        .await
                        .unwrap();
                    let len = headers
                        .get(header::CONTENT_LENGTH)
                        .map(|v| v.to_str().unwrap().to_string());
                    *g.lock().unwrap() = Some((query, len, body));
                    StatusCode::CREATED
                }
            }),
        );
    let t = transport(serve(router).await);
    let body = Box::pin(stream::iter(
        data.chunks(10_000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    ));
    t.blob_put("app", &digest, data.len() as u64, body, None)
        .await
        .unwrap();
    let (query, len, body) = got.lock().unwrap().clone().expect("PUT arrived");
    assert_eq!(
        query,
        format!("_state=x%3Dy&digest=sha256%3A{}", digest.hex())
    );
    assert_eq!(
        len.as_deref(),
        Some("300000"),
        "Content-Length, not chunked"
    );
    assert_eq!(body, data);
}

/// A registry whose upload endpoint reads the body at `per_frame` intervals, or never.
fn slow_upload_registry(per_frame: Option<Duration>) -> Router {
    Router::new()
        .route(
            "/v2/app/blobs/uploads/",
            post(|| async { (StatusCode::ACCEPTED, [(header::LOCATION, "/upload/slow")]) }),
        )
        .route(
            "/upload/slow",
            any(move |req: Request| async move {
                let Some(pause) = per_frame else {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    return StatusCode::REQUEST_TIMEOUT;
                };
                let mut body = req.into_body().into_data_stream();
                while let Some(frame) = body.next().await {
                    frame.unwrap();
                    tokio::time::sleep(pause).await;
                }
                StatusCode::CREATED
            }),
        )
}

fn zeros(total: usize) -> crossdock::registry::ByteStream {
    let chunk = Bytes::from(vec![0u8; 64 * 1024]);
    Box::pin(stream::iter(
        (0..total / chunk.len()).map(move |_| Ok(chunk.clone())),
    ))
}

#[tokio::test]
async fn a_slow_upload_that_keeps_moving_outlives_the_read_timeout() {
    // The body comes slowly (as from a slow source registry), 64 KiB every 100 ms for 2 s:
    // reqwest's own read timeout, which runs from the start of the request, would cut it off.
    let addr = serve(slow_upload_registry(Some(Duration::ZERO))).await;
    let t = transport_with(
        addr,
        HttpOptions {
            read_timeout: Duration::from_millis(700),
            retry: fast_retries(),
            ..HttpOptions::for_registry(&addr.to_string())
        },
    );
    let chunk = Bytes::from(vec![0u8; 64 * 1024]);
    let chunks = 20;
    let body = Box::pin(stream::iter(0..chunks).then(move |_| {
        let chunk = chunk.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(chunk)
        }
    }));
    let size = chunks * 64 * 1024;
    let digest = Digest::sha256_of(&vec![0u8; size]);
    let start = Instant::now();
    t.blob_put("app", &digest, size as u64, body, None)
        .await
        .expect("slow but moving upload");
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_stalled_upload_times_out() {
    let addr = serve(slow_upload_registry(None)).await;
    let t = transport_with(
        addr,
        HttpOptions {
            read_timeout: Duration::from_millis(500),
            retry: fast_retries(),
            ..HttpOptions::for_registry(&addr.to_string())
        },
    );
    let size = 64 * 1024 * 1024;
    let digest = Digest::sha256_of(b"whatever");
    let e = tokio::time::timeout(
        Duration::from_secs(20),
        t.blob_put("app", &digest, size as u64, zeros(size), None),
    )
    .await
    .expect("the watchdog fires")
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Transport, "{e}");
    assert!(e.to_string().contains("no progress"), "{e}");
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

#[tokio::test]
async fn referrers_absent_or_paginated() {
    let d = |n: u8| Digest::sha256_of(&[n]).to_string();
    let (d1, d2) = (d(1), d(2));
    let router = Router::new()
        .route(
            "/v2/none/referrers/{digest}",
            get(|| async { StatusCode::METHOD_NOT_ALLOWED }),
        )
        .route(
            "/v2/app/referrers/{digest}",
            get(move |q: Query<HashMap<String, String>>| {
                let (d1, d2) = (d1.clone(), d2.clone());
                async move {
                    let (digest, link) = if q.0.contains_key("page") {
                        (d2, None)
                    } else {
                        (d1, Some("<?page=2>; rel=\"next\""))
                    };
                    let body = serde_json::json!({
                        "schemaVersion": 2,
                        "mediaType": media_type::OCI_INDEX,
                        "manifests": [{
                            "mediaType": media_type::OCI_MANIFEST,
                            "digest": digest,
                            "size": 10,
                            "artifactType": "application/vnd.example.sbom"
                        }]
                    });
                    let mut headers = HeaderMap::new();
                    headers.insert(header::CONTENT_TYPE, media_type::OCI_INDEX.parse().unwrap());
                    if let Some(l) = link {
                        headers.insert(header::LINK, l.parse().unwrap());
                    }
                    (headers, body.to_string())
                }
            }),
        );
    let t = transport(serve(router).await);
    let subject = Digest::sha256_of(b"subject");
    assert_eq!(t.referrers("none", &subject).await.unwrap(), None);
    let found = t
        .referrers("app", &subject)
        .await
        .unwrap()
        .expect("API present");
    let digests: Vec<String> = found.iter().map(|r| r.digest.to_string()).collect();
    assert_eq!(digests, [d(1), d(2)]);
    assert_eq!(
        found[0].artifact_type.as_deref(),
        Some("application/vnd.example.sbom")
    );
}

#[tokio::test]
async fn a_blob_stream_holds_its_concurrency_permit_until_dropped() {
    let router = Router::new()
        .route("/v2/app/blobs/{digest}", get(|| async { "blob bytes" }))
        .route("/v2/", get(|| async { "{}" }));
    let addr = serve(router).await;
    let t = transport_with(
        addr,
        HttpOptions {
            max_concurrent_requests: 1,
            retry: fast_retries(),
            ..HttpOptions::for_registry(&addr.to_string())
        },
    );
    let body = t
        .blob_get("app", &Digest::sha256_of(b"blob bytes"))
        .await
        .unwrap();
    // The only permit is with the open blob stream: another request waits.
    let waited = tokio::time::timeout(Duration::from_millis(300), t.ping()).await;
    assert!(
        waited.is_err(),
        "a second request ran while the stream held the permit"
    );
    drop(body);
    tokio::time::timeout(Duration::from_secs(5), t.ping())
        .await
        .expect("the permit came back with the stream")
        .unwrap();
}

#[tokio::test]
async fn credentials_stay_on_the_registry_origin_for_upload_locations() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let record = move |what: &'static str, headers: &HeaderMap| {
        let auth = headers
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap().to_string());
        s.lock().unwrap().push((what.to_string(), auth.clone()));
        auth.is_some()
    };
    let (r1, r2) = (record.clone(), record);
    // The upload Location names the same server under another host name: another origin.
    let location = format!("http://localhost:{}/upload/x", addr.port());
    let router = Router::new()
        .route(
            "/v2/app/blobs/uploads/",
            post(move |headers: HeaderMap| {
                let location = location.clone();
                let authed = r1("POST", &headers);
                async move {
                    if !authed {
                        return (
                            StatusCode::UNAUTHORIZED,
                            [(header::WWW_AUTHENTICATE, "Basic realm=\"t\"".to_string())],
                        )
                            .into_response();
                    }
                    (StatusCode::ACCEPTED, [(header::LOCATION, location)]).into_response()
                }
            }),
        )
        .route(
            "/upload/x",
            put(move |headers: HeaderMap| {
                r2("PUT", &headers);
                async { StatusCode::CREATED }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let t = transport_with(
        addr,
        HttpOptions {
            credentials: Some(Credentials::Basic {
                username: "alice".into(),
                password: Secret::new("pw"),
            }),
            retry: fast_retries(),
            ..HttpOptions::for_registry(&addr.to_string())
        },
    );
    let data = Bytes::from_static(b"abc");
    let digest = Digest::sha256_of(&data);
    t.blob_put("app", &digest, 3, Box::pin(stream::iter([Ok(data)])), None)
        .await
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen[1].0 == "POST" && seen[1].1.is_some(), "{seen:?}");
    assert_eq!(seen[2], ("PUT".to_string(), None), "{seen:?}");
}
