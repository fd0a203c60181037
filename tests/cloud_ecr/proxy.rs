//! The ECR and STS calls behind HTTP proxies: the environment's (`HTTP_PROXY`, read by the AWS
//! SDK itself) when the registry sets no `proxy`, else the registry's own `proxy` setting, as
//! for the registry's requests. The proxy is a real tinyproxy demanding credentials; its log
//! names every request it handled (`POST http://127.0.0.1:MOTO/ HTTP/1.1` for an API call),
//! and moto's log counts the calls that reached the API.

use std::process::Output;

use base64::Engine as _;

use crate::support::moto::{DEFAULT_ACCOUNT, Moto};
use crate::support::tinyproxy::TinyProxy;
use crate::support::{self, TestRegistry, cli};
use crate::{
    all_output, assert_no_secret, assert_says, config, ecr_stand_in, import_via_ecr, run,
    seed_source,
};

const PROXY_USER: &str = "corp";
const PROXY_PASSWORD: &str = "proxy-pw-Kq7vT2";

/// moto's environment with `proxy` as the environment's proxy, for loopback too.
fn env_through(moto: &Moto, proxy: &TinyProxy) -> Vec<(&'static str, String)> {
    let mut env = moto.env();
    env.extend([
        ("HTTP_PROXY", proxy.url(None)),
        ("http_proxy", proxy.url(None)),
        ("NO_PROXY", String::new()),
        ("no_proxy", String::new()),
    ]);
    env
}

/// The API calls the proxy forwarded to moto.
fn api_calls_through(proxy: &TinyProxy, moto: &Moto) -> usize {
    let to_moto = format!("POST {}/ HTTP/1.", moto.endpoint());
    proxy
        .requests()
        .iter()
        .filter(|r| r.starts_with(&to_moto))
        .count()
}

/// A `sync --log-level trace` of source's app:v1 to mirror/app:v1 of a stand-in for
/// `account`'s registry, whose table says `auth = "ecr"` and `proxy = "<proxy>"` and whose
/// `[ecr]` table holds `ecr`; `env` added.
async fn sync_with_registry_proxy(
    proxy: &str,
    account: &str,
    ecr: &str,
    env: &[(&str, String)],
) -> (Output, TestRegistry, support::BuiltImage) {
    let (source, image) = seed_source().await;
    let target = ecr_stand_in(account);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &source,
        &target,
        &format!("proxy = \"{proxy}\""),
        ecr,
    );
    let out = run(&["--log-level", "trace", "sync", "--config", &cfg], env);
    (out, target, image)
}

/// Neither the proxy password nor its Basic header value in the output.
fn assert_no_proxy_password(out: &Output, password: &str) {
    let text = all_output(out);
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{PROXY_USER}:{password}"));
    assert!(
        !text.contains(password),
        "the proxy password leaked: {text}"
    );
    assert!(
        !text.contains(&basic),
        "the proxy credentials leaked: {text}"
    );
}

/// The AWS SDK reaches STS and ECR with its own HTTP client, which reads HTTPS_PROXY,
/// HTTP_PROXY and NO_PROXY itself when the registry sets no `proxy`. A proxy there that
/// refuses — a real tinyproxy demanding credentials that were not given — is a clear error
/// naming the registry, the credential source and the proxy's 407; nothing is pushed.
#[tokio::test]
async fn ecr_api_behind_a_proxy_that_refuses_is_a_clear_error() {
    let moto = Moto::start();
    let proxy = TinyProxy::start(&[], Some((PROXY_USER, PROXY_PASSWORD)));
    let (source, _) = seed_source().await;
    let target = ecr_stand_in(DEFAULT_ACCOUNT);
    let env = env_through(&moto, &proxy);
    let out = import_via_ecr(&source, &target, &env);
    assert!(!out.status.success());
    assert_says(
        &out,
        &[
            target.host().as_str(),
            "the AWS credential chain (environment keys)",
            "GetAuthorizationToken failed (HTTP 407: a proxy on the way to the AWS API wants credentials",
            "HTTPS_PROXY/HTTP_PROXY",
        ],
    );
    assert!(
        proxy.requests().iter().any(|r| r.starts_with("POST ")),
        "the API call went to the proxy: {}",
        proxy.log()
    );
    assert_eq!(moto.calls(), 0, "the proxy let nothing through");
    assert_no_secret(&out, DEFAULT_ACCOUNT);
}

/// The registry's `proxy`, with the right credentials in its URL and no proxy variable set:
/// the token exchange — STS `AssumeRole` for the registry's `role_arn`, then ECR's
/// `GetAuthorizationToken` — goes through it like the registry's own requests (tinyproxy
/// forwarded both calls, moto answered them; only the role's account token opens the
/// registry), and the proxy password stays out of the trace-level log.
#[tokio::test]
async fn ecr_and_sts_calls_follow_the_registry_proxy_with_its_credentials() {
    let moto = Moto::start();
    let proxy = TinyProxy::start(&[], Some((PROXY_USER, PROXY_PASSWORD)));
    let url = proxy.url(Some((PROXY_USER, PROXY_PASSWORD)));
    let role = "role_arn = \"arn:aws:iam::210987654321:role/mirror-pusher\"";
    let (out, target, image) =
        sync_with_registry_proxy(&url, "210987654321", role, &moto.env()).await;
    cli::ok(&out);
    assert!(
        api_calls_through(&proxy, &moto) >= 2,
        "AssumeRole and GetAuthorizationToken did not both go through the registry's proxy: {}",
        proxy.log()
    );
    assert_eq!(
        moto.calls(),
        api_calls_through(&proxy, &moto),
        "every API call went through the proxy"
    );
    let pushed = target.client().get_manifest("mirror/app", "v1").await;
    assert_eq!(
        pushed.expect("pushed").digest.as_deref(),
        Some(image.digest())
    );
    assert!(
        all_output(&out).contains("TRACE"),
        "the run logged at trace level"
    );
    assert_no_proxy_password(&out, PROXY_PASSWORD);
    assert_no_secret(&out, "210987654321");
}

/// The registry's `proxy` with a wrong password: the proxy refuses the API call, and the error
/// names the proxy (without its credentials) and says to fix them in the registry's `proxy`
/// URL, not in HTTPS_PROXY; nothing reaches moto, nothing is pushed. tinyproxy refuses wrong
/// credentials with 401 (and `WWW-Authenticate`), not 407: the registry's own HEAD through it
/// thus looks like the registry asking for Basic, which is what makes crossdock ask ECR.
#[tokio::test]
async fn a_registry_proxy_refusing_its_credentials_is_a_clear_error() {
    let moto = Moto::start();
    let proxy = TinyProxy::start(&[], Some((PROXY_USER, PROXY_PASSWORD)));
    let wrong = "wrong-pw-Hs3mB9";
    let url = proxy.url(Some((PROXY_USER, wrong)));
    let (out, target, _) = sync_with_registry_proxy(&url, DEFAULT_ACCOUNT, "", &moto.env()).await;
    assert!(!out.status.success(), "{}", all_output(&out));
    let refused = format!(
        "GetAuthorizationToken failed (HTTP 401: the registry's proxy http://***@{} refused \
         the credentials in the registry's proxy URL; check the user and password there)",
        proxy.address()
    );
    assert_says(&out, &[target.host().as_str(), refused.as_str()]);
    assert!(
        !all_output(&out).contains("HTTPS_PROXY"),
        "{}",
        all_output(&out)
    );
    assert_no_proxy_password(&out, wrong);
    assert_eq!(moto.calls(), 0, "the proxy let nothing through to moto");
    assert!(
        target
            .client()
            .get_manifest("mirror/app", "v1")
            .await
            .is_none(),
        "nothing is pushed"
    );
    assert_no_secret(&out, DEFAULT_ACCOUNT);
}

/// `proxy = "none"` on the registry turns the environment's proxy off for the ECR calls too:
/// with HTTP_PROXY naming a proxy that refuses everything, the token exchange goes straight to
/// moto and the proxy sees nothing.
#[tokio::test]
async fn ecr_api_bypasses_the_environment_proxy_when_the_registry_says_none() {
    let moto = Moto::start();
    let proxy = TinyProxy::start(&[], Some((PROXY_USER, PROXY_PASSWORD)));
    let env = env_through(&moto, &proxy);
    let (out, target, image) = sync_with_registry_proxy("none", DEFAULT_ACCOUNT, "", &env).await;
    cli::ok(&out);
    assert!(
        proxy.requests().is_empty(),
        "a request went to the environment's proxy: {}",
        proxy.log()
    );
    assert!(
        moto.calls() >= 1,
        "GetAuthorizationToken never reached moto"
    );
    let pushed = target.client().get_manifest("mirror/app", "v1").await;
    assert_eq!(
        pushed.expect("pushed").digest.as_deref(),
        Some(image.digest())
    );
}
