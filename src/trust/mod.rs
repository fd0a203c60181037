//! Signature policy: mirror only images that a trusted key signed.
//!
//! A mirror is a supply-chain control point, so the check happens before anything is copied:
//! `crossdock import --verify-key FILE` and a rule's `verify_keys = [...]` give the keys, and
//! [`Policy::admit`] resolves the source to its digest, looks for cosign signatures of that
//! digest ([`signature`]) and either returns the source **pinned to that digest** — so the copy
//! reads exactly the image that was checked, even if the tag moves meanwhile — or a
//! [`Refusal`] that says why, counted in `crossdock_images_refused_total{reason}`.
//!
//! With a platform filter the signature checked is the one over the source's index digest: that
//! is what the publisher signed; the filtered index written to the target is crossdock's own and
//! carries no signature. Signatures themselves are copied with the image by the copy engine's
//! referrer handling (the `.sig` tag and OCI referrers), unless referrers are turned off.
//!
//! Keyless signatures (a Fulcio certificate and a Rekor bundle instead of a key) are admitted
//! when the policy has a [`Keyless`] part: a Sigstore trust root read from a file and the
//! identity and OIDC issuer the certificate must name ([`keyless`]). Keys and keyless may be
//! combined: a signature that verifies with either is enough.

pub mod key;
pub mod keyless;
pub mod signature;

use std::io::Read as _;
use std::path::{Path, PathBuf};

pub use key::{KeyError, PublicKey};
pub use keyless::{Identity, Keyless, TrustRoot};
pub use signature::Verified;

use crate::digest::Digest;
use crate::reference::Reference;
use crate::registry::{RegistryError, Transport};

/// What an image must be signed with: one of the keys, or a certificate the keyless part
/// trusts.
#[derive(Debug)]
pub struct Policy {
    keys: Vec<PublicKey>,
    keyless: Option<Keyless>,
}

/// Why an image was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// No signature was found at all.
    #[error(
        "{image} is not signed: no cosign signature at {sig_tag} nor among its OCI referrers; \
         sign it (`cosign sign --key cosign.key {image}`) or drop the signature policy"
    )]
    Unsigned {
        /// The image, pinned to its digest.
        image: String,
        /// The tag looked at.
        sig_tag: String,
    },
    /// Signatures were found, none verifies for this image with a trusted key or identity.
    #[error("{image} has no valid signature by a trusted signer: {}", problems.join("; "))]
    Invalid {
        /// The image, pinned to its digest.
        image: String,
        /// Why each signature was refused.
        problems: Vec<String>,
        /// The metric reason: `invalid_signature`, or the keyless check every signature
        /// failed (`tlog_invalid`, `untrusted_certificate`, `identity_mismatch`).
        reason: &'static str,
    },
    /// The signatures could not be read (registry error), so nothing is known.
    #[error("{image}: could not read its signatures: {}", problems.join("; "))]
    Lookup {
        /// The image.
        image: String,
        /// What failed.
        problems: Vec<String>,
    },
    /// The image itself could not be resolved to a digest.
    #[error("{image}: cannot resolve the image to check its signature: {error}")]
    Resolve {
        /// The image as asked.
        image: String,
        /// The registry's error.
        error: Box<RegistryError>,
    },
}

impl Refusal {
    /// The `reason` label of `crossdock_images_refused_total`: `unsigned`,
    /// `invalid_signature`, `lookup_failed`, or for keyless signatures `tlog_invalid`,
    /// `untrusted_certificate` or `identity_mismatch`.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Unsigned { .. } => "unsigned",
            Refusal::Invalid { reason, .. } => reason,
            Refusal::Lookup { .. } | Refusal::Resolve { .. } => "lookup_failed",
        }
    }
}

impl Policy {
    /// Loads every key file: `None` when there are none (no policy); all bad files are
    /// reported, not only the first.
    pub fn load(paths: &[PathBuf]) -> Result<Option<Policy>, Vec<KeyError>> {
        let mut keys = Vec::new();
        let mut errors = Vec::new();
        for p in paths {
            match PublicKey::load(p) {
                Ok(k) => keys.push(k),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(Policy::new(keys))
        } else {
            Err(errors)
        }
    }

    /// A policy of these keys; `None` for no keys (a policy that admits nothing is a mistake).
    pub fn new(keys: Vec<PublicKey>) -> Option<Policy> {
        Policy::with_keyless(keys, None)
    }

    /// A policy of these keys and a keyless part; `None` when both are empty.
    pub fn with_keyless(keys: Vec<PublicKey>, keyless: Option<Keyless>) -> Option<Policy> {
        (!keys.is_empty() || keyless.is_some()).then_some(Policy { keys, keyless })
    }

    /// The keyless part, if any.
    pub fn keyless(&self) -> Option<&Keyless> {
        self.keyless.as_ref()
    }

    /// The trusted keys.
    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// The trusted keys, taken out.
    pub fn into_keys(self) -> Vec<PublicKey> {
        self.keys
    }

    /// Checks `source` (in the registry `src` serves) and returns it pinned to the digest whose
    /// signature verified. Refusals are counted in the metrics and logged.
    pub async fn admit(
        &self,
        src: &dyn Transport,
        source: &Reference,
    ) -> Result<(Reference, Verified), Refusal> {
        let r = self.check(src, source).await;
        match &r {
            Ok((pinned, v)) => {
                tracing::info!(image = %pinned, key = %v.key, at = %v.found_at, "signature verified")
            }
            Err(e) => {
                crate::metrics::record_refused(e.reason());
                tracing::debug!(image = %source, reason = e.reason(), error = %e, "image refused");
            }
        }
        r
    }

    async fn check(
        &self,
        src: &dyn Transport,
        source: &Reference,
    ) -> Result<(Reference, Verified), Refusal> {
        let repo = source.repository();
        let digest = match source.digest() {
            Some(d) => d.clone(),
            None => resolve(src, source).await?,
        };
        let pinned = source.with_digest(digest.clone());
        let trusted = signature::Trusted {
            keys: &self.keys,
            keyless: self.keyless.as_ref(),
        };
        let found = signature::find(src, repo, &digest, trusted).await;
        if let Some(v) = found.verified {
            return Ok((pinned, v));
        }
        let image = pinned.to_string();
        if found.lookup_errors > 0 {
            return Err(Refusal::Lookup {
                image,
                problems: found.problems,
            });
        }
        if found.problems.is_empty() {
            return Err(Refusal::Unsigned {
                image,
                sig_tag: format!(":{}.sig", digest.tag_form()),
            });
        }
        Err(Refusal::Invalid {
            image,
            reason: found.reason(),
            problems: found.problems,
        })
    }
}

/// Reads a file of at most `max` bytes; `None` when it holds more. Reads through a limit rather
/// than trusting the file's size, so a device or a pipe given by mistake (`/dev/zero`) is
/// refused after `max + 1` bytes instead of filling memory.
pub(crate) fn read_capped(path: &Path, max: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(max + 1)
        .read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= max).then_some(bytes))
}

async fn resolve(src: &dyn Transport, source: &Reference) -> Result<Digest, Refusal> {
    let failed = |error: RegistryError| Refusal::Resolve {
        image: source.to_string(),
        error: Box::new(error),
    };
    let tag = source.manifest_reference();
    match src.manifest_head(source.repository(), &tag).await {
        Ok(Some(h)) => Ok(h.digest),
        // Some registries answer HEAD poorly; the GET verifies the bytes it returns.
        Ok(None) => Err(failed(RegistryError::new(
            crate::registry::ErrorKind::NotFound,
            "resolve the source",
            source.to_string(),
        ))),
        Err(e) => match src.manifest_get(source.repository(), &tag).await {
            Ok(m) => Ok(m.digest().clone()),
            Err(_) => Err(failed(e)),
        },
    }
}

#[cfg(test)]
mod tests;
