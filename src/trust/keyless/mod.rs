//! Keyless signatures: cosign signatures made with a short-lived Fulcio certificate instead of
//! a long-lived key, trusted through a Sigstore trust root and an identity policy
//! (`verify_identity` or `verify_identity_regexp`, and `verify_issuer`).
//!
//! A signature layer is keyless when it carries `dev.sigstore.cosign/certificate`. It is
//! accepted only when all of these hold, checked in this order so that the cheapest refusal
//! that says the most comes first:
//! 1. the payload signature verifies with the certificate's key (else: tampered payload);
//! 2. the Rekor bundle (`dev.sigstore.cosign/bundle`) is signed by a log of the trust root and
//!    records exactly this payload, signature and certificate ([`rekor`]);
//! 3. a Fulcio CA of the trust root issued the certificate, and both were valid at the time
//!    the log recorded the signature ([`cert`]);
//! 4. the certificate's subject alternative name is the identity asked for and its OIDC
//!    issuer extension the issuer asked for.
//!
//! The caller then checks, as for keys, that the payload names the image's digest. Each
//! refusal carries a `reason` label for `crossdock_images_refused_total`.

pub(crate) mod cert;
pub(crate) mod rekor;
pub mod root;

use std::sync::Arc;

pub use root::{RootError, TrustRoot};

use crate::trust::key::PublicKey;
use cert::SigningCert;

/// Annotation holding the signing certificate (PEM).
pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
/// Annotation holding the Rekor bundle (JSON).
pub const BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";

/// Who must have signed: the certificate's subject alternative name.
#[derive(Debug, Clone)]
pub enum Identity {
    /// Exactly this e-mail address or URI.
    Exact(String),
    /// A regular expression the whole name must match.
    Regexp(regex::Regex),
}

impl Identity {
    /// A regular expression identity; anchored, so that it must match the whole name.
    pub fn regexp(pattern: &str) -> Result<Identity, String> {
        regex::Regex::new(&format!("^(?:{pattern})$"))
            .map(Identity::Regexp)
            .map_err(|e| format!("not a regular expression: {e}"))
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            Identity::Exact(s) => s == name,
            Identity::Regexp(r) => r.is_match(name),
        }
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::Exact(s) => write!(f, "{s:?}"),
            Identity::Regexp(r) => write!(f, "/{}/", r.as_str()),
        }
    }
}

/// A keyless policy: the trust root, and the identity and issuer a certificate must name.
#[derive(Debug, Clone)]
pub struct Keyless {
    root: Arc<TrustRoot>,
    identity: Identity,
    issuer: String,
}

/// Why a keyless signature was refused, with the metric's reason label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeylessRefusal {
    /// `invalid_signature`, `tlog_invalid`, `untrusted_certificate` or `identity_mismatch`.
    pub reason: &'static str,
    /// What was wrong.
    pub message: String,
}

fn refuse(reason: &'static str, message: impl Into<String>) -> KeylessRefusal {
    KeylessRefusal {
        reason,
        message: message.into(),
    }
}

impl Keyless {
    /// A policy trusting certificates of `root` naming `identity`, issued for `issuer`.
    pub fn new(root: Arc<TrustRoot>, identity: Identity, issuer: String) -> Keyless {
        Keyless {
            root,
            identity,
            issuer,
        }
    }

    /// Names the policy in messages.
    pub fn describe(&self) -> String {
        format!(
            "identity {} issued by {:?} (trust root {})",
            self.identity,
            self.issuer,
            self.root.name()
        )
    }

    /// Checks a keyless signature layer: `pem` is its certificate annotation, `bundle` its
    /// bundle annotation, `signature` the decoded signature over `payload`. Returns who signed.
    pub fn verify(
        &self,
        pem: &str,
        bundle: Option<&str>,
        payload: &[u8],
        signature: &[u8],
    ) -> Result<String, KeylessRefusal> {
        let cert = SigningCert::from_pem(pem).map_err(|e| refuse("untrusted_certificate", e))?;
        let key_der = cert
            .public_key_der()
            .map_err(|e| refuse("untrusted_certificate", e))?;
        let key = PublicKey::from_spki_der("the certificate's key", &key_der).map_err(|e| {
            refuse(
                "untrusted_certificate",
                format!("the certificate holds {e}"),
            )
        })?;
        if !key.verifies(payload, signature) {
            return Err(refuse(
                "invalid_signature",
                "the signature does not verify with its certificate's key (payload tampered \
                 with)",
            ));
        }
        let Some(bundle) = bundle else {
            return Err(refuse(
                "tlog_invalid",
                format!(
                    "no {BUNDLE_ANNOTATION} annotation: without the transparency log's record \
                     nothing says the short-lived certificate was valid when it signed"
                ),
            ));
        };
        let attested = rekor::verify(&self.root, bundle, payload, signature, &cert.der).map_err(
            |e| match e {
                rekor::BundleError::Invalid(m) | rekor::BundleError::Mismatch(m) => {
                    refuse("tlog_invalid", m)
                }
            },
        )?;
        cert.check_issued(&self.root, attested.integrated_time)
            .map_err(|e| refuse("untrusted_certificate", e))?;
        let names = cert.identities();
        let Some(who) = names.iter().find(|n| self.identity.matches(n)) else {
            return Err(refuse(
                "identity_mismatch",
                format!(
                    "signed by {}, not by identity {}",
                    if names.is_empty() {
                        "a certificate with no e-mail or URI name".to_string()
                    } else {
                        names.join(", ")
                    },
                    self.identity
                ),
            ));
        };
        match cert.oidc_issuer() {
            Some(i) if i == self.issuer => {}
            Some(i) => {
                return Err(refuse(
                    "identity_mismatch",
                    format!(
                        "{who} signed with a certificate issued for OIDC issuer {i:?}, not {:?}",
                        self.issuer
                    ),
                ));
            }
            None => {
                return Err(refuse(
                    "identity_mismatch",
                    format!(
                        "{who}'s certificate names no OIDC issuer (extension \
                         1.3.6.1.4.1.57264.1.1/.8), so it cannot be {:?}",
                        self.issuer
                    ),
                ));
            }
        }
        Ok(format!(
            "{who} (issuer {}, Rekor log index {})",
            self.issuer, attested.log_index
        ))
    }
}
