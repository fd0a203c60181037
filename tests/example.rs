//! The first five minutes: the example image shipped in examples/hello is exactly what
//! examples/make-hello.py writes, and the first rule of config.example.toml mirrors it with
//! nothing else installed — the README's first command, checked byte for byte and against skopeo.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest as _, Sha256};
use support::cli;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `root`, by path relative to it, with its bytes.
fn tree(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_path_buf();
                out.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn copy_tree(from: &Path, to: &Path) {
    for (rel, bytes) in tree(from) {
        let dest = to.join(rel);
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::write(dest, bytes).unwrap();
    }
}

/// The digest `index.json` of a layout gives `tag`.
fn tagged_digest(layout: &Path, tag: &str) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("{}: no tag {tag} in {index}", layout.display()))["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn regenerating_the_example_image_gives_identical_bytes() {
    let out = tempfile::tempdir().unwrap();
    let status = Command::new("python3")
        .arg(repo().join("examples/make-hello.py"))
        .arg(out.path())
        .output()
        .unwrap_or_else(|e| panic!("run python3 (install it with `.ci/run`): {e}"));
    assert!(status.status.success(), "make-hello.py: {status:?}");
    let committed = tree(&repo().join("examples/hello"));
    let fresh = tree(out.path());
    assert_eq!(
        committed.keys().collect::<Vec<_>>(),
        fresh.keys().collect::<Vec<_>>(),
        "examples/hello holds other files than make-hello.py writes: run it and commit"
    );
    for (path, bytes) in &committed {
        assert!(
            fresh[path] == *bytes,
            "examples/hello/{} differs from what make-hello.py writes",
            path.display()
        );
    }
    // A few KiB, two platforms.
    let total: usize = committed.values().map(Vec::len).sum();
    assert!(total < 16 * 1024, "{total} bytes");
    let inspect = cli::ok(&cli::crossdock(&[
        "inspect",
        "--platforms",
        &format!("oci:{}:1.0", repo().join("examples/hello").display()),
    ]));
    assert!(
        inspect.contains("linux/amd64") && inspect.contains("linux/arm64"),
        "{inspect}"
    );
}

#[test]
fn example_config_first_rule_mirrors_the_example_image() {
    // A copy of the repository's example as a user has it: the config and the image beside it.
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("config.example.toml");
    fs::copy(repo().join("config.example.toml"), &config).unwrap();
    copy_tree(
        &repo().join("examples/hello"),
        &home.path().join("examples/hello"),
    );
    // Run from elsewhere: the layout paths are relative to the config file's folder.
    let elsewhere = tempfile::tempdir().unwrap();
    let config_arg = config.to_str().unwrap();
    let sync = |expected: &str| {
        let out = cli::command(&["sync", "--config", config_arg, "--rule", "hello"])
            .current_dir(elsewhere.path())
            .output()
            .unwrap();
        let stdout = cli::ok(&out);
        assert!(stdout.contains(expected), "{stdout}");
    };
    sync("rule hello: ok");

    let source = home.path().join("examples/hello");
    let mirror = home.path().join("mirror");
    assert!(!elsewhere.path().join("mirror").exists());
    let digest = tagged_digest(&source, "1.0");
    assert_eq!(tagged_digest(&mirror, "1.0"), digest);
    // Every blob of the image (manifests, configs, layers) is in the mirror, byte for byte.
    let mirrored = tree(&mirror.join("blobs"));
    for (path, bytes) in tree(&source.join("blobs")) {
        assert!(
            mirrored.get(&path) == Some(&bytes),
            "{} missing",
            path.display()
        );
    }
    // The peer reads the mirror and finds the same index.
    let raw = support::skopeo::run(
        "inspect --raw oci:mirror:1.0",
        &["inspect", "--raw", &format!("oci:{}:1.0", mirror.display())],
    )
    .stdout;
    assert_eq!(
        format!("sha256:{}", hex::encode(Sha256::digest(&raw))),
        digest
    );

    // Work already done is not redone.
    sync("1 up to date");
}
