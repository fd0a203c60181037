//! The transport: "a place images live", and its backends.
//!
//! The copy engine talks only to [`Transport`]; it never sees HTTP. One transport value serves
//! one registry host (or one OCI layout folder), and every call names the repository.
//! Backends: [`http::HttpRegistry`] (the OCI distribution API over reqwest, with [`auth`] and
//! [`retry`] beneath it), [`layout::LayoutTransport`] (an OCI image-layout folder) and the
//! [`archive`] transports (`oci-archive:` and `docker-archive:` tar files).
//!
//! Contract every backend keeps:
//! - manifests are returned with their exact bytes and verified against the digest asked for
//!   (and against `Docker-Content-Digest`, which is never trusted alone);
//! - a blob upload whose body stream fails (including a [`crate::digest::VerifyingStream`]
//!   refusing corrupt content) is cancelled, never committed;
//! - calls without a body are retried on transient faults inside the backend; a blob upload is
//!   not (its body is gone), the caller retries it from a fresh source stream.

pub mod adaptive;
pub mod archive;
pub mod auth;
pub mod connect;
pub mod error;
pub mod http;
pub mod layout;
pub mod limiter;
pub mod retry;

use std::io;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;

use crate::digest::Digest;
use crate::manifest::{Descriptor, Manifest};
pub use error::{ErrorKind, RegistryError, Result};

/// A stream of blob bytes.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, io::Error>> + Send>>;

/// A blob being read: its bytes and, when the backend knows it, its length.
pub struct BlobBody {
    /// The bytes, unverified: wrap in a [`crate::digest::VerifyingStream`].
    pub stream: ByteStream,
    /// `Content-Length`, when known.
    pub size: Option<u64>,
}

/// What a manifest HEAD tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    /// The digest of the manifest the reference points at.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its size.
    pub size: u64,
}

/// An upload session a backend opened (opaque to callers; only handed back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadSession {
    /// Backend-specific location (the URL of the session for HTTP).
    pub location: String,
}

/// The result of a cross-repository mount request.
#[derive(Debug)]
pub enum MountOutcome {
    /// The blob is now in the repository (201).
    Mounted,
    /// The registry did not mount but opened an upload session (202): upload into it, or cancel.
    Upload(UploadSession),
}

/// Whether a backend deletes a tag alone (the image and its other tags staying), as far as it
/// knows before deleting anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagDeletion {
    /// It does: an OCI layout folder, where a tag is one name in its index.
    Alone,
    /// It deletes no tag at all: an archive, written whole.
    Never,
    /// Only a DELETE tells: a registry that deletes by tag (OCI 1.1, distribution 3) removes
    /// the tag alone, one that deletes by digest only (distribution 2.8) refuses.
    Unknown,
}

/// A place images live. One value serves one registry host; every call names the repository.
#[async_trait]
pub trait Transport: Send + Sync {
    /// The registry this transport serves, as named in references (e.g. `localhost:5000`).
    fn name(&self) -> &str;

    /// Checks that the registry answers the API (`GET /v2/`), authenticating if it asks.
    async fn ping(&self) -> Result<()>;

    /// HEADs a manifest by tag or digest. `Ok(None)` when it does not exist.
    async fn manifest_head(&self, repo: &str, reference: &str) -> Result<Option<ManifestHead>>;

    /// GETs a manifest by tag or digest, verified against the digest when `reference` is one.
    async fn manifest_get(&self, repo: &str, reference: &str) -> Result<Manifest>;

    /// PUTs a manifest's exact bytes under a tag or its digest.
    async fn manifest_put(&self, repo: &str, reference: &str, manifest: &Manifest) -> Result<()>;

    /// Deletes a manifest by tag or digest (`DELETE /v2/<repo>/manifests/<reference>`).
    /// `Ok(false)` when there was nothing to delete. A registry that deletes by digest only
    /// (distribution 2.8, which removes every tag on that digest) answers a tag with an
    /// [`ErrorKind::Unsupported`] error, as does a backend that cannot delete at all: the caller
    /// decides whether deleting the digest is safe.
    async fn manifest_delete(&self, repo: &str, reference: &str) -> Result<bool> {
        let _ = reference;
        Err(
            RegistryError::new(ErrorKind::Unsupported, "DELETE manifest", repo)
                .with_message("this backend cannot delete manifests"),
        )
    }

    /// Whether deleting a tag here removes it alone, before any DELETE was sent: a dry run
    /// of pruning cannot send one to find out.
    fn tag_deletion(&self) -> TagDeletion {
        TagDeletion::Unknown
    }

    /// HEADs a blob. `Ok(Some(size))` when present, `Ok(None)` when not.
    async fn blob_head(&self, repo: &str, digest: &Digest) -> Result<Option<u64>>;

    /// GETs a blob as a stream (following redirects, never sending credentials to another host).
    async fn blob_get(&self, repo: &str, digest: &Digest) -> Result<BlobBody>;

    /// Asks the registry to mount `digest` from repository `from` into `repo`.
    async fn blob_mount(&self, repo: &str, digest: &Digest, from: &str) -> Result<MountOutcome>;

    /// Uploads a blob of `size` bytes from `body`, into `session` if one is open (after a 202 to
    /// a mount) or a fresh one. If `body` fails, the session is cancelled and nothing committed.
    async fn blob_put(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        body: ByteStream,
        session: Option<UploadSession>,
    ) -> Result<()>;

    /// Cancels an upload session (best effort).
    async fn upload_cancel(&self, repo: &str, session: UploadSession);

    /// Lists every tag of a repository (all pages).
    async fn tags(&self, repo: &str) -> Result<Vec<String>>;

    /// Whether a repository has any tag; a repository never pushed to is `NotFound` or `false`.
    /// Backends that can ask for one page of one tag do (the copy engine asks this of every
    /// target repository, which can hold thousands of tags).
    async fn has_tags(&self, repo: &str) -> Result<bool> {
        Ok(!self.tags(repo).await?.is_empty())
    }

    /// The referrers of `digest` through the OCI Referrers API. `Ok(None)` when the registry
    /// does not implement the API (the caller then uses the `sha256-<hex>` tag fallback).
    async fn referrers(&self, repo: &str, digest: &Digest) -> Result<Option<Vec<Descriptor>>>;

    /// Writes out what this backend staged. Archives are one file written whole once the copy
    /// into them is complete: whoever built the transport calls this after the last copy into
    /// it (the CLI does), and until then nothing is in place. Other backends write as they go
    /// and have nothing to do.
    async fn finish(&self) -> Result<()> {
        Ok(())
    }

    /// Whether the manifest `digest` was made by this backend because what it reads holds none
    /// (a `docker save` archive): its digest is then crossdock's, not that of any image
    /// published elsewhere, and reports say so.
    fn made_manifest(&self, _digest: &Digest) -> bool {
        false
    }

    /// Whether asking for a cross-repository mount can save an upload. Amazon ECR answers every
    /// mount with 202 and an upload session, so for it the copy engine does not ask.
    fn mounts_blobs(&self) -> bool {
        true
    }

    /// The last `ratelimit-remaining` the registry announced (Docker Hub), if any.
    fn ratelimit_remaining(&self) -> Option<i64> {
        None
    }

    /// The backend's request limit, where blob transfers reserve the requests they hold open
    /// through a whole transfer (a GET being streamed, an upload); `None` when the backend has
    /// no request limit. A transfer reserves every such request it will hold, at every registry
    /// involved, before it opens any, so that transfers never wait for each other's requests in
    /// a circle (see `copy::blob::reserve_streams` and [`limiter`]).
    fn stream_slots(&self) -> Option<std::sync::Arc<limiter::Limiter>> {
        None
    }
}
