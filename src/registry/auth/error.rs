//! [`AuthError`]: why authentication failed, in words that name the registry, the realm host or
//! the credential source and never a secret; and the transport [`ErrorKind`] each amounts to.

use super::{ChallengeError, cloud};
use crate::registry::ErrorKind;

/// Why authentication failed. Messages name the registry and the reason, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The registry (or its token realm) demands credentials and none are configured.
    #[error("registry {registry} requires credentials and none are configured")]
    CredentialsRequired {
        /// Registry name.
        registry: String,
    },
    /// The registry refused credentials we sent it directly (Basic, or a static token).
    #[error("registry {registry} refused the {kind} credentials (HTTP 401 after sending them)")]
    Refused {
        /// Registry name.
        registry: String,
        /// Which kind of credentials, e.g. `username/password`.
        kind: &'static str,
    },
    /// The configured credentials cannot answer the scheme the registry asked for.
    #[error(
        "registry {registry} asks for {scheme} authentication, which {kind} credentials cannot answer"
    )]
    UnsuitableCredentials {
        /// Registry name.
        registry: String,
        /// `Basic` or `Bearer`.
        scheme: &'static str,
        /// Which kind of credentials is configured.
        kind: &'static str,
    },
    /// The 401 carried no usable `WWW-Authenticate` challenge.
    #[error("registry {registry} sent an unusable WWW-Authenticate challenge: {source}")]
    InvalidChallenge {
        /// Registry name.
        registry: String,
        /// What is wrong with it.
        source: ChallengeError,
    },
    /// The challenge's realm is not a URL crossdock will ask.
    #[error("registry {registry} names token realm {realm:?}, which is unusable: {reason}")]
    InvalidRealm {
        /// Registry name.
        registry: String,
        /// The realm as sent.
        realm: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The token realm could not be reached.
    #[error("token service {realm_host} of registry {registry} could not be reached")]
    TokenRequest {
        /// Registry name.
        registry: String,
        /// Host of the realm.
        realm_host: String,
        /// The transport error.
        source: reqwest::Error,
    },
    /// The token realm refused to issue a token (401/403).
    #[error(
        "token service {realm_host} of registry {registry} refused {} (HTTP {status}): {detail}",
        if *.anonymous { "anonymous access" } else { "the credentials" }
    )]
    TokenRefused {
        /// Registry name.
        registry: String,
        /// Host of the realm.
        realm_host: String,
        /// HTTP status.
        status: u16,
        /// Whether we asked without credentials.
        anonymous: bool,
        /// The realm's explanation.
        detail: String,
    },
    /// The token realm answered another failure status.
    #[error("token service {realm_host} of registry {registry} answered HTTP {status}: {detail}")]
    TokenStatus {
        /// Registry name.
        registry: String,
        /// Host of the realm.
        realm_host: String,
        /// HTTP status.
        status: u16,
        /// The realm's explanation.
        detail: String,
    },
    /// The token realm answered 200 with something that is not a token.
    #[error("token service {realm_host} of registry {registry} sent a bad answer: {reason}")]
    TokenResponse {
        /// Registry name.
        registry: String,
        /// Host of the realm.
        realm_host: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Docker's `config.json` could not be read.
    #[error("docker config {path}: {reason}")]
    DockerConfig {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A cloud identity could not give credentials.
    #[error(transparent)]
    Cloud(#[from] cloud::CloudError),
    /// A `docker-credential-*` helper failed.
    #[error("credential helper docker-credential-{helper} for registry {registry}: {reason}")]
    CredentialHelper {
        /// Helper name (the part after `docker-credential-`).
        helper: String,
        /// Registry name.
        registry: String,
        /// What went wrong.
        reason: String,
    },
}

impl AuthError {
    /// The transport error kind this failure amounts to, so the HTTP layer can classify it
    /// (and retry a token service that is down or rate limiting).
    pub fn kind(&self) -> ErrorKind {
        match self {
            AuthError::CredentialsRequired { .. }
            | AuthError::Refused { .. }
            | AuthError::UnsuitableCredentials { .. }
            | AuthError::DockerConfig { .. }
            | AuthError::CredentialHelper { .. } => ErrorKind::Unauthorized,
            AuthError::TokenRefused { status: 403, .. } => ErrorKind::Denied,
            AuthError::TokenRefused { .. } => ErrorKind::Unauthorized,
            AuthError::TokenStatus { status: 429, .. } => ErrorKind::RateLimited,
            AuthError::TokenStatus { status, .. } if *status >= 500 => ErrorKind::ServerError,
            AuthError::TokenStatus { .. }
            | AuthError::InvalidChallenge { .. }
            | AuthError::InvalidRealm { .. }
            | AuthError::TokenResponse { .. } => ErrorKind::Invalid,
            AuthError::TokenRequest { .. } => ErrorKind::Transport,
            AuthError::Cloud(e) if e.transient => ErrorKind::Transport,
            AuthError::Cloud(_) => ErrorKind::Unauthorized,
        }
    }
}
