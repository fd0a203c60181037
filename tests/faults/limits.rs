//! Request limits never deadlock a copy: within one registry (and a clear error where the limit
//! is too low for any copy), in opposite directions between two registries at one request each,
//! and a fan-out to three repositories of one registry.

use std::process::Output;
use std::time::Duration;

use crate::support::TestRegistry;
use crate::support::cli::{crossdock, text};
use crate::support::proxy::{Fault, FaultProxy, Rule};
use crate::{assert_untagged, failed_with, image, import, matching, ok};

/// `crossdock sync` of `app:v1` to `to/app:v1` within the registry behind `proxy`, whose
/// request limit is `max_concurrency`.
fn sync_within(proxy: &FaultProxy, to: &str, max_concurrency: usize) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("crossdock.toml");
    std::fs::write(
        &config,
        format!(
            r#"[registries."{host}"]
max_concurrency = {max_concurrency}

[[rules]]
name = "within"
source = "{host}/app"
target = "{host}/{to}/app"
tags = ["v1"]
timeout = "30s"
"#,
            host = proxy.host()
        ),
    )
    .unwrap();
    crossdock(&["sync", "--config", config.to_str().unwrap(), "--json"])
}

#[tokio::test]
async fn copies_within_one_registry_never_deadlock_on_its_request_limit() {
    let a = TestRegistry::start();
    let proxy = FaultProxy::start(&a);
    let img = image(17, 3, 2, 32 * 1024);
    a.client().push_image("app", "v1", &img).await;
    // The registry will not mount: it opens a plain upload instead (as registries without
    // cross-repository mounts do), so every blob is streamed out of and back into it.
    proxy.add(
        Rule::new(
            "POST",
            r"^/v2/copy/app/blobs/uploads/\?mount=",
            Fault::StripQuery,
        )
        .always(),
    );

    let out = sync_within(&proxy, "copy", 2);
    let report = ok(&out);
    assert_eq!(report[0]["result"], "ok", "{report}");
    a.client()
        .assert_holds_image("copy/app", Some("v1"), &img)
        .await;
    assert!(proxy.peak_in_flight() <= 2, "{}", proxy.peak_in_flight());
    let streamed = matching(&proxy.requests(), "GET", "^/v2/app/blobs/sha256:").len();
    assert_eq!(
        streamed,
        img.blobs.len(),
        "every blob was streamed, none mounted"
    );

    // With a limit of one request, a blob cannot be streamed within the registry at all (a
    // download and an upload must be open at once): a clear error, not a hang.
    proxy.clear_rules();
    proxy.add(
        Rule::new(
            "POST",
            r"^/v2/one/app/blobs/uploads/\?mount=",
            Fault::Status(405),
        )
        .always(),
    );
    let out = sync_within(&proxy, "one", 1);
    failed_with(&out, &["max_concurrency"]);
    assert!(!text(&out).contains("time limit"), "{}", text(&out));
    assert_untagged(&a, "one/app").await;
}

#[tokio::test]
async fn fan_out_to_three_repositories_of_one_registry_completes() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let img = image(18, 3, 3, 256 * 1024);
    a.client().push_image("app", "v1", &img).await;
    let out = import(
        &a.image_ref("app", "v1"),
        &b.image_ref("x/app", "v1"),
        &[&b.image_ref("y/app", "v1"), &b.image_ref("z/app", "v1")],
    );
    ok(&out);
    for repo in ["x/app", "y/app", "z/app"] {
        b.client().assert_holds_image(repo, Some("v1"), &img).await;
    }
}

#[tokio::test]
async fn copies_in_opposite_directions_never_deadlock_on_request_limits() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let (pa, pb) = (FaultProxy::start(&a), FaultProxy::start(&b));
    // Three blobs each: both rules' transfers fit in the engine's six at once.
    let (one, two) = (image(19, 1, 2, 64 * 1024), image(20, 1, 2, 64 * 1024));
    a.client().push_image("one", "v1", &one).await;
    b.client().push_image("two", "v1", &two).await;
    // Each rule streams out of one registry into the other while the other rule does the
    // reverse, with one request allowed at each. The last read of each rule before its blobs
    // (the source's tag list, for attached signatures) waits for the other's, so both rules
    // start on their blobs at the same moment. Taking permits one request at a time, each rule
    // then opened a download at its source and waited forever to start its upload at the other
    // registry, whose only request the other rule's download held.
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(2));
    for (proxy, repo) in [(&pa, "one"), (&pb, "two")] {
        let barrier = barrier.clone();
        proxy.add(Rule::new(
            "GET",
            &format!("^/v2/{repo}/tags/list"),
            Fault::before(move || {
                let barrier = barrier.clone();
                async move {
                    let _ = tokio::time::timeout(Duration::from_secs(5), barrier.wait()).await;
                }
            }),
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("crossdock.toml");
    std::fs::write(
        &config,
        format!(
            r#"[registries."{a}"]
max_concurrency = 1
[registries."{b}"]
max_concurrency = 1

[[rules]]
name = "a-to-b"
source = "{a}/one"
target = "{b}/one"
tags = ["v1"]
timeout = "20s"

[[rules]]
name = "b-to-a"
source = "{b}/two"
target = "{a}/two"
tags = ["v1"]
timeout = "20s"
"#,
            a = pa.host(),
            b = pb.host()
        ),
    )
    .unwrap();
    let report = ok(&crossdock(&[
        "sync",
        "--config",
        config.to_str().unwrap(),
        "--json",
    ]));
    for run in report.as_array().unwrap() {
        assert_eq!(run["result"], "ok", "{report}");
    }
    b.client().assert_holds_image("one", Some("v1"), &one).await;
    a.client().assert_holds_image("two", Some("v1"), &two).await;
    assert_eq!((pa.peak_in_flight(), pb.peak_in_flight()), (1, 1));
}
