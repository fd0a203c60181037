//! Requests that fail and are tried again: resets mid-download and mid-upload, 500/502/503 on
//! every kind of request, 429 waited out as `Retry-After` says, answers lost after the registry
//! committed a PUT, a 413 answered with chunks; and an upload that never succeeds ending clearly
//! with nothing tagged.

use std::time::Duration;

use crate::support::proxy::{Fault, RetryAfter, Rule};
use crate::{Pair, assert_untagged, failed_with, hex, image, import, matching, ok, seed_target};

#[tokio::test]
async fn a_reset_in_the_middle_of_a_blob_download_is_retried() {
    let p = Pair::start();
    let img = image(1, 2, 2, 64 * 1024);
    p.a.client().push_image("app", "v1", &img).await;
    let layer = img.images[0].layer_digests[1].clone();
    let path = format!("^/v2/app/blobs/{layer}$");
    let rule = p.pa.add(Rule::new(
        "GET",
        &path,
        Fault::ResetResponse { after: 10_000 },
    ));
    ok(&import(&p.src(), &p.dst(), &[]));
    assert_eq!(rule.fired(), 1);
    assert_eq!(
        matching(&p.pa.requests(), "GET", &path).len(),
        2,
        "one retry"
    );
    p.b.client()
        .assert_holds_image("app", Some("v1"), &img)
        .await;
}

#[tokio::test]
async fn a_reset_in_the_middle_of_an_upload_is_retried() {
    let p = Pair::start();
    let img = image(2, 2, 2, 64 * 1024);
    p.a.client().push_image("app", "v1", &img).await;
    let layer = img.images[1].layer_digests[0].clone();
    let upload = format!("^/v2/app/blobs/uploads/.*{}", hex(&layer));
    let rule = p.pb.add(Rule::new(
        "PUT",
        &upload,
        Fault::ResetRequest { after: 20_000 },
    ));
    ok(&import(&p.src(), &p.dst(), &[]));
    assert_eq!(rule.fired(), 1);
    assert_eq!(matching(&p.pb.requests(), "PUT", &upload).len(), 2);
    p.b.client()
        .assert_holds_image("app", Some("v1"), &img)
        .await;
}

#[tokio::test]
async fn server_errors_on_every_kind_of_request_are_retried() {
    let p = Pair::start();
    let img = image(3, 2, 1, 8 * 1024);
    p.a.client().push_image("app", "v1", &img).await;
    seed_target(&p.b).await;
    let source_rules = [
        ("HEAD", "^/v2/app/manifests/v1$", 500),
        ("GET", "^/v2/app/manifests/sha256:", 502),
        ("GET", "^/v2/app/blobs/sha256:", 503),
    ];
    let target_rules = [
        ("HEAD", "^/v2/app/manifests/v1$", 503),
        ("HEAD", "^/v2/app/blobs/sha256:", 500),
        ("POST", "^/v2/app/blobs/uploads/$", 502),
        ("PUT", "^/v2/app/blobs/uploads/.+digest=", 503),
        ("PUT", "^/v2/app/manifests/sha256:", 500),
        ("PUT", "^/v2/app/manifests/v1$", 502),
    ];
    let mut stats = Vec::new();
    for (proxy, rules) in [(&p.pa, &source_rules[..]), (&p.pb, &target_rules[..])] {
        for (method, path, status) in rules {
            let s = proxy.add(Rule::new(method, path, Fault::Status(*status)));
            stats.push((*method, *path, s));
        }
    }
    let report = ok(&import(&p.src(), &p.dst(), &[]));
    assert_eq!(report["targets"][0]["status"]["state"], "copied");
    for (method, path, s) in &stats {
        assert_eq!(s.fired(), 1, "{method} {path} never got its error");
    }
    p.b.client()
        .assert_holds_image("app", Some("v1"), &img)
        .await;

    // Into a repository without tags, blobs are checked with a mount request (POST ?mount=)
    // instead of a HEAD: that fails once too.
    let mount = p.pb.add(Rule::new(
        "POST",
        r"^/v2/fresh/blobs/uploads/\?mount=",
        Fault::Status(503),
    ));
    ok(&import(&p.src(), &p.pb.image_ref("fresh", "v1"), &[]));
    assert_eq!(mount.fired(), 1);
    p.b.client()
        .assert_holds_image("fresh", Some("v1"), &img)
        .await;
}

#[tokio::test]
async fn an_upload_that_always_fails_ends_clearly_and_tags_nothing() {
    let p = Pair::start();
    let img = image(4, 1, 2, 8 * 1024);
    p.a.client().push_image("app", "v1", &img).await;
    let layer = img.images[0].layer_digests[1].clone();
    let upload = format!("^/v2/app/blobs/uploads/.*{}", hex(&layer));
    p.pb.add(Rule::new("PUT", &upload, Fault::Status(503)).always());
    let out = import(&p.src(), &p.dst(), &[]);
    failed_with(&out, &[&layer, "503"]);
    // The engine tried the blob a bounded number of times.
    let tries = matching(&p.pb.requests(), "PUT", &upload).len();
    assert!((2..=5).contains(&tries), "{tries} attempts");
    assert_untagged(&p.b, "app").await;
    assert!(!p.b.client().blob_exists("app", &layer).await);
}

#[tokio::test]
async fn rate_limits_are_waited_out_as_retry_after_says() {
    let p = Pair::start();
    let img = image(5, 1, 1, 4 * 1024);
    p.a.client().push_image("app", "v1", &img).await;
    seed_target(&p.b).await;
    let manifest = "^/v2/app/manifests/sha256:";
    let blob_head = "^/v2/app/blobs/sha256:";
    p.pa.add(Rule::new(
        "GET",
        manifest,
        Fault::TooManyRequests(RetryAfter::Seconds(1)),
    ));
    p.pb.add(Rule::new(
        "HEAD",
        blob_head,
        Fault::TooManyRequests(RetryAfter::DateIn(Duration::from_secs(2))),
    ));
    ok(&import(&p.src(), &p.dst(), &[]));
    p.b.client()
        .assert_holds_image("app", Some("v1"), &img)
        .await;
    // Each limited request was sent again only after the wait the registry asked for.
    for (proxy, method, pattern) in [(&p.pa, "GET", manifest), (&p.pb, "HEAD", blob_head)] {
        let seen = proxy.requests();
        let hits = matching(&seen, method, pattern);
        let limited = hits
            .iter()
            .position(|s| s.status == Some(429))
            .expect("a 429 was served");
        let again = hits[limited + 1..]
            .iter()
            .find(|s| s.path == hits[limited].path)
            .expect("the request was retried");
        let waited = again.at - hits[limited].at;
        assert!(
            waited >= Duration::from_millis(900),
            "{method} {pattern} retried after {waited:?}"
        );
    }
}

#[tokio::test]
async fn answers_lost_after_the_registry_committed_a_put_are_recovered() {
    let p = Pair::start();
    let img = image(13, 2, 1, 16 * 1024);
    p.a.client().push_image("app", "v1", &img).await;
    let layer = img.images[0].layer_digests[0].clone();
    let rules = [
        ("PUT", format!("^/v2/app/blobs/uploads/.*{}", hex(&layer))),
        (
            "PUT",
            format!("^/v2/app/manifests/{}$", img.manifests[1].digest),
        ),
        ("PUT", "^/v2/app/manifests/v1$".to_string()),
    ];
    let stats: Vec<_> = rules
        .iter()
        .map(|(m, path)| p.pb.add(Rule::new(m, path, Fault::LoseResponse)))
        .collect();
    ok(&import(&p.src(), &p.dst(), &[]));
    for ((_, path), s) in rules.iter().zip(&stats) {
        assert_eq!(s.fired(), 1, "{path}");
    }
    p.b.client()
        .assert_holds_image("app", Some("v1"), &img)
        .await;
}

#[tokio::test]
async fn a_registry_refusing_a_large_body_gets_chunks_instead() {
    // A proxy in front of a registry that refuses request bodies as too large (413), as nginx
    // does above its `client_max_body_size`: the transport switches to chunked uploads, and the
    // copy completes with the same digests.
    let p = Pair::start();
    let img = image(31, 1, 2, 256 * 1024);
    p.a.client().push_image("app", "v1", &img).await;
    let rule = p.pb.add(Rule::new(
        "PUT",
        r"^/v2/app/blobs/uploads/.*digest=",
        Fault::Status(413),
    ));
    ok(&import(&p.src(), &p.dst(), &[]));
    assert_eq!(rule.fired(), 1);
    let seen = p.pb.requests();
    let patches = matching(&seen, "PATCH", r"^/v2/app/blobs/uploads/");
    assert!(!patches.is_empty(), "chunks were sent after the 413");
    p.b.client()
        .assert_holds_image("app", Some("v1"), &img)
        .await;
}
