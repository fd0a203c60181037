//! One blob read once, written to several targets: the tee under [`super::blob`].
//!
//! When an image goes to several targets (`import SRC DST1 DST2 …`, a rule with several
//! targets), reading each blob once per target would multiply the load on the source — the very
//! registry a mirror exists to spare. The targets that need the bytes get them from a single
//! source GET, split here into one bounded channel per target. A target that fails (or is slow)
//! affects the others only by the tee's backpressure: a failed branch's channel is dropped and
//! the rest carry on; a source error reaches every branch.
//!
//! Memory stays bounded: at most [`TEE_DEPTH`] chunks are queued per target.

use std::io;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;

use crate::registry::ByteStream;

/// Chunks queued per target before the tee waits for the slowest branch.
pub(super) const TEE_DEPTH: usize = 8;
/// Splits `stream` into `n` streams carrying the same chunks. The returned future drives the
/// source and must be polled alongside the consumers; it ends when the source ends or every
/// consumer is gone.
pub(super) fn tee(
    mut stream: ByteStream,
    n: usize,
) -> (impl Future<Output = ()> + Send, Vec<ByteStream>) {
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
