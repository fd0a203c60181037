//! [`TestRegistryBuilder`]: the options of a [`TestRegistry`] (auth, TLS, token auth, extra
//! config) and starting one with them: its temporary directory, its htpasswd, then the child on
//! a free port ([`super::process`]).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::TestRegistry;
use super::process::REGISTRY_BIN;
use super::request_log::RequestMark;

/// Options for a [`TestRegistry`]; start with [`TestRegistry::builder`].
#[derive(Default)]
pub(crate) struct TestRegistryBuilder {
    auth: Option<(String, String)>,
    extra_yaml: String,
    tls: Option<(PathBuf, PathBuf)>,
    client_ca: Option<PathBuf>,
    refuse_deletes: bool,
    token: Option<TokenAuth>,
}

/// Token authentication settings of a registry (distribution's `auth.token`).
#[derive(Clone)]
pub(super) struct TokenAuth {
    pub(super) realm: String,
    pub(super) service: String,
    pub(super) issuer: String,
    pub(super) bundle: PathBuf,
}

impl TestRegistryBuilder {
    /// Refuse manifest deletes (`storage.delete.enabled: false`, distribution's default; the
    /// harness enables them otherwise).
    pub(crate) fn refuse_deletes(mut self) -> Self {
        self.refuse_deletes = true;
        self
    }

    /// Require bearer tokens from `realm`, signed by a key whose certificate is in `bundle`
    /// (see [`super::token_realm`]), for `service`, issued by `issuer`.
    pub(crate) fn token_auth(
        mut self,
        realm: &str,
        service: &str,
        issuer: &str,
        bundle: &Path,
    ) -> Self {
        self.token = Some(TokenAuth {
            realm: realm.to_owned(),
            service: service.to_owned(),
            issuer: issuer.to_owned(),
            bundle: bundle.to_owned(),
        });
        self
    }

    /// Require HTTP basic auth (htpasswd, bcrypt) with this one user.
    pub(crate) fn auth(mut self, user: &str, pass: &str) -> Self {
        self.auth = Some((user.to_owned(), pass.to_owned()));
        self
    }

    /// YAML appended at the top level of config.yml (e.g. a `notifications:` block). It must
    /// not repeat the keys the harness writes: version, log, storage, http, health, auth.
    pub(crate) fn extra_yaml(mut self, yaml: &str) -> Self {
        self.extra_yaml.push('\n');
        self.extra_yaml.push_str(yaml);
        self.extra_yaml.push('\n');
        self
    }

    /// Serve HTTPS with this certificate chain and key (PEM files). The registry's request
    /// log ([`TestRegistry::requests`]) and [`TestRegistry::client`] speak plain HTTP and do
    /// not work with it.
    pub(crate) fn tls(mut self, certificate: &Path, key: &Path) -> Self {
        self.tls = Some((certificate.to_owned(), key.to_owned()));
        self
    }

    /// With [`tls`](Self::tls): require a client certificate signed by this CA (PEM), as
    /// distribution's `http.tls.clientcas` does (Go's `RequireAndVerifyClientCert`).
    pub(crate) fn client_ca(mut self, ca: &Path) -> Self {
        self.client_ca = Some(ca.to_owned());
        self
    }

    /// Start the registry and wait until `GET /v2/` answers. Panics (with the log tail) if it
    /// does not come up within ~10 s.
    pub(crate) fn start(self) -> TestRegistry {
        assert!(
            Path::new(REGISTRY_BIN).exists(),
            "{REGISTRY_BIN} is missing: run `.ci/run` or `apt-get install -y docker-registry`"
        );
        let dir = tempfile::Builder::new()
            .prefix("crossdock-registry-")
            .tempdir()
            .expect("create registry temp dir");
        fs::create_dir_all(dir.path().join("storage")).expect("create storage dir");
        if let Some((user, pass)) = &self.auth {
            // Cost 4 (the minimum): distribution checks bcrypt on every request, and the
            // default cost 12 would make each request take ~250 ms.
            let hash = bcrypt::hash(pass, 4).expect("bcrypt hash");
            fs::write(dir.path().join("htpasswd"), format!("{user}:{hash}\n"))
                .expect("write htpasswd");
        }
        let mut registry = TestRegistry {
            dir,
            port: 0,
            auth: self.auth,
            token: self.token,
            extra_yaml: self.extra_yaml,
            tls: self.tls,
            client_ca: self.client_ca,
            refuse_deletes: self.refuse_deletes,
            process: Mutex::new(None),
            baseline: Mutex::new(RequestMark(0)),
        };
        registry.spawn_on_free_port();
        registry
    }
}
