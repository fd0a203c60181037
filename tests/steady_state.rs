//! A mirror that changed nothing costs listings, not a request per tag (issue 18), against real
//! `docker-registry` processes, requests counted from their access logs:
//! - a keep rule's no-op over many tags costs the source's tag list and the target's; so do the
//!   tags an overwrite rule declares `immutable_tags`; a bad `immutable_tags` regex is refused
//!   naming the rule and the key;
//! - a tag deleted at the target is copied again by the next run of a keep rule;
//! - the daemon's later runs ask the source only; a tag changed at the target behind its back
//!   is repaired by the next full check (`full_check`), and after a restart.

mod support;

use std::time::Duration;

use support::cli::text;
use support::daemon::{Daemon, free_port, sync, sync_json, write_config};
use support::proxy::{Fault, FaultProxy, Rule as ProxyRule};
use support::{BuiltImage, Format, ImageSpec, LoggedRequest, RequestKind, TestRegistry};

fn image(seed: u64) -> BuiltImage {
    ImageSpec::single(Format::Oci, "linux/amd64")
        .seed(seed)
        .build()
}

/// Pushes `img` to `reg`'s `repo` under every tag of `tags` (its blobs once).
fn seed(
    rt: &tokio::runtime::Runtime,
    reg: &TestRegistry,
    repo: &str,
    img: &BuiltImage,
    tags: &[String],
) {
    let c = reg.client();
    rt.block_on(async {
        c.push_image(repo, &tags[0], img).await;
        for t in &tags[1..] {
            c.put_manifest(repo, t, img.top()).await;
        }
    });
}

fn tags(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

fn count(reqs: &[LoggedRequest], method: &str, kind: impl Fn(&RequestKind) -> bool) -> usize {
    reqs.iter().filter(|r| r.is(method, &kind)).count()
}

/// The run's counts (one rule).
fn counts(report: &serde_json::Value) -> serde_json::Value {
    report[0]["counts"].clone()
}

/// A rule over every tag of `src/app` into `dst/mirror/app`, with `extra` keys.
fn rule_config(src: &TestRegistry, dst: &TestRegistry, extra: &str) -> String {
    format!(
        "[[rules]]\nname = \"steady\"\nsource = \"{}/app\"\ntarget = \"{}/mirror/app\"\n{extra}\n[rules.tags]\nall = true\n",
        src.host(),
        dst.host()
    )
}

const MANY: usize = 200;

#[test]
fn a_keep_rule_no_op_over_many_tags_costs_the_two_listings() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    seed(&rt, &a, "app", &image(1), &tags("v", MANY));
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &rule_config(&a, &b, "on_conflict = \"keep\""));
    let first = sync_json(&cfg, &[]);
    assert_eq!(counts(&first)["copied"], MANY, "{first}");

    let (ma, mb) = (a.request_mark(), b.request_mark());
    let again = sync_json(&cfg, &[]);
    assert_eq!(counts(&again)["present"], MANY, "{again}");
    let (ra, rb) = (a.requests_since(ma), b.requests_since(mb));
    assert!(ra.len() + rb.len() <= 4, "source {ra:?}\ntarget {rb:?}");
    assert_eq!(count(&ra, "GET", RequestKind::is_tag_list), 1, "{ra:?}");
    assert_eq!(count(&rb, "GET", RequestKind::is_tag_list), 1, "{rb:?}");
    assert!(
        !ra.iter().chain(&rb).any(|r| r.kind().is_manifest()),
        "{ra:?}\n{rb:?}"
    );
}

#[test]
fn immutable_tags_of_an_overwrite_rule_cost_the_listing_and_moving_tags_their_heads() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let img = image(2);
    let mut all = tags("1.0.", MANY);
    all.push("latest".into());
    seed(&rt, &a, "app", &img, &all);
    let dir = tempfile::tempdir().unwrap();
    let extra = "immutable_tags = '^[0-9]+\\.[0-9]+\\.[0-9]+$'";
    let cfg = write_config(dir.path(), &rule_config(&a, &b, extra));
    let first = sync_json(&cfg, &[]);
    assert_eq!(counts(&first)["copied"], MANY + 1, "{first}");

    let (ma, mb) = (a.request_mark(), b.request_mark());
    let again = sync_json(&cfg, &[]);
    assert_eq!(counts(&again)["present"], MANY, "{again}");
    assert_eq!(counts(&again)["up_to_date"], 1, "{again}");
    let (ra, rb) = (a.requests_since(ma), b.requests_since(mb));
    // Each side: its tag list, and the HEAD of the one moving tag.
    for reqs in [&ra, &rb] {
        assert_eq!(count(reqs, "GET", RequestKind::is_tag_list), 1, "{reqs:?}");
        assert_eq!(count(reqs, "HEAD", RequestKind::is_manifest), 1, "{reqs:?}");
        assert_eq!(reqs.len(), 2, "{reqs:?}");
    }

    // The moving tag still moves.
    let newer = image(3);
    rt.block_on(a.client().push_image("app", "latest", &newer));
    let moved = sync_json(&cfg, &[]);
    assert_eq!(counts(&moved)["copied"], 1, "{moved}");
    assert_eq!(
        rt.block_on(b.client().head_manifest("mirror/app", "latest"))
            .as_deref(),
        Some(newer.digest())
    );
}

#[test]
fn a_tag_deleted_at_the_target_is_copied_again_by_the_next_run_of_a_keep_rule() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let img = image(4);
    seed(&rt, &a, "app", &img, &tags("v", 20));
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &rule_config(&a, &b, "on_conflict = \"keep\""));
    sync_json(&cfg, &[]);
    // Behind the tool's back: the tag is gone from the target's storage (distribution 2.8 has
    // no API deleting one tag of several on a manifest).
    let tag_dir = b
        .storage_dir()
        .join("docker/registry/v2/repositories/mirror/app/_manifests/tags/v7");
    std::fs::remove_dir_all(&tag_dir).unwrap();
    let head = |t: &str| rt.block_on(b.client().head_manifest("mirror/app", t));
    assert_eq!(head("v7"), None);

    let again = sync_json(&cfg, &[]);
    assert_eq!(counts(&again)["copied"], 1, "{again}");
    assert_eq!(counts(&again)["present"], 19, "{again}");
    assert_eq!(head("v7").as_deref(), Some(img.digest()));
}

#[test]
fn a_target_that_cannot_be_listed_is_checked_tag_by_tag() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let img = image(5);
    seed(&rt, &a, "app", &img, &tags("v", 5));
    // The target behind a proxy that refuses its tag list (a registry whose listing is denied
    // to the token or broken): neither "all there" nor "none there" may be concluded from it.
    let pb = FaultProxy::start(&b);
    let denied =
        pb.add(ProxyRule::new("GET", "^/v2/mirror/app/tags/list", Fault::Status(403)).always());
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "[[rules]]\nname = \"steady\"\nsource = \"{}/app\"\ntarget = \"{}/mirror/app\"\non_conflict = \"keep\"\n[rules.tags]\nall = true\n",
            a.host(),
            pb.host()
        ),
    );
    sync_json(&cfg, &[]);
    let tag_dir = b
        .storage_dir()
        .join("docker/registry/v2/repositories/mirror/app/_manifests/tags/v4");
    std::fs::remove_dir_all(&tag_dir).unwrap();
    let again = sync_json(&cfg, &[]);
    assert!(denied.fired() >= 2, "the listing was not refused");
    assert_eq!(counts(&again)["copied"], 1, "{again}");
    assert_eq!(counts(&again)["up_to_date"], 4, "{again}");
    assert_eq!(
        rt.block_on(b.client().head_manifest("mirror/app", "v4"))
            .as_deref(),
        Some(img.digest())
    );
}

#[test]
fn a_bad_immutable_tags_regex_is_refused_naming_the_rule_and_the_key() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &rule_config(
            &a,
            &b,
            "immutable_tags = \"v[0-9\"\nfull_check = \"@every 0s\"",
        ),
    );
    let out = sync(&cfg, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("rules[0].immutable_tags"), "{t}");
    assert!(
        t.contains("rule \"steady\": invalid regex \"v[0-9\""),
        "{t}"
    );
    assert!(t.contains("rules[0].full_check"), "{t}");
}

/// The daemon's `/status` for rule `steady`: when its last run started, and whether one runs.
fn last_started(d: &Daemon) -> Option<String> {
    let st = d.status();
    let rule = &st["rules"]["steady"];
    if rule["running"] == true {
        return None;
    }
    rule["last_run"]["started"].as_str().map(str::to_string)
}

/// Waits for the daemon to finish a run it had not started when called; the requests each
/// registry got from the end of the previous run to the end of this one. The marks count only
/// when the daemon was idle, with the same last run, both before and after they were taken: a
/// run starting between the status read and the marks would otherwise be counted in part.
fn next_run(d: &Daemon, regs: [&TestRegistry; 2]) -> [Vec<LoggedRequest>; 2] {
    let mut before = None;
    let mut marks = None;
    d.wait_for(Duration::from_secs(60), "an idle daemon", |d| {
        before = last_started(d);
        if before.is_none() {
            return false;
        }
        let taken = regs.map(|r| r.request_mark());
        let idle = last_started(d) == before;
        marks = Some(taken);
        idle
    });
    let marks = marks.expect("marks taken while idle");
    d.wait_for(Duration::from_secs(60), "the next run", |d| {
        last_started(d).is_some_and(|s| Some(&s) != before.as_ref())
    });
    let [ma, mb] = marks;
    [regs[0].requests_since(ma), regs[1].requests_since(mb)]
}

fn daemon_config(
    port: u16,
    a: &TestRegistry,
    b: &TestRegistry,
    full_check: &str,
    n: usize,
) -> String {
    let list: Vec<String> = tags("t", n).iter().map(|t| format!("{t:?}")).collect();
    format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n[[rules]]\nname = \"steady\"\nsource = \"{}/app\"\ntarget = \"{}/mirror/app\"\nschedule = \"@every 2s\"\nfull_check = \"{full_check}\"\ntags = [{}]\n",
        a.host(),
        b.host(),
        list.join(", ")
    )
}

#[test]
fn the_daemon_asks_the_source_only_and_repairs_the_target_at_the_full_check_and_after_a_restart() {
    const N: usize = 30;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let (img, other) = (image(6), image(7));
    seed(&rt, &a, "app", &img, &tags("t", N));
    // Polled while the daemon writes: distribution answers 500 for a tag being written.
    let head = |t: &str| rt.block_on(b.client().poll_manifest("mirror/app", t));
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = write_config(dir.path(), &daemon_config(port, &a, &b, "@every 1h", N));
    let mut d = Daemon::start_logging(&cfg, port, dir.path(), "info");
    d.wait_for(Duration::from_secs(60), "the first copy", |_| {
        (0..N).all(|i| head(&format!("t{i}")).as_deref() == Some(img.digest()))
    });

    // Later runs: a HEAD per tag at the source, nothing at the target.
    let [ra, rb] = next_run(&d, [&a, &b]);
    assert_eq!(count(&ra, "HEAD", RequestKind::is_manifest), N, "{ra:?}");
    assert_eq!(ra.len(), N, "{ra:?}");
    assert!(rb.is_empty(), "{rb:?}");

    // Changed behind the daemon's back: the memory is trusted until the full check is due.
    rt.block_on(b.client().push_image("mirror/app", "t0", &other));
    let [_, rb] = next_run(&d, [&a, &b]);
    assert!(rb.is_empty(), "{rb:?}");
    assert_eq!(head("t0").as_deref(), Some(other.digest()));

    // A full check due (a reload keeps the memory; the shorter full_check makes it due).
    std::fs::write(&cfg, daemon_config(port, &a, &b, "@every 1s", N)).unwrap();
    d.signal("HUP");
    d.wait_for(
        Duration::from_secs(60),
        "t0 repaired by the full check",
        |_| head("t0").as_deref() == Some(img.digest()),
    );

    // After a restart nothing is remembered: the first run asks both sides and repairs.
    std::fs::write(&cfg, daemon_config(port, &a, &b, "@every 1h", N)).unwrap();
    d.signal("TERM");
    assert!(d.wait_exit(Duration::from_secs(30)).success());
    rt.block_on(b.client().push_image("mirror/app", "t1", &other));
    let d = Daemon::start_logging(&cfg, port, dir.path(), "info");
    d.wait_for(
        Duration::from_secs(60),
        "t1 repaired after the restart",
        |_| head("t1").as_deref() == Some(img.digest()),
    );
    let [ra, rb] = next_run(&d, [&a, &b]);
    assert_eq!(ra.len(), N, "{ra:?}");
    assert!(rb.is_empty(), "{rb:?}");
    assert!((0..N).all(|i| head(&format!("t{i}")).as_deref() == Some(img.digest())));
}
