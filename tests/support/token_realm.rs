//! The signing half of a registry token service, for tests whose token realm is an in-test
//! server (cloud identity flows nothing real can play: ACR's `/oauth2/token`, Google's
//! `oauth2accesstoken` realm). The registry stays real: distribution with `auth.token`
//! ([`super::TestRegistryBuilder::token_auth`]) verifies every token this signs — ES256, the
//! certificate in the `x5c` header, checked against the bundle the registry trusts — and grants
//! exactly the `access` claims, so a token for the wrong repository or action fails there.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

/// Issuer name written into tokens and the registry's config.
pub(crate) const ISSUER: &str = "crossdock-test-issuer";

/// Signs registry tokens for one service.
pub(crate) struct TokenSigner {
    key: EcdsaKeyPair,
    cert_der: Vec<u8>,
    bundle: PathBuf,
    service: String,
}

impl TokenSigner {
    /// A fresh key and self-signed certificate; the certificate is written to `dir` as the
    /// registry's `rootcertbundle`.
    pub(crate) fn new(dir: &Path, service: &str) -> TokenSigner {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["token-signer.test".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let bundle = dir.join("token-signer.pem");
        std::fs::write(&bundle, cert.pem()).unwrap();
        TokenSigner {
            key: EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key.serialize_der())
                .unwrap(),
            cert_der: cert.der().to_vec(),
            bundle,
            service: service.to_string(),
        }
    }

    /// The certificate bundle the registry must trust.
    pub(crate) fn bundle(&self) -> &Path {
        &self.bundle
    }

    /// The `service` (audience).
    pub(crate) fn service(&self) -> &str {
        &self.service
    }

    /// A registry token for `subject` granting `scopes` (`repository:NAME:ACTIONS`), valid for
    /// `lifetime_s` seconds.
    pub(crate) fn sign(&self, subject: &str, scopes: &[String], lifetime_s: u64) -> String {
        let access: Vec<serde_json::Value> = scopes
            .iter()
            .filter_map(|s| {
                let (kind, rest) = s.split_once(':')?;
                let (name, actions) = rest.rsplit_once(':')?;
                Some(serde_json::json!({
                    "type": kind, "name": name,
                    "actions": actions.split(',').collect::<Vec<_>>(),
                }))
            })
            .collect();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = serde_json::json!({
            "alg": "ES256", "typ": "JWT", "x5c": [STANDARD.encode(&self.cert_der)],
        });
        let claims = serde_json::json!({
            "iss": ISSUER, "sub": subject, "aud": self.service,
            "exp": now + lifetime_s, "nbf": now - 10, "iat": now,
            "jti": format!("{now}-{}", rand_suffix()), "access": access,
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self
            .key
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// The scopes of a token request: repeated `scope` query parameters (GET) or one
/// space-separated `scope` form field (POST).
pub(crate) fn scopes(pairs: &[(String, String)]) -> Vec<String> {
    pairs
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_string))
        .filter(|s| !s.is_empty())
        .collect()
}

/// The two ends of a cloud identity test: a real registry trusting `signer`'s tokens, with its
/// token realm at `realm`, and a plain source registry holding `image` as `app:v1`.
pub(crate) async fn target_and_source(
    realm: &str,
    signer: &TokenSigner,
    image: &super::BuiltImage,
) -> (super::TestRegistry, super::TestRegistry) {
    let target = super::TestRegistry::builder()
        .token_auth(realm, signer.service(), ISSUER, signer.bundle())
        .start();
    let source = super::TestRegistry::start();
    source.client().push_image("app", "v1", image).await;
    (target, source)
}
