//! Registry authentication: credentials, `WWW-Authenticate` challenges, and cached bearer tokens.
//!
//! The HTTP backend never decides how to authenticate; it asks an [`Auth`] (one per registry
//! host) and follows this handshake:
//!
//! 1. Before a request, [`Auth::cached_header`] gives what is already known, without I/O: the
//!    Basic header if this registry asked for Basic before, an unexpired bearer token whose
//!    scopes cover the request's, or nothing (the request goes out anonymous).
//! 2. On a 401, [`Auth::on_unauthorized`] reads the `WWW-Authenticate` challenge
//!    ([`parse_challenge`]). Basic → the Basic header. Bearer → a token from the challenge's
//!    realm (see `auth/token.rs`) for the union of the caller's scopes and the challenge's,
//!    cached until shortly before it expires. The HTTP layer retries once with the returned header.
//! 3. If the header that failed was a cached token, that token is dropped and a fresh one
//!    fetched — once; a second 401 is the HTTP layer's error to report.
//!
//! Why this shape: registries differ in what they want (distribution with htpasswd wants Basic
//! on every request; Docker Hub, ghcr and quay want tokens per repository and action), and the
//! 401 is the only portable way to learn it. Token fetches are serialised per registry so that a
//! burst of parallel blob requests that all hit 401 fetch one token, not fifty. When credentials
//! were given and refused, the error says so and names the registry and realm host; crossdock
//! never quietly carries on anonymously.
//!
//! Secrets live in [`Secret`], whose Debug and Display print `***`; header values built here are
//! marked sensitive; logs name the scheme, the realm host and the scopes, never a token or
//! password. Credentials come from configuration or from Docker's `config.json`
//! ([`docker_config`]).

pub mod challenge;
pub mod cloud;
pub mod docker_config;
mod error;
pub mod login;
mod scope;
mod token;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine;
use http::HeaderValue;

pub use challenge::{Challenge, ChallengeError, parse_challenge};
pub use docker_config::{DockerConfig, credentials_from_docker_config};
pub use error::AuthError;
pub use scope::Scope;
use scope::ScopeSet;

/// A secret string: Debug and Display print `***`; [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret value itself: only to send it, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// What crossdock presents to a registry. Debug shows the username, never a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credentials {
    /// A username and password (or an access token used as a password, as ghcr wants).
    Basic {
        /// Username (not secret).
        username: String,
        /// Password.
        password: Secret,
    },
    /// An OAuth2 refresh token, as `docker login` stores it in `identitytoken`; exchanged for
    /// access tokens with the OAuth2 POST.
    IdentityToken(Secret),
    /// A static bearer token, sent as is (`registrytoken` in Docker's config).
    RegistryToken(Secret),
}

impl Credentials {
    /// Username and password credentials.
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials::Basic {
            username: username.into(),
            password: Secret::new(password),
        }
    }

    /// A short name of the kind, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Credentials::Basic { .. } => "username/password",
            Credentials::IdentityToken(_) => "identity token",
            Credentials::RegistryToken(_) => "registry token",
        }
    }
}

/// A source of "now" for token expiry, replaceable in tests.
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// Tokens kept per registry at most; past this the ones expiring soonest go first. A daemon
/// mirroring many repositories otherwise collects one per repository forever.
const MAX_CACHED_TOKENS: usize = 256;

/// Authentication for one registry host. Cheap to share: `&self` methods, interior
/// mutability; `Send + Sync`.
pub struct Auth {
    registry: String,
    credentials: Option<Credentials>,
    /// Credentials a cloud issues and renews, used instead of `credentials` when set.
    cloud: Option<cloud::SharedCloud>,
    client: reqwest::Client,
    clock: Clock,
    state: Mutex<State>,
    /// Serialises token fetches, so parallel 401s share one fetch.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    /// The scheme the registry last asked for.
    scheme: Option<Scheme>,
    tokens: Vec<CachedToken>,
    /// The current OAuth2 refresh token (starts as the identity token; the realm may rotate it).
    refresh_token: Option<Secret>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    Basic,
    Bearer,
}

struct CachedToken {
    scopes: ScopeSet,
    header: HeaderValue,
    /// When to stop using it: shortly before it expires, so a request in flight does not
    /// carry a token that dies on the way.
    use_until: Instant,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("Auth")
            .field("registry", &self.registry)
            .field("credentials", &self.credentials)
            .field("cloud", &self.cloud)
            .field("scheme", &state.scheme)
            .field("cached_tokens", &state.tokens.len())
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// Authentication for `registry` (as named in references, e.g. `docker.io`,
    /// `localhost:5000`), anonymous when `credentials` is `None`. `client` is used for token
    /// requests; give it the same TLS settings as the registry's.
    pub fn new(client: reqwest::Client, registry: &str, credentials: Option<Credentials>) -> Self {
        let refresh_token = match &credentials {
            Some(Credentials::IdentityToken(t)) => Some(t.clone()),
            _ => None,
        };
        Auth {
            registry: registry.to_string(),
            credentials,
            cloud: None,
            client,
            clock: Arc::new(Instant::now),
            state: Mutex::new(State {
                refresh_token,
                ..State::default()
            }),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// Takes credentials from a cloud identity (see [`cloud`]) instead of fixed ones.
    pub fn with_cloud(mut self, cloud: cloud::SharedCloud) -> Self {
        self.cloud = Some(cloud);
        self
    }

    /// Replaces the clock used for token expiry (for tests that need time to pass).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The registry this serves.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// Whether credentials are configured.
    pub fn has_credentials(&self) -> bool {
        self.credentials.is_some() || self.cloud.is_some()
    }

    /// The credentials to present: the cloud's current ones (fetched or renewed if due), else
    /// the configured ones.
    async fn effective(
        &self,
        challenge: cloud::ChallengeInfo<'_>,
    ) -> Result<Option<Credentials>, AuthError> {
        match &self.cloud {
            Some(c) => Ok(Some(c.get(&self.clock, challenge).await?)),
            None => Ok(self.credentials.clone()),
        }
    }

    /// What kind of credentials was refused, for the error.
    fn refused_kind(&self, credentials: &Credentials) -> &'static str {
        match &self.cloud {
            Some(c) => {
                // Forget them: the next request asks the cloud afresh.
                c.invalidate();
                c.credential_name()
            }
            None => credentials.kind(),
        }
    }

    /// The `Authorization` value to send with a request needing `scopes`, from what is already
    /// known (no I/O): Basic if the registry asked for Basic before, a cached unexpired bearer
    /// token covering these scopes (or the static registry token), else `None`.
    pub fn cached_header(&self, scopes: &[Scope]) -> Option<HeaderValue> {
        let state = self.state();
        match state.scheme? {
            Scheme::Basic => match &self.cloud {
                Some(c) => basic_header(&c.current((self.clock)())?),
                None => basic_header(self.credentials.as_ref()?),
            },
            Scheme::Bearer => {
                if let Some(Credentials::RegistryToken(t)) = &self.credentials {
                    return bearer_header(t);
                }
                let wanted = ScopeSet::from_scopes(scopes);
                let now = (self.clock)();
                state
                    .tokens
                    .iter()
                    .find(|t| now < t.use_until && t.scopes.covers(&wanted))
                    .map(|t| t.header.clone())
            }
        }
    }

    /// After a 401: reads the `WWW-Authenticate` challenge, obtains credentials for `scopes`
    /// (the Basic header, or a token from the realm), caches them, and returns the header to
    /// retry with. `previous` is the header the refused request carried: a cached token that
    /// was refused is dropped and a fresh one fetched; Basic credentials or a static token that
    /// were refused give [`AuthError::Refused`]. Call at most once per request.
    pub async fn on_unauthorized(
        &self,
        challenge: Option<&HeaderValue>,
        scopes: &[Scope],
        previous: Option<&HeaderValue>,
    ) -> Result<HeaderValue, AuthError> {
        let challenge = match challenge {
            Some(value) => {
                let text = value.to_str().map_err(|_| AuthError::InvalidChallenge {
                    registry: self.registry.clone(),
                    source: ChallengeError::Syntax {
                        at: 0,
                        reason: "header is not visible ASCII",
                    },
                })?;
                parse_challenge(text).map_err(|source| AuthError::InvalidChallenge {
                    registry: self.registry.clone(),
                    source,
                })?
            }
            // A 401 without a challenge breaks the spec; with a password there is only one
            // thing to try, and without one there is nothing to try.
            None if matches!(self.credentials, Some(Credentials::Basic { .. }))
                || self.cloud.is_some() =>
            {
                Challenge::Basic { realm: None }
            }
            None => {
                return Err(AuthError::InvalidChallenge {
                    registry: self.registry.clone(),
                    source: ChallengeError::Unsupported {
                        offered: "none (401 without WWW-Authenticate)".to_string(),
                    },
                });
            }
        };
        match challenge {
            Challenge::Basic { .. } => self.answer_basic(previous).await,
            Challenge::Bearer {
                realm,
                service,
                scope,
                ..
            } => {
                self.answer_bearer(
                    &realm,
                    service.as_deref(),
                    scope.as_deref(),
                    scopes,
                    previous,
                )
                .await
            }
        }
    }

    async fn answer_basic(&self, previous: Option<&HeaderValue>) -> Result<HeaderValue, AuthError> {
        tracing::debug!(registry = %self.registry, scheme = "basic", "registry asks for Basic");
        self.state().scheme = Some(Scheme::Basic);
        let credentials = self.effective(cloud::ChallengeInfo::default()).await?;
        let header = match &credentials {
            None => {
                return Err(AuthError::CredentialsRequired {
                    registry: self.registry.clone(),
                });
            }
            Some(c @ (Credentials::IdentityToken(_) | Credentials::RegistryToken(_))) => {
                return Err(AuthError::UnsuitableCredentials {
                    registry: self.registry.clone(),
                    scheme: "Basic",
                    kind: c.kind(),
                });
            }
            Some(c @ Credentials::Basic { .. }) => {
                basic_header(c).ok_or_else(|| AuthError::UnsuitableCredentials {
                    registry: self.registry.clone(),
                    scheme: "Basic",
                    kind: "username/password (with characters not allowed in a header)",
                })?
            }
        };
        if previous == Some(&header) {
            let kind = match &credentials {
                Some(c) => self.refused_kind(c),
                None => "username/password",
            };
            return Err(AuthError::Refused {
                registry: self.registry.clone(),
                kind,
            });
        }
        Ok(header)
    }

    async fn answer_bearer(
        &self,
        realm: &str,
        service: Option<&str>,
        challenge_scope: Option<&str>,
        scopes: &[Scope],
        previous: Option<&HeaderValue>,
    ) -> Result<HeaderValue, AuthError> {
        self.state().scheme = Some(Scheme::Bearer);
        if let Some(Credentials::RegistryToken(t)) = &self.credentials {
            return self.static_token(t, previous);
        }
        let realm = token::realm_url(&self.registry, realm)?;
        let mut wanted = ScopeSet::from_scopes(scopes);
        for raw in challenge_scope
            .into_iter()
            .flat_map(str::split_ascii_whitespace)
        {
            if !wanted.add_raw(raw) {
                tracing::debug!(
                    registry = %self.registry,
                    scope = raw,
                    "ignoring unreadable scope in challenge"
                );
            }
        }
        if let Some(prev) = previous {
            // The token we sent was refused (revoked, expired early, or short of scope):
            // forget it so neither this nor a later request uses it again.
            self.state().tokens.retain(|t| t.header != prev);
        }

        let _fetching = self.fetching.lock().await;
        // Another request may have fetched what we need while we waited.
        let now = (self.clock)();
        if let Some(t) =
            self.state().tokens.iter().find(|t| {
                now < t.use_until && t.scopes.covers(&wanted) && Some(&t.header) != previous
            })
        {
            return Ok(t.header.clone());
        }
        let scope_strings = wanted.to_strings();
        let challenge = cloud::ChallengeInfo {
            realm: Some(&realm),
            service,
        };
        let credentials = self.effective(challenge).await?;
        let refresh_token = match (&self.cloud, &credentials) {
            (Some(_), Some(Credentials::IdentityToken(t))) => Some(t.clone()),
            _ => self.state().refresh_token.clone(),
        };
        let request = token::TokenRequest {
            registry: &self.registry,
            realm: &realm,
            service,
            scopes: &scope_strings,
            credentials: credentials.as_ref(),
        };
        let granted = match token::fetch(&self.client, &request, refresh_token.as_ref()).await {
            Ok(g) => g,
            Err(e) => {
                if let (Some(c), AuthError::TokenRefused { .. }) = (&self.cloud, &e) {
                    // The realm refused what the cloud issued (revoked, or expired early):
                    // the next attempt asks the cloud afresh.
                    c.invalidate();
                }
                return Err(e);
            }
        };
        let header = granted.header.clone();
        self.remember(wanted, granted);
        Ok(header)
    }

    /// A static registry token as the answer: all there is, so if it was refused (it is
    /// `previous`), nothing else will do.
    fn static_token(
        &self,
        t: &Secret,
        previous: Option<&HeaderValue>,
    ) -> Result<HeaderValue, AuthError> {
        let header = bearer_header(t).ok_or_else(|| AuthError::UnsuitableCredentials {
            registry: self.registry.clone(),
            scheme: "Bearer",
            kind: "registry token (with characters not allowed in a header)",
        })?;
        if previous == Some(&header) {
            return Err(AuthError::Refused {
                registry: self.registry.clone(),
                kind: "registry token",
            });
        }
        tracing::debug!(
            registry = %self.registry,
            scheme = "bearer",
            "using the static registry token"
        );
        Ok(header)
    }

    /// Caches a granted token for `wanted` (replacing one for the same scopes, dropping the
    /// oldest past the cap) and keeps a rotated refresh token.
    fn remember(&self, wanted: ScopeSet, granted: token::GrantedToken) {
        let now = (self.clock)();
        let margin = (granted.lifetime / 10).min(Duration::from_secs(30));
        let mut state = self.state();
        if let (Some(rotated), None) = (granted.refresh_token, &self.cloud) {
            state.refresh_token = Some(rotated);
        }
        state
            .tokens
            .retain(|t| now < t.use_until && t.scopes != wanted);
        if state.tokens.len() >= MAX_CACHED_TOKENS {
            state.tokens.sort_by_key(|t| std::cmp::Reverse(t.use_until));
            state.tokens.truncate(MAX_CACHED_TOKENS - 1);
        }
        state.tokens.push(CachedToken {
            scopes: wanted,
            header: granted.header,
            use_until: now + granted.lifetime - margin,
        });
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent at every await-free step, so a panic elsewhere while
        // holding the lock leaves nothing half-done: carry on with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn basic_header(credentials: &Credentials) -> Option<HeaderValue> {
    match credentials {
        Credentials::Basic { username, password } => {
            let raw = format!("{username}:{}", password.expose());
            let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
            let mut value = HeaderValue::from_str(&format!("Basic {encoded}")).ok()?;
            value.set_sensitive(true);
            Some(value)
        }
        _ => None,
    }
}

fn bearer_header(token: &Secret) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose())).ok()?;
    value.set_sensitive(true);
    Some(value)
}

#[cfg(test)]
mod tests;
