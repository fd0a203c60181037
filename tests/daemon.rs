//! The daemon and `sync` end to end, against real registries (issue 4).

mod support;

use std::time::Duration;

use serde_json::Value;
use support::cli::command;
use support::daemon::{Daemon, free_port, metric, sync, sync_json, write_config};
use support::{Format, ImageSpec, TestRegistry};

fn states(report: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = report
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|run| run["images"].as_array().unwrap().clone())
        .map(|i| {
            (
                i["target"].as_str().unwrap().to_string(),
                i["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

fn image(seed: u64) -> support::BuiltImage {
    ImageSpec::multi(Format::Oci, &["linux/amd64", "linux/arm64/v8"])
        .seed(seed)
        .build()
}

#[tokio::test]
async fn sync_selects_tags_and_second_sync_is_a_no_op() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let c = a.client();
    let tags = [
        "1.0.0",
        "1.1.0",
        "1.2.0",
        "1.2.1",
        "2.0.0",
        "2.0.0-rc1",
        "latest",
        "edge",
        "v0.9",
    ];
    for (i, t) in tags.iter().enumerate() {
        c.push_image("app", t, &image(100 + i as u64)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            r#"
[defaults]
schedule = "@every 1h"
[[rules]]
name = "newest-two"
source = "{a}/app"
target = "{b}/newest/{{name}}"
[rules.tags]
semver = ">=1.0"
newest = 2
[[rules]]
name = "regex"
source = "{a}/app"
target = "{b}/regex/{{repo}}"
[rules.tags]
include = ["^1\\."]
exclude = ["^1\\.2\\.1$"]
[[rules]]
name = "listed"
source = "{a}/app"
target = "{b}/listed/app"
tags = ["latest", "edge"]
"#,
            a = a.host(),
            b = b.host()
        ),
    );
    let first = sync_json(&cfg, &[]);
    let got = states(&first);
    let want: Vec<(String, String)> = [
        "listed/app:edge",
        "listed/app:latest",
        "newest/app:1.2.1",
        "newest/app:2.0.0",
        "regex/app:1.0.0",
        "regex/app:1.1.0",
        "regex/app:1.2.0",
    ]
    .iter()
    .map(|t| (format!("{}/{t}", b.host()), "copied".to_string()))
    .collect();
    assert_eq!(got, want);
    let bc = b.client();
    assert_eq!(
        bc.head_manifest("newest/app", "2.0.0").await.as_deref(),
        Some(image(104).digest())
    );

    // Nothing changed: every image up to date, and only HEADs (plus the tag lists) at the source.
    let mark = a.request_mark();
    let bmark = b.request_mark();
    let second = sync_json(&cfg, &[]);
    assert!(
        states(&second).iter().all(|(_, s)| s == "up_to_date"),
        "{second}"
    );
    let ra = a.requests_since(mark);
    assert!(
        ra.iter().all(|r| r.method == "HEAD"
            || r.kind() == support::RequestKind::TagList { repo: "app".into() }),
        "{ra:?}"
    );
    let rb = b.requests_since(bmark);
    assert_eq!(rb.len(), 7, "one HEAD per target tag: {rb:?}");

    // A source tag moves: the mirror follows on the next sync.
    c.push_image("app", "latest", &image(999)).await;
    let third = sync_json(&cfg, &["--rule", "listed"]);
    assert!(states(&third).contains(&(format!("{}/listed/app:latest", b.host()), "copied".into())));
    assert_eq!(
        bc.head_manifest("listed/app", "latest").await.as_deref(),
        Some(image(999).digest())
    );
}

#[tokio::test]
async fn keep_leaves_a_differing_tag_alone_and_unknown_rule_is_a_usage_error() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    a.client().push_image("app", "1.0", &image(1)).await;
    b.client().push_image("app", "1.0", &image(2)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            r#"
[[rules]]
name = "pinned"
source = "{}/app"
target = "{}/app"
tags = ["1.0"]
on_conflict = "keep"
"#,
            a.host(),
            b.host()
        ),
    );
    let report = sync_json(&cfg, &[]);
    // Immutable (a keep rule) and listed at the target: left alone without a HEAD (issue 18).
    assert_eq!(states(&report)[0].1, "present");
    assert_eq!(
        b.client().head_manifest("app", "1.0").await.as_deref(),
        Some(image(2).digest())
    );
    let out = sync(&cfg, &["--rule", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pinned"));
}

#[tokio::test]
async fn two_shards_cover_every_rule_exactly_once() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    a.client().push_image("app", "v1", &image(5)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..8 {
        text.push_str(&format!(
            "[[rules]]\nname = \"rule-{i}\"\nsource = \"{}/app\"\ntarget = \"{}/r{i}/app\"\ntags = [\"v1\"]\n",
            a.host(),
            b.host()
        ));
    }
    let cfg = write_config(dir.path(), &text);
    let mut seen = Vec::new();
    for shard in ["0/2", "1/2"] {
        let report = sync_json(&cfg, &["--shard", shard]);
        let rules: Vec<String> = report
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["rule"].as_str().unwrap().to_string())
            .collect();
        assert!(!rules.is_empty(), "shard {shard} got no rule");
        seen.extend(rules);
    }
    seen.sort();
    let all: Vec<String> = (0..8).map(|i| format!("rule-{i}")).collect();
    assert_eq!(seen, all, "every rule exactly once");
    // The environment selects a shard too, as a Kubernetes Indexed Job does.
    let out = command(&[
        "sync",
        "--config",
        cfg.to_str().unwrap(),
        "--json",
        "--dry-run",
    ])
    .env("CROSSDOCK_SHARD_COUNT", "2")
    .env("JOB_COMPLETION_INDEX", "1")
    .output()
    .unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let n = r.as_array().unwrap().len();
    assert!(n > 0 && n < 8, "{r}");
}

#[test]
fn bad_config_exits_2_before_binding_the_port() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = write_config(
        dir.path(),
        &format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[[rules]]\nname = \"x\"\nsource = \"localhost:5000/a\"\ntarget = \"localhost:5001/{{repo}}\"\ntags = [\"v1\"]\nshedule = \"@hourly\"\n"
        ),
    );
    let out = command(&["run", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("shedule") && err.contains("schedule"), "{err}");
}

#[test]
fn daemon_mirrors_on_schedule_follows_moves_reloads_and_counts() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    rt.block_on(a.client().push_image("app", "latest", &image(10)));
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let rule = |name: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[daemon]\nshutdown_grace = \"10s\"\n[[rules]]\nname = \"{name}\"\nsource = \"{}/app\"\ntarget = \"{}/mirror/app\"\ntags = [\"latest\"]\nschedule = \"@every 1s\"\n",
            a.host(),
            b.host()
        )
    };
    let cfg = write_config(dir.path(), &rule("app"));
    let mut d = Daemon::start_logging(&cfg, port, dir.path(), "info");
    let bc = b.client();
    let head = |tag: &str| rt.block_on(bc.poll_manifest("mirror/app", tag));
    d.wait_for(Duration::from_secs(20), "first mirror", |_| {
        head("latest").as_deref() == Some(image(10).digest())
    });
    // The source tag moves; the mirror follows within a few runs.
    rt.block_on(a.client().push_image("app", "latest", &image(11)));
    d.wait_for(Duration::from_secs(20), "mirror follows", |_| {
        head("latest").as_deref() == Some(image(11).digest())
    });
    // The tag lands before its run ends: wait for that run to be counted.
    let runs_ok = |d: &Daemon| {
        metric(
            &d.metrics(),
            "crossdock_rule_runs_total{rule=\"app\",result=\"ok\"}",
        )
    };
    d.wait_for(Duration::from_secs(20), "the follow-up run counted", |d| {
        runs_ok(d) >= 2.0
    });
    let (_, metrics) = d.get("/metrics").unwrap();
    assert!(
        metric(
            &metrics,
            "crossdock_rule_runs_total{rule=\"app\",result=\"ok\"}"
        ) >= 2.0,
        "{metrics}"
    );
    assert!(
        metric(&metrics, "crossdock_blobs_total{outcome=\"copied\"}") >= 4.0,
        "{metrics}"
    );
    assert!(metric(&metrics, "crossdock_registry_requests_total") > 0.0);
    assert!(
        metric(
            &metrics,
            "crossdock_rule_last_success_timestamp_seconds{rule=\"app\"}"
        ) > 1.7e9
    );
    let (_, status) = d.get("/status").unwrap();
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(
        status["rules"]["app"]["last_run"]["result"], "ok",
        "{status}"
    );
    assert!(status["rules"]["app"]["next_run"].is_string());

    // SIGHUP with a bad file: refused, the old rule keeps running.
    std::fs::write(&cfg, "[[rules]]\nname = 3\n").unwrap();
    d.signal("HUP");
    d.wait_for(Duration::from_secs(10), "reload refused", |d| {
        d.log().contains("reload refused")
    });
    let (_, status) = d.get("/status").unwrap();
    assert!(status.contains("\"app\""), "{status}");
    // SIGHUP with a good file: the new rule replaces the old.
    std::fs::write(&cfg, rule("renamed")).unwrap();
    d.signal("HUP");
    d.wait_for(Duration::from_secs(10), "reloaded", |d| {
        d.get("/status")
            .is_some_and(|(_, s)| s.contains("\"renamed\"") && !s.contains("\"app\""))
    });
    d.signal("TERM");
    let st = d.wait_exit(Duration::from_secs(20));
    assert!(st.success(), "{st:?}\n{}", d.log());
}

#[test]
fn sigterm_during_a_large_copy_leaves_the_target_consistent() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let big = ImageSpec::multi(Format::Oci, &["linux/amd64", "linux/arm64/v8"])
        .layers(4)
        .layer_size(24 * 1024 * 1024)
        .seed(77)
        .build();
    rt.block_on(a.client().push_image("big", "v1", &big));
    let dir = tempfile::tempdir().unwrap();
    for (grace, name) in [("30s", "drained"), ("0s", "cut")] {
        let port = free_port();
        let cfg = write_config(
            dir.path(),
            &format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\n[daemon]\nshutdown_grace = \"{grace}\"\n[[rules]]\nname = \"big\"\nsource = \"{}/big\"\ntarget = \"{}/{name}/big\"\ntags = [\"v1\"]\nschedule = \"@every 1h\"\n",
                a.host(),
                b.host()
            ),
        );
        let mark = b.request_mark();
        let mut d = Daemon::start_logging(&cfg, port, dir.path(), "info");
        // Wait until blobs are moving, then stop.
        d.wait_for(Duration::from_secs(30), "upload started", |_| {
            b.requests_since(mark).iter().any(|r| r.method == "POST")
        });
        d.signal("TERM");
        let st = d.wait_exit(Duration::from_secs(60));
        assert!(st.success(), "{st:?}");
        let repo = format!("{name}/big");
        let tag = rt.block_on(b.client().head_manifest(&repo, "v1"));
        if name == "drained" {
            assert_eq!(
                tag.as_deref(),
                Some(big.digest()),
                "grace let the copy finish"
            );
        }
        // Either way: a tag, if present, points at a complete image.
        if tag.is_some() {
            for d in big.blobs.keys() {
                assert!(
                    rt.block_on(b.client().blob_exists(&repo, d)),
                    "{d} missing under a tag"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_rule_with_a_backup_tag_keeps_the_image_a_moving_tag_left() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    a.client().push_image("app", "latest", &image(20)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "[[rules]]\nname = \"moving\"\nsource = \"{}/app\"\ntarget = \"{}/app\"\ntags = [\"latest\"]\nbackup_tag = \"{{tag}}-prev-{{digest}}\"\n",
            a.host(),
            b.host()
        ),
    );
    sync_json(&cfg, &[]);
    a.client().push_image("app", "latest", &image(21)).await;
    sync_json(&cfg, &[]);
    let backup = format!("latest-prev-{}", &image(20).digest()[7..19]);
    let c = b.client();
    assert_eq!(
        c.head_manifest("app", "latest").await.as_deref(),
        Some(image(21).digest())
    );
    assert_eq!(
        c.head_manifest("app", &backup).await.as_deref(),
        Some(image(20).digest())
    );
}

#[tokio::test]
async fn a_rule_with_several_targets_reads_each_blob_once() {
    let (a, b, c) = (
        TestRegistry::start(),
        TestRegistry::start(),
        TestRegistry::start(),
    );
    let img = ImageSpec::multi(Format::Docker, &["linux/amd64", "linux/arm64/v8"])
        .layer_size(64 * 1024)
        .seed(30)
        .build();
    a.client().push_image("app", "v1", &img).await;
    a.client().push_image("app", "v2", &img).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "[[rules]]\nname = \"fan\"\nsource = \"{a}/app\"\ntarget = [\"{b}/m/{{name}}\", \"{c}/n/{{name}}\", \"{c}/o/{{name}}\"]\ntags = [\"v1\"]\n",
            a = a.host(),
            b = b.host(),
            c = c.host()
        ),
    );
    let mark = a.request_mark();
    let report = sync_json(&cfg, &[]);
    let got = states(&report);
    assert_eq!(got.len(), 3, "{report}");
    assert!(got.iter().all(|(_, s)| s == "copied"), "{report}");
    let blob_gets = a
        .requests_since(mark)
        .iter()
        .filter(|r| r.is("GET", support::RequestKind::is_blob))
        .count();
    assert_eq!(
        blob_gets,
        img.blobs.len(),
        "each blob read once for three targets"
    );
    for (reg, repo) in [(&b, "m/app"), (&c, "n/app"), (&c, "o/app")] {
        assert_eq!(
            reg.client().head_manifest(repo, "v1").await.as_deref(),
            Some(img.digest()),
            "{repo}"
        );
    }
    // Two templates landing on one repository are a configuration error.
    let bad = write_config(
        dir.path(),
        &format!(
            "[[rules]]\nname = \"dup\"\nsource = \"{a}/app\"\ntarget = [\"{b}/m/{{name}}\", \"{b}/m/app\"]\ntags = [\"v1\"]\n",
            a = a.host(),
            b = b.host()
        ),
    );
    let out = sync(&bad, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rules[0].target"));
}

#[tokio::test]
async fn pulls_pause_while_the_registry_rate_limit_is_under_the_reserve() {
    // A source answering as Docker Hub does when its pull budget is nearly spent: every answer
    // carries `ratelimit-remaining`. Once crossdock has seen it under the reserve, it stops
    // pulling from that registry for the rest of the run.
    use axum::http::{HeaderMap, HeaderValue, StatusCode};
    let app = axum::Router::new().fallback(|| async {
        let mut h = HeaderMap::new();
        h.insert("ratelimit-remaining", HeaderValue::from_static("3;w=21600"));
        (StatusCode::NOT_FOUND, h, "")
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let src = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "[daemon]\nmax_concurrent_images = 1\n[registries.\"{src}\"]\nratelimit_reserve = 10\n[[rules]]\nname = \"hub\"\nsource = \"{src}/app\"\ntarget = \"localhost:1/app\"\ntags = [\"v1\", \"v2\", \"v3\"]\n"
        ),
    );
    let out = tokio::task::spawn_blocking(move || sync(&cfg, &[]))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let states: Vec<&str> = report[0]["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["state"].as_str().unwrap())
        .collect();
    // The first pull learns the budget (and fails: nothing is there); the others are not tried.
    assert_eq!(states, ["failed", "skipped", "skipped"], "{report}");
    assert!(
        report.to_string().contains("under the reserve of 10"),
        "{report}"
    );
}
