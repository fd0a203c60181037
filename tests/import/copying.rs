//! What an import copies: every platform of an OCI index or a Docker manifest list byte for
//! byte (skopeo reads the same bytes), a platform filter's new index, cosign signature tags, and
//! foreign layers only when asked for.

use serde_json::Value;

use crate::PLATFORMS;
use crate::support::cli::{crossdock, json, ok};
use crate::support::{self, Format, ImageSpec, RequestKind, TestRegistry, skopeo};

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
    b.client()
        .assert_holds_image("mirror/app", None, &image)
        .await;
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
