//! Unit tests of the layout backend against a temporary folder.

use std::collections::BTreeMap;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};

use super::*;
use crate::manifest::media_type;

fn body(chunks: Vec<&'static [u8]>) -> ByteStream {
    Box::pin(stream::iter(
        chunks
            .into_iter()
            .map(|c| Ok::<_, io::Error>(Bytes::from_static(c))),
    ))
}

fn image_manifest(config: &[u8], layer: &[u8]) -> Manifest {
    let json = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": {"mediaType": media_type::OCI_CONFIG, "digest": Digest::sha256_of(config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": Digest::sha256_of(layer), "size": layer.len()}],
    });
    Manifest::from_bytes(Bytes::from(serde_json::to_vec_pretty(&json).unwrap()), None).unwrap()
}

fn files_in(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                dirs.push(e.path());
            } else {
                out.push(
                    e.path()
                        .strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out.sort();
    out
}

async fn put_blob(t: &LayoutTransport, bytes: &'static [u8]) -> Digest {
    let d = Digest::sha256_of(bytes);
    t.blob_put("", &d, bytes.len() as u64, body(vec![bytes]), None)
        .await
        .unwrap();
    d
}

/// The layout's marker file, its index naming `m` as `v1`, and the blobs, with no temporary
/// file left.
fn assert_files_written(root: &Path, config: &Digest, layer: &Digest, m: &Manifest) {
    let layout: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], m.digest().to_string());
    assert_eq!(index["manifests"][0]["annotations"][store::REF_NAME], "v1");
    let mut want = vec![
        "blobs/sha256/".to_string() + config.hex(),
        "blobs/sha256/".to_string() + layer.hex(),
        "blobs/sha256/".to_string() + m.digest().hex(),
        "index.json".into(),
        "index.json.lock".into(),
        "oci-layout".into(),
    ];
    want.sort();
    assert_eq!(files_in(root), want, "no temporary file is left");
}

/// The entries of the layout's index.json.
fn entries(root: &Path) -> Vec<serde_json::Value> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("index.json")).unwrap()).unwrap();
    index["manifests"].as_array().unwrap().clone()
}

/// By digest: an entry without a name (as skopeo writes an untagged copy); retagging moves the
/// entry in place; an index put by digest replaces the unnamed entries of its children.
async fn assert_entries_by_digest(t: &LayoutTransport, root: &Path) {
    let other = image_manifest(b"{\"os\":\"linux\"}", b"other");
    t.manifest_put("", &other.digest().to_string(), &other)
        .await
        .unwrap();
    assert!(
        t.manifest_head("", &other.digest().to_string())
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(t.tags("").await.unwrap(), vec!["v1"]);
    let listed = entries(root);
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1]["digest"], other.digest().to_string());
    assert!(listed[1].get("annotations").is_none());
    // Retagging moves the entry in place; the untagged entry of the same digest goes.
    t.manifest_put("", "v1", &other).await.unwrap();
    assert_eq!(
        t.manifest_head("", "v1").await.unwrap().unwrap().digest,
        *other.digest()
    );
    assert_eq!(t.tags("").await.unwrap(), vec!["v1"]);
    assert_eq!(entries(root).len(), 1);
    // An index put by digest replaces the unnamed entries of its children.
    let child = image_manifest(b"c", b"child");
    t.manifest_put("", &child.digest().to_string(), &child)
        .await
        .unwrap();
    let index_json = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": [child.descriptor(), other.descriptor()],
    });
    let index = Manifest::from_bytes(Bytes::from(index_json.to_string()), None).unwrap();
    t.manifest_put("", &index.digest().to_string(), &index)
        .await
        .unwrap();
    let listed = entries(root);
    let digests: Vec<&str> = listed
        .iter()
        .map(|e| e["digest"].as_str().unwrap())
        .collect();
    assert_eq!(
        digests,
        vec![other.digest().to_string(), index.digest().to_string()],
        "the tagged child stays, the untagged one goes"
    );
}

/// Runs the real `skopeo ARGS...` (the peer tool, blocking: it reads files, never the code under
/// test); a missing skopeo or a failed call fails the test with its stderr.
fn skopeo(args: &[&str]) -> std::process::Output {
    let out = std::process::Command::new("skopeo")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run skopeo {args:?}: {e}; install it with `.ci/run`"));
    assert!(
        out.status.success(),
        "skopeo {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// skopeo reads the layout as written: `inspect --raw` gives back the manifest byte for byte, and
/// `copy` to a `dir:` folder fetches (and verifies) every blob the manifest names.
fn assert_skopeo_reads(root: &Path, blobs: [&Digest; 2], m: &Manifest) {
    let image = format!("oci:{}:v1", root.display());
    let raw = skopeo(&["inspect", "--raw", &image]).stdout;
    assert_eq!(
        raw,
        m.bytes().as_ref(),
        "skopeo reads the manifest as written"
    );
    let copy = tempfile::tempdir().unwrap();
    let target = format!("dir:{}", copy.path().display());
    skopeo(&["copy", &image, &target]);
    let copied = std::fs::read(copy.path().join("manifest.json")).unwrap();
    assert_eq!(Digest::sha256_of(&copied), *m.digest(), "digest preserved");
    let mut want: Vec<String> = blobs.iter().map(|d| d.hex().to_string()).collect();
    want.extend(["manifest.json".into(), "version".into()]);
    want.sort();
    assert_eq!(files_in(copy.path()), want, "skopeo copied every blob");
}

#[tokio::test]
async fn writes_a_layout_skopeo_can_read_and_reads_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("layout");
    let t = LayoutTransport::new(&root);
    assert_eq!(t.name(), format!("oci:{}", root.display()));
    t.ping().await.unwrap();
    // Nothing there yet: absent, not an error, for the engine's target checks.
    assert!(t.manifest_head("", "v1").await.unwrap().is_none());
    assert!(
        t.blob_head("", &Digest::sha256_of(b"c"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(t.manifest_get("", "v1").await.unwrap_err().is_not_found());

    let config = put_blob(&t, b"{\"os\":\"linux\"}").await;
    let layer = put_blob(&t, b"layer bytes").await;
    assert_eq!(t.blob_head("", &layer).await.unwrap(), Some(11));
    let m = image_manifest(b"{\"os\":\"linux\"}", b"layer bytes");
    t.manifest_put("", "v1", &m).await.unwrap();

    assert_files_written(&root, &config, &layer, &m);
    assert_skopeo_reads(&root, [&config, &layer], &m);

    let got = t.manifest_get("", "v1").await.unwrap();
    assert_eq!(got.bytes(), m.bytes());
    let head = t.manifest_head("", "v1").await.unwrap().unwrap();
    assert_eq!((head.digest, head.size), (m.digest().clone(), m.size()));
    let by_digest = t.manifest_get("", &m.digest().to_string()).await.unwrap();
    assert_eq!(by_digest.media_type(), media_type::OCI_MANIFEST);
    let blob = t.blob_get("", &layer).await.unwrap();
    assert_eq!(blob.size, Some(11));
    let bytes: Vec<Bytes> = blob.stream.try_collect().await.unwrap();
    assert_eq!(bytes.concat(), b"layer bytes");
    assert_eq!(t.tags("").await.unwrap(), vec!["v1"]);

    // By digest: an entry without a name (as skopeo writes an untagged copy).
    assert_entries_by_digest(&t, &root).await;
}

#[tokio::test]
async fn a_blob_that_fails_verification_or_its_stream_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let t = LayoutTransport::new(dir.path());
    let d = Digest::sha256_of(b"hello world");
    let cases: Vec<(ByteStream, ErrorKind)> = vec![
        (body(vec![b"hello", b" w0rld"]), ErrorKind::DigestInvalid),
        (body(vec![b"hello"]), ErrorKind::DigestInvalid),
        (body(vec![b"hello world", b"!"]), ErrorKind::DigestInvalid),
        (
            Box::pin(body(vec![b"hello"]).chain(stream::iter([Err(io::Error::other("reset"))]))),
            ErrorKind::Transport,
        ),
    ];
    for (stream, kind) in cases {
        let e = t.blob_put("", &d, 11, stream, None).await.unwrap_err();
        assert_eq!(e.kind, kind, "{e}");
        assert!(t.blob_head("", &d).await.unwrap().is_none());
    }
    assert_eq!(
        files_in(dir.path()),
        vec!["index.json", "index.json.lock", "oci-layout"],
        "no partial blob and no temporary file"
    );
}

#[tokio::test]
async fn a_corrupt_manifest_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let t = LayoutTransport::new(dir.path());
    let m = image_manifest(b"c", b"l");
    t.manifest_put("", "v1", &m).await.unwrap();
    let path = store::blob_path(dir.path(), m.digest());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let e = t.manifest_get("", "v1").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::DigestInvalid, "{e}");
    let e = t
        .manifest_get("", &m.digest().to_string())
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::DigestInvalid, "{e}");
}

#[tokio::test]
async fn bad_tags_digests_and_repositories_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let t = LayoutTransport::new(dir.path().join("l"));
    let m = image_manifest(b"c", b"l");
    for bad in ["..", "../x", "a/b", "", ".hidden"] {
        let e = t.manifest_put("", bad, &m).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid, "{bad}: {e}");
    }
    for bad in [
        "sha256:zz",
        "sha256:../../etc/passwd",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
    ] {
        assert!(t.manifest_put("", bad, &m).await.is_err(), "{bad}");
        assert!(t.manifest_get("", bad).await.is_err(), "{bad}");
    }
    // A digest reference must be the manifest's own.
    let wrong = Digest::sha256_of(b"x").to_string();
    let e = t.manifest_put("", &wrong, &m).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::DigestInvalid);
    let e = t.manifest_put("library/x", "v1", &m).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Invalid);
    assert!(e.to_string().contains("single repository"), "{e}");
    assert!(t.tags("other").await.is_err());
    // Nothing was written anywhere outside (or inside) the layout.
    assert!(!dir.path().join("l").join("index.json").exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn refuses_to_write_into_a_folder_that_is_not_a_layout() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("thesis.tex"), "precious").unwrap();
    let t = LayoutTransport::new(dir.path());
    let m = image_manifest(b"c", b"l");
    let e = t.manifest_put("", "v1", &m).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Invalid);
    assert!(e.to_string().contains("not an OCI image layout"), "{e}");
    assert_eq!(files_in(dir.path()), vec!["thesis.tex"]);
}

#[tokio::test]
async fn tags_skip_entry_names_that_are_not_tags() {
    let dir = tempfile::tempdir().unwrap();
    let t = LayoutTransport::new(dir.path());
    let m = image_manifest(b"c", b"l");
    t.manifest_put("", "v1", &m).await.unwrap();
    let root = dir.path().to_path_buf();
    let mut d = m.descriptor();
    d.annotations = BTreeMap::new();
    store::update_index(&root, |i| i.set("docker.io/library/x:1", &d)).unwrap();
    assert_eq!(t.tags("").await.unwrap(), vec!["v1"]);
}

#[tokio::test]
async fn concurrent_tag_writes_from_many_tasks_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let t = std::sync::Arc::new(LayoutTransport::new(dir.path()));
    let m = image_manifest(b"c", b"l");
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let (t, m) = (t.clone(), m.clone());
            tokio::spawn(async move { t.manifest_put("", &format!("t{i}"), &m).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(t.tags("").await.unwrap().len(), 12);
}

#[tokio::test]
async fn delete_by_tag_removes_one_name_and_by_digest_every_entry() {
    let dir = tempfile::tempdir().unwrap();
    let t = LayoutTransport::new(dir.path());
    let (a, b) = (image_manifest(b"c", b"l"), image_manifest(b"c2", b"l2"));
    for (tag, m) in [("a1", &a), ("a2", &a), ("b1", &b)] {
        t.manifest_put("", tag, m).await.unwrap();
    }
    assert!(t.manifest_delete("", "a1").await.unwrap());
    assert!(!t.manifest_delete("", "a1").await.unwrap(), "already gone");
    assert_eq!(t.tags("").await.unwrap(), vec!["a2", "b1"]);
    // The blob stays: a2 still names it.
    assert!(t.manifest_get("", "a2").await.is_ok());
    let by_digest = b.digest().to_string();
    assert!(t.manifest_delete("", &by_digest).await.unwrap());
    assert_eq!(t.tags("").await.unwrap(), vec!["a2"]);
    let bad = t.manifest_delete("", "bad tag").await.unwrap_err();
    assert_eq!(bad.kind, ErrorKind::Invalid);
    let empty = tempfile::tempdir().unwrap();
    let none = LayoutTransport::new(empty.path());
    assert!(
        !none.manifest_delete("", "x").await.unwrap(),
        "no layout yet"
    );
}
