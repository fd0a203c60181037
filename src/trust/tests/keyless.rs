//! Keyless verification, through [`Policy::admit`] over the same OCI layout transport as the
//! key tests: a real cosign keyless signature (Fulcio certificate, Rekor bundle) checked
//! against the real public-good trust root, and signatures the tests make themselves with a
//! test Fulcio CA and a test Rekor key (rcgen) for every refusal: wrong identity, wrong issuer,
//! a certificate of another CA, a bundle of another log, a certificate expired when the log
//! recorded it, a tampered payload, a bundle of another signature.

use std::collections::BTreeMap;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DnType, IsCa, KeyPair,
    PublicKeyData as _, SanType, SigningKey as _, date_time_ymd,
};
use sha2::{Digest as _, Sha256};

use super::*;
use crate::trust::keyless::{BUNDLE_ANNOTATION, CERTIFICATE_ANNOTATION};

const KEYLESS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keyless");
const ISSUER: &str = "https://issuer.example";
const WHO: &str = "dev@example.com";
/// 2024-01-01T12:00:00Z: inside the test leaf's validity (2024-01-01 to 2024-01-02).
const SIGNED_AT: i64 = 1_704_110_400;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A test Fulcio: a self-signed P-256 CA.
struct Fulcio {
    key: KeyPair,
    params: CertificateParams,
    der: Vec<u8>,
}

impl Fulcio {
    fn new(name: &str) -> Fulcio {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let der = params.self_signed(&key).unwrap().der().to_vec();
        Fulcio { key, params, der }
    }

    /// A leaf for `san` with the v2 issuer extension (none for `issuer: None`), valid on
    /// 2024-01-01; its key and PEM.
    fn leaf(&self, san: &str, issuer: Option<&str>) -> (KeyPair, String) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![SanType::Rfc822Name(san.try_into().unwrap())];
        params.not_before = date_time_ymd(2024, 1, 1);
        params.not_after = date_time_ymd(2024, 1, 2);
        if let Some(i) = issuer {
            let mut der = vec![0x0c, i.len() as u8];
            der.extend_from_slice(i.as_bytes());
            params.custom_extensions = vec![CustomExtension::from_oid_content(
                &[1, 3, 6, 1, 4, 1, 57264, 1, 8],
                der,
            )];
        }
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let pem = params.signed_by(&key, &issuer).unwrap().pem();
        (key, pem)
    }
}

/// A test Sigstore instance: a Fulcio CA and a Rekor key, and the trust root naming both.
struct Sigstore {
    fulcio: Fulcio,
    rekor: KeyPair,
}

impl Sigstore {
    fn new() -> Sigstore {
        Sigstore {
            fulcio: Fulcio::new("test-fulcio"),
            rekor: KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
        }
    }

    fn root(&self) -> Arc<TrustRoot> {
        let spki = self.rekor.subject_public_key_info();
        let json = serde_json::json!({
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [{"publicKey": {"rawBytes": b64(&spki)},
                       "logId": {"keyId": b64(&Sha256::digest(&spki))}}],
            "certificateAuthorities": [{"certChain": {"certificates": [{"rawBytes": b64(&self.fulcio.der)}]},
                                        "validFor": {"start": "2020-01-01T00:00:00Z"}}],
        });
        Arc::new(TrustRoot::from_json("test-root.json", json.to_string().as_bytes()).unwrap())
    }

    fn policy(&self, identity: Identity, issuer: &str) -> Policy {
        let keyless = Keyless::new(self.root(), identity, issuer.to_string());
        Policy::with_keyless(Vec::new(), Some(keyless)).unwrap()
    }
}

/// A keyless signature: what a layer carries.
struct Signed {
    payload: Vec<u8>,
    signature: Vec<u8>,
    cert_pem: String,
    bundle: String,
}

/// Signs `payload` with a leaf of `fulcio` for `san` and `issuer` (none if empty) and logs it
/// in `rekor` at `at`.
fn sign(
    fulcio: &Fulcio,
    rekor: &KeyPair,
    payload: Vec<u8>,
    san: &str,
    issuer: &str,
    at: i64,
) -> Signed {
    let (key, cert_pem) = fulcio.leaf(san, Some(issuer).filter(|i| !i.is_empty()));
    let signature = key.sign(&payload).unwrap();
    let bundle = bundle(rekor, &payload, &signature, &cert_pem, at);
    Signed {
        payload,
        signature,
        cert_pem,
        bundle,
    }
}

/// A Rekor bundle for a hashedrekord entry of this signature, signed by `rekor`.
fn bundle(rekor: &KeyPair, payload: &[u8], sig: &[u8], cert_pem: &str, at: i64) -> String {
    let body = serde_json::json!({
        "apiVersion": "0.0.1", "kind": "hashedrekord",
        "spec": {"data": {"hash": {"algorithm": "sha256", "value": hex::encode(Sha256::digest(payload))}},
                 "signature": {"content": b64(sig), "publicKey": {"content": b64(cert_pem.as_bytes())}}},
    });
    let log_id = hex::encode(Sha256::digest(rekor.subject_public_key_info()));
    let entry = serde_json::json!({
        "body": b64(body.to_string().as_bytes()), "integratedTime": at,
        "logID": log_id, "logIndex": 7,
    });
    // serde_json's map is sorted: this is the canonical form Rekor signs.
    let set = rekor.sign(entry.to_string().as_bytes()).unwrap();
    serde_json::json!({"SignedEntryTimestamp": b64(&set), "Payload": entry}).to_string()
}

/// Pushes a signature manifest of these layers (payload, annotations) under `subject`'s tag.
async fn push_layers(
    t: &Scripted,
    subject: &Digest,
    layers: Vec<(Vec<u8>, BTreeMap<&str, String>)>,
) {
    let config = b"{}";
    let c = put_blob(t, config).await;
    let mut ls = Vec::new();
    for (payload, annotations) in layers {
        let d = put_blob(t, &payload).await;
        let mut v = desc(SIMPLE_SIGNING, &d, payload.len());
        v["annotations"] = serde_json::to_value(annotations).unwrap();
        ls.push(v);
    }
    let json = serde_json::json!({
        "schemaVersion": 2, "mediaType": media_type::OCI_MANIFEST,
        "config": desc(media_type::OCI_CONFIG, &c, config.len()), "layers": ls,
    });
    put_manifest(t, json, Some(&format!("{}.sig", subject.tag_form()))).await;
}

fn annotations(s: &Signed) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        (signature::SIGNATURE_ANNOTATION, b64(&s.signature)),
        (CERTIFICATE_ANNOTATION, s.cert_pem.clone()),
        (BUNDLE_ANNOTATION, s.bundle.clone()),
    ])
}

/// A layout with an image tagged `v1`; the image's digest.
async fn image_v1(t: &Scripted) -> Digest {
    push_image(t, "v1", "keyless").await
}

#[tokio::test]
async fn a_real_cosign_keyless_signature_verifies_against_the_public_good_root() {
    let dir = std::path::Path::new(KEYLESS);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("securebuild.sig-manifest.json")).unwrap())
            .unwrap();
    let payload = std::fs::read(dir.join("securebuild.payload.json")).unwrap();
    let subject = signature::signed_digest(&payload).unwrap();
    let t = Scripted::new();
    // Both layers of the real manifest: a KMS-key signature (no certificate) and the keyless one.
    let layers = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let a = l["annotations"].as_object().unwrap();
            let a: BTreeMap<&str, String> = a
                .iter()
                .map(|(k, v)| {
                    let k: &'static str = Box::leak(k.clone().into_boxed_str());
                    (k, v.as_str().unwrap().to_string())
                })
                .collect();
            (payload.clone(), a)
        })
        .collect();
    push_layers(&t, &subject, layers).await;
    let root = Arc::new(TrustRoot::load(&dir.join("trusted_root.json")).unwrap());
    let who = "cosign@cosign-test-384419.iam.gserviceaccount.com";
    let r = image("x").with_digest(subject.clone());
    let keyless = |identity: Identity, issuer: &str| {
        Policy::with_keyless(
            Vec::new(),
            Some(Keyless::new(root.clone(), identity, issuer.into())),
        )
        .unwrap()
    };
    let v = admit(
        &t,
        &keyless(Identity::Exact(who.into()), "https://accounts.google.com"),
        &r,
    )
    .await
    .unwrap();
    assert!(v.key.contains(who) && v.key.contains("18589865"), "{v:?}");
    let p = keyless(
        Identity::regexp(r".*@cosign-test-384419\.iam\.gserviceaccount\.com").unwrap(),
        "https://accounts.google.com",
    );
    admit(&t, &p, &r).await.unwrap();
    let p = keyless(
        Identity::Exact(who.into()),
        "https://token.actions.githubusercontent.com",
    );
    refused(
        admit(&t, &p, &r).await,
        "identity_mismatch",
        "not \"https://token.actions",
    );
    // A regexp matches the whole name, not a part of it.
    let p = keyless(
        Identity::regexp("cosign@").unwrap(),
        "https://accounts.google.com",
    );
    refused(
        admit(&t, &p, &r).await,
        "identity_mismatch",
        "not by identity /^(?:cosign@)$/",
    );
}

/// A second real signature, from sigstore-rs's own tests (Apache-2.0): made on 2021-10-20 under
/// Fulcio's first CA, whose certificates did not name an OIDC issuer yet, and logged as a
/// `rekord` entry. Its signature, log record and chain all check out; only the issuer cannot.
#[test]
fn a_2021_sigstore_rs_keyless_signature_checks_out_up_to_the_issuer_it_lacks() {
    let dir = std::path::Path::new(KEYLESS);
    let a: BTreeMap<String, String> =
        serde_json::from_slice(&std::fs::read(dir.join("kubewarden.annotations.json")).unwrap())
            .unwrap();
    let payload = std::fs::read(dir.join("kubewarden.payload.json")).unwrap();
    let signature = base64::engine::general_purpose::STANDARD
        .decode(&a[signature::SIGNATURE_ANNOTATION])
        .unwrap();
    let root = Arc::new(TrustRoot::load(&dir.join("trusted_root.json")).unwrap());
    let check = |identity: &str, payload: &[u8], bundle: &str| {
        let issuer = "https://accounts.google.com".to_string();
        Keyless::new(root.clone(), Identity::Exact(identity.into()), issuer)
            .verify(
                &a[CERTIFICATE_ANNOTATION],
                Some(bundle),
                payload,
                &signature,
            )
            .unwrap_err()
    };
    let bundle = &a[BUNDLE_ANNOTATION];
    let refusal = |reason: &str, want: &str, e: crate::trust::keyless::KeylessRefusal| {
        assert_eq!(e.reason, reason, "{}", e.message);
        assert!(e.message.contains(want), "{}", e.message);
    };
    refusal(
        "identity_mismatch",
        "flavio@castelli.me's certificate names no OIDC issuer",
        check("flavio@castelli.me", &payload, bundle),
    );
    refusal(
        "identity_mismatch",
        "signed by flavio@castelli.me, not by identity",
        check("someone@example.com", &payload, bundle),
    );
    let other = String::from_utf8(payload.clone())
        .unwrap()
        .replace("5f48", "5f49");
    refusal(
        "invalid_signature",
        "does not verify",
        check("flavio@castelli.me", other.as_bytes(), bundle),
    );
    // The log's promise no longer covers an entry claimed to be a second later.
    let later = bundle.replace("1634714717", "1634714718");
    refusal(
        "tlog_invalid",
        "SignedEntryTimestamp does not verify",
        check("flavio@castelli.me", &payload, &later),
    );
}

#[tokio::test]
async fn a_test_made_keyless_signature_admits_the_image_pinned_to_its_digest() {
    let s = Sigstore::new();
    let t = Scripted::new();
    let d = image_v1(&t).await;
    let signed = sign(&s.fulcio, &s.rekor, payload_for(&d), WHO, ISSUER, SIGNED_AT);
    push_layers(&t, &d, vec![(signed.payload.clone(), annotations(&signed))]).await;
    let (pinned, v) = s
        .policy(Identity::Exact(WHO.into()), ISSUER)
        .admit(&t, &image("v1"))
        .await
        .unwrap();
    assert_eq!(pinned.digest(), Some(&d));
    assert!(v.key.contains(WHO), "{v:?}");
}

/// One row of [`keyless_refusals_name_the_reason`]: what, the signature, the reason, a part of
/// the message.
type RefusalCase = (&'static str, Signed, &'static str, &'static str);

/// Signatures by the wrong signer or under the wrong authority: identity, issuer, CA, log,
/// validity at the time of logging.
fn signer_refusals(s: &Sigstore, d: &Digest) -> Vec<RefusalCase> {
    let other_ca = Fulcio::new("test-fulcio");
    let other_log = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    vec![
        (
            "wrong identity",
            sign(
                &s.fulcio,
                &s.rekor,
                payload_for(d),
                "eve@example.com",
                ISSUER,
                SIGNED_AT,
            ),
            "identity_mismatch",
            "signed by eve@example.com, not by identity \"dev@example.com\"",
        ),
        (
            "wrong issuer",
            sign(
                &s.fulcio,
                &s.rekor,
                payload_for(d),
                WHO,
                "https://evil.example",
                SIGNED_AT,
            ),
            "identity_mismatch",
            "issued for OIDC issuer \"https://evil.example\", not \"https://issuer.example\"",
        ),
        (
            "no issuer extension",
            sign(&s.fulcio, &s.rekor, payload_for(d), WHO, "", SIGNED_AT),
            "identity_mismatch",
            "names no OIDC issuer",
        ),
        (
            "certificate of a CA not in the root (same name, other key)",
            sign(&other_ca, &s.rekor, payload_for(d), WHO, ISSUER, SIGNED_AT),
            "untrusted_certificate",
            "does not chain to the trust root",
        ),
        (
            "bundle signed by another log",
            sign(
                &s.fulcio,
                &other_log,
                payload_for(d),
                WHO,
                ISSUER,
                SIGNED_AT,
            ),
            "tlog_invalid",
            "which the trust root test-root.json does not list",
        ),
        (
            "certificate expired when the log recorded the signature",
            sign(
                &s.fulcio,
                &s.rekor,
                payload_for(d),
                WHO,
                ISSUER,
                SIGNED_AT + 2 * 86_400,
            ),
            "untrusted_certificate",
            "was not valid at 2024-01-03 12:00:00 UTC",
        ),
    ]
}

/// Signatures whose parts do not belong together: a changed payload, another signature's
/// bundle, no bundle, another image's payload.
fn mismatch_refusals(s: &Sigstore, d: &Digest) -> Vec<RefusalCase> {
    let good = || sign(&s.fulcio, &s.rekor, payload_for(d), WHO, ISSUER, SIGNED_AT);
    let mut tampered = good();
    tampered.payload.push(b' ');
    let mut other_bundle = good();
    other_bundle.bundle = good().bundle;
    let mut no_bundle = good();
    no_bundle.bundle.clear();
    vec![
        (
            "tampered payload",
            tampered,
            "invalid_signature",
            "does not verify with its certificate's key",
        ),
        (
            "bundle of another signature",
            other_bundle,
            "tlog_invalid",
            "records another signature than this one",
        ),
        (
            "no bundle",
            no_bundle,
            "tlog_invalid",
            "no dev.sigstore.cosign/bundle",
        ),
        (
            "another image's payload",
            sign(
                &s.fulcio,
                &s.rekor,
                payload_for(&Digest::sha256_of(b"x")),
                WHO,
                ISSUER,
                SIGNED_AT,
            ),
            "invalid_signature",
            "not this image",
        ),
    ]
}

#[tokio::test]
async fn keyless_refusals_name_the_reason() {
    let s = Sigstore::new();
    let t = Scripted::new();
    let d = image_v1(&t).await;
    let cases = signer_refusals(&s, &d)
        .into_iter()
        .chain(mismatch_refusals(&s, &d));
    let p = s.policy(Identity::Exact(WHO.into()), ISSUER);
    for (what, signed, reason, want) in cases {
        let t = Scripted::new();
        assert_eq!(image_v1(&t).await, d);
        let mut a = annotations(&signed);
        a.retain(|_, v| !v.is_empty());
        push_layers(&t, &d, vec![(signed.payload.clone(), a)]).await;
        let e = admit(&t, &p, &image("v1")).await.unwrap_err();
        assert_eq!(e.reason(), reason, "{what}: {e}");
        assert!(e.to_string().contains(want), "{what}: {e}");
    }
}

#[test]
fn bad_trust_roots_are_refused_with_what_is_wrong() {
    let cases = [
        ("{", "not a Sigstore TrustedRoot JSON document"),
        (
            r#"{"mediaType": "application/json"}"#,
            "is not a Sigstore TrustedRoot",
        ),
        (
            r#"{"tlogs": [], "certificateAuthorities": []}"#,
            "needs at least one certificate authority",
        ),
        (
            r#"{"certificateAuthorities": [{"certChain": {"certificates": [{"rawBytes": "AAAA"}]}}]}"#,
            "certificateAuthorities[0].certChain.certificates[0]: not an X.509 certificate",
        ),
    ];
    for (json, want) in cases {
        let e = TrustRoot::from_json("r.json", json.as_bytes()).unwrap_err();
        assert!(e.contains(want), "{json}: {e}");
    }
}

#[test]
fn an_endless_trust_root_file_is_refused_without_reading_it_all() {
    // /dev/zero reports a size of 0 and never ends: the read stops one byte past the limit.
    let e = TrustRoot::load(std::path::Path::new("/dev/zero")).unwrap_err();
    let e = e.to_string();
    assert!(
        e.contains("/dev/zero") && e.contains("more than 1048576 bytes"),
        "{e}"
    );
}
