//! Index rules (`[[indexes]]`, issue 8): a multi-platform index kept up to date from
//! per-platform tags — composed, left alone while nothing moves (at the price of HEADs only),
//! composed again when a platform's tag moves, on schedule or at once on a registry
//! notification; and the configuration checked with key paths like every other rule.

mod support;

use std::time::Duration;

use crossdock::config::{self, ConfigErrors};
use serde_json::Value;
use support::cli::command;
use support::daemon::{Daemon, free_port, metric, notifying_registry, sync_json, write_config};
use support::{BuiltImage, Format, ImageSpec, RequestKind, TestRegistry};

const TOKEN: &str = "index-rule-test-token-4b1e9a2c";

fn single(format: Format, platform: &str, seed: u64) -> BuiltImage {
    ImageSpec::single(format, platform).seed(seed).build()
}

/// The one image outcome of the index rule in a `sync --json` report.
fn outcome(report: &Value, rule: &str) -> Value {
    let run = report
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == rule)
        .unwrap_or_else(|| panic!("no run of {rule} in {report}"));
    assert_eq!(run["images"].as_array().unwrap().len(), 1, "{run}");
    run["images"][0].clone()
}

/// `(architecture, digest)` of each entry of the index at `repo:tag`, and its media type.
async fn entries(b: &TestRegistry, repo: &str, tag: &str) -> (String, Vec<(String, String)>) {
    let m = b
        .client()
        .get_manifest_settled(repo, tag)
        .await
        .unwrap_or_else(|| panic!("{repo}:{tag} missing"));
    let doc: Value = serde_json::from_slice(&m.bytes).unwrap();
    let rows = doc["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("not an index: {doc}"))
        .iter()
        .map(|e| {
            (
                e["platform"]["architecture"].as_str().unwrap().to_string(),
                e["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (m.content_type, rows)
}

fn writes(b: &TestRegistry, mark: support::RequestMark) -> Vec<support::LoggedRequest> {
    b.requests_since(mark)
        .into_iter()
        .filter(|r| !matches!(r.method.as_str(), "HEAD" | "GET"))
        .collect()
}

/// `app:latest` at `b` is the OCI index of `amd` and `arm` (in that order) with the vendor
/// annotation, its digest is `d1`, and both children are there.
async fn assert_composed(b: &TestRegistry, amd: &BuiltImage, arm: &BuiltImage, d1: &str) {
    let (media_type, rows) = entries(b, "app", "latest").await;
    assert_eq!(media_type, "application/vnd.oci.image.index.v1+json");
    assert_eq!(
        rows,
        [
            ("amd64".to_string(), amd.digest().to_string()),
            ("arm64".to_string(), arm.digest().to_string())
        ]
    );
    let doc: Value = serde_json::from_slice(
        &b.client()
            .get_manifest("app", "latest")
            .await
            .unwrap()
            .bytes,
    )
    .unwrap();
    assert_eq!(doc["annotations"]["org.opencontainers.image.vendor"], "me");
    assert_eq!(
        b.client().head_manifest("app", "latest").await.as_deref(),
        Some(d1)
    );
    for child in [amd, arm] {
        assert!(
            b.client()
                .head_manifest("app", child.digest())
                .await
                .is_some()
        );
    }
}

/// A plain `sync` runs both kinds of rules; the index is up to date.
fn assert_plain_sync_runs_both_kinds(cfg: &std::path::Path) {
    let all = sync_json(cfg, &[]);
    let mut rules: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule"].as_str().unwrap())
        .collect();
    rules.sort();
    assert_eq!(rules, ["app-latest", "plain"]);
    assert_eq!(outcome(&all, "app-latest")["state"], "up_to_date");
}

#[tokio::test]
async fn sync_composes_the_index_keeps_it_and_follows_a_moved_platform_tag() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let amd = single(Format::Oci, "linux/amd64", 1);
    let arm = single(Format::Oci, "linux/arm64", 2);
    let ac = a.client();
    ac.push_image("app", "amd64", &amd).await;
    ac.push_image("app", "arm64", &arm).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            r#"
[[rules]]
name = "plain"
source = "{a}/app"
target = "{b}/plain/app"
tags = ["amd64"]
[[indexes]]
name = "app-latest"
target = "{b}/app:latest"
sources = ["{a}/app:amd64", "{a}/app:arm64"]
annotations = {{ "org.opencontainers.image.vendor" = "me" }}
schedule = "@every 1h"
"#,
            a = a.host(),
            b = b.host()
        ),
    );

    let first = outcome(&sync_json(&cfg, &["--rule", "app-latest"]), "app-latest");
    assert_eq!(first["state"], "copied", "{first}");
    let d1 = first["digest"].as_str().unwrap().to_string();
    assert_composed(&b, &amd, &arm, &d1).await;

    // Nothing moved: up to date, nothing written.
    let mark = b.request_mark();
    let again = outcome(&sync_json(&cfg, &["--rule", "app-latest"]), "app-latest");
    assert_eq!(
        (again["state"].as_str(), again["digest"].as_str()),
        (Some("up_to_date"), Some(d1.as_str()))
    );
    assert_eq!(writes(&b, mark), [], "a no-op run wrote");

    // The arm64 tag moves: a dry run says so and writes nothing; the next run composes.
    let arm2 = single(Format::Oci, "linux/arm64", 3);
    ac.push_image("app", "arm64", &arm2).await;
    let mark = b.request_mark();
    let dry = outcome(
        &sync_json(&cfg, &["--rule", "app-latest", "--dry-run"]),
        "app-latest",
    );
    assert_eq!(dry["state"], "dry_run", "{dry}");
    assert_ne!(dry["digest"].as_str(), Some(d1.as_str()));
    assert_eq!(writes(&b, mark), []);
    let moved = outcome(&sync_json(&cfg, &["--rule", "app-latest"]), "app-latest");
    assert_eq!(moved["state"], "copied");
    assert_eq!(
        moved["digest"], dry["digest"],
        "the dry run predicted the index"
    );
    let (_, rows) = entries(&b, "app", "latest").await;
    assert_eq!(rows[1], ("arm64".to_string(), arm2.digest().to_string()));

    // A plain `sync` runs both kinds of rules.
    assert_plain_sync_runs_both_kinds(&cfg);
}

/// While nothing moves, two more runs of "every-second" ask the source and the target for
/// manifest HEADs only.
fn assert_runs_are_heads_only(d: &Daemon, a: &TestRegistry, b: &TestRegistry) {
    let runs = |d: &Daemon| {
        metric(
            &d.metrics(),
            "crossdock_rule_runs_total{rule=\"every-second\",result=\"ok\"}",
        )
    };
    d.wait_for(Duration::from_secs(10), "a run after composing", |d| {
        runs(d) >= 2.0
    });
    let (ma, mb) = (a.request_mark(), b.request_mark());
    let before = runs(d);
    d.wait_for(Duration::from_secs(15), "two more runs", |d| {
        runs(d) >= before + 2.0
    });
    let at_a = a.requests_since(ma);
    let at_b = b.requests_since(mb);
    let is_head = |r: &support::LoggedRequest| r.is("HEAD", RequestKind::is_manifest);
    assert!(
        !at_a.is_empty() && at_a.iter().all(is_head),
        "source: {at_a:?}"
    );
    assert!(
        !at_b.is_empty() && at_b.iter().all(is_head),
        "target: {at_b:?}"
    );
}

/// The "on-push" run is recorded as ok with one image copied and its hourly schedule, and no run
/// failed.
fn assert_on_push_recorded(d: &Daemon) {
    let status = d.status();
    assert_eq!(
        status["rules"]["on-push"]["last_run"]["result"], "ok",
        "{status}"
    );
    assert_eq!(status["rules"]["on-push"]["last_run"]["images_copied"], 1);
    assert_eq!(status["rules"]["on-push"]["schedule"], "@every 1h");
    // Both rules compose into one repository at the same moment; they take turns rather than
    // trip over each other's PUTs of the same child (a distribution quirk).
    let failed = metric(
        &d.metrics(),
        "crossdock_rule_runs_total{rule=\"on-push\",result=\"failed\"}",
    );
    assert_eq!(failed, 0.0, "{}", d.log());
}

#[test]
fn the_daemon_keeps_the_index_with_heads_only_and_recomposes_on_a_push() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let port = free_port();
    let a = notifying_registry(port, TOKEN);
    let b = TestRegistry::start();
    let amd = single(Format::Docker, "linux/amd64", 11);
    let arm = single(Format::Docker, "linux/arm64", 12);
    rt.block_on(a.client().push_image("app", "amd64", &amd));
    rt.block_on(a.client().push_image("app", "arm64", &arm));
    let dir = tempfile::tempdir().unwrap();
    // "every-second" shows what a run costs when nothing moved; "on-push" runs hourly, so only
    // a notification can recompose it within the test.
    let cfg = write_config(
        dir.path(),
        &format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
notifications_token = "{TOKEN}"
[[indexes]]
name = "every-second"
target = "{b}/app:latest"
sources = ["{a}/app:amd64", "{a}/app:arm64"]
schedule = "@every 1s"
[[indexes]]
name = "on-push"
target = "{b}/app:stable"
sources = ["{a}/app:amd64", "{a}/app:arm64"]
schedule = "@every 1h"
"#,
            a = a.host(),
            b = b.host()
        ),
    );
    let d = Daemon::start(&cfg, port, dir.path());
    let bc = b.client();
    let head = |tag: &str| rt.block_on(bc.poll_manifest("app", tag));
    d.wait_for(Duration::from_secs(20), "both indexes composed", |_| {
        head("latest").is_some() && head("stable").is_some()
    });
    let (media_type, rows) = rt.block_on(entries(&b, "app", "stable"));
    assert_eq!(
        media_type, "application/vnd.docker.distribution.manifest.list.v2+json",
        "Docker children make a Docker manifest list"
    );
    assert_eq!(rows[0].1, amd.digest());
    let composed = head("latest");

    // Runs while nothing moves: a HEAD per source and one of the target, nothing else.
    assert_runs_are_heads_only(&d, &a, &b);
    assert_eq!(head("latest"), composed);

    // A new arm64 image: the hourly rule follows within seconds, by the registry's notification.
    let arm2 = single(Format::Docker, "linux/arm64", 13);
    rt.block_on(a.client().push_image("app", "arm64", &arm2));
    d.wait_for(
        Duration::from_secs(15),
        "the index recomposed on push",
        // The index lands before its run ends: wait for the run to be recorded too.
        |d| {
            rt.block_on(entries(&b, "app", "stable")).1[1].1 == arm2.digest()
                && d.status()["rules"]["on-push"]["running"] == false
        },
    );
    d.wait_for(Duration::from_secs(15), "and on schedule", |_| {
        rt.block_on(entries(&b, "app", "latest")).1[1].1 == arm2.digest()
    });
    assert_on_push_recorded(&d);
}

fn load(text: &str, env: &[(&str, &str)]) -> Result<config::Plan, ConfigErrors> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, text).unwrap();
    config::load_with_env(&p, env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

#[test]
fn index_rules_are_checked_with_key_paths() {
    let text = r#"
[[rules]]
name = "dup"
source = "localhost:5000/a"
target = "localhost:5001/{repo}"
tags = ["v1"]

[[indexes]]
name = "dup"
target = "localhost:5001/app"
sources = ["localhost:5000/app", "localhost:5000/app:arm64", "localhost:5000/app:arm64"]

[[indexes]]
name = "empty"
target = "localhost:5001/app@sha256:0000000000000000000000000000000000000000000000000000000000000000"
sources = []
schedule = "every hour"

[[indexes]]
name = "self"
target = "localhost:5001/app:latest"
sources = ["localhost:5001/app:latest", "Bad/Name:x"]
annotations = { "" = "x" }
timeout = "0s"

[[indexes]]
name = "typo"
target = "localhost:5001/app:latest"
source = ["localhost:5000/app:amd64"]
"#;
    let errs: Vec<String> = load(text, &[])
        .unwrap_err()
        .iter()
        .map(|e| e.to_string())
        .collect();
    let want = [
        (
            "indexes[0].name",
            "duplicate rule name \"dup\" (also rules[0])",
        ),
        ("indexes[0].target", "has no tag"),
        ("indexes[0].sources[0]", "needs a tag and no digest"),
        ("indexes[0].sources[2]", "is listed twice"),
        ("indexes[1].target", "names a digest"),
        ("indexes[1].sources", "an empty list composes no index"),
        ("indexes[1].schedule", ""),
        ("indexes[2].sources[0]", "is the index's own target"),
        ("indexes[2].sources[1]", ""),
        ("indexes[2].annotations", "an annotation key is empty"),
        ("indexes[2].timeout", "must be more than zero"),
        ("indexes[3].source", "did you mean `sources`?"),
        ("indexes[3].sources", "missing"),
    ];
    for (path, message) in want {
        assert!(
            errs.iter()
                .any(|e| e.contains(&format!("{path}: ")) && e.contains(message)),
            "no error at {path} saying {message:?} in:\n{}",
            errs.join("\n")
        );
    }
    // Each with its line: `c.toml:LINE:COL: path: message`.
    assert!(errs.iter().all(|e| e.contains("c.toml:")), "{errs:?}");
    assert_eq!(errs.len(), want.len(), "{}", errs.join("\n"));

    // Index rules alone make a configuration; `[defaults]` and overrides apply to them.
    let good = r#"
[defaults]
schedule = "@daily"
referrers = false
[[indexes]]
name = "app-latest"
target = "localhost:5001/app:latest"
sources = ["localhost:5000/app:amd64", "localhost:5000/app:arm64"]
"#;
    let plan = load(good, &[("CROSSDOCK_INDEXES__APP_LATEST__TIMEOUT", "5m")]).unwrap();
    assert!(plan.rules.is_empty());
    let i = &plan.indexes[0];
    assert_eq!(i.schedule.to_string(), "@daily");
    assert!(!i.referrers && !i.oci);
    assert_eq!(i.timeout, Duration::from_secs(300));
    assert_eq!(i.sources[1].tag(), Some("arm64"));

    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), good);
    let out = command(&["check-config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("0 rules (0 source repositories), 1 index rule"),
        "{text}"
    );
}
