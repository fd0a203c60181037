//! The HTTP/1.1 wire for [`super::FaultProxy`]: reading heads and bodies off a socket (fixed
//! length, chunked, or until close) and writing them back, so that the proxy can stop, stall,
//! cut or alter a message at any byte. Only what a registry and crossdock exchange is handled.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Most bytes of a request or response head.
const MAX_HEAD: usize = 64 * 1024;
/// Bytes read from a socket at once.
pub(super) const READ_SIZE: usize = 64 * 1024;

/// Bytes read from a socket but not consumed yet.
pub(super) struct Reader<R> {
    pub(super) inner: R,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    pub(super) fn new(inner: R) -> Self {
        Reader {
            inner,
            buf: BytesMut::new(),
        }
    }

    /// Reads more; false at EOF.
    async fn fill(&mut self) -> std::io::Result<bool> {
        self.buf.reserve(READ_SIZE);
        Ok(self.inner.read_buf(&mut self.buf).await? > 0)
    }

    /// A head up to and including the blank line; `None` at a clean EOF before any byte.
    pub(super) async fn head(&mut self) -> std::io::Result<Option<Bytes>> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                return Ok(Some(self.buf.split_to(end + 4).freeze()));
            }
            if self.buf.len() > MAX_HEAD {
                return Err(std::io::Error::other("head too large"));
            }
            if !self.fill().await? {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(std::io::ErrorKind::UnexpectedEof.into())
                };
            }
        }
    }

    async fn line(&mut self) -> std::io::Result<Bytes> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n") {
                let line = self.buf.split_to(end + 2).freeze();
                return Ok(line.slice(..end));
            }
            if !self.fill().await? {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Up to `max` bytes; empty at EOF.
    async fn some(&mut self, max: usize) -> std::io::Result<Bytes> {
        if self.buf.is_empty() && !self.fill().await? {
            return Ok(Bytes::new());
        }
        let n = self.buf.len().min(max);
        Ok(self.buf.split_to(n).freeze())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// How a message body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Until the connection closes (responses only).
    Close,
}

/// Reads a body's content (de-chunked) piece by piece.
pub(super) struct BodyReader {
    framing: Framing,
    /// Bytes left in the body (Length) or in the current chunk (Chunked).
    left: u64,
    done: bool,
}

impl BodyReader {
    pub(super) fn new(framing: Framing) -> Self {
        BodyReader {
            framing,
            left: match framing {
                Framing::Length(n) => n,
                _ => 0,
            },
            done: matches!(framing, Framing::None | Framing::Length(0)),
        }
    }

    pub(super) async fn next<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut Reader<R>,
    ) -> std::io::Result<Option<Bytes>> {
        if self.done {
            return Ok(None);
        }
        match self.framing {
            Framing::None => Ok(None),
            Framing::Length(_) => {
                let b = r.some(self.left.min(READ_SIZE as u64) as usize).await?;
                if b.is_empty() {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                self.left -= b.len() as u64;
                self.done = self.left == 0;
                Ok(Some(b))
            }
            Framing::Close => {
                let b = r.some(READ_SIZE).await?;
                if b.is_empty() {
                    self.done = true;
                    return Ok(None);
                }
                Ok(Some(b))
            }
            Framing::Chunked => {
                if self.left == 0 {
                    let line = r.line().await?;
                    let text = std::str::from_utf8(&line).unwrap_or("");
                    let size = text.split(';').next().unwrap_or("").trim();
                    self.left = u64::from_str_radix(size, 16)
                        .map_err(|_| std::io::Error::other("bad chunk size"))?;
                    if self.left == 0 {
                        // Trailers, up to the blank line.
                        while !r.line().await?.is_empty() {}
                        self.done = true;
                        return Ok(None);
                    }
                }
                let b = r.some(self.left.min(READ_SIZE as u64) as usize).await?;
                if b.is_empty() {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                self.left -= b.len() as u64;
                if self.left == 0 {
                    r.line().await?;
                }
                Ok(Some(b))
            }
        }
    }
}

/// A parsed head: first line parts and headers.
#[derive(Clone, Debug)]
pub(super) struct Head {
    /// Request: method. Response: "HTTP/1.1".
    pub(super) first: String,
    /// Request: target. Response: status code.
    pub(super) second: String,
    /// Response: reason.
    pub(super) third: String,
    pub(super) headers: Vec<(String, String)>,
}

impl Head {
    pub(super) fn request(bytes: &[u8]) -> std::io::Result<Head> {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(bytes) {
            Ok(httparse::Status::Complete(_)) => Ok(Head {
                first: req.method.unwrap_or("").to_string(),
                second: req.path.unwrap_or("").to_string(),
                third: "HTTP/1.1".into(),
                headers: collect(req.headers),
            }),
            _ => Err(std::io::Error::other("bad request head")),
        }
    }

    pub(super) fn response(bytes: &[u8]) -> std::io::Result<Head> {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(bytes) {
            Ok(httparse::Status::Complete(_)) => Ok(Head {
                first: "HTTP/1.1".into(),
                second: resp.code.unwrap_or(0).to_string(),
                third: resp.reason.unwrap_or("").to_string(),
                headers: collect(resp.headers),
            }),
            _ => Err(std::io::Error::other("bad response head")),
        }
    }

    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn remove(&mut self, name: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    pub(super) fn status(&self) -> u16 {
        self.second.parse().unwrap_or(0)
    }

    /// The body framing the head announces.
    pub(super) fn framing(&self, is_response: bool, request_method: &str) -> Framing {
        if is_response {
            let s = self.status();
            if request_method == "HEAD" || (100..200).contains(&s) || s == 204 || s == 304 {
                return Framing::None;
            }
        }
        if self
            .get("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
        {
            return Framing::Chunked;
        }
        match self
            .get("content-length")
            .and_then(|v| v.trim().parse().ok())
        {
            Some(n) => Framing::Length(n),
            None if is_response => Framing::Close,
            None => Framing::None,
        }
    }

    /// The head as bytes, with `framing` for its body (Content-Length or chunked).
    pub(super) fn encode(&self, framing: Framing) -> Vec<u8> {
        let mut out = format!("{} {} {}", self.first, self.second, self.third)
            .trim_end()
            .to_string();
        out.push_str("\r\n");
        // Without a body (HEAD answers, bodyless requests) the framing headers stay as they
        // are: a HEAD answer's Content-Length is the size of what a GET would bring.
        let reframe = framing != Framing::None;
        for (n, v) in &self.headers {
            if reframe
                && (n.eq_ignore_ascii_case("content-length")
                    || n.eq_ignore_ascii_case("transfer-encoding"))
            {
                continue;
            }
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        match framing {
            Framing::Length(n) => out.push_str(&format!("content-length: {n}\r\n")),
            Framing::Chunked => out.push_str("transfer-encoding: chunked\r\n"),
            Framing::None | Framing::Close => {}
        }
        out.push_str("\r\n");
        out.into_bytes()
    }
}

fn collect(headers: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect()
}

/// A body piece as it goes on the wire with `framing`.
pub(super) fn encode_piece(framing: Framing, piece: &[u8]) -> Vec<u8> {
    match framing {
        Framing::Chunked => {
            let mut v = format!("{:x}\r\n", piece.len()).into_bytes();
            v.extend_from_slice(piece);
            v.extend_from_slice(b"\r\n");
            v
        }
        _ => piece.to_vec(),
    }
}
