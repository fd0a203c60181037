//! One transport per registry, built from settings on first use and shared after.
//!
//! Sharing matters for more than sockets: a transport holds the registry's token cache, request
//! limits and rate-limit state, so every image copied to or from a registry in this process must
//! go through the same one. The CLI builds a [`Connector`] from its flags, the daemon from its
//! configuration; both get credentials, in order, from explicit settings and then from Docker's
//! `config.json`, and plain HTTP for loopback registries and those marked insecure.
//!
//! Local pseudo-registries need no HTTP: `oci:PATH` is a layout folder, read and written;
//! `oci-archive:PATH` and `docker-archive:PATH` are tar files, read unless the caller named
//! them as archive targets ([`Connector::set_archive_targets`]), which are written whole
//! once finished.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::archive::{ArchiveSource, ArchiveTarget};
use super::auth::cloud::{AuthChoice, AuthKind};
use super::auth::{self, Credentials};
use super::http::{HttpOptions, HttpRegistry};
use super::layout::LayoutTransport;
use super::{ErrorKind, RegistryError, Transport};
use crate::reference::{archive_of, is_loopback_registry, layout_path_of};

/// Builds and caches transports.
pub struct Connector {
    defaults: HttpOptions,
    per_registry: HashMap<String, HttpOptions>,
    insecure: HashSet<String>,
    docker_config: Option<PathBuf>,
    use_docker_config: bool,
    archive_targets: HashSet<String>,
    replace_archives: bool,
    cache: Mutex<HashMap<String, Arc<dyn Transport>>>,
}

impl Default for Connector {
    fn default() -> Self {
        Connector::new(HttpOptions::default())
    }
}

impl Connector {
    /// A connector giving every registry `defaults`, unless set otherwise.
    pub fn new(defaults: HttpOptions) -> Self {
        Connector {
            defaults,
            per_registry: HashMap::new(),
            insecure: HashSet::new(),
            docker_config: None,
            use_docker_config: true,
            archive_targets: HashSet::new(),
            replace_archives: false,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Options for one registry (as named in references, e.g. `docker.io`, `localhost:5000`).
    pub fn set_registry(&mut self, registry: &str, opts: HttpOptions) {
        self.per_registry.insert(registry.to_string(), opts);
    }

    /// Speak plain HTTP to this registry (`--insecure-registry`).
    pub fn add_insecure(&mut self, registry: &str) {
        self.insecure.insert(registry.to_string());
    }

    /// Read credentials from this Docker `config.json` instead of the default location.
    pub fn set_docker_config(&mut self, path: Option<PathBuf>) {
        self.docker_config = path;
    }

    /// Whether to consult Docker's `config.json` at all.
    pub fn use_docker_config(&mut self, yes: bool) {
        self.use_docker_config = yes;
    }

    /// Archives (pseudo-registries `oci-archive:PATH`, `docker-archive:PATH`) to be written
    /// rather than read; an existing file is replaced only if `replace` (`--force`). Their
    /// transports write nothing until [`Transport::finish`].
    pub fn set_archive_targets<'a>(
        &mut self,
        registries: impl IntoIterator<Item = &'a str>,
        replace: bool,
    ) {
        self.archive_targets.extend(
            registries
                .into_iter()
                .filter(|r| archive_of(r).is_some())
                .map(str::to_string),
        );
        self.replace_archives = replace;
    }

    /// Sets how one registry authenticates (`--auth HOST=KIND`), keeping its other options.
    pub fn set_auth(&mut self, registry: &str, auth: AuthChoice) {
        let mut opts = self
            .per_registry
            .get(registry)
            .cloned()
            .unwrap_or_else(|| self.defaults.clone());
        opts.auth = auth;
        self.per_registry.insert(registry.to_string(), opts);
    }

    /// Sets credentials for one registry, keeping its other options.
    pub fn set_credentials(&mut self, registry: &str, credentials: Credentials) {
        let mut opts = self
            .per_registry
            .get(registry)
            .cloned()
            .unwrap_or_else(|| self.defaults.clone());
        opts.credentials = Some(credentials);
        self.per_registry.insert(registry.to_string(), opts);
    }

    /// The transport for `registry`, built on first use.
    pub fn get(&self, registry: &str) -> Result<Arc<dyn Transport>, RegistryError> {
        let mut cache = self.cache.lock().expect("connector cache lock");
        if let Some(t) = cache.get(registry) {
            return Ok(t.clone());
        }
        // `oci:PATH` (a layout reference's pseudo-registry): a folder, no HTTP options.
        if let Some(path) = layout_path_of(registry) {
            let t: Arc<dyn Transport> = Arc::new(LayoutTransport::new(path));
            cache.insert(registry.to_string(), t.clone());
            return Ok(t);
        }
        if let Some((kind, path)) = archive_of(registry) {
            let t: Arc<dyn Transport> = if self.archive_targets.contains(registry) {
                Arc::new(
                    ArchiveTarget::create(kind, path, self.replace_archives)
                        .map_err(|e| e.into_registry("open archive target", registry))?,
                )
            } else {
                Arc::new(ArchiveSource::new(kind, path))
            };
            cache.insert(registry.to_string(), t.clone());
            return Ok(t);
        }
        let mut opts = self
            .per_registry
            .get(registry)
            .cloned()
            .unwrap_or_else(|| self.defaults.clone());
        // Loopback speaks plain HTTP unless TLS settings say it serves HTTPS.
        if (is_loopback_registry(registry) && !opts.tls_configured(registry))
            || self.insecure.contains(registry)
        {
            opts.plain_http = true;
        }
        if opts.credentials.is_none()
            && self.use_docker_config
            && !matches!(opts.auth, AuthChoice::Cloud(_))
        {
            opts.credentials =
                auth::credentials_from_docker_config(self.docker_config.as_deref(), registry)
                    .map_err(|e| {
                        RegistryError::new(ErrorKind::Unauthorized, "reading credentials", registry)
                            .with_message(e.to_string())
                    })?;
        }
        // Without credentials, a cloud registry's host name says which identity to use.
        if opts.auth == AuthChoice::Detect
            && opts.credentials.is_none()
            && let Some(kind) = AuthKind::detect(registry)
        {
            tracing::debug!(
                registry,
                auth = kind.name(),
                "cloud identity from the host name"
            );
            opts.auth = AuthChoice::from_kind(kind);
        }
        let t: Arc<dyn Transport> = Arc::new(HttpRegistry::new(registry, opts)?);
        cache.insert(registry.to_string(), t.clone());
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ECR is the one cloud whose transport refuses mounts, so it shows which auth was chosen.
    #[test]
    fn cloud_identity_comes_from_the_host_name_unless_told_otherwise() {
        const ECR: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
        let mut c = Connector::default();
        c.use_docker_config(false);
        assert!(!c.get(ECR).unwrap().mounts_blobs(), "detected as ECR");
        assert!(c.get("registry.example").unwrap().mounts_blobs());

        let mut c = Connector::default();
        c.use_docker_config(false);
        c.set_auth(ECR, AuthChoice::Static);
        assert!(c.get(ECR).unwrap().mounts_blobs(), "auth = static");

        let mut c = Connector::default();
        c.use_docker_config(false);
        c.set_credentials(ECR, Credentials::basic("AWS", "token"));
        assert!(c.get(ECR).unwrap().mounts_blobs(), "credentials given");

        let mut c = Connector::default();
        c.use_docker_config(false);
        c.set_auth("localhost:5000", AuthChoice::from_kind(AuthKind::Ecr));
        assert!(
            !c.get("localhost:5000").unwrap().mounts_blobs(),
            "--auth HOST=ecr"
        );
    }
}
