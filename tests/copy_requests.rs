//! The requests a copy costs at each registry (issue 5): what the benchmark's request counts rest
//! on, pinned against real `docker-registry` processes so that they cannot regress silently.
//!
//! - into a repository without tags, each missing blob costs a POST (a mount from the repository
//!   itself, which doubles as the existence check) and a PUT — no HEAD per blob;
//! - that same mount makes an interrupted copy resume without moving its blobs again;
//! - into a repository with tags, each blob is HEADed first, as before (a registry that does not
//!   mount would otherwise get blobs it has sent again);
//! - into several repositories of one registry, each blob is read once and uploaded once, into
//!   the first repository; the others mount it from there (one POST each, no bytes);
//! - a `sync` of many tags lists the source's tags once, and asks a registry without the
//!   Referrers API once per repository, not once per image.

mod support;

use std::io::Write as _;

use support::cli::{crossdock, json as report};
use support::{Format, ImageSpec, LoggedRequest, RequestKind, TestRegistry};

fn count(reqs: &[LoggedRequest], method: &str, kind: impl Fn(&RequestKind) -> bool) -> usize {
    reqs.iter().filter(|r| r.is(method, &kind)).count()
}

fn image(seed: u64) -> support::BuiltImage {
    ImageSpec::multi(Format::Oci, &["linux/amd64", "linux/arm64/v8"])
        .seed(seed)
        .build()
}

#[tokio::test]
async fn a_new_repository_gets_each_blob_with_one_post_and_one_put() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let img = image(1);
    a.client().push_image("app", "v1", &img).await;
    let mark = b.request_mark();
    let r = report(&crossdock(&[
        "import",
        &a.image_ref("app", "v1"),
        &b.image_ref("fresh/app", "v1"),
        "--json",
    ]));
    assert_eq!(r["targets"][0]["blobs_copied"], img.blobs.len());
    let reqs = b.requests_since(mark);
    let blobs = img.blobs.len();
    assert_eq!(count(&reqs, "HEAD", RequestKind::is_blob), 0, "{reqs:?}");
    assert_eq!(
        count(&reqs, "POST", RequestKind::is_upload),
        blobs,
        "{reqs:?}"
    );
    assert_eq!(
        count(&reqs, "PUT", RequestKind::is_upload),
        blobs,
        "{reqs:?}"
    );
    // Plus the tag HEAD, the one tag list that found the repository new, and the manifests.
    let manifests = img.manifests.len() + 1;
    assert_eq!(reqs.len(), 2 + 2 * blobs + manifests, "{reqs:?}");
    let c = b.client();
    assert_eq!(
        c.head_manifest("fresh/app", "v1").await.as_deref(),
        Some(img.digest())
    );
    for d in img.blobs.keys() {
        assert!(c.blob_exists("fresh/app", d).await, "blob {d} missing");
    }
}

#[tokio::test]
async fn fan_out_into_repositories_of_one_registry_uploads_once_and_mounts_the_rest() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let img = image(5);
    a.client().push_image("app", "v1", &img).await;
    let (mark_a, mark_b) = (a.request_mark(), b.request_mark());
    let r = report(&crossdock(&[
        "import",
        &a.image_ref("app", "v1"),
        &b.image_ref("x/app", "v1"),
        &b.image_ref("y/app", "v1"),
        &b.image_ref("z/app", "v1"),
        "--json",
    ]));
    let blobs = img.blobs.len();
    let counted: Vec<(u64, u64)> = r["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let n = |k: &str| t[k].as_u64().unwrap();
            (n("blobs_copied"), n("blobs_mounted"))
        })
        .collect();
    let (all, none) = (blobs as u64, 0);
    assert_eq!(counted, [(all, none), (none, all), (none, all)], "{r}");
    let ra = a.requests_since(mark_a);
    assert_eq!(count(&ra, "GET", RequestKind::is_blob), blobs, "{ra:?}");
    let rb = b.requests_since(mark_b);
    // The bytes once (x's own mount opens the upload, then the PUT); y and z mount from x.
    assert_eq!(count(&rb, "PUT", RequestKind::is_upload), blobs, "{rb:?}");
    assert_eq!(
        count(&rb, "POST", RequestKind::is_upload),
        3 * blobs,
        "{rb:?}"
    );
    assert_eq!(count(&rb, "HEAD", RequestKind::is_blob), 0, "{rb:?}");
    // Per repository: the tag HEAD, the tag list that found it new, and the manifests.
    let manifests = img.manifests.len() + 1;
    assert_eq!(rb.len(), 3 * (2 + manifests) + 4 * blobs, "{rb:?}");
    let c = b.client();
    for repo in ["x/app", "y/app", "z/app"] {
        assert_eq!(
            c.head_manifest(repo, "v1").await.as_deref(),
            Some(img.digest()),
            "{repo}"
        );
        for d in img.blobs.keys() {
            assert!(c.blob_exists(repo, d).await, "blob {d} missing in {repo}");
        }
    }
}

#[tokio::test]
async fn an_interrupted_copy_resumes_without_moving_its_blobs_again() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let img = image(2);
    a.client().push_image("app", "v1", &img).await;
    // What a copy cut off before its manifests leaves: every blob, no tag.
    let bc = b.client();
    for bytes in img.blobs.values() {
        bc.push_blob("mirror/app", bytes).await;
    }
    let amark = a.request_mark();
    let r = report(&crossdock(&[
        "import",
        &a.image_ref("app", "v1"),
        &b.image_ref("mirror/app", "v1"),
        "--json",
    ]));
    assert_eq!(r["targets"][0]["blobs_skipped"], img.blobs.len(), "{r}");
    assert_eq!(r["targets"][0]["blobs_copied"], 0, "{r}");
    let ra = a.requests_since(amark);
    assert_eq!(count(&ra, "GET", RequestKind::is_blob), 0, "{ra:?}");
    assert_eq!(
        bc.head_manifest("mirror/app", "v1").await.as_deref(),
        Some(img.digest())
    );
}

#[tokio::test]
async fn a_repository_with_tags_has_its_blobs_checked_first() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let (old, new) = (
        ImageSpec::multi(Format::Oci, &["linux/amd64", "linux/arm64/v8"])
            .shared_base_layer(true)
            .seed(3)
            .build(),
        ImageSpec::multi(Format::Oci, &["linux/amd64", "linux/arm64/v8"])
            .shared_base_layer(true)
            .seed(4)
            .build(),
    );
    a.client().push_image("app", "v2", &new).await;
    b.client().push_image("app", "v1", &old).await;
    let mark = b.request_mark();
    report(&crossdock(&[
        "import",
        &a.image_ref("app", "v2"),
        &b.image_ref("app", "v2"),
        "--json",
    ]));
    let reqs = b.requests_since(mark);
    assert_eq!(
        count(&reqs, "HEAD", RequestKind::is_blob),
        new.blobs.len(),
        "{reqs:?}"
    );
    assert!(
        !reqs
            .iter()
            .any(|r| r.query.as_deref().unwrap_or("").contains("mount=")),
        "no mounts into a repository with tags: {reqs:?}"
    );
}

#[tokio::test]
async fn a_sync_lists_the_source_tags_once_and_asks_for_referrers_once() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let c = a.client();
    for i in 0..4u64 {
        c.push_image("app", &format!("t{i}"), &image(10 + i)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::File::create(&cfg)
        .unwrap()
        .write_all(
            format!(
                r#"
[daemon]
max_concurrent_images = 1
[[rules]]
name = "all"
source = "{a}/app"
target = "{b}/mirror/{{name}}"
[rules.tags]
all = true
"#,
                a = a.host(),
                b = b.host()
            )
            .as_bytes(),
        )
        .unwrap();
    let mark = a.request_mark();
    let out = crossdock(&["sync", "--config", cfg.to_str().unwrap(), "--json"]);
    let runs = report(&out);
    let copied = runs[0]["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["state"] == "copied")
        .count();
    assert_eq!(copied, 4, "{runs}");
    let ra = a.requests_since(mark);
    let tag_lists = ra
        .iter()
        .filter(|r| matches!(r.kind(), RequestKind::TagList { .. }))
        .count();
    assert_eq!(
        tag_lists, 1,
        "one tag list for the rule and the signatures: {ra:?}"
    );
    let referrers = ra.iter().filter(|r| r.path.contains("/referrers/")).count();
    assert_eq!(
        referrers, 1,
        "distribution has no Referrers API; asked once: {ra:?}"
    );
}
