//! TLS material for one registry: extra CA certificates, a client certificate (mTLS), and
//! Docker's `certs.d` folders, read as docker and skopeo read them.
//!
//! A `certs.d` folder is `ROOT/HOST[:PORT]/` holding `*.crt` (CA certificates, trusted besides
//! the system roots) and `NAME.cert` + `NAME.key` pairs (a client certificate and its key). The
//! roots are, as in skopeo, `/etc/containers/certs.d` then `/etc/docker/certs.d` — the first
//! that has a folder for the registry wins — or the list in `CROSSDOCK_CERTS_D`
//! (colon-separated; what `--certs-d` sets). A `.cert` without its `.key` (or the reverse) is an
//! error, as in docker. Explicit settings (`ca_file`, `client_cert`/`client_key`) come first:
//! the folder's CAs are added to `ca_file`'s, and its client certificate is used only when none
//! is configured. With several pairs in one folder the first by name is used.
//!
//! Everything is read and checked when the registry's client is built, so a missing file or a
//! key that does not belong to its certificate is a configuration error naming the file, not a
//! handshake failure later.

use std::fs;
use std::path::{Path, PathBuf};

/// The `certs.d` roots searched by default, in order.
pub const DEFAULT_CERTS_D: [&str; 2] = ["/etc/containers/certs.d", "/etc/docker/certs.d"];
/// The environment variable that replaces [`DEFAULT_CERTS_D`] (a `:`-separated list).
pub const CERTS_D_ENV: &str = "CROSSDOCK_CERTS_D";

/// A client certificate (PEM, the leaf first, then any intermediates) and its private key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCertificate {
    /// The certificate file.
    pub cert: PathBuf,
    /// The private key file (PKCS#8, PKCS#1 or SEC1 PEM).
    pub key: PathBuf,
}

/// Where `certs.d` folders are looked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CertsD {
    /// `CROSSDOCK_CERTS_D` when set, else [`DEFAULT_CERTS_D`].
    #[default]
    Environment,
    /// These roots, in order.
    Roots(Vec<PathBuf>),
}

/// A TLS file that cannot be used; the message names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TlsError {
    message: String,
    /// The problem is with a client key (its file, or its match with the certificate), so a
    /// configuration error belongs at `client_key` rather than `client_cert`.
    pub about_key: bool,
}

fn tls_error(message: String) -> TlsError {
    TlsError {
        message,
        about_key: false,
    }
}

fn key_error(message: String) -> TlsError {
    TlsError {
        message,
        about_key: true,
    }
}

impl CertsD {
    /// The roots, reading the environment through `var` for [`CertsD::Environment`].
    pub fn roots(&self, var: impl Fn(&str) -> Option<String>) -> Vec<PathBuf> {
        match self {
            CertsD::Roots(r) => r.clone(),
            CertsD::Environment => match var(CERTS_D_ENV).filter(|v| !v.trim().is_empty()) {
                Some(list) => std::env::split_paths(&list).collect(),
                None => DEFAULT_CERTS_D.iter().map(PathBuf::from).collect(),
            },
        }
    }

    /// The folder for `registry` (as named in references): `ROOT/NAME` in the first root that
    /// has one, trying the API host too where it differs (`registry-1.docker.io`).
    pub fn folder(&self, registry: &str, var: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
        if registry.is_empty() {
            return None;
        }
        let api_host = crate::reference::api_host(registry);
        let names = [registry, api_host];
        self.roots(var)
            .into_iter()
            .find_map(|root| names.iter().map(|n| root.join(n)).find(|dir| dir.is_dir()))
    }
}

/// What one `certs.d` folder holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertsFolder {
    /// The folder.
    pub dir: PathBuf,
    /// `*.crt` files, by name.
    pub cas: Vec<PathBuf>,
    /// The first `NAME.cert` + `NAME.key` pair, by name.
    pub client: Option<ClientCertificate>,
}

/// Lists a `certs.d` folder as docker does: `*.crt` are CAs, `NAME.cert` needs `NAME.key` and
/// the other way round; other files are ignored.
pub fn read_folder(dir: &Path) -> Result<CertsFolder, TlsError> {
    let entries = fs::read_dir(dir)
        .map_err(|e| tls_error(format!("cannot read certs.d folder {}: {e}", dir.display())))?;
    let mut names: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    names.sort();
    let mut out = CertsFolder {
        dir: dir.to_path_buf(),
        ..CertsFolder::default()
    };
    for path in &names {
        match path.extension().and_then(|e| e.to_str()) {
            Some("crt") => out.cas.push(path.clone()),
            Some("cert") => {
                let key = path.with_extension("key");
                if !key.is_file() {
                    return Err(tls_error(format!(
                        "missing key {} for client certificate {} (CA certificates must end in .crt)",
                        key.display(),
                        path.display()
                    )));
                }
                out.client.get_or_insert(ClientCertificate {
                    cert: path.clone(),
                    key,
                });
            }
            Some("key") => {
                let cert = path.with_extension("cert");
                if !cert.is_file() {
                    return Err(tls_error(format!(
                        "missing client certificate {} for key {}",
                        cert.display(),
                        path.display()
                    )));
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|e| tls_error(format!("cannot read {what} {}: {e}", path.display())))
}

/// The CA certificates in a PEM file (at least one).
pub fn ca_certificates(path: &Path) -> Result<Vec<reqwest::Certificate>, TlsError> {
    let pem = read(path, "CA file")?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| tls_error(format!("CA file {} is not PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(tls_error(format!(
            "CA file {} holds no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

fn has_block(pem: &[u8], label_end: &[u8]) -> bool {
    pem.windows(label_end.len()).any(|w| w == label_end)
}

/// Reads a client certificate and its key, and checks that they belong together (the key is
/// the private half of the certificate's public key).
pub fn client_identity(c: &ClientCertificate) -> Result<reqwest::Identity, TlsError> {
    let cert = read(&c.cert, "client certificate")?;
    let key = read(&c.key, "client key").map_err(|e| key_error(e.message))?;
    if !has_block(&cert, b"-----BEGIN CERTIFICATE-----") {
        return Err(tls_error(format!(
            "client certificate {} holds no PEM certificate",
            c.cert.display()
        )));
    }
    if !has_block(&key, b"PRIVATE KEY-----") {
        return Err(key_error(format!(
            "client key {} holds no PEM private key",
            c.key.display()
        )));
    }
    let mut both = cert;
    both.push(b'\n');
    both.extend_from_slice(&key);
    let identity = reqwest::Identity::from_pem(&both).map_err(|e| {
        tls_error(format!(
            "client certificate {} with key {}: {e}",
            c.cert.display(),
            c.key.display()
        ))
    })?;
    // rustls compares the key with the certificate's public key when a client is built with
    // them; a throwaway client finds a mismatch now rather than at the first handshake.
    reqwest::Client::builder()
        .no_proxy()
        .identity(identity.clone())
        .build()
        .map_err(|e| {
            key_error(format!(
                "client key {} does not match client certificate {} ({}); give the key the \
                 certificate was issued for",
                c.key.display(),
                c.cert.display(),
                super::network::error_chain(&e)
            ))
        })?;
    Ok(identity)
}

/// The TLS material of one registry, read and checked.
pub(super) struct TlsMaterial {
    /// Trusted besides the system roots.
    pub(super) roots: Vec<reqwest::Certificate>,
    /// The client certificate presented, and where it came from.
    pub(super) identity: Option<(reqwest::Identity, ClientCertificate)>,
}

impl TlsMaterial {
    /// Reads `ca_file`, the client certificate (configured, else the folder's) and the
    /// folder's CAs.
    pub(super) fn load(
        ca_file: Option<&Path>,
        client: Option<&ClientCertificate>,
        folder: Option<&CertsFolder>,
    ) -> Result<Self, TlsError> {
        let mut roots = Vec::new();
        for path in ca_file.into_iter().chain(
            folder
                .iter()
                .flat_map(|f| f.cas.iter().map(PathBuf::as_path)),
        ) {
            roots.extend(ca_certificates(path)?);
        }
        let client = client.or(folder.and_then(|f| f.client.as_ref()));
        let identity = match client {
            Some(c) => Some((client_identity(c)?, c.clone())),
            None => None,
        };
        Ok(TlsMaterial { roots, identity })
    }
}

/// Whether a TLS failure reads as the registry asking for (or refusing) a client certificate:
/// the alerts rustls reports for Go's `RequireAndVerifyClientCert` (TLS 1.3 sends
/// `certificate_required`, TLS 1.2 `bad_certificate`).
pub(super) fn is_client_certificate_refusal(chain: &str) -> bool {
    [
        "CertificateRequired",
        "BadCertificate",
        "certificate required",
    ]
    .iter()
    .any(|s| chain.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certs_d_folders_as_docker_lists_them() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("registry.example:5000");
        fs::create_dir(&dir).unwrap();
        for f in ["ca.crt", "b.cert", "b.key", "a.cert", "a.key", "README"] {
            fs::write(dir.join(f), "x").unwrap();
        }
        let roots = CertsD::Roots(vec![root.path().join("absent"), root.path().to_path_buf()]);
        let found = roots.folder("registry.example:5000", |_| None).unwrap();
        assert_eq!(found, dir);
        assert_eq!(roots.folder("other.example", |_| None), None);
        let f = read_folder(&found).unwrap();
        assert_eq!(f.cas, vec![dir.join("ca.crt")]);
        assert_eq!(f.client.unwrap().cert, dir.join("a.cert"));

        fs::remove_file(dir.join("a.key")).unwrap();
        let e = read_folder(&dir).unwrap_err().to_string();
        assert!(e.contains("missing key") && e.contains("a.cert"), "{e}");
        fs::remove_file(dir.join("a.cert")).unwrap();
        fs::remove_file(dir.join("b.cert")).unwrap();
        let e = read_folder(&dir).unwrap_err().to_string();
        assert!(
            e.contains("missing client certificate") && e.contains("b.key"),
            "{e}"
        );
    }

    #[test]
    fn roots_from_the_environment() {
        let env = |v: &'static str| move |k: &str| (k == CERTS_D_ENV).then(|| v.to_string());
        assert_eq!(
            CertsD::Environment.roots(env("/a:/b")),
            vec![PathBuf::from("/a"), PathBuf::from("/b")]
        );
        assert_eq!(
            CertsD::Environment.roots(|_| None),
            vec![
                PathBuf::from("/etc/containers/certs.d"),
                PathBuf::from("/etc/docker/certs.d")
            ]
        );
    }

    #[test]
    fn a_key_must_belong_to_its_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["client".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let c = ClientCertificate {
            cert: dir.path().join("client.cert"),
            key: dir.path().join("client.key"),
        };
        fs::write(&c.cert, cert.pem()).unwrap();
        fs::write(&c.key, key.serialize_pem()).unwrap();
        client_identity(&c).expect("a matching pair");
        fs::write(&c.key, rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
        let e = client_identity(&c).unwrap_err();
        assert!(e.about_key, "{e}");
        assert!(
            e.to_string().contains("does not match client certificate"),
            "{e}"
        );
    }

    #[test]
    fn unusable_client_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("client.cert");
        let key = dir.path().join("client.key");
        let c = ClientCertificate {
            cert: cert.clone(),
            key: key.clone(),
        };
        let e = client_identity(&c).unwrap_err().to_string();
        assert!(e.contains("client.cert"), "{e}");
        fs::write(&cert, "not pem").unwrap();
        fs::write(&key, "not pem").unwrap();
        let e = client_identity(&c).unwrap_err().to_string();
        assert!(
            e.contains("client.cert") && e.contains("no PEM certificate"),
            "{e}"
        );
    }
}
