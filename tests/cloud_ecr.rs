//! Amazon ECR identity (issue 15) end to end: the ECR API is moto in server mode
//! (`AWS_ENDPOINT_URL`), the registry is a real distribution whose htpasswd user is what moto's
//! `GetAuthorizationToken` decodes to (`AWS` / `<account>-auth-token`). So a push succeeds only
//! if crossdock really went through the AWS credential chain, the API call (and STS for a
//! role), decoded the token and presented it. Nothing reaches AWS.
//!
//! The calls behind HTTP proxies (the environment's, or the registry's own `proxy`) are in
//! `cloud_ecr/proxy.rs`.

mod support;

#[path = "cloud_ecr/proxy.rs"]
mod proxy;

use std::process::Output;

use base64::Engine as _;
use support::moto::{DEFAULT_ACCOUNT, Moto, SECRET_KEY};
use support::{Format, ImageSpec, TestRegistry, cli};

fn token_password(account: &str) -> String {
    format!("{account}-auth-token")
}

/// A registry that accepts exactly moto's ECR token for `account`.
fn ecr_stand_in(account: &str) -> TestRegistry {
    TestRegistry::start_with_auth("AWS", &token_password(account))
}

fn run(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut c = cli::command(args);
    for var in [
        "AWS_PROFILE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_SESSION_TOKEN",
    ] {
        c.env_remove(var);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run crossdock")
}

fn all_output(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `crossdock import` of source's app:v1 into target's mirror/app:v1, ECR auth for the target.
fn import_via_ecr(source: &TestRegistry, target: &TestRegistry, env: &[(&str, String)]) -> Output {
    let auth = format!("{}=ecr", target.host());
    let (from, to) = (
        source.image_ref("app", "v1"),
        target.image_ref("mirror/app", "v1"),
    );
    // At trace level: the secrets must stay out of even the most detailed log.
    run(
        &[
            "--log-level",
            "trace",
            "import",
            &from,
            &to,
            "--auth",
            &auth,
        ],
        env,
    )
}

/// Every one of `wanted` is in the output.
fn assert_says(out: &Output, wanted: &[&str]) {
    let text = all_output(out);
    for w in wanted {
        assert!(text.contains(w), "{w:?} not in: {text}");
    }
}

/// Neither the AWS secret key nor the ECR token (raw, or inside a Basic header) in the output.
fn assert_no_secret(out: &Output, account: &str) {
    let text = all_output(out);
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("AWS:{}", token_password(account)));
    for (i, s) in [SECRET_KEY, &token_password(account), &basic]
        .iter()
        .enumerate()
    {
        if let Some(at) = text.find(s) {
            let line_start = text[..at].rfind('\n').map_or(0, |n| n + 1);
            let prefix: String = text[line_start..at].chars().take(300).collect();
            panic!("secret #{i} leaked into the output, after: {prefix:?}");
        }
    }
}

async fn seed_source() -> (TestRegistry, support::BuiltImage) {
    let source = TestRegistry::start();
    let image = ImageSpec::single(Format::Oci, "linux/amd64")
        .seed(15)
        .layers(2)
        .build();
    source.client().push_image("app", "v1", &image).await;
    (source, image)
}

#[tokio::test]
async fn ecr_token_from_the_aws_api_is_presented_and_no_mount_is_asked() {
    let moto = Moto::start();
    let (source, image) = seed_source().await;
    let target = ecr_stand_in(DEFAULT_ACCOUNT);
    let out = import_via_ecr(&source, &target, &moto.env());
    cli::ok(&out);
    assert_no_secret(&out, DEFAULT_ACCOUNT);
    assert!(moto.calls() >= 1, "GetAuthorizationToken was never called");
    let pushed = target
        .client()
        .get_manifest("mirror/app", "v1")
        .await
        .expect("pushed");
    assert_eq!(pushed.digest.as_deref(), Some(image.digest()));

    // A copy inside the ECR registry: no cross-repository mount is asked (ECR answers 202).
    let mark = target.request_mark();
    let auth = format!("{}=ecr", target.host());
    let out = run(
        &[
            "import",
            &target.image_ref("mirror/app", "v1"),
            &target.image_ref("other/app", "v1"),
            "--auth",
            &auth,
        ],
        &moto.env(),
    );
    cli::ok(&out);
    let mounts = target
        .requests_since(mark)
        .iter()
        .filter(|r| r.query.as_deref().is_some_and(|q| q.contains("mount=")))
        .count();
    assert_eq!(mounts, 0, "a mount was asked of an ECR registry");

    // The same copy with static credentials does mount: the check above can fail.
    let mark = target.request_mark();
    let creds = format!("AWS:{}", token_password(DEFAULT_ACCOUNT));
    let out = run(
        &[
            "import",
            &target.image_ref("mirror/app", "v1"),
            &target.image_ref("third/app", "v1"),
            "--dest-creds",
            &creds,
            "--src-creds",
            &creds,
        ],
        &[],
    );
    cli::ok(&out);
    assert!(
        target
            .requests_since(mark)
            .iter()
            .any(|r| r.query.as_deref().is_some_and(|q| q.contains("mount="))),
        "distribution is asked to mount when the registry is not ECR"
    );
}

/// A configuration mirroring source's app:v1 to target's mirror/app:v1, the target's table
/// saying `auth = "ecr"` and the `registry` keys, its `[ecr]` table holding `ecr`.
fn config(
    dir: &std::path::Path,
    source: &TestRegistry,
    target: &TestRegistry,
    registry: &str,
    ecr: &str,
) -> String {
    let path = dir.join("crossdock.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[registries."{target}"]
auth = "ecr"
{registry}

[registries."{target}".ecr]
{ecr}

[[rules]]
name = "app"
source = "{source}/app"
target = "{target}/mirror/app"
tags = ["v1"]
"#,
            target = target.host(),
            source = source.host(),
        ),
    )
    .unwrap();
    path.display().to_string()
}

async fn describe_repository(moto: &Moto, name: &str) -> aws_sdk_ecr::types::Repository {
    let creds =
        aws_sdk_ecr::config::Credentials::new("AKIACROSSDOCKTEST", SECRET_KEY, None, None, "test");
    let conf = aws_sdk_ecr::Config::builder()
        .behavior_version(aws_sdk_ecr::config::BehaviorVersion::latest())
        .region(aws_sdk_ecr::config::Region::new("eu-west-1"))
        .endpoint_url(moto.endpoint())
        .credentials_provider(creds)
        .build();
    let out = aws_sdk_ecr::Client::from_conf(conf)
        .describe_repositories()
        .repository_names(name)
        .send()
        .await
        .expect("the repository exists in moto");
    out.repositories()[0].clone()
}

#[tokio::test]
async fn ecr_creates_the_missing_target_repository_with_its_settings() {
    let moto = Moto::start();
    let (source, image) = seed_source().await;
    let target = ecr_stand_in(DEFAULT_ACCOUNT);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &source,
        &target,
        "",
        "create_repositories = true\nimage_tag_mutability = \"IMMUTABLE\"\nscan_on_push = true",
    );
    let out = run(&["sync", "--config", &cfg], &moto.env());
    cli::ok(&out);
    let repo = describe_repository(&moto, "mirror/app").await;
    assert_eq!(
        repo.image_tag_mutability(),
        Some(&aws_sdk_ecr::types::ImageTagMutability::Immutable)
    );
    assert_eq!(
        repo.image_scanning_configuration()
            .map(|c| c.scan_on_push()),
        Some(true)
    );
    let pushed = target.client().get_manifest("mirror/app", "v1").await;
    assert_eq!(
        pushed.expect("pushed").digest.as_deref(),
        Some(image.digest())
    );
    // Again: the repository exists, which is fine.
    cli::ok(&run(&["sync", "--config", &cfg], &moto.env()));
}

/// A sync into a stand-in for account 210987654321's registry, whose token only the role
/// `mirror-pusher` of that account gets; its output, the target and the image synced.
async fn sync_as_other_account(moto: &Moto) -> (Output, TestRegistry, support::BuiltImage) {
    let (source, image) = seed_source().await;
    // Only the other account's token opens this registry.
    let target = ecr_stand_in("210987654321");
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &source,
        &target,
        "",
        "role_arn = \"arn:aws:iam::210987654321:role/mirror-pusher\"",
    );
    let out = run(
        &["--log-level", "trace", "sync", "--config", &cfg],
        &moto.env(),
    );
    (out, target, image)
}

#[tokio::test]
async fn ecr_cross_account_role_is_assumed() {
    let moto = Moto::start();
    let (out, target, image) = sync_as_other_account(&moto).await;
    cli::ok(&out);
    assert_no_secret(&out, "210987654321");
    let pushed = target.client().get_manifest("mirror/app", "v1").await;
    assert_eq!(
        pushed.expect("pushed").digest.as_deref(),
        Some(image.digest())
    );
}

#[tokio::test]
async fn ecr_role_that_cannot_be_assumed_is_a_clear_error() {
    let moto = Moto::start();
    moto.enforce_iam();
    let (out, target, _) = sync_as_other_account(&moto).await;
    assert!(!out.status.success());
    let text = all_output(&out);
    assert!(
        text.contains(&target.host())
            && text.contains("assuming role arn:aws:iam::210987654321:role/mirror-pusher")
            && text.contains("GetAuthorizationToken"),
        "{text}"
    );
    assert_no_secret(&out, "210987654321");
}

#[tokio::test]
async fn ecr_missing_web_identity_token_file_is_a_clear_error() {
    let moto = Moto::start();
    let (source, _) = seed_source().await;
    let target = ecr_stand_in(DEFAULT_ACCOUNT);
    let env: Vec<(&str, String)> = moto
        .env()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("AWS_ACCESS") && !k.starts_with("AWS_SECRET"))
        .chain([
            (
                "AWS_ROLE_ARN",
                "arn:aws:iam::123456789012:role/irsa".to_string(),
            ),
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "/var/run/secrets/eks.amazonaws.com/serviceaccount/missing-token".to_string(),
            ),
        ])
        .collect();
    let out = import_via_ecr(&source, &target, &env);
    assert!(!out.status.success());
    assert_says(
        &out,
        &[
            target.host().as_str(),
            "EKS IRSA web identity",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "missing-token",
        ],
    );
    assert_eq!(
        moto.calls(),
        0,
        "nothing is asked of AWS without an identity"
    );
    // A one-shot command's hint points at the identity, not at logins.
    let ls = run(
        &[
            "ls",
            &format!("{}/mirror/app", target.host()),
            "--auth",
            &format!("{}=ecr", target.host()),
        ],
        &env,
    );
    let text = all_output(&ls);
    assert!(
        !ls.status.success()
            && text.contains("hint: ")
            && text.contains(
                "uses ECR auth: its credentials come from the AWS credential chain (EKS IRSA \
                 web identity), not from `crossdock login`"
            )
            && !text.contains("run `crossdock login"),
        "{text}"
    );
}

/// The environment of an EKS pod: no keys, only what the cluster projects into it.
fn pod_env(moto: &Moto, extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    moto.env()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("AWS_ACCESS") && !k.starts_with("AWS_SECRET"))
        .chain(extra.iter().cloned())
        .collect()
}

/// EKS IRSA: the projected service-account token is exchanged at STS
/// (`AssumeRoleWithWebIdentity`, moto) for the role's credentials, whose account's ECR token
/// opens the registry. The projected token never appears in the output.
#[tokio::test]
async fn ecr_irsa_web_identity_assumes_the_pod_role() {
    let moto = Moto::start();
    let (source, image) = seed_source().await;
    let target = ecr_stand_in("210987654321");
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    let projected = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6bWlycm9yIn0.c2lnbmF0dXJlLWNyb3NzZG9jaw";
    std::fs::write(&token_file, projected).unwrap();
    let env = pod_env(
        &moto,
        &[
            (
                "AWS_ROLE_ARN",
                "arn:aws:iam::210987654321:role/mirror-irsa".to_string(),
            ),
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                token_file.display().to_string(),
            ),
        ],
    );
    let out = import_via_ecr(&source, &target, &env);
    cli::ok(&out);
    assert_no_secret(&out, "210987654321");
    assert!(
        !all_output(&out).contains(projected),
        "the projected token leaked"
    );
    let pushed = target.client().get_manifest("mirror/app", "v1").await;
    assert_eq!(
        pushed.expect("pushed").digest.as_deref(),
        Some(image.digest())
    );
}

/// EKS Pod Identity: the agent (`AWS_CONTAINER_CREDENTIALS_FULL_URI`) is given the projected
/// token as `Authorization` and answers with credentials. The agent is a small in-test server
/// because nothing local plays it; what it hands out is then used against moto.
#[tokio::test]
async fn ecr_pod_identity_agent_credentials_are_used() {
    use axum::http::HeaderMap;
    let moto = Moto::start();
    let (source, image) = seed_source().await;
    let target = ecr_stand_in(DEFAULT_ACCOUNT);
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("eks-pod-identity-token");
    std::fs::write(&token_file, "pod-identity-projected-token").unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/v1/credentials",
        axum::routing::get(move |headers: HeaderMap| async move {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            s.lock().unwrap().push(auth.clone());
            if auth != "pod-identity-projected-token" {
                return (axum::http::StatusCode::UNAUTHORIZED, String::new());
            }
            let expires = chrono::Utc::now() + chrono::Duration::hours(6);
            let body = serde_json::json!({
                "AccessKeyId": "ASIAPODIDENTITYTEST",
                "SecretAccessKey": SECRET_KEY,
                "Token": "pod-session-token",
                "AccountId": DEFAULT_ACCOUNT,
                "Expiration": expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            });
            (axum::http::StatusCode::OK, body.to_string())
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let agent = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let env = pod_env(
        &moto,
        &[
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                format!("http://{agent}/v1/credentials"),
            ),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                token_file.display().to_string(),
            ),
        ],
    );
    let args = [
        "import".to_string(),
        source.image_ref("app", "v1"),
        target.image_ref("mirror/app", "v1"),
        "--auth".to_string(),
        format!("{}=ecr", target.host()),
    ];
    // The agent answers on this runtime while the command runs.
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args, &env)
    })
    .await
    .unwrap();
    let text = all_output(&out);
    assert!(out.status.success(), "{text}");
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        ["pod-identity-projected-token"],
        "the agent was asked once, with the projected token"
    );
    assert!(!text.contains("pod-identity-projected-token") && !text.contains("pod-session-token"));
    assert_no_secret(&out, DEFAULT_ACCOUNT);
    let pushed = target.client().get_manifest("mirror/app", "v1").await;
    assert_eq!(
        pushed.expect("pushed").digest.as_deref(),
        Some(image.digest())
    );
}
