//! The signature policy end to end (issue 17): `import --verify-key` and a rule's
//! `verify_keys`, between real registries, with signatures pushed the way cosign pushes them
//! (a `sha256-<hex>.sig` tag whose simple-signing layer carries the signature annotation).
//! Signatures are made here with the RustCrypto crates, plus real cosign-made ones from
//! tests/fixtures/cosign (see its README).

mod support;

use std::path::{Path, PathBuf};

use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::EncodePublicKey as _;
use serde_json::{Value, json};
use support::cli::{crossdock, json, ok};
use support::{Format, ImageSpec, RawClient, RawManifest, TestRegistry};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

/// A P-256 signing key from fixed bytes, and its public key written as PEM into `dir`.
fn p256_key(dir: &Path, seed: u8) -> (p256::ecdsa::SigningKey, PathBuf) {
    let k = p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap();
    let pem = k
        .verifying_key()
        .to_public_key_pem(Default::default())
        .unwrap();
    let path = dir.join(format!("key-{seed}.pub"));
    std::fs::write(&path, pem).unwrap();
    (k, path)
}

/// The payload `cosign sign` writes for `digest`.
fn payload_for(digest: &str) -> Vec<u8> {
    json!({
        "critical": {
            "identity": {"docker-reference": "example.com/app"},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": null,
    })
    .to_string()
    .into_bytes()
}

fn sign(k: &p256::ecdsa::SigningKey, payload: &[u8]) -> String {
    let s: p256::ecdsa::Signature = k.sign(payload);
    base64::engine::general_purpose::STANDARD.encode(s.to_der().as_bytes())
}

/// Pushes a signature of `subject` (`sha256:…`) to `repo` as cosign does: payload blob, empty
/// config, and a manifest under `sha256-<hex>.sig`.
async fn push_signature(c: &RawClient, repo: &str, subject: &str, payload: &[u8], sig: &str) {
    let layer = c.push_blob(repo, payload).await;
    let config = c.push_blob(repo, b"{}").await;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
        "layers": [{
            "mediaType": SIMPLE_SIGNING, "digest": layer, "size": payload.len(),
            "annotations": {"dev.cosignproject.cosign/signature": sig},
        }],
    });
    let m = RawManifest::from_json("application/vnd.oci.image.manifest.v1+json", &manifest);
    let tag = format!("{}.sig", subject.replace(':', "-"));
    c.put_manifest(repo, &tag, &m).await;
}

fn import(src: &str, dst: &str, keys: &[&Path], extra: &[&str]) -> std::process::Output {
    let mut args = vec!["import", src, dst];
    for k in keys {
        args.extend(["--verify-key", k.to_str().unwrap()]);
    }
    args.extend(extra);
    crossdock(&args)
}

fn failed_with(out: &std::process::Output, code: i32, want: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(stderr.contains(want), "wanted {want:?} in: {stderr}");
    stderr
}

#[tokio::test]
async fn a_signed_image_is_copied_with_its_signature() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let dir = tempfile::tempdir().unwrap();
    let (key, pub_path) = p256_key(dir.path(), 1);
    let image = ImageSpec::multi(Format::Oci, &["linux/amd64", "linux/arm64/v8"]).build();
    let c = a.client();
    c.push_image("app", "v1", &image).await;
    push_signature(
        &c,
        "app",
        image.digest(),
        &payload_for(image.digest()),
        &sign(&key, &payload_for(image.digest())),
    )
    .await;

    let out = import(
        &a.image_ref("app", "v1"),
        &b.image_ref("mirror/app", "v1"),
        &[&pub_path],
        &["--json"],
    );
    let report = json(&out);
    assert_eq!(report["targets"][0]["status"]["state"], "copied");
    assert_eq!(report["targets"][0]["digest"], image.digest());
    // The copy read the digest the signature covers.
    assert!(
        report["source"]
            .as_str()
            .unwrap()
            .ends_with(&format!("@{}", image.digest()))
    );
    let bc = b.client();
    assert_eq!(
        bc.head_manifest("mirror/app", "v1").await.as_deref(),
        Some(image.digest())
    );
    // The signature travels with the image.
    let sig_tag = format!("{}.sig", image.digest().replace(':', "-"));
    assert!(
        bc.tags("mirror/app").await.contains(&sig_tag),
        "{:?}",
        bc.tags("mirror/app").await
    );
}

#[tokio::test]
async fn unsigned_wrongly_signed_and_foreign_signatures_copy_nothing() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let dir = tempfile::tempdir().unwrap();
    let (_trusted, trusted_pub) = p256_key(dir.path(), 1);
    let (stranger, _) = p256_key(dir.path(), 2);
    let c = a.client();
    let unsigned = ImageSpec::single(Format::Oci, "linux/amd64")
        .seed(1)
        .build();
    c.push_image("app", "unsigned", &unsigned).await;
    let out = import(
        &a.image_ref("app", "unsigned"),
        &b.image_ref("m/app", "unsigned"),
        &[&trusted_pub],
        &[],
    );
    failed_with(&out, 1, "refused (unsigned)");
    failed_with(
        &out,
        1,
        &format!(
            "no cosign signature at :{}.sig",
            unsigned.digest().replace(':', "-")
        ),
    );

    let other_key = ImageSpec::single(Format::Oci, "linux/amd64")
        .seed(2)
        .build();
    c.push_image("app", "other-key", &other_key).await;
    let p = payload_for(other_key.digest());
    push_signature(&c, "app", other_key.digest(), &p, &sign(&stranger, &p)).await;
    let out = import(
        &a.image_ref("app", "other-key"),
        &b.image_ref("m/app", "other-key"),
        &[&trusted_pub],
        &[],
    );
    failed_with(&out, 1, "does not verify with the key");

    // A real cosign signature (of another image) pushed as this image's: it verifies with
    // cosign.pub, and names the wrong digest.
    let copied = ImageSpec::single(Format::Oci, "linux/amd64")
        .seed(3)
        .build();
    c.push_image("app", "copied-sig", &copied).await;
    let fx = Path::new(FIXTURES).join("cosign");
    let payload = std::fs::read(fx.join("payload.json")).unwrap();
    let sig = std::fs::read_to_string(fx.join("payload.sig")).unwrap();
    push_signature(&c, "app", copied.digest(), &payload, &sig).await;
    let out = import(
        &a.image_ref("app", "copied-sig"),
        &b.image_ref("m/app", "copied-sig"),
        &[&fx.join("cosign.pub")],
        &["--json"],
    );
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["refused"]["reason"], "invalid_signature");
    let e = v["refused"]["error"].as_str().unwrap();
    assert!(e.contains("for image sha256:f3cfc9d0dbf931d3db4685ec659b7ac68e2a578219da4aae65427886e649b06b, not this image"), "{e}");

    // Nothing reached the target.
    assert!(b.client().tags("m/app").await.is_empty());
}

#[tokio::test]
async fn with_a_platform_filter_the_source_index_signature_counts() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let dir = tempfile::tempdir().unwrap();
    let (key, pub_path) = p256_key(dir.path(), 1);
    let image = ImageSpec::multi(Format::Oci, &["linux/amd64", "linux/arm64/v8"])
        .seed(5)
        .build();
    let c = a.client();
    c.push_image("app", "v1", &image).await;
    // Only the amd64 manifest is signed: the index the filter starts from is not.
    let child = image.manifest_for("linux/amd64").digest.clone();
    let p = payload_for(&child);
    push_signature(&c, "app", &child, &p, &sign(&key, &p)).await;
    let filter = ["--platform", "linux/amd64", "--json"];
    let out = import(
        &a.image_ref("app", "v1"),
        &b.image_ref("m/app", "v1"),
        &[&pub_path],
        &filter,
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let p = payload_for(image.digest());
    push_signature(&c, "app", image.digest(), &p, &sign(&key, &p)).await;
    let report = json(&import(
        &a.image_ref("app", "v1"),
        &b.image_ref("m/app", "v1"),
        &[&pub_path],
        &filter,
    ));
    assert_eq!(report["filtered"], true);
    assert_eq!(report["source_digest"], image.digest());
    assert_ne!(report["targets"][0]["digest"], image.digest());
}

#[tokio::test]
async fn bad_key_files_are_usage_errors_before_any_request() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let image = ImageSpec::single(Format::Oci, "linux/amd64").build();
    a.client().push_image("app", "v1", &image).await;
    let mark = a.request_mark();
    let keys = Path::new(FIXTURES).join("keys");
    let out = import(
        &a.image_ref("app", "v1"),
        &b.image_ref("m/app", "v1"),
        &[&keys.join("rsa-test.key"), &keys.join("p384.pub")],
        &[],
    );
    let stderr = failed_with(&out, 2, "a private key: never hand it to a mirror");
    assert!(stderr.contains("only P-256"), "{stderr}");
    assert!(a.requests_since(mark).is_empty());
}

#[tokio::test]
async fn a_rule_with_verify_keys_copies_signed_tags_and_refuses_the_rest() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = p256_key(dir.path(), 7);
    let c = a.client();
    let signed = ImageSpec::single(Format::Oci, "linux/amd64")
        .seed(8)
        .build();
    let unsigned = ImageSpec::single(Format::Oci, "linux/amd64")
        .seed(9)
        .build();
    c.push_image("app", "signed", &signed).await;
    c.push_image("app", "unsigned", &unsigned).await;
    let p = payload_for(signed.digest());
    push_signature(&c, "app", signed.digest(), &p, &sign(&key, &p)).await;
    // The key path is relative to the configuration file.
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[rules]]\nname = \"signed-only\"\nsource = \"{a}/app\"\ntarget = \"{b}/m/app\"\n\
             tags = [\"signed\", \"unsigned\"]\nverify_keys = [\"key-7.pub\"]\n",
            a = a.host(),
            b = b.host()
        ),
    )
    .unwrap();
    let out = crossdock(&["sync", "--config", cfg.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("1 copied") && stdout.contains("1 refused (no valid signature)"),
        "{stdout}"
    );
    assert!(stdout.contains("is not signed"), "{stdout}");
    let tags = b.client().tags("m/app").await;
    assert!(
        tags.contains(&"signed".to_string()) && !tags.contains(&"unsigned".to_string()),
        "{tags:?}"
    );

    // A key file that is not a key: the configuration is refused, naming the key path.
    std::fs::write(dir.path().join("key-7.pub"), "not a key").unwrap();
    let out = crossdock(&["check-config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("rules[0].verify_keys[0]") && stderr.contains("not a PEM public key"),
        "{stderr}"
    );
    let _ = ok;
}
