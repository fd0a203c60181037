//! What a person reads when a command fails (issue 13): each cause once, then a hint saying what
//! to check or run. Each message is asserted whole, from the binary run against real registries
//! (`docker-registry`, with and without basic auth) and a closed loopback port.

mod support;

use std::net::TcpListener;
use std::process::Output;

use support::cli;
use support::{Format, ImageSpec, TestRegistry};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn connection_refused_once_with_a_hint_and_one_retry_line() {
    let port = closed_port();
    let layout = tempfile::tempdir().unwrap();
    let target = format!("oci:{}:1", layout.path().display());
    let source = format!("localhost:{port}/x:1");
    let out = cli::crossdock(&["import", &source, &target]);
    assert_eq!(out.status.code(), Some(1));
    let url = format!("http://localhost:{port}/v2/x/manifests/1");
    assert_eq!(
        stderr(&out),
        format!(
            "retrying HEAD manifest {url} (attempt 2): Connection refused (os error 111)\n\
             error: importing {source}: reading {source}: HEAD manifest {url} (transport): error \
             sending request: client error (Connect): tcp connect error: Connection refused (os \
             error 111)\n\
             hint: nothing accepts connections at localhost:{port}: is the registry running, and \
             is localhost:{port} its host:port?\n"
        )
    );
    // Asked for, the retries are log lines again.
    let out = cli::crossdock(&["--log-level", "warn", "inspect", &source]);
    let text = stderr(&out);
    assert_eq!(text.matches("WARN").count(), 4, "{text}");
    assert!(!text.contains("retrying HEAD"), "{text}");
}

#[tokio::test]
async fn missing_tag_and_repository_say_so_and_how_to_list() {
    let reg = TestRegistry::start();
    let image = ImageSpec::single(Format::Oci, "linux/amd64").build();
    reg.client().push_image("app", "1.0", &image).await;
    let host = reg.host();

    let out = cli::crossdock(&["inspect", &format!("{host}/app:nope")]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "error: reading {host}/app:nope: GET manifest http://{host}/v2/app/manifests/nope: \
             HTTP 404 (not_found): MANIFEST_UNKNOWN manifest unknown\n\
             hint: the tag nope does not exist in {host}/app: `crossdock ls {host}/app` lists \
             its tags\n"
        )
    );
    // The hint's command works.
    assert_eq!(
        cli::ok(&cli::crossdock(&["ls", &format!("{host}/app")])),
        "1.0\n"
    );

    let out = cli::crossdock(&["ls", &format!("{host}/nothere")]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "error: GET tags http://{host}/v2/nothere/tags/list: HTTP 404 (not_found): \
             NAME_UNKNOWN repository name not known to registry\n\
             hint: the repository {host}/nothere does not exist (or these credentials may not \
             see it)\n"
        )
    );
}

#[test]
fn missing_credentials_point_to_login() {
    let reg = TestRegistry::start_with_auth("mirror", "s3cret");
    let host = reg.host();
    let out = cli::crossdock(&["inspect", &format!("{host}/app:1")]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "error: reading {host}/app:1: GET manifest http://{host}/v2/app/manifests/1: HTTP \
             401 (unauthorized): registry {host} requires credentials and none are configured\n\
             hint: {host} refused the credentials (or their absence): run `crossdock login \
             {host}`, pass --src-creds/--dest-creds, or for the daemon give the credentials \
             under [registries.\"{host}\"] (username with password_file or password_env)\n"
        )
    );
}

#[test]
fn a_url_scheme_is_named_and_a_short_digest_said_once() {
    let layout = tempfile::tempdir().unwrap();
    let target = format!("oci:{}:1", layout.path().display());
    let out = cli::crossdock(&["import", "https://reg.example/x", &target]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "error: source \"https://reg.example/x\": \"https://reg.example/x\" is a URL, not an \
         image reference: drop the https:// and write \"reg.example/x\"\n"
    );
    let out = cli::crossdock(&["import", "reg.example/x@sha256:abc", &target]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "error: source \"reg.example/x@sha256:abc\": invalid digest in reference \
         \"reg.example/x@sha256:abc\": invalid digest \"sha256:abc\": sha256 hex must be 64 \
         characters\n"
    );
    let out = cli::crossdock(&["inspect", "https://reg.example/x:1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).matches("is a URL").count(),
        1,
        "{}",
        stderr(&out)
    );
}
