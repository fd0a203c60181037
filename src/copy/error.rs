//! The one error type of the engine: each variant names what failed and where (blob, source,
//! target, tag), carrying the transport's classified error where there is one.

use std::sync::Arc;

use crate::digest::Digest;
use crate::registry::RegistryError;

/// Why a copy failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// Reading the source failed.
    #[error("reading {reference}: {error}")]
    Source {
        /// What was being read.
        reference: String,
        /// The transport error.
        #[source]
        error: Box<RegistryError>,
    },
    /// Checking or writing a target failed outside a blob transfer.
    #[error("target {target}: {error}")]
    Target {
        /// The target reference.
        target: String,
        /// The transport error.
        #[source]
        error: Box<RegistryError>,
    },
    /// A target tag points at another image and the copy was not forced.
    #[error(
        "target tag {target} already points at {existing}, not at {wanted} (the source); \
         nothing was copied — use --force (or on_conflict = \"overwrite\") to move it"
    )]
    Conflict {
        /// The target tag reference.
        target: String,
        /// What it points at now.
        existing: Digest,
        /// What the copy would put there.
        wanted: Digest,
    },
    /// One blob could not be transferred.
    #[error("blob {digest} from {source_repo} to {target_repo}: {error}")]
    Blob {
        /// The blob.
        digest: Digest,
        /// Where it was read.
        source_repo: String,
        /// Where it was written.
        target_repo: String,
        /// The transport error (DigestInvalid for content that failed verification).
        #[source]
        error: Box<RegistryError>,
    },
    /// The platform filter matched nothing.
    #[error("no platform of the source matches {wanted:?}; it has {available:?}")]
    NoPlatformMatch {
        /// Platforms asked for.
        wanted: Vec<String>,
        /// Platforms present.
        available: Vec<String>,
    },
    /// Indexes nested too deep.
    #[error("image {digest} nests indexes deeper than {max} levels")]
    TooDeep {
        /// Root digest.
        digest: Digest,
        /// The limit.
        max: usize,
    },
    /// Too many manifests in one tree.
    #[error("image {digest} has more than {max} manifests")]
    TooLarge {
        /// Root digest.
        digest: Digest,
        /// The limit.
        max: usize,
    },
    /// An index entry that is not a manifest.
    #[error("index entry {digest} has media type {media_type:?}, which is not a manifest")]
    UnsupportedChild {
        /// The entry.
        digest: Digest,
        /// Its media type.
        media_type: String,
    },
    /// A descriptor's size disagrees with the content.
    #[error("manifest {digest} is {actual} bytes but its descriptor says {declared}")]
    SizeLies {
        /// The manifest.
        digest: Digest,
        /// Declared size.
        declared: u64,
        /// Real size.
        actual: u64,
    },
    /// An attached artifact (signature, SBOM) could not be copied.
    #[error("copying attached artifact {digest}: {error}")]
    Referrer {
        /// The artifact.
        digest: Digest,
        /// What went wrong (cause chain).
        error: String,
    },
    /// A failure shared by several waiters on the same transfer.
    #[error(transparent)]
    Shared(Arc<CopyError>),
    /// A bug.
    #[error("internal error: {message}")]
    Internal {
        /// What happened.
        message: String,
    },
}

impl CopyError {
    pub(crate) fn source(what: impl std::fmt::Display, error: RegistryError) -> Self {
        CopyError::Source {
            reference: what.to_string(),
            error: Box::new(error),
        }
    }

    /// The error itself, seen through any number of `Shared` wrappers: what to match on.
    pub fn cause(&self) -> &CopyError {
        match self {
            CopyError::Shared(inner) => inner.cause(),
            other => other,
        }
    }
}
