//! The Fulcio signing certificate of a keyless signature: that a certificate authority of the
//! trust root issued it, that it was valid at a given time, and who it names (the subject
//! alternative name and the OIDC issuer extension).
//!
//! Fulcio certificates are short-lived (ten minutes): "valid at the time" is always checked at
//! the time the transparency log attests, never now. Every certificate of the trust root is a
//! trust anchor, as in sigstore's own verifiers, so a leaf is accepted when one of them signed
//! it and was valid then. The `dev.sigstore.cosign/chain` annotation is not needed and not
//! believed: what the registry serves decides nothing about trust.
//!
//! Signature algorithms: ECDSA P-256 with SHA-256 and P-384 with SHA-384, what Fulcio
//! instances sign with; anything else is refused by name.

use chrono::{DateTime, Utc};
use p256::ecdsa::signature::Verifier as _;
use x509_cert::Certificate;
use x509_cert::der::asn1::Utf8StringRef;
use x509_cert::der::{Decode as _, Encode as _};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{BasicConstraints, SubjectAltName};
use x509_cert::spki::ObjectIdentifier;

use super::root::TrustRoot;

const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
/// Fulcio's OIDC issuer extension, v1: the raw issuer URL as the extension's bytes.
const OID_ISSUER_V1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.1");
/// Fulcio's OIDC issuer extension, v2: a DER UTF8String.
const OID_ISSUER_V2: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.8");

/// A parsed signing certificate.
pub(crate) struct SigningCert {
    pub(crate) cert: Certificate,
    pub(crate) der: Vec<u8>,
}

impl SigningCert {
    /// Parses the PEM of the `dev.sigstore.cosign/certificate` annotation.
    pub(crate) fn from_pem(pem: &str) -> Result<SigningCert, String> {
        let (label, der) = x509_cert::der::pem::decode_vec(pem.as_bytes())
            .map_err(|e| format!("the certificate annotation is not PEM: {e}"))?;
        if label != "CERTIFICATE" {
            return Err(format!(
                "the certificate annotation holds a {label:?} block, not a CERTIFICATE"
            ));
        }
        let cert = Certificate::from_der(&der)
            .map_err(|e| format!("the certificate annotation is not X.509: {e}"))?;
        Ok(SigningCert { cert, der })
    }

    /// The certificate's public key as SubjectPublicKeyInfo DER.
    pub(crate) fn public_key_der(&self) -> Result<Vec<u8>, String> {
        self.cert
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .map_err(|e| format!("the certificate's public key cannot be encoded: {e}"))
    }

    /// Checks that a certificate authority of `root` issued this certificate, that it is a
    /// leaf and that it and its issuer were valid at `at`.
    pub(crate) fn check_issued(&self, root: &TrustRoot, at: DateTime<Utc>) -> Result<(), String> {
        let tbs = self.cert.tbs_certificate();
        if !valid_at(&self.cert, at) {
            return Err(format!(
                "the certificate was not valid at {at} (the time the transparency log \
                 recorded the signature): valid from {} to {}",
                tbs.validity().not_before,
                tbs.validity().not_after
            ));
        }
        if let Ok(Some((_, bc))) = tbs.get_extension::<BasicConstraints>()
            && bc.ca
        {
            return Err("the signing certificate is a CA certificate, not a leaf".into());
        }
        let mut why = Vec::new();
        for ca in &root.authorities {
            for issuer in &ca.certificates {
                if issuer.tbs_certificate().subject() != tbs.issuer() {
                    continue;
                }
                if !ca.valid.contains(at) || !valid_at(issuer, at) {
                    why.push(format!(
                        "its issuer {} was not valid at {at}",
                        issuer.tbs_certificate().subject()
                    ));
                    continue;
                }
                match signed_by(&self.cert, issuer) {
                    Ok(()) => return Ok(()),
                    Err(e) => why.push(e),
                }
            }
        }
        if why.is_empty() {
            why.push(format!(
                "no certificate authority of {} is named {}",
                root.name(),
                tbs.issuer()
            ));
        }
        Err(format!(
            "the certificate does not chain to the trust root: {}",
            why.join("; ")
        ))
    }

    /// The subject alternative names: e-mail addresses and URIs (what Fulcio puts there).
    pub(crate) fn identities(&self) -> Vec<String> {
        let Ok(Some((_, san))) = self
            .cert
            .tbs_certificate()
            .get_extension::<SubjectAltName>()
        else {
            return Vec::new();
        };
        san.0
            .iter()
            .filter_map(|n| match n {
                GeneralName::Rfc822Name(s) | GeneralName::UniformResourceIdentifier(s) => {
                    Some(s.to_string())
                }
                _ => None,
            })
            .collect()
    }

    /// The OIDC issuer Fulcio recorded: the v2 extension (a UTF8String) or else the v1 one
    /// (raw bytes).
    pub(crate) fn oidc_issuer(&self) -> Option<String> {
        let exts = self.cert.tbs_certificate().extensions()?;
        let value = |oid| {
            exts.iter()
                .find(|e| e.extn_id == oid)
                .map(|e| e.extn_value.as_bytes())
        };
        if let Some(v) = value(OID_ISSUER_V2) {
            return Utf8StringRef::from_der(v).ok().map(|s| s.to_string());
        }
        value(OID_ISSUER_V1).and_then(|v| String::from_utf8(v.to_vec()).ok())
    }
}

fn valid_at(cert: &Certificate, at: DateTime<Utc>) -> bool {
    let v = cert.tbs_certificate().validity();
    let secs = |t: x509_cert::time::Time| t.to_unix_duration().as_secs() as i64;
    let t = at.timestamp();
    secs(v.not_before) <= t && t <= secs(v.not_after)
}

/// Whether `issuer`'s key made `cert`'s signature.
fn signed_by(cert: &Certificate, issuer: &Certificate) -> Result<(), String> {
    let tbs = cert
        .tbs_certificate()
        .to_der()
        .map_err(|e| format!("the certificate cannot be encoded: {e}"))?;
    let sig = cert.signature().raw_bytes();
    let spki = issuer.tbs_certificate().subject_public_key_info();
    let spki_der = spki
        .to_der()
        .map_err(|e| format!("the issuer's key cannot be encoded: {e}"))?;
    let alg = cert.signature_algorithm().oid;
    let ok = match alg {
        ECDSA_SHA256 => {
            use p256::pkcs8::DecodePublicKey as _;
            let key = p256::ecdsa::VerifyingKey::from_public_key_der(&spki_der)
                .map_err(|_| "the issuer's key is not P-256 (the signature is ECDSA SHA-256)")?;
            p256::ecdsa::Signature::from_der(sig).is_ok_and(|s| key.verify(&tbs, &s).is_ok())
        }
        ECDSA_SHA384 => {
            use p384::pkcs8::DecodePublicKey as _;
            let key = p384::ecdsa::VerifyingKey::from_public_key_der(&spki_der)
                .map_err(|_| "the issuer's key is not P-384 (the signature is ECDSA SHA-384)")?;
            p384::ecdsa::Signature::from_der(sig).is_ok_and(|s| key.verify(&tbs, &s).is_ok())
        }
        other => {
            return Err(format!(
                "the certificate is signed with algorithm {other}; supported: ECDSA P-256 \
                 SHA-256, ECDSA P-384 SHA-384"
            ));
        }
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the signature of {} does not verify with its key",
            issuer.tbs_certificate().subject()
        ))
    }
}
