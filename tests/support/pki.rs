//! Test certificates made with rcgen: a private CA, a server certificate for 127.0.0.1, client
//! certificates (mTLS) and a stray key, written as PEM files for a registry and for crossdock.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};

/// A CA that signs server and client certificates.
pub(crate) struct TestCa {
    /// The CA certificate (PEM file).
    pub cert: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    dir: PathBuf,
}

/// A certificate and its key, as PEM files.
pub(crate) struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    /// A new CA named `name`, its certificate written to `dir/NAME-ca.pem`.
    pub(crate) fn new(dir: &Path, name: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("crossdock test CA {name}"));
        let cert = params.self_signed(&key).unwrap();
        let path = dir.join(format!("{name}-ca.pem"));
        fs::write(&path, cert.pem()).unwrap();
        TestCa {
            cert: path,
            issuer: Issuer::new(params, key),
            dir: dir.to_path_buf(),
        }
    }

    /// A server certificate for 127.0.0.1 (`NAME.pem`, `NAME-key.pem`).
    pub(crate) fn server(&self, name: &str) -> Pair {
        let params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        self.sign(name, params)
    }

    /// A client certificate (`clientAuth`) for `name`.
    pub(crate) fn client(&self, name: &str) -> Pair {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(name, params)
    }

    fn sign(&self, name: &str, params: CertificateParams) -> Pair {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let pair = Pair {
            cert: self.dir.join(format!("{name}.pem")),
            key: self.dir.join(format!("{name}-key.pem")),
        };
        fs::write(&pair.cert, cert.pem()).unwrap();
        fs::write(&pair.key, key.serialize_pem()).unwrap();
        pair
    }
}

/// A private key that belongs to no certificate, written to `dir/NAME-key.pem`.
pub(crate) fn stray_key(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(format!("{name}-key.pem"));
    fs::write(&path, KeyPair::generate().unwrap().serialize_pem()).unwrap();
    path
}
