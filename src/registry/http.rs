//! The OCI distribution API over HTTP: the [`Transport`] backend for real registries.
//!
//! One [`HttpRegistry`] serves one registry host. It owns one reqwest client (so connections,
//! TLS sessions and HTTP/2 are reused), the host's [`Auth`] state, its adaptive request limit
//! ([`Limiter`]) and an optional request pacer. The work is split by concern:
//! - [`options`]: what can be configured per registry, and building the reqwest clients;
//! - [`network`], [`proxy`], [`tls`]: how the registry is reached — the HTTP proxy (from the
//!   environment or its own setting), extra CAs, a client certificate, `certs.d` folders — and
//!   what a refused connection means;
//! - [`exchange`]: sending one request — permits, pacing, credentials, the 401 handshake, metrics,
//!   expected statuses, retries;
//! - [`response`]: turning an unexpected response or a failed request into a classified
//!   [`RegistryError`], reading bodies without ever holding an unbounded one;
//! - [`manifest`], [`blob`], [`upload`], [`listing`]: the API calls themselves.
//!
//! Credentials only ever go to the registry's own origin (scheme, host and port): a redirect
//! elsewhere (object storage behind a blob GET), or an upload `Location` or pagination `Link`
//! pointing elsewhere, is followed without them.

mod blob;
mod exchange;
mod listing;
mod manifest;
mod network;
mod options;
mod proxy;
mod response;
mod tls;
mod upload;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use async_trait::async_trait;
use url::Url;

use super::auth::cloud::{AuthChoice, CloudCredentials, SharedCloud};
use super::auth::{Auth, Scope};
use super::limiter::Limiter;
use super::{
    BlobBody, ByteStream, ErrorKind, ManifestHead, MountOutcome, RegistryError, Result, Transport,
    UploadSession,
};
use crate::digest::Digest;
use crate::manifest::{Descriptor, Manifest};
pub use options::HttpOptions;
pub use proxy::{ProxyError, ProxySetting, ProxyUrl};
pub use tls::{
    CERTS_D_ENV, CertsD, CertsFolder, ClientCertificate, DEFAULT_CERTS_D, TlsError,
    ca_certificates, client_identity, read_folder,
};

/// Sentinel for "no `ratelimit-remaining` seen yet".
const NO_RATELIMIT: i64 = i64::MIN;

/// A registry reached over HTTP(S).
pub struct HttpRegistry {
    /// The registry as named in references, e.g. `docker.io` or `localhost:5000`.
    name: String,
    /// `https://host[:port]/` (or `http://` for plain HTTP).
    base: Url,
    /// For requests without a body; has the idle read timeout.
    client: reqwest::Client,
    /// For requests with a body (uploads, manifest PUT): no read timeout, because reqwest's runs
    /// from the start of the request, which would cut off a large upload; see
    /// [`exchange`] for the progress watchdog used instead.
    upload_client: reqwest::Client,
    auth: Auth,
    /// Cloud identity credentials, when the registry has `auth = "ecr"` (or acr, gcp).
    cloud: Option<SharedCloud>,
    opts: HttpOptions,
    /// Proxy route and TLS material, also used to explain failed connections.
    network: network::Network,
    /// Requests in flight, under a limit that backs off when the registry is overloaded
    /// (`max_concurrent_requests` is its ceiling); blob transfers reserve the requests they
    /// hold open in it too (see [`Transport::stream_slots`]).
    limiter: Arc<Limiter>,
    pacer: Option<options::Pacer>,
    ratelimit_remaining: AtomicI64,
    /// Chunk size forced after the registry refused a body as too large (413); 0: none.
    chunk_after_413: std::sync::atomic::AtomicU64,
    /// Repositories whose answer to the Referrers API was "no such API", and when.
    no_referrers_api: listing::ReferrersMemo,
}

impl std::fmt::Debug for HttpRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpRegistry")
            .field("name", &self.name)
            .field("base", &self.base.as_str())
            .field("opts", &self.opts)
            .field("network", &self.network)
            .finish_non_exhaustive()
    }
}

impl HttpRegistry {
    /// A backend for `registry_name` as it appears in references (`docker.io` is reached at
    /// `registry-1.docker.io`). Fails on an unreadable CA file or an invalid name.
    pub fn new(registry_name: &str, opts: HttpOptions) -> Result<Self> {
        let host = crate::reference::api_host(registry_name);
        let scheme = if opts.plain_http { "http" } else { "https" };
        let base = Url::parse(&format!("{scheme}://{host}/"))
            .ok()
            .filter(|u| u.host_str().is_some() && u.path() == "/")
            .ok_or_else(|| {
                RegistryError::new(ErrorKind::Invalid, "configure registry", registry_name)
                    .with_message("not a valid registry host[:port]")
            })?;
        let network = opts.network(registry_name)?;
        let client = opts.build_client(registry_name, &network, true)?;
        let upload_client = opts.build_client(registry_name, &network, false)?;
        let mut auth = Auth::new(client.clone(), registry_name, opts.credentials.clone());
        let cloud = match &opts.auth {
            AuthChoice::Cloud(settings) => Some(Arc::new(CloudCredentials::new(
                registry_name,
                settings,
                client.clone(),
                &opts.proxy,
            ))),
            AuthChoice::Detect | AuthChoice::Static => None,
        };
        if let Some(c) = &cloud {
            auth = auth.with_cloud(c.clone());
        }
        Ok(HttpRegistry {
            name: registry_name.to_string(),
            base,
            client,
            upload_client,
            auth,
            limiter: Limiter::new(registry_name, opts.max_concurrent_requests),
            cloud,
            pacer: opts.requests_per_second.and_then(options::Pacer::new),
            opts,
            network,
            ratelimit_remaining: AtomicI64::new(NO_RATELIMIT),
            chunk_after_413: std::sync::atomic::AtomicU64::new(0),
            no_referrers_api: listing::ReferrersMemo::default(),
        })
    }

    /// The base URL requests go to (`https://host/` or `http://host/`).
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// The options this backend was built with.
    pub fn options(&self) -> &HttpOptions {
        &self.opts
    }

    /// The last `ratelimit-remaining` the registry announced (Docker Hub pulls left), if any.
    pub fn ratelimit_remaining(&self) -> Option<i64> {
        match self.ratelimit_remaining.load(Ordering::Relaxed) {
            NO_RATELIMIT => None,
            n => Some(n),
        }
    }

    /// The URL of an API path such as `/v2/<repo>/manifests/<ref>` on this registry.
    fn url(&self, path: &str) -> Url {
        let mut u = self.base.clone();
        u.set_path(path);
        u
    }

    /// Before writing to `repo`: what the cloud needs done first (ECR creates the repository
    /// when `create_repositories` is set), once per repository.
    async fn prepare_push(&self, repo: &str) -> Result<()> {
        match &self.cloud {
            Some(c) => c.before_push(repo).await.map_err(|e| {
                let kind = if e.transient {
                    ErrorKind::Transport
                } else {
                    ErrorKind::Denied
                };
                RegistryError::new(kind, "prepare push", &self.name).with_message(e.to_string())
            }),
            None => Ok(()),
        }
    }

    /// Whether `url` is on the registry's own origin, the only one credentials are sent to.
    fn is_own_origin(&self, url: &Url) -> bool {
        url.scheme() == self.base.scheme()
            && url.host_str() == self.base.host_str()
            && url.port_or_known_default() == self.base.port_or_known_default()
    }
}

#[async_trait]
impl Transport for HttpRegistry {
    fn name(&self) -> &str {
        &self.name
    }

    async fn ping(&self) -> Result<()> {
        let call = exchange::Call::new("ping", reqwest::Method::GET, self.url("/v2/"), &[]);
        self.send(&call, None, &[200]).await.map(drop)
    }

    async fn manifest_head(&self, repo: &str, reference: &str) -> Result<Option<ManifestHead>> {
        self.head_manifest(repo, reference).await
    }

    async fn manifest_get(&self, repo: &str, reference: &str) -> Result<Manifest> {
        self.get_manifest(repo, reference).await
    }

    async fn manifest_put(&self, repo: &str, reference: &str, manifest: &Manifest) -> Result<()> {
        self.prepare_push(repo).await?;
        self.put_manifest(repo, reference, manifest).await
    }

    async fn manifest_delete(&self, repo: &str, reference: &str) -> Result<bool> {
        self.delete_manifest(repo, reference).await
    }

    async fn blob_head(&self, repo: &str, digest: &Digest) -> Result<Option<u64>> {
        self.head_blob(repo, digest).await
    }

    async fn blob_get(&self, repo: &str, digest: &Digest) -> Result<BlobBody> {
        self.get_blob(repo, digest).await
    }

    async fn blob_mount(&self, repo: &str, digest: &Digest, from: &str) -> Result<MountOutcome> {
        self.prepare_push(repo).await?;
        self.mount_blob(repo, digest, from).await
    }

    async fn blob_put(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        body: ByteStream,
        session: Option<UploadSession>,
    ) -> Result<()> {
        self.prepare_push(repo).await?;
        self.put_blob(repo, digest, size, body, session).await
    }

    async fn upload_cancel(&self, repo: &str, session: UploadSession) {
        self.cancel_upload(repo, &session).await
    }

    async fn tags(&self, repo: &str) -> Result<Vec<String>> {
        self.list_tags(repo).await
    }

    async fn has_tags(&self, repo: &str) -> Result<bool> {
        self.any_tag(repo).await
    }

    async fn referrers(&self, repo: &str, digest: &Digest) -> Result<Option<Vec<Descriptor>>> {
        self.list_referrers(repo, digest).await
    }

    fn mounts_blobs(&self) -> bool {
        self.cloud.as_ref().is_none_or(|c| c.mounts_blobs())
    }

    fn ratelimit_remaining(&self) -> Option<i64> {
        HttpRegistry::ratelimit_remaining(self)
    }

    fn stream_slots(&self) -> Option<Arc<Limiter>> {
        Some(self.limiter.clone())
    }
}

/// Scopes of a read on `repo`.
fn pull(repo: &str) -> [Scope; 1] {
    [Scope::pull(repo)]
}

/// Scopes of a write to `repo`.
fn push(repo: &str) -> [Scope; 1] {
    [Scope::push_pull(repo)]
}
