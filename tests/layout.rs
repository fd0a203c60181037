//! OCI image-layout folders as import source and target (issue 8), end to end.
//!
//! The peer is skopeo's `oci:` transport in both directions: what crossdock writes must be
//! what skopeo reads, byte for byte, and the reverse. skopeo 1.9's `oci:` transport only takes
//! OCI media types (it refuses Docker manifest lists), so
//! Docker-typed images are round-tripped crossdock ↔ crossdock.

mod support;

use std::path::Path;
use std::process::{Output, Stdio};

use serde_json::Value;
use support::cli::{crossdock, ok};
use support::{BuiltImage, Format, ImageSpec, TestRegistry, skopeo};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn oci(dir: &Path, reference: &str) -> String {
    let sep = if reference.contains(':') { '@' } else { ':' };
    format!("oci:{}{sep}{reference}", dir.display())
}

fn index_json(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("index.json")).expect("index.json"))
        .expect("index.json is JSON")
}

/// `(ref.name or "", digest)` of every `index.json` entry, in order.
fn entries(dir: &Path) -> Vec<(String, String)> {
    index_json(dir)["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|e| {
            (
                e["annotations"]["org.opencontainers.image.ref.name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                e["digest"].as_str().expect("digest").to_string(),
            )
        })
        .collect()
}

fn blob_file(dir: &Path, digest: &str) -> std::path::PathBuf {
    dir.join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").expect("sha256"))
}

/// Every manifest and blob of `image` is a file of `dir`, byte for byte.
fn assert_layout_complete(dir: &Path, image: &BuiltImage) {
    for m in image.manifests.iter().chain(image.index.iter()) {
        let got = std::fs::read(blob_file(dir, &m.digest))
            .unwrap_or_else(|e| panic!("manifest {} missing in layout: {e}", m.digest));
        assert_eq!(got, m.bytes, "manifest {} differs", m.digest);
    }
    for (d, bytes) in &image.blobs {
        let got = std::fs::read(blob_file(dir, d))
            .unwrap_or_else(|e| panic!("blob {d} missing in layout: {e}"));
        assert_eq!(&got, bytes, "blob {d} differs");
    }
}

/// Files whose name marks them as crossdock's temporary files.
fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".crossdock-"))
        .collect()
}

const PLATFORMS: [&str; 3] = ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"];

#[tokio::test]
async fn skopeo_reads_the_layout_crossdock_writes_with_identical_digests() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let image = ImageSpec::multi(Format::Oci, &PLATFORMS)
        .shared_base_layer(true)
        .seed(81)
        .build();
    a.client().push_image("lib/app", "v1", &image).await;
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("usb/app");
    let out = ok(&crossdock(&[
        "import",
        &a.image_ref("lib/app", "v1"),
        &oci(&layout, "v1"),
    ]));
    assert!(out.contains(image.digest()), "{out}");
    assert_layout_complete(&layout, &image);
    assert_eq!(
        entries(&layout),
        vec![("v1".to_string(), image.digest().to_string())]
    );
    assert_eq!(
        std::fs::read_to_string(layout.join("oci-layout")).unwrap(),
        r#"{"imageLayoutVersion":"1.0.0"}"#
    );
    assert!(temp_files(&layout).is_empty());

    // skopeo reads exactly the source bytes…
    let layout_ref = oci(&layout, "v1");
    let raw = skopeo::run("inspect --raw oci:", &["inspect", "--raw", &layout_ref]).stdout;
    assert_eq!(raw, image.top().bytes);
    // …and pushes the whole image on with the same digests.
    let dest = format!("docker://{}", b.image_ref("mirror/app", "v1"));
    skopeo::run(
        "copy oci: to registry",
        &[
            "copy",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
            &layout_ref,
            &dest,
        ],
    );
    assert_eq!(
        b.client()
            .head_manifest("mirror/app", "v1")
            .await
            .as_deref(),
        Some(image.digest())
    );
    b.client()
        .assert_holds_image("mirror/app", None, &image)
        .await;
    // crossdock reads its own layout, too, and prints exactly the bytes the digest covers
    // (no newline added when the output is not a terminal).
    let shown = ok(&crossdock(&["inspect", &layout_ref]));
    assert_eq!(shown.as_bytes(), &image.top().bytes[..]);
    let table = ok(&crossdock(&["inspect", "--platforms", &layout_ref]));
    for p in PLATFORMS {
        assert!(table.contains(p), "{table}");
    }
}

#[tokio::test]
async fn crossdock_imports_a_layout_skopeo_wrote_with_identical_digests() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let image = ImageSpec::multi(Format::Oci, &PLATFORMS[..2])
        .seed(82)
        .build();
    a.client().push_image("app", "v2", &image).await;
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("from-skopeo");
    let layout_ref = oci(&layout, "v2");
    skopeo::run(
        "copy registry to oci:",
        &[
            "copy",
            "--all",
            "--preserve-digests",
            "--src-tls-verify=false",
            &format!("docker://{}", a.image_ref("app", "v2")),
            &layout_ref,
        ],
    );
    let out = ok(&crossdock(&[
        "import",
        &layout_ref,
        &b.image_ref("copied/app", "v2"),
        "--json",
    ]));
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["source_digest"], image.digest());
    assert_eq!(report["targets"][0]["digest"], image.digest());
    b.client()
        .assert_holds_image("copied/app", None, &image)
        .await;
    let served = b.client().get_manifest("copied/app", "v2").await.unwrap();
    assert_eq!(served.bytes, image.top().bytes);
    // crossdock also adds tags to skopeo's layout without disturbing its entries.
    ok(&crossdock(&[
        "import",
        &b.image_ref("copied/app", "v2"),
        &oci(&layout, "again"),
    ]));
    let names: Vec<String> = entries(&layout).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, vec!["v2", "again"]);
}

#[tokio::test]
async fn an_untagged_copy_is_listed_as_skopeo_lists_it() {
    let a = TestRegistry::start();
    let image = ImageSpec::multi(Format::Oci, &PLATFORMS[..2])
        .seed(83)
        .build();
    a.client().push_image("app", "v1", &image).await;
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("ours");
    ok(&crossdock(&[
        "import",
        &a.image_ref("app", image.digest()),
        &format!("oci:{}", ours.display()),
    ]));
    let theirs = dir.path().join("theirs");
    skopeo::run(
        "untagged copy to oci:",
        &[
            "copy",
            "--all",
            "--preserve-digests",
            "--src-tls-verify=false",
            &format!("docker://{}", a.image_ref("app", image.digest())),
            &format!("oci:{}", theirs.display()),
        ],
    );
    // One entry without a name, for the top manifest only (not its children).
    let want = vec![(String::new(), image.digest().to_string())];
    assert_eq!(entries(&theirs), want, "what skopeo writes");
    assert_eq!(entries(&ours), want, "what crossdock writes");
    // So skopeo finds it without a name.
    let raw = skopeo::run(
        "inspect untagged",
        &["inspect", "--raw", &format!("oci:{}", ours.display())],
    )
    .stdout;
    assert_eq!(raw, image.top().bytes);
}

#[tokio::test]
async fn docker_images_round_trip_layout_registry_layout() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let image = ImageSpec::multi(Format::Docker, &PLATFORMS)
        .layers(2)
        .seed(84)
        .build();
    a.client().push_image("app", "1.0", &image).await;
    let dir = tempfile::tempdir().unwrap();
    let (l1, l2) = (dir.path().join("one"), dir.path().join("two"));
    ok(&crossdock(&[
        "import",
        &a.image_ref("app", "1.0"),
        &oci(&l1, "1.0"),
    ]));
    ok(&crossdock(&[
        "import",
        &oci(&l1, "1.0"),
        &b.image_ref("carried/app", "1.0"),
    ]));
    ok(&crossdock(&[
        "import",
        &b.image_ref("carried/app", "1.0"),
        &oci(&l2, "1.0"),
    ]));
    for l in [&l1, &l2] {
        assert_layout_complete(l, &image);
        assert_eq!(
            entries(l),
            vec![("1.0".to_string(), image.digest().to_string())]
        );
        let top = &index_json(l)["manifests"][0];
        assert_eq!(
            top["mediaType"],
            "application/vnd.docker.distribution.manifest.list.v2+json"
        );
    }
    b.client()
        .assert_holds_image("carried/app", None, &image)
        .await;
    assert_eq!(
        b.client()
            .head_manifest("carried/app", "1.0")
            .await
            .as_deref(),
        Some(image.digest())
    );
    // A second import into the layout writes nothing.
    let before = std::fs::read(l2.join("index.json")).unwrap();
    let modified = std::fs::metadata(l2.join("index.json"))
        .unwrap()
        .modified()
        .unwrap();
    let out = ok(&crossdock(&[
        "import",
        &b.image_ref("carried/app", "1.0"),
        &oci(&l2, "1.0"),
    ]));
    assert!(out.contains("nothing to do"), "{out}");
    assert_eq!(std::fs::read(l2.join("index.json")).unwrap(), before);
    assert_eq!(
        std::fs::metadata(l2.join("index.json"))
            .unwrap()
            .modified()
            .unwrap(),
        modified
    );
    assert!(temp_files(&l2).is_empty());
    // The single-platform filter works from a layout too (a new index, said so).
    let out = ok(&crossdock(&[
        "import",
        &oci(&l2, "1.0"),
        &oci(&l2, "arm"),
        "--platform",
        "linux/arm/v7",
    ]));
    assert!(out.contains("platform filter wrote a new index"), "{out}");
}

#[tokio::test]
async fn a_corrupt_blob_in_a_layout_is_refused_on_read() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let image = ImageSpec::single(Format::Oci, "linux/amd64")
        .seed(85)
        .build();
    a.client().push_image("app", "v1", &image).await;
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("l");
    ok(&crossdock(&[
        "import",
        &a.image_ref("app", "v1"),
        &oci(&layout, "v1"),
    ]));
    // Same size, one bit flipped: only the digest can tell.
    let layer = &image.images[0].layer_digests[1];
    let path = blob_file(&layout, layer);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    let out = crossdock(&["import", &oci(&layout, "v1"), &b.image_ref("app", "v1")]);
    assert!(
        !out.status.success(),
        "a corrupt layer must fail the import"
    );
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(text.contains("digest"), "{text}");
    assert!(!b.client().blob_exists("app", layer).await);
    assert!(b.client().head_manifest("app", "v1").await.is_none());

    // A corrupt manifest is refused as well, by tag and by digest.
    let m = blob_file(&layout, image.digest());
    let mut bytes = std::fs::read(&m).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x01;
    std::fs::write(&m, bytes).unwrap();
    for r in [oci(&layout, "v1"), oci(&layout, image.digest())] {
        let out = crossdock(&["inspect", &r]);
        assert!(!out.status.success());
        assert!(stderr(&out).contains("digest"), "{}", stderr(&out));
    }
}

#[tokio::test]
async fn bad_tags_and_digests_are_refused_before_anything_is_written() {
    let a = TestRegistry::start();
    let image = ImageSpec::single(Format::Oci, "linux/amd64")
        .seed(86)
        .build();
    a.client().push_image("app", "v1", &image).await;
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("l");
    let source = a.image_ref("app", "v1");
    for bad in [
        format!("oci:{}:..", layout.display()),
        format!("oci:{}:.hidden", layout.display()),
        format!("oci:{}@sha256:zz", layout.display()),
        format!("oci:{}@sha256:{}", layout.display(), "G".repeat(64)),
    ] {
        let out = crossdock(&["import", &source, &bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
        let out = crossdock(&["inspect", &bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
    }
    assert!(!layout.exists(), "nothing may be created");
    // A folder that is not a layout is not written into.
    std::fs::create_dir_all(&layout).unwrap();
    std::fs::write(layout.join("notes.txt"), "mine").unwrap();
    let out = crossdock(&["import", &source, &oci(&layout, "v1")]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not an OCI image layout")
            || String::from_utf8_lossy(&out.stdout).contains("not an OCI image layout"),
        "{}",
        stderr(&out)
    );
    let names: Vec<_> = std::fs::read_dir(&layout)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["notes.txt"]);
}

#[tokio::test]
async fn concurrent_imports_into_one_layout_keep_every_tag() {
    let a = TestRegistry::start();
    const N: u64 = 4;
    let mut images = Vec::new();
    for i in 0..N {
        let image = ImageSpec::multi(Format::Oci, &PLATFORMS[..2])
            .seed(900 + i)
            .build();
        a.client().push_image("app", &format!("t{i}"), &image).await;
        images.push(image);
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("shared");
    // Several rounds: the processes race to create the layout, then to rewrite index.json.
    for round in 0..3 {
        let children: Vec<_> = (0..N)
            .map(|i| {
                support::cli::command(&[
                    "import",
                    &a.image_ref("app", &format!("t{i}")),
                    &oci(&layout, &format!("r{round}-t{i}")),
                    "--json",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn crossdock")
            })
            .collect();
        for c in children {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", stderr(&out));
        }
    }
    let got = entries(&layout);
    assert_eq!(got.len(), (3 * N) as usize, "{got:?}");
    for round in 0..3 {
        for (i, image) in images.iter().enumerate() {
            let name = format!("r{round}-t{i}");
            assert!(
                got.contains(&(name.clone(), image.digest().to_string())),
                "{name} missing: {got:?}"
            );
        }
    }
    for image in &images {
        assert_layout_complete(&layout, image);
    }
    assert!(temp_files(&layout).is_empty());
    let raw = skopeo::run(
        "inspect after races",
        &["inspect", "--raw", &oci(&layout, "r2-t3")],
    )
    .stdout;
    assert_eq!(raw, images[3].top().bytes);
}
