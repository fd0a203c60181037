//! Public keys that signatures are checked against: ECDSA P-256, Ed25519 and RSA, read from PEM
//! files as `cosign generate-key-pair` writes them (`-----BEGIN PUBLIC KEY-----`, a PKIX
//! SubjectPublicKeyInfo).
//!
//! Each algorithm verifies the way cosign signs with it (sigstore's `LoadVerifier`): ECDSA over
//! SHA-256 with an ASN.1 DER signature, Ed25519 over the message itself, RSA PKCS#1 v1.5 over
//! SHA-256. A file that is anything else — a private key, a certificate, another curve — is
//! refused when the policy is loaded, before any image is looked at, with what it is and what
//! to give instead.

use std::fmt;
use std::path::{Path, PathBuf};

use p256::ecdsa::signature::Verifier as _;
use spki::der::Decode as _;
use spki::{ObjectIdentifier, SubjectPublicKeyInfoRef};

/// Largest key file read (a 4096-bit RSA public key in PEM is under 1 KiB).
const MAX_KEY_FILE: u64 = 64 * 1024;

const OID_EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// Why a key file was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read.
    #[error("{path}: cannot read the key file: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not what a public key file is.
    #[error("{path}: {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to give instead.
        problem: String,
    },
}

/// The algorithm of a key, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// ECDSA on P-256 with SHA-256 (cosign's default).
    EcdsaP256,
    /// Ed25519.
    Ed25519,
    /// RSA PKCS#1 v1.5 with SHA-256.
    Rsa,
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Algorithm::EcdsaP256 => "ECDSA P-256",
            Algorithm::Ed25519 => "Ed25519",
            Algorithm::Rsa => "RSA",
        })
    }
}

enum Inner {
    P256(p256::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
    Rsa(Box<rsa::pkcs1v15::VerifyingKey<sha2::Sha256>>),
}

/// A public key a signature may verify with, named after the file it came from.
pub struct PublicKey {
    name: String,
    inner: Inner,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({} {})", self.algorithm(), self.name)
    }
}

impl PublicKey {
    /// Reads a PEM public key file.
    pub fn load(path: &Path) -> Result<PublicKey, KeyError> {
        let read = |source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        };
        let Some(pem) = super::read_capped(path, MAX_KEY_FILE).map_err(read)? else {
            return Err(KeyError::Invalid {
                path: path.to_path_buf(),
                problem: format!(
                    "more than {MAX_KEY_FILE} bytes is no public key file; give the PEM public \
                     key, e.g. the cosign.pub that `cosign generate-key-pair` wrote"
                ),
            });
        };
        PublicKey::from_pem(&path.display().to_string(), &pem).map_err(|problem| {
            KeyError::Invalid {
                path: path.to_path_buf(),
                problem,
            }
        })
    }

    /// Parses a PEM public key; `name` says where it came from in messages. The error says
    /// what the text is instead and what to give.
    pub fn from_pem(name: &str, pem: &[u8]) -> Result<PublicKey, String> {
        let (label, der) = spki::der::pem::decode_vec(pem).map_err(|e| {
            format!(
                "not a PEM public key ({e}); give the file with `-----BEGIN PUBLIC KEY-----` \
                 that `cosign generate-key-pair` or `openssl pkey -pubout` wrote"
            )
        })?;
        if label != "PUBLIC KEY" {
            let what = if label.contains("PRIVATE KEY") {
                "a private key: never hand it to a mirror; give its public key (cosign.pub)"
            } else if label == "CERTIFICATE" {
                "a certificate; give the public key (`openssl x509 -pubkey -noout -in FILE`)"
            } else if label == "RSA PUBLIC KEY" {
                "a PKCS#1 RSA key; convert it (`openssl rsa -RSAPublicKey_in -pubout -in FILE`)"
            } else {
                "not a public key; give the PEM `PUBLIC KEY` file (cosign.pub)"
            };
            return Err(format!("PEM block {label:?} is {what}"));
        }
        PublicKey::from_spki_der(name, &der)
    }

    /// Parses a DER SubjectPublicKeyInfo (a certificate's or a transparency log's key).
    pub fn from_spki_der(name: &str, der: &[u8]) -> Result<PublicKey, String> {
        let spki = SubjectPublicKeyInfoRef::from_der(der).map_err(|e| {
            format!("the PUBLIC KEY block is not a valid SubjectPublicKeyInfo: {e}")
        })?;
        let bad = |e: spki::Error| format!("the {} key is invalid: {e}", algorithm_name(&spki));
        let inner = match spki.algorithm.oid {
            OID_EC => {
                let curve = spki.algorithm.parameters_oid().ok();
                if curve != Some(OID_P256) {
                    return Err(format!(
                        "an ECDSA key on curve {}; only P-256 (prime256v1) is supported",
                        curve.map_or("(none)".to_string(), |c| c.to_string())
                    ));
                }
                Inner::P256(p256::ecdsa::VerifyingKey::try_from(spki.clone()).map_err(bad)?)
            }
            OID_ED25519 => {
                Inner::Ed25519(ed25519_dalek::VerifyingKey::try_from(spki.clone()).map_err(bad)?)
            }
            OID_RSA => {
                let key = rsa::PublicKey::try_from(spki.clone()).map_err(bad)?;
                Inner::Rsa(Box::new(rsa::pkcs1v15::VerifyingKey::new(key)))
            }
            other => {
                return Err(format!(
                    "a key of algorithm {other}; supported: ECDSA P-256, Ed25519, RSA"
                ));
            }
        };
        Ok(PublicKey {
            name: name.to_string(),
            inner,
        })
    }

    /// Where the key came from (its file).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> Algorithm {
        match self.inner {
            Inner::P256(_) => Algorithm::EcdsaP256,
            Inner::Ed25519(_) => Algorithm::Ed25519,
            Inner::Rsa(_) => Algorithm::Rsa,
        }
    }

    /// Whether `signature` (raw bytes, base64 already decoded) signs `message` with this key.
    /// A signature of the wrong shape for the algorithm is simply not valid.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.inner {
            Inner::P256(k) => p256::ecdsa::Signature::from_der(signature)
                .is_ok_and(|s| k.verify(message, &s).is_ok()),
            Inner::Ed25519(k) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|s| k.verify_strict(message, &s).is_ok()),
            Inner::Rsa(k) => rsa::pkcs1v15::Signature::try_from(signature)
                .is_ok_and(|s| k.verify(message, &s).is_ok()),
        }
    }
}

fn algorithm_name(spki: &SubjectPublicKeyInfoRef<'_>) -> &'static str {
    match spki.algorithm.oid {
        OID_EC => "ECDSA",
        OID_ED25519 => "Ed25519",
        OID_RSA => "RSA",
        _ => "public",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key made by `cosign generate-key-pair`, from sigstore-rs's tests (Apache-2.0; see
    /// tests/fixtures/cosign/README.md).
    const COSIGN_PUB: &str = include_str!("../../tests/fixtures/cosign/cosign.pub");

    #[test]
    fn cosign_key_loads_as_p256() {
        let k = PublicKey::from_pem("cosign.pub", COSIGN_PUB.as_bytes()).unwrap();
        assert_eq!(k.algorithm(), Algorithm::EcdsaP256);
    }

    #[test]
    fn refusals_say_what_the_file_is() {
        let cases: [(&str, &str); 5] = [
            ("hello", "not a PEM public key"),
            (
                "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
                "a private key",
            ),
            (
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "a certificate",
            ),
            (
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                "not a valid SubjectPublicKeyInfo",
            ),
            // An ECDSA key on P-384 (openssl ecparam -name secp384r1).
            (
                include_str!("../../tests/fixtures/keys/p384.pub"),
                "curve 1.3.132.0.34",
            ),
        ];
        for (pem, want) in cases {
            let e = PublicKey::from_pem("k", pem.as_bytes()).unwrap_err();
            assert!(e.contains(want), "{pem:?}: {e}");
        }
    }

    #[test]
    fn an_oversized_file_or_endless_device_is_refused_without_reading_it_all() {
        let big = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(big.path(), vec![b'A'; MAX_KEY_FILE as usize + 1]).unwrap();
        // /dev/zero reports a size of 0 and never ends: a size check alone would read forever.
        for path in [big.path(), Path::new("/dev/zero")] {
            let e = PublicKey::load(path).unwrap_err().to_string();
            assert!(
                e.contains("more than 65536 bytes is no public key file"),
                "{e}"
            );
            assert!(e.contains(&path.display().to_string()), "{e}");
        }
        let fits = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(fits.path(), COSIGN_PUB).unwrap();
        assert_eq!(
            PublicKey::load(fits.path()).unwrap().algorithm(),
            Algorithm::EcdsaP256
        );
    }

    #[test]
    fn a_signature_of_the_wrong_shape_is_not_valid() {
        let k = PublicKey::from_pem("cosign.pub", COSIGN_PUB.as_bytes()).unwrap();
        assert!(!k.verifies(b"x", b""));
        assert!(!k.verifies(b"x", &[0x30; 300]));
    }
}
