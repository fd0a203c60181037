//! Cloud registry identity: credentials a cloud issues to the workload itself, for Amazon ECR
//! ([`ecr`]), Azure Container Registry ([`acr`]) and Google Artifact Registry / GCR ([`gcp`]).
//!
//! In a cloud the pod's (or the machine's) identity is the credential: there is no password to
//! configure, and what the registry accepts is short-lived (an ECR token lives 12 hours, an
//! Entra ID token about one). So instead of fixed [`Credentials`], a registry with `auth = "ecr"`
//! (or `acr`, `gcp`) gets a [`CloudCredentials`]: it asks the cloud when first needed, keeps
//! what it got, and asks again once three quarters of its lifetime have passed — well before
//! it expires, so a daemon running for weeks never presents a dead token. [`Auth`] asks it for
//! credentials wherever it would use configured ones; everything after (Basic, the token realm)
//! is the usual handshake.
//!
//! Which cloud a registry is comes from `auth` in its configuration (or `--auth HOST=KIND`),
//! else from its host name ([`AuthKind::detect`]). Errors name the registry and the credential
//! source (e.g. "the AWS credential chain", "AKS workload identity"); no token or secret is ever
//! logged or put into an error or `Debug` output.
//!
//! [`Auth`]: super::Auth

pub mod acr;
pub mod ecr;
pub mod gcp;
mod http;
mod jwt;

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use url::Url;

use super::{Clock, Credentials};
use crate::registry::http::ProxySetting;

pub use acr::AcrSettings;
pub use ecr::{EcrSettings, TagMutability};
pub use gcp::GcpSettings;

/// How a registry authenticates: the `auth` key of a registry, and `--auth HOST=KIND`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthKind {
    /// Credentials written in the configuration or found in Docker's `config.json` (or none).
    Static,
    /// Amazon ECR through the AWS credential chain.
    Ecr,
    /// Azure Container Registry through a Microsoft Entra ID identity.
    Acr,
    /// Google Artifact Registry / Container Registry through Application Default Credentials.
    Gcp,
}

impl AuthKind {
    /// Every value, as written.
    pub const NAMES: &'static str = "static, ecr, acr, gcp";

    /// The cloud a registry host belongs to, from its name: `*.dkr.ecr.*.amazonaws.com(.cn)`,
    /// `*.azurecr.io` (and the sovereign clouds' `.cn`, `.us`), `*-docker.pkg.dev`, `gcr.io`
    /// and `*.gcr.io`. `None` for any other host.
    pub fn detect(registry: &str) -> Option<AuthKind> {
        let host = registry.split(':').next().unwrap_or(registry);
        let host = host.to_ascii_lowercase();
        if ecr::parse_host(&host).is_some() {
            Some(AuthKind::Ecr)
        } else if [".azurecr.io", ".azurecr.cn", ".azurecr.us"]
            .iter()
            .any(|s| host.ends_with(s))
        {
            Some(AuthKind::Acr)
        } else if host.ends_with("-docker.pkg.dev") || host == "gcr.io" || host.ends_with(".gcr.io")
        {
            Some(AuthKind::Gcp)
        } else {
            None
        }
    }

    /// The name as written in configuration.
    pub fn name(self) -> &'static str {
        match self {
            AuthKind::Static => "static",
            AuthKind::Ecr => "ecr",
            AuthKind::Acr => "acr",
            AuthKind::Gcp => "gcp",
        }
    }

    /// The cloud settings of this kind with every default (`None` for [`AuthKind::Static`]).
    pub fn default_settings(self) -> Option<CloudAuth> {
        match self {
            AuthKind::Static => None,
            AuthKind::Ecr => Some(CloudAuth::Ecr(EcrSettings::default())),
            AuthKind::Acr => Some(CloudAuth::Acr(AcrSettings::default())),
            AuthKind::Gcp => Some(CloudAuth::Gcp(GcpSettings::default())),
        }
    }
}

impl FromStr for AuthKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "static" => Ok(AuthKind::Static),
            "ecr" => Ok(AuthKind::Ecr),
            "acr" => Ok(AuthKind::Acr),
            "gcp" => Ok(AuthKind::Gcp),
            other => Err(format!(
                "unknown auth {other:?}: expected one of {}",
                AuthKind::NAMES
            )),
        }
    }
}

/// A registry's cloud identity settings: plain data, resolved from configuration or flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloudAuth {
    /// Amazon ECR.
    Ecr(EcrSettings),
    /// Azure Container Registry.
    Acr(AcrSettings),
    /// Google Artifact Registry / GCR.
    Gcp(GcpSettings),
}

impl CloudAuth {
    /// Which kind this is.
    pub fn kind(&self) -> AuthKind {
        match self {
            CloudAuth::Ecr(_) => AuthKind::Ecr,
            CloudAuth::Acr(_) => AuthKind::Acr,
            CloudAuth::Gcp(_) => AuthKind::Gcp,
        }
    }
}

/// How a registry's credentials are chosen: the resolved `auth` of a registry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AuthChoice {
    /// Not set: configured credentials, else Docker's `config.json`, else the cloud the host
    /// name belongs to ([`AuthKind::detect`]), else anonymous.
    #[default]
    Detect,
    /// Configured credentials or Docker's `config.json` only; no cloud identity.
    Static,
    /// This cloud's identity.
    Cloud(CloudAuth),
}

impl AuthChoice {
    /// The choice for an `auth` kind with default cloud settings.
    pub fn from_kind(kind: AuthKind) -> Self {
        match kind.default_settings() {
            Some(c) => AuthChoice::Cloud(c),
            None => AuthChoice::Static,
        }
    }
}

/// Why cloud credentials could not be had. Names the registry and the credential source; never
/// carries a secret.
#[derive(Debug, thiserror::Error)]
#[error("registry {registry}: no {cloud} credentials from {source_name}: {reason}")]
pub struct CloudError {
    /// Registry name.
    pub registry: String,
    /// `ECR`, `ACR` or `Google`.
    pub cloud: &'static str,
    /// Where the credentials were to come from, e.g. `the AWS credential chain`.
    pub source_name: String,
    /// What went wrong, and what to do about it where that is known.
    pub reason: String,
    /// Whether asking again later may work (an endpoint unreachable or answering 5xx).
    pub transient: bool,
}

/// What a challenge told about the registry's token service; ACR's exchange endpoint is found
/// from it (as `az acr login` does).
#[derive(Clone, Copy, Debug, Default)]
pub struct ChallengeInfo<'a> {
    /// The token realm, when the registry asked for Bearer.
    pub realm: Option<&'a Url>,
    /// The `service` of the challenge.
    pub service: Option<&'a str>,
}

/// Credentials a cloud issued, and how long they live from now.
pub struct Issued {
    /// What to present to the registry.
    pub credentials: Credentials,
    /// Lifetime from the moment of issue.
    pub lifetime: Duration,
}

/// One cloud's way of getting registry credentials (and of preparing pushes).
#[async_trait]
pub(crate) trait Source: Send + Sync {
    /// Where credentials come from, for messages and logs (e.g. `AKS workload identity`).
    fn describe(&self) -> String;

    /// Asks the cloud for fresh credentials.
    async fn fetch(&self, challenge: ChallengeInfo<'_>) -> Result<Issued, CloudError>;

    /// Called once per repository before the first push to it (ECR creates it there).
    async fn before_push(&self, _repo: &str) -> Result<(), CloudError> {
        Ok(())
    }

    /// Whether the registry mounts blobs across repositories (ECR answers every mount 202).
    fn mounts_blobs(&self) -> bool {
        true
    }
}

struct Held {
    credentials: Credentials,
    renew_at: Instant,
    expires_at: Instant,
}

/// Cloud-issued credentials for one registry, cached and renewed before they expire.
pub struct CloudCredentials {
    registry: String,
    kind: AuthKind,
    source: Box<dyn Source>,
    held: Mutex<Option<Held>>,
    /// Serialises fetches, so parallel requests that need credentials make one.
    fetching: tokio::sync::Mutex<()>,
    pushed: Mutex<std::collections::HashSet<String>>,
}

impl fmt::Debug for CloudCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudCredentials")
            .field("registry", &self.registry)
            .field("kind", &self.kind)
            .field("source", &self.source.describe())
            .finish_non_exhaustive()
    }
}

impl CloudCredentials {
    /// The credentials of `settings` for `registry`; `client` reaches identity endpoints (it
    /// carries the registry's proxy and TLS settings). The AWS SDK cannot use that client, so
    /// ECR gets the registry's `proxy` setting itself. Nothing is fetched yet.
    pub fn new(
        registry: &str,
        settings: &CloudAuth,
        client: reqwest::Client,
        proxy: &ProxySetting,
    ) -> Self {
        let source: Box<dyn Source> = match settings {
            CloudAuth::Ecr(s) => Box::new(ecr::EcrSource::new(registry, s.clone(), proxy.clone())),
            CloudAuth::Acr(s) => Box::new(acr::AcrSource::new(registry, s.clone(), client)),
            CloudAuth::Gcp(s) => Box::new(gcp::GcpSource::new(registry, s.clone(), client)),
        };
        Self::with_source(registry, settings.kind(), source)
    }

    pub(crate) fn with_source(registry: &str, kind: AuthKind, source: Box<dyn Source>) -> Self {
        CloudCredentials {
            registry: registry.to_string(),
            kind,
            source,
            held: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            pushed: Mutex::new(Default::default()),
        }
    }

    /// Which cloud.
    pub fn kind(&self) -> AuthKind {
        self.kind
    }

    /// A short name of what is presented, for "refused" messages.
    pub fn credential_name(&self) -> &'static str {
        match self.kind {
            AuthKind::Ecr => "ECR authorization token",
            AuthKind::Acr => "ACR refresh token",
            AuthKind::Gcp => "Google access token",
            AuthKind::Static => "static",
        }
    }

    /// What is held and not due for renewal at `now`, without I/O.
    pub fn current(&self, now: Instant) -> Option<Credentials> {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.as_ref()
            .filter(|h| now < h.renew_at)
            .map(|h| h.credentials.clone())
    }

    /// Credentials to present: what is held while it is fresh, else fresh ones from the cloud.
    /// Renewal starts once three quarters of the lifetime have passed; if the cloud cannot be
    /// reached then, the old credentials serve until they actually expire.
    pub async fn get(
        &self,
        clock: &Clock,
        challenge: ChallengeInfo<'_>,
    ) -> Result<Credentials, CloudError> {
        if let Some(c) = self.current(clock()) {
            return Ok(c);
        }
        let _fetching = self.fetching.lock().await;
        if let Some(c) = self.current(clock()) {
            return Ok(c);
        }
        match self.source.fetch(challenge).await {
            Ok(issued) => {
                let now = clock();
                tracing::debug!(
                    registry = %self.registry,
                    source = %self.source.describe(),
                    lifetime_s = issued.lifetime.as_secs(),
                    "cloud credentials issued"
                );
                let held = Held {
                    credentials: issued.credentials.clone(),
                    renew_at: now + issued.lifetime * 3 / 4,
                    expires_at: now + issued.lifetime,
                };
                *self.held.lock().unwrap_or_else(|e| e.into_inner()) = Some(held);
                Ok(issued.credentials)
            }
            Err(e) => {
                let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
                match held.as_ref().filter(|h| clock() < h.expires_at) {
                    Some(h) if e.transient => {
                        tracing::warn!(registry = %self.registry, error = %e,
                            "renewing cloud credentials failed; the current ones serve until they expire");
                        Ok(h.credentials.clone())
                    }
                    _ => Err(e),
                }
            }
        }
    }

    /// Forgets what is held (the registry refused it), so the next [`Self::get`] asks anew.
    pub fn invalidate(&self) {
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Prepares the first push to `repo` (once per repository).
    pub async fn before_push(&self, repo: &str) -> Result<(), CloudError> {
        if self
            .pushed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(repo)
        {
            return Ok(());
        }
        self.source.before_push(repo).await?;
        self.pushed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(repo.to_string());
        Ok(())
    }

    /// Whether cross-repository mounts are worth asking for.
    pub fn mounts_blobs(&self) -> bool {
        self.source.mounts_blobs()
    }
}

/// Shared by the backends: a handle cheap to clone.
pub type SharedCloud = Arc<CloudCredentials>;

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::registry::auth::Secret;

    /// Issues `pw-1`, `pw-2`, … living `lifetime`; fails transiently when `fail` is set.
    struct Counting {
        calls: Arc<AtomicUsize>,
        fail: Arc<std::sync::atomic::AtomicBool>,
        lifetime: Duration,
    }

    #[async_trait]
    impl Source for Counting {
        fn describe(&self) -> String {
            "a counting source".into()
        }
        async fn fetch(&self, _: ChallengeInfo<'_>) -> Result<Issued, CloudError> {
            if self.fail.load(Ordering::SeqCst) {
                return Err(CloudError {
                    registry: "r".into(),
                    cloud: "ECR",
                    source_name: self.describe(),
                    reason: "unreachable".into(),
                    transient: true,
                });
            }
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(Issued {
                credentials: Credentials::Basic {
                    username: "AWS".into(),
                    password: Secret::new(format!("pw-{n}")),
                },
                lifetime: self.lifetime,
            })
        }
    }

    fn password(c: &Credentials) -> String {
        match c {
            Credentials::Basic { password, .. } => password.expose().to_string(),
            _ => panic!("not basic"),
        }
    }

    #[tokio::test]
    async fn renews_after_three_quarters_of_the_lifetime() {
        let calls = Arc::new(AtomicUsize::new(0));
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let source = Counting {
            calls: calls.clone(),
            fail: fail.clone(),
            lifetime: Duration::from_secs(12 * 3600),
        };
        let cloud = CloudCredentials::with_source("r", AuthKind::Ecr, Box::new(source));
        let start = Instant::now();
        let offset = Arc::new(Mutex::new(Duration::ZERO));
        let o = offset.clone();
        let clock: Clock = Arc::new(move || start + *o.lock().unwrap());
        let at = |h: u64| *offset.lock().unwrap() = Duration::from_secs(h * 3600);

        assert_eq!(cloud.current(clock()), None);
        let c = cloud.get(&clock, ChallengeInfo::default()).await.unwrap();
        assert_eq!(password(&c), "pw-1");
        at(8);
        let c = cloud.get(&clock, ChallengeInfo::default()).await.unwrap();
        assert_eq!(password(&c), "pw-1", "8 h into a 12 h token: still held");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        at(9);
        assert_eq!(cloud.current(clock()), None, "due for renewal at 9 h");
        let c = cloud.get(&clock, ChallengeInfo::default()).await.unwrap();
        assert_eq!(password(&c), "pw-2", "renewed 3 h before expiry");

        // Renewal failing while the old token still lives: the old one serves...
        at(9 + 10);
        fail.store(true, Ordering::SeqCst);
        let c = cloud.get(&clock, ChallengeInfo::default()).await.unwrap();
        assert_eq!(password(&c), "pw-2");
        // ...but never past its expiry.
        at(9 + 12);
        let e = cloud
            .get(&clock, ChallengeInfo::default())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("a counting source"), "{e}");
        fail.store(false, Ordering::SeqCst);
        cloud.invalidate();
        let c = cloud.get(&clock, ChallengeInfo::default()).await.unwrap();
        assert_eq!(password(&c), "pw-3");
        assert!(!format!("{cloud:?}").contains("pw-"));
    }

    #[test]
    fn detects_the_cloud_from_the_host() {
        for (host, kind) in [
            (
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
                Some(AuthKind::Ecr),
            ),
            (
                "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
                Some(AuthKind::Ecr),
            ),
            (
                "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com",
                Some(AuthKind::Ecr),
            ),
            ("myreg.azurecr.io", Some(AuthKind::Acr)),
            ("europe-west1-docker.pkg.dev", Some(AuthKind::Gcp)),
            ("gcr.io", Some(AuthKind::Gcp)),
            ("eu.gcr.io", Some(AuthKind::Gcp)),
            ("public.ecr.aws", None),
            ("docker.io", None),
            ("localhost:5000", None),
            ("evil-azurecr.io", None),
            ("notgcr.io", None),
        ] {
            assert_eq!(AuthKind::detect(host), kind, "{host}");
        }
        assert_eq!("ecr".parse::<AuthKind>(), Ok(AuthKind::Ecr));
        assert!(
            "aws"
                .parse::<AuthKind>()
                .unwrap_err()
                .contains("static, ecr")
        );
    }
}
