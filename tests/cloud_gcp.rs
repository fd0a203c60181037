//! Google Artifact Registry / GCR identity (issue 15) end to end: an access token from the GKE
//! metadata server or from a service-account key (RS256 JWT-bearer grant), presented as
//! `oauth2accesstoken` to the registry's token realm, in front of a real distribution registry
//! with token auth.
//!
//! [`Google`] is a small in-test server because nothing real can play the GCE metadata server,
//! Google's OAuth2 token endpoint or Artifact Registry's token realm on loopback. It follows
//! the published protocols (`Metadata-Flavor: Google`; RFC 7523 assertions, whose RS256
//! signature it verifies with the key file's public key; Basic `oauth2accesstoken:<token>` at
//! the realm) and refuses anything else; distribution verifies the registry tokens.

mod support;

use std::process::Output;
use std::sync::{Arc, Mutex};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use support::form::{field, pairs};
use support::token_realm::{TokenSigner, scopes, target_and_source};
use support::{Format, ImageSpec, TestRegistry, cli};

const SERVICE: &str = "europe-docker.pkg.dev";
const EMAIL: &str = "mirror@crossdock-test.iam.gserviceaccount.com";

struct Google {
    signer: TokenSigner,
    /// The service account key's public half (PKCS#1 DER).
    public_key: Vec<u8>,
    token_uri: String,
    access_tokens: Mutex<Vec<String>>,
    seen: Mutex<Vec<String>>,
}

type Shared = Arc<Google>;

impl Google {
    fn access_token(&self, how: &str) -> Response {
        self.seen.lock().unwrap().push(how.to_string());
        let mut tokens = self.access_tokens.lock().unwrap();
        let t = format!("ya29.crossdock-test-{}-{}", tokens.len(), "q".repeat(30));
        tokens.push(t.clone());
        Json(serde_json::json!({"access_token": t, "expires_in": 3599, "token_type": "Bearer"}))
            .into_response()
    }

    /// Checks an RS256 assertion as Google does: signature, issuer, audience, scope, expiry.
    fn assertion_ok(&self, jwt: &str) -> bool {
        let Some((input, sig)) = jwt.rsplit_once('.') else {
            return false;
        };
        let Ok(sig) = URL_SAFE_NO_PAD.decode(sig) else {
            return false;
        };
        if UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &self.public_key)
            .verify(input.as_bytes(), &sig)
            .is_err()
        {
            return false;
        }
        let claims: serde_json::Value = input
            .split('.')
            .nth(1)
            .and_then(|c| URL_SAFE_NO_PAD.decode(c).ok())
            .and_then(|c| serde_json::from_slice(&c).ok())
            .unwrap_or_default();
        claims["iss"] == EMAIL
            && claims["aud"] == self.token_uri.as_str()
            && claims["scope"] == "https://www.googleapis.com/auth/cloud-platform"
            && claims["exp"].as_u64() > claims["iat"].as_u64()
    }
}

async fn metadata(State(g): State<Shared>, headers: HeaderMap) -> Response {
    if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
        return (
            StatusCode::FORBIDDEN,
            "Missing Metadata-Flavor:Google header.",
        )
            .into_response();
    }
    g.access_token("metadata")
}

async fn oauth_token(State(g): State<Shared>, body: String) -> Response {
    let f = pairs(&body);
    if field(&f, "grant_type") == Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
        && field(&f, "assertion").is_some_and(|a| g.assertion_ok(a))
    {
        return g.access_token("jwt-bearer");
    }
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."})),
    )
        .into_response()
}

/// The registry's token realm: Basic `oauth2accesstoken:<access token>`, as GAR's.
async fn realm(State(g): State<Shared>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let ok = basic
        .as_deref()
        .and_then(|b| b.split_once(':'))
        .is_some_and(|(u, p)| {
            u == "oauth2accesstoken" && g.access_tokens.lock().unwrap().iter().any(|t| t == p)
        });
    if !ok {
        return (StatusCode::UNAUTHORIZED, "bad credentials").into_response();
    }
    g.seen.lock().unwrap().push("realm".into());
    let q = pairs(&q.unwrap_or_default());
    let jwt = g.signer.sign("mirror", &scopes(&q), 300);
    Json(serde_json::json!({"token": jwt})).into_response()
}

struct Setup {
    google: Shared,
    host: String,
    source: TestRegistry,
    target: TestRegistry,
    digest: String,
    dir: tempfile::TempDir,
    key_pem: String,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&key).unwrap();
    let b64 = STANDARD.encode(der.as_ref());
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let key_pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let google = Arc::new(Google {
        signer: TokenSigner::new(dir.path(), SERVICE),
        public_key: key.public_key().as_ref().to_vec(),
        token_uri: format!("http://{host}/token"),
        access_tokens: Mutex::default(),
        seen: Mutex::default(),
    });
    let app = Router::new()
        .route(
            "/computeMetadata/v1/instance/service-accounts/default/token",
            get(metadata),
        )
        .route("/token", post(oauth_token))
        .route("/v2/token", get(realm))
        .with_state(google.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let image = ImageSpec::single(Format::Docker, "linux/arm64/v8")
        .seed(17)
        .build();
    let (target, source) =
        target_and_source(&format!("http://{host}/v2/token"), &google.signer, &image).await;
    Setup {
        google,
        host,
        source,
        target,
        digest: image.digest().to_string(),
        dir,
        key_pem,
    }
}

impl Setup {
    async fn import(&self, env: Vec<(&'static str, String)>) -> Output {
        let args = [
            "--log-level".to_string(),
            "trace".to_string(),
            "import".to_string(),
            self.source.image_ref("app", "v1"),
            self.target.image_ref("project/repo/app", "v1"),
            "--auth".to_string(),
            format!("{}=gcp", self.target.host()),
        ];
        tokio::task::spawn_blocking(move || {
            let mut c = cli::command(&args.iter().map(String::as_str).collect::<Vec<_>>());
            c.env_remove("GOOGLE_APPLICATION_CREDENTIALS")
                .env_remove("GCE_METADATA_HOST");
            c.envs(env).output().unwrap()
        })
        .await
        .unwrap()
    }

    fn stored_tag(&self) -> Option<String> {
        let link = self.target.storage_dir().join(
            "docker/registry/v2/repositories/project/repo/app/_manifests/tags/v1/current/link",
        );
        std::fs::read_to_string(link).ok()
    }

    fn key_file(&self, private_key: &str) -> String {
        let path = self.dir.path().join("sa-key.json");
        let json = serde_json::json!({
            "type": "service_account",
            "project_id": "crossdock-test",
            "private_key_id": "0123456789abcdef",
            "private_key": private_key,
            "client_email": EMAIL,
            "token_uri": self.google.token_uri,
        });
        std::fs::write(&path, json.to_string()).unwrap();
        path.display().to_string()
    }

    fn assert_nothing_leaked(&self, out: &Output) {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("TRACE"), "not logged at trace level");
        let key_body = self.key_pem.lines().nth(1).unwrap();
        let tokens = self.google.access_tokens.lock().unwrap().clone();
        for s in tokens.iter().map(String::as_str).chain([key_body]) {
            assert!(!text.contains(s), "a token or key leaked into the output");
        }
    }
}

/// stdout and the non-trace lines of stderr.
fn reported(out: &Output) -> String {
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
async fn gcp_metadata_server_token_is_used_as_oauth2accesstoken() {
    let s = setup().await;
    let out = s.import(vec![("GCE_METADATA_HOST", s.host.clone())]).await;
    cli::ok(&out);
    assert_eq!(s.stored_tag().as_deref(), Some(s.digest.as_str()));
    let seen = s.google.seen.lock().unwrap().clone();
    assert_eq!(seen[0], "metadata", "{seen:?}");
    assert!(seen.contains(&"realm".to_string()), "{seen:?}");
    s.assert_nothing_leaked(&out);
}

#[tokio::test(flavor = "multi_thread")]
async fn gcp_service_account_key_signs_a_jwt_bearer_grant() {
    let s = setup().await;
    let file = s.key_file(&s.key_pem);
    let out = s
        .import(vec![("GOOGLE_APPLICATION_CREDENTIALS", file)])
        .await;
    cli::ok(&out);
    assert_eq!(s.stored_tag().as_deref(), Some(s.digest.as_str()));
    assert_eq!(s.google.seen.lock().unwrap()[0], "jwt-bearer");
    s.assert_nothing_leaked(&out);
}

#[tokio::test(flavor = "multi_thread")]
async fn gcp_bad_identity_is_a_clear_error() {
    let s = setup().await;
    let host = s.target.host();

    // A key file that is not there.
    let missing = s.dir.path().join("missing-key.json").display().to_string();
    let out = s
        .import(vec![("GOOGLE_APPLICATION_CREDENTIALS", missing)])
        .await;
    let e = reported(&out);
    assert!(!out.status.success());
    for wanted in [
        host.as_str(),
        "GOOGLE_APPLICATION_CREDENTIALS",
        "missing-key.json",
        "cannot read",
    ] {
        assert!(e.contains(wanted), "{wanted:?} not in: {e}");
    }

    // Another key than the service account's: Google refuses the signature.
    let other = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&other).unwrap();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        STANDARD.encode(der.as_ref())
    );
    let file = s.key_file(&pem);
    let out = s
        .import(vec![("GOOGLE_APPLICATION_CREDENTIALS", file)])
        .await;
    let e = reported(&out);
    assert!(!out.status.success());
    assert!(e.contains(&host) && e.contains("invalid_grant"), "{e}");

    // No metadata server.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap().to_string();
    drop(closed);
    let out = s.import(vec![("GCE_METADATA_HOST", dead)]).await;
    let e = reported(&out);
    assert!(!out.status.success());
    assert!(
        e.contains(&host) && e.contains("metadata server") && e.contains("could not be reached"),
        "{e}"
    );
    assert!(s.stored_tag().is_none());
}
