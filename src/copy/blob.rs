//! Getting one blob into one target repository, the cheapest way that is correct.
//!
//! In order: the target already has it (one HEAD) → skip; another repository of the same target
//! registry is known to hold it → mount (no bytes move; a 202 answer falls through to an upload
//! into the session the registry opened); otherwise stream it from the source GET into the
//! target upload through a [`VerifyingStream`], which fails the upload before it completes if
//! the bytes do not match the descriptor's digest and size. Memory stays bounded by the HTTP
//! buffers, whatever the blob size.
//!
//! Transient failures (connection reset, 5xx, 429) retry the whole transfer from a fresh source
//! stream and a fresh upload session: an upload is never replayed blindly.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::{CopyError, Progress};
use crate::digest::VerifyingStream;
use crate::manifest::Descriptor;
use crate::registry::{ErrorKind, MountOutcome, RegistryError, Transport};

/// How a blob reached the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    /// The target already had it.
    Skipped,
    /// Mounted from another repository of the target registry.
    Mounted,
    /// Streamed from the source.
    Copied,
    /// Dry run: it would be mounted.
    WouldMount,
    /// Dry run: it would be copied.
    WouldCopy,
}

/// Attempts for one blob transfer.
const ATTEMPTS: u32 = 3;

/// One blob transfer's parties.
pub struct BlobJob {
    /// Where the bytes come from.
    pub source: Arc<dyn Transport>,
    /// Source repository.
    pub source_repo: String,
    /// Where they go.
    pub target: Arc<dyn Transport>,
    /// Target repository.
    pub target_repo: String,
    /// The blob.
    pub descriptor: Descriptor,
    /// A repository of the target registry known to hold the blob.
    pub mount_from: Option<String>,
    /// Report nothing written.
    pub dry_run: bool,
}

impl BlobJob {
    fn blob_error(&self, error: RegistryError) -> CopyError {
        CopyError::Blob {
            digest: self.descriptor.digest.clone(),
            source_repo: format!("{}/{}", self.source.name(), self.source_repo),
            target_repo: format!("{}/{}", self.target.name(), self.target_repo),
            error: Box::new(error),
        }
    }

    /// Runs the job.
    pub async fn run(&self, progress: &Arc<dyn Progress>) -> Result<BlobOutcome, CopyError> {
        let digest = &self.descriptor.digest;
        if self
            .target
            .blob_head(&self.target_repo, digest)
            .await
            .map_err(|e| self.blob_error(e))?
            .is_some()
        {
            return Ok(BlobOutcome::Skipped);
        }
        if self.dry_run {
            return Ok(if self.mount_from.is_some() {
                BlobOutcome::WouldMount
            } else {
                BlobOutcome::WouldCopy
            });
        }
        let mut session = None;
        if let Some(from) = &self.mount_from {
            match self
                .target
                .blob_mount(&self.target_repo, digest, from)
                .await
            {
                Ok(MountOutcome::Mounted) => return Ok(BlobOutcome::Mounted),
                Ok(MountOutcome::Upload(s)) => session = Some(s),
                // A refused mount (permissions on `from`, registry without mounts) is not a
                // failure of the copy: the bytes can still be streamed.
                Err(e) if !e.is_retryable() => {
                    tracing::debug!(%digest, error = %e, "mount refused, uploading instead")
                }
                Err(e) => return Err(self.blob_error(e)),
            }
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.stream_once(session.take(), progress).await {
                Ok(()) => return Ok(BlobOutcome::Copied),
                Err(e) if e.is_retryable() && attempt < ATTEMPTS => {
                    let wait = e
                        .retry_after
                        .unwrap_or(Duration::from_millis(500 * 2u64.pow(attempt - 1)));
                    tracing::warn!(%digest, attempt, error = %e, "blob transfer failed, retrying in {wait:?}");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(self.blob_error(e)),
            }
        }
    }

    async fn stream_once(
        &self,
        session: Option<crate::registry::UploadSession>,
        progress: &Arc<dyn Progress>,
    ) -> Result<(), RegistryError> {
        let d = &self.descriptor;
        let body = match self.source.blob_get(&self.source_repo, &d.digest).await {
            Ok(b) => b,
            Err(e) => {
                if let Some(s) = session {
                    self.target.upload_cancel(&self.target_repo, s).await;
                }
                return Err(e);
            }
        };
        if let Some(len) = body.size
            && len != d.size
        {
            if let Some(s) = session {
                self.target.upload_cancel(&self.target_repo, s).await;
            }
            return Err(RegistryError::new(
                ErrorKind::DigestInvalid,
                "GET blob",
                format!("{}/{}@{}", self.source.name(), self.source_repo, d.digest),
            )
            .with_message(format!(
                "the source serves {len} bytes but the manifest declares {} bytes",
                d.size
            )));
        }
        let progress = progress.clone();
        let counted = body.stream.inspect(move |chunk| {
            if let Ok(c) = chunk {
                progress.bytes(c.len() as u64);
            }
        });
        let verified = VerifyingStream::new(counted, d.digest.clone(), Some(d.size));
        self.target
            .blob_put(
                &self.target_repo,
                &d.digest,
                d.size,
                Box::pin(verified),
                session,
            )
            .await
    }
}
