//! Keyless signature policy end to end (issue 17): `import --verify-identity/--verify-issuer/
//! --verify-trust-root` and a rule's `verify_*` keys between real registries, with the real
//! cosign keyless signature of tests/fixtures/keyless (see its README) pushed the way cosign
//! pushes it. That signature covers an image we do not have, so against an image of ours the
//! whole keyless check passes (certificate chain, Rekor bundle, identity, issuer) and the
//! payload's digest refuses it; a wrong identity or issuer is refused before that. Admitting
//! keyless signatures, and every other refusal, is tested in src/trust/tests/keyless.rs with
//! signatures of a test Fulcio CA and a test Rekor key.

mod support;

use std::path::Path;

use serde_json::{Value, json};
use support::cli::crossdock;
use support::{Format, ImageSpec, RawClient, RawManifest, TestRegistry};

const KEYLESS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keyless");
const WHO: &str = "cosign@cosign-test-384419.iam.gserviceaccount.com";
const GOOGLE: &str = "https://accounts.google.com";

/// Pushes the real keyless signature layer under `subject`'s `.sig` tag (our own config blob:
/// the original one is not in the fixture; the layer and its annotations are unchanged).
async fn push_real_keyless_signature(c: &RawClient, repo: &str, subject: &str) {
    let dir = Path::new(KEYLESS);
    let real: Value =
        serde_json::from_slice(&std::fs::read(dir.join("securebuild.sig-manifest.json")).unwrap())
            .unwrap();
    let payload = std::fs::read(dir.join("securebuild.payload.json")).unwrap();
    let layer = c.push_blob(repo, &payload).await;
    assert_eq!(layer, real["layers"][1]["digest"]);
    let config = c.push_blob(repo, b"{}").await;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
        "layers": [real["layers"][1]],
    });
    let m = RawManifest::from_json("application/vnd.oci.image.manifest.v1+json", &manifest);
    c.put_manifest(repo, &format!("{}.sig", subject.replace(':', "-")), &m)
        .await;
}

fn import_keyless(src: &str, dst: &str, identity: &str, issuer: &str) -> std::process::Output {
    let root = format!("{KEYLESS}/trusted_root.json");
    crossdock(&[
        "import",
        src,
        dst,
        "--verify-identity",
        identity,
        "--verify-issuer",
        issuer,
        "--verify-trust-root",
        &root,
    ])
}

fn stderr_of(out: &std::process::Output, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    stderr
}

#[tokio::test]
async fn a_real_keyless_signature_is_checked_and_refused_for_another_image() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let image = ImageSpec::single(Format::Oci, "linux/amd64").build();
    let c = a.client();
    c.push_image("app", "v1", &image).await;
    push_real_keyless_signature(&c, "app", image.digest()).await;
    let (src, dst) = (a.image_ref("app", "v1"), b.image_ref("mirror/app", "v1"));

    // Identity, issuer, chain and bundle all check out; the payload is another image's.
    let out = import_keyless(&src, &dst, WHO, GOOGLE);
    let stderr = stderr_of(&out, 1);
    assert!(
        stderr.contains("refused (invalid_signature)")
            && stderr.contains(&format!("signed by {WHO} (issuer {GOOGLE}, Rekor log index 18589865) for image sha256:5ce2d8cd"))
            && stderr.contains(&format!("not this image ({})", image.digest()))
            && stderr.contains("nothing copied"),
        "{stderr}"
    );
    let out = import_keyless(&src, &dst, "someone@example.com", GOOGLE);
    let stderr = stderr_of(&out, 1);
    assert!(
        stderr.contains("refused (identity_mismatch)")
            && stderr.contains(&format!(
                "signed by {WHO}, not by identity \"someone@example.com\""
            )),
        "{stderr}"
    );
    let out = import_keyless(
        &src,
        &dst,
        WHO,
        "https://token.actions.githubusercontent.com",
    );
    let stderr = stderr_of(&out, 1);
    assert!(stderr.contains("refused (identity_mismatch)"), "{stderr}");
    assert!(b.client().tags("mirror/app").await.is_empty());
}

#[tokio::test]
async fn incomplete_keyless_settings_are_usage_errors_before_any_request() {
    let a = TestRegistry::start();
    let mark = a.request_mark();
    let src = a.image_ref("app", "v1");
    let out = crossdock(&[
        "import",
        &src,
        "oci:/tmp/unused:x",
        "--verify-identity",
        WHO,
    ]);
    let stderr = stderr_of(&out, 2);
    assert!(
        stderr.contains("needs --verify-trust-root FILE")
            && stderr.contains("needs --verify-issuer URL"),
        "{stderr}"
    );
    let out = crossdock(&[
        "import",
        &src,
        "oci:/tmp/unused:x",
        "--verify-identity",
        WHO,
        "--verify-issuer",
        GOOGLE,
        "--verify-trust-root",
        &format!("{KEYLESS}/README.md"),
    ]);
    let stderr = stderr_of(&out, 2);
    assert!(
        stderr.contains("not a Sigstore TrustedRoot JSON document"),
        "{stderr}"
    );
    assert!(a.requests_since(mark).is_empty());

    // A rule: each missing or bad key named at its path, all at once.
    let host = a.host();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        format!("{KEYLESS}/trusted_root.json"),
        dir.path().join("root.json"),
    )
    .unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[rules]]\nname = \"r\"\nsource = \"{host}/app\"\ntarget = \"localhost:5999/m/app\"\ntags = [\"v1\"]\n\
             verify_identity_regexp = \"(\"\nverify_trust_root = \"root.json\"\n"
        ),
    )
    .unwrap();
    let out = crossdock(&["check-config", cfg.to_str().unwrap()]);
    let stderr = stderr_of(&out, 2);
    assert!(
        stderr.contains("rules[0].verify_identity_regexp")
            && stderr.contains("not a regular expression")
            && stderr.contains("rules[0].verify_issuer"),
        "{stderr}"
    );
    // Complete, with the root relative to the configuration file: accepted.
    std::fs::write(
        &cfg,
        format!(
            "[[rules]]\nname = \"r\"\nsource = \"{host}/app\"\ntarget = \"localhost:5999/m/app\"\ntags = [\"v1\"]\n\
             verify_identity = \"{WHO}\"\nverify_issuer = \"{GOOGLE}\"\n\
             verify_trust_root = \"root.json\"\n"
        ),
    )
    .unwrap();
    let out = crossdock(&["check-config", cfg.to_str().unwrap()]);
    stderr_of(&out, 0);
}
