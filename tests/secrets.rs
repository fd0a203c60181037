//! Secrets and trust end to end (issue 6): at trace level no password or token reaches the
//! output, credentials never follow a redirect to another host, and TLS is verified unless a CA
//! is configured for the registry.
//!
//! The grep tests run whole imports with `--log-level trace` (every crate's trace output,
//! reqwest's and hyper's included) and search stdout and stderr for each secret in every form
//! it travels in: as given, and base64-encoded inside a Basic header. They also check that the
//! logs are really there, so a silent run cannot pass for a discreet one.

mod support;

use std::path::Path;
use std::process::Output;

use base64::Engine as _;
use crossdock::registry::Transport;
use crossdock::registry::http::{HttpOptions, HttpRegistry};
use support::cli::crossdock_env as crossdock;
use support::proxy::{Fault, FaultProxy, Rule};
use support::{Format, ImageSpec, TestRegistry};

fn basic(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// None of `secrets` appears in the run's output, which did log at trace level.
fn assert_no_secret(out: &Output, secrets: &[&str]) {
    let text = support::cli::text(out);
    assert!(
        text.contains("TRACE") && text.contains("registry request"),
        "the run did not log at trace level:\n{}",
        &text[..text.len().min(2000)]
    );
    for s in secrets {
        assert!(!s.is_empty());
        if let Some(at) = text.find(s) {
            let from = at.saturating_sub(200);
            panic!(
                "secret #{} leaked in the output, near: {:?}",
                secrets.iter().position(|x| x == s).unwrap(),
                text[from..at].to_string()
            );
        }
    }
}

fn image(seed: u64) -> support::BuiltImage {
    ImageSpec::multi(Format::Oci, &["linux/amd64", "linux/arm64/v8"])
        .seed(seed)
        .build()
}

async fn assert_tag(reg: &TestRegistry, repo: &str, tag: &str, digest: &str) {
    assert_eq!(
        reg.client().head_manifest(repo, tag).await.as_deref(),
        Some(digest)
    );
}

const SRC_PASSWORD: &str = "src-pw-Kq7vX2";
const DST_PASSWORD: &str = "dst-pw-Rt5mW9";

#[tokio::test]
async fn basic_auth_passwords_never_appear_at_trace_level() {
    let a = TestRegistry::start_with_auth("alice", SRC_PASSWORD);
    let b = TestRegistry::start_with_auth("bob", DST_PASSWORD);
    let img = image(1);
    a.client().push_image("app", "v1", &img).await;
    let secrets = [
        SRC_PASSWORD,
        DST_PASSWORD,
        &basic("alice", SRC_PASSWORD),
        &basic("bob", DST_PASSWORD),
    ];

    // Credentials from the command line (through the environment, as documented).
    let out = crossdock(
        &[
            "--log-level",
            "trace",
            "import",
            &a.image_ref("app", "v1"),
            &b.image_ref("app", "v1"),
        ],
        &[
            ("CROSSDOCK_SRC_CREDS", &format!("alice:{SRC_PASSWORD}")),
            ("CROSSDOCK_DEST_CREDS", &format!("bob:{DST_PASSWORD}")),
        ],
    );
    assert!(out.status.success(), "{}", support::cli::text(&out));
    assert_no_secret(&out, &secrets);
    assert_tag(&b, "app", "v1", img.digest()).await;

    // Credentials from a Docker config.json.
    let dir = tempfile::tempdir().unwrap();
    let config = serde_json::json!({
        "auths": {
            a.host(): { "auth": basic("alice", SRC_PASSWORD) },
            b.host(): { "auth": basic("bob", DST_PASSWORD) },
        }
    });
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let out = crossdock(
        &[
            "--log-level",
            "trace",
            "import",
            &a.image_ref("app", "v1"),
            &b.image_ref("app", "v2"),
        ],
        &[("DOCKER_CONFIG", dir.path().to_str().unwrap())],
    );
    assert!(out.status.success(), "{}", support::cli::text(&out));
    assert_no_secret(&out, &secrets);
    assert_tag(&b, "app", "v2", img.digest()).await;

    // A wrong password is reported as refused, without being echoed.
    let wrong = "wrong-pw-Hn3cZ8";
    let out = crossdock(
        &[
            "--log-level",
            "trace",
            "import",
            &a.image_ref("app", "v1"),
            &b.image_ref("app", "v3"),
            "--src-creds",
            &format!("alice:{wrong}"),
            "--dest-creds",
            &format!("bob:{DST_PASSWORD}"),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", support::cli::text(&out));
    assert!(
        support::cli::text(&out).contains("refused the configured credentials"),
        "{}",
        support::cli::text(&out)
    );
    assert_no_secret(&out, &[wrong, &basic("alice", wrong), DST_PASSWORD]);
}

#[tokio::test]
async fn bearer_tokens_and_passwords_never_appear_at_trace_level() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let (pa, pb) = (FaultProxy::start(&a), FaultProxy::start(&b));
    let (src_token, dst_token) = ("tok-src-Lw4pN8", "tok-dst-Yc2dQ6");
    pa.require_bearer("alice", SRC_PASSWORD, src_token);
    pb.require_bearer("bob", DST_PASSWORD, dst_token);
    let img = image(2);
    a.client().push_image("app", "v1", &img).await;
    let out = crossdock(
        &[
            "--log-level",
            "trace",
            "import",
            &pa.image_ref("app", "v1"),
            &pb.image_ref("app", "v1"),
        ],
        &[
            ("CROSSDOCK_SRC_CREDS", &format!("alice:{SRC_PASSWORD}")),
            ("CROSSDOCK_DEST_CREDS", &format!("bob:{DST_PASSWORD}")),
        ],
    );
    assert!(out.status.success(), "{}", support::cli::text(&out));
    // The tokens were fetched and used.
    assert!(pa.token_requests() >= 1 && pb.token_requests() >= 1);
    for (proxy, token) in [(&pa, src_token), (&pb, dst_token)] {
        let bearer = format!("Bearer {token}");
        assert!(
            proxy
                .requests()
                .iter()
                .any(|r| r.header("authorization") == Some(bearer.as_str())),
            "no request carried the token"
        );
    }
    assert_no_secret(
        &out,
        &[
            SRC_PASSWORD,
            DST_PASSWORD,
            src_token,
            dst_token,
            &basic("alice", SRC_PASSWORD),
            &basic("bob", DST_PASSWORD),
        ],
    );
    assert_tag(&b, "app", "v1", img.digest()).await;
}

#[tokio::test]
async fn credentials_never_follow_a_redirect_to_another_host() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    // The registry answers blob GETs with a redirect to "object storage": another origin
    // (`localhost` and another port) that serves the same blobs and needs no credentials.
    let registry = FaultProxy::start(&a);
    let storage = FaultProxy::start(&a);
    let token = "tok-Vb8sK1";
    registry.require_bearer("alice", SRC_PASSWORD, token);
    let redirects = registry.add(
        Rule::new(
            "GET",
            "^/v2/app/blobs/sha256:",
            Fault::Redirect {
                base: format!("http://localhost:{}", storage.port()),
            },
        )
        .always(),
    );
    let img = image(3);
    a.client().push_image("app", "v1", &img).await;
    let out = crossdock(
        &[
            "import",
            &registry.image_ref("app", "v1"),
            &b.image_ref("app", "v1"),
        ],
        &[("CROSSDOCK_SRC_CREDS", &format!("alice:{SRC_PASSWORD}"))],
    );
    assert!(out.status.success(), "{}", support::cli::text(&out));
    assert_eq!(redirects.fired(), img.blobs.len());
    let at_storage = storage.requests();
    assert_eq!(
        at_storage.len(),
        img.blobs.len(),
        "every blob came from storage"
    );
    for r in &at_storage {
        assert_eq!(
            r.header("authorization"),
            None,
            "credentials sent to {}",
            r.path
        );
        assert!(r.header("host").unwrap().starts_with("localhost:"));
    }
    assert_tag(&b, "app", "v1", img.digest()).await;
}

/// A CA, and a certificate for 127.0.0.1 it signed, written as PEM files into `dir`:
/// (ca.pem, cert.pem, key.pem).
fn make_ca_and_cert(
    dir: &Path,
    name: &str,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("crossdock test CA {name}"),
    );
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let paths = (
        dir.join(format!("{name}-ca.pem")),
        dir.join(format!("{name}-cert.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

fn sync_to(dir: &Path, source: &TestRegistry, target: &str, ca_file: &Path) -> Output {
    let config = dir.join("crossdock.toml");
    std::fs::write(
        &config,
        format!(
            r#"[registries."{target}"]
ca_file = "{ca}"

[[rules]]
name = "tls"
source = "{src}/app"
target = "{target}/app"
tags = ["v1"]
"#,
            ca = ca_file.display(),
            src = source.host(),
        ),
    )
    .unwrap();
    crossdock(
        &["sync", "--config", config.to_str().unwrap(), "--json"],
        &[],
    )
}

#[tokio::test]
async fn tls_is_verified_and_a_ca_file_makes_a_private_ca_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_ca_and_cert(dir.path(), "registry");
    let (other_ca, _, _) = make_ca_and_cert(dir.path(), "other");
    let secure = TestRegistry::builder().tls(&cert, &key).start();
    let source = TestRegistry::start();
    let img = image(4);
    source.client().push_image("app", "v1", &img).await;
    let host = secure.host();

    // The transport speaks HTTPS unless told otherwise, and checks the certificate against
    // the system roots only: the private CA is refused.
    let default = HttpRegistry::new(&host, HttpOptions::default()).unwrap();
    let e = default.ping().await.unwrap_err();
    let chain = crossdock::copy::error_chain(&e);
    assert!(chain.to_lowercase().contains("certificate"), "{chain}");
    let trusted = HttpRegistry::new(
        &host,
        HttpOptions {
            ca_file: Some(ca.clone()),
            ..HttpOptions::default()
        },
    )
    .unwrap();
    trusted.ping().await.expect("trusted with its CA");

    // Through the configuration: a CA that did not sign the certificate is not enough...
    let out = sync_to(dir.path(), &source, &host, &other_ca);
    assert_eq!(out.status.code(), Some(1), "{}", support::cli::text(&out));
    assert!(
        support::cli::text(&out)
            .to_lowercase()
            .contains("certificate"),
        "{}",
        support::cli::text(&out)
    );
    // ...the one that did is.
    let out = sync_to(dir.path(), &source, &host, &ca);
    assert!(out.status.success(), "{}", support::cli::text(&out));

    // Checked with a client of our own, trusting the CA.
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap())
        .build()
        .unwrap();
    let resp = client
        .head(format!("https://{host}/v2/app/manifests/v1"))
        .header("accept", support::fixtures::ACCEPT_ALL)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["docker-content-digest"].to_str().unwrap(),
        img.digest()
    );
}
