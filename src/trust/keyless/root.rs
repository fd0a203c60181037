//! The Sigstore trust root a keyless signature is checked against, read from a TrustedRoot
//! JSON file (`application/vnd.dev.sigstore.trustedroot+json`, the `trusted_root.json` that
//! `cosign`/sigstore clients fetch through TUF): the Fulcio certificate authorities that may
//! issue signing certificates and the Rekor transparency logs whose signed entry timestamps
//! are believed. Each with the time window the root says it is valid for.
//!
//! It is read from a file, never fetched: a mirror's trust decisions must not depend on what
//! a network answers at run time, and an air-gapped mirror has no TUF repository to ask. The
//! file is parsed and every certificate and key decoded when the policy loads, so that a bad
//! root stops the configuration, not an image copy.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use x509_cert::Certificate;
use x509_cert::der::Decode as _;

use crate::trust::key::PublicKey;

/// Largest trust root file read (the public-good root is about 5 KiB).
const MAX_ROOT_FILE: u64 = 1024 * 1024;

/// Why a trust root file was refused.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct RootError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong and what to give instead.
    pub problem: String,
}

/// A time window `[start, end)`; no end means still valid.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub(crate) start: Option<DateTime<Utc>>,
    pub(crate) end: Option<DateTime<Utc>>,
}

impl Window {
    pub(crate) fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start.is_none_or(|s| s <= t) && self.end.is_none_or(|e| t < e)
    }
}

/// A Fulcio certificate authority: its certificates (root and intermediates, all trusted).
#[derive(Debug)]
pub(crate) struct CertificateAuthority {
    pub(crate) certificates: Vec<Certificate>,
    pub(crate) valid: Window,
}

/// A Rekor log: its key, and its id (the SHA-256 of the key's DER, as bundles name it in hex).
#[derive(Debug)]
pub(crate) struct TransparencyLog {
    pub(crate) key: PublicKey,
    pub(crate) log_id: [u8; 32],
    pub(crate) valid: Window,
}

/// A loaded trust root.
#[derive(Debug)]
pub struct TrustRoot {
    name: String,
    pub(crate) authorities: Vec<CertificateAuthority>,
    pub(crate) logs: Vec<TransparencyLog>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRoot {
    media_type: Option<String>,
    #[serde(default)]
    tlogs: Vec<RawLog>,
    #[serde(default)]
    certificate_authorities: Vec<RawAuthority>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLog {
    public_key: RawKey,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawKey {
    raw_bytes: String,
    valid_for: Option<RawWindow>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAuthority {
    cert_chain: RawChain,
    valid_for: Option<RawWindow>,
}

#[derive(Deserialize)]
struct RawChain {
    certificates: Vec<RawCert>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCert {
    raw_bytes: String,
}

#[derive(Deserialize)]
struct RawWindow {
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
}

impl From<Option<RawWindow>> for Window {
    fn from(w: Option<RawWindow>) -> Window {
        let w = w.unwrap_or(RawWindow {
            start: None,
            end: None,
        });
        Window {
            start: w.start,
            end: w.end,
        }
    }
}

impl TrustRoot {
    /// Reads a TrustedRoot JSON file.
    pub fn load(path: &Path) -> Result<TrustRoot, RootError> {
        let fail = |problem: String| RootError {
            path: path.to_path_buf(),
            problem,
        };
        let Some(text) = crate::trust::read_capped(path, MAX_ROOT_FILE)
            .map_err(|e| fail(format!("cannot read the trust root: {e}")))?
        else {
            return Err(fail(format!(
                "more than {MAX_ROOT_FILE} bytes is no Sigstore trust root"
            )));
        };
        TrustRoot::from_json(&path.display().to_string(), &text).map_err(fail)
    }

    /// Parses a TrustedRoot JSON document; `name` says where it came from in messages.
    pub fn from_json(name: &str, json: &[u8]) -> Result<TrustRoot, String> {
        let raw: RawRoot = serde_json::from_slice(json).map_err(|e| {
            format!(
                "not a Sigstore TrustedRoot JSON document ({e}); give the trusted_root.json \
                 of your Sigstore instance (`cosign trusted-root create`, or the one sigstore's \
                 TUF repository serves)"
            )
        })?;
        if let Some(m) = &raw.media_type
            && !m.starts_with("application/vnd.dev.sigstore.trustedroot")
        {
            return Err(format!("mediaType {m:?} is not a Sigstore TrustedRoot"));
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut authorities = Vec::new();
        for (i, ca) in raw.certificate_authorities.into_iter().enumerate() {
            let mut certificates = Vec::new();
            for (j, c) in ca.cert_chain.certificates.iter().enumerate() {
                let at = format!("certificateAuthorities[{i}].certChain.certificates[{j}]");
                let der = b64
                    .decode(c.raw_bytes.trim())
                    .map_err(|e| format!("{at}: not base64: {e}"))?;
                let cert = Certificate::from_der(&der)
                    .map_err(|e| format!("{at}: not an X.509 certificate: {e}"))?;
                certificates.push(cert);
            }
            if certificates.is_empty() {
                return Err(format!("certificateAuthorities[{i}]: no certificate"));
            }
            authorities.push(CertificateAuthority {
                certificates,
                valid: ca.valid_for.into(),
            });
        }
        let mut logs = Vec::new();
        for (i, log) in raw.tlogs.into_iter().enumerate() {
            let at = format!("tlogs[{i}].publicKey");
            let der = b64
                .decode(log.public_key.raw_bytes.trim())
                .map_err(|e| format!("{at}: not base64: {e}"))?;
            let key = PublicKey::from_spki_der(&format!("{name} {at}"), &der)
                .map_err(|e| format!("{at}: {e}"))?;
            logs.push(TransparencyLog {
                key,
                log_id: Sha256::digest(&der).into(),
                valid: log.public_key.valid_for.into(),
            });
        }
        if authorities.is_empty() || logs.is_empty() {
            return Err(format!(
                "needs at least one certificate authority (Fulcio) and one transparency log \
                 (Rekor); it has {} and {}",
                authorities.len(),
                logs.len()
            ));
        }
        Ok(TrustRoot {
            name: name.to_string(),
            authorities,
            logs,
        })
    }

    /// Where the root came from (its file).
    pub fn name(&self) -> &str {
        &self.name
    }
}
