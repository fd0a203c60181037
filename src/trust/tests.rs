//! Unit tests of the signature policy over crossdock's OCI layout backend (real storage in a
//! temporary folder), wrapped in [`Scripted`] so that `referrers()` answers what a test says:
//! distribution 2.8, the registry the end-to-end tests run, has no Referrers API, and a lying
//! referrers answer is exactly what no real registry gives on demand.

use std::sync::Mutex;

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use p256::ecdsa::signature::Signer as _;
use rsa::pkcs8::DecodePrivateKey as _;

use super::*;
use crate::manifest::{Descriptor, Manifest, media_type};
use crate::registry::layout::LayoutTransport;
use crate::registry::{BlobBody, ByteStream, ManifestHead, MountOutcome, Result, UploadSession};
use signature::SIMPLE_SIGNING;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// A layout folder whose referrers answer is scripted.
struct Scripted {
    inner: LayoutTransport,
    referrers: Mutex<Option<Vec<Descriptor>>>,
    _dir: tempfile::TempDir,
}

impl Scripted {
    fn new() -> Scripted {
        let dir = tempfile::tempdir().unwrap();
        Scripted {
            inner: LayoutTransport::new(dir.path().join("layout")),
            referrers: Mutex::new(None),
            _dir: dir,
        }
    }
    fn answer_referrers(&self, list: Vec<Descriptor>) {
        *self.referrers.lock().unwrap() = Some(list);
    }
}

#[async_trait]
impl Transport for Scripted {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }
    async fn manifest_head(&self, repo: &str, r: &str) -> Result<Option<ManifestHead>> {
        self.inner.manifest_head(repo, r).await
    }
    async fn manifest_get(&self, repo: &str, r: &str) -> Result<Manifest> {
        self.inner.manifest_get(repo, r).await
    }
    async fn manifest_put(&self, repo: &str, r: &str, m: &Manifest) -> Result<()> {
        self.inner.manifest_put(repo, r, m).await
    }
    async fn blob_head(&self, repo: &str, d: &Digest) -> Result<Option<u64>> {
        self.inner.blob_head(repo, d).await
    }
    async fn blob_get(&self, repo: &str, d: &Digest) -> Result<BlobBody> {
        self.inner.blob_get(repo, d).await
    }
    async fn blob_mount(&self, repo: &str, d: &Digest, from: &str) -> Result<MountOutcome> {
        self.inner.blob_mount(repo, d, from).await
    }
    async fn blob_put(
        &self,
        repo: &str,
        d: &Digest,
        size: u64,
        body: ByteStream,
        s: Option<UploadSession>,
    ) -> Result<()> {
        self.inner.blob_put(repo, d, size, body, s).await
    }
    async fn upload_cancel(&self, repo: &str, s: UploadSession) {
        self.inner.upload_cancel(repo, s).await
    }
    async fn tags(&self, repo: &str) -> Result<Vec<String>> {
        self.inner.tags(repo).await
    }
    async fn referrers(&self, _repo: &str, _d: &Digest) -> Result<Option<Vec<Descriptor>>> {
        Ok(self.referrers.lock().unwrap().clone())
    }
}

async fn put_blob(t: &Scripted, bytes: &[u8]) -> Digest {
    let d = Digest::sha256_of(bytes);
    let body: ByteStream = Box::pin(futures_util::stream::iter([Ok(Bytes::copy_from_slice(
        bytes,
    ))]));
    t.blob_put("", &d, bytes.len() as u64, body, None)
        .await
        .unwrap();
    d
}

fn desc(media_type: &str, digest: &Digest, size: usize) -> serde_json::Value {
    serde_json::json!({"mediaType": media_type, "digest": digest, "size": size})
}

async fn put_manifest(t: &Scripted, json: serde_json::Value, tag: Option<&str>) -> Manifest {
    let m = Manifest::from_bytes(Bytes::from(serde_json::to_vec(&json).unwrap()), None).unwrap();
    let reference = tag.map_or(m.digest().to_string(), str::to_string);
    t.manifest_put("", &reference, &m).await.unwrap();
    m
}

/// A small image tagged `tag`; its digest.
async fn push_image(t: &Scripted, tag: &str, seed: &str) -> Digest {
    let config = format!("{{\"seed\":\"{seed}\"}}");
    let c = put_blob(t, config.as_bytes()).await;
    let l = put_blob(t, seed.as_bytes()).await;
    let json = serde_json::json!({
        "schemaVersion": 2, "mediaType": media_type::OCI_MANIFEST,
        "config": desc(media_type::OCI_CONFIG, &c, config.len()),
        "layers": [desc("application/vnd.oci.image.layer.v1.tar", &l, seed.len())],
    });
    put_manifest(t, json, Some(tag)).await.digest().clone()
}

/// One signature layer: the payload bytes and the annotation value (None: no annotation).
struct Layer {
    payload: Vec<u8>,
    signature: Option<String>,
    /// The size the descriptor claims (defaults to the payload's).
    claimed_size: Option<u64>,
}

/// Pushes a cosign signature manifest for `subject`: under its `.sig` tag, or (`as_referrer`)
/// by digest with `subject` set, as cosign's OCI 1.1 mode does. Its descriptor.
async fn push_signature(
    t: &Scripted,
    subject: &Digest,
    layers: Vec<Layer>,
    as_referrer: bool,
) -> Descriptor {
    let config = b"{}";
    let c = put_blob(t, config).await;
    let mut ls = Vec::new();
    for l in layers {
        let d = put_blob(t, &l.payload).await;
        let mut v = desc(SIMPLE_SIGNING, &d, l.payload.len());
        if let Some(size) = l.claimed_size {
            v["size"] = size.into();
        }
        if let Some(s) = l.signature {
            v["annotations"] = serde_json::json!({ signature::SIGNATURE_ANNOTATION: s });
        }
        ls.push(v);
    }
    let mut json = serde_json::json!({
        "schemaVersion": 2, "mediaType": media_type::OCI_MANIFEST,
        "config": desc(media_type::OCI_CONFIG, &c, config.len()),
        "layers": ls,
    });
    let tag = format!("{}.sig", subject.tag_form());
    let m = if as_referrer {
        json["artifactType"] = signature::COSIGN_SIG_ARTIFACT.into();
        json["subject"] = desc(media_type::OCI_MANIFEST, subject, 1);
        put_manifest(t, json, None).await
    } else {
        put_manifest(t, json, Some(&tag)).await
    };
    m.descriptor()
}

/// The payload `cosign sign` writes for `digest`.
fn payload_for(digest: &Digest) -> Vec<u8> {
    format!(
        "{{\"critical\":{{\"identity\":{{\"docker-reference\":\"example.com/app\"}},\"image\":\
         {{\"docker-manifest-digest\":\"{digest}\"}},\"type\":\"cosign container image \
         signature\"}},\"optional\":null}}"
    )
    .into_bytes()
}

/// Test signers, one per algorithm, from fixed bytes (and a fixture RSA key).
enum TestKey {
    P256(p256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
    Rsa(Box<rsa::pkcs1v15::SigningKey<sha2::Sha256>>),
}

impl TestKey {
    fn p256(seed: u8) -> TestKey {
        TestKey::P256(p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap())
    }
    fn ed25519(seed: u8) -> TestKey {
        TestKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[seed; 32]))
    }
    fn rsa() -> TestKey {
        let pem = std::fs::read_to_string(format!("{FIXTURES}/keys/rsa-test.key")).unwrap();
        let key = rsa::PrivateKey::from_pkcs8_pem(&pem).unwrap();
        TestKey::Rsa(Box::new(rsa::pkcs1v15::SigningKey::new(key)))
    }
    fn sign(&self, msg: &[u8]) -> String {
        let raw: Vec<u8> = match self {
            TestKey::P256(k) => {
                let s: p256::ecdsa::Signature = k.sign(msg);
                s.to_der().as_bytes().to_vec()
            }
            TestKey::Ed25519(k) => k.sign(msg).to_bytes().to_vec(),
            TestKey::Rsa(k) => {
                let s: rsa::pkcs1v15::Signature = k.sign(msg);
                Box::<[u8]>::from(s).to_vec()
            }
        };
        base64::engine::general_purpose::STANDARD.encode(raw)
    }
    fn public(&self, name: &str) -> PublicKey {
        use p256::pkcs8::EncodePublicKey as _;
        let pem = match self {
            TestKey::P256(k) => k.verifying_key().to_public_key_pem(Default::default()),
            TestKey::Ed25519(k) => k.verifying_key().to_public_key_pem(Default::default()),
            TestKey::Rsa(_) => {
                return PublicKey::load(&std::path::Path::new(FIXTURES).join("keys/rsa-test.pub"))
                    .unwrap();
            }
        };
        PublicKey::from_pem(name, pem.unwrap().as_bytes()).unwrap()
    }
    fn signed_layer(&self, payload: Vec<u8>) -> Layer {
        Layer {
            signature: Some(self.sign(&payload)),
            payload,
            claimed_size: None,
        }
    }
}

fn policy(keys: Vec<PublicKey>) -> Policy {
    Policy::new(keys).unwrap()
}

fn image(tag: &str) -> Reference {
    Reference::layout(std::path::Path::new("/unused"), Some(tag), None).unwrap()
}

async fn admit(t: &Scripted, p: &Policy, r: &Reference) -> std::result::Result<Verified, Refusal> {
    p.admit(t, r).await.map(|(_, v)| v)
}

#[tokio::test]
async fn every_algorithm_admits_a_signed_image_pinned_to_its_digest() {
    for (i, key) in [TestKey::p256(1), TestKey::ed25519(2), TestKey::rsa()]
        .into_iter()
        .enumerate()
    {
        let t = Scripted::new();
        let d = push_image(&t, "v1", &format!("img{i}")).await;
        push_signature(&t, &d, vec![key.signed_layer(payload_for(&d))], false).await;
        let p = policy(vec![key.public("k.pub")]);
        let (pinned, v) = p.admit(&t, &image("v1")).await.unwrap();
        assert_eq!(pinned.digest(), Some(&d), "key {i}");
        assert_eq!(v.key, p.keys()[0].name());
        assert_eq!(v.found_at, format!(":{}.sig", d.tag_form()));
    }
}

#[tokio::test]
async fn real_cosign_signatures_verify() {
    for (key, payload, sig) in [
        ("cosign.pub", "payload.json", "payload.sig"),
        (
            "fulcio-leaf.pub",
            "keyless-payload.json",
            "keyless-payload.sig",
        ),
    ] {
        let dir = std::path::Path::new(FIXTURES).join("cosign");
        let payload = std::fs::read(dir.join(payload)).unwrap();
        let subject = signature::signed_digest(&payload).unwrap();
        let t = Scripted::new();
        let layer = Layer {
            payload,
            signature: Some(std::fs::read_to_string(dir.join(sig)).unwrap()),
            claimed_size: None,
        };
        push_signature(&t, &subject, vec![layer], false).await;
        let p = Policy::load(&[dir.join(key)]).unwrap().unwrap();
        let r = image("x").with_digest(subject.clone());
        let v = admit(&t, &p, &r).await.unwrap();
        assert!(v.key.ends_with(key), "{v:?}");
    }
}

/// Asserts a refusal's reason and that its message holds `want`.
fn refused(r: std::result::Result<Verified, Refusal>, reason: &str, want: &str) {
    let e = r.unwrap_err();
    assert_eq!(e.reason(), reason, "{e}");
    assert!(e.to_string().contains(want), "{e}");
}

#[tokio::test]
async fn unsigned_wrong_key_tampered_and_other_image_are_refused() {
    let t = Scripted::new();
    let signer = TestKey::p256(1);
    let p = policy(vec![signer.public("trusted.pub")]);

    let unsigned = push_image(&t, "unsigned", "a").await;
    refused(
        admit(&t, &p, &image("unsigned")).await,
        "unsigned",
        "is not signed",
    );
    let _ = unsigned;
    let metrics = crate::metrics::global().render();
    assert!(
        metrics.contains("crossdock_images_refused_total{reason=\"unsigned\"} "),
        "{metrics}"
    );

    let d = push_image(&t, "wrong-key", "b").await;
    let other = TestKey::ed25519(9);
    push_signature(&t, &d, vec![other.signed_layer(payload_for(&d))], false).await;
    refused(
        admit(&t, &p, &image("wrong-key")).await,
        "invalid_signature",
        "does not verify with the key trusted.pub",
    );

    let d = push_image(&t, "tampered", "c").await;
    let mut layer = signer.signed_layer(payload_for(&d));
    layer.payload = String::from_utf8(layer.payload)
        .unwrap()
        .replace("example.com", "evil.example")
        .into_bytes();
    push_signature(&t, &d, vec![layer], false).await;
    refused(
        admit(&t, &p, &image("tampered")).await,
        "invalid_signature",
        "payload tampered with",
    );

    let d = push_image(&t, "other", "d").await;
    let elsewhere = push_image(&t, "elsewhere", "e").await;
    push_signature(
        &t,
        &d,
        vec![signer.signed_layer(payload_for(&elsewhere))],
        false,
    )
    .await;
    refused(
        admit(&t, &p, &image("other")).await,
        "invalid_signature",
        &format!("for image {elsewhere}, not this image ({d})"),
    );
}

#[tokio::test]
async fn malformed_signature_manifests_are_refused_with_the_reason() {
    let t = Scripted::new();
    let signer = TestKey::p256(1);
    let p = policy(vec![signer.public("trusted.pub")]);
    let cases: Vec<(&str, Vec<Layer>, &str)> = vec![
        ("no-layers", vec![], "no layer of type"),
        (
            "no-annotation",
            vec![Layer {
                payload: b"{}".to_vec(),
                signature: None,
                claimed_size: None,
            }],
            "no dev.cosignproject.cosign/signature annotation",
        ),
        (
            "not-base64",
            vec![Layer {
                payload: b"{}".to_vec(),
                signature: Some("%%%".into()),
                claimed_size: None,
            }],
            "is not base64",
        ),
        (
            "huge",
            vec![Layer {
                payload: b"{}".to_vec(),
                signature: Some(signer.sign(b"{}")),
                claimed_size: Some(1 << 40),
            }],
            "not read",
        ),
        (
            "malformed",
            vec![signer.signed_layer(b"{\"critical\": [1, 2".to_vec())],
            "not a simple-signing document",
        ),
        (
            "no-digest",
            vec![signer.signed_layer(
                br#"{"critical":{"image":{"docker-manifest-digest":"latest"}}}"#.to_vec(),
            )],
            "is no digest",
        ),
    ];
    for (tag, layers, want) in cases {
        let d = push_image(&t, tag, tag).await;
        push_signature(&t, &d, layers, false).await;
        refused(admit(&t, &p, &image(tag)).await, "invalid_signature", want);
    }
}

#[tokio::test]
async fn a_signature_found_through_referrers_admits() {
    let t = Scripted::new();
    let signer = TestKey::ed25519(3);
    let d = push_image(&t, "v1", "a").await;
    let sig = push_signature(&t, &d, vec![signer.signed_layer(payload_for(&d))], true).await;
    t.answer_referrers(vec![Descriptor {
        artifact_type: Some(signature::COSIGN_SIG_ARTIFACT.into()),
        ..sig.clone()
    }]);
    let p = policy(vec![signer.public("k.pub")]);
    let v = admit(&t, &p, &image("v1")).await.unwrap();
    assert_eq!(v.found_at, format!("referrer {}", sig.digest));
}

#[tokio::test]
async fn a_lying_referrers_answer_admits_nothing() {
    let t = Scripted::new();
    let signer = TestKey::p256(4);
    let p = policy(vec![signer.public("k.pub")]);
    push_image(&t, "v1", "a").await;
    // A valid signature, but of another image: listed as this image's referrer.
    let other = push_image(&t, "v2", "b").await;
    let foreign = push_signature(
        &t,
        &other,
        vec![signer.signed_layer(payload_for(&other))],
        true,
    )
    .await;
    // A referrer that is not in the repository at all.
    let ghost = Descriptor {
        digest: Digest::sha256_of(b"nothing"),
        ..foreign.clone()
    };
    t.answer_referrers(vec![foreign.clone(), ghost.clone()]);
    let e = admit(&t, &p, &image("v1")).await.unwrap_err();
    assert_eq!(e.reason(), "invalid_signature", "{e}");
    let msg = e.to_string();
    assert!(msg.contains(&format!("its subject is {other}")), "{msg}");
    assert!(
        msg.contains(&format!(
            "referrer {}: listed as a referrer but cannot be read",
            ghost.digest
        )),
        "{msg}"
    );
}

#[test]
fn key_files_are_all_checked_before_anything() {
    let dir = std::path::Path::new(FIXTURES);
    let errors = Policy::load(&[
        dir.join("keys/p384.pub"),
        dir.join("cosign/cosign.pub"),
        dir.join("keys/rsa-test.key"),
        dir.join("keys/missing.pub"),
    ])
    .unwrap_err();
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(text.len(), 3, "{text:?}");
    assert!(
        text[0].contains("p384.pub") && text[0].contains("only P-256"),
        "{text:?}"
    );
    assert!(text[1].contains("a private key"), "{text:?}");
    assert!(text[2].contains("cannot read the key file"), "{text:?}");
    assert!(Policy::load(&[]).unwrap().is_none());
}

mod keyless;
