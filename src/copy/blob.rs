//! Getting one blob into one target repository, the cheapest way that is correct.
//!
//! In order: the target already has it (one HEAD) → skip; another repository of the same target
//! registry is known to hold it → mount (no bytes move; a 202 answer falls through to an upload
//! into the session the registry opened); otherwise stream it from the source GET into the
//! target upload through a [`VerifyingStream`], which fails the upload before it completes if
//! the bytes do not match the descriptor's digest and size. Memory stays bounded by the HTTP
//! buffers, whatever the blob size.
//!
//! Into a target repository without tags (a new one, or what an interrupted copy left) the HEAD
//! would nearly always miss, so it is left out: a mount *from the target repository itself*
//! asks "have you got it?" and "open an upload" in one request — distribution answers 201 when
//! the blob is already linked there (an interrupted copy resumes without moving it again) and
//! 202 with an upload session otherwise. A fresh blob then costs POST + PUT, as the raw limit,
//! instead of HEAD + POST + PUT. A registry that never mounts answers 202 every time, which
//! costs at worst re-sending a blob that an interrupted copy had already sent.
//!
//! Transient failures (connection reset, 5xx, 429) retry the whole transfer from a fresh source
//! stream and a fresh upload session: an upload is never replayed blindly.
//!
//! A streamed transfer holds requests open at two registries at once — the source GET for as
//! long as the upload runs — and each registry bounds its requests in flight. Taking those
//! request permits one by one deadlocked: with the source and target in the same registry and
//! `max_concurrency = 2`, two transfers each held a GET and waited forever for the permit of
//! their upload; and copies in opposite directions between two registries could hold one each
//! and wait for the other's. So before opening anything, a transfer reserves, all at once and
//! in a fixed order of registries, a slot for every request it will hold open
//! ([`reserve_streams`]). Slots number as many as the registry's request limit, so whatever
//! transfers hold, a request they still need can always get a permit once the short requests
//! (HEADs, session starts) ahead of it finish.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::OwnedSemaphorePermit;

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
    /// The target repository had no tags when the copy looked: no HEAD, ask by mounting from it.
    pub fresh_target: bool,
    /// Report nothing written.
    pub dry_run: bool,
}

impl BlobJob {
    fn blob_error(&self, error: RegistryError) -> CopyError {
        CopyError::Blob {
            digest: self.descriptor.digest.clone(),
            source_repo: super::location(&*self.source, &self.source_repo),
            target_repo: super::location(&*self.target, &self.target_repo),
            error: Box::new(error),
        }
    }

    /// Runs the job.
    pub async fn run(&self, progress: &Arc<dyn Progress>) -> Result<BlobOutcome, CopyError> {
        let digest = &self.descriptor.digest;
        let fresh = self.fresh_target && !self.dry_run;
        if !fresh
            && self
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
        let self_mount = (fresh && self.mount_from.is_none()).then(|| self.target_repo.clone());
        if let Some(from) = self.mount_from.as_ref().or(self_mount.as_ref()) {
            match self
                .target
                .blob_mount(&self.target_repo, digest, from)
                .await
            {
                Ok(MountOutcome::Mounted) if self_mount.is_some() => {
                    return Ok(BlobOutcome::Skipped);
                }
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
        let (_slots, body) = match reserve_streams(&[&self.source, &self.target]).await {
            Ok(slots) => (
                slots,
                self.source.blob_get(&self.source_repo, &d.digest).await,
            ),
            Err(mut e) => {
                e.message = format!(
                    "{}; {}",
                    e.message,
                    limit_message(&self.source, &self.target)
                );
                (Vec::new(), Err(e))
            }
        };
        let body = match body {
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
                format!(
                    "{}@{}",
                    super::location(&*self.source, &self.source_repo),
                    d.digest
                ),
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

/// Reserves a stream slot for each of `parties` (a transport listed twice needs two: a blob
/// streamed within one registry holds a download and an upload there), all at once, in order of
/// registry name so that two transfers never wait for each other. Fails when a registry's limit
/// is below what the transfer needs: that transfer could never run without exceeding it.
pub(super) async fn reserve_streams(
    parties: &[&Arc<dyn Transport>],
) -> Result<Vec<OwnedSemaphorePermit>, RegistryError> {
    // (registry name, semaphore, limit, slots needed), one entry per distinct semaphore.
    let mut needs: Vec<(String, Arc<tokio::sync::Semaphore>, usize, u32)> = Vec::new();
    for t in parties {
        let Some((slots, limit)) = t.stream_slots() else {
            continue;
        };
        match needs.iter_mut().find(|n| Arc::ptr_eq(&n.1, &slots)) {
            Some(n) => n.3 += 1,
            None => needs.push((t.name().to_string(), slots, limit, 1)),
        }
    }
    needs.sort_by(|a, b| {
        (a.0.as_str(), Arc::as_ptr(&a.1) as usize).cmp(&(b.0.as_str(), Arc::as_ptr(&b.1) as usize))
    });
    let mut held = Vec::with_capacity(needs.len());
    for (name, slots, limit, need) in needs {
        if need as usize > limit {
            return Err(
                RegistryError::new(ErrorKind::Unsupported, "stream blob", name.clone())
                    .with_message(format!(
                        "it needs {need} requests open at once at {name}, whose max_concurrency is \
                     {limit}"
                    )),
            );
        }
        held.push(slots.acquire_many_owned(need).await.map_err(|_| {
            RegistryError::new(ErrorKind::Transport, "stream blob", name.clone())
                .with_message("the registry's request slots are closed")
        })?);
    }
    Ok(held)
}

/// What to do about a registry limit that is too low for a transfer.
fn limit_message(source: &Arc<dyn Transport>, target: &Arc<dyn Transport>) -> String {
    if source.name() == target.name() {
        format!(
            "copying a blob within {} needs a download and an upload open at once; raise \
             max_concurrency for it to 2 or more (or use a registry that mounts blobs across \
             repositories)",
            source.name()
        )
    } else {
        "raise max_concurrency for the registries involved".to_string()
    }
}
