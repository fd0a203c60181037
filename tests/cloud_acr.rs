//! Azure Container Registry identity (issue 15) end to end: Entra ID token → ACR refresh token
//! (`/oauth2/exchange`) → registry access tokens (`/oauth2/token`) → a real distribution
//! registry with token auth.
//!
//! [`Azure`] is a small in-test server because nothing real can play Microsoft Entra ID, the
//! Azure instance metadata service or ACR's exchange endpoint on loopback. It follows the
//! published protocols (client-credentials grant with a client assertion or secret, IMDS with
//! `Metadata: true`, ACR's `grant_type=access_token` exchange and `refresh_token` grant) and
//! refuses anything else, and its registry tokens are verified by distribution itself.

mod support;

use std::collections::HashSet;
use std::process::Output;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use support::form::{field, pairs};
use support::token_realm::{TokenSigner, scopes, target_and_source};
use support::{Format, ImageSpec, TestRegistry, cli};

const TENANT: &str = "72f988bf-0000-4000-8000-2d7cd011db47";
const CLIENT_ID: &str = "0d3c1d6e-0000-4000-8000-5bd4c0a8f111";
const CLIENT_SECRET: &str = "sp-secret-Zq8~crossdock-test";
const SERVICE: &str = "crossdock-test.azurecr.io";

/// The Entra ID, IMDS and ACR token endpoints, on one loopback port.
struct Azure {
    signer: TokenSigner,
    /// The projected service account token a workload presents.
    federated: String,
    /// What each endpoint was asked, in order (`entra:assertion`, `imds`, `exchange`, ...).
    seen: Mutex<Vec<String>>,
    entra_tokens: Mutex<HashSet<String>>,
    refresh_tokens: Mutex<HashSet<String>>,
    /// Every token issued, to check none is printed.
    issued: Mutex<Vec<String>>,
}

type Shared = Arc<Azure>;

fn refuse(error: &str, description: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(serde_json::json!({"error": error, "error_description": description})),
    )
        .into_response()
}

impl Azure {
    fn issue(&self, prefix: &str) -> String {
        let mut issued = self.issued.lock().unwrap();
        let token = format!("{prefix}-{}-{}", issued.len(), "x".repeat(24));
        issued.push(token.clone());
        token
    }

    fn entra_token(&self, how: &str) -> Response {
        self.seen.lock().unwrap().push(format!("entra:{how}"));
        let token = self.issue("entra-access");
        self.entra_tokens.lock().unwrap().insert(token.clone());
        Json(serde_json::json!({"token_type": "Bearer", "expires_in": 3599, "access_token": token}))
            .into_response()
    }
}

async fn entra(State(az): State<Shared>, Path(tenant): Path<String>, body: String) -> Response {
    let f = pairs(&body);
    if tenant != TENANT
        || field(&f, "client_id") != Some(CLIENT_ID)
        || field(&f, "grant_type") != Some("client_credentials")
        || field(&f, "scope") != Some("https://containerregistry.azure.net/.default")
    {
        return refuse("invalid_request", "wrong tenant, client, grant or scope");
    }
    if field(&f, "client_assertion_type")
        == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        && field(&f, "client_assertion") == Some(az.federated.as_str())
    {
        return az.entra_token("assertion");
    }
    if field(&f, "client_secret") == Some(CLIENT_SECRET) {
        return az.entra_token("secret");
    }
    refuse(
        "invalid_client",
        "AADSTS7000215: Invalid client secret or assertion.",
    )
}

async fn imds(State(az): State<Shared>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let q = pairs(&q.unwrap_or_default());
    if headers.get("metadata").and_then(|v| v.to_str().ok()) != Some("true")
        || field(&q, "resource") != Some("https://containerregistry.azure.net")
        || field(&q, "api-version").is_none()
    {
        return (
            StatusCode::BAD_REQUEST,
            "Required metadata header not specified",
        )
            .into_response();
    }
    az.seen.lock().unwrap().push("imds".into());
    let token = az.issue("imds-access");
    az.entra_tokens.lock().unwrap().insert(token.clone());
    // IMDS writes expires_in as a string.
    Json(serde_json::json!({"access_token": token, "expires_in": "86399", "token_type": "Bearer"}))
        .into_response()
}

async fn exchange(State(az): State<Shared>, body: String) -> Response {
    let f = pairs(&body);
    let known =
        field(&f, "access_token").is_some_and(|t| az.entra_tokens.lock().unwrap().contains(t));
    if field(&f, "grant_type") != Some("access_token")
        || field(&f, "service") != Some(SERVICE)
        || !known
    {
        return refuse("unauthorized", "bad exchange");
    }
    az.seen.lock().unwrap().push("exchange".into());
    let refresh = az.issue("acr-refresh");
    az.refresh_tokens.lock().unwrap().insert(refresh.clone());
    Json(serde_json::json!({"refresh_token": refresh})).into_response()
}

async fn token(State(az): State<Shared>, body: String) -> Response {
    let f = pairs(&body);
    let known =
        field(&f, "refresh_token").is_some_and(|t| az.refresh_tokens.lock().unwrap().contains(t));
    if field(&f, "grant_type") != Some("refresh_token")
        || field(&f, "service") != Some(SERVICE)
        || !known
    {
        return refuse("unauthorized", "bad refresh token");
    }
    az.seen.lock().unwrap().push("token".into());
    let jwt = az.signer.sign("workload", &scopes(&f), 300);
    az.issued.lock().unwrap().push(jwt.clone());
    Json(serde_json::json!({"access_token": jwt})).into_response()
}

struct Setup {
    azure: Shared,
    url: String,
    source: TestRegistry,
    target: TestRegistry,
    digest: String,
    dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let azure = Arc::new(Azure {
        signer: TokenSigner::new(dir.path(), SERVICE),
        federated: federated_token(exp),
        seen: Mutex::default(),
        entra_tokens: Mutex::default(),
        refresh_tokens: Mutex::default(),
        issued: Mutex::default(),
    });
    let app = Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(entra))
        .route("/metadata/identity/oauth2/token", get(imds))
        .route("/oauth2/exchange", post(exchange))
        .route("/oauth2/token", post(token))
        .with_state(azure.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let image = ImageSpec::single(Format::Oci, "linux/amd64")
        .seed(16)
        .build();
    let (target, source) =
        target_and_source(&format!("{url}/oauth2/token"), &azure.signer, &image).await;
    Setup {
        azure,
        url,
        source,
        target,
        digest: image.digest().to_string(),
        dir,
    }
}

/// A JWT-shaped projected token expiring at `exp` (Unix seconds).
fn federated_token(exp: u64) -> String {
    let b = |s: String| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!(
        "{}.{}.c2lnbmF0dXJlLW9mLXRoZS1rdWJlbGV0",
        b(r#"{"alg":"RS256"}"#.into()),
        b(format!(
            r#"{{"aud":["api://AzureADTokenExchange"],"sub":"system:serviceaccount:mirror:crossdock","exp":{exp}}}"#
        ))
    )
}

impl Setup {
    /// `crossdock --log-level trace import SOURCE TARGET --auth TARGET=acr` with `env`.
    async fn import(&self, env: Vec<(&'static str, String)>) -> Output {
        let args = [
            "--log-level".to_string(),
            "trace".to_string(),
            "import".to_string(),
            self.source.image_ref("app", "v1"),
            self.target.image_ref("mirror/app", "v1"),
            "--auth".to_string(),
            format!("{}=acr", self.target.host()),
        ];
        tokio::task::spawn_blocking(move || {
            let mut c = cli::command(&args.iter().map(String::as_str).collect::<Vec<_>>());
            for v in [
                "AZURE_CLIENT_ID",
                "AZURE_TENANT_ID",
                "AZURE_FEDERATED_TOKEN_FILE",
                "AZURE_CLIENT_SECRET",
                "AZURE_AUTHORITY_HOST",
                "AZURE_POD_IDENTITY_AUTHORITY_HOST",
            ] {
                c.env_remove(v);
            }
            c.envs(env).output().unwrap()
        })
        .await
        .unwrap()
    }

    fn workload_env(&self, file: &std::path::Path) -> Vec<(&'static str, String)> {
        vec![
            ("AZURE_CLIENT_ID", CLIENT_ID.to_string()),
            ("AZURE_TENANT_ID", TENANT.to_string()),
            ("AZURE_FEDERATED_TOKEN_FILE", file.display().to_string()),
            ("AZURE_AUTHORITY_HOST", format!("{}/", self.url)),
        ]
    }

    /// The tag as distribution stored it (read from its storage, not through any client).
    fn stored_tag(&self) -> Option<String> {
        let link = self
            .target
            .storage_dir()
            .join("docker/registry/v2/repositories/mirror/app/_manifests/tags/v1/current/link");
        std::fs::read_to_string(link).ok()
    }

    fn assert_nothing_leaked(&self, out: &Output) {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("TRACE"), "not logged at trace level");
        let issued = self.azure.issued.lock().unwrap().clone();
        for s in issued
            .iter()
            .map(String::as_str)
            .chain([self.azure.federated.as_str(), CLIENT_SECRET])
        {
            assert!(
                !text.contains(s),
                "a token or secret leaked into the output"
            );
        }
    }

    fn seen(&self) -> Vec<String> {
        self.azure.seen.lock().unwrap().clone()
    }
}

/// What the run reported (stdout, and stderr at warning level and above: runs log at trace).
fn stderr(out: &Output) -> String {
    let all = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    all.lines()
        .filter(|l| !l.contains(" TRACE ") && !l.contains(" DEBUG ") && !l.contains(" INFO "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn acr_workload_identity_goes_through_the_exchange_to_a_token_registry() {
    let s = setup().await;
    let file = s.dir.path().join("azure-identity-token");
    std::fs::write(&file, &s.azure.federated).unwrap();
    let out = s.import(s.workload_env(&file)).await;
    cli::ok(&out);
    assert_eq!(s.stored_tag().as_deref(), Some(s.digest.as_str()));
    let seen = s.seen();
    assert_eq!(seen[..2], ["entra:assertion", "exchange"], "{seen:?}");
    assert!(
        seen[2..].iter().all(|e| e == "token") && seen.len() > 2,
        "{seen:?}"
    );
    s.assert_nothing_leaked(&out);
}

#[tokio::test(flavor = "multi_thread")]
async fn acr_service_principal_and_managed_identity() {
    let s = setup().await;
    let sp = vec![
        ("AZURE_CLIENT_ID", CLIENT_ID.to_string()),
        ("AZURE_TENANT_ID", TENANT.to_string()),
        ("AZURE_CLIENT_SECRET", CLIENT_SECRET.to_string()),
        ("AZURE_AUTHORITY_HOST", s.url.clone()),
    ];
    let out = s.import(sp).await;
    cli::ok(&out);
    s.assert_nothing_leaked(&out);
    assert_eq!(s.seen()[0], "entra:secret");

    std::fs::remove_dir_all(s.target.storage_dir().join("docker")).unwrap();
    let imds = vec![("AZURE_POD_IDENTITY_AUTHORITY_HOST", s.url.clone())];
    let out = s.import(imds).await;
    cli::ok(&out);
    s.assert_nothing_leaked(&out);
    assert!(s.seen().contains(&"imds".to_string()), "{:?}", s.seen());
    assert_eq!(s.stored_tag().as_deref(), Some(s.digest.as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn acr_bad_identity_is_a_clear_error() {
    let s = setup().await;
    let host = s.target.host();

    // The projected token file is missing.
    let missing = s.dir.path().join("not-mounted");
    let out = s.import(s.workload_env(&missing)).await;
    assert!(!out.status.success());
    let e = stderr(&out);
    for wanted in [
        host.as_str(),
        "AKS workload identity",
        "AZURE_FEDERATED_TOKEN_FILE",
        "cannot be read",
    ] {
        assert!(e.contains(wanted), "{wanted:?} not in: {e}");
    }

    // The projected token expired (a stale copy instead of the kubelet's projection).
    let stale = s.dir.path().join("stale-token");
    std::fs::write(&stale, federated_token(1_600_000_000)).unwrap();
    let out = s.import(s.workload_env(&stale)).await;
    let e = stderr(&out);
    assert!(!out.status.success());
    assert!(
        e.contains(&host) && e.contains("expired at 2020-09-13"),
        "{e}"
    );

    // A wrong secret: Entra's own explanation, without the secret.
    let wrong = vec![
        ("AZURE_CLIENT_ID", CLIENT_ID.to_string()),
        ("AZURE_TENANT_ID", TENANT.to_string()),
        ("AZURE_CLIENT_SECRET", "not-the-secret".to_string()),
        ("AZURE_AUTHORITY_HOST", s.url.clone()),
    ];
    let out = s.import(wrong).await;
    let e = stderr(&out);
    assert!(!out.status.success());
    assert!(
        e.contains(&host) && e.contains("service principal") && e.contains("AADSTS7000215"),
        "{e}"
    );
    assert!(!e.contains("not-the-secret"), "{e}");

    // No metadata service where IMDS should be.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let out = s
        .import(vec![("AZURE_POD_IDENTITY_AUTHORITY_HOST", dead.clone())])
        .await;
    let e = stderr(&out);
    assert!(!out.status.success());
    assert!(
        e.contains(&host) && e.contains("managed identity") && e.contains("could not be reached"),
        "{e}"
    );
    assert!(s.stored_tag().is_none(), "nothing was pushed");
}
