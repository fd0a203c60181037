//! The daemon's rule runs over time, against real registries (issues 12 and 13): a rule added
//! by a reload runs at once; a failed run is retried with backoff before its next scheduled
//! time, and says so in `/status` and the metrics.

mod support;

use std::time::Duration;

use support::daemon::{Daemon, free_port, metric, write_config};
use support::{BuiltImage, Format, ImageSpec, TestRegistry};

fn image(seed: u64) -> BuiltImage {
    ImageSpec::single(Format::Oci, "linux/amd64")
        .seed(seed)
        .build()
}

/// A rule copying `src/app:v1` to `dst/NAME/app`, on an hourly schedule.
fn rule(name: &str, src: &TestRegistry, dst: &TestRegistry) -> String {
    format!(
        "[[rules]]\nname = \"{name}\"\nsource = \"{}/app\"\ntarget = \"{}/{name}/app\"\ntags = [\"v1\"]\nschedule = \"@every 1h\"\n",
        src.host(),
        dst.host()
    )
}

#[test]
fn a_rule_added_by_a_reload_runs_at_once_unless_run_on_start_is_off() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let img = image(5);
    rt.block_on(a.client().push_image("app", "v1", &img));
    let head = |repo: &str| rt.block_on(b.client().head_manifest(repo, "v1"));
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = format!("[server]\nlisten = \"127.0.0.1:{port}\"\n");
    let cfg = write_config(dir.path(), &format!("{server}{}", rule("first", &a, &b)));
    let d = Daemon::start(&cfg, port, dir.path());
    d.wait_for(Duration::from_secs(30), "first run", |d| {
        d.status()["rules"]["first"]["last_run"]["result"] == "ok"
    });
    let first_started = d.status()["rules"]["first"]["last_run"]["started"].clone();

    // A new rule, on an hourly schedule: it runs now, not in an hour.
    std::fs::write(
        &cfg,
        format!("{server}{}{}", rule("first", &a, &b), rule("added", &a, &b)),
    )
    .unwrap();
    d.signal("HUP");
    d.wait_for(Duration::from_secs(30), "the added rule copied", |_| {
        head("added/app").as_deref() == Some(img.digest())
    });
    d.wait_for(
        Duration::from_secs(10),
        "the added rule's run recorded",
        |d| d.status()["rules"]["added"]["last_run"]["result"] == "ok",
    );
    assert_eq!(
        d.status()["rules"]["first"]["last_run"]["started"],
        first_started,
        "a rule the reload kept waits for its schedule"
    );

    // With run_on_start = false, a new rule waits for its schedule, as at start.
    std::fs::write(
        &cfg,
        format!(
            "{server}[daemon]\nrun_on_start = false\n{}{}{}",
            rule("first", &a, &b),
            rule("added", &a, &b),
            rule("quiet", &a, &b)
        ),
    )
    .unwrap();
    d.signal("HUP");
    d.wait_for(Duration::from_secs(10), "reloaded", |d| {
        d.status()["rules"]["quiet"].is_object()
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        d.status()["rules"]["quiet"]["last_run"].is_null(),
        "{}",
        d.status()
    );
    assert_eq!(head("quiet/app"), None);
}

#[test]
fn a_failed_run_is_retried_with_backoff_before_the_next_schedule() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let img = image(9);
    rt.block_on(a.client().push_image("app", "v1", &img));
    a.stop();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // A tag filter, so that the run must list the source's tags — and that listing fails.
    let cfg = write_config(
        dir.path(),
        &format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[defaults]\nretry_backoff = \"1s\"\n\
             [[rules]]\nname = \"app\"\nsource = \"{}/app\"\ntarget = \"{}/mirror/app\"\n\
             tags = {{ include = [\"^v\"] }}\nschedule = \"@every 1h\"\n",
            a.host(),
            b.host()
        ),
    );
    let d = Daemon::start(&cfg, port, dir.path());
    d.wait_for(Duration::from_secs(60), "two failed runs", |d| {
        d.status()["rules"]["app"]["consecutive_failures"]
            .as_u64()
            .is_some_and(|n| n >= 2)
    });
    let status = d.status();
    let app = &status["rules"]["app"];
    assert_eq!(app["last_run"]["result"], "failed", "{status}");
    let errors = app["last_run"]["errors"].to_string();
    assert!(errors.contains("listing tags of"), "{status}");
    assert!(app["next_retry"].is_string(), "{status}");
    assert!(
        metric(
            &d.metrics(),
            "crossdock_rule_consecutive_failures{rule=\"app\"}"
        ) >= 2.0
    );
    // The summary says what failed, never "0 failed".
    let log = d.log();
    let line = log
        .lines()
        .find(|l| l.contains("rule app: failed"))
        .unwrap_or_else(|| panic!("no summary line:\n{log}"));
    assert!(line.contains("listing tags of"), "{line}");
    assert!(!line.contains("0 failed"), "{line}");

    // The registry comes back: a retry copies the image, long before the hourly schedule.
    a.restart();
    d.wait_for(Duration::from_secs(60), "the retry copied", |_| {
        rt.block_on(b.client().head_manifest("mirror/app", "v1"))
            .as_deref()
            == Some(img.digest())
    });
    d.wait_for(Duration::from_secs(10), "the good run recorded", |d| {
        d.status()["rules"]["app"]["consecutive_failures"] == 0
    });
    let status = d.status();
    assert_eq!(
        status["rules"]["app"]["last_run"]["result"], "ok",
        "{status}"
    );
    assert!(status["rules"]["app"]["next_retry"].is_null(), "{status}");
    assert_eq!(
        metric(
            &d.metrics(),
            "crossdock_rule_consecutive_failures{rule=\"app\"}"
        ),
        0.0
    );
}

/// `crossdock sync` (text) with `extra` arguments: its exit success and standard output.
fn sync_text(config: &std::path::Path, extra: &[&str]) -> (bool, String) {
    let mut args = vec!["sync", "--config", config.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out =
        support::cli::run(support::cli::command(&args), None, Duration::from_secs(240)).output;
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn sync_says_what_it_did_per_tag() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let (one, two, other) = (image(21), image(22), image(23));
    rt.block_on(a.client().push_image("app", "v1", &one));
    rt.block_on(a.client().push_image("app", "v2", &two));
    // At the target already: v2 as it is at the source, v1 at another image.
    rt.block_on(b.client().push_image("kept/app", "v2", &two));
    rt.block_on(b.client().push_image("kept/app", "v1", &other));
    let down = TestRegistry::start();
    let down_host = down.host();
    drop(down);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "[[rules]]\nname = \"copy\"\nsource = \"{a}/app\"\ntarget = \"{b}/copy/app\"\n\
             tags = [\"v1\", \"v2\", \"nope\"]\n\
             [[rules]]\nname = \"keep\"\nsource = \"{a}/app\"\ntarget = \"{b}/kept/app\"\n\
             tags = [\"v1\", \"v2\"]\non_conflict = \"keep\"\n\
             [[rules]]\nname = \"down\"\nsource = \"{down_host}/app\"\ntarget = \"{b}/down/app\"\n\
             tags = {{ all = true }}\n",
            a = a.host(),
            b = b.host()
        ),
    );

    // A dry run says what it would copy, and copies nothing.
    let (ok, dry) = sync_text(&cfg, &["--rule", "copy", "--dry-run"]);
    assert!(!ok, "a missing tag fails the run:\n{dry}");
    assert!(dry.contains("2 would copy"), "{dry}");
    assert!(!dry.contains("copied"), "{dry}");
    let app = format!("{}/app → {}/copy/app: 3 tags", a.host(), b.host());
    assert!(dry.contains(&app), "{dry}");
    assert!(dry.contains("    would copy  v1, v2\n"), "{dry}");
    assert!(
        dry.contains("    failed      nope: ") && dry.contains("MANIFEST_UNKNOWN"),
        "the failure and its reason:\n{dry}"
    );
    assert_eq!(
        rt.block_on(b.client().head_manifest("copy/app", "v1")),
        None
    );

    let (_, out) = sync_text(&cfg, &[]);
    assert!(
        out.contains("rule copy: failed")
            && out.contains("2 copied, 0 up to date, 0 kept, 1 failed"),
        "{out}"
    );
    assert!(out.contains("    copied      v1, v2\n"), "{out}");
    // The keep rule's tags are immutable and listed at the target: left as they are, whichever
    // image they hold, without a HEAD (issue 18).
    assert!(out.contains("    present     v1, v2\n"), "{out}");
    // A source that cannot be listed is named, with what went wrong; never "0 failed".
    let down_line = out
        .lines()
        .find(|l| l.starts_with("rule down: failed"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        down_line.contains(&format!("listing tags of {down_host}/app")),
        "{down_line}"
    );
    assert!(!down_line.contains("0 failed"), "{down_line}");
    assert_eq!(
        out.matches("Connection refused").count(),
        1,
        "the cause once:\n{out}"
    );
}
