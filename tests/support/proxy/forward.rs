//! The [`super::FaultProxy`]'s registry side: connections to the upstream (a pool of idle
//! ones for bodyless requests, a fresh one otherwise), sending the request head and body
//! (cutting an upload off for [`super::Fault::ResetRequest`]) and reading the answer's head.

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::Shared;
use super::connection::reset;
use super::handle::Exchange;
use super::rule::Fault;
use super::wire::{BodyReader, Framing, Head, Reader, encode_piece};

/// A connection to the registry.
pub(super) struct Upstream {
    pub(super) r: Reader<OwnedReadHalf>,
    pub(super) w: OwnedWriteHalf,
}

/// The registry's answer head, and the connection it came on.
pub(super) struct Answered {
    pub(super) up: Upstream,
    pub(super) head: Bytes,
}

impl<R, W> Exchange<'_, R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    /// Sends the request to the registry and reads its answer's head; on a pooled connection
    /// when `pool_ok`. `None`: a [`Fault::ResetRequest`] cut the request off (both sides reset).
    pub(super) async fn forward(
        &mut self,
        head: &Head,
        request_framing: Framing,
        fault: Option<&Fault>,
        fault_name: Option<&'static str>,
        pool_ok: bool,
    ) -> std::io::Result<Option<Answered>> {
        let out_framing = match request_framing {
            Framing::Close => Framing::None,
            f => f,
        };
        let head_bytes = head.encode(out_framing);
        let pooled = if pool_ok {
            self.shared.pool.lock().unwrap().pop()
        } else {
            None
        };
        let answered = match pooled {
            // A pooled connection the registry has closed since fails at once: try a fresh one.
            Some(conn) => match exchange_head(conn, &head_bytes).await {
                Ok(x) => x,
                Err(_) => exchange_head(connect(self.shared).await?, &head_bytes).await?,
            },
            None if pool_ok => exchange_head(connect(self.shared).await?, &head_bytes).await?,
            None => {
                return self
                    .send_with_body(&head_bytes, request_framing, out_framing, fault, fault_name)
                    .await;
            }
        };
        Ok(Some(answered))
    }

    /// Sends the head and relays the request body on a fresh connection, then reads the
    /// answer's head. `None`: a [`Fault::ResetRequest`] cut the body off.
    async fn send_with_body(
        &mut self,
        head_bytes: &[u8],
        request_framing: Framing,
        out_framing: Framing,
        fault: Option<&Fault>,
        fault_name: Option<&'static str>,
    ) -> std::io::Result<Option<Answered>> {
        let Upstream {
            r: mut up,
            w: mut uw,
        } = connect(self.shared).await?;
        uw.write_all(head_bytes).await?;
        let mut body = BodyReader::new(request_framing);
        let mut sent = 0usize;
        while let Some(piece) = body.next(self.client_r).await? {
            if let Some(Fault::ResetRequest { after }) = fault
                && sent + piece.len() >= *after
            {
                let n = after - sent;
                uw.write_all(&encode_piece(out_framing, &piece[..n]))
                    .await?;
                uw.flush().await?;
                (self.record)(None, fault_name);
                reset(up.inner.reunite(uw).expect("halves of one stream"));
                return Ok(None);
            }
            sent += piece.len();
            uw.write_all(&encode_piece(out_framing, &piece)).await?;
        }
        if out_framing == Framing::Chunked {
            uw.write_all(b"0\r\n\r\n").await?;
        }
        uw.flush().await?;
        let Some(resp_bytes) = up.head().await? else {
            return Err(std::io::Error::other("upstream closed without answering"));
        };
        Ok(Some(Answered {
            up: Upstream { r: up, w: uw },
            head: resp_bytes,
        }))
    }
}

async fn connect(shared: &Shared) -> std::io::Result<Upstream> {
    let stream = TcpStream::connect(shared.upstream).await?;
    stream.set_nodelay(true)?;
    let (r, w) = stream.into_split();
    Ok(Upstream {
        r: Reader::new(r),
        w,
    })
}

/// Sends a bodyless request head and reads the answer's head.
async fn exchange_head(conn: Upstream, head: &[u8]) -> std::io::Result<Answered> {
    let Upstream { mut r, mut w } = conn;
    w.write_all(head).await?;
    w.flush().await?;
    match r.head().await? {
        Some(h) => Ok(Answered {
            up: Upstream { r, w },
            head: h,
        }),
        None => Err(std::io::Error::other("upstream closed without answering")),
    }
}
