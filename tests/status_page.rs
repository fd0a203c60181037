//! The daemon's status page (`GET /`, issue 14) as a person sees it: a real daemon mirroring
//! between real registries, the page loaded by headless Chromium (Debian's `chromium`), and the
//! rendered document read back — rule names, a success, a failure with its error, and a tag
//! that a pruning rule deleted.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::daemon::{Daemon, free_port, write_config};
use support::{Format, ImageSpec, TestRegistry};

/// Headless Chromium's rendering of `url` (`--dump-dom`: the DOM after parsing, as a browser
/// builds it). A missing browser fails the test: `.ci/run` installs it.
fn chromium_dom(url: &str, profile: &Path) -> String {
    let browser = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok())
        .expect("chromium is not installed (Debian: apt-get install chromium; .ci/run does)");
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", url])
        .output()
        .expect("running chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn chromium_renders_each_rule_with_its_last_result() {
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    let image = ImageSpec::multi(Format::Oci, &["linux/amd64", "linux/arm64"]).build();
    src.client().push_image("web/app", "1.0", &image).await;
    // A tag the source does not have (any more): the pruning rule deletes it.
    let withdrawn = ImageSpec::single(Format::Oci, "linux/amd64")
        .seed(7)
        .build();
    dst.client()
        .push_image("mirror/pruned", "1.1", &withdrawn)
        .await;
    // A registry that is gone: its rule fails, and the page must say why.
    let dead = free_port();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(
        dir.path(),
        &format!(
            r#"[server]
listen = "127.0.0.1:{port}"

[[rules]]
name = "app-mirror"
source = "{src}/web/app"
tags = ["1.0"]
target = "{dst}/mirror/app"
schedule = "@every 1h"

[[rules]]
name = "gone-upstream"
source = "127.0.0.1:{dead}/web/app"
tags = ["1.0"]
target = "{dst}/mirror/gone"
schedule = "@every 1h"

[[rules]]
name = "pruning"
source = "{src}/web/app"
tags = {{ include = ["^1"] }}
target = "{dst}/mirror/pruned"
schedule = "@every 1h"
prune = true
"#,
            src = src.host(),
            dst = dst.host(),
        ),
    );
    let daemon = Daemon::start(&config, port, dir.path());
    daemon.wait_for(Duration::from_secs(60), "the rules to run", |d| {
        let s = d.status();
        ["app-mirror", "gone-upstream", "pruning"]
            .iter()
            .all(|r| s["rules"][r]["last_run"].is_object())
    });

    let dom = chromium_dom(
        &format!("http://127.0.0.1:{port}/"),
        &dir.path().join("chromium"),
    );
    assert!(dom.contains("<title>crossdock status</title>"), "{dom}");
    // Each rule is a row, its name in the first cell.
    assert!(dom.contains(r#"<td class="rule">app-mirror</td>"#), "{dom}");
    assert!(
        dom.contains(r#"<td class="rule">gone-upstream</td>"#),
        "{dom}"
    );
    assert_rows(&dom, dead, &dst.host());
    screenshot_if_asked(port, dir.path());
}

/// The README's picture of the page comes from here:
/// `CROSSDOCK_STATUS_SCREENSHOT=docs/status-page.png cargo test --test status_page`.
fn screenshot_if_asked(port: u16, dir: &Path) {
    if let Ok(path) = std::env::var("CROSSDOCK_STATUS_SCREENSHOT") {
        let status = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", dir.join("shot").display()))
            .args(["--window-size=1200,520", &format!("--screenshot={path}")])
            .arg(format!("http://127.0.0.1:{port}/"))
            .status()
            .unwrap();
        assert!(status.success());
    }
}

/// Each rule's row says what its last run did: copied, failed (naming the registry), pruned.
fn assert_rows(dom: &str, dead: u16, dst: &str) {
    let row = |name: &str| {
        let start = dom
            .find(&format!(r#"<td class="rule">{name}</td>"#))
            .unwrap();
        let end = dom[start..].find("</tr>").unwrap() + start;
        dom[start..end].to_string()
    };
    let ok = row("app-mirror");
    assert!(ok.contains(r#"<span class="ok">ok</span>"#), "{ok}");
    assert!(ok.contains("1 copied"), "{ok}");
    let failed = row("gone-upstream");
    assert!(
        failed.contains(r#"<span class="failed">failed</span>"#),
        "{failed}"
    );
    assert!(
        failed.contains(&format!("127.0.0.1:{dead}")),
        "the failed rule's error should name the registry: {failed}"
    );
    // The schedule and the next run are shown.
    assert!(failed.contains("<code>@every 1h</code>"), "{failed}");
    assert!(failed.contains(">in "), "no next run shown: {failed}");
    // The pruned tag, counted with the run and named with its state.
    let pruning = row("pruning");
    assert!(
        pruning.contains("1 copied, 0 failed, 1 pruned,"),
        "{pruning}"
    );
    assert!(
        pruning.contains(&format!(
            r#"<li class="pruned"><code>{dst}/mirror/pruned:1.1</code> pruned</li>"#
        )),
        "{pruning}"
    );
}
