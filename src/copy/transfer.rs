//! Phase 4 of a copy, transfer: every blob of the image to every pending target. One blob
//! transfer per (target registry, repository, digest) in the whole process, and the memory of
//! where blobs are, which lets later copies mount instead of upload.
//!
//! A blob bound for several targets is one [`BlobGroup`]; a target whose (registry,
//! repository, digest) is already being transferred by another copy — another image sharing a
//! base layer, another platform — waits for that transfer instead of joining the group, so the
//! bytes move once. This holds for any number of targets: a single target is a group of one.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use futures_util::future::{BoxFuture, Shared, join_all};
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};

use super::blob::{BlobGroup, Branch};
use super::{
    BlobOutcome, CopyError, CopyOptions, Engine, FRESH_TTL, FreshProbe, MAX_FRESH, MAX_LOCATIONS,
    SharedTransfer, Source, SourceImage, Target, TransferCounts, TransferKey,
};
use crate::digest::Digest;
use crate::manifest::Descriptor;

/// One group transfer's outcomes, one per branch, shared by the branches' waiters.
type SharedGroup = Shared<BoxFuture<'static, Arc<Vec<Result<BlobOutcome, Arc<CopyError>>>>>>;

impl Engine {
    /// Phase 4: every blob of `image` to every one of `targets`, each blob read from the source
    /// once for all of them ([`super::blob`]), counted into `counts` (one per target). Returns,
    /// per target, its first failure: a target whose blobs failed gets no manifest, and the
    /// others carry on.
    pub(super) async fn transfer(
        &self,
        source: &Source,
        targets: &[&Target],
        image: &SourceImage,
        opts: &CopyOptions,
        counts: &mut [TransferCounts],
    ) -> Vec<Option<CopyError>> {
        let names: Vec<String> = targets.iter().map(|t| t.display()).collect();
        let total = image
            .blobs
            .iter()
            .fold(0u64, |n, d| n.saturating_add(d.size));
        for n in &names {
            opts.progress.target_started(n, image.blobs.len(), total);
        }
        let fresh: Vec<bool> = if opts.dry_run || image.blobs.is_empty() {
            vec![false; targets.len()]
        } else {
            join_all(targets.iter().map(|t| self.target_is_fresh(t))).await
        };
        let fresh = &fresh;
        // Every blob is polled at once; the engine's blob permits bound the transfers.
        let mut transfers: FuturesUnordered<_> = image
            .blobs
            .iter()
            .map(|d| async move {
                let outcomes = self.transfer_blob(source, targets, fresh, d, opts).await;
                (d, outcomes)
            })
            .collect();
        let mut failures: Vec<Option<CopyError>> = targets.iter().map(|_| None).collect();
        while let Some((d, outcomes)) = transfers.next().await {
            for (k, r) in outcomes.into_iter().enumerate() {
                match r {
                    Ok(outcome) => {
                        counts[k].blob(outcome, d.size);
                        crate::metrics::record_blob(outcome, d.size);
                        opts.progress
                            .blob_done(&names[k], &d.digest, d.size, outcome);
                    }
                    Err(e) => {
                        failures[k].get_or_insert(e);
                    }
                }
            }
            // Every target failed: the other transfers would be for nothing. Dropping them
            // releases their permits.
            if failures.iter().all(Option::is_some) {
                break;
            }
        }
        failures
    }

    /// Gets blob `d` into every one of `targets` (`fresh[k]`: target `k`'s repository had no
    /// tags), sharing each target's transfer with any concurrent copy of the same blob into the
    /// same repository. One outcome per target, in order.
    pub(super) async fn transfer_blob(
        &self,
        source: &Source,
        targets: &[&Target],
        fresh: &[bool],
        d: &Descriptor,
        opts: &CopyOptions,
    ) -> Vec<Result<BlobOutcome, CopyError>> {
        let keys: Vec<TransferKey> = targets
            .iter()
            .map(|t| {
                let registry = t.transport.name().to_string();
                (registry, t.repo().to_string(), d.digest.clone())
            })
            .collect();
        let waits = self.join_or_start(source, targets, fresh, d, opts, &keys);
        // Each map entry goes when its waiter is done — or dropped: a copy that fails drops its
        // other blob futures, and an entry left behind kept that transfer alive but never
        // polled, holding the engine's blob permit and any request permit it had been granted,
        // for good (with max_concurrency = 1, every later request hung).
        let _forget: Vec<ForgetTransfer<'_>> = keys
            .iter()
            .zip(&waits)
            .map(|(key, (id, _))| ForgetTransfer {
                engine: self,
                key,
                id: *id,
            })
            .collect();
        let results = join_all(waits.into_iter().map(|(_, f)| f)).await;
        results
            .into_iter()
            .zip(targets)
            .map(|(r, t)| match r {
                Ok(outcome) => {
                    if !opts.dry_run {
                        self.remember(t, &d.digest);
                    }
                    Ok(outcome)
                }
                Err(e) => Err(CopyError::Shared(e)),
            })
            .collect()
    }

    /// For each target, the transfer in flight for its key, or a share of a new group transfer
    /// holding every target that had none.
    fn join_or_start(
        &self,
        source: &Source,
        targets: &[&Target],
        fresh: &[bool],
        d: &Descriptor,
        opts: &CopyOptions,
        keys: &[TransferKey],
    ) -> Vec<(u64, SharedTransfer)> {
        let mut inflight = self.inner.inflight.lock().expect("inflight lock");
        let mut waits: Vec<Option<(u64, SharedTransfer)>> = keys
            .iter()
            .map(|k| inflight.get(k).filter(|_| !opts.dry_run).cloned())
            .collect();
        let mine: Vec<usize> = (0..keys.len()).filter(|&k| waits[k].is_none()).collect();
        if mine.is_empty() {
            return waits.into_iter().flatten().collect();
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let group = BlobGroup {
            source: source.transport.clone(),
            source_repo: source.reference.repository().to_string(),
            descriptor: d.clone(),
            branches: mine
                .iter()
                .map(|&k| Branch {
                    target: targets[k].transport.clone(),
                    repo: targets[k].repo().to_string(),
                    mount_from: self.mount_source(source, targets[k], &d.digest),
                    fresh: fresh[k],
                })
                .collect(),
            dry_run: opts.dry_run,
            retry: self.inner.blob_retry.clone(),
        };
        let permits = self.inner.blob_permits.clone();
        let progress = opts.progress.clone();
        let shared: SharedGroup = async move {
            let outcomes = match permits.acquire_owned().await {
                Ok(_permit) => group
                    .run(&progress)
                    .await
                    .into_iter()
                    .map(|r| r.map_err(Arc::new))
                    .collect(),
                Err(_) => {
                    let closed = Arc::new(CopyError::Internal {
                        message: "engine closed".into(),
                    });
                    group.branches.iter().map(|_| Err(closed.clone())).collect()
                }
            };
            Arc::new(outcomes)
        }
        .boxed()
        .shared();
        for (pos, &k) in mine.iter().enumerate() {
            let shared = shared.clone();
            let share: SharedTransfer = async move { shared.await[pos].clone() }.boxed().shared();
            if !opts.dry_run {
                inflight.insert(keys[k].clone(), (id, share.clone()));
            }
            waits[k] = Some((id, share));
        }
        waits
            .into_iter()
            .map(|w| w.expect("every target joined or started a transfer"))
            .collect()
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
        if !t.transport.mounts_blobs() {
            return None;
        }
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
