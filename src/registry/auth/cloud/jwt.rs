//! The little of JWT that cloud identity needs: reading the expiry of a projected service
//! account token (to say "expired" before a token endpoint says something vaguer), and signing
//! a Google service-account assertion with RS256. Signing uses aws-lc-rs, the crypto library
//! rustls already builds for reqwest, so it costs no new dependency tree.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The `exp` claim of a JWT, if it is one and has it. Nothing is verified: only read, to tell a
/// user early that the token file they mounted is stale.
pub(super) fn expiry(token: &str) -> Option<SystemTime> {
    let payload = token.trim().split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?.as_u64()?;
    Some(UNIX_EPOCH + Duration::from_secs(exp))
}

/// Why a key could not sign.
#[derive(Debug, thiserror::Error)]
pub(super) enum SignError {
    /// Not a PEM private key.
    #[error("the private key is not PEM PKCS#8")]
    NotPem,
    /// PEM, but not an RSA key aws-lc accepts.
    #[error("the private key is not a usable RSA key ({0})")]
    BadKey(String),
    /// Signing itself failed.
    #[error("signing failed")]
    Sign,
}

/// `header.claims.signature` signed RS256 with a PEM PKCS#8 RSA key (Google's key files).
pub(super) fn sign_rs256(claims: &serde_json::Value, key_pem: &str) -> Result<String, SignError> {
    use aws_lc_rs::{rand, signature};
    use rustls_pki_types::PrivatePkcs8KeyDer;
    use rustls_pki_types::pem::PemObject;

    let der =
        PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|_| SignError::NotPem)?;
    let key = signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
        .map_err(|e| SignError::BadKey(e.to_string()))?;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{body}");
    let mut sig = vec![0; key.public_modulus_len()];
    key.sign(
        &signature::RSA_PKCS1_SHA256,
        &rand::SystemRandom::new(),
        signing_input.as_bytes(),
        &mut sig,
    )
    .map_err(|_| SignError::Sign)?;
    Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_expiry_of_a_jwt() {
        let claims = URL_SAFE_NO_PAD.encode(br#"{"sub":"x","exp":1700000000}"#);
        let token = format!("e30.{claims}.sig\n");
        assert_eq!(
            expiry(&token),
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        assert_eq!(expiry("not a jwt"), None);
        assert_eq!(expiry("a.b.c"), None);
    }

    #[test]
    fn garbage_keys_are_refused() {
        let claims = serde_json::json!({"a": 1});
        assert!(matches!(
            sign_rs256(&claims, "no key here"),
            Err(SignError::NotPem)
        ));
    }
}
