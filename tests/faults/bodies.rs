//! Bodies that are not what they should be: stalled (cut by the idle timeout, retried, or failing
//! clearly), slow but moving (never cut off), truncated (retried), complete but short, one byte
//! flipped, or of a size the descriptor lies about (refused, nothing corrupt written).

use std::time::{Duration, Instant};

use crate::support::cli::text;
use crate::support::proxy::{Fault, Rule};
use crate::support::{self, TestRegistry};
use crate::{Pair, assert_untagged, failed_with, image, import, matching, ok};

#[tokio::test]
async fn a_stalled_body_is_cut_by_the_idle_timeout_and_retried() {
    let p = Pair::start();
    let img = image(6, 1, 2, 64 * 1024);
    p.a.client().push_image("app", "v1", &img).await;
    let layer = img.images[0].layer_digests[0].clone();
    let path = format!("^/v2/app/blobs/{layer}$");
    let stall = Fault::Stall {
        after: 8 * 1024,
        stall: Duration::from_secs(120),
    };
    let rule = p.pa.add(Rule::new("GET", &path, stall));
    let start = Instant::now();
    ok(&import(&p.src(), &p.dst(), &["--read-timeout", "1"]));
    let took = start.elapsed();
    assert_eq!(rule.fired(), 1);
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(took < Duration::from_secs(30), "{took:?}");
    p.b.client()
        .assert_holds_image("app", Some("v1"), &img)
        .await;
}

#[tokio::test]
async fn a_slow_body_that_keeps_moving_is_not_cut_off() {
    let p = Pair::start();
    let img = image(7, 1, 1, 64 * 1024);
    p.a.client().push_image("app", "v1", &img).await;
    let layer = img.images[0].layer_digests[0].clone();
    let path = format!("^/v2/app/blobs/{layer}$");
    // 16 pieces, 250 ms apart: 4 s in all, never 1 s without a byte.
    let slow = Fault::Slow {
        piece: 4096,
        every: Duration::from_millis(250),
    };
    p.pa.add(Rule::new("GET", &path, slow).always());
    let start = Instant::now();
    ok(&import(&p.src(), &p.dst(), &["--read-timeout", "1"]));
    assert!(
        start.elapsed() >= Duration::from_secs(4),
        "the body was slow"
    );
    assert_eq!(
        matching(&p.pa.requests(), "GET", &path).len(),
        1,
        "read once, never cut off"
    );
    p.b.client()
        .assert_holds_image("app", Some("v1"), &img)
        .await;
}

#[tokio::test]
async fn a_body_that_always_stalls_fails_clearly_and_tags_nothing() {
    let p = Pair::start();
    let img = image(8, 1, 2, 64 * 1024);
    p.a.client().push_image("app", "v1", &img).await;
    let layer = img.images[0].layer_digests[1].clone();
    let path = format!("^/v2/app/blobs/{layer}$");
    let stall = Fault::Stall {
        after: 1000,
        stall: Duration::from_secs(120),
    };
    p.pa.add(Rule::new("GET", &path, stall).always());
    let start = Instant::now();
    let out = import(&p.src(), &p.dst(), &["--read-timeout", "1"]);
    assert!(start.elapsed() < Duration::from_secs(30));
    failed_with(&out, &[&layer]);
    let all = text(&out);
    assert!(
        all.contains("timed out") || all.contains("no progress"),
        "the error says the transfer stalled:\n{all}"
    );
    assert_untagged(&p.b, "app").await;
    assert!(!p.b.client().blob_exists("app", &layer).await);
}

#[tokio::test]
async fn a_truncated_body_is_retried() {
    let p = Pair::start();
    let img = image(9, 2, 1, 64 * 1024);
    p.a.client().push_image("app", "v1", &img).await;
    let layer = img.images[1].layer_digests[0].clone();
    let blob = p.pa.add(Rule::new(
        "GET",
        &format!("^/v2/app/blobs/{layer}$"),
        Fault::Truncate { keep: 30_000 },
    ));
    let manifest = p.pa.add(Rule::new(
        "GET",
        &format!("^/v2/app/manifests/{}$", img.manifests[0].digest),
        Fault::Truncate { keep: 100 },
    ));
    ok(&import(&p.src(), &p.dst(), &[]));
    assert_eq!((blob.fired(), manifest.fired()), (1, 1));
    p.b.client()
        .assert_holds_image("app", Some("v1"), &img)
        .await;
}

#[tokio::test]
async fn a_complete_answer_with_too_few_bytes_is_refused() {
    let p = Pair::start();
    let img = image(10, 1, 2, 64 * 1024);
    p.a.client().push_image("app", "v1", &img).await;
    let layer = img.images[0].layer_digests[0].clone();
    p.pa.add(Rule::new(
        "GET",
        &format!("^/v2/app/blobs/{layer}$"),
        Fault::Shorten { keep: 1000 },
    ));
    let out = import(&p.src(), &p.dst(), &[]);
    failed_with(&out, &[&layer, "1000 bytes", "65536 bytes"]);
    assert_untagged(&p.b, "app").await;
    assert!(!p.b.client().blob_exists("app", &layer).await);
}

#[tokio::test]
async fn one_flipped_byte_is_caught_and_nothing_corrupt_is_written() {
    let p = Pair::start();
    let img = image(11, 2, 2, 64 * 1024);
    p.a.client().push_image("app", "v1", &img).await;
    // In a layer: the upload is refused before the registry sees a complete body.
    let layer = img.images[1].layer_digests[1].clone();
    p.pa.add(Rule::new(
        "GET",
        &format!("^/v2/app/blobs/{layer}$"),
        Fault::FlipByte { at: 40_000 },
    ));
    let out = import(&p.src(), &p.dst(), &[]);
    failed_with(&out, &[&layer, "mismatch"]);
    assert_untagged(&p.b, "app").await;
    assert!(!p.b.client().blob_exists("app", &layer).await);

    // In a manifest: the digest check refuses it before anything is written.
    p.pa.clear_rules();
    let child = img.manifests[0].digest.clone();
    p.pa.add(Rule::new(
        "GET",
        &format!("^/v2/app/manifests/{child}$"),
        Fault::FlipByte { at: 30 },
    ));
    let mark = p.pb.requests().len();
    let out = import(&p.src(), &p.pb.image_ref("other", "v1"), &[]);
    failed_with(&out, &[&child, "digest"]);
    let writes: Vec<_> = p.pb.requests()[mark..]
        .iter()
        .filter(|s| s.method != "HEAD" && s.method != "GET")
        .cloned()
        .collect();
    assert!(
        writes.is_empty(),
        "wrote after a corrupt manifest: {writes:?}"
    );
    assert_untagged(&p.b, "other").await;
}

#[tokio::test]
async fn a_descriptor_whose_size_lies_is_refused() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let layer = support::fixtures::random_bytes(12, 10_000);
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let c = a.client();
    c.push_blob("app", &layer).await;
    c.push_blob("app", &config).await;
    // distribution 2.8 checks that a manifest's blobs exist, not their sizes: it stores both.
    for (tag, declared) in [("smaller", 9_000usize), ("larger", 11_000usize)] {
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": support::fixtures::OCI_MANIFEST,
            "config": {"mediaType": support::fixtures::OCI_CONFIG,
                       "digest": support::sha256_digest(&config), "size": config.len()},
            "layers": [{"mediaType": support::fixtures::OCI_LAYER,
                        "digest": support::sha256_digest(&layer), "size": declared}],
        });
        let m = support::RawManifest::from_json(support::fixtures::OCI_MANIFEST, &manifest);
        c.put_manifest("app", tag, &m).await;
        let out = import(&a.image_ref("app", tag), &b.image_ref("app", tag), &[]);
        failed_with(
            &out,
            &[
                &support::sha256_digest(&layer),
                "10000 bytes",
                &format!("{declared} bytes"),
            ],
        );
    }
    assert_untagged(&b, "app").await;
    assert!(
        !b.client()
            .blob_exists("app", &support::sha256_digest(&layer))
            .await
    );
}
