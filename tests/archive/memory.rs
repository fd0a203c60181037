//! Memory bounded whatever the layer size: a layer larger than the memory allowed goes through
//! both archive kinds, in and out, under a peak RSS measured with `wait4`.

use std::path::Path;
use std::process::Stdio;

use serde_json::json;

use crate::support::{self, Format, TestRegistry, sha256_digest, skopeo};

/// Runs crossdock to the end and returns its exit success and peak RSS (KiB) from `wait4`.
// The child is reaped by `wait4` (which std cannot do), not by `Child::wait`.
#[allow(clippy::zombie_processes)]
fn run_measured(args: &[&str]) -> (bool, i64, String) {
    let child = support::cli::command(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn crossdock");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill in.
    let mut rusage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own unreaped child; the pointers are to live locals.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut rusage) };
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.unwrap(), &mut err).unwrap();
    (
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        rusage.ru_maxrss,
        err,
    )
}

/// Writes an OCI layout holding one image whose one layer is `size` bytes, streamed to disk
/// (the test process never holds it: a child's peak RSS counts its parent's at fork).
fn big_layout(dir: &Path, size: usize) {
    use sha2::Digest as _;
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let d = sha256_digest(bytes);
        std::fs::write(blobs.join(&d[7..]), bytes).unwrap();
        d
    };
    let part = dir.join("layer.part");
    let mut file = std::fs::File::create(&part).unwrap();
    let mut hash = sha2::Sha256::new();
    for i in 0..size / (1 << 20) {
        let chunk = support::fixtures::random_bytes(i as u64, 1 << 20);
        hash.update(&chunk);
        std::io::Write::write_all(&mut file, &chunk).unwrap();
    }
    let layer = format!("sha256:{}", hex::encode(hash.finalize()));
    std::fs::rename(&part, blobs.join(&layer[7..])).unwrap();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": Format::Oci.manifest_type(),
        "config": {"mediaType": Format::Oci.config_type(), "digest": put(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": size}],
    }))
    .unwrap();
    let digest = put(&manifest);
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": Format::Oci.manifest_type(), "digest": digest, "size": manifest.len(),
        "annotations": {"org.opencontainers.image.ref.name": "v1"},
    }]});
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

#[tokio::test]
async fn a_layer_larger_than_the_memory_allowed_goes_through_both_archive_kinds() {
    const LAYER: usize = 120 * 1024 * 1024;
    const MAX_RSS_KIB: i64 = 100 * 1024;
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed");
    big_layout(&seed, LAYER);
    skopeo::run(
        "copy the big image to the source registry",
        &[
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{}:v1", seed.display()),
            &format!("docker://{}", a.image_ref("big/app", "v1")),
        ],
    );
    // skopeo may rewrite the manifest on the way: the source's digest is what it pushed.
    let digest = a.client().head_manifest("big/app", "v1").await.unwrap();
    for kind in ["oci-archive", "docker-archive"] {
        let archive = format!(
            "{kind}:{}",
            dir.path().join(format!("{kind}.tar")).display()
        );
        let to_b = b.image_ref(&format!("big/{kind}"), "v1");
        for args in [
            ["import", &a.image_ref("big/app", "v1"), &archive],
            ["import", &archive, &to_b],
        ] {
            let (ok, rss, err) = run_measured(&args);
            assert!(ok, "{args:?}: {err}");
            assert!(rss < MAX_RSS_KIB, "{args:?}: peak RSS {rss} KiB");
        }
        assert_eq!(
            b.client()
                .head_manifest(&format!("big/{kind}"), "v1")
                .await
                .as_deref(),
            Some(digest.as_str()),
            "{kind} keeps the digest"
        );
    }
}
