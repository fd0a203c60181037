//! The validated plan the daemon reads: every default resolved, every string parsed, every
//! secret read and wrapped. Nothing here can fail; whatever could is checked in
//! [`super::validate`] before a `Plan` exists.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::shard::Shard;
use crate::reference::{DOCKER_HUB, is_loopback_registry};
use crate::registry::auth::cloud::AuthChoice;
use crate::registry::auth::{Credentials, Secret};
use crate::registry::http::{ClientCertificate, HttpOptions, ProxySetting};
use crate::rule::{IndexPlan, Rule, RulePlan};

/// Default `[server] listen`: loopback, so that nothing is exposed unless asked.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9090";
/// Default `[daemon] max_concurrent_images`: as many as [`DEFAULT_MAX_CONCURRENCY`], because an
/// image found up to date holds about one request at each registry at a time, so fewer images
/// leave request slots empty (a no-op sync over a 50 ms link took 1.4x as long with 4; issue 18).
pub const DEFAULT_MAX_CONCURRENT_IMAGES: usize = 8;
/// Default `[daemon] shutdown_grace`.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Default schedule of a rule (`[defaults] schedule`).
pub const DEFAULT_SCHEDULE: &str = "@every 6h";
/// Default time limit of one run of a rule (`[defaults] timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);
/// Default first wait before a failed run is retried (`[defaults] retry_backoff`).
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_secs(30);
/// Default requests in flight per registry.
pub const DEFAULT_MAX_CONCURRENCY: usize = 8;

/// The HTTP endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// Where `/healthz`, `/readyz`, `/status`, `/metrics` and `/notifications` are served.
    pub listen: SocketAddr,
    /// The bearer token registries must send to `/notifications`; `None`: that endpoint is off.
    pub notifications_token: Option<Secret>,
}

/// The scheduler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonSettings {
    /// Images being copied at once, across all rules.
    pub max_concurrent_images: usize,
    /// Whether every rule runs once at start, before its schedule.
    pub run_on_start: bool,
    /// After SIGTERM, how long work in flight may take to finish.
    pub shutdown_grace: Duration,
    /// Each scheduled run waits a random delay up to this (zero: none), so that many rules on
    /// the same cron line do not hit a registry in the same second.
    pub jitter: Duration,
}

/// How to talk to one registry: plain data the daemon turns into HTTP client options.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistrySettings {
    /// Plain HTTP instead of HTTPS (loopback registries speak HTTP without this).
    pub insecure: bool,
    /// Extra CA certificates (PEM) to trust, checked readable at load.
    pub ca_file: Option<PathBuf>,
    /// Accept any TLS certificate.
    pub tls_skip_verify: bool,
    /// The client certificate and key to present (mTLS), checked to belong together at load;
    /// `None`: the registry's `certs.d` folder's, if any.
    pub client_certificate: Option<ClientCertificate>,
    /// The HTTP proxy: the environment's by default, or the registry's own, or none.
    pub proxy: ProxySetting,
    /// Credentials; `None`: anonymous (tokens for public repositories still work).
    pub credentials: Option<Credentials>,
    /// Where credentials come from (cloud identity, or the above); default: the host decides.
    pub auth: AuthChoice,
    /// Requests in flight at once to this registry.
    pub max_concurrency: usize,
    /// Requests started per second; `None`: no limit.
    pub requests_per_second: Option<f64>,
    /// Upload chunk size; `None`: each blob in one streamed request.
    pub chunk_size: Option<u64>,
    /// Pause pulls while the registry's `ratelimit-remaining` is below this (Docker Hub);
    /// 0: never pause.
    pub ratelimit_reserve: u32,
}

impl RegistrySettings {
    /// The HTTP transport's options for `registry` (as named in references) with these
    /// settings; plain HTTP for `insecure` and, as docker does, for loopback registries — unless
    /// a loopback registry has TLS settings (`ca_file`, `tls_skip_verify`, a client
    /// certificate, a `certs.d` folder), which ask for HTTPS.
    /// Timeouts and retries keep the transport's defaults.
    pub fn http_options(&self, registry: &str) -> HttpOptions {
        let mut opts = HttpOptions {
            ca_file: self.ca_file.clone(),
            tls_skip_verify: self.tls_skip_verify,
            client_certificate: self.client_certificate.clone(),
            proxy: self.proxy.clone(),
            credentials: self.credentials.clone(),
            auth: self.auth.clone(),
            chunk_size: self.chunk_size,
            max_concurrent_requests: self.max_concurrency,
            requests_per_second: self.requests_per_second,
            ..HttpOptions::default()
        };
        opts.plain_http =
            self.insecure || (is_loopback_registry(registry) && !opts.tls_configured(registry));
        opts
    }
}

impl Default for RegistrySettings {
    fn default() -> Self {
        RegistrySettings {
            insecure: false,
            ca_file: None,
            tls_skip_verify: false,
            client_certificate: None,
            proxy: ProxySetting::Environment,
            credentials: None,
            auth: AuthChoice::Detect,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            requests_per_second: None,
            chunk_size: None,
            ratelimit_reserve: 0,
        }
    }
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The file it was loaded from (to load again on SIGHUP).
    pub path: PathBuf,
    /// `[server]`
    pub server: ServerSettings,
    /// `[daemon]`
    pub daemon: DaemonSettings,
    /// `[[rules]]`, in file order.
    pub rules: Vec<RulePlan>,
    /// `[[indexes]]`, in file order.
    pub indexes: Vec<IndexPlan>,
    /// `[registries."host"]`, keyed by registry name as in references (`docker.io`).
    pub(crate) registries: BTreeMap<String, RegistrySettings>,
}

/// The registry name references use for a host: Docker Hub's API and index hosts are
/// `docker.io`.
pub(crate) fn registry_name(host: &str) -> &str {
    match host {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB,
        h => h,
    }
}

impl Plan {
    /// The settings for a registry, by name (`docker.io`, `localhost:5000`) or API host
    /// (`registry-1.docker.io`); defaults for a registry the file does not mention.
    pub fn registry_options(&self, registry: &str) -> RegistrySettings {
        self.registries
            .get(registry_name(registry))
            .cloned()
            .unwrap_or_default()
    }

    /// The registries the file configures, by name.
    pub fn configured_registries(&self) -> impl Iterator<Item = &str> {
        self.registries.keys().map(String::as_str)
    }

    /// The rule with this name.
    pub fn rule(&self, name: &str) -> Option<&RulePlan> {
        self.rules.iter().find(|r| r.name == name)
    }

    /// The rules this shard owns, in file order.
    pub fn rules_for_shard(&self, shard: Shard) -> Vec<&RulePlan> {
        self.rules.iter().filter(|r| shard.owns(&r.name)).collect()
    }

    /// Every rule of either kind: mirror rules, then index rules, in file order.
    pub fn all_rules(&self) -> impl Iterator<Item = Rule> + '_ {
        self.rules
            .iter()
            .cloned()
            .map(Rule::Mirror)
            .chain(self.indexes.iter().cloned().map(Rule::Index))
    }

    /// Every rule of either kind that `shard` owns, in [`Plan::all_rules`]'s order.
    pub fn rules_in(&self, shard: Shard) -> Vec<Rule> {
        self.all_rules().filter(|r| shard.owns(r.name())).collect()
    }

    /// The rule of either kind named `name`.
    pub fn rule_named(&self, name: &str) -> Option<Rule> {
        self.all_rules().find(|r| r.name() == name)
    }

    /// A short account of what was loaded, for `check-config`.
    pub fn summary(&self) -> Summary {
        Summary {
            rules: self.rules.len(),
            indexes: self.indexes.len(),
            sources: self.rules.iter().map(|r| r.sources.len()).sum(),
            registries: self.registries.len(),
            listen: self.server.listen,
        }
    }
}

/// What `check-config` reports for a good file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Number of rules.
    pub rules: usize,
    /// Number of index rules.
    pub indexes: usize,
    /// Number of source repositories over all rules.
    pub sources: usize,
    /// Number of `[registries]` tables.
    pub registries: usize,
    /// The server address.
    pub listen: SocketAddr,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "configuration is valid: {} rule{} ({} source repositor{}){}, {} registr{} configured, serving on {}",
            self.rules,
            if self.rules == 1 { "" } else { "s" },
            self.sources,
            if self.sources == 1 { "y" } else { "ies" },
            match self.indexes {
                0 => String::new(),
                1 => ", 1 index rule".to_string(),
                n => format!(", {n} index rules"),
            },
            self.registries,
            if self.registries == 1 { "y" } else { "ies" },
            self.listen
        )
    }
}
