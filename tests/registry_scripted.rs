//! The HTTP transport against small scripted servers, for what a real registry cannot be made
//! to do on demand: fail and recover (500, 429 with `Retry-After`), redirect a blob to another
//! host, paginate tags with `Link`, paginate forever, answer with HTML or an endless body, lie
//! in `Docker-Content-Digest`, serve a manifest that is too large, stall an upload.
//!
//! Each test starts its own axum server on a free loopback port; the registry parts each script
//! needs are written out in the test, so what is being simulated stays visible.
//!
//! One test binary; the tests live in `registry_scripted/`, one file per concept. This file
//! holds what they share: serving a router, a transport with fast retries, a small manifest.

#[path = "registry_scripted/answers.rs"]
mod answers;
#[path = "registry_scripted/credentials.rs"]
mod credentials;
#[path = "registry_scripted/pagination.rs"]
mod pagination;
#[path = "registry_scripted/retries.rs"]
mod retries;
#[path = "registry_scripted/transfers.rs"]
mod transfers;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crossdock::digest::Digest;
use crossdock::manifest::media_type;
use crossdock::registry::http::{HttpOptions, HttpRegistry};
use crossdock::registry::retry::RetryPolicy;

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
