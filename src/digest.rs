//! Content digests (`sha256:<hex>`, `sha512:<hex>`) and a stream that verifies them.
//!
//! Everything crossdock copies is addressed by digest, and the one promise users rely on most is
//! that what lands in the target hashes to the digest it is filed under. So a [`Digest`] is
//! validated when it is parsed (known algorithm, right hex length, lowercase), and blob bytes pass
//! through a [`VerifyingStream`] that hashes them on the way and fails *at end of stream*, before
//! the last chunk is handed on, if the size or the digest is wrong. A consumer that uploads the
//! stream therefore never sees a clean end for corrupt content, and the upload is never completed.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use sha2::Digest as _;

/// A digest algorithm crossdock can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256, the algorithm of nearly every registry.
    Sha256,
    /// SHA-512, allowed by the OCI image spec.
    Sha512,
}

impl Algorithm {
    /// The name used in digest strings.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the hex encoding of this algorithm's output.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// Why a digest string was refused, or why content did not match its digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// The string is not `algorithm:hex`.
    #[error("invalid digest {input:?}: {reason}")]
    Malformed {
        /// The string as given.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The algorithm is well-formed but not one crossdock can verify.
    #[error(
        "unsupported digest algorithm {algorithm:?} in {input:?} (only sha256 and sha512 are verified)"
    )]
    UnsupportedAlgorithm {
        /// The string as given.
        input: String,
        /// The algorithm part.
        algorithm: String,
    },
    /// The content hashed to another digest.
    #[error("digest mismatch: expected {expected}, content hashes to {actual}")]
    Mismatch {
        /// The digest the content was announced under.
        expected: Digest,
        /// What the content actually hashes to.
        actual: Digest,
    },
    /// The content has another length than announced.
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The digest of the content concerned.
        digest: Digest,
        /// The announced size.
        expected: u64,
        /// The size seen (for a stream that ran over: at least this many).
        actual: u64,
    },
}

/// A validated content digest such as `sha256:e3b0…`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// Parses and validates `algorithm:hex`.
    pub fn parse(input: &str) -> Result<Self, DigestError> {
        let malformed = |reason| DigestError::Malformed {
            input: input.to_string(),
            reason,
        };
        let (alg, hex) = input
            .split_once(':')
            .ok_or_else(|| malformed("missing ':' between algorithm and hex"))?;
        if alg.is_empty()
            || !alg
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b))
        {
            return Err(malformed(
                "algorithm must be lowercase letters, digits or +._-",
            ));
        }
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            other => {
                return Err(DigestError::UnsupportedAlgorithm {
                    input: input.to_string(),
                    algorithm: other.to_string(),
                });
            }
        };
        if hex.len() != algorithm.hex_len() {
            return Err(malformed(match algorithm {
                Algorithm::Sha256 => "sha256 hex must be 64 characters",
                Algorithm::Sha512 => "sha512 hex must be 128 characters",
            }));
        }
        if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(malformed("hex must be lowercase 0-9a-f"));
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_string(),
        })
    }

    /// The sha256 digest of `bytes`.
    pub fn sha256_of(bytes: &[u8]) -> Self {
        let mut h = Hasher::new(Algorithm::Sha256);
        h.update(bytes);
        h.finish()
    }

    /// The digest of `bytes` under `algorithm`.
    pub fn compute(algorithm: Algorithm, bytes: &[u8]) -> Self {
        let mut h = Hasher::new(algorithm);
        h.update(bytes);
        h.finish()
    }

    /// Checks that `bytes` hash to this digest.
    pub fn verify(&self, bytes: &[u8]) -> Result<(), DigestError> {
        let actual = Digest::compute(self.algorithm, bytes);
        if &actual == self {
            Ok(())
        } else {
            Err(DigestError::Mismatch {
                expected: self.clone(),
                actual,
            })
        }
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lowercase hex part.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The cosign / OCI referrers fallback tag for this digest: `sha256-<hex>`.
    pub fn tag_form(&self) -> String {
        format!("{}-{}", self.algorithm.as_str(), self.hex)
    }

    /// A short form for humans: `sha256:0123456789ab`.
    pub fn short(&self) -> String {
        format!("{}:{}", self.algorithm.as_str(), &self.hex[..12])
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An incremental hasher for one algorithm.
#[derive(Clone)]
pub struct Hasher(HasherInner);

#[derive(Clone)]
enum HasherInner {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    /// A fresh hasher.
    pub fn new(algorithm: Algorithm) -> Self {
        Hasher(match algorithm {
            Algorithm::Sha256 => HasherInner::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => HasherInner::Sha512(sha2::Sha512::new()),
        })
    }

    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        match &mut self.0 {
            HasherInner::Sha256(h) => h.update(bytes),
            HasherInner::Sha512(h) => h.update(bytes),
        }
    }

    /// The digest of everything fed.
    pub fn finish(self) -> Digest {
        let (algorithm, hex) = match self.0 {
            HasherInner::Sha256(h) => (Algorithm::Sha256, hex::encode(h.finalize())),
            HasherInner::Sha512(h) => (Algorithm::Sha512, hex::encode(h.finalize())),
        };
        Digest { algorithm, hex }
    }
}

/// The error a [`VerifyingStream`] yields, wrapped in an [`io::Error`] so that it can travel
/// through HTTP body types; recover it with [`VerifyError::from_io`].
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The content did not match.
    #[error(transparent)]
    Content(#[from] DigestError),
    /// The underlying stream failed.
    #[error("reading blob {digest}: {source}")]
    Read {
        /// The blob being read.
        digest: Digest,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl VerifyError {
    /// Finds a [`DigestError`] inside an I/O error produced by a [`VerifyingStream`], if any.
    pub fn digest_error(err: &io::Error) -> Option<&DigestError> {
        match err.get_ref()?.downcast_ref::<VerifyError>()? {
            VerifyError::Content(d) => Some(d),
            VerifyError::Read { .. } => None,
        }
    }
}

pin_project_lite::pin_project! {
    /// Wraps a byte stream, hashing and counting what passes. It yields an error instead of the
    /// chunk that makes the size exceed `expected_size`, and instead of end-of-stream when the
    /// total size or the digest is wrong. The last chunk is held back until the check passes, so
    /// a consumer never sees all the bytes followed by a clean end for corrupt content.
    pub struct VerifyingStream<S> {
        #[pin]
        inner: S,
        hasher: Option<Hasher>,
        expected: Digest,
        expected_size: Option<u64>,
        seen: u64,
        held: Option<Bytes>,
        done: bool,
    }
}

impl<S> VerifyingStream<S> {
    /// Verifies `inner` against `expected` and, when given, an exact size.
    pub fn new(inner: S, expected: Digest, expected_size: Option<u64>) -> Self {
        VerifyingStream {
            inner,
            hasher: Some(Hasher::new(expected.algorithm())),
            expected,
            expected_size,
            seen: 0,
            held: None,
            done: false,
        }
    }
}

impl<S, E> Stream for VerifyingStream<S>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Item = Result<Bytes, io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        loop {
            match this.inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => {
                    *this.done = true;
                    let source = io::Error::other(e.into());
                    return Poll::Ready(Some(Err(io::Error::other(VerifyError::Read {
                        digest: this.expected.clone(),
                        source,
                    }))));
                }
                Poll::Ready(Some(Ok(chunk))) => {
                    if chunk.is_empty() {
                        continue;
                    }
                    *this.seen += chunk.len() as u64;
                    if let Some(max) = *this.expected_size
                        && *this.seen > max
                    {
                        *this.done = true;
                        return Poll::Ready(Some(Err(io::Error::other(VerifyError::Content(
                            DigestError::SizeMismatch {
                                digest: this.expected.clone(),
                                expected: max,
                                actual: *this.seen,
                            },
                        )))));
                    }
                    if let Some(h) = this.hasher.as_mut() {
                        h.update(&chunk);
                    }
                    // Hand on the previous chunk, hold this one back until we know more.
                    if let Some(prev) = this.held.replace(chunk) {
                        return Poll::Ready(Some(Ok(prev)));
                    }
                }
                Poll::Ready(None) => {
                    *this.done = true;
                    if let Some(expected) = *this.expected_size
                        && *this.seen != expected
                    {
                        return Poll::Ready(Some(Err(io::Error::other(VerifyError::Content(
                            DigestError::SizeMismatch {
                                digest: this.expected.clone(),
                                expected,
                                actual: *this.seen,
                            },
                        )))));
                    }
                    let actual = this.hasher.take().expect("hasher used once").finish();
                    if actual != *this.expected {
                        return Poll::Ready(Some(Err(io::Error::other(VerifyError::Content(
                            DigestError::Mismatch {
                                expected: this.expected.clone(),
                                actual,
                            },
                        )))));
                    }
                    return Poll::Ready(this.held.take().map(Ok));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{StreamExt, stream};

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_displays() {
        let d = Digest::parse(EMPTY).unwrap();
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(d, Digest::sha256_of(b""));
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.tag_form(), format!("sha256-{}", d.hex()));
    }

    #[test]
    fn refuses_bad_digests() {
        for bad in [
            "sha256",
            "sha256:abc",
            "SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ":e3b0",
        ] {
            assert!(
                matches!(Digest::parse(bad), Err(DigestError::Malformed { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            Digest::parse("md5:d41d8cd98f00b204e9800998ecf8427e"),
            Err(DigestError::UnsupportedAlgorithm { .. })
        ));
    }

    #[test]
    fn sha512_accepted() {
        let d = Digest::compute(Algorithm::Sha512, b"abc");
        assert_eq!(d.hex().len(), 128);
        assert_eq!(Digest::parse(&d.to_string()).unwrap(), d);
        d.verify(b"abc").unwrap();
        assert!(d.verify(b"abd").is_err());
    }

    async fn collect(
        chunks: Vec<&'static [u8]>,
        digest: Digest,
        size: Option<u64>,
    ) -> (Vec<u8>, Option<io::Error>) {
        let s = stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, io::Error>(Bytes::from_static(c))),
        );
        let mut v = VerifyingStream::new(s, digest, size);
        let mut out = Vec::new();
        while let Some(item) = v.next().await {
            match item {
                Ok(b) => out.extend_from_slice(&b),
                Err(e) => return (out, Some(e)),
            }
        }
        (out, None)
    }

    #[tokio::test]
    async fn verifying_stream_passes_good_content() {
        let d = Digest::sha256_of(b"hello world");
        let (out, err) = collect(vec![b"hello", b" ", b"world"], d, Some(11)).await;
        assert!(err.is_none());
        assert_eq!(out, b"hello world");
    }

    #[tokio::test]
    async fn verifying_stream_fails_on_wrong_digest_before_last_chunk() {
        let d = Digest::sha256_of(b"hello world");
        let (out, err) = collect(vec![b"hello", b" ", b"w0rld"], d, Some(11)).await;
        let err = err.expect("must fail");
        assert!(matches!(
            VerifyError::digest_error(&err),
            Some(DigestError::Mismatch { .. })
        ));
        // The corrupt final chunk was never handed on.
        assert_eq!(out, b"hello ");
    }

    #[tokio::test]
    async fn verifying_stream_fails_on_short_and_long_content() {
        let d = Digest::sha256_of(b"hello world");
        let (_, err) = collect(vec![b"hello"], d.clone(), Some(11)).await;
        assert!(matches!(
            VerifyError::digest_error(&err.unwrap()),
            Some(DigestError::SizeMismatch { actual: 5, .. })
        ));
        let (_, err) = collect(vec![b"hello world", b"!"], d, Some(11)).await;
        assert!(matches!(
            VerifyError::digest_error(&err.unwrap()),
            Some(DigestError::SizeMismatch { actual: 12, .. })
        ));
    }
}
