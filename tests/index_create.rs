//! `crossdock index create TARGET SOURCE…` end to end (issue 8): composing a multi-platform
//! index from single-platform images, checked with skopeo and `crossdock inspect --platforms`.

mod support;

use std::path::Path;
use std::process::Output;

use serde_json::{Value, json};
use support::cli::{crossdock, ok};
use support::{BuiltImage, Format, ImageSpec, TestRegistry, sha256_digest, skopeo};

fn failed(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "crossdock should have failed:\nstdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A single-platform image of `format` for `platform`.
fn single(format: Format, platform: &str, seed: u64) -> BuiltImage {
    ImageSpec::single(format, platform).seed(seed).build()
}

/// `skopeo inspect --raw` of a registry image, parsed, and its digest.
fn skopeo_raw(image: &str) -> (Value, String) {
    let bytes = skopeo::inspect_raw(image, None);
    (
        serde_json::from_slice(&bytes).expect("JSON"),
        sha256_digest(&bytes),
    )
}

/// `(platform, digest)` rows of `crossdock inspect --platforms --json`.
fn platforms(reference: &str) -> Vec<(String, String)> {
    let rows: Value = serde_json::from_str(&ok(&crossdock(&[
        "inspect",
        "--platforms",
        "--json",
        reference,
    ])))
    .expect("JSON rows");
    rows.as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["platform"].as_str().unwrap().to_string(),
                r["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The index entries a composed index must have for `children`, in order.
fn expected_entries(children: &[(&BuiltImage, Value)]) -> Value {
    Value::Array(
        children
            .iter()
            .map(|(img, platform)| {
                let m = img.top();
                json!({
                    "mediaType": m.media_type,
                    "digest": m.digest,
                    "size": m.bytes.len(),
                    "platform": platform,
                })
            })
            .collect(),
    )
}

async fn assert_image_in(reg: &TestRegistry, repo: &str, image: &BuiltImage) {
    let c = reg.client();
    let m = c
        .get_manifest(repo, image.digest())
        .await
        .unwrap_or_else(|| panic!("manifest {} missing in {repo}", image.digest()));
    assert_eq!(m.bytes, image.top().bytes);
    for d in image.blobs.keys() {
        assert!(c.blob_exists(repo, d).await, "blob {d} missing in {repo}");
    }
}

#[tokio::test]
async fn composes_a_docker_manifest_list_from_two_images_in_place() {
    let a = TestRegistry::start();
    let amd = single(Format::Docker, "linux/amd64", 21);
    let arm = single(Format::Docker, "linux/arm64/v8", 22);
    a.client().push_image("app", "amd64", &amd).await;
    a.client().push_image("app", "arm64", &arm).await;
    let out = ok(&crossdock(&[
        "index",
        "create",
        &a.image_ref("app", "latest"),
        &a.image_ref("app", "amd64"),
        &a.image_ref("app", "arm64"),
    ]));
    let (raw, digest) = skopeo_raw(&a.image_ref("app", "latest"));
    assert!(out.contains(&digest), "the digest is printed: {out}");
    assert!(out.contains("Docker manifest list"), "{out}");
    assert_eq!(raw["schemaVersion"], 2);
    assert_eq!(
        raw["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    assert_eq!(
        raw["manifests"],
        expected_entries(&[
            (&amd, json!({"os": "linux", "architecture": "amd64"})),
            (
                &arm,
                json!({"os": "linux", "architecture": "arm64", "variant": "v8"})
            ),
        ])
    );
    assert!(raw.get("annotations").is_none());
    assert_eq!(
        platforms(&a.image_ref("app", "latest")),
        vec![
            ("linux/amd64".to_string(), amd.digest().to_string()),
            ("linux/arm64/v8".to_string(), arm.digest().to_string()),
        ]
    );
    // Again, unchanged: nothing to write, same digest (-q prints only the digest).
    let mark = a.request_mark();
    let again = ok(&crossdock(&[
        "index",
        "create",
        "-q",
        &a.image_ref("app", "latest"),
        &a.image_ref("app", "amd64"),
        &a.image_ref("app", "arm64"),
    ]));
    assert_eq!(again.trim(), digest);
    assert!(
        a.requests_since(mark)
            .iter()
            .all(|r| r.method == "GET" || r.method == "HEAD"),
        "a second run writes nothing"
    );
}

#[tokio::test]
async fn composes_an_annotated_oci_index_from_three_registries_and_a_layout() {
    let (a, b, target) = (
        TestRegistry::start(),
        TestRegistry::start(),
        TestRegistry::start(),
    );
    let amd = single(Format::Oci, "linux/amd64", 31);
    let arm = single(Format::Oci, "linux/arm/v7", 32);
    let ppc = single(Format::Oci, "linux/ppc64le", 33);
    a.client().push_image("build/amd64", "1.2", &amd).await;
    b.client().push_image("build/arm", "1.2", &arm).await;
    // The third comes from a layout (written by skopeo from a scratch registry).
    let scratch = TestRegistry::start();
    scratch.client().push_image("ppc", "1.2", &ppc).await;
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("ppc");
    let layout_ref = format!("oci:{}:1.2", layout.display());
    skopeo::run(
        "copy to oci:",
        &[
            "copy",
            "--preserve-digests",
            "--src-tls-verify=false",
            &format!("docker://{}", scratch.image_ref("ppc", "1.2")),
            &layout_ref,
        ],
    );
    drop(scratch);
    let out = ok(&crossdock(&[
        "index",
        "create",
        &target.image_ref("release/app", "1.2"),
        &a.image_ref("build/amd64", "1.2"),
        &b.image_ref("build/arm", "1.2"),
        &layout_ref,
        "--annotation",
        "org.opencontainers.image.version=1.2",
        "--annotation",
        "org.opencontainers.image.source=https://example.com/app",
        "--json",
    ]));
    let report: Value = serde_json::from_str(&out).unwrap();
    let (raw, digest) = skopeo_raw(&target.image_ref("release/app", "1.2"));
    assert_eq!(report["digest"], digest);
    assert_eq!(
        report["media_type"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(report["mixed"], false);
    let copied: Vec<&Value> = report["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["copied"])
        .collect();
    assert_eq!(copied, vec![&json!(true); 3], "{report}");
    assert_eq!(raw["mediaType"], "application/vnd.oci.image.index.v1+json");
    assert_eq!(
        raw["annotations"],
        json!({
            "org.opencontainers.image.source": "https://example.com/app",
            "org.opencontainers.image.version": "1.2",
        })
    );
    assert_eq!(
        raw["manifests"],
        expected_entries(&[
            (&amd, json!({"os": "linux", "architecture": "amd64"})),
            (
                &arm,
                json!({"os": "linux", "architecture": "arm", "variant": "v7"})
            ),
            (&ppc, json!({"os": "linux", "architecture": "ppc64le"})),
        ])
    );
    // Every child was copied into the target repository first, byte for byte, untagged.
    for img in [&amd, &arm, &ppc] {
        assert_image_in(&target, "release/app", img).await;
    }
    assert_eq!(target.client().tags("release/app").await, vec!["1.2"]);
    assert_eq!(platforms(&target.image_ref("release/app", "1.2")).len(), 3);
    // The peer tool copies the composed index whole.
    let other = TestRegistry::start();
    skopeo::run(
        "copy the composed index",
        &[
            "copy",
            "--all",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            &format!("docker://{}", target.image_ref("release/app", "1.2")),
            &format!("docker://{}", other.image_ref("app", "1.2")),
        ],
    );
    assert_eq!(
        other.client().head_manifest("app", "1.2").await.as_deref(),
        Some(digest.as_str())
    );
}

#[tokio::test]
async fn composes_into_a_layout_skopeo_reads() {
    let a = TestRegistry::start();
    let amd = single(Format::Oci, "linux/amd64", 41);
    let arm = single(Format::Oci, "linux/arm64", 42);
    a.client().push_image("app", "amd64", &amd).await;
    a.client().push_image("app", "arm64", &arm).await;
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("multi");
    let target = format!("oci:{}:2.0", layout.display());
    let digest = ok(&crossdock(&[
        "index",
        "create",
        "-q",
        &target,
        &a.image_ref("app", "amd64"),
        &a.image_ref("app", "arm64"),
    ]));
    let raw = skopeo::run("inspect oci:", &["inspect", "--raw", &target]).stdout;
    assert_eq!(sha256_digest(&raw), digest.trim());
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    // Only the tagged index is listed; its children are reachable through it.
    let listed = index["manifests"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{index}");
    assert_eq!(listed[0]["digest"], digest.trim());
    assert_eq!(
        platforms(&target),
        vec![
            ("linux/amd64".to_string(), amd.digest().to_string()),
            ("linux/arm64".to_string(), arm.digest().to_string()),
        ]
    );
    let b = TestRegistry::start();
    skopeo::run(
        "copy oci: index to registry",
        &[
            "copy",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
            &target,
            &format!("docker://{}", b.image_ref("app", "2.0")),
        ],
    );
    assert_eq!(
        b.client().head_manifest("app", "2.0").await.as_deref(),
        Some(digest.trim())
    );
    assert_image_in(&b, "app", &amd).await;
    assert!(layout_has_no_temp_files(&layout));
}

fn layout_has_no_temp_files(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().all(|e| {
        !e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".crossdock-")
    })
}

#[tokio::test]
async fn docker_children_take_annotations_only_in_an_oci_index() {
    let a = TestRegistry::start();
    let amd = single(Format::Docker, "linux/amd64", 51);
    let arm = single(Format::Docker, "linux/arm64", 52);
    a.client().push_image("app", "amd64", &amd).await;
    a.client().push_image("app", "arm64", &arm).await;
    let args = |extra: &[&str]| {
        let mut v = vec![
            "index".to_string(),
            "create".into(),
            a.image_ref("app", "latest"),
            a.image_ref("app", "amd64"),
            a.image_ref("app", "arm64"),
            "--annotation".into(),
            "k=v".into(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let refused = crossdock(&args(&[]).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(failed(&refused).contains("--oci"), "{}", failed(&refused));
    assert!(a.client().head_manifest("app", "latest").await.is_none());
    ok(&crossdock(
        &args(&["--oci"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    ));
    let (raw, _) = skopeo_raw(&a.image_ref("app", "latest"));
    assert_eq!(raw["mediaType"], "application/vnd.oci.image.index.v1+json");
    assert_eq!(raw["annotations"]["k"], "v");
    assert_eq!(
        raw["manifests"][0]["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
}

#[tokio::test]
async fn mixed_docker_and_oci_children_make_an_oci_index_and_say_so() {
    let a = TestRegistry::start();
    let amd = single(Format::Docker, "linux/amd64", 61);
    let arm = single(Format::Oci, "linux/arm64", 62);
    a.client().push_image("app", "amd64", &amd).await;
    a.client().push_image("app", "arm64", &arm).await;
    let out = crossdock(&[
        "index",
        "create",
        &a.image_ref("app", "latest"),
        &a.image_ref("app", "amd64"),
        &a.image_ref("app", "arm64"),
    ]);
    ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("mix Docker and OCI"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (raw, _) = skopeo_raw(&a.image_ref("app", "latest"));
    assert_eq!(raw["mediaType"], "application/vnd.oci.image.index.v1+json");
    assert_eq!(
        raw["manifests"],
        expected_entries(&[
            (&amd, json!({"os": "linux", "architecture": "amd64"})),
            (&arm, json!({"os": "linux", "architecture": "arm64"})),
        ])
    );
}

#[tokio::test]
async fn duplicate_platforms_and_index_sources_are_refused_before_writing() {
    let (a, target) = (TestRegistry::start(), TestRegistry::start());
    let one = single(Format::Oci, "linux/arm64", 71);
    let two = single(Format::Oci, "linux/arm64/v8", 72);
    let multi = ImageSpec::multi(Format::Oci, &["linux/amd64", "linux/s390x"])
        .seed(73)
        .build();
    a.client().push_image("app", "one", &one).await;
    a.client().push_image("app", "two", &two).await;
    a.client().push_image("app", "multi", &multi).await;
    let dest = target.image_ref("app", "latest");

    let err = failed(&crossdock(&[
        "index",
        "create",
        &dest,
        &a.image_ref("app", "one"),
        &a.image_ref("app", "two"),
    ]));
    assert!(err.contains("both linux/arm64"), "{err}");
    assert!(err.contains("app:one") && err.contains("app:two"), "{err}");

    let err = failed(&crossdock(&[
        "index",
        "create",
        &dest,
        &a.image_ref("app", "one"),
        &a.image_ref("app", "multi"),
    ]));
    assert!(
        err.contains("multi-platform OCI index (2 entries)"),
        "{err}"
    );
    assert!(err.contains("inspect --platforms"), "{err}");

    let err = failed(&crossdock(&[
        "index",
        "create",
        &dest,
        &a.image_ref("app", "missing"),
    ]));
    assert!(err.contains("app:missing"), "{err}");

    // Nothing reached the target: no index, no children.
    assert!(target.client().tags("app").await.is_empty());
    assert!(
        !target
            .client()
            .blob_exists("app", &one.images[0].config_digest)
            .await
    );
    // A usage error exits 2.
    let out = crossdock(&["index", "create", &dest, "a:1", "--annotation", "novalue"]);
    assert_eq!(out.status.code(), Some(2));
}
