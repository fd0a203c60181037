//! Client certificates (mTLS) end to end (issue 15), against distribution configured to
//! require one (`http.tls.clientcas`): `client_cert`/`client_key` in the configuration, Docker's
//! `certs.d/HOST:PORT/{ca.crt, NAME.cert, NAME.key}` layout (found through `--certs-d` or
//! `CROSSDOCK_CERTS_D`, and cross-checked with skopeo's `--cert-dir` on the same folder), and
//! the errors: no certificate, a certificate the registry does not trust, a key that does not
//! match, a missing file.

mod support;

use std::path::{Path, PathBuf};

use support::cli::crossdock_env as crossdock;
use support::pki::{Pair, TestCa, stray_key};
use support::{Format, ImageSpec, TestRegistry};

fn image(seed: u64) -> support::BuiltImage {
    ImageSpec::multi(Format::Oci, &["linux/amd64", "linux/arm64/v8"])
        .seed(seed)
        .build()
}

/// A registry serving TLS that requires a client certificate signed by `ca`.
fn mtls_registry(ca: &TestCa) -> TestRegistry {
    let server = ca.server("server");
    TestRegistry::builder()
        .tls(&server.cert, &server.key)
        .client_ca(&ca.cert)
        .start()
}

/// A Docker-style `certs.d` root with a folder for `host`: `ca.crt`, `client.cert`,
/// `client.key`.
fn certs_d(dir: &Path, host: &str, ca: &Path, client: &Pair) -> PathBuf {
    let root = dir.join("certs.d");
    let folder = root.join(host);
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::copy(ca, folder.join("ca.crt")).unwrap();
    std::fs::copy(&client.cert, folder.join("client.cert")).unwrap();
    std::fs::copy(&client.key, folder.join("client.key")).unwrap();
    root
}

/// The manifest digest of `image` as skopeo reads it with `--cert-dir folder`.
fn skopeo_digest(folder: &Path, image: &str) -> String {
    let raw = support::skopeo::run(
        "inspect --raw --cert-dir",
        &[
            "inspect",
            "--raw",
            "--cert-dir",
            folder.to_str().unwrap(),
            &format!("docker://{image}"),
        ],
    )
    .stdout;
    support::sha256_digest(&raw)
}

fn write_config(dir: &Path, source: &TestRegistry, target: &str, tag: &str, keys: &str) -> PathBuf {
    let path = dir.join("crossdock.toml");
    std::fs::write(
        &path,
        format!(
            r#"[registries."{target}"]
{keys}

[[rules]]
name = "mtls"
source = "{src}/app"
target = "{target}/app"
tags = ["{tag}"]
"#,
            src = source.host(),
        ),
    )
    .unwrap();
    path
}

#[tokio::test]
async fn client_certificates_from_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "corp");
    let target = mtls_registry(&ca);
    let client = ca.client("crossdock");
    let source = TestRegistry::start();
    source.client().push_image("app", "v1", &image(1)).await;
    let host = target.host();
    let sync = |config: &Path| crossdock(&["sync", "--config", config.to_str().unwrap()], &[]);

    // Without a client certificate the registry hangs up; the error says what to do.
    let config = write_config(
        dir.path(),
        &source,
        &host,
        "v1",
        &format!("ca_file = \"{}\"", ca.cert.display()),
    );
    let out = sync(&config);
    assert_eq!(out.status.code(), Some(1), "{}", support::cli::text(&out));
    let text = support::cli::text(&out);
    assert!(
        text.contains("this registry asks for a client certificate: set client_cert/client_key"),
        "{text}"
    );
    assert!(text.contains(&format!("certs.d/{host}/")), "{text}");

    // A certificate from a CA the registry does not trust is refused, and named.
    let other = TestCa::new(dir.path(), "other").client("stranger");
    let config = write_config(
        dir.path(),
        &source,
        &host,
        "v1",
        &format!(
            "ca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"",
            ca.cert.display(),
            other.cert.display(),
            other.key.display()
        ),
    );
    let out = sync(&config);
    assert_eq!(out.status.code(), Some(1), "{}", support::cli::text(&out));
    let text = support::cli::text(&out);
    assert!(
        text.contains(&format!(
            "the registry refused the client certificate {}",
            other.cert.display()
        )),
        "{text}"
    );

    // The right one works.
    let config = write_config(
        dir.path(),
        &source,
        &host,
        "v1",
        &format!(
            "ca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"",
            ca.cert.display(),
            client.cert.display(),
            client.key.display()
        ),
    );
    let out = sync(&config);
    assert!(out.status.success(), "{}", support::cli::text(&out));
    let root = certs_d(dir.path(), &host, &ca.cert, &client);
    assert_eq!(
        skopeo_digest(&root.join(&host), &format!("{host}/app:v1")),
        image(1).digest()
    );
}

#[tokio::test]
async fn certs_d_folders_are_read_as_docker_lays_them_out() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "corp");
    let target = mtls_registry(&ca);
    let client = ca.client("crossdock");
    let source = TestRegistry::start();
    source.client().push_image("app", "v1", &image(2)).await;
    source.client().push_image("app", "v2", &image(3)).await;
    let host = target.host();
    let root = certs_d(dir.path(), &host, &ca.cert, &client);

    // One-shot: --certs-d. The folder also makes a loopback registry HTTPS.
    let out = crossdock(
        &[
            "import",
            "--certs-d",
            root.to_str().unwrap(),
            &source.image_ref("app", "v1"),
            &format!("{host}/app:v1"),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", support::cli::text(&out));
    assert_eq!(
        skopeo_digest(&root.join(&host), &format!("{host}/app:v1")),
        image(2).digest()
    );

    // The daemon: CROSSDOCK_CERTS_D, with no TLS key in the configuration at all.
    let config = dir.path().join("d.toml");
    std::fs::write(
        &config,
        format!(
            "[[rules]]\nname = \"m\"\nsource = \"{}/app\"\ntarget = \"{host}/app\"\n\
             tags = [\"v2\"]\n",
            source.host()
        ),
    )
    .unwrap();
    let root_env = root.to_str().unwrap();
    let out = crossdock(
        &["sync", "--config", config.to_str().unwrap()],
        &[("CROSSDOCK_CERTS_D", root_env)],
    );
    assert!(out.status.success(), "{}", support::cli::text(&out));
    assert_eq!(
        skopeo_digest(&root.join(&host), &format!("{host}/app:v2")),
        image(3).digest()
    );

    // A certificate without its key is an error naming both, before any request.
    std::fs::rename(
        root.join(&host).join("client.key"),
        root.join(&host).join("client.key.off"),
    )
    .unwrap();
    let out = crossdock(
        &[
            "ls",
            "--certs-d",
            root.to_str().unwrap(),
            &format!("{host}/app"),
        ],
        &[],
    );
    assert_ne!(out.status.code(), Some(0), "{}", support::cli::text(&out));
    let text = support::cli::text(&out);
    assert!(text.contains("missing key"), "{text}");
    assert!(
        text.contains(&format!("{host}/client.key")) && text.contains("client.cert"),
        "{text}"
    );
    // check-config reports it too, at the registry's table.
    std::fs::write(
        &config,
        format!(
            "[registries.\"{host}\"]\n\n[[rules]]\nname = \"m\"\nsource = \"{}/app\"\n\
             target = \"{host}/app\"\ntags = [\"v2\"]\n",
            source.host()
        ),
    )
    .unwrap();
    let out = crossdock(
        &["check-config", config.to_str().unwrap()],
        &[("CROSSDOCK_CERTS_D", root_env)],
    );
    assert_eq!(out.status.code(), Some(2), "{}", support::cli::text(&out));
    assert!(
        support::cli::text(&out).contains("missing key"),
        "{}",
        support::cli::text(&out)
    );
}

#[test]
fn bad_client_certificate_settings_are_configuration_errors() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "corp");
    let client = ca.client("crossdock");
    let stray = stray_key(dir.path(), "stray");
    let check = |keys: &str| {
        let config = dir.path().join("c.toml");
        std::fs::write(
            &config,
            format!(
                "[registries.\"registry.example\"]\n{keys}\n\n[[rules]]\nname = \"r\"\n\
                 source = \"registry.example/app\"\ntarget = \"localhost:5000/app\"\n\
                 tags = [\"v1\"]\n"
            ),
        )
        .unwrap();
        let out = crossdock(&["check-config", config.to_str().unwrap()], &[]);
        assert_eq!(out.status.code(), Some(2), "{}", support::cli::text(&out));
        support::cli::text(&out)
    };
    let key_line = |cert: &Path, key: &Path| {
        format!(
            "client_cert = \"{}\"\nclient_key = \"{}\"",
            cert.display(),
            key.display()
        )
    };

    // A key that is not the certificate's.
    let text = check(&key_line(&client.cert, &stray));
    assert!(text.contains("client_key"), "{text}");
    assert!(text.contains("does not match client certificate"), "{text}");
    assert!(text.contains("stray-key.pem"), "{text}");

    // A missing file, named.
    let text = check(&key_line(&dir.path().join("absent.pem"), &client.key));
    assert!(text.contains("client_cert"), "{text}");
    assert!(text.contains("absent.pem"), "{text}");

    // The files swapped: a key where the certificate belongs.
    let text = check(&key_line(&client.key, &client.cert));
    assert!(text.contains("holds no PEM certificate"), "{text}");

    // One half only.
    let text = check(&format!("client_cert = \"{}\"", client.cert.display()));
    assert!(text.contains("client_key"), "{text}");
    assert!(text.contains("missing"), "{text}");

    // And a proxy URL that is not one, without echoing its password.
    let text = check("proxy = \"socks5://u:secret-pw@proxy:1080\"");
    assert!(text.contains("proxy"), "{text}");
    assert!(!text.contains("secret-pw"), "{text}");
}
