//! Archives written by [`ArchiveTarget`] read back by [`ArchiveSource`], in process: the same
//! manifests byte for byte, blobs streamed from their place in the tar, and nothing left
//! behind but the archive.

use bytes::Bytes;
use futures_util::TryStreamExt as _;

use super::*;
use crate::digest::Digest;
use crate::manifest::{Manifest, media_type};
use crate::registry::Transport;

fn blob_stream(bytes: &'static [u8]) -> crate::registry::ByteStream {
    Box::pin(futures_util::stream::iter([Ok(Bytes::from_static(bytes))]))
}

/// A one-layer image: (config, layer, manifest).
fn image() -> (&'static [u8], &'static [u8], Manifest) {
    let config: &'static [u8] = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:dac1d7cfa95021764849fd102524e141488c5e3a90f861dbb5a12d9ac8584f85"]}}"#;
    let layer: &'static [u8] = b"layer";
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": {"mediaType": media_type::OCI_CONFIG, "digest": Digest::sha256_of(config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": Digest::sha256_of(layer), "size": layer.len()}],
    });
    let m = Manifest::from_bytes(serde_json::to_vec(&m).unwrap().into(), None).unwrap();
    (config, layer, m)
}

async fn write(kind: ArchiveKind, dest: &std::path::Path, repo: &str) -> Manifest {
    let (config, layer, m) = image();
    let t = ArchiveTarget::create(kind, dest, false).unwrap();
    for b in [config, layer] {
        let d = Digest::sha256_of(b);
        t.blob_put(repo, &d, b.len() as u64, blob_stream(b), None)
            .await
            .unwrap();
    }
    t.manifest_put(repo, "v1", &m).await.unwrap();
    assert!(!dest.exists(), "nothing in place before finish");
    t.finish().await.unwrap();
    m
}

#[tokio::test]
async fn oci_archive_round_trip_keeps_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("a.tar");
    let m = write(ArchiveKind::Oci, &dest, "").await;
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["a.tar"], "no staging or temporary file left");
    let s = ArchiveSource::new(ArchiveKind::Oci, &dest);
    let got = s.manifest_get("", "v1").await.unwrap();
    assert_eq!(got.bytes(), m.bytes());
    assert!(!s.made_manifest(got.digest()));
    // Without a name, the only image.
    assert_eq!(
        s.manifest_get("", "latest").await.unwrap().digest(),
        m.digest()
    );
    let body = s.blob_get("", &Digest::sha256_of(b"layer")).await.unwrap();
    let bytes: Vec<Bytes> = body.stream.try_collect().await.unwrap();
    assert_eq!(bytes.concat(), b"layer");
    let e = s.manifest_get("", "v2").await.unwrap_err().to_string();
    assert!(e.contains("holds no image v2") && e.contains("v1"), "{e}");
    assert_eq!(s.tags("").await.unwrap(), vec!["v1"]);
}

#[tokio::test]
async fn docker_archive_round_trip_keeps_the_manifest_and_names_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("d.tar");
    let m = write(ArchiveKind::Docker, &dest, "localhost:5000/team/app").await;
    let s = ArchiveSource::new(ArchiveKind::Docker, &dest);
    let got = s
        .manifest_get("localhost:5000/team/app", "v1")
        .await
        .unwrap();
    assert_eq!(
        got.bytes(),
        m.bytes(),
        "the OCI layout inside keeps the manifest"
    );
    assert_eq!(
        s.manifest_get("", "latest").await.unwrap().digest(),
        m.digest()
    );
    assert!(
        s.manifest_get("docker.io/library/other", "v1")
            .await
            .is_err()
    );
    // The same tar read without its layout is a classic `docker save`: a manifest is made.
    let tar = tarfile::TarIndex::open(&dest).unwrap();
    let saved = docker::read_saved_images(&tar).unwrap();
    assert_eq!(
        saved[0].repo_tags.as_deref(),
        Some(&["localhost:5000/team/app:v1".to_string()][..])
    );
    let made = docker::synthesize(&tar, &saved[0]).unwrap();
    assert_eq!(made.manifest.media_type(), media_type::DOCKER_MANIFEST);
    assert_ne!(made.manifest.digest(), m.digest());
    // Deterministic.
    assert_eq!(
        docker::synthesize(&tar, &saved[0])
            .unwrap()
            .manifest
            .digest(),
        made.manifest.digest()
    );
}

#[tokio::test]
async fn reading_the_wrong_kind_says_which_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("o.tar");
    write(ArchiveKind::Oci, &dest, "").await;
    let e = ArchiveSource::new(ArchiveKind::Docker, &dest)
        .ping()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("read it as oci-archive:PATH") && e.contains("o.tar"),
        "{e}"
    );
    let e = ArchiveSource::new(ArchiveKind::Oci, &dir.path().join("none.tar"))
        .ping()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("none.tar") && e.contains("check the path"),
        "{e}"
    );
}

#[tokio::test]
async fn an_unfinished_or_failed_target_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("x.tar");
    {
        let t = ArchiveTarget::create(ArchiveKind::Oci, &dest, false).unwrap();
        t.blob_put(
            "",
            &Digest::sha256_of(b"layer"),
            5,
            blob_stream(b"layer"),
            None,
        )
        .await
        .unwrap();
        // Dropped without finish: the copy failed.
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    // Two platforms into a docker archive: refused when the index is put.
    let (_, _, m) = image();
    let child = |arch: &str| serde_json::json!({"mediaType": m.media_type(), "digest": m.digest(), "size": m.size(), "platform": {"os": "linux", "architecture": arch}});
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": [child("amd64"), child("arm64")]});
    let index = Manifest::from_bytes(serde_json::to_vec(&index).unwrap().into(), None).unwrap();
    let t = ArchiveTarget::create(ArchiveKind::Docker, &dest, false).unwrap();
    let e = t
        .manifest_put("", "v1", &index)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--platform") && e.contains("linux/amd64, linux/arm64"),
        "{e}"
    );
    t.finish().await.unwrap();
    drop(t);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written"
    );
}

/// A classic `docker save` tar holding two images.
fn classic_with_two_images(path: &std::path::Path) {
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).unwrap();
    };
    let (config, layer, _) = image();
    add("c1.json", config);
    add("l1/layer.tar", layer);
    let other = br#"{"os":"linux","rootfs":{"diff_ids":[]}}"#;
    add("c2.json", other);
    add(
        "manifest.json",
        br#"[{"Config":"c1.json","RepoTags":["app:v1"],"Layers":["l1/layer.tar"]},
             {"Config":"c2.json","RepoTags":["quay.io/x/other:2"],"Layers":[]}]"#,
    );
    b.finish().unwrap();
}

#[tokio::test]
async fn a_classic_docker_archive_is_read_by_name_and_unnamed_reads_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two.tar");
    classic_with_two_images(&path);
    let s = ArchiveSource::new(ArchiveKind::Docker, &path);
    // Names compare normalised: `app:v1` is docker.io/library/app:v1.
    let m = s.manifest_get("docker.io/library/app", "v1").await.unwrap();
    assert_eq!(m.media_type(), media_type::DOCKER_MANIFEST);
    assert!(s.made_manifest(m.digest()), "made, and said so");
    let body = s.blob_get("", &Digest::sha256_of(b"layer")).await.unwrap();
    let bytes: Vec<Bytes> = body.stream.try_collect().await.unwrap();
    assert_eq!(bytes.concat(), b"layer");
    assert!(s.manifest_get("quay.io/x/other", "2").await.is_ok());
    let e = s.manifest_get("", "latest").await.unwrap_err().to_string();
    assert!(
        e.contains("docker-archive:PATH:NAME:TAG")
            && e.contains("docker.io/library/app:v1")
            && e.contains("quay.io/x/other:2"),
        "{e}"
    );
    let e = s
        .manifest_get("docker.io/library/app", "v2")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("holds no image docker.io/library/app:v2"), "{e}");
    assert_eq!(s.tags("docker.io/library/app").await.unwrap(), vec!["v1"]);
}
