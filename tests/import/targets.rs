//! Where an import writes: re-tagging and fan-out to several targets, a tag already pointing
//! elsewhere (refused without `--force`, untouched by `--dry-run`, kept reachable by a backup
//! tag), and a failing target that spares the others.

use serde_json::Value;

use crate::support::cli::{crossdock, json, ok};
use crate::support::{Format, ImageSpec, RequestKind, TestRegistry};
use crate::{PLATFORMS, repo_ref};

#[tokio::test]
async fn retags_copies_digests_and_fans_out_to_several_targets() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let image = ImageSpec::multi(Format::Docker, &PLATFORMS[..2])
        .seed(11)
        .build();
    a.client().push_image("app", "1.0", &image).await;
    // Re-tag into two repositories, plus an extra tag on the first.
    ok(&crossdock(&[
        "import",
        &a.image_ref("app", "1.0"),
        &b.image_ref("one/app", "stable"),
        &repo_ref(&b, "two/app"),
        "--tag",
        "extra",
    ]));
    let c = b.client();
    for (repo, tag) in [
        ("one/app", "stable"),
        ("one/app", "extra"),
        ("two/app", "1.0"),
    ] {
        assert_eq!(
            c.head_manifest(repo, tag).await.as_deref(),
            Some(image.digest()),
            "{repo}:{tag}"
        );
    }
    assert!(c.head_manifest("one/app", "1.0").await.is_none());
    // A digest source with a tagless target copies without tagging.
    let by_digest = a.image_ref("app", image.digest());
    let out = json(&crossdock(&[
        "import",
        &by_digest,
        &repo_ref(&b, "three/app"),
        "--json",
    ]));
    assert_eq!(out["targets"][0]["tags"], serde_json::json!([]));
    assert!(c.head_manifest("three/app", image.digest()).await.is_some());
    assert!(c.tags("three/app").await.is_empty());
}

#[tokio::test]
async fn a_moved_tag_needs_force_and_dry_run_writes_nothing() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let old = ImageSpec::multi(Format::Oci, &PLATFORMS[..1])
        .seed(1)
        .build();
    let new = ImageSpec::multi(Format::Oci, &PLATFORMS[..1])
        .seed(2)
        .build();
    a.client().push_image("app", "latest", &new).await;
    b.client().push_image("app", "latest", &old).await;
    let (src, dst) = (a.image_ref("app", "latest"), b.image_ref("app", "latest"));

    let mark = b.request_mark();
    let out = crossdock(&["import", &src, &dst]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("already points at") && err.contains(old.digest()),
        "{err}"
    );
    assert!(
        b.requests_since(mark)
            .iter()
            .all(|r| r.method == "HEAD" || r.method == "GET"),
        "nothing written on conflict"
    );
    assert_eq!(
        b.client().head_manifest("app", "latest").await.as_deref(),
        Some(old.digest())
    );

    let mark = b.request_mark();
    let report = json(&crossdock(&[
        "import",
        &src,
        &dst,
        "--force",
        "--dry-run",
        "--json",
    ]));
    assert_eq!(report["targets"][0]["status"]["state"], "dry_run");
    assert_eq!(report["targets"][0]["blobs_copied"], new.blobs.len());
    let writes: Vec<_> = b
        .requests_since(mark)
        .into_iter()
        .filter(|r| r.method != "HEAD" && r.method != "GET")
        .collect();
    assert!(writes.is_empty(), "dry run wrote: {writes:?}");
    assert_eq!(
        b.client().head_manifest("app", "latest").await.as_deref(),
        Some(old.digest())
    );

    let out = ok(&crossdock(&["import", &src, &dst, "--force"]));
    assert!(out.contains(&format!("was {}", old.digest())), "{out}");
    assert_eq!(
        b.client().head_manifest("app", "latest").await.as_deref(),
        Some(new.digest())
    );
}

#[tokio::test]
async fn three_targets_read_each_blob_once_and_a_failing_target_spares_the_others() {
    let (a, b, c) = (
        TestRegistry::start(),
        TestRegistry::start(),
        TestRegistry::start(),
    );
    let locked = TestRegistry::start_with_auth("u", "p");
    let image = ImageSpec::multi(Format::Oci, &PLATFORMS)
        .layer_size(128 * 1024)
        .seed(51)
        .build();
    a.client().push_image("app", "v1", &image).await;
    let mark = a.request_mark();
    let report = json(&crossdock(&[
        "import",
        &a.image_ref("app", "v1"),
        &b.image_ref("one/app", "v1"),
        &b.image_ref("two/app", "v1"),
        &c.image_ref("app", "v1"),
        "--json",
    ]));
    for t in 0..3 {
        assert_eq!(
            report["targets"][t]["status"]["state"], "copied",
            "{report}"
        );
    }
    b.client().assert_holds_image("one/app", None, &image).await;
    b.client().assert_holds_image("two/app", None, &image).await;
    c.client().assert_holds_image("app", None, &image).await;
    let blob_gets: Vec<_> = a
        .requests_since(mark)
        .into_iter()
        .filter(|r| r.is("GET", RequestKind::is_blob))
        .collect();
    assert_eq!(
        blob_gets.len(),
        image.blobs.len(),
        "each blob read once for three targets: {blob_gets:?}"
    );

    // A target that refuses us fails alone; the others are written and the exit code says so.
    let out = crossdock(&[
        "import",
        &a.image_ref("app", "v1"),
        &locked.image_ref("app", "v1"),
        &c.image_ref("again/app", "v1"),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["targets"][0]["status"]["state"], "failed",
        "{report}"
    );
    assert_eq!(
        report["targets"][1]["status"]["state"], "copied",
        "{report}"
    );
    c.client()
        .assert_holds_image("again/app", None, &image)
        .await;
}

#[tokio::test]
async fn force_with_a_backup_tag_keeps_the_old_image_reachable() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let old = ImageSpec::multi(Format::Docker, &PLATFORMS[..2])
        .seed(61)
        .build();
    let new = ImageSpec::multi(Format::Docker, &PLATFORMS[..2])
        .seed(62)
        .build();
    a.client().push_image("app", "latest", &new).await;
    b.client().push_image("app", "latest", &old).await;
    let report = json(&crossdock(&[
        "import",
        &a.image_ref("app", "latest"),
        &b.image_ref("app", "latest"),
        "--force",
        "--backup-tag",
        "{tag}-was-{digest}",
        "--json",
    ]));
    let backup = format!("latest-was-{}", &old.digest()["sha256:".len()..][..12]);
    assert_eq!(
        report["targets"][0]["backups"][0][0],
        backup.as_str(),
        "{report}"
    );
    let c = b.client();
    assert_eq!(
        c.head_manifest("app", "latest").await.as_deref(),
        Some(new.digest())
    );
    assert_eq!(
        c.head_manifest("app", &backup).await.as_deref(),
        Some(old.digest())
    );
    // A bad template is a usage error before anything is done.
    let out = crossdock(&[
        "import",
        &a.image_ref("app", "latest"),
        &b.image_ref("app", "latest"),
        "--backup-tag",
        "{tag}-{when}",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown placeholder"));
}
