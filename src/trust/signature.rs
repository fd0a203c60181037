//! Finding cosign signatures of one image and checking each against the trusted keys.
//!
//! cosign's simple signing: a signature is an image manifest whose layers have media type
//! `application/vnd.dev.cosign.simplesigning.v1+json`. Each such layer's blob is the payload (a
//! small JSON document naming the signed manifest digest at `critical.image.
//! docker-manifest-digest`) and its annotation `dev.cosignproject.cosign/signature` is the
//! base64 signature over exactly those bytes. Signature manifests are found two ways, both
//! always looked at: the tag `sha256-<hex>.sig` (cosign's default, the only way on registries
//! without the Referrers API) and the OCI Referrers API (cosign's `oci-1-1` mode).
//!
//! Nothing a registry says is believed without a check: a referrers answer is only a list of
//! candidates, each manifest is read by digest (verified), its `subject` must be the image, each
//! payload blob is read bounded and verified against its digest, and the payload must name the
//! image's digest. A signature manifest can hold many layers and an image many signatures: one
//! good one is enough, and every bad one is recorded with why.

use base64::Engine as _;
use futures_util::TryStreamExt as _;
use serde::Deserialize;

use super::key::PublicKey;
use super::keyless::{BUNDLE_ANNOTATION, CERTIFICATE_ANNOTATION, Keyless};
use crate::digest::{Digest, VerifyingStream};
use crate::manifest::{Descriptor, Manifest, ManifestView};
use crate::registry::{RegistryError, Transport};

/// Media type of a simple-signing payload layer.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Annotation holding the base64 signature over the payload.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Artifact type cosign gives signatures it attaches as OCI referrers.
pub const COSIGN_SIG_ARTIFACT: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";

/// Largest payload read. cosign's payloads are a few hundred bytes (a few KiB with `-a`
/// annotations); anything larger is refused unread rather than buffered.
pub const MAX_PAYLOAD: u64 = 64 * 1024;
/// Signature layers looked at per image, and referrers per image: a registry that lists
/// thousands is not waited for.
const MAX_CANDIDATES: usize = 32;

/// A signature that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Where it was found: the `.sig` tag or the referrer manifest's digest.
    pub found_at: String,
    /// The key (file) it verified with.
    pub key: String,
}

/// What looking for signatures found.
#[derive(Debug, Default)]
pub struct Findings {
    /// The first signature that verified, if any.
    pub verified: Option<Verified>,
    /// Signature layers looked at.
    pub candidates: usize,
    /// Why each candidate that did not verify was refused, or why a lookup failed.
    pub problems: Vec<String>,
    /// The metric reason of each refused candidate (`invalid_signature`, or what a keyless
    /// check found: `tlog_invalid`, `untrusted_certificate`, `identity_mismatch`).
    pub reasons: Vec<&'static str>,
    /// Registry errors that kept signatures from being read (not "there is none").
    pub lookup_errors: usize,
}

/// What a signature may verify with: one of the keys, or a keyless policy.
#[derive(Debug, Clone, Copy)]
pub struct Trusted<'a> {
    /// Public keys.
    pub keys: &'a [PublicKey],
    /// Fulcio certificates with an identity, checked against a trust root.
    pub keyless: Option<&'a Keyless>,
}

impl Findings {
    fn refuse(&mut self, reason: &'static str, problem: String) {
        self.reasons.push(reason);
        self.problems.push(problem);
    }

    /// The reason label of a refusal: the keyless check the candidates failed when they all
    /// failed the same one (a key-made layer beside a keyless one does not hide it), else
    /// `invalid_signature`.
    pub fn reason(&self) -> &'static str {
        let mut specific = self.reasons.iter().filter(|r| **r != "invalid_signature");
        match specific.next() {
            Some(first) if specific.all(|r| r == first) => first,
            _ => "invalid_signature",
        }
    }
}

/// Looks for a signature of `digest` in `repo` that verifies with what is trusted.
pub async fn find(src: &dyn Transport, repo: &str, digest: &Digest, keys: Trusted<'_>) -> Findings {
    let mut f = Findings::default();
    let tag = format!("{}.sig", digest.tag_form());
    match src.manifest_get(repo, &tag).await {
        Ok(m) => check_manifest(src, repo, digest, &m, &format!(":{tag}"), keys, &mut f).await,
        Err(e) if e.is_not_found() => {}
        Err(e) => lookup_failed(&mut f, &format!("reading :{tag}"), &e),
    }
    if f.verified.is_some() {
        return f;
    }
    let listed = match src.referrers(repo, digest).await {
        Ok(Some(list)) => list,
        Ok(None) => return f,
        Err(e) if e.is_not_found() => return f,
        Err(e) => {
            lookup_failed(&mut f, "listing referrers", &e);
            return f;
        }
    };
    for d in listed
        .iter()
        .filter(|d| might_be_signature(d))
        .take(MAX_CANDIDATES)
    {
        let at = format!("referrer {}", d.digest);
        match src.manifest_get(repo, &d.digest.to_string()).await {
            Ok(m) => {
                if let Err(p) = subject_is(&m, digest) {
                    f.refuse("invalid_signature", format!("{at}: {p}"));
                    continue;
                }
                check_manifest(src, repo, digest, &m, &at, keys, &mut f).await;
                if f.verified.is_some() {
                    return f;
                }
            }
            // A listed referrer that is not there or not what its digest says is a lie of the
            // referrers answer, not a registry failure.
            Err(e) if is_content_error(&e) => f.refuse(
                "invalid_signature",
                format!("{at}: listed as a referrer but cannot be read: {e}"),
            ),
            Err(e) => lookup_failed(&mut f, &format!("reading {at}"), &e),
        }
    }
    f
}

fn is_content_error(e: &RegistryError) -> bool {
    use crate::registry::ErrorKind::{DigestInvalid, Invalid, NotFound};
    matches!(e.kind, NotFound | DigestInvalid | Invalid)
}

fn lookup_failed(f: &mut Findings, what: &str, e: &RegistryError) {
    f.lookup_errors += 1;
    f.problems.push(format!("{what}: {e}"));
}

/// Referrers worth reading: cosign signatures, and manifests that do not say what they are.
fn might_be_signature(d: &Descriptor) -> bool {
    d.artifact_type
        .as_deref()
        .is_none_or(|t| t == COSIGN_SIG_ARTIFACT || t.is_empty())
}

/// A referrer must say it refers to the image: a referrers answer is only a list of candidates.
fn subject_is(m: &Manifest, digest: &Digest) -> Result<(), String> {
    match m.subject() {
        Some(s) if &s.digest == digest => Ok(()),
        Some(s) => Err(format!(
            "listed as a referrer of {digest} but its subject is {}",
            s.digest
        )),
        None => Err(format!(
            "listed as a referrer of {digest} but has no subject"
        )),
    }
}

async fn check_manifest(
    src: &dyn Transport,
    repo: &str,
    digest: &Digest,
    m: &Manifest,
    at: &str,
    keys: Trusted<'_>,
    f: &mut Findings,
) {
    let layers: Vec<&Descriptor> = match m.view() {
        ManifestView::Image(i) => i
            .layers
            .iter()
            .filter(|l| l.media_type == SIMPLE_SIGNING)
            .collect(),
        ManifestView::Index(_) => {
            f.refuse(
                "invalid_signature",
                format!("{at}: an index, not a signature manifest"),
            );
            return;
        }
    };
    if layers.is_empty() {
        f.refuse(
            "invalid_signature",
            format!("{at}: no layer of type {SIMPLE_SIGNING}, so no signature in it"),
        );
        return;
    }
    for (i, layer) in layers.into_iter().enumerate() {
        if f.candidates >= MAX_CANDIDATES {
            f.problems.push(format!(
                "{at}: more than {MAX_CANDIDATES} signatures; the rest not read"
            ));
            return;
        }
        f.candidates += 1;
        let where_ = format!("{at} layer {i}");
        match check_layer(src, repo, digest, layer, keys).await {
            Ok(key) => {
                f.verified = Some(Verified {
                    found_at: at.to_string(),
                    key,
                });
                return;
            }
            Err(LayerError::Lookup(e)) => lookup_failed(f, &format!("reading {where_}"), &e),
            Err(LayerError::Refused(reason, p)) => f.refuse(reason, format!("{where_}: {p}")),
        }
    }
}

enum LayerError {
    Lookup(RegistryError),
    Refused(&'static str, String),
}

/// Checks one simple-signing layer; the name of the key (or keyless identity) it verifies
/// with.
async fn check_layer(
    src: &dyn Transport,
    repo: &str,
    digest: &Digest,
    layer: &Descriptor,
    trusted: Trusted<'_>,
) -> Result<String, LayerError> {
    let refused = |s: String| Err(LayerError::Refused("invalid_signature", s));
    let Some(sig) = layer.annotations.get(SIGNATURE_ANNOTATION) else {
        return refused(format!("no {SIGNATURE_ANNOTATION} annotation"));
    };
    let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(sig.trim()) else {
        return refused(format!(
            "the {SIGNATURE_ANNOTATION} annotation is not base64"
        ));
    };
    if layer.size > MAX_PAYLOAD {
        return refused(format!(
            "payload of {} bytes is larger than any signature payload (at most {MAX_PAYLOAD}); \
             not read",
            layer.size
        ));
    }
    let payload = read_payload(src, repo, layer).await?;
    let keys = trusted.keys;
    let cert = layer.annotations.get(CERTIFICATE_ANNOTATION);
    let signer = if let Some(key) = keys.iter().find(|k| k.verifies(&payload, &sig)) {
        key.name().to_string()
    } else if let (Some(keyless), Some(cert)) = (trusted.keyless, cert) {
        let bundle = layer.annotations.get(BUNDLE_ANNOTATION).map(String::as_str);
        keyless
            .verify(cert, bundle, &payload, &sig)
            .map_err(|r| LayerError::Refused(r.reason, format!("keyless: {}", r.message)))?
    } else {
        return refused(not_verified(trusted, cert.is_some()));
    };
    let signed =
        signed_digest(&payload).map_err(|e| LayerError::Refused("invalid_signature", e))?;
    if &signed != digest {
        return refused(format!(
            "signed by {signer} for image {signed}, not this image ({digest})"
        ));
    }
    Ok(signer)
}

/// Why a layer verified with nothing trusted.
fn not_verified(trusted: Trusted<'_>, has_cert: bool) -> String {
    match (trusted.keys, trusted.keyless) {
        ([], Some(_)) => format!(
            "a signature with no {CERTIFICATE_ANNOTATION} (made with a key, not keyless), and \
             no key is trusted"
        ),
        (keys, Some(_)) => format!(
            "the signature does not verify with {} and carries no {CERTIFICATE_ANNOTATION} \
             for keyless verification",
            key_list(keys)
        ),
        (keys, None) => format!(
            "the signature does not verify with {} (payload tampered with, or signed with \
             another key{})",
            key_list(keys),
            if has_cert {
                "; it is keyless: give verify_identity, verify_issuer and verify_trust_root"
            } else {
                ""
            }
        ),
    }
}

fn key_list(keys: &[PublicKey]) -> String {
    match keys {
        [one] => format!("the key {}", one.name()),
        _ => format!(
            "any of the {} keys ({})",
            keys.len(),
            keys.iter()
                .map(PublicKey::name)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Reads a payload blob whole (its size was bounded by the caller), verified against its
/// digest and size.
async fn read_payload(
    src: &dyn Transport,
    repo: &str,
    layer: &Descriptor,
) -> Result<Vec<u8>, LayerError> {
    let body = src
        .blob_get(repo, &layer.digest)
        .await
        .map_err(LayerError::Lookup)?;
    let mut stream = VerifyingStream::new(body.stream, layer.digest.clone(), Some(layer.size));
    let mut payload = Vec::with_capacity(layer.size as usize);
    while let Some(chunk) = stream.try_next().await.map_err(|e| {
        LayerError::Refused(
            "invalid_signature",
            format!("payload blob {} unreadable: {e}", layer.digest),
        )
    })? {
        payload.extend_from_slice(&chunk);
    }
    Ok(payload)
}

#[derive(Deserialize)]
struct Payload {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    image: SignedImage,
}

#[derive(Deserialize)]
struct SignedImage {
    #[serde(rename = "docker-manifest-digest")]
    digest: String,
}

/// The digest a simple-signing payload names.
pub fn signed_digest(payload: &[u8]) -> Result<Digest, String> {
    let p: Payload = serde_json::from_slice(payload).map_err(|e| {
        format!("the payload is not a simple-signing document (critical.image.docker-manifest-digest): {e}")
    })?;
    Digest::parse(&p.critical.image.digest).map_err(|e| {
        format!(
            "the payload's docker-manifest-digest {:?} is no digest: {e}",
            p.critical.image.digest
        )
    })
}
