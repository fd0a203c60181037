//! Blob HEAD and streamed GET.
//!
//! A blob GET follows redirects: Docker Hub, ECR, GCR and S3-backed distribution answer with a
//! 307 to pre-signed object storage. reqwest removes `Authorization` when a redirect changes
//! scheme, host or port (tested in `tests/registry_scripted.rs`), and the pre-signed URL carries
//! its own authorisation. The body is handed on as a stream, never buffered; it keeps the
//! request's concurrency permit until the caller drops it, so `max_concurrent_requests` bounds
//! the blob downloads actually open.

use futures_util::StreamExt;
use reqwest::Method;
use reqwest::header::CONTENT_LENGTH;

use super::exchange::Call;
use super::{HttpRegistry, pull};
use crate::digest::Digest;
use crate::registry::{BlobBody, ErrorKind, RegistryError, Result};

impl HttpRegistry {
    pub(super) async fn head_blob(&self, repo: &str, digest: &Digest) -> Result<Option<u64>> {
        let scopes = pull(repo);
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let call = Call::new("HEAD blob", Method::HEAD, url, &scopes);
        let answer = self.send(&call, None, &[200, 404]).await?;
        if answer.status() == 404 {
            return Ok(None);
        }
        let size = answer
            .header(CONTENT_LENGTH)
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| {
                RegistryError::new(
                    ErrorKind::Invalid,
                    call.op,
                    super::response::display_url(&call.url),
                )
                .with_status(200)
                .with_message("blob HEAD answered without a Content-Length")
            })?;
        Ok(Some(size))
    }

    pub(super) async fn get_blob(&self, repo: &str, digest: &Digest) -> Result<BlobBody> {
        let scopes = pull(repo);
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let call = Call::new("GET blob", Method::GET, url, &scopes);
        // Retried up to the response headers; once the body streams, the engine owns retries.
        let answer = self.send(&call, None, &[200]).await?;
        let size = answer.response.content_length();
        let permit = answer.permit;
        let stream = answer.response.bytes_stream().map(move |chunk| {
            // The permit lives as long as the stream.
            let _held = &permit;
            chunk.map_err(|e| std::io::Error::other(e.without_url()))
        });
        Ok(BlobBody {
            stream: Box::pin(stream),
            size,
        })
    }
}
