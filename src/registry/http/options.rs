//! Per-registry HTTP options, the reqwest clients built from them, and the request pacer.
//!
//! Options are plain data, resolved by the caller (configuration or command line) before the
//! backend is built: whether to speak plain HTTP (loopback registries and `insecure = true`), an
//! extra CA, a client certificate, where `certs.d` folders are, the proxy, credentials, upload
//! chunking, and the limits that keep crossdock a polite client. Files and the environment are
//! read when the client is built ([`super::network`]).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::super::auth::Credentials;
use super::super::auth::cloud::AuthChoice;
use super::super::retry::RetryPolicy;
use super::super::{ErrorKind, RegistryError, Result};
use super::network::{Network, process_var};
use super::proxy::ProxySetting;
use super::tls::{CertsD, ClientCertificate};

/// How one registry is reached. `Debug` never shows a secret ([`Credentials`] print `***`).
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// Speak plain HTTP instead of HTTPS. The caller sets it for loopback registries
    /// ([`crate::reference::is_loopback_registry`]) and for `--insecure-registry` /
    /// `insecure = true`.
    pub plain_http: bool,
    /// An extra root CA (PEM, may hold several certificates), trusted besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// Accept any TLS certificate. Only when explicitly configured.
    pub tls_skip_verify: bool,
    /// The client certificate to present (mTLS); `None`: the `certs.d` folder's, if any.
    pub client_certificate: Option<ClientCertificate>,
    /// Where Docker-style `certs.d/HOST[:PORT]/` folders are looked for.
    pub certs_d: CertsD,
    /// The HTTP proxy: from the environment by default.
    pub proxy: ProxySetting,
    /// What to present when the registry asks; `None` = anonymous.
    pub credentials: Option<Credentials>,
    /// Where credentials come from: `credentials`, or a cloud identity (ECR, ACR, GAR) —
    /// resolved by [`crate::registry::connect::Connector`] when left at `Detect`.
    pub auth: AuthChoice,
    /// Upload blobs in `PATCH` chunks of this many bytes; `None` = one streaming `PUT`.
    pub chunk_size: Option<u64>,
    /// Requests in flight to this registry at once. A permit is held for the whole request,
    /// including the streamed body of a blob GET or upload, so this bounds open connections.
    pub max_concurrent_requests: usize,
    /// Start at most this many requests per second (`None` = unpaced).
    pub requests_per_second: Option<f64>,
    /// Retries of calls without a streaming body.
    pub retry: RetryPolicy,
    /// The `User-Agent` header.
    pub user_agent: String,
    /// Longest wait for a TCP + TLS connection.
    pub connect_timeout: Duration,
    /// Longest silence: waiting for response headers, between two chunks of a response body,
    /// or (uploads) between two chunks of the request body being taken by the connection.
    /// Not a whole-request limit, so a slow multi-GiB layer is fine while it moves.
    pub read_timeout: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            plain_http: false,
            ca_file: None,
            tls_skip_verify: false,
            client_certificate: None,
            certs_d: CertsD::default(),
            proxy: ProxySetting::default(),
            credentials: None,
            auth: AuthChoice::Detect,
            chunk_size: None,
            max_concurrent_requests: 8,
            requests_per_second: None,
            retry: RetryPolicy::default(),
            user_agent: concat!("crossdock/", env!("CARGO_PKG_VERSION")).to_string(),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(120),
        }
    }
}

impl HttpOptions {
    /// Whether TLS settings were given for `registry`: `ca_file`, `tls_skip_verify`, a client
    /// certificate, or a `certs.d` folder. They only mean something over HTTPS, so they are how
    /// a loopback registry — spoken to over plain HTTP by default — is marked as serving HTTPS.
    pub fn tls_configured(&self, registry: &str) -> bool {
        self.ca_file.is_some()
            || self.tls_skip_verify
            || self.client_certificate.is_some()
            || self.certs_d.folder(registry, process_var).is_some()
    }

    /// Defaults for `registry_name`, with plain HTTP when it is on loopback (as docker and crane).
    pub fn for_registry(registry_name: &str) -> Self {
        HttpOptions {
            plain_http: crate::reference::is_loopback_registry(registry_name),
            ..HttpOptions::default()
        }
    }

    /// Reads the files and environment these options name for `registry` (see
    /// [`super::network`]).
    pub(super) fn network(&self, registry: &str) -> Result<Network> {
        Network::resolve(self, registry)
    }

    /// A reqwest client with these options; `read_timeout` only for the client of requests
    /// without a body (see [`super::exchange`] for why uploads use a watchdog instead).
    pub(super) fn build_client(
        &self,
        registry: &str,
        network: &Network,
        with_read_timeout: bool,
    ) -> Result<reqwest::Client> {
        // Registries redirect blob GETs to object storage, sometimes through a CDN hop or two.
        // reqwest drops Authorization (and cookies) when a redirect changes scheme, host or port.
        let mut builder = reqwest::Client::builder()
            .user_agent(self.user_agent.clone())
            .connect_timeout(self.connect_timeout)
            .redirect(reqwest::redirect::Policy::limited(10));
        if with_read_timeout {
            builder = builder.read_timeout(self.read_timeout);
        }
        builder = network.apply(builder);
        if self.tls_skip_verify {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        builder.build().map_err(|e| {
            RegistryError::new(ErrorKind::Invalid, "configure registry", registry)
                .with_message(format!("building the HTTP client: {e}"))
                .with_source(e)
        })
    }
}

/// Spaces request starts evenly at `1 / requests_per_second` (no bursts): simple, and what a
/// registry's per-client limit wants.
#[derive(Debug)]
pub(super) struct Pacer {
    interval: Duration,
    next: Mutex<Instant>,
}

impl Pacer {
    /// A pacer for `per_second` requests; `None` for a rate that is not a positive number.
    pub(super) fn new(per_second: f64) -> Option<Self> {
        if !(per_second.is_finite() && per_second > 0.0) {
            return None;
        }
        Some(Pacer {
            interval: Duration::try_from_secs_f64(1.0 / per_second).ok()?,
            next: Mutex::new(Instant::now()),
        })
    }

    /// Waits for this request's slot.
    pub(super) async fn wait(&self) {
        let slot = {
            let mut next = self.next.lock().expect("pacer lock");
            let slot = (*next).max(Instant::now());
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_loopback() {
        let o = HttpOptions::for_registry("localhost:5000");
        assert!(o.plain_http);
        assert!(!HttpOptions::for_registry("docker.io").plain_http);
        assert!(o.read_timeout > o.connect_timeout);
        assert!(o.max_concurrent_requests > 1);
    }

    #[test]
    fn debug_hides_the_passwords() {
        let o = HttpOptions {
            credentials: Some(Credentials::Basic {
                username: "alice".into(),
                password: super::super::super::auth::Secret::new("hunter2"),
            }),
            proxy: ProxySetting::parse("http://bob:proxy-pw@proxy:3128").unwrap(),
            ..HttpOptions::default()
        };
        let text = format!("{o:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("proxy-pw"), "{text}");
        assert!(text.contains("alice"), "{text}");
    }

    #[test]
    fn bad_ca_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        let o = HttpOptions {
            ca_file: Some(path.clone()),
            ..HttpOptions::default()
        };
        let e = o.network("r.example").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid);
        assert!(e.to_string().contains("ca.pem"), "{e}");
        let missing = HttpOptions {
            ca_file: Some(dir.path().join("missing.pem")),
            ..HttpOptions::default()
        };
        assert!(missing.network("r.example").is_err());
    }

    #[tokio::test]
    async fn pacer_spaces_requests() {
        let p = Pacer::new(50.0).unwrap();
        let start = Instant::now();
        for _ in 0..6 {
            p.wait().await;
        }
        // Slots at 0, 20, 40, 60, 80, 100 ms.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(100), "{took:?}");
        assert!(took < Duration::from_millis(1000), "{took:?}");
        assert!(Pacer::new(0.0).is_none());
        assert!(Pacer::new(f64::NAN).is_none());
    }
}
