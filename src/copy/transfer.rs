//! One blob transfer per (target registry, repository, digest) in the whole process, and the
//! memory of where blobs are, which lets later copies mount instead of upload.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::{
    BlobOutcome, CopyError, CopyOptions, Engine, FRESH_TTL, FreshProbe, MAX_FRESH, MAX_LOCATIONS,
    Source, Target, TransferKey, blob,
};
use crate::digest::Digest;

impl Engine {
    /// Gets one blob into the target, sharing the transfer with any concurrent request for the
    /// same blob and repository.
    pub(super) async fn ensure_blob(
        &self,
        source: &Source,
        t: &Target,
        d: &crate::manifest::Descriptor,
        opts: &CopyOptions,
        fresh_target: bool,
    ) -> Result<BlobOutcome, CopyError> {
        let key = (
            t.transport.name().to_string(),
            t.repo().to_string(),
            d.digest.clone(),
        );
        let (id, fut) = {
            let mut inflight = self.inner.inflight.lock().expect("inflight lock");
            if let Some((id, f)) = inflight.get(&key).filter(|_| !opts.dry_run) {
                (*id, f.clone())
            } else {
                let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
                let mount_from = self.mount_source(source, t, &d.digest);
                let job = blob::BlobJob {
                    source: source.transport.clone(),
                    source_repo: source.reference.repository().to_string(),
                    target: t.transport.clone(),
                    target_repo: t.repo().to_string(),
                    descriptor: d.clone(),
                    mount_from,
                    fresh_target,
                    dry_run: opts.dry_run,
                };
                let permits = self.inner.blob_permits.clone();
                let progress = opts.progress.clone();
                let fut: BoxFuture<'static, Result<BlobOutcome, Arc<CopyError>>> = async move {
                    let _permit = permits.acquire_owned().await.map_err(|_| {
                        Arc::new(CopyError::Internal {
                            message: "engine closed".into(),
                        })
                    })?;
                    job.run(&progress).await.map_err(Arc::new)
                }
                .boxed();
                let fut = fut.shared();
                if !opts.dry_run {
                    inflight.insert(key.clone(), (id, fut.clone()));
                }
                (id, fut)
            }
        };
        // The map's entry goes when this waiter is done — or dropped: a copy that fails on
        // one blob drops its other blob futures, and an entry left behind kept that transfer
        // alive but never polled, holding the engine's blob permit and any request permit it
        // had been granted, for good (with max_concurrency = 1, every later request hung).
        let _forget = ForgetTransfer {
            engine: self,
            key: &key,
            id,
        };
        let result = fut.await;
        match result {
            Ok(outcome) => {
                if !opts.dry_run {
                    self.remember(t, &d.digest);
                }
                Ok(outcome)
            }
            Err(e) => Err(CopyError::Shared(e)),
        }
    }

    /// Whether `t`'s repository has no tags: a new repository (or one an interrupted copy left
    /// untagged), whose blobs are then not HEADed one by one ([`blob`] says what replaces it).
    /// One tag question per repository serves every copy into it that starts within [`FRESH_TTL`];
    /// copies starting together share the request in flight. An error counts as "has tags":
    /// the HEADs are the safe way.
    pub(super) async fn target_is_fresh(&self, t: &Target) -> bool {
        let key = (t.transport.name().to_string(), t.repo().to_string());
        let probe = {
            let mut fresh = self.inner.fresh.lock().expect("fresh lock");
            match fresh.get(&key) {
                Some((at, probe)) if at.elapsed() < FRESH_TTL => probe.clone(),
                _ => {
                    if fresh.len() >= MAX_FRESH {
                        fresh.clear();
                    }
                    let transport = t.transport.clone();
                    let repo = key.1.clone();
                    let probe: FreshProbe = async move {
                        match transport.has_tags(&repo).await {
                            Ok(tagged) => !tagged,
                            // distribution: 404 NAME_UNKNOWN for a repository never pushed to.
                            Err(e) => e.kind == crate::registry::ErrorKind::NotFound,
                        }
                    }
                    .boxed()
                    .shared();
                    fresh.insert(key, (Instant::now(), probe.clone()));
                    probe
                }
            }
        };
        probe.await
    }

    /// A repository of the target registry known to hold `digest`: the source repository when
    /// source and target are the same registry, else one this process put it in.
    pub(super) fn mount_source(
        &self,
        source: &Source,
        t: &Target,
        digest: &Digest,
    ) -> Option<String> {
        if source.transport.name() == t.transport.name()
            && source.reference.repository() != t.repo()
        {
            return Some(source.reference.repository().to_string());
        }
        let located = self.inner.located.lock().expect("located lock");
        located
            .get(&(t.transport.name().to_string(), digest.clone()))
            .filter(|repo| repo.as_str() != t.repo())
            .cloned()
    }

    pub(super) fn remember(&self, t: &Target, digest: &Digest) {
        let mut located = self.inner.located.lock().expect("located lock");
        if located.len() >= MAX_LOCATIONS {
            located.clear();
        }
        located.insert(
            (t.transport.name().to_string(), digest.clone()),
            t.repo().to_string(),
        );
    }
}

/// Removes an in-flight transfer from the engine's map when dropped, unless a newer transfer
/// for the same key has replaced it. Waiters still holding the transfer keep it running.
struct ForgetTransfer<'a> {
    engine: &'a Engine,
    key: &'a TransferKey,
    id: u64,
}

impl Drop for ForgetTransfer<'_> {
    fn drop(&mut self) {
        let mut inflight = self.engine.inner.inflight.lock().expect("inflight lock");
        if inflight.get(self.key).is_some_and(|(i, _)| *i == self.id) {
            inflight.remove(self.key);
        }
    }
}
