//! Blob bodies on the wire: an upload PUT at a relative Location keeping its query, with a
//! Content-Length; timeouts on silence, not on total time, for uploads; the request permit an
//! open blob stream holds until it is dropped.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{any, get, post, put};
use bytes::Bytes;
use futures_util::{StreamExt, stream};

use crossdock::digest::Digest;
use crossdock::registry::http::HttpOptions;
use crossdock::registry::{ErrorKind, Transport};

use crate::{fast_retries, serve, transport, transport_with};

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
