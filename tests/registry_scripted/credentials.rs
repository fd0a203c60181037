//! Credentials stay on the registry's origin: a blob redirected to object storage or to the same
//! server under another host name, and an upload Location on another origin, never carry the
//! registry's Authorization; a pre-signed query arrives intact.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use bytes::Bytes;
use futures_util::{StreamExt, stream};

use crossdock::digest::Digest;
use crossdock::registry::Transport;
use crossdock::registry::auth::{Credentials, Secret};
use crossdock::registry::http::HttpOptions;

use crate::{fast_retries, serve, transport_with};

/// What arrived at a storage endpoint: the Authorization header of each request, if any.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A transport to `addr` logging in as alice, with fast retries.
fn as_alice(addr: std::net::SocketAddr) -> crossdock::registry::http::HttpRegistry {
    transport_with(
        addr,
        HttpOptions {
            credentials: Some(Credentials::Basic {
                username: "alice".into(),
                password: Secret::new("pw"),
            }),
            retry: fast_retries(),
            ..HttpOptions::for_registry(&addr.to_string())
        },
    )
}

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

    let t = as_alice(addr);
    // Two digests so that both redirect targets are used (the handler looks at the last char).
    let via_port = "sha256:".to_string() + &"a".repeat(64);
    let via_name = "sha256:".to_string() + &"a".repeat(63) + "1";
    for d in [&via_port, &via_name] {
        let d = Digest::parse(d).unwrap();
        let body = t.blob_get("app", &d).await.expect("redirected GET");
        let got: Vec<Bytes> = body.stream.map(|c| c.unwrap()).collect().await;
        assert_eq!(got.concat(), blob.to_vec());
    }

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
    let t = as_alice(addr);
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
