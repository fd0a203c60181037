//! The bearer token flow of `registry::auth` against a scripted token realm.
//!
//! The real registry (distribution 2.8 from Debian) only does htpasswd Basic auth, so the token
//! server side of the Docker token spec is played here by a small axum app on loopback: it
//! records what it was asked (method, query, `Authorization`, form) and grants numbered tokens
//! `tok-1`, `tok-2`, ... so each test can tell a cached token from a fresh one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use base64::Engine;
use crossdock::registry::ErrorKind;
use crossdock::registry::auth::{Auth, AuthError, Clock, Credentials, Scope, Secret};
use http::HeaderValue;

const REGISTRY: &str = "registry.test:5000";
const SERVICE: &str = "test-registry";

/// One request the realm saw.
#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    query: Vec<(String, String)>,
    authorization: Option<String>,
    form: Vec<(String, String)>,
}

struct Realm {
    seen: Mutex<Vec<Seen>>,
    issued: AtomicUsize,
    /// The only Basic password accepted (user `alice`).
    password: &'static str,
    /// The refresh tokens accepted by the POST flow.
    refresh_tokens: &'static [&'static str],
    expires_in: u64,
    /// Slows answers down, so parallel requests overlap.
    delay: Duration,
}

impl Realm {
    fn new() -> Self {
        Realm {
            seen: Mutex::new(Vec::new()),
            issued: AtomicUsize::new(0),
            password: "s3cret",
            refresh_tokens: &["refresh-1", "refresh-2"],
            expires_in: 300,
            delay: Duration::ZERO,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn pairs(s: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(s.as_bytes())
        .into_owned()
        .collect()
}

async fn token(
    State(realm): State<Arc<Realm>>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let authorization = headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_string());
    let form = if method == Method::POST {
        pairs(std::str::from_utf8(&body).unwrap())
    } else {
        Vec::new()
    };
    realm.seen.lock().unwrap().push(Seen {
        method: method.clone(),
        query: pairs(query.as_deref().unwrap_or("")),
        authorization: authorization.clone(),
        form: form.clone(),
    });
    tokio::time::sleep(realm.delay).await;
    if method == Method::POST {
        let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        if field("grant_type") != Some("refresh_token")
            || !field("refresh_token").is_some_and(|t| realm.refresh_tokens.contains(&t))
        {
            return (
                StatusCode::UNAUTHORIZED,
                r#"{"error":"invalid_grant","error_description":"refresh token expired"}"#,
            )
                .into_response();
        }
        let n = realm.issued.fetch_add(1, Ordering::SeqCst) + 1;
        return axum::Json(serde_json::json!({
            "access_token": format!("tok-{n}"),
            "expires_in": realm.expires_in,
            "refresh_token": "refresh-2",
        }))
        .into_response();
    }
    if let Some(a) = &authorization {
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("alice:{}", realm.password))
        );
        if a != &expected {
            return (
                StatusCode::UNAUTHORIZED,
                r#"{"details":"incorrect username or password"}"#,
            )
                .into_response();
        }
    } else if realm.password == "no-anonymous" {
        return (
            StatusCode::UNAUTHORIZED,
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
        )
            .into_response();
    }
    let n = realm.issued.fetch_add(1, Ordering::SeqCst) + 1;
    axum::Json(serde_json::json!({
        "token": format!("tok-{n}"),
        "expires_in": realm.expires_in,
        "issued_at": chrono::Utc::now().to_rfc3339(),
    }))
    .into_response()
}

/// Starts the realm; returns its base URL (`http://127.0.0.1:PORT`).
async fn start(realm: Arc<Realm>) -> String {
    let app = Router::new()
        .route("/token", any(token))
        .route("/notjson", get(|| async { "<html>login page</html>" }))
        .route(
            "/broken",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "upstream down") }),
        )
        .with_state(realm);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn challenge(base: &str, path: &str, scope: Option<&str>) -> HeaderValue {
    let mut s = format!(r#"Bearer realm="{base}{path}",service="{SERVICE}""#);
    if let Some(scope) = scope {
        s.push_str(&format!(r#",scope="{scope}""#));
    }
    HeaderValue::from_str(&s).unwrap()
}

fn bearer(n: usize) -> HeaderValue {
    HeaderValue::from_str(&format!("Bearer tok-{n}")).unwrap()
}

fn alice(password: &str) -> Option<Credentials> {
    Some(Credentials::basic("alice", password))
}

fn values<'a>(pairs: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// A clock tests move by hand.
fn manual_clock() -> (Clock, Arc<Mutex<Duration>>) {
    let start = Instant::now();
    let offset = Arc::new(Mutex::new(Duration::ZERO));
    let o = offset.clone();
    (Arc::new(move || start + *o.lock().unwrap()), offset)
}

#[tokio::test]
async fn basic_credentials_scopes_and_cache() {
    let realm = Arc::new(Realm::new());
    let base = start(realm.clone()).await;
    let auth = Auth::new(reqwest::Client::new(), REGISTRY, alice("s3cret"));
    // A push to `t` that mounts from `src`: pull,push on the target and pull on the source;
    // the registry's challenge names the target scope again.
    let scopes = [Scope::push_pull("t"), Scope::pull("src")];
    let ch = challenge(&base, "/token", Some("repository:t:pull,push"));

    let header = auth
        .on_unauthorized(Some(&ch), &scopes, None)
        .await
        .unwrap();
    assert_eq!(header, bearer(1));
    assert!(header.is_sensitive());

    let seen = realm.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, Method::GET);
    assert_eq!(values(&seen[0].query, "service"), [SERVICE]);
    assert_eq!(
        values(&seen[0].query, "scope"),
        ["repository:src:pull", "repository:t:pull,push"]
    );
    assert_eq!(values(&seen[0].query, "account"), ["alice"]);
    // base64("alice:s3cret")
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some("Basic YWxpY2U6czNjcmV0")
    );

    // Reused from cache for the same scopes or any subset; not for others.
    assert_eq!(auth.cached_header(&scopes), Some(bearer(1)));
    assert_eq!(auth.cached_header(&[Scope::pull("t")]), Some(bearer(1)));
    assert_eq!(auth.cached_header(&[Scope::pull("src")]), Some(bearer(1)));
    assert_eq!(auth.cached_header(&[Scope::push_pull("src")]), None);
    assert_eq!(auth.cached_header(&[Scope::pull("other")]), None);

    // Another repository gets its own token, and the first stays cached.
    let other = [Scope::pull("other")];
    let ch = challenge(&base, "/token", Some("repository:other:pull"));
    let header = auth.on_unauthorized(Some(&ch), &other, None).await.unwrap();
    assert_eq!(header, bearer(2));
    assert_eq!(auth.cached_header(&other), Some(bearer(2)));
    assert_eq!(auth.cached_header(&scopes), Some(bearer(1)));
    assert_eq!(realm.seen().len(), 2);
}

#[tokio::test]
async fn anonymous_token_for_challenge_scope() {
    let realm = Arc::new(Realm::new());
    let base = start(realm.clone()).await;
    let auth = Auth::new(reqwest::Client::new(), REGISTRY, None);
    // `GET /v2/` style: the caller names no scope; the challenge's scope is asked for.
    let ch = challenge(&base, "/token", Some("repository:library/alpine:pull"));
    let header = auth.on_unauthorized(Some(&ch), &[], None).await.unwrap();
    assert_eq!(header, bearer(1));
    let seen = realm.seen();
    assert_eq!(seen[0].authorization, None);
    assert!(values(&seen[0].query, "account").is_empty());
    assert_eq!(
        values(&seen[0].query, "scope"),
        ["repository:library/alpine:pull"]
    );
    assert_eq!(
        auth.cached_header(&[Scope::pull("library/alpine")]),
        Some(bearer(1))
    );
}

#[tokio::test]
async fn token_is_fetched_again_after_expiry() {
    let realm = Arc::new(Realm::new()); // expires_in 300 s
    let base = start(realm.clone()).await;
    let (clock, offset) = manual_clock();
    let auth = Auth::new(reqwest::Client::new(), REGISTRY, None).with_clock(clock);
    let scopes = [Scope::pull("a")];
    let ch = challenge(&base, "/token", None);
    assert_eq!(
        auth.on_unauthorized(Some(&ch), &scopes, None)
            .await
            .unwrap(),
        bearer(1)
    );

    *offset.lock().unwrap() = Duration::from_secs(200);
    assert_eq!(auth.cached_header(&scopes), Some(bearer(1)));
    // Within the last 30 s the token is no longer handed out: it could expire in flight.
    *offset.lock().unwrap() = Duration::from_secs(275);
    assert_eq!(auth.cached_header(&scopes), None);

    assert_eq!(
        auth.on_unauthorized(Some(&ch), &scopes, None)
            .await
            .unwrap(),
        bearer(2)
    );
    assert_eq!(auth.cached_header(&scopes), Some(bearer(2)));
    assert_eq!(realm.seen().len(), 2);
}

#[tokio::test]
async fn identity_token_uses_oauth2_post() {
    let realm = Arc::new(Realm::new());
    let base = start(realm.clone()).await;
    let auth = Auth::new(
        reqwest::Client::new(),
        REGISTRY,
        Some(Credentials::IdentityToken(Secret::new("refresh-1"))),
    );
    let scopes = [Scope::push_pull("b"), Scope::pull("a")];
    let ch = challenge(&base, "/token", None);
    assert_eq!(
        auth.on_unauthorized(Some(&ch), &scopes, None)
            .await
            .unwrap(),
        bearer(1)
    );
    let seen = realm.seen();
    assert_eq!(seen[0].method, Method::POST);
    assert_eq!(seen[0].authorization, None);
    assert!(seen[0].query.is_empty(), "{:?}", seen[0].query);
    let form = &seen[0].form;
    assert_eq!(values(form, "grant_type"), ["refresh_token"]);
    assert_eq!(values(form, "refresh_token"), ["refresh-1"]);
    assert_eq!(values(form, "service"), [SERVICE]);
    assert_eq!(values(form, "client_id"), ["crossdock"]);
    // OAuth2 scopes are one space-separated parameter.
    assert_eq!(
        values(form, "scope"),
        ["repository:a:pull repository:b:pull,push"]
    );

    // The realm rotated the refresh token; the next exchange uses the new one.
    let ch = challenge(&base, "/token", None);
    assert_eq!(
        auth.on_unauthorized(Some(&ch), &[Scope::pull("c")], None)
            .await
            .unwrap(),
        bearer(2)
    );
    assert_eq!(
        values(&realm.seen()[1].form, "refresh_token"),
        ["refresh-2"]
    );
}

#[tokio::test]
async fn refused_credentials_are_a_clear_error_without_anonymous_retry() {
    let realm = Arc::new(Realm::new());
    let base = start(realm.clone()).await;
    let auth = Auth::new(reqwest::Client::new(), REGISTRY, alice("wrong-password"));
    let ch = challenge(&base, "/token", None);
    let err = auth
        .on_unauthorized(Some(&ch), &[Scope::pull("a")], None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AuthError::TokenRefused {
                status: 401,
                anonymous: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    let message = err.to_string();
    let port_host = base.trim_start_matches("http://");
    assert!(message.contains(REGISTRY), "{message}");
    assert!(message.contains(port_host), "{message}");
    assert!(
        message.contains("incorrect username or password"),
        "{message}"
    );
    assert!(!format!("{message}{err:?}").contains("wrong-password"));
    // Exactly one request, with the credentials: no quiet anonymous second try.
    let seen = realm.seen();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].authorization.is_some());
    assert_eq!(auth.cached_header(&[Scope::pull("a")]), None);
}

#[tokio::test]
async fn refused_refresh_token_and_anonymous_refusal() {
    let realm = Arc::new(Realm::new());
    let base = start(realm.clone()).await;
    let ch = challenge(&base, "/token", None);
    let auth = Auth::new(
        reqwest::Client::new(),
        REGISTRY,
        Some(Credentials::IdentityToken(Secret::new("revoked-token"))),
    );
    let err = auth
        .on_unauthorized(Some(&ch), &[], None)
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("refresh token expired"), "{message}");
    assert!(!format!("{message}{err:?}").contains("revoked-token"));

    let realm = Arc::new(Realm {
        password: "no-anonymous",
        ..Realm::new()
    });
    let base = start(realm).await;
    let ch = challenge(&base, "/token", None);
    let auth = Auth::new(reqwest::Client::new(), REGISTRY, None);
    let err = auth
        .on_unauthorized(Some(&ch), &[], None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AuthError::CredentialsRequired { registry } if registry == REGISTRY),
        "{err:?}"
    );
}

#[tokio::test]
async fn rejected_cached_token_is_replaced_once() {
    let realm = Arc::new(Realm::new());
    let base = start(realm.clone()).await;
    let auth = Auth::new(reqwest::Client::new(), REGISTRY, alice("s3cret"));
    let scopes = [Scope::pull("a")];
    let ch = challenge(&base, "/token", None);
    let first = auth
        .on_unauthorized(Some(&ch), &scopes, None)
        .await
        .unwrap();
    assert_eq!(first, bearer(1));

    // The registry refused tok-1 (revoked): the HTTP layer reports what it sent.
    let refused = HeaderValue::from_str(&format!(
        r#"Bearer realm="{base}/token",error="invalid_token""#
    ))
    .unwrap();
    let second = auth
        .on_unauthorized(Some(&refused), &scopes, Some(&first))
        .await
        .unwrap();
    assert_eq!(second, bearer(2));
    assert_eq!(auth.cached_header(&scopes), Some(bearer(2)));
    assert_eq!(realm.seen().len(), 2);
}

#[tokio::test]
async fn parallel_unauthorized_requests_share_one_fetch() {
    let realm = Arc::new(Realm {
        delay: Duration::from_millis(200),
        ..Realm::new()
    });
    let base = start(realm.clone()).await;
    let auth = Arc::new(Auth::new(reqwest::Client::new(), REGISTRY, None));
    let ch = challenge(&base, "/token", None);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let auth = auth.clone();
        let ch = ch.clone();
        tasks.push(tokio::spawn(async move {
            auth.on_unauthorized(Some(&ch), &[Scope::pull("a")], None)
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), bearer(1));
    }
    assert_eq!(realm.seen().len(), 1);
}

#[tokio::test]
async fn bad_realm_answers() {
    let realm = Arc::new(Realm::new());
    let base = start(realm).await;
    let auth = Auth::new(reqwest::Client::new(), REGISTRY, None);

    let err = auth
        .on_unauthorized(Some(&challenge(&base, "/notjson", None)), &[], None)
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::TokenResponse { .. }), "{err:?}");
    assert!(err.to_string().contains(REGISTRY), "{err}");

    let err = auth
        .on_unauthorized(Some(&challenge(&base, "/broken", None)), &[], None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, AuthError::TokenStatus { status: 500, .. }),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::ServerError);
    assert!(err.to_string().contains("upstream down"), "{err}");

    // A realm nobody listens on: a transport error, which the HTTP layer may retry.
    let unused = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}", unused.local_addr().unwrap());
    drop(unused);
    let err = auth
        .on_unauthorized(Some(&challenge(&dead, "/token", None)), &[], None)
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::TokenRequest { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Transport);
}

#[test]
fn auth_debug_never_shows_secrets() {
    for c in [
        Credentials::basic("alice", "hunter2"),
        Credentials::IdentityToken(Secret::new("hunter2")),
        Credentials::RegistryToken(Secret::new("hunter2")),
    ] {
        let auth = Auth::new(reqwest::Client::new(), REGISTRY, Some(c));
        let debug = format!("{auth:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains(REGISTRY), "{debug}");
    }
}
