//! The network keys of a `[registries."HOST"]` table: `proxy`, `client_cert`/`client_key`, and
//! the registry's `certs.d` folder (found through `CROSSDOCK_CERTS_D` or the default roots).
//!
//! Checked at load as far as the network is not needed: the proxy URL parses, both halves of a
//! client certificate are given, readable PEM and belong together, and a `certs.d` folder for
//! the registry is complete — so a daemon never starts with a certificate it cannot present.

use std::collections::BTreeMap;
use std::path::Path;

use super::credentials::read_named_file;
use super::error::{KeyPath, Problems};
use super::plan::RegistrySettings;
use super::raw::RawRegistry;
use crate::registry::http::{
    CertsD, ClientCertificate, ProxySetting, ca_certificates, client_identity, read_folder,
};

/// Resolves the network keys of `raw` into `s`, recording problems under `path`.
pub(super) fn network(
    host: &str,
    raw: &RawRegistry,
    base: &Path,
    env: &BTreeMap<String, String>,
    path: &KeyPath,
    problems: &mut Problems<'_>,
    s: &mut RegistrySettings,
) {
    if let Some(p) = &raw.proxy {
        match ProxySetting::parse(&p.0) {
            Ok(p) => s.proxy = p,
            Err(e) => problems.add(&path.key("proxy"), e),
        }
    }
    s.client_certificate = client_certificate(raw, base, path, problems);
    if s.insecure && s.client_certificate.is_some() {
        problems.add(
            &path.key("insecure"),
            "insecure = true means plain HTTP, where client_cert and client_key have no \
             effect; remove one or the other",
        );
    }
    certs_folder(host, env, path, problems);
}

fn client_certificate(
    raw: &RawRegistry,
    base: &Path,
    path: &KeyPath,
    problems: &mut Problems<'_>,
) -> Option<ClientCertificate> {
    let (cert, key) = match (&raw.client_cert, &raw.client_key) {
        (None, None) => return None,
        (Some(_), None) => {
            problems.missing(
                &path.key("client_key"),
                "client_cert needs the file of its private key in client_key",
            );
            return None;
        }
        (None, Some(_)) => {
            problems.missing(
                &path.key("client_cert"),
                "client_key needs the certificate file it belongs to in client_cert",
            );
            return None;
        }
        (Some(c), Some(k)) => (c, k),
    };
    let cert = read_named_file(base, cert, &path.key("client_cert"), problems);
    let key = read_named_file(base, key, &path.key("client_key"), problems);
    let (Some((cert, _)), Some((key, _))) = (cert, key) else {
        return None;
    };
    let c = ClientCertificate { cert, key };
    match client_identity(&c) {
        Ok(_) => Some(c),
        Err(e) => {
            let key = if e.about_key {
                "client_key"
            } else {
                "client_cert"
            };
            problems.add(&path.key(key), e);
            None
        }
    }
}

/// Checks the registry's `certs.d` folder, if it has one, as the transport will read it.
fn certs_folder(
    host: &str,
    env: &BTreeMap<String, String>,
    path: &KeyPath,
    problems: &mut Problems<'_>,
) {
    let Some(dir) = CertsD::Environment.folder(host, |k| env.get(k).cloned()) else {
        return;
    };
    let checked = read_folder(&dir).and_then(|f| {
        for ca in &f.cas {
            ca_certificates(ca)?;
        }
        f.client.as_ref().map(client_identity).transpose()
    });
    if let Err(e) = checked {
        problems.add(path, format!("certs.d folder {}: {e}", dir.display()));
    }
}
