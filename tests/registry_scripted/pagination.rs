//! Pagination with `Link`: tag lists followed page by page, endless or looping pagination an
//! error rather than a hang, and the referrers API absent or paginated.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, Request};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::get;

use crossdock::digest::Digest;
use crossdock::manifest::media_type;
use crossdock::registry::{ErrorKind, Transport};

use crate::{serve, transport};

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
