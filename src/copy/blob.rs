//! Getting one blob into every target that needs it, the cheapest way that is correct. This is
//! the engine's one blob path: a copy to a single target is a group of one.
//!
//! Per target, cheapest first: the target already has it (one HEAD) → skip; another repository
//! of the same target registry is known to hold it → mount (no bytes move; a 202 answer falls
//! through to an upload into the session the registry opened). The targets that still need the
//! bytes get them from **one** source GET, split by a [`tee`] into one bounded channel per
//! target, each through its own [`VerifyingStream`], which fails that upload before it completes
//! if the bytes do not match the descriptor's digest and size. Memory stays bounded by the HTTP
//! buffers and the tee's queue, whatever the blob size.
//!
//! Several repositories of **one** registry get the bytes once: the first of them (the leader)
//! receives the upload, the others (its followers) then mount from it — one request each, and
//! no bytes. A registry that will not mount answers with an upload session, and that follower
//! gets the bytes in a second read of the source.
//!
//! Into a target repository without tags (a new one, or what an interrupted copy left) the HEAD
//! would nearly always miss, so it is left out: a mount *from the target repository itself*
//! asks "have you got it?" and "open an upload" in one request — distribution answers 201 when
//! the blob is already linked there (an interrupted copy resumes without moving it again) and
//! 202 with an upload session otherwise. A fresh blob then costs POST + PUT, as the raw limit,
//! instead of HEAD + POST + PUT. A registry that never mounts answers 202 every time, which
//! costs at worst re-sending a blob that an interrupted copy had already sent.
//!
//! Transient failures (connection reset, 5xx, 429) retry the upload of the targets that failed
//! so, from a fresh source stream and fresh upload sessions (an upload is never replayed
//! blindly), through the one retry combinator ([`crate::registry::retry`]); a failure at one
//! target does not fail the others.
//!
//! A streamed transfer holds requests open at several registries at once — the source GET for
//! as long as the uploads run — and each registry bounds its requests in flight. Taking those
//! request permits one by one deadlocked: with the source and target in the same registry and
//! `max_concurrency = 2`, two transfers each held a GET and waited forever for the permit of
//! their upload; and copies in opposite directions between two registries could hold one each
//! and wait for the other's. So before opening anything, a transfer reserves, all at once and
//! in a fixed order of registries, a slot for every request it will hold open
//! ([`reserve_streams`]). The registry admits requests up to the larger of its limit and the
//! slots reserved (see [`crate::registry::limiter`], whose limit moves), so whatever transfers
//! hold, a request they still need can always get a permit once the short requests (HEADs,
//! session starts) ahead of it finish.

use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use futures_util::future::join_all;

use super::tee::tee;
use super::{CopyError, Progress};
use crate::digest::VerifyingStream;
use crate::manifest::Descriptor;
use crate::registry::limiter::{Limiter, StreamReservation};
use crate::registry::retry::{RetryPolicy, retry};
use crate::registry::{
    ByteStream, ErrorKind, MountOutcome, RegistryError, Transport, UploadSession,
};

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

/// One target of a blob transfer.
pub(super) struct Branch {
    /// Target transport.
    pub target: Arc<dyn Transport>,
    /// Target repository.
    pub repo: String,
    /// A repository of the target registry known to hold the blob.
    pub mount_from: Option<String>,
    /// The repository had no tags when the copy looked: no HEAD, ask by mounting from it.
    pub fresh: bool,
}

/// A blob bound for one or more targets.
pub(super) struct BlobGroup {
    /// Where the bytes come from.
    pub source: Arc<dyn Transport>,
    /// Source repository.
    pub source_repo: String,
    /// The blob.
    pub descriptor: Descriptor,
    /// Where it goes.
    pub branches: Vec<Branch>,
    /// Write nothing; say what would be done.
    pub dry_run: bool,
    /// How failed uploads are tried again.
    pub retry: RetryPolicy,
}

/// Where a branch stands after its check.
enum Check {
    /// Settled.
    Done(Result<BlobOutcome, RegistryError>),
    /// Needs the bytes, into this session if the registry opened one.
    Upload(Option<UploadSession>),
    /// Gets the blob by a mount from the branch at this index once that one holds it.
    Follow(usize),
}

type Uploaded = Vec<(usize, Result<(), RegistryError>)>;

impl BlobGroup {
    fn blob_error(&self, b: &Branch, error: RegistryError) -> CopyError {
        CopyError::Blob {
            digest: self.descriptor.digest.clone(),
            source_repo: super::location(&*self.source, &self.source_repo),
            target_repo: super::location(&*b.target, &b.repo),
            error: Box::new(error),
        }
    }

    /// Runs the transfer: one outcome per branch, in order.
    pub(super) async fn run(
        &self,
        progress: &Arc<dyn Progress>,
    ) -> Vec<Result<BlobOutcome, CopyError>> {
        let leaders = self.leaders();
        let checks = self
            .branches
            .iter()
            .zip(&leaders)
            .map(|(b, leader)| self.check(b, *leader));
        let mut results: Vec<Option<Result<BlobOutcome, RegistryError>>> =
            self.branches.iter().map(|_| None).collect();
        let (mut uploads, mut followers) = (Vec::new(), Vec::new());
        for (i, c) in join_all(checks).await.into_iter().enumerate() {
            match c {
                Check::Done(r) => results[i] = Some(r),
                Check::Upload(session) => uploads.push((i, session)),
                Check::Follow(leader) => followers.push((i, leader)),
            }
        }
        for (i, r) in self.upload(uploads, progress).await {
            results[i] = Some(r.map(|()| BlobOutcome::Copied));
        }
        // Followers mount from their leader; those the registry will not mount into get the
        // bytes in a second read of the source.
        let mounts = followers.into_iter().map(|(i, leader)| {
            let leader_has_it = matches!(results[leader], Some(Ok(_)));
            let from = &self.branches[leader].repo;
            async move {
                if !leader_has_it {
                    return (i, Check::Upload(None));
                }
                (i, self.mount(&self.branches[i], from, false).await)
            }
        });
        let mut second = Vec::new();
        for (i, c) in join_all(mounts).await {
            match c {
                Check::Done(r) => results[i] = Some(r),
                Check::Upload(session) => second.push((i, session)),
                Check::Follow(_) => second.push((i, None)),
            }
        }
        for (i, r) in self.upload(second, progress).await {
            results[i] = Some(r.map(|()| BlobOutcome::Copied));
        }
        results
            .into_iter()
            .zip(&self.branches)
            .map(|(r, b)| {
                r.expect("every branch has an outcome")
                    .map_err(|e| self.blob_error(b, e))
            })
            .collect()
    }

    /// For each branch, the branch it follows: the first branch into the same registry that
    /// has no other repository to mount from. Branches with a mount source follow nobody.
    fn leaders(&self) -> Vec<Option<usize>> {
        let mut first: Vec<(&str, usize)> = Vec::new();
        self.branches
            .iter()
            .enumerate()
            .map(|(i, b)| {
                if b.mount_from.is_some() {
                    return None;
                }
                let name = b.target.name();
                match first.iter().find(|(n, _)| *n == name) {
                    Some(&(_, leader)) => Some(leader),
                    None => {
                        first.push((name, i));
                        None
                    }
                }
            })
            .collect()
    }

    /// The cheap part for one branch: present? mountable? following another?
    async fn check(&self, b: &Branch, leader: Option<usize>) -> Check {
        let fresh = b.fresh && !self.dry_run;
        if !fresh {
            match b.target.blob_head(&b.repo, &self.descriptor.digest).await {
                Ok(Some(_)) => return Check::Done(Ok(BlobOutcome::Skipped)),
                Ok(None) => {}
                Err(e) => return Check::Done(Err(e)),
            }
        }
        if self.dry_run {
            let mount = b.mount_from.is_some() || leader.is_some();
            return Check::Done(Ok(if mount {
                BlobOutcome::WouldMount
            } else {
                BlobOutcome::WouldCopy
            }));
        }
        if let Some(leader) = leader {
            return Check::Follow(leader);
        }
        match (&b.mount_from, fresh) {
            (Some(from), _) => self.mount(b, from, false).await,
            // ECR answers every mount 202: asking costs what opening the upload costs, and
            // says nothing.
            (None, true) if b.target.mounts_blobs() => self.mount(b, &b.repo, true).await,
            (None, _) => Check::Upload(None),
        }
    }

    /// Mounts the blob into `b` from `from` (`own`: from `b`'s repository itself, which only
    /// asks whether it is there already).
    async fn mount(&self, b: &Branch, from: &str, own: bool) -> Check {
        let digest = &self.descriptor.digest;
        match b.target.blob_mount(&b.repo, digest, from).await {
            Ok(MountOutcome::Mounted) if own => Check::Done(Ok(BlobOutcome::Skipped)),
            Ok(MountOutcome::Mounted) => Check::Done(Ok(BlobOutcome::Mounted)),
            Ok(MountOutcome::Upload(s)) => Check::Upload(Some(s)),
            // A refused mount (permissions on `from`, registry without mounts) is not a
            // failure of the copy: the bytes can still be streamed.
            Err(e) if !e.is_retryable() => {
                tracing::debug!(%digest, error = %e, "mount refused, uploading instead");
                Check::Upload(None)
            }
            Err(e) => Check::Done(Err(e)),
        }
    }

    /// Streams the blob into `branches` (index, open session), retrying those whose upload
    /// failed for a reason that may pass, each time from a fresh source read.
    async fn upload(
        &self,
        branches: Vec<(usize, Option<UploadSession>)>,
        progress: &Arc<dyn Progress>,
    ) -> Uploaded {
        if branches.is_empty() {
            return Vec::new();
        }
        // (still to upload, settled): shared by the attempts, never locked across an await.
        let state = Mutex::new((branches, Uploaded::new()));
        let last = retry(&self.retry, "blob transfer", || async {
            let pending = std::mem::take(&mut state.lock().expect("upload state").0);
            let (indices, sessions): (Vec<usize>, Vec<_>) = pending.into_iter().unzip();
            let outcomes = self.stream_once(&indices, sessions, progress).await;
            let mut state = state.lock().expect("upload state");
            let mut again = None;
            for (i, outcome) in indices.into_iter().zip(outcomes) {
                match outcome {
                    // The session went with the failed attempt: the next one opens its own.
                    Err(e) if e.is_retryable() => {
                        state.0.push((i, None));
                        again.get_or_insert(e);
                    }
                    settled => state.1.push((i, settled)),
                }
            }
            again.map_or(Ok(()), Err)
        })
        .await;
        let (pending, mut done) = state.into_inner().expect("upload state");
        if let Err(e) = last {
            let mut errors: Vec<RegistryError> =
                pending.iter().skip(1).map(|_| clone_error(&e)).collect();
            errors.insert(0, e);
            done.extend(
                pending
                    .into_iter()
                    .map(|(i, _)| i)
                    .zip(errors.into_iter().map(Err)),
            );
        }
        done
    }

    /// One source GET streamed into uploads for the branches at `indices` (teed when several).
    async fn stream_once(
        &self,
        indices: &[usize],
        sessions: Vec<Option<UploadSession>>,
        progress: &Arc<dyn Progress>,
    ) -> Vec<Result<(), RegistryError>> {
        let d = &self.descriptor;
        let every = |e: RegistryError| -> Vec<Result<(), RegistryError>> {
            let mut v: Vec<_> = indices
                .iter()
                .skip(1)
                .map(|_| Err(clone_error(&e)))
                .collect();
            v.insert(0, Err(e));
            v
        };
        // The GET and every upload stay open together: reserve them all first.
        let parties: Vec<&Arc<dyn Transport>> = std::iter::once(&self.source)
            .chain(indices.iter().map(|&i| &self.branches[i].target))
            .collect();
        let _slots = match reserve_streams(&parties).await {
            Ok(slots) => slots,
            Err(mut e) => {
                e.message = format!("{}; {}", e.message, limit_message(&parties));
                self.cancel(indices, sessions).await;
                return every(e);
            }
        };
        let body = match self.source.blob_get(&self.source_repo, &d.digest).await {
            Ok(b) => b,
            Err(e) => {
                self.cancel(indices, sessions).await;
                return every(e);
            }
        };
        if let Some(len) = body.size
            && len != d.size
        {
            self.cancel(indices, sessions).await;
            let at = super::location(&*self.source, &self.source_repo);
            return every(
                RegistryError::new(
                    ErrorKind::DigestInvalid,
                    "GET blob",
                    format!("{at}@{}", d.digest),
                )
                .with_message(format!(
                    "the source serves {len} bytes but the manifest declares {} bytes",
                    d.size
                )),
            );
        }
        let progress = progress.clone();
        let counted: ByteStream = Box::pin(body.stream.inspect(move |chunk| {
            if let Ok(c) = chunk {
                progress.bytes(c.len() as u64);
            }
        }));
        let upload = |i: usize, stream: ByteStream, session| {
            let b = &self.branches[i];
            let verified = VerifyingStream::new(stream, d.digest.clone(), Some(d.size));
            b.target
                .blob_put(&b.repo, &d.digest, d.size, Box::pin(verified), session)
        };
        if let [i] = indices {
            // One target: no tee in between.
            let session = sessions.into_iter().next().flatten();
            return vec![upload(*i, counted, session).await];
        }
        let (driver, streams) = tee(counted, indices.len());
        let uploads = indices
            .iter()
            .zip(streams)
            .zip(sessions)
            .map(|((&i, stream), session)| upload(i, stream, session));
        let ((), results) = futures_util::join!(driver, join_all(uploads));
        results
    }

    async fn cancel(&self, indices: &[usize], sessions: Vec<Option<UploadSession>>) {
        for (&i, s) in indices.iter().zip(sessions) {
            if let Some(s) = s {
                let b = &self.branches[i];
                b.target.upload_cancel(&b.repo, s).await;
            }
        }
    }
}

/// The same error for another branch (RegistryError is not Clone: its cause is a trait object).
fn clone_error(e: &RegistryError) -> RegistryError {
    let mut c = RegistryError::new(e.kind, e.operation, e.url.clone())
        .with_message(crate::copy::error_chain(e));
    c.status = e.status;
    c.retry_after = e.retry_after;
    c
}

/// Reserves a stream slot for each of `parties` (a transport listed twice needs two: a blob
/// streamed within one registry holds a download and an upload there), all at once, in order of
/// registry name so that two transfers never wait for each other. Fails when a registry's limit
/// is below what the transfer needs: that transfer could never run without exceeding it.
pub(super) async fn reserve_streams(
    parties: &[&Arc<dyn Transport>],
) -> Result<Vec<StreamReservation>, RegistryError> {
    // (registry name, limiter, its ceiling, slots needed), one entry per distinct limiter.
    let mut needs: Vec<(String, Arc<Limiter>, usize, usize)> = Vec::new();
    for t in parties {
        let Some(slots) = t.stream_slots() else {
            continue;
        };
        match needs.iter_mut().find(|n| Arc::ptr_eq(&n.1, &slots)) {
            Some(n) => n.3 += 1,
            None => {
                let limit = slots.ceiling();
                needs.push((t.name().to_string(), slots, limit, 1));
            }
        }
    }
    needs.sort_by(|a, b| {
        (a.0.as_str(), Arc::as_ptr(&a.1) as usize).cmp(&(b.0.as_str(), Arc::as_ptr(&b.1) as usize))
    });
    let mut held = Vec::with_capacity(needs.len());
    for (name, slots, limit, need) in needs {
        if need > limit {
            return Err(
                RegistryError::new(ErrorKind::Unsupported, "stream blob", name.clone())
                    .with_message(format!(
                        "it needs {need} requests open at once at {name}, whose max_concurrency is \
                     {limit}"
                    )),
            );
        }
        held.push(slots.reserve(need).await);
    }
    Ok(held)
}

/// What to do about a registry limit that is too low for a transfer (`parties[0]` is the
/// source, the others its targets).
fn limit_message(parties: &[&Arc<dyn Transport>]) -> String {
    let source = parties[0];
    if parties[1..].iter().any(|t| t.name() == source.name()) {
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
