//! Image archives (`oci-archive:`, `docker-archive:`) as import source and target (issue 14
//! item 3), checked with the real readers: `ctr image import` into a containerd started here
//! (its own root, state and socket in a temporary folder), and skopeo reading and writing both
//! kinds; plus round trips through real registries and the bad inputs of the issue.

mod support;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::cli::{crossdock, ok};
use support::fixtures::RawManifest;
use support::{BuiltImage, Format, ImageSpec, TestRegistry, sha256_digest, skopeo};

const PLATFORMS: [&str; 2] = ["linux/amd64", "linux/arm64/v8"];

/// A containerd of the test's own (root, state, socket in a temporary folder), stopped when
/// dropped. `ctr image import` is the reader `docker load`'s users on containerd hosts have.
struct Containerd {
    child: Child,
    dir: tempfile::TempDir,
}

impl Containerd {
    fn start() -> Containerd {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let config = format!(
            "version = 2\nroot = \"{r}/root\"\nstate = \"{r}/state\"\n\
             [grpc]\n  address = \"{r}/c.sock\"\n\
             [plugins.\"io.containerd.grpc.v1.cri\"]\n  disable = true\n",
            r = d.display()
        );
        std::fs::write(d.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(d.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start containerd: {e}; install it with `.ci/run`"));
        let c = Containerd { child, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while c.ctr(&["version"]).status.code() != Some(0) {
            assert!(
                Instant::now() < deadline,
                "containerd did not answer: {}",
                std::fs::read_to_string(c.dir.path().join("containerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        c
    }

    fn ctr(&self, args: &[&str]) -> Output {
        let sock = self.dir.path().join("c.sock");
        Command::new("ctr")
            .arg("--address")
            .arg(&sock)
            .args(["--namespace", "crossdock-test"])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run ctr: {e}; install containerd with `.ci/run`"))
    }

    /// `ctr image import ARGS…`, asserting it succeeded.
    fn import(&self, args: &[&str]) -> String {
        let mut all = vec!["image", "import"];
        all.extend_from_slice(args);
        let out = self.ctr(&all);
        assert!(
            out.status.success(),
            "ctr image import {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The digest of the image `name` containerd holds.
    fn digest_of(&self, name: &str) -> Option<String> {
        let out = self.ctr(&["image", "ls"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|cols| cols.first() == Some(&name))
            .map(|cols| cols[2].to_string())
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Everything in `dir`, by name: after a failure, nothing half-written may be there.
fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
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

async fn assert_registry_complete(reg: &TestRegistry, repo: &str, image: &BuiltImage) {
    let c = reg.client();
    for m in image.manifests.iter().chain(image.index.iter()) {
        let got = c.get_manifest(repo, &m.digest).await;
        assert_eq!(got.map(|g| g.bytes), Some(m.bytes.clone()), "{}", m.digest);
    }
    for d in image.blobs.keys() {
        assert!(c.blob_exists(repo, d).await, "blob {d} missing in {repo}");
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
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
    assert_registry_complete(&b, "copy/app", &image).await;

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

#[tokio::test]
async fn bad_archives_are_named_and_nothing_is_half_written() {
    let a = TestRegistry::start();
    let image = ImageSpec::multi(Format::Oci, &PLATFORMS).seed(144).build();
    a.client().push_image("lib/app", "v1", &image).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fail = |args: &[&str], says: &[&str]| {
        let out = crossdock(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let e = stderr(&out);
        for s in says {
            assert!(e.contains(s), "{args:?}: {s:?} not in: {e}");
        }
    };
    let layout_dest = format!("oci:{}", d.join("out").display());
    // A missing archive.
    let missing = d.join("missing.tar");
    fail(
        &[
            "import",
            &format!("oci-archive:{}", missing.display()),
            &layout_dest,
        ],
        &[path_str(&missing), "check the path"],
    );
    // A tar that is no image, a gzip file, and an archive of the other kind.
    let not_image = d.join("files.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&not_image).unwrap());
    let mut h = tar::Header::new_gnu();
    h.set_size(2);
    b.append_data(&mut h, "notes.txt", &b"hi"[..]).unwrap();
    b.finish().unwrap();
    drop(b);
    fail(
        &[
            "import",
            &format!("docker-archive:{}", not_image.display()),
            &layout_dest,
        ],
        &[path_str(&not_image), "no manifest.json"],
    );
    let gz = d.join("app.tar.gz");
    std::fs::write(&gz, [0x1f, 0x8b, 8, 0, 0, 0]).unwrap();
    fail(
        &[
            "import",
            &format!("oci-archive:{}", gz.display()),
            &layout_dest,
        ],
        &[path_str(&gz), "gunzip"],
    );
    // An existing target is refused without --force and left as it was.
    let existing = d.join("existing.tar");
    std::fs::write(&existing, b"precious").unwrap();
    let target = format!("oci-archive:{}", existing.display());
    fail(
        &["import", &a.image_ref("lib/app", "v1"), &target],
        &[path_str(&existing), "--force"],
    );
    assert_eq!(std::fs::read(&existing).unwrap(), b"precious");
    // A platform the archive does not hold: named, and no target written.
    ok(&crossdock(&[
        "import",
        "--force",
        &a.image_ref("lib/app", "v1"),
        &target,
    ]));
    fail(
        &[
            "import",
            "--platform",
            "linux/s390x",
            &target,
            &format!("docker-archive:{}", d.join("s390x.tar").display()),
        ],
        &["linux/s390x", "linux/amd64"],
    );
    let mut want = vec!["app.tar.gz", "existing.tar", "files.tar"];
    want.sort();
    assert_eq!(files_in(d), want, "nothing half-written");
    // A tag the archive does not hold: what it holds is named.
    fail(
        &["import", &format!("{target}:v2"), &layout_dest],
        &[path_str(&existing), "no image v2", "v1"],
    );
}

#[test]
fn a_daemon_rule_cannot_target_an_archive() {
    // An archive is written whole by one import; a rule runs again and again.
    let text = "[[rules]]\nname = \"a\"\nsource = \"localhost:5000/x\"\n\
                target = \"oci-archive:/srv/{name}.tar\"\ntags = [\"latest\"]\n";
    let Err(errs) = crossdock::config::load_str(Path::new("crossdock.toml"), text, []) else {
        panic!("a rule targeting an archive was accepted");
    };
    let errs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert!(
        errs.iter()
            .any(|e| e.contains("rules[0].target") && e.contains("archive")),
        "{errs:#?}"
    );
}

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
