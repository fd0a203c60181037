//! The everyday commands against real registries (issue 9): `ls`, `login`, `logout`.

mod support;

use std::process::Output;

use serde_json::Value;
use support::{Format, ImageSpec, TestRegistry, skopeo};

fn crossdock(args: &[&str], docker_config_dir: &std::path::Path, stdin: Option<&str>) -> Output {
    let mut c = support::cli::command(args);
    c.env("DOCKER_CONFIG", docker_config_dir);
    support::cli::run(c, stdin, support::cli::RUN_LIMIT).output
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test]
async fn ls_lists_tags_digests_and_platforms() {
    let a = TestRegistry::start();
    let multi = ImageSpec::multi(Format::Docker, &["linux/amd64", "linux/arm64/v8"])
        .seed(1)
        .build();
    let single = ImageSpec::single(Format::Oci, "linux/s390x")
        .seed(2)
        .build();
    let c = a.client();
    c.push_image("app", "multi", &multi).await;
    c.push_image("app", "single", &single).await;
    for i in 0..5 {
        c.push_image("app", &format!("t{i}"), &single).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let repo = format!("{}/app", a.host());
    let out = crossdock(&["ls", &repo], dir.path(), None);
    assert!(out.status.success(), "{}", text(&out));
    let tags: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(tags, ["multi", "single", "t0", "t1", "t2", "t3", "t4"]);

    let mark = a.request_mark();
    let out = crossdock(&["ls", "--digests", "--json", &repo], dir.path(), None);
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["tag"], "multi");
    assert_eq!(rows[0]["digest"], multi.digest());
    assert_eq!(
        rows[0]["media_type"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    let reqs = a.requests_since(mark);
    assert!(
        reqs.iter()
            .all(|r| r.method == "HEAD" || r.path.ends_with("/tags/list")),
        "a HEAD is enough for digests: {reqs:?}"
    );

    let out = crossdock(&["ls", "--platforms", &repo], dir.path(), None);
    let t = text(&out);
    assert!(
        t.lines()
            .any(|l| l.starts_with("multi\t") && l.ends_with("linux/amd64,linux/arm64/v8")),
        "{t}"
    );
    assert!(
        t.lines()
            .any(|l| l.starts_with("single\t") && l.ends_with("linux/s390x")),
        "{t}"
    );

    let out = crossdock(&["ls", &format!("{repo}:tag")], dir.path(), None);
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn login_checks_stores_shares_and_logout_removes() {
    let reg = TestRegistry::start_with_auth("mirror", "s3cret-pass");
    let image = ImageSpec::single(Format::Oci, "linux/amd64")
        .seed(3)
        .build();
    reg.client().push_image("app", "v1", &image).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    let host = reg.host();

    // Wrong password: refused, nothing written.
    let out = crossdock(
        &["login", &host, "-u", "mirror", "--password-stdin"],
        dir.path(),
        Some("wrong\n"),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("failed"), "{}", text(&out));
    assert!(!text(&out).contains("wrong"));
    assert!(!config.exists());

    // Without a login, listing is refused.
    let out = crossdock(&["ls", &format!("{host}/app")], dir.path(), None);
    assert!(!out.status.success());

    let out = crossdock(
        &["login", &host, "-u", "mirror", "--password-stdin"],
        dir.path(),
        Some("s3cret-pass\n"),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("s3cret-pass"));
    let doc: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert!(doc["auths"][&host]["auth"].is_string(), "{doc}");

    // crossdock and skopeo both read that login.
    let out = crossdock(&["ls", &format!("{host}/app")], dir.path(), None);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "v1");
    let raw = skopeo::run(
        "inspect with authfile",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--authfile",
            config.to_str().unwrap(),
            &format!("docker://{host}/app:v1"),
        ],
    )
    .stdout;
    assert_eq!(raw, image.top().bytes);

    let out = crossdock(&["logout", &host], dir.path(), None);
    assert!(out.status.success());
    let doc: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert!(doc["auths"].get(&host).is_none(), "{doc}");
    let out = crossdock(&["ls", &format!("{host}/app")], dir.path(), None);
    assert!(!out.status.success());
}
