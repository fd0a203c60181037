//! Blob uploads and cross-repository mounts.
//!
//! An upload is `POST /v2/<repo>/blobs/uploads/` (202 + `Location`), then either one streaming
//! `PUT <location>?digest=<d>` with the whole body (the default), or `PATCH` chunks followed by a
//! bodyless `PUT ?digest=` (when a chunk size is configured). Quirks of distribution 2.8 that
//! shape this:
//! - a single-request `POST ?digest=` with a body answers 202 and drops the body, so it is never
//!   used;
//! - each PATCH answers with a new `Location` (a fresh `_state` token) and the previous one stops
//!   working, so every request continues at the `Location` of the latest response;
//! - `Location` may be relative, and already carries a query (`?_state=`), so `digest` is
//!   appended as a query pair, not concatenated after a `?`.
//!
//! A body stream that fails — a [`crate::digest::VerifyingStream`] refusing corrupt content, or
//! the source registry dropping the connection — aborts the request before the registry sees a
//! complete body, and the session is deleted: nothing is committed. Any failure after the session
//! exists deletes it (best effort). Uploads are never retried here: the body is gone; the engine
//! retries the blob copy from a fresh stream.

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use reqwest::Method;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use url::Url;

use super::exchange::{Answer, Body, Call};
use super::manifest::content_digest;
use super::response::{body_error, display_url};
use super::{HttpRegistry, push};
use crate::digest::{Digest, DigestError};
use crate::registry::auth::Scope;
use crate::registry::{ByteStream, ErrorKind, MountOutcome, RegistryError, Result, UploadSession};

const OCTET_STREAM: &str = "application/octet-stream";

impl HttpRegistry {
    /// The upload session URL an answer points at, resolved against the request URL.
    fn session_location(&self, op: &'static str, answer: &Answer) -> Result<Url> {
        let url = answer.response.url();
        let invalid = |message: &str| {
            RegistryError::new(ErrorKind::Invalid, op, display_url(url))
                .with_status(answer.status())
                .with_message(message.to_string())
        };
        let location = answer
            .header(LOCATION)
            .ok_or_else(|| invalid("upload answer without a Location header"))?;
        url.join(location)
            .map_err(|_| invalid("upload answer with an unreadable Location header"))
    }

    /// The session to upload into: the one given, or a fresh one.
    async fn open_session(&self, repo: &str, session: Option<UploadSession>) -> Result<Url> {
        if let Some(s) = session {
            return Url::parse(&s.location).map_err(|_| {
                RegistryError::new(ErrorKind::Invalid, "PUT blob", "upload session")
                    .with_message("the upload session's location is not a URL")
            });
        }
        let scopes = push(repo);
        let url = self.url(&format!("/v2/{repo}/blobs/uploads/"));
        let call =
            Call::new("POST blob upload", Method::POST, url, &scopes).header(CONTENT_LENGTH, "0");
        // Retrying a POST at worst leaves an unused session, which the registry expires.
        let answer = self.send(&call, None, &[202]).await?;
        self.session_location(call.op, &answer)
    }

    pub(super) async fn mount_blob(
        &self,
        repo: &str,
        digest: &Digest,
        from: &str,
    ) -> Result<MountOutcome> {
        let scopes = [Scope::push_pull(repo), Scope::pull(from)];
        let mut url = self.url(&format!("/v2/{repo}/blobs/uploads/"));
        url.query_pairs_mut()
            .append_pair("mount", &digest.to_string())
            .append_pair("from", from);
        let call =
            Call::new("POST blob mount", Method::POST, url, &scopes).header(CONTENT_LENGTH, "0");
        let answer = self.send(&call, None, &[201, 202]).await?;
        if answer.status() == 201 {
            return Ok(MountOutcome::Mounted);
        }
        // 202: the registry did not mount (blob unknown in `from`, or no access) and opened an
        // ordinary upload session instead; the caller uploads into it or cancels it.
        let location = self.session_location(call.op, &answer)?;
        Ok(MountOutcome::Upload(UploadSession {
            location: location.to_string(),
        }))
    }

    pub(super) async fn put_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        body: ByteStream,
        session: Option<UploadSession>,
    ) -> Result<()> {
        let location = self.open_session(repo, session).await?;
        // A registry (or a proxy in front of it) that refused a request body as too large
        // (413) gets chunks from then on, halved at each further refusal.
        let chunk_size = match self
            .chunk_after_413
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            0 => self.opts.chunk_size,
            n => Some(self.opts.chunk_size.map_or(n, |c| c.min(n))),
        };
        let result = match chunk_size {
            Some(chunk) => {
                self.put_chunked(repo, digest, size, body, location.clone(), chunk)
                    .await
            }
            None => {
                self.put_monolithic(repo, digest, size, body, location.clone())
                    .await
            }
        };
        match result {
            Ok(()) => Ok(()),
            Err((failed_at, mut err)) => {
                if err.status == Some(413) {
                    self.too_large(chunk_size, &mut err);
                }
                self.cancel_upload(
                    repo,
                    &UploadSession {
                        location: failed_at.unwrap_or(location).to_string(),
                    },
                )
                .await;
                if !err.message.contains(&digest.to_string()) {
                    err.message = format!("uploading blob {digest}: {}", err.message);
                }
                Err(err)
            }
        }
    }

    /// One streaming PUT of the whole blob. On failure, the session to cancel (if it moved) and
    /// the error.
    async fn put_monolithic(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        body: ByteStream,
        location: Url,
    ) -> Result<(), (Option<Url>, RegistryError)> {
        let scopes = push(repo);
        let call = Call::new(
            "PUT blob",
            Method::PUT,
            with_digest(location, digest),
            &scopes,
        )
        .header(CONTENT_TYPE, OCTET_STREAM)
        .header(CONTENT_LENGTH, &size.to_string());
        let answer = self
            .send_once(&call, Some(Body::Stream(body)), &[201])
            .await
            .map_err(|e| (None, e))?;
        check_committed(call.op, &answer, digest).map_err(|e| (None, e))
    }

    /// PATCH chunks of `chunk` bytes, then a bodyless PUT. Holds at most one chunk in memory.
    async fn put_chunked(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        mut body: ByteStream,
        mut location: Url,
        chunk: u64,
    ) -> Result<(), (Option<Url>, RegistryError)> {
        let chunk = usize::try_from(chunk.max(1)).unwrap_or(usize::MAX);
        let mut buf = BytesMut::new();
        let mut offset: u64 = 0;
        loop {
            let next = body.next().await;
            let end = match next {
                Some(Ok(bytes)) => {
                    buf.extend_from_slice(&bytes);
                    false
                }
                Some(Err(e)) => {
                    return Err((
                        Some(location.clone()),
                        body_error("PATCH blob", &location, e),
                    ));
                }
                None => true,
            };
            while buf.len() >= chunk || (end && !buf.is_empty()) {
                let piece = buf.split_to(buf.len().min(chunk)).freeze();
                let len = piece.len() as u64;
                location = self
                    .patch_chunk(repo, &location, offset, piece)
                    .await
                    .map_err(|e| (Some(location.clone()), e))?;
                offset += len;
            }
            if end {
                break;
            }
        }
        if offset != size {
            let e = DigestError::SizeMismatch {
                digest: digest.clone(),
                expected: size,
                actual: offset,
            };
            let err = RegistryError::from_digest("PUT blob", &display_url(&location), e);
            return Err((Some(location), err));
        }
        let scopes = push(repo);
        let call = Call::new(
            "PUT blob",
            Method::PUT,
            with_digest(location.clone(), digest),
            &scopes,
        )
        .header(CONTENT_TYPE, OCTET_STREAM)
        .header(CONTENT_LENGTH, "0");
        let answer = self
            .send_once(&call, None, &[201])
            .await
            .map_err(|e| (Some(location.clone()), e))?;
        check_committed(call.op, &answer, digest).map_err(|e| (Some(location), e))
    }

    /// Sends one chunk; the session continues at the returned location.
    async fn patch_chunk(
        &self,
        repo: &str,
        location: &Url,
        offset: u64,
        piece: Bytes,
    ) -> Result<Url> {
        let scopes = push(repo);
        let last = offset + piece.len() as u64 - 1;
        let call = Call::new("PATCH blob", Method::PATCH, location.clone(), &scopes)
            .header(CONTENT_TYPE, OCTET_STREAM)
            .header(reqwest::header::CONTENT_RANGE, &format!("{offset}-{last}"));
        // Not retried: a registry may have appended part of a chunk before failing. A 401 (a
        // token that expired during a long upload) is answered and the chunk resent.
        let answer = self
            .send_once(&call, Some(Body::Bytes(piece)), &[202])
            .await?;
        match answer.header(LOCATION) {
            Some(_) => self.session_location(call.op, &answer),
            None => Ok(location.clone()),
        }
    }

    /// Deletes an upload session, best effort: a session left behind expires on its own.
    /// After a 413 for an upload sent whole (`chunk` None) or in chunks of `chunk` bytes:
    /// remember to send (smaller) chunks, and mark the error retryable (from a fresh stream).
    /// Chunks start at 8 MiB and halve at each refusal, down to 64 KiB.
    fn too_large(&self, chunk: Option<u64>, err: &mut RegistryError) {
        const FIRST: u64 = 8 << 20;
        const SMALLEST: u64 = 64 << 10;
        let next = match chunk {
            None => FIRST,
            Some(c) if c / 2 >= SMALLEST => c / 2,
            Some(c) => {
                err.message = format!("{}; the registry refuses even {c}-byte chunks", err.message);
                return;
            }
        };
        self.chunk_after_413
            .store(next, std::sync::atomic::Ordering::Relaxed);
        err.retry_with_smaller_body = true;
        tracing::warn!(
            registry = %self.name,
            chunk = next,
            "the registry refused an upload body as too large (413); uploading in {next}-byte chunks from now on"
        );
    }

    pub(super) async fn cancel_upload(&self, repo: &str, session: &UploadSession) {
        let Ok(url) = Url::parse(&session.location) else {
            return;
        };
        let scopes = push(repo);
        let call = Call::new("DELETE blob upload", Method::DELETE, url, &scopes);
        if let Err(e) = self.send_once(&call, None, &[200, 202, 204, 404]).await {
            tracing::debug!(registry = %self.name, error = %e, "cancelling an upload failed");
        }
    }
}

/// `location` with `digest=<d>` added to whatever query it already has.
fn with_digest(mut location: Url, digest: &Digest) -> Url {
    location
        .query_pairs_mut()
        .append_pair("digest", &digest.to_string());
    location
}

/// After a 201: a `Docker-Content-Digest` other than the one we uploaded is an error.
fn check_committed(op: &'static str, answer: &Answer, digest: &Digest) -> Result<()> {
    match content_digest(op, answer)? {
        Some(stored) if stored != *digest => Err(RegistryError::new(
            ErrorKind::DigestInvalid,
            op,
            display_url(answer.response.url()),
        )
        .with_message(format!("uploaded {digest}, the registry stored {stored}"))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_added_to_an_existing_query() {
        let d = Digest::sha256_of(b"x");
        let u = with_digest(
            Url::parse("http://r/v2/a/blobs/uploads/u?_state=abc%3D%3D").unwrap(),
            &d,
        );
        assert_eq!(
            u.as_str(),
            format!(
                "http://r/v2/a/blobs/uploads/u?_state=abc%3D%3D&digest=sha256%3A{}",
                d.hex()
            )
        );
        let u = with_digest(Url::parse("http://r/v2/a/blobs/uploads/u").unwrap(), &d);
        assert_eq!(
            u.query(),
            Some(format!("digest=sha256%3A{}", d.hex()).as_str())
        );
    }
}
