//! How one registry is reached on the network: its proxy route and TLS material, resolved once
//! when its transport is built, applied to its reqwest clients, and used again to explain a
//! failed connection in the user's terms (which proxy refused, which certificate is missing).
//!
//! The process environment (`HTTPS_PROXY`, `NO_PROXY`, `CROSSDOCK_CERTS_D`, …) and the
//! certificate files are read here and nowhere else, when the transport is built: the daemon
//! builds its transports again on SIGHUP, which is how a renewed certificate is picked up.

use std::path::PathBuf;

use url::Url;

use super::super::{ErrorKind, RegistryError};
use super::options::HttpOptions;
use super::proxy::ProxyRoute;
use super::tls::{ClientCertificate, TlsMaterial, is_client_certificate_refusal, read_folder};

/// The resolved network settings of one registry.
pub(super) struct Network {
    /// The registry, as named in references.
    registry: String,
    route: ProxyRoute,
    tls: TlsMaterial,
    /// The `certs.d` folder used, if any.
    certs_folder: Option<PathBuf>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("route", &self.route)
            .field("client_certificate", &self.client_certificate())
            .field("certs_folder", &self.certs_folder)
            .finish_non_exhaustive()
    }
}

/// A process environment variable, if set and Unicode.
pub(super) fn process_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Network {
    /// Reads everything `opts` names for `registry` (files, `certs.d`, the environment).
    pub(super) fn resolve(opts: &HttpOptions, registry: &str) -> Result<Self, RegistryError> {
        let config_error = |message: String| {
            RegistryError::new(ErrorKind::Invalid, "configure registry", registry)
                .with_message(message)
        };
        let route = ProxyRoute::resolve(&opts.proxy, process_var)
            .map_err(|e| config_error(format!("proxy: {e}")))?;
        let certs_folder = opts.certs_d.folder(registry, process_var);
        let folder = match &certs_folder {
            Some(dir) => Some(read_folder(dir).map_err(|e| config_error(e.to_string()))?),
            None => None,
        };
        let tls = TlsMaterial::load(
            opts.ca_file.as_deref(),
            opts.client_certificate.as_ref(),
            folder.as_ref(),
        )
        .map_err(|e| config_error(e.to_string()))?;
        Ok(Network {
            registry: registry.to_string(),
            route,
            tls,
            certs_folder,
        })
    }

    /// The client certificate presented, if any.
    pub(super) fn client_certificate(&self) -> Option<&ClientCertificate> {
        self.tls.identity.as_ref().map(|(_, c)| c)
    }

    /// Applies the proxy route and TLS material to a client builder.
    pub(super) fn apply(&self, mut builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        // reqwest's own environment lookup is off: the route decides (see `proxy`).
        builder = builder.no_proxy();
        if let Some(p) = self.route.reqwest_proxy() {
            builder = builder.proxy(p);
        }
        if !self.tls.roots.is_empty() {
            builder = builder.tls_certs_merge(self.tls.roots.clone());
        }
        if let Some((identity, _)) = &self.tls.identity {
            builder = builder.identity(identity.clone());
        }
        builder
    }

    /// Adds what the network settings know to a failed request's error: the proxy it went
    /// through (without credentials), and what to do when a proxy or the registry's TLS
    /// refused the connection.
    pub(super) async fn explain(
        &self,
        opts: &HttpOptions,
        url: &Url,
        mut err: RegistryError,
    ) -> RegistryError {
        let chain = error_chain(&err);
        let proxy_refused_auth = err.status == Some(407)
            || chain.contains("proxy authorization required")
            || chain.contains("Proxy Authentication Required");
        if let Some(proxy) = self.route.for_url(url) {
            if proxy_refused_auth {
                err.kind = ErrorKind::Unauthorized;
                return with_hint(
                    err,
                    format!(
                        "the proxy {proxy} refused the request (407 Proxy Authentication \
                         Required): give the proxy's user and password in its URL, \
                         http://USER:PASSWORD@HOST:PORT"
                    ),
                );
            }
            if chain.contains("tunnel error: unsuccessful") {
                return with_hint(
                    err,
                    format!(
                        "the proxy {proxy} refused to open a tunnel (CONNECT) to {}; check the \
                         proxy's credentials and allowed ports, or bypass it with NO_PROXY or \
                         proxy = \"none\"",
                        url.host_str().unwrap_or_default()
                    ),
                );
            }
        }
        if err.kind == ErrorKind::Transport
            && url.scheme() == "https"
            && (is_client_certificate_refusal(&chain) || self.tls_refusal(opts, url, &err).await)
        {
            err.kind = ErrorKind::Denied;
            let hint = match self.client_certificate() {
                Some(c) => format!(
                    "the registry refused the client certificate {}; check that it was issued \
                     by a CA the registry trusts and has not expired",
                    c.cert.display()
                ),
                None => format!(
                    "this registry asks for a client certificate: set client_cert/client_key in \
                     [registries.\"{r}\"] or put NAME.cert and NAME.key in certs.d/{r}/ \
                     (/etc/docker/certs.d, /etc/containers/certs.d, or --certs-d)",
                    r = self.registry
                ),
            };
            return with_hint(err, hint);
        }
        if err.kind == ErrorKind::Transport
            && let Some(proxy) = self.route.for_url(url)
        {
            return with_hint(err, format!("through the proxy {proxy}"));
        }
        err
    }

    /// Whether the registry's TLS refuses us for want of a (trusted) client certificate, asked
    /// once more over HTTP/1.1 after a request failed after its handshake. Go's servers send
    /// TLS 1.3's `certificate_required` alert only after the handshake looks complete to the
    /// client; over HTTP/2 (what TLS registries negotiate) the request then sees nothing but
    /// "connection closed", while an HTTP/1.1 read receives the alert itself.
    async fn tls_refusal(&self, opts: &HttpOptions, url: &Url, err: &RegistryError) -> bool {
        let failed_in_connect = err
            .source
            .as_deref()
            .and_then(|s| s.downcast_ref::<reqwest::Error>())
            .is_none_or(|e| e.is_connect() || e.is_timeout());
        if failed_in_connect {
            return false;
        }
        let mut builder = reqwest::Client::builder()
            .http1_only()
            .connect_timeout(opts.connect_timeout)
            .timeout(opts.read_timeout);
        builder = self.apply(builder);
        if opts.tls_skip_verify {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let Ok(client) = builder.build() else {
            return false;
        };
        let mut probe = url.clone();
        probe.set_path("/v2/");
        probe.set_query(None);
        match client.get(probe).send().await {
            Ok(_) => false,
            Err(e) => is_client_certificate_refusal(&error_chain(&e)),
        }
    }
}

fn with_hint(mut err: RegistryError, hint: String) -> RegistryError {
    err.message = if err.message.is_empty() {
        hint
    } else {
        format!("{}; {hint}", err.message)
    };
    err
}

/// `err` and its causes, as one line (for matching what the TLS and proxy layers said).
pub(super) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cur = e.source();
    }
    out
}
