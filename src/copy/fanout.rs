//! One blob read once, written to several targets.
//!
//! When an image goes to several targets (`import SRC DST1 DST2 …`, a rule with several
//! targets), reading each blob once per target would multiply the load on the source — the very
//! registry a mirror exists to spare. Here each target is checked first (HEAD, then a mount where
//! the blob is known in the same registry), and the targets that still need the bytes get them
//! from a single source GET, split by a tee into one bounded channel per target. Each branch is
//! verified on its own by a [`VerifyingStream`], so a corrupt source fails every upload, and a
//! target that fails (or is slow) affects the others only by the tee's backpressure: a failed
//! branch's channel is dropped and the rest carry on.
//!
//! Memory stays bounded: at most [`TEE_DEPTH`] chunks are queued per target.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;

use super::blob::BlobOutcome;
use super::{CopyError, Progress};
use crate::digest::VerifyingStream;
use crate::manifest::Descriptor;
use crate::registry::{
    ByteStream, ErrorKind, MountOutcome, RegistryError, Transport, UploadSession,
};

/// Chunks queued per target before the tee waits for the slowest branch.
pub const TEE_DEPTH: usize = 8;
/// Attempts for the whole group (targets failing with transient errors are retried together).
const ATTEMPTS: u32 = 3;

/// One target of a group transfer.
pub struct Branch {
    /// Target transport.
    pub target: Arc<dyn Transport>,
    /// Target repository.
    pub repo: String,
    /// A repository of the target registry known to hold the blob.
    pub mount_from: Option<String>,
}

/// A blob bound for several targets.
pub struct GroupJob {
    /// Source transport.
    pub source: Arc<dyn Transport>,
    /// Source repository.
    pub source_repo: String,
    /// The blob.
    pub descriptor: Descriptor,
    /// Where it goes.
    pub branches: Vec<Branch>,
    /// Write nothing.
    pub dry_run: bool,
}

/// Splits `stream` into `n` streams carrying the same chunks. The returned future drives the
/// source and must be polled alongside the consumers; it ends when the source ends or every
/// consumer is gone.
pub fn tee(mut stream: ByteStream, n: usize) -> (impl Future<Output = ()> + Send, Vec<ByteStream>) {
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..n)
        .map(|_| mpsc::channel::<io::Result<Bytes>>(TEE_DEPTH))
        .unzip();
    let driver = async move {
        let mut senders: Vec<Option<mpsc::Sender<io::Result<Bytes>>>> =
            senders.into_iter().map(Some).collect();
        while let Some(item) = stream.next().await {
            let failed = item.is_err();
            for slot in senders.iter_mut() {
                let Some(tx) = slot else { continue };
                let msg = match &item {
                    Ok(b) => Ok(b.clone()),
                    Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                };
                if tx.send(msg).await.is_err() {
                    // That branch gave up; the others go on.
                    *slot = None;
                }
            }
            if failed || senders.iter().all(Option::is_none) {
                return;
            }
        }
    };
    let streams = receivers
        .into_iter()
        .map(|rx| -> ByteStream { Box::pin(receiver_stream(rx)) })
        .collect();
    (driver, streams)
}

fn receiver_stream(
    rx: mpsc::Receiver<io::Result<Bytes>>,
) -> impl Stream<Item = io::Result<Bytes>> + Send {
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

impl GroupJob {
    fn blob_error(&self, b: &Branch, error: RegistryError) -> CopyError {
        CopyError::Blob {
            digest: self.descriptor.digest.clone(),
            source_repo: super::location(&*self.source, &self.source_repo),
            target_repo: super::location(&*b.target, &b.repo),
            error: Box::new(error),
        }
    }

    /// Runs the job: one outcome per branch, in order.
    pub async fn run(&self, progress: &Arc<dyn Progress>) -> Vec<Result<BlobOutcome, CopyError>> {
        let d = &self.descriptor;
        let mut results: Vec<Option<Result<BlobOutcome, CopyError>>> =
            (0..self.branches.len()).map(|_| None).collect();
        // Cheapest first, per branch: present? mountable?
        let mut sessions: Vec<Option<UploadSession>> = vec![None; self.branches.len()];
        let checks = self.branches.iter().map(|b| async move {
            match b.target.blob_head(&b.repo, &d.digest).await {
                Ok(Some(_)) => return Some(Ok(BlobOutcome::Skipped)),
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
            if self.dry_run {
                return Some(Ok(if b.mount_from.is_some() {
                    BlobOutcome::WouldMount
                } else {
                    BlobOutcome::WouldCopy
                }));
            }
            None
        });
        let checked = futures_util::future::join_all(checks).await;
        for (i, c) in checked.into_iter().enumerate() {
            if let Some(r) = c {
                results[i] = Some(r.map_err(|e| self.blob_error(&self.branches[i], e)));
            }
        }
        for (i, b) in self.branches.iter().enumerate() {
            if results[i].is_some() {
                continue;
            }
            if let Some(from) = &b.mount_from {
                match b.target.blob_mount(&b.repo, &d.digest, from).await {
                    Ok(MountOutcome::Mounted) => results[i] = Some(Ok(BlobOutcome::Mounted)),
                    Ok(MountOutcome::Upload(s)) => sessions[i] = Some(s),
                    Err(e) if !e.is_retryable() => {}
                    Err(e) => results[i] = Some(Err(self.blob_error(b, e))),
                }
            }
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let pending: Vec<usize> = (0..self.branches.len())
                .filter(|&i| results[i].is_none())
                .collect();
            if pending.is_empty() {
                break;
            }
            let outcomes = self.stream_once(&pending, &mut sessions, progress).await;
            let mut retry = false;
            for (i, r) in pending.iter().zip(outcomes) {
                match r {
                    Ok(()) => results[*i] = Some(Ok(BlobOutcome::Copied)),
                    Err(e) if e.is_retryable() && attempt < ATTEMPTS => retry = true,
                    Err(e) => results[*i] = Some(Err(self.blob_error(&self.branches[*i], e))),
                }
            }
            if retry {
                tokio::time::sleep(Duration::from_millis(500 * 2u64.pow(attempt - 1))).await;
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every branch has an outcome"))
            .collect()
    }

    /// One source GET teed into uploads for the `pending` branches.
    async fn stream_once(
        &self,
        pending: &[usize],
        sessions: &mut [Option<UploadSession>],
        progress: &Arc<dyn Progress>,
    ) -> Vec<Result<(), RegistryError>> {
        let d = &self.descriptor;
        let taken: Vec<Option<UploadSession>> =
            pending.iter().map(|&i| sessions[i].take()).collect();
        // The GET and every upload stay open together: reserve them all first (see
        // `blob::reserve_streams` for the deadlock this prevents).
        let parties: Vec<&Arc<dyn Transport>> = std::iter::once(&self.source)
            .chain(pending.iter().map(|&i| &self.branches[i].target))
            .collect();
        let _slots = match super::blob::reserve_streams(&parties).await {
            Ok(slots) => slots,
            Err(e) => {
                self.cancel(pending, taken).await;
                return pending.iter().map(|_| Err(clone_error(&e))).collect();
            }
        };
        let body = match self.source.blob_get(&self.source_repo, &d.digest).await {
            Ok(b) => b,
            Err(e) => {
                self.cancel(pending, taken).await;
                return pending.iter().map(|_| Err(clone_error(&e))).collect();
            }
        };
        if let Some(len) = body.size
            && len != d.size
        {
            self.cancel(pending, taken).await;
            let e = RegistryError::new(
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
            ));
            return pending.iter().map(|_| Err(clone_error(&e))).collect();
        }
        let progress = progress.clone();
        let counted: ByteStream = Box::pin(body.stream.inspect(move |chunk| {
            if let Ok(c) = chunk {
                progress.bytes(c.len() as u64);
            }
        }));
        let (driver, branches) = tee(counted, pending.len());
        let uploads = pending
            .iter()
            .zip(branches)
            .zip(taken)
            .map(|((&i, stream), session)| {
                let b = &self.branches[i];
                let verified = VerifyingStream::new(stream, d.digest.clone(), Some(d.size));
                b.target
                    .blob_put(&b.repo, &d.digest, d.size, Box::pin(verified), session)
            });
        let ((), results) = futures_util::join!(driver, futures_util::future::join_all(uploads));
        results
    }

    async fn cancel(&self, pending: &[usize], sessions: Vec<Option<UploadSession>>) {
        for (&i, s) in pending.iter().zip(sessions) {
            if let Some(s) = s {
                let b = &self.branches[i];
                b.target.upload_cancel(&b.repo, s).await;
            }
        }
    }
}

/// The same error for every branch (RegistryError is not Clone: its cause is a trait object).
fn clone_error(e: &RegistryError) -> RegistryError {
    let mut c = RegistryError::new(e.kind, e.operation, e.url.clone())
        .with_message(crate::copy::error_chain(e));
    c.status = e.status;
    c.retry_after = e.retry_after;
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::TryStreamExt;

    async fn read_all(s: ByteStream) -> io::Result<Vec<u8>> {
        s.try_fold(Vec::new(), |mut v, c| async move {
            v.extend_from_slice(&c);
            Ok(v)
        })
        .await
    }

    fn source(chunks: usize) -> ByteStream {
        Box::pin(futures_util::stream::iter(
            (0..chunks).map(|i| Ok(Bytes::from(vec![i as u8; 1000]))),
        ))
    }

    #[tokio::test]
    async fn every_branch_gets_every_chunk() {
        let (driver, branches) = tee(source(50), 3);
        let readers = branches.into_iter().map(read_all);
        let ((), got) = futures_util::join!(driver, futures_util::future::join_all(readers));
        for g in got {
            let g = g.unwrap();
            assert_eq!(g.len(), 50_000);
            assert_eq!(g[49_999], 49);
        }
    }

    #[tokio::test]
    async fn a_dropped_branch_does_not_stop_the_others() {
        let (driver, mut branches) = tee(source(50), 2);
        let second = branches.pop().unwrap();
        let mut first = branches.pop().unwrap();
        let quitter = async move {
            let _ = first.next().await;
            drop(first);
        };
        let ((), (), got) = futures_util::join!(driver, quitter, read_all(second));
        assert_eq!(got.unwrap().len(), 50_000);
    }

    #[tokio::test]
    async fn a_source_error_reaches_every_branch() {
        let s: ByteStream = Box::pin(futures_util::stream::iter(vec![
            Ok(Bytes::from_static(b"abc")),
            Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset")),
        ]));
        let (driver, branches) = tee(s, 2);
        let readers = branches.into_iter().map(read_all);
        let ((), got) = futures_util::join!(driver, futures_util::future::join_all(readers));
        for g in got {
            assert_eq!(g.unwrap_err().kind(), io::ErrorKind::ConnectionReset);
        }
    }
}
