//! Relaying the registry's answer back to the client through the [`super::FaultProxy`]:
//! the hooks and lost answers that act on the answer as a whole, then the body piece by piece
//! with any body fault applied (a flipped byte, a reset, a stall, a truncation, a shortened
//! `Content-Length`, a slow trickle), and handing a clean connection back to the pool.

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;

use super::answer::drain;
use super::connection::Next;
use super::forward::{Answered, Upstream};
use super::handle::Exchange;
use super::rule::Fault;
use super::wire::{BodyReader, Framing, Head, Reader, encode_piece};

/// What a body fault made of one piece of the answer.
enum Step {
    /// Relay the piece (possibly altered) as usual.
    Relay,
    /// The piece has been written already.
    Sent,
    /// The answer ends here; the connection goes on as said.
    Done(Next),
}

impl<R, W> Exchange<'_, R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    /// Delivers the registry's answer to a `method` request, applying `fault`; returns a clean
    /// upstream connection to the pool when `pool_ok`.
    pub(super) async fn relay(
        &mut self,
        answered: Answered,
        method: &str,
        fault: Option<&Fault>,
        fault_name: Option<&'static str>,
        pool_ok: bool,
    ) -> std::io::Result<Next> {
        let Answered {
            up: Upstream { r: mut up, w: uw },
            head: resp_bytes,
        } = answered;
        let resp = Head::response(&resp_bytes)?;
        let status = resp.status();
        let framing = resp.framing(true, method);

        match fault {
            Some(Fault::After(hook)) => hook().await,
            Some(Fault::LoseResponse) => {
                drain(&mut up, framing).await?;
                (self.record)(None, fault_name);
                return Ok(Next::Reset);
            }
            _ => {}
        }
        (self.record)(Some(status), fault_name);

        let client_framing = match (fault, framing) {
            (Some(Fault::Shorten { keep }), Framing::Length(n)) => {
                Framing::Length((*keep as u64).min(n))
            }
            (_, f) => f,
        };
        let pending: Vec<u8> = resp.encode(client_framing);
        if let Some(next) = self
            .relay_body(&mut up, framing, client_framing, pending, fault)
            .await?
        {
            return Ok(next);
        }
        let upstream_closes = resp
            .get("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        if pool_ok && framing != Framing::Close && !upstream_closes {
            self.shared
                .pool
                .lock()
                .unwrap()
                .push(Upstream { r: up, w: uw });
        }
        Ok(if framing == Framing::Close {
            Next::Close
        } else {
            Next::KeepAlive
        })
    }

    /// Relays the body after `pending` (the encoded head). `Some`: a body fault ended the
    /// answer early; `None`: the whole body was delivered.
    async fn relay_body(
        &mut self,
        up: &mut Reader<OwnedReadHalf>,
        framing: Framing,
        client_framing: Framing,
        mut pending: Vec<u8>,
        fault: Option<&Fault>,
    ) -> std::io::Result<Option<Next>> {
        let mut b = BodyReader::new(framing);
        let mut offset = 0usize;
        while let Some(piece) = b.next(up).await? {
            let mut piece = piece.to_vec();
            let start = offset;
            offset += piece.len();
            match self
                .body_fault(fault, client_framing, &mut pending, &mut piece, start)
                .await?
            {
                Step::Relay => {}
                Step::Sent => continue,
                Step::Done(next) => return Ok(Some(next)),
            }
            // Hold back the newest piece so that the in-flight count ends before the last
            // write.
            if !pending.is_empty() {
                self.client_w.write_all(&pending).await?;
            }
            pending = encode_piece(client_framing, &piece);
        }
        if client_framing == Framing::Chunked {
            pending.extend_from_slice(b"0\r\n\r\n");
        }
        self.flight.end();
        self.client_w.write_all(&pending).await?;
        self.client_w.flush().await?;
        Ok(None)
    }

    /// Applies `fault` to the body `piece` that starts at offset `start`, after `pending`
    /// (bytes not yet written to the client).
    async fn body_fault(
        &mut self,
        fault: Option<&Fault>,
        client_framing: Framing,
        pending: &mut Vec<u8>,
        piece: &mut [u8],
        start: usize,
    ) -> std::io::Result<Step> {
        let offset = start + piece.len();
        match fault {
            Some(Fault::FlipByte { at }) if (start..offset).contains(at) => {
                piece[at - start] ^= 0xff;
            }
            Some(Fault::ResetResponse { after }) if offset >= *after => {
                self.send_cut(pending, client_framing, &piece[..after - start])
                    .await?;
                return Ok(Step::Done(Next::Reset));
            }
            Some(Fault::Stall { after, stall }) if offset >= *after => {
                self.send_cut(pending, client_framing, &piece[..after - start])
                    .await?;
                tokio::time::sleep(*stall).await;
                return Ok(Step::Done(Next::Reset));
            }
            Some(Fault::Truncate { keep }) if offset >= *keep => {
                self.send_cut(pending, client_framing, &piece[..keep - start])
                    .await?;
                return Ok(Step::Done(Next::Close));
            }
            Some(Fault::Shorten { keep }) if offset >= *keep => {
                pending.extend(encode_piece(client_framing, &piece[..keep - start]));
                if client_framing == Framing::Chunked {
                    pending.extend_from_slice(b"0\r\n\r\n");
                }
                self.flight.end();
                self.client_w.write_all(pending).await?;
                self.client_w.flush().await?;
                // The rest of the upstream body is not read: this upstream connection ends.
                return Ok(Step::Done(Next::KeepAlive));
            }
            Some(Fault::Slow { piece: size, every }) => {
                self.client_w.write_all(&std::mem::take(pending)).await?;
                self.client_w.flush().await?;
                let mut rest: &[u8] = piece;
                while !rest.is_empty() {
                    let n = rest.len().min(*size);
                    tokio::time::sleep(*every).await;
                    self.client_w
                        .write_all(&encode_piece(client_framing, &rest[..n]))
                        .await?;
                    self.client_w.flush().await?;
                    rest = &rest[n..];
                }
                return Ok(Step::Sent);
            }
            _ => {}
        }
        Ok(Step::Relay)
    }

    /// Writes `pending` and the first part `cut` of a piece, and nothing after.
    async fn send_cut(
        &mut self,
        pending: &mut Vec<u8>,
        client_framing: Framing,
        cut: &[u8],
    ) -> std::io::Result<()> {
        pending.extend(encode_piece(client_framing, cut));
        self.client_w.write_all(pending).await?;
        self.client_w.flush().await
    }
}
