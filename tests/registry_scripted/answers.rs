//! Answers a registry should not give: an HTML or endless error body (quoted briefly, never read
//! to its end), a `Docker-Content-Digest` or content that does not match, a manifest over 4 MiB
//! with or without a Content-Length.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::routing::get;
use bytes::Bytes;
use futures_util::{StreamExt, stream};

use crossdock::digest::Digest;
use crossdock::manifest::media_type;
use crossdock::registry::{ErrorKind, Transport};

use crate::{manifest_bytes, manifest_response, serve, transport};

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
