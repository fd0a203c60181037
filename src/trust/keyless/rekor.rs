//! The Rekor bundle cosign attaches to a keyless signature (`dev.sigstore.cosign/bundle`): the
//! transparency log's signed promise that it recorded this signature at a given time.
//!
//! The bundle is `{"SignedEntryTimestamp": base64, "Payload": {"body", "integratedTime",
//! "logIndex", "logID"}}`. The SignedEntryTimestamp is the log's signature over the canonical
//! JSON of `Payload` (keys sorted, no spaces), checked with the key of the log the trust root
//! names by `logID`. The body is the log entry (`hashedrekord` or the older `rekord`, both
//! v0.0.1): it must be about exactly this signature — the payload's SHA-256, the signature
//! bytes and the signing certificate — or a valid bundle of another signature would vouch for
//! this one. Its `integratedTime` is the time the certificate must have been valid at.
//!
//! Inclusion proofs and checkpoints (newer bundle formats) are not read: the signed entry
//! timestamp is what cosign itself checks offline for this annotation.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::root::TrustRoot;

/// Largest bundle annotation read: a few KiB in practice.
const MAX_BUNDLE: usize = 64 * 1024;

#[derive(Deserialize)]
struct RawBundle {
    #[serde(rename = "SignedEntryTimestamp")]
    signed_entry_timestamp: String,
    #[serde(rename = "Payload")]
    payload: BundlePayload,
}

/// Field order is the canonical (sorted) order the log signed.
#[derive(Deserialize, Serialize)]
struct BundlePayload {
    body: String,
    #[serde(rename = "integratedTime")]
    integrated_time: i64,
    #[serde(rename = "logID")]
    log_id: String,
    #[serde(rename = "logIndex")]
    log_index: i64,
}

#[derive(Deserialize)]
struct Entry {
    kind: String,
    spec: EntrySpec,
}

#[derive(Deserialize)]
struct EntrySpec {
    data: EntryData,
    signature: EntrySignature,
}

#[derive(Deserialize)]
struct EntryData {
    hash: EntryHash,
}

#[derive(Deserialize)]
struct EntryHash {
    algorithm: String,
    value: String,
}

#[derive(Deserialize)]
struct EntrySignature {
    content: String,
    #[serde(rename = "publicKey")]
    public_key: EntryKey,
}

#[derive(Deserialize)]
struct EntryKey {
    content: String,
}

/// What a verified bundle attests.
#[derive(Debug)]
pub(crate) struct Attested {
    /// When the log recorded the signature.
    pub(crate) integrated_time: DateTime<Utc>,
    /// The entry's index in the log, for messages.
    pub(crate) log_index: i64,
}

/// Why a bundle was refused.
#[derive(Debug)]
pub(crate) enum BundleError {
    /// The bundle is not readable, or not signed by a log of the trust root.
    Invalid(String),
    /// The bundle is the log's, but about another signature.
    Mismatch(String),
}

/// Verifies the bundle annotation `json` for the signature `signature` (raw bytes) over
/// `payload`, made with the certificate `cert_der`.
pub(crate) fn verify(
    root: &TrustRoot,
    json: &str,
    payload: &[u8],
    signature: &[u8],
    cert_der: &[u8],
) -> Result<Attested, BundleError> {
    use BundleError::{Invalid, Mismatch};
    if json.len() > MAX_BUNDLE {
        return Err(Invalid(format!(
            "the bundle annotation is {} bytes (at most {MAX_BUNDLE})",
            json.len()
        )));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let bundle: RawBundle = serde_json::from_str(json)
        .map_err(|e| Invalid(format!("the bundle annotation is not a Rekor bundle: {e}")))?;
    let p = &bundle.payload;
    let log_id = hex::decode(&p.log_id)
        .map_err(|_| Invalid(format!("the bundle's logID {:?} is not hex", p.log_id)))?;
    let Some(log) = root.logs.iter().find(|l| l.log_id[..] == log_id[..]) else {
        return Err(Invalid(format!(
            "the bundle is from log {}, which the trust root {} does not list",
            p.log_id,
            root.name()
        )));
    };
    let canonical = serde_json::to_vec(p).map_err(|e| Invalid(e.to_string()))?;
    let set = b64
        .decode(bundle.signed_entry_timestamp.trim())
        .map_err(|_| Invalid("the SignedEntryTimestamp is not base64".into()))?;
    if !log.key.verifies(&canonical, &set) {
        return Err(Invalid(format!(
            "the bundle's SignedEntryTimestamp does not verify with the key of log {} \
             (the bundle was altered, or signed by another log)",
            p.log_id
        )));
    }
    let Some(integrated_time) = DateTime::from_timestamp(p.integrated_time, 0) else {
        return Err(Invalid(format!(
            "integratedTime {} is no time",
            p.integrated_time
        )));
    };
    if !log.valid.contains(integrated_time) {
        return Err(Invalid(format!(
            "log {} was not valid at the bundle's integratedTime {integrated_time}",
            p.log_id
        )));
    }
    let body = b64
        .decode(p.body.trim())
        .map_err(|_| Mismatch("the bundle's body is not base64".into()))?;
    let entry: Entry = serde_json::from_slice(&body).map_err(|e| {
        Mismatch(format!(
            "the bundle's body is not a hashedrekord/rekord entry: {e}"
        ))
    })?;
    check_entry(&entry, payload, signature, cert_der).map_err(Mismatch)?;
    Ok(Attested {
        integrated_time,
        log_index: p.log_index,
    })
}

/// The log entry must record this payload, signature and certificate.
fn check_entry(
    entry: &Entry,
    payload: &[u8],
    signature: &[u8],
    cert_der: &[u8],
) -> Result<(), String> {
    if entry.kind != "hashedrekord" && entry.kind != "rekord" {
        return Err(format!(
            "the log entry is of kind {:?}; expected hashedrekord or rekord",
            entry.kind
        ));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let hash = &entry.spec.data.hash;
    if hash.algorithm != "sha256"
        || !hash
            .value
            .eq_ignore_ascii_case(&hex::encode(Sha256::digest(payload)))
    {
        return Err(format!(
            "the log entry is for payload {}:{}, not this signature's payload",
            hash.algorithm, hash.value
        ));
    }
    if b64
        .decode(entry.spec.signature.content.trim())
        .ok()
        .as_deref()
        != Some(signature)
    {
        return Err("the log entry records another signature than this one".into());
    }
    let cert_pem = b64
        .decode(entry.spec.signature.public_key.content.trim())
        .map_err(|_| "the log entry's public key is not base64".to_string())?;
    let logged = x509_cert::der::pem::decode_vec(&cert_pem)
        .map(|(_, der)| der)
        .map_err(|_| "the log entry's public key is not PEM".to_string())?;
    if logged != cert_der {
        return Err("the log entry records another certificate than this signature's".into());
    }
    Ok(())
}
