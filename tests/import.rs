//! `crossdock import` end to end, between two real registries (issue 3).
//!
//! Every test runs the real binary against `docker-registry` processes and checks the result
//! with an independent client (tests/support/raw.rs) and, where it matters, with skopeo.

mod support;

use serde_json::Value;
use support::cli::{crossdock, json, ok};
use support::{Format, ImageSpec, RequestKind, TestRegistry, skopeo};

/// `HOST/REPO` with neither tag nor digest.
fn repo_ref(reg: &TestRegistry, repo: &str) -> String {
    format!("{}/{repo}", reg.host())
}

const PLATFORMS: [&str; 3] = ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"];

/// Asserts that every manifest and blob of `image` is in `repo` at `reg`, byte for byte.
async fn assert_complete(reg: &TestRegistry, repo: &str, image: &support::BuiltImage) {
    let c = reg.client();
    for m in image.manifests.iter().chain(image.index.iter()) {
        let got = c
            .get_manifest(repo, &m.digest)
            .await
            .unwrap_or_else(|| panic!("manifest {} missing in {repo}", m.digest));
        assert_eq!(got.bytes, m.bytes, "manifest {} bytes differ", m.digest);
    }
    for d in image.blobs.keys() {
        assert!(c.blob_exists(repo, d).await, "blob {d} missing in {repo}");
    }
}

async fn full_import(format: Format) {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let image = ImageSpec::multi(format, &PLATFORMS)
        .layers(3)
        .shared_base_layer(true)
        .seed(7)
        .build();
    a.client().push_image("lib/app", "v1", &image).await;
    let out = crossdock(&[
        "import",
        &a.image_ref("lib/app", "v1"),
        &b.image_ref("mirror/app", "v1"),
        "--json",
    ]);
    let report = json(&out);
    assert_eq!(report["source_digest"], image.digest());
    assert_eq!(report["targets"][0]["digest"], image.digest());
    assert_eq!(report["targets"][0]["status"]["state"], "copied");
    assert_eq!(report["images"], 3);
    // Shared base layer: 3 configs + 1 shared + 3×2 own layers.
    assert_eq!(report["blobs"], 10);
    assert_eq!(report["targets"][0]["blobs_copied"], 10);
    assert_complete(&b, "mirror/app", &image).await;
    let tag = b.client().get_manifest("mirror/app", "v1").await.unwrap();
    assert_eq!(tag.bytes, image.top().bytes);
    // The peer tool reads the same bytes.
    let raw = skopeo::inspect_raw(&b.image_ref("mirror/app", "v1"), None);
    assert_eq!(raw, image.top().bytes);
}

#[tokio::test]
async fn imports_every_platform_of_an_oci_index_byte_for_byte() {
    full_import(Format::Oci).await;
}

#[tokio::test]
async fn imports_every_platform_of_a_docker_manifest_list_byte_for_byte() {
    full_import(Format::Docker).await;
}

#[tokio::test]
async fn second_import_costs_one_head_per_registry() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let image = ImageSpec::multi(Format::Oci, &PLATFORMS).seed(3).build();
    a.client().push_image("app", "v1", &image).await;
    let (src, dst) = (a.image_ref("app", "v1"), b.image_ref("app", "v1"));
    ok(&crossdock(&["import", &src, &dst]));
    let (ma, mb) = (a.request_mark(), b.request_mark());
    let out = ok(&crossdock(&["import", &src, &dst]));
    assert!(out.contains("nothing to do"), "{out}");
    let (ra, rb) = (a.requests_since(ma), b.requests_since(mb));
    assert_eq!(ra.len(), 1, "source requests: {ra:?}");
    assert!(ra[0].is("HEAD", RequestKind::is_manifest), "{ra:?}");
    assert_eq!(rb.len(), 1, "target requests: {rb:?}");
    assert!(rb[0].is("HEAD", RequestKind::is_manifest), "{rb:?}");
}

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
async fn blobs_in_the_same_registry_are_mounted() {
    let a = TestRegistry::start();
    let image = ImageSpec::multi(Format::Oci, &PLATFORMS[..2])
        .seed(5)
        .build();
    a.client().push_image("src/app", "v1", &image).await;
    let mark = a.request_mark();
    let report = json(&crossdock(&[
        "import",
        &a.image_ref("src/app", "v1"),
        &a.image_ref("dst/app", "v1"),
        "--json",
    ]));
    assert_eq!(report["targets"][0]["blobs_mounted"], image.blobs.len());
    assert_eq!(report["targets"][0]["blobs_copied"], 0);
    let reqs = a.requests_since(mark);
    assert!(
        !reqs.iter().any(|r| r.is("GET", RequestKind::is_blob)),
        "no blob read when mounting: {reqs:?}"
    );
    assert_complete(&a, "dst/app", &image).await;
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
async fn platform_filter_writes_a_new_index_and_says_so() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let image = ImageSpec::multi(Format::Oci, &PLATFORMS).seed(9).build();
    a.client().push_image("app", "v1", &image).await;
    let (src, dst) = (a.image_ref("app", "v1"), b.image_ref("app", "v1"));
    let report = json(&crossdock(&[
        "import",
        &src,
        &dst,
        "--platform",
        "linux/amd64,linux/arm/v7",
        "--json",
    ]));
    assert_eq!(report["filtered"], true);
    let new_digest = report["targets"][0]["digest"].as_str().unwrap().to_string();
    assert_ne!(new_digest, image.digest());
    let got = b.client().get_manifest("app", "v1").await.unwrap();
    assert_eq!(got.digest.as_deref(), Some(new_digest.as_str()));
    let index: Value = serde_json::from_slice(&got.bytes).unwrap();
    let platforms: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(platforms, vec!["linux/amd64", "linux/arm"]);
    // The arm64 image was not copied.
    let arm64 = image.manifest_for("linux/arm64/v8");
    assert!(
        b.client()
            .get_manifest("app", &arm64.digest)
            .await
            .is_none()
    );
    // The human summary names the new digest.
    let out = ok(&crossdock(&[
        "import",
        &src,
        &b.image_ref("app", "v2"),
        "--platform",
        "linux/amd64",
    ]));
    assert!(out.contains("platform filter wrote a new index"), "{out}");
    // The filtered index is deterministic: the same filter again is a no-op.
    let (amark, mark) = (a.request_mark(), b.request_mark());
    let out = ok(&crossdock(&[
        "import",
        &src,
        &dst,
        "--platform",
        "linux/amd64,linux/arm/v7",
    ]));
    assert!(out.contains("nothing to do"), "{out}");
    // Cheap: the source index read once, one HEAD at the target.
    let (ra, rb) = (a.requests_since(amark), b.requests_since(mark));
    assert_eq!(ra.len(), 1, "{ra:?}");
    assert!(ra[0].is("GET", RequestKind::is_manifest), "{ra:?}");
    assert_eq!(rb.len(), 1, "{rb:?}");
    assert!(rb[0].is("HEAD", RequestKind::is_manifest), "{rb:?}");
    let writes: Vec<_> = b
        .requests_since(mark)
        .into_iter()
        .filter(|r| r.method == "PUT")
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    // A filter matching nothing is an error.
    let out = crossdock(&[
        "import",
        &src,
        &dst,
        "--platform",
        "windows/amd64",
        "--force",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no platform"));
}

#[tokio::test]
async fn a_tampered_blob_fails_the_import_and_no_tag_is_written() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let image = ImageSpec::multi(Format::Docker, &PLATFORMS[..2])
        .layer_size(64 * 1024)
        .seed(13)
        .build();
    a.client().push_image("app", "v1", &image).await;
    let victim = &image.images[1].layer_digests[1];
    let path = a.blob_data_path(victim);
    let mut data = std::fs::read(&path).unwrap();
    data[1000] ^= 0xff;
    std::fs::write(&path, data).unwrap();

    let out = crossdock(&[
        "import",
        &a.image_ref("app", "v1"),
        &b.image_ref("app", "v1"),
        "--json",
    ]);
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(victim.as_str()),
        "error names the blob: {text}"
    );
    assert!(
        text.contains("mismatch") || text.contains("digest"),
        "{text}"
    );
    assert!(
        b.client().head_manifest("app", "v1").await.is_none(),
        "no tag on a corrupt image"
    );
    assert!(
        !b.client().blob_exists("app", victim).await,
        "corrupt blob not committed"
    );
    assert!(b.client().tags("app").await.is_empty());
}

#[tokio::test]
async fn cosign_signature_tags_come_along() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let image = ImageSpec::multi(Format::Oci, &PLATFORMS[..2])
        .seed(21)
        .build();
    let sig = ImageSpec::single(Format::Oci, "linux/amd64")
        .seed(22)
        .build();
    let c = a.client();
    c.push_image("app", "v1", &image).await;
    let sig_tag = format!("{}.sig", image.digest().replace(':', "-"));
    c.push_image("app", &sig_tag, &sig).await;
    let report = json(&crossdock(&[
        "import",
        &a.image_ref("app", "v1"),
        &b.image_ref("app", "v1"),
        "--json",
    ]));
    assert_eq!(report["targets"][0]["referrers_copied"], 1);
    assert_eq!(
        b.client().head_manifest("app", &sig_tag).await.as_deref(),
        Some(sig.digest())
    );
    // And not with --no-referrers.
    ok(&crossdock(&[
        "import",
        &a.image_ref("app", "v1"),
        &b.image_ref("other", "v1"),
        "--no-referrers",
    ]));
    assert!(b.client().head_manifest("other", &sig_tag).await.is_none());
}

#[tokio::test]
async fn two_imports_at_once_sharing_layers_both_complete() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let image = ImageSpec::multi(Format::Oci, &PLATFORMS)
        .shared_base_layer(true)
        .layer_size(256 * 1024)
        .seed(31)
        .build();
    a.client().push_image("app", "v1", &image).await;
    a.client().push_image("app", "v2", &image).await;
    let (s1, s2) = (a.image_ref("app", "v1"), a.image_ref("app", "v2"));
    let (d1, d2) = (b.image_ref("app", "v1"), b.image_ref("app", "v2"));
    let h1 = std::thread::spawn(move || crossdock(&["import", &s1, &d1]));
    let h2 = std::thread::spawn(move || crossdock(&["import", &s2, &d2]));
    ok(&h1.join().unwrap());
    ok(&h2.join().unwrap());
    assert_complete(&b, "app", &image).await;
    for t in ["v1", "v2"] {
        assert_eq!(
            b.client().head_manifest("app", t).await.as_deref(),
            Some(image.digest())
        );
    }
}

#[tokio::test]
async fn inspect_prints_the_raw_manifest_and_platforms() {
    let a = TestRegistry::start();
    let image = ImageSpec::multi(Format::Docker, &PLATFORMS)
        .seed(41)
        .build();
    a.client().push_image("app", "v1", &image).await;
    let out = crossdock(&["inspect", &a.image_ref("app", "v1")]);
    assert!(out.status.success());
    assert_eq!(
        out.stdout.strip_suffix(b"\n").unwrap_or(&out.stdout),
        image
            .top()
            .bytes
            .as_slice()
            .strip_suffix(b"\n")
            .unwrap_or(&image.top().bytes)
    );
    let table = ok(&crossdock(&[
        "inspect",
        "--platforms",
        &a.image_ref("app", "v1"),
    ]));
    for (p, m) in PLATFORMS.iter().zip(&image.manifests) {
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(p) && l.contains(&m.digest)),
            "{p}: {table}"
        );
    }
    let single = ImageSpec::single(Format::Oci, "linux/arm64/v8")
        .seed(42)
        .build();
    a.client().push_image("one", "v1", &single).await;
    let rows: Value = serde_json::from_str(&ok(&crossdock(&[
        "inspect",
        "--platforms",
        "--json",
        &a.image_ref("one", "v1"),
    ])))
    .unwrap();
    assert_eq!(rows[0]["platform"], "linux/arm64/v8");
}

#[tokio::test]
async fn bad_references_are_usage_errors() {
    let out = crossdock(&["import", "localhost:5000/UPPER:v1", "localhost:5001/x"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("UPPER") && err.contains("lowercase"), "{err}");
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
    assert_complete(&b, "one/app", &image).await;
    assert_complete(&b, "two/app", &image).await;
    assert_complete(&c, "app", &image).await;
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
    assert_complete(&c, "again/app", &image).await;
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

#[tokio::test]
async fn foreign_layers_are_skipped_unless_asked_for() {
    use support::fixtures::{RawManifest, config_json, random_bytes, sha256_digest};
    // distribution 2.8 accepts layer URLs only where configured to.
    let urls = "validation:\n  manifests:\n    urls:\n      allow:\n        - ^https?://\n";
    let (a, b) = (
        TestRegistry::builder().extra_yaml(urls).start(),
        TestRegistry::builder().extra_yaml(urls).start(),
    );
    let layer = random_bytes(71, 4096);
    let foreign = random_bytes(72, 8192);
    let config = serde_json::to_vec(&config_json("windows/amd64", &[&foreign, &layer])).unwrap();
    let manifest = RawManifest::from_json(
        "application/vnd.docker.distribution.manifest.v2+json",
        &serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "digest": sha256_digest(&config), "size": config.len()},
            "layers": [
                {"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                 "digest": sha256_digest(&foreign), "size": foreign.len(),
                 "urls": ["https://mcr.example.com/foreign/layer"]},
                {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                 "digest": sha256_digest(&layer), "size": layer.len()}
            ]
        }),
    );
    let c = a.client();
    c.push_blob("win", &config).await;
    c.push_blob("win", &layer).await;
    // The registry accepts a manifest whose foreign layer it does not hold.
    c.put_manifest("win", "v1", &manifest).await;

    let report = json(&crossdock(&[
        "import",
        &a.image_ref("win", "v1"),
        &b.image_ref("win", "v1"),
        "--json",
    ]));
    assert_eq!(report["skipped_foreign"], 1, "{report}");
    assert_eq!(report["targets"][0]["blobs_copied"], 2);
    let got = b.client().get_manifest("win", "v1").await.unwrap();
    assert_eq!(
        got.bytes, manifest.bytes,
        "manifest unchanged, foreign layer still listed"
    );
    assert!(
        !b.client()
            .blob_exists("win", &sha256_digest(&foreign))
            .await
    );

    // Asked for, and held by the source: copied too.
    c.push_blob("win", &foreign).await;
    let report = json(&crossdock(&[
        "import",
        &a.image_ref("win", "v1"),
        &b.image_ref("win2", "v1"),
        "--include-foreign",
        "--json",
    ]));
    assert_eq!(report["skipped_foreign"], 0, "{report}");
    assert!(
        b.client()
            .blob_exists("win2", &sha256_digest(&foreign))
            .await
    );
}
