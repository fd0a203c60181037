//! Image archives as transports: `oci-archive:PATH` and `docker-archive:PATH`, single tar
//! files that carry images to hosts without a registry.
//!
//! - `oci-archive:` is a tar of an OCI image layout (what `skopeo copy … oci-archive:` and
//!   buildkit write): every platform, every manifest byte for byte, tags as
//!   `org.opencontainers.image.ref.name`.
//! - `docker-archive:` is what `docker save` writes and `docker load` and `ctr image import`
//!   read: `manifest.json` listing, per image, its config file, layer files and `RepoTags`.
//!   It holds one image of one platform. It has no manifest, so reading a classic one means
//!   making one ([`docker::synthesize`]): its digest is crossdock's, not the published
//!   image's, and [`crate::registry::Transport::made_manifest`] says so. Newer docker (25+)
//!   also writes an OCI layout in the same tar, and so does crossdock; when it is there the
//!   original manifests are read from it and digests are kept.
//!
//! Reading ([`source::ArchiveSource`]) never unpacks: the tar's headers are indexed once and
//! blobs are streamed from their offsets ([`tarfile`]). Writing ([`target::ArchiveTarget`])
//! stages the image as an OCI layout folder next to the destination (the layout backend does
//! the verifying and the bookkeeping), then writes the tar to a temporary file and renames it
//! into place in [`crate::registry::Transport::finish`]: a copy that fails, or is never
//! finished, leaves no archive and no partial file. An existing archive is replaced only when
//! asked (`--force`); the check and the final link are one atomic step.

pub mod docker;
pub mod source;
pub mod tarfile;
pub mod target;

use std::io;
use std::path::{Path, PathBuf};

pub use source::ArchiveSource;
pub use target::ArchiveTarget;

use super::{ErrorKind, RegistryError};
use crate::reference::ArchiveKind;

/// Largest JSON document (`index.json`, `manifest.json`, a config) read from an archive.
pub const MAX_METADATA_SIZE: u64 = 16 * 1024 * 1024;

/// Why an archive cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The file cannot be opened or read.
    #[error("cannot read the archive {path}: {source}{}", hint_for(source))]
    Open {
        /// The archive.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The file is not an archive of the kind named.
    #[error("{path} is not an image archive: {reason}")]
    NotAnImage {
        /// The archive.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file the archive's own metadata names is not in it.
    #[error("{path} is not a complete image archive: it names {name} but does not hold it")]
    Missing {
        /// The archive.
        path: PathBuf,
        /// The file named.
        name: String,
    },
    /// No image of that name or tag in the archive.
    #[error("{path} holds no image {wanted}; it holds: {available}")]
    NoSuchImage {
        /// The archive.
        path: PathBuf,
        /// The name or tag asked for.
        wanted: String,
        /// What it holds, for the next try.
        available: String,
    },
    /// The target exists and replacing it was not asked for.
    #[error("the target archive {path} exists; pass --force to replace it, or name a new file")]
    Exists {
        /// The archive.
        path: PathBuf,
    },
    /// Writing the archive failed.
    #[error("writing the archive {path}: {what}: {source}")]
    Write {
        /// The archive.
        path: PathBuf,
        /// The step.
        what: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// What was copied does not fit the archive's format.
    #[error("cannot write {path}: {reason}")]
    Unfit {
        /// The archive.
        path: PathBuf,
        /// Why, and what to do.
        reason: String,
    },
}

fn hint_for(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::NotFound => " (check the path)",
        io::ErrorKind::PermissionDenied => " (check the file's permissions)",
        _ => "",
    }
}

impl ArchiveError {
    pub(crate) fn open(path: &Path, source: io::Error) -> Self {
        ArchiveError::Open {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn not_an_image(path: &Path, reason: &str) -> Self {
        ArchiveError::NotAnImage {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn missing(path: &Path, name: &str) -> Self {
        ArchiveError::Missing {
            path: path.to_path_buf(),
            name: name.to_string(),
        }
    }

    pub(crate) fn write<'a>(
        path: &'a Path,
        what: &'static str,
    ) -> impl FnOnce(io::Error) -> Self + 'a {
        move |source| ArchiveError::Write {
            path: path.to_path_buf(),
            what,
            source,
        }
    }

    pub(crate) fn unfit(path: &Path, reason: String) -> Self {
        ArchiveError::Unfit {
            path: path.to_path_buf(),
            reason,
        }
    }

    fn kind(&self) -> ErrorKind {
        match self {
            ArchiveError::Open { source, .. } | ArchiveError::Write { source, .. } => {
                match source.kind() {
                    io::ErrorKind::NotFound => ErrorKind::NotFound,
                    io::ErrorKind::PermissionDenied => ErrorKind::Denied,
                    _ => ErrorKind::ServerError,
                }
            }
            ArchiveError::NoSuchImage { .. } => ErrorKind::NotFound,
            ArchiveError::Unfit { .. } => ErrorKind::Unsupported,
            _ => ErrorKind::Invalid,
        }
    }

    /// As a transport error of `operation` on the archive `name` (`oci-archive:/path`). The
    /// message is this error's, which names the path; the URL field names the transport.
    pub fn into_registry(self, operation: &'static str, name: &str) -> RegistryError {
        // The message only: as a source too, cause-chain printers would say it twice.
        RegistryError::new(self.kind(), operation, name).with_message(self.to_string())
    }
}

/// The transport name of an archive: its pseudo-registry, `oci-archive:/abs/path`.
pub(crate) fn transport_name(kind: ArchiveKind, path: &Path) -> String {
    format!("{}{}", kind.prefix(), path.display())
}

/// Runs blocking archive work on tokio's blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> Result<T, ArchiveError> + Send + 'static,
) -> Result<T, ArchiveError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(ArchiveError::open(path, io::Error::other(e.to_string()))))
}

#[cfg(test)]
mod tests;
