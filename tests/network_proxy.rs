//! HTTP proxies end to end (issue 15): imports through a real proxy (Debian's `tinyproxy`)
//! tunnelling (`CONNECT`) to an HTTPS distribution registry, proxy credentials in the proxy
//! URL that never reach the output, `HTTPS_PROXY`/`NO_PROXY` honoured with loopback registries
//! always reached directly, and a proxy that refuses named (without its credentials) in the
//! error.
//!
//! tinyproxy's log is the proof that a request went through the proxy: it names every request
//! it handled (`CONNECT 127.0.0.1:PORT HTTP/1.1`).

mod support;

use std::path::Path;

use base64::Engine as _;
use std::process::Output;

use crossdock::registry::http::{HttpOptions, HttpRegistry, ProxySetting};
use crossdock::registry::retry::RetryPolicy;
use crossdock::registry::{ErrorKind, Transport};
use support::cli::crossdock_env as crossdock;
use support::pki::TestCa;
use support::tinyproxy::TinyProxy;
use support::{Format, ImageSpec, TestRegistry};

const PROXY_USER: &str = "alice";
const PROXY_PASSWORD: &str = "proxy-pw-Zr8qL3";

fn image(seed: u64) -> support::BuiltImage {
    ImageSpec::multi(Format::Oci, &["linux/amd64", "linux/arm64/v8"])
        .seed(seed)
        .build()
}

/// The proxy's requests that name `needle` (a host:port).
fn proxied(proxy: &TinyProxy, needle: &str) -> Vec<String> {
    proxy
        .requests()
        .into_iter()
        .filter(|r| r.contains(needle))
        .collect()
}

/// A `sync` configuration copying `source/app:TAG` to `target/app` with `target_keys` in the
/// target's registry table.
fn sync_config(dir: &Path, source: &TestRegistry, target: &str, tag: &str, target_keys: &str) {
    std::fs::write(
        dir.join("crossdock.toml"),
        format!(
            r#"[registries."{target}"]
{target_keys}

[[rules]]
name = "through-proxy"
source = "{src}/app"
target = "{target}/app"
tags = ["{tag}"]
"#,
            src = source.host(),
        ),
    )
    .unwrap();
}

fn sync(dir: &Path) -> Output {
    let config = dir.join("crossdock.toml");
    crossdock(
        &[
            "sync",
            "--config",
            config.to_str().unwrap(),
            "--log-level",
            "trace",
        ],
        &[],
    )
}

#[tokio::test]
async fn a_registry_proxy_tunnels_to_an_https_registry_with_credentials_kept_secret() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "registry");
    let server = ca.server("server");
    let target = TestRegistry::builder()
        .tls(&server.cert, &server.key)
        .start();
    let source = TestRegistry::start();
    source.client().push_image("app", "v1", &image(1)).await;
    source.client().push_image("app", "v2", &image(2)).await;
    let mut proxy = TinyProxy::start(&[target.port()], Some((PROXY_USER, PROXY_PASSWORD)));
    let host = target.host();
    let keys = |tag_proxy: &str| {
        format!(
            "ca_file = \"{}\"\nproxy = \"{tag_proxy}\"",
            ca.cert.display()
        )
    };
    let with_credentials = proxy.url(Some((PROXY_USER, PROXY_PASSWORD)));

    sync_config(dir.path(), &source, &host, "v1", &keys(&with_credentials));
    let out = sync(dir.path());
    assert!(out.status.success(), "{}", support::cli::text(&out));
    // Through the proxy's CONNECT tunnel, and only the target: the source has no proxy.
    assert!(
        !proxied(&proxy, &format!("CONNECT {host} ")).is_empty(),
        "{}",
        proxy.log()
    );
    assert!(
        proxied(&proxy, &source.host()).is_empty(),
        "{}",
        proxy.log()
    );
    // The proxy password is in no log line, even at trace level.
    let text = support::cli::text(&out);
    assert!(text.contains("TRACE"), "no trace output");
    assert!(!text.contains(PROXY_PASSWORD), "proxy password leaked");
    // Nor in the form it travels in (`Proxy-Authorization: Basic …`).
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{PROXY_USER}:{PROXY_PASSWORD}"));
    assert!(!text.contains(&basic), "proxy credentials leaked (base64)");
    // The image is there, as skopeo sees it over TLS.
    let certs = dir.path().join("skopeo-certs");
    std::fs::create_dir(&certs).unwrap();
    std::fs::copy(&ca.cert, certs.join("ca.crt")).unwrap();
    let raw = support::skopeo::run(
        "inspect --raw",
        &[
            "inspect",
            "--raw",
            "--cert-dir",
            certs.to_str().unwrap(),
            &format!("docker://{host}/app:v1"),
        ],
    )
    .stdout;
    assert_eq!(support::sha256_digest(&raw), image(1).digest());

    // With the proxy gone, the failure names the registry and the proxy, not its password.
    proxy.stop();
    sync_config(dir.path(), &source, &host, "v2", &keys(&with_credentials));
    let out = sync(dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", support::cli::text(&out));
    let text = support::cli::text(&out);
    assert!(!text.contains(PROXY_PASSWORD), "proxy password leaked");
    let redacted = format!("through the proxy http://***@{}", proxy.address());
    assert!(text.contains(&redacted), "{text}");
    assert!(text.contains(&host), "{text}");
}

#[tokio::test]
async fn environment_proxies_are_used_except_for_loopback_and_no_proxy() {
    let proxy = TinyProxy::start(&[443], Some((PROXY_USER, PROXY_PASSWORD)));
    let source = TestRegistry::start();
    let target = TestRegistry::start();
    source.client().push_image("app", "v1", &image(3)).await;
    let url = proxy.url(Some((PROXY_USER, PROXY_PASSWORD)));
    let env = [("HTTPS_PROXY", url.as_str()), ("HTTP_PROXY", url.as_str())];

    // Loopback registries are reached directly with a proxy set, as docker and skopeo do.
    let out = crossdock(
        &[
            "import",
            &source.image_ref("app", "v1"),
            &target.image_ref("app", "v1"),
        ],
        &env,
    );
    assert!(out.status.success(), "{}", support::cli::text(&out));
    assert!(proxy.requests().is_empty(), "{}", proxy.log());
    assert_eq!(
        target.client().head_manifest("app", "v1").await.as_deref(),
        Some(image(3).digest())
    );

    // Any other registry goes through the proxy the environment names (lower case too). The
    // name cannot resolve here, so the proxy's refusal is the answer; its log shows the tunnel
    // was asked for.
    let remote = "registry.crossdock-test.invalid";
    let args = ["ls", &format!("{remote}/app")];
    let out = crossdock(&args, &[("https_proxy", url.as_str())]);
    assert_eq!(out.status.code(), Some(1), "{}", support::cli::text(&out));
    assert!(
        !proxied(&proxy, &format!("CONNECT {remote}:443 ")).is_empty(),
        "{}",
        proxy.log()
    );
    let text = support::cli::text(&out);
    assert!(!text.contains(PROXY_PASSWORD), "proxy password leaked");
    assert!(text.contains(remote), "{text}");
    assert!(
        text.contains(&format!("the proxy http://***@{}", proxy.address())),
        "{text}"
    );

    // NO_PROXY sends it directly (and it fails to resolve without asking the proxy).
    let before = proxy.requests().len();
    let out = crossdock(
        &args,
        &[
            ("HTTPS_PROXY", url.as_str()),
            ("NO_PROXY", "crossdock-test.invalid"),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", support::cli::text(&out));
    assert_eq!(proxy.requests().len(), before, "{}", proxy.log());
    // So does the registry's own proxy = "none".
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[registries.\"{remote}\"]\nproxy = \"none\"\n\n[[rules]]\nname = \"r\"\n\
             source = \"{remote}/app\"\ntarget = \"{}/app\"\ntags = [\"v1\"]\n",
            target.host()
        ),
    )
    .unwrap();
    let out = crossdock(
        &["sync", "--config", config.to_str().unwrap()],
        &[("HTTPS_PROXY", url.as_str())],
    );
    assert_eq!(out.status.code(), Some(1), "{}", support::cli::text(&out));
    assert_eq!(proxy.requests().len(), before, "{}", proxy.log());
}

/// A transport for `registry` through `proxy`, without retries.
fn through(registry: &str, proxy: &str, opts: HttpOptions) -> HttpRegistry {
    HttpRegistry::new(
        registry,
        HttpOptions {
            proxy: ProxySetting::parse(proxy).unwrap(),
            retry: RetryPolicy::never(),
            ..opts
        },
    )
    .unwrap()
}

#[tokio::test]
async fn a_proxy_that_refuses_is_named_without_its_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "registry");
    let server = ca.server("server");
    let secure = TestRegistry::builder()
        .tls(&server.cert, &server.key)
        .start();
    let plain = TestRegistry::start();
    let proxy = TinyProxy::start(&[secure.port()], Some((PROXY_USER, PROXY_PASSWORD)));
    let tls = HttpOptions {
        ca_file: Some(ca.cert.clone()),
        ..HttpOptions::default()
    };

    // Right credentials: through.
    let good = proxy.url(Some((PROXY_USER, PROXY_PASSWORD)));
    through(&secure.host(), &good, tls.clone())
        .ping()
        .await
        .unwrap();

    // Wrong credentials on a tunnel (tinyproxy answers CONNECT with 401).
    let wrong = proxy.url(Some((PROXY_USER, "not-the-password")));
    let e = through(&secure.host(), &wrong, tls.clone())
        .ping()
        .await
        .unwrap_err();
    let text = crossdock::copy::error_chain(&e);
    assert!(text.contains(&secure.host()), "{text}");
    assert!(
        text.contains(&format!("the proxy http://***@{} refused", proxy.address())),
        "{text}"
    );
    assert!(!text.contains("not-the-password"), "{text}");

    // No credentials through a forwarding proxy (plain HTTP): its 407, explained.
    let opts = HttpOptions {
        plain_http: true,
        ..HttpOptions::default()
    };
    let e = through(&plain.host(), &proxy.url(None), opts)
        .ping()
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized, "{e}");
    let text = e.to_string();
    assert!(text.contains("407 Proxy Authentication Required"), "{text}");
    assert!(text.contains(&proxy.address()), "{text}");
    assert!(text.contains(&plain.host()), "{text}");

    // A port the proxy does not tunnel to.
    let e = through(&plain.host(), &good, tls).ping().await.unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("refused to open a tunnel (CONNECT)"),
        "{text}"
    );
    assert!(!text.contains(PROXY_PASSWORD), "{text}");
}

/// A proxy that answers every request with `407 Proxy Authentication Required`, as squid
/// answers a `CONNECT` without valid credentials. Scripted because tinyproxy answers a
/// `CONNECT` with bad credentials with 401 instead, so no installed proxy produces this answer.
async fn proxy_answering_407() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = conn
                .write_all(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n\
                      Proxy-Authenticate: Basic realm=\"corp\"\r\nContent-Length: 0\r\n\r\n",
                )
                .await;
        }
    });
    addr
}

#[tokio::test]
async fn a_407_to_connect_says_the_proxy_wants_credentials() {
    let addr = proxy_answering_407().await;
    let proxy = format!("http://{PROXY_USER}:{PROXY_PASSWORD}@{addr}");
    let e = through("registry.example", &proxy, HttpOptions::default())
        .ping()
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized, "{e}");
    let text = crossdock::copy::error_chain(&e);
    assert!(text.contains("https://registry.example/v2/"), "{text}");
    assert!(
        text.contains(&format!(
            "the proxy http://***@{addr} refused the request (407 Proxy Authentication Required)"
        )),
        "{text}"
    );
    assert!(!text.contains(PROXY_PASSWORD), "{text}");
}
