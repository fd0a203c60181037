//! The classified error of every transport call.
//!
//! Callers decide what to do from the *kind* of failure — retry it, skip it, report it — never by
//! matching message strings. A [`RegistryError`] carries the kind, the URL (or path) involved, the
//! HTTP status when there was one, and the registry's own error body
//! (`{"errors":[{"code","message","detail"}]}`) when it sent one.

use std::fmt;
use std::time::Duration;

use crate::digest::DigestError;
use crate::manifest::ManifestError;

/// What went wrong, as a caller needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The repository, manifest, tag or blob does not exist.
    NotFound,
    /// No or wrong credentials (401 after one refresh).
    Unauthorized,
    /// Credentials were fine but the action is not allowed (403).
    Denied,
    /// 429 or a Docker Hub pull limit.
    RateLimited,
    /// Content did not match its digest or size (ours or the registry's check).
    DigestInvalid,
    /// The registry refused a manifest because a child is not there (`MANIFEST_BLOB_UNKNOWN`).
    ManifestBlobUnknown,
    /// The registry or content uses something crossdock does not handle, or the registry does
    /// not implement an API (405, `UNSUPPORTED`).
    Unsupported,
    /// Bad content from the registry: malformed manifest, unexpected status, bad header.
    Invalid,
    /// 5xx.
    ServerError,
    /// Connect, TLS, reset, timeout: the request may not have reached the registry.
    Transport,
}

impl ErrorKind {
    /// A short lowercase name, used in metrics labels and JSON reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Denied => "denied",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::DigestInvalid => "digest_invalid",
            ErrorKind::ManifestBlobUnknown => "manifest_blob_unknown",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Invalid => "invalid",
            ErrorKind::ServerError => "server_error",
            ErrorKind::Transport => "transport",
        }
    }
}

/// One entry of a registry's error body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct RegistryErrorBody {
    /// e.g. `MANIFEST_UNKNOWN`.
    #[serde(default)]
    pub code: String,
    /// Human message.
    #[serde(default)]
    pub message: String,
    /// Free-form detail, kept as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

/// A failed transport call.
#[derive(Debug)]
pub struct RegistryError {
    /// The classification.
    pub kind: ErrorKind,
    /// What was being done, e.g. `GET manifest` (no secrets).
    pub operation: &'static str,
    /// The URL or path concerned (never with credentials in it).
    pub url: String,
    /// HTTP status, if a response arrived.
    pub status: Option<u16>,
    /// The registry's error entries, if it sent a spec error body.
    pub errors: Box<[RegistryErrorBody]>,
    /// Extra explanation (a non-JSON body excerpt, our own finding).
    pub message: String,
    /// How long the registry asked us to wait (Retry-After).
    pub retry_after: Option<Duration>,
    /// The underlying cause, if any.
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
    /// A 413 for an upload after which the transport switched to smaller chunks: sending the
    /// blob again (from a fresh stream) can succeed.
    pub retry_with_smaller_body: bool,
}

impl RegistryError {
    /// A new error of `kind` for `operation` on `url`.
    pub fn new(kind: ErrorKind, operation: &'static str, url: impl Into<String>) -> Self {
        RegistryError {
            kind,
            operation,
            url: url.into(),
            status: None,
            errors: Box::default(),
            message: String::new(),
            retry_after: None,
            source: None,
            retry_with_smaller_body: false,
        }
    }

    /// Adds an explanation.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    /// Adds a cause.
    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Adds the HTTP status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// Whether trying the same call again may succeed: transport faults, 5xx, rate limits.
    pub fn is_retryable(&self) -> bool {
        self.retry_with_smaller_body
            || matches!(
                self.kind,
                ErrorKind::Transport | ErrorKind::ServerError | ErrorKind::RateLimited
            )
    }

    /// Whether the thing asked for is absent.
    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }

    /// An error for content that failed verification.
    pub fn from_digest(operation: &'static str, url: &str, e: DigestError) -> Self {
        RegistryError::new(ErrorKind::DigestInvalid, operation, url)
            .with_message(e.to_string())
            .with_source(e)
    }

    /// An error for a manifest that could not be read.
    pub fn from_manifest(operation: &'static str, url: &str, e: ManifestError) -> Self {
        let kind = match &e {
            ManifestError::Digest(_) => ErrorKind::DigestInvalid,
            ManifestError::Schema1 { .. } | ManifestError::UnsupportedMediaType { .. } => {
                ErrorKind::Unsupported
            }
            _ => ErrorKind::Invalid,
        };
        RegistryError::new(kind, operation, url)
            .with_message(e.to_string())
            .with_source(e)
    }
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.operation, self.url)?;
        if let Some(s) = self.status {
            write!(f, ": HTTP {s}")?;
        }
        write!(f, " ({})", self.kind.as_str())?;
        for e in &self.errors {
            write!(f, ": {}", e.code)?;
            if !e.message.is_empty() {
                write!(f, " {}", e.message)?;
            }
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for RegistryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Shorthand for transport results.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;
