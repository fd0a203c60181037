//! Event-triggered sync (issue 8): a real `docker-registry` configured to notify the daemon,
//! and the endpoint's rules — the token, the envelope, which events count — pinned down.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use crossdock::config::{self, ConfigErrors};
use support::daemon::{Daemon, free_port, metric, notifying_registry, write_config};
use support::{Format, ImageSpec, RequestKind, TestRegistry};

const TOKEN: &str = "notify-6f1d2c9a8b7e4f30a1b2c3d4";
const ENVELOPE_TYPE: &str = "Content-Type: application/vnd.docker.distribution.events.v1+json";

fn image(seed: u64) -> support::BuiltImage {
    ImageSpec::multi(Format::Oci, &["linux/amd64", "linux/arm64/v8"])
        .seed(seed)
        .build()
}

fn envelope(action: &str, repo: &str, tag: Option<&str>) -> String {
    let tag = tag.map(|t| format!(",\"tag\":\"{t}\"")).unwrap_or_default();
    format!(
        r#"{{"events":[{{"id":"e-{repo}","timestamp":"2026-01-01T00:00:00Z","action":"{action}",
        "target":{{"mediaType":"application/vnd.oci.image.index.v1+json","size":1,
        "digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000",
        "repository":"{repo}","url":"http://x/v2/{repo}/manifests/sha256:00"{tag}}},
        "request":{{"id":"r","addr":"127.0.0.1:1","host":"registry.example:5000","method":"PUT",
        "useragent":"test"}},"actor":{{}},"source":{{"addr":"elsewhere:5000","instanceID":"i"}}}}]}}"#
    )
}

fn write_token(dir: &Path) -> String {
    let p = dir.join("notify-token");
    // With a trailing newline, as `echo … > file` writes it.
    std::fs::write(&p, format!("{TOKEN}\n")).unwrap();
    p.display().to_string()
}

#[test]
fn a_push_is_mirrored_at_once_and_repeats_and_strangers_are_harmless() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let port = free_port();
    let a = notifying_registry(port, TOKEN);
    let b = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let token_file = write_token(dir.path());
    // Hourly, not at start: only a notification can make these rules run within the test.
    let cfg = write_config(
        dir.path(),
        &format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
notifications_token_file = "{token_file}"
[daemon]
run_on_start = false
[[rules]]
name = "app"
source = "{a}/team/app"
target = "{b}/mirror/{{repo}}"
schedule = "@every 1h"
[rules.tags]
include = ["^v"]
[[rules]]
name = "unrelated"
source = "{a}/other"
target = "{b}/mirror/{{repo}}"
tags = ["v1"]
schedule = "@every 1h"
"#,
            a = a.host(),
            b = b.host()
        ),
    );
    let d = Daemon::start(&cfg, port, dir.path());
    let bc = b.client();
    let head = |tag: &str| rt.block_on(bc.poll_manifest("mirror/team/app", tag));

    let pushed = Instant::now();
    rt.block_on(a.client().push_image("team/app", "v1", &image(1)));
    // The tag lands before the run ends: wait for the run to be recorded too.
    d.wait_for(Duration::from_secs(15), "the pushed image mirrored", |d| {
        head("v1").as_deref() == Some(image(1).digest())
            && d.status()["rules"]["app"]["running"] == false
    });
    let took = pushed.elapsed();
    assert!(took < Duration::from_secs(15), "took {took:?}");
    let status = d.status();
    assert_eq!(
        status["rules"]["app"]["last_run"]["result"], "ok",
        "{status}"
    );
    assert_eq!(status["rules"]["app"]["last_run"]["images_copied"], 1);
    assert!(
        status["rules"]["unrelated"]["last_run"].is_null(),
        "{status}"
    );
    let m = d.metrics();
    assert!(
        metric(&m, "crossdock_notifications_total{result=\"accepted\"}") >= 1.0,
        "{m}"
    );

    // The same image pushed again (distribution notifies again): one more run, nothing written.
    let mark = b.request_mark();
    let runs = |d: &Daemon| metric(&d.metrics(), "crossdock_rule_runs_total{rule=\"app\"");
    let before = runs(&d);
    rt.block_on(a.client().push_image("team/app", "v1", &image(1)));
    d.wait_for(Duration::from_secs(15), "the repeated push synced", |d| {
        runs(d) > before
    });
    let writes: Vec<_> = b
        .requests_since(mark)
        .into_iter()
        .filter(|r| r.method != "HEAD" && r.method != "GET")
        .collect();
    assert!(writes.is_empty(), "a repeated push wrote {writes:?}");
    assert_eq!(d.status()["rules"]["app"]["last_run"]["result"], "ok");

    // Pushes no rule wants: another repository, a tag the filter leaves out.
    rt.block_on(a.client().push_image("team/stranger", "v1", &image(2)));
    rt.block_on(a.client().push_image("team/app", "latest", &image(3)));
    d.wait_for(Duration::from_secs(15), "the strangers ignored", |d| {
        let log = d.log();
        log.contains("no rule covers this push")
            && log.contains("team/stranger")
            && log.contains("latest")
    });
    assert_eq!(head("latest"), None);
    assert!(
        rt.block_on(b.client().head_manifest("mirror/team/stranger", "v1"))
            .is_none()
    );
    assert!(d.status()["rules"]["unrelated"]["last_run"].is_null());
    assert!(!d.log().contains(TOKEN), "the token is in the daemon log");
}

/// The endpoint refuses a request without the bearer token (none, a wrong one, the token as
/// Basic) and a malformed envelope, takes any Content-Type, answers only POST, and keeps serving.
fn assert_refusals(d: &Daemon, push: &str, auth: &str) {
    let (s, body) = d.post("/notifications", &[ENVELOPE_TYPE], push);
    assert_eq!(s, 401, "{body}");
    let wrong = "Authorization: Bearer notify-0000000000000000000000000";
    let (s, _) = d.post("/notifications", &[ENVELOPE_TYPE, wrong], push);
    assert_eq!(s, 401);
    let (s, _) = d.post(
        "/notifications",
        &[ENVELOPE_TYPE, &format!("Authorization: Basic {TOKEN}")],
        push,
    );
    assert_eq!(s, 401, "only a bearer token");
    let (s, body) = d.post("/notifications", &[ENVELOPE_TYPE, auth], "{\"events\": 3}");
    assert_eq!(s, 400);
    assert!(body.contains("malformed notification envelope"), "{body}");
    let (s, _) = d.post("/notifications", &[ENVELOPE_TYPE, auth], "not json");
    assert_eq!(s, 400);
    // The Content-Type is not insisted on (a hand-made `curl --data` works).
    let (s, body) = d.post(
        "/notifications",
        &["Content-Type: application/x-www-form-urlencoded", auth],
        &envelope("push", "elsewhere", Some("v2")),
    );
    assert_eq!(s, 200, "{body}");
    assert_eq!(d.get("/notifications").map(|(s, _)| s), Some(405));
    assert_eq!(
        d.get("/healthz").map(|(s, _)| s),
        Some(200),
        "still serving"
    );
}

/// Events no rule wants (a pull, a push without a tag, a repository or tag no rule covers, a
/// delete) are answered 200, ignored, and start no run.
fn assert_ignores_what_no_rule_wants(d: &Daemon, auth: &str) {
    for e in [
        envelope("pull", "app", Some("v2")),
        envelope("push", "app", None),
        envelope("push", "elsewhere", Some("v2")),
        envelope("push", "app", Some("v3")),
        envelope("delete", "app", Some("v1")),
    ] {
        let (s, body) = d.post("/notifications", &[ENVELOPE_TYPE, auth], &e);
        assert_eq!(s, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (v["accepted"].as_u64(), v["ignored"].as_u64()),
            (Some(0), Some(1))
        );
    }
    assert!(d.status()["rules"]["app"]["last_run"].is_null());
}

/// The notifications are counted by result, and the log names a refusal without the token.
fn assert_counted_and_no_token_logged(d: &Daemon) {
    let m = d.metrics();
    assert!(
        metric(&m, "crossdock_notifications_total{result=\"rejected\"}") >= 5.0,
        "{m}"
    );
    assert!(
        metric(&m, "crossdock_notifications_total{result=\"ignored\"}") >= 6.0,
        "{m}"
    );
    assert!(
        metric(&m, "crossdock_notifications_total{result=\"accepted\"}") >= 2.0,
        "{m}"
    );
    let log = d.log();
    assert!(log.contains("missing or wrong bearer token"), "{log}");
    assert!(
        !log.contains(TOKEN) && !log.contains("notify-0000"),
        "{log}"
    );
}

#[test]
fn the_endpoint_wants_the_token_and_a_well_formed_envelope() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    rt.block_on(a.client().push_image("app", "v2", &image(7)));
    rt.block_on(a.client().push_image("app", "v1", &image(8)));
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = write_config(
        dir.path(),
        &format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
notifications_token_file = "{}"
[daemon]
run_on_start = false
[[rules]]
name = "app"
source = "{}/app"
target = "{}/app"
tags = ["v1", "v2"]
schedule = "@every 1h"
"#,
            write_token(dir.path()),
            a.host(),
            b.host()
        ),
    );
    let d = Daemon::start(&cfg, port, dir.path());
    let push = envelope("push", "app", Some("v2"));
    let auth = format!("Authorization: Bearer {TOKEN}");

    assert_refusals(&d, &push, &auth);

    assert_ignores_what_no_rule_wants(&d, &auth);

    // The push, delivered twice (a retry): accepted both times, synced, harmless. The host in
    // the event is not the rule's registry name: matching is by repository and tag.
    for _ in 0..2 {
        let (s, body) = d.post("/notifications", &[ENVELOPE_TYPE, &auth], &push);
        assert_eq!(s, 202, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["accepted"], 1);
        assert_eq!(v["rules"], serde_json::json!(["app"]));
    }
    let bc = b.client();
    d.wait_for(Duration::from_secs(15), "mirrored", |_| {
        rt.block_on(bc.head_manifest("app", "v2")).as_deref() == Some(image(7).digest())
    });
    d.wait_for(Duration::from_secs(15), "runs recorded", |d| {
        d.status()["rules"]["app"]["running"] == false
            && d.status()["rules"]["app"]["last_run"]["result"] == "ok"
    });
    let copies = b
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && matches!(r.kind(), RequestKind::Manifest { .. }))
        .count();
    assert_eq!(copies, 3, "the image (index + 2 manifests) written once");
    // Only the pushed image was synced; a whole run would have copied v1 as well.
    assert!(rt.block_on(bc.head_manifest("app", "v1")).is_none());

    assert_counted_and_no_token_logged(&d);
}

#[test]
fn without_a_token_the_endpoint_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = write_config(
        dir.path(),
        &format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[daemon]\nrun_on_start = false\n[[rules]]\nname = \"app\"\nsource = \"localhost:5999/app\"\ntarget = \"localhost:5998/app\"\ntags = [\"v1\"]\n"
        ),
    );
    let d = Daemon::start(&cfg, port, dir.path());
    let (s, body) = d.post(
        "/notifications",
        &[ENVELOPE_TYPE, &format!("Authorization: Bearer {TOKEN}")],
        &envelope("push", "app", Some("v1")),
    );
    assert_eq!(s, 404);
    assert!(body.contains("notifications_token"), "{body}");
}

fn load(text: &str, env: &[(&str, &str)]) -> Result<config::Plan, ConfigErrors> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, text).unwrap();
    config::load_with_env(&p, env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

const RULE: &str = "[[rules]]\nname = \"a\"\nsource = \"localhost:5000/a\"\ntarget = \"localhost:5001/{repo}\"\ntags = [\"v1\"]\n";

#[test]
fn the_token_is_read_like_a_password_and_never_shown() {
    // Inline, from a variable, from the environment as an override (digits stay text).
    let plan = load(
        &format!("[server]\nnotifications_token = \"{TOKEN}\"\n{RULE}"),
        &[],
    )
    .unwrap();
    let token = plan.server.notifications_token.as_ref().unwrap();
    assert_eq!(token.expose(), TOKEN);
    assert!(
        !format!("{plan:?}").contains(TOKEN),
        "Debug shows the token"
    );
    let plan = load(
        &format!("[server]\nnotifications_token_env = \"NOTIFY\"\n{RULE}"),
        &[("NOTIFY", TOKEN)],
    )
    .unwrap();
    assert_eq!(plan.server.notifications_token.unwrap().expose(), TOKEN);
    let plan = load(
        RULE,
        &[(
            "CROSSDOCK_SERVER__NOTIFICATIONS_TOKEN",
            "12345678901234567890",
        )],
    )
    .unwrap();
    assert_eq!(
        plan.server.notifications_token.unwrap().expose(),
        "12345678901234567890"
    );
    assert!(
        load(RULE, &[])
            .unwrap()
            .server
            .notifications_token
            .is_none()
    );

    let errs =
        |text: &str, env: &[(&str, &str)]| -> String { load(text, env).unwrap_err().to_string() };
    let e = errs(
        &format!("[server]\nnotifications_token = \"short-secret\"\n{RULE}"),
        &[],
    );
    assert!(
        e.contains("server.notifications_token: the token is shorter than 16"),
        "{e}"
    );
    assert!(!e.contains("short-secret"), "{e}");
    let e = errs(
        &format!("[server]\nnotifications_token = 123456789012345678\n{RULE}"),
        &[],
    );
    assert!(e.contains("not shown: it is a secret"), "{e}");
    assert!(!e.contains("123456789012345678"), "{e}");
    let e = errs(
        &format!(
            "[server]\nnotifications_token = \"{TOKEN}\"\nnotifications_token_env = \"X\"\n{RULE}"
        ),
        &[("X", TOKEN)],
    );
    assert!(
        e.contains("server.notifications_token_env: give one of notifications_token"),
        "{e}"
    );
    assert!(!e.contains(TOKEN), "{e}");
    let e = errs(
        &format!("[server]\nnotifications_token_env = \"NOPE\"\n{RULE}"),
        &[],
    );
    assert!(e.contains("environment variable NOPE is not set"), "{e}");
    let e = errs(
        &format!("[server]\nnotifications_token_file = \"/nonexistent/token\"\n{RULE}"),
        &[],
    );
    assert!(
        e.contains("server.notifications_token_file: cannot read /nonexistent/token"),
        "{e}"
    );
    let e = errs(
        &format!("[server]\nnotifications_tokn = \"{TOKEN}\"\n{RULE}"),
        &[],
    );
    assert!(e.contains("did you mean `notifications_token`?"), "{e}");
    assert!(!e.contains(TOKEN), "{e}");
    let e = errs(
        &format!("[server]\nnotifications_token = \"has a space in it, long\"\n{RULE}"),
        &[],
    );
    assert!(e.contains("printable ASCII without spaces"), "{e}");
}

#[test]
fn a_push_during_a_run_is_synced_right_after_it() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let big = ImageSpec::single(Format::Oci, "linux/amd64")
        .layers(2)
        .layer_size(8 * 1024 * 1024)
        .seed(40)
        .build();
    rt.block_on(a.client().push_image("app", "big", &big));
    rt.block_on(a.client().push_image("app", "small", &image(41)));
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = write_config(
        dir.path(),
        &format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nnotifications_token = \"{TOKEN}\"\n[daemon]\nrun_on_start = false\n[[rules]]\nname = \"app\"\nsource = \"{}/app\"\ntarget = \"{}/app\"\ntags = [\"big\", \"small\"]\nschedule = \"@every 1h\"\n",
            a.host(),
            b.host()
        ),
    );
    let d = Daemon::start(&cfg, port, dir.path());
    let auth = format!("Authorization: Bearer {TOKEN}");
    let (s, _) = d.post(
        "/notifications",
        &[ENVELOPE_TYPE, &auth],
        &envelope("push", "app", Some("big")),
    );
    assert_eq!(s, 202);
    d.wait_for(Duration::from_secs(10), "the run started", |d| {
        d.status()["rules"]["app"]["running"] == true
    });
    let (s, _) = d.post(
        "/notifications",
        &[ENVELOPE_TYPE, &auth],
        &envelope("push", "app", Some("small")),
    );
    assert_eq!(s, 202, "answered at once, during the run");
    assert_eq!(
        d.status()["rules"]["app"]["running"],
        true,
        "the image is too small to keep the run busy: the test shows nothing"
    );
    let bc = b.client();
    d.wait_for(Duration::from_secs(60), "both pushes synced", |_| {
        rt.block_on(bc.head_manifest("app", "big")).as_deref() == Some(big.digest())
            && rt.block_on(bc.head_manifest("app", "small")).as_deref() == Some(image(41).digest())
    });
    d.wait_for(Duration::from_secs(10), "two runs recorded", |d| {
        metric(
            &d.metrics(),
            "crossdock_rule_runs_total{rule=\"app\",result=\"ok\"}",
        ) == 2.0
    });
}
