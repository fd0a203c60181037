//! Archives crossdock writes are read by the real readers (skopeo, `ctr image import`, unpacked
//! and runnable), archives skopeo writes are read by crossdock, round trips through registries
//! keep every digest, and a `docker-archive:` target takes one platform.

use std::path::Path;

use serde_json::{Value, json};

use crate::containerd::Containerd;
use crate::support::cli::{crossdock, ok};
use crate::support::fixtures::RawManifest;
use crate::support::{BuiltImage, Format, ImageSpec, TestRegistry, sha256_digest, skopeo};
use crate::{PLATFORMS, files_in, path_str, stderr};

/// A small image that runs for real: one uncompressed tar layer holding a file.
fn runnable_image() -> BuiltImage {
    let mut layer = tar::Builder::new(Vec::new());
    let data = b"hello from an archive\n";
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    layer.append_data(&mut h, "hello.txt", &data[..]).unwrap();
    let layer = layer.into_inner().unwrap();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/hello"]},
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(&layer)]},
    }))
    .unwrap();
    let manifest = RawManifest::from_json(
        Format::Oci.manifest_type(),
        &json!({
            "schemaVersion": 2,
            "mediaType": Format::Oci.manifest_type(),
            "config": {"mediaType": Format::Oci.config_type(), "digest": sha256_digest(&config), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256_digest(&layer), "size": layer.len()}],
        }),
    );
    BuiltImage {
        format: Format::Oci,
        index: None,
        manifests: vec![manifest],
        images: vec![],
        blobs: [
            (sha256_digest(&config), config),
            (sha256_digest(&layer), layer),
        ]
        .into(),
    }
}

fn entries(tar_path: &Path) -> Vec<String> {
    let mut a = tar::Archive::new(std::fs::File::open(tar_path).unwrap());
    a.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

fn tar_file(tar_path: &Path, name: &str) -> Vec<u8> {
    let mut a = tar::Archive::new(std::fs::File::open(tar_path).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_string_lossy() == name {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut out).unwrap();
            return out;
        }
    }
    panic!("{name} not in {}", tar_path.display())
}

/// The same tar without `drop` (to make a classic `docker save` archive of a newer one).
fn tar_without(src: &Path, dest: &Path, drop: &[&str]) {
    let mut a = tar::Archive::new(std::fs::File::open(src).unwrap());
    let mut b = tar::Builder::new(std::fs::File::create(dest).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        if !drop.contains(&name.as_str()) {
            let mut h = e.header().clone();
            b.append_data(&mut h, &name, &mut e).unwrap();
        }
    }
    b.finish().unwrap();
}

#[tokio::test]
async fn oci_archive_round_trip_keeps_every_digest_and_skopeo_and_ctr_read_it() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let image = ImageSpec::multi(Format::Oci, &PLATFORMS).seed(141).build();
    a.client().push_image("lib/app", "v1", &image).await;
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("app.tar");
    let target = format!("oci-archive:{}:v1", archive.display());
    let out = ok(&crossdock(&[
        "import",
        &a.image_ref("lib/app", "v1"),
        &target,
    ]));
    assert!(out.contains(image.digest()), "{out}");
    assert_eq!(files_in(dir.path()), vec!["app.tar"], "no staging left");
    for m in image.manifests.iter().chain(image.index.iter()) {
        let name = format!("blobs/sha256/{}", &m.digest["sha256:".len()..]);
        assert_eq!(tar_file(&archive, &name), m.bytes);
    }

    // skopeo reads the archive: the exact bytes, and copies it on with the same digests.
    let raw = skopeo::run("inspect oci-archive", &["inspect", "--raw", &target]).stdout;
    assert_eq!(raw, image.top().bytes);
    // crossdock reads it back into another registry: every digest kept.
    ok(&crossdock(&[
        "import",
        &target,
        &b.image_ref("copy/app", "v1"),
    ]));
    assert_eq!(
        b.client().head_manifest("copy/app", "v1").await.as_deref(),
        Some(image.digest())
    );
    b.client()
        .assert_holds_image("copy/app", None, &image)
        .await;

    // ctr imports every platform of it under the same digest.
    let ctr = Containerd::start();
    ctr.import(&[
        "--all-platforms",
        "--no-unpack",
        "--base-name",
        "localhost/app",
        path_str(&archive),
    ]);
    assert_eq!(
        ctr.digest_of("localhost/app:v1").as_deref(),
        Some(image.digest())
    );
}

#[tokio::test]
async fn docker_archive_is_read_by_ctr_and_skopeo_and_runs_unpacked() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let image = runnable_image();
    a.client().push_image("team/hello", "v1", &image).await;
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("hello.tar");
    // No name given: the image keeps the source's, as `docker save` names it.
    let target = format!("docker-archive:{}", archive.display());
    ok(&crossdock(&[
        "import",
        &a.image_ref("team/hello", "v1"),
        &target,
    ]));
    let saved: Value = serde_json::from_slice(&tar_file(&archive, "manifest.json")).unwrap();
    let name = a.image_ref("team/hello", "v1");
    assert_eq!(saved[0]["RepoTags"], json!([name]));
    let names = entries(&archive);
    assert!(names.contains(&"oci-layout".to_string()), "{names:?}");

    // ctr reads it (through its OCI layout): named, unpacked, the source digest kept.
    let ctr = Containerd::start();
    let said = ctr.import(&[path_str(&archive)]);
    assert!(said.contains("unpacking"), "{said}");
    assert_eq!(ctr.digest_of(&name).as_deref(), Some(image.digest()));

    // As a classic `docker save` archive (manifest.json only), ctr still imports it…
    let classic = dir.path().join("classic.tar");
    tar_without(&archive, &classic, &["oci-layout", "index.json"]);
    let said = ctr.import(&[path_str(&classic)]);
    assert!(said.contains("unpacking"), "{said}");
    let classic_digest = ctr
        .digest_of(&name)
        .expect("imported under its RepoTags name");
    assert_ne!(
        classic_digest,
        image.digest(),
        "ctr made a manifest from manifest.json"
    );
    // …skopeo reads it…
    let inspected = skopeo::run(
        "inspect docker-archive",
        &["inspect", &format!("docker-archive:{}", classic.display())],
    )
    .stdout;
    let inspected: Value = serde_json::from_slice(&inspected).unwrap();
    assert_eq!(inspected["Architecture"], "amd64");
    // …and crossdock makes the manifest it lacks, saying so, with the config and layer as
    // they are.
    let out = ok(&crossdock(&[
        "import",
        &format!("docker-archive:{}", classic.display()),
        &b.image_ref("from/classic", "v1"),
    ]));
    assert!(out.contains("holds no manifest"), "{out}");
    let made = b
        .client()
        .head_manifest("from/classic", "v1")
        .await
        .unwrap();
    assert_ne!(made, image.digest());
    assert!(out.contains(&made), "the note gives the new digest: {out}");
    for d in image.blobs.keys() {
        assert!(b.client().blob_exists("from/classic", d).await, "{d}");
    }
    // Reading the crossdock-written archive keeps the manifest: digests preserved.
    let out = ok(&crossdock(&[
        "import",
        &format!("{target}:{name}"),
        &b.image_ref("back/hello", "v1"),
    ]));
    assert!(!out.contains("holds no manifest"), "{out}");
    assert_eq!(
        b.client()
            .head_manifest("back/hello", "v1")
            .await
            .as_deref(),
        Some(image.digest())
    );
}

#[tokio::test]
async fn archives_skopeo_writes_are_read_by_crossdock() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let image = ImageSpec::single(Format::Oci, "linux/amd64")
        .seed(142)
        .build();
    a.client().push_image("lib/app", "v1", &image).await;
    let dir = tempfile::tempdir().unwrap();
    let src = format!("docker://{}", a.image_ref("lib/app", "v1"));
    let oci = format!("oci-archive:{}:v1", dir.path().join("sk-oci.tar").display());
    let docker = format!(
        "docker-archive:{}:lib/app:v1",
        dir.path().join("sk-docker.tar").display()
    );
    for dest in [&oci, &docker] {
        skopeo::run(
            "copy to an archive",
            &["copy", "--src-tls-verify=false", &src, dest],
        );
    }
    ok(&crossdock(&[
        "import",
        &oci,
        &b.image_ref("from/oci", "v1"),
    ]));
    // skopeo may rewrite the manifest on the way in; crossdock keeps what the archive holds.
    let held = skopeo::run("inspect oci-archive", &["inspect", "--raw", &oci]).stdout;
    assert_eq!(
        b.client()
            .get_manifest("from/oci", "v1")
            .await
            .map(|m| m.bytes),
        Some(held)
    );
    let out = ok(&crossdock(&[
        "import",
        "--json",
        &docker,
        &b.image_ref("from/docker", "v1"),
    ]));
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["source_manifest_made"], true, "{out}");
    let made = b.client().head_manifest("from/docker", "v1").await.unwrap();
    assert_eq!(report["source_digest"], made.as_str());
    // skopeo wrote the config as it was: the made manifest names it.
    let m = b.client().get_manifest("from/docker", "v1").await.unwrap();
    let m: Value = serde_json::from_slice(&m.bytes).unwrap();
    assert_eq!(
        m["config"]["digest"],
        image.images[0].config_digest.as_str()
    );
}

#[tokio::test]
async fn docker_archive_target_takes_one_platform() {
    let a = TestRegistry::start();
    let image = ImageSpec::multi(Format::Docker, &PLATFORMS)
        .seed(143)
        .build();
    a.client().push_image("lib/app", "v1", &image).await;
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("one.tar");
    let target = format!("docker-archive:{}", archive.display());
    let out = crossdock(&["import", &a.image_ref("lib/app", "v1"), &target]);
    assert!(!out.status.success());
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(
        said.contains("--platform") && said.contains("linux/amd64, linux/arm64/v8"),
        "{said}"
    );
    assert!(
        files_in(dir.path()).is_empty(),
        "nothing half-written: {:?}",
        files_in(dir.path())
    );

    let out = ok(&crossdock(&[
        "import",
        "--platform",
        "linux/arm64",
        &a.image_ref("lib/app", "v1"),
        &target,
    ]));
    assert!(out.contains("platform filter"), "{out}");
    let saved: Value = serde_json::from_slice(&tar_file(&archive, "manifest.json")).unwrap();
    let arm = &image.images[1];
    assert_eq!(
        saved[0]["Config"],
        format!("blobs/sha256/{}", &arm.config_digest[7..])
    );
    // skopeo reads the one image.
    let inspected = skopeo::run("inspect docker-archive", &["inspect", &target]).stdout;
    let inspected: Value = serde_json::from_slice(&inspected).unwrap();
    assert_eq!(inspected["Architecture"], "arm64");
}
