//! The OCI image-layout backend: a folder on disk as "a place images live".
//!
//! A layout (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`, per the OCI image-layout spec) is
//! what skopeo's `oci:` transport, oras and buildkit read and write, so a folder written here
//! can be carried to an air-gapped site and imported there by any of them, and the reverse.
//! It is a second backend of the same [`Transport`] trait, so the copy engine copies to and from
//! a folder exactly as between registries, with the same checks.
//!
//! Mapping of the trait onto the folder:
//! - one layout is one repository. References name it with the empty repository (see
//!   [`crate::reference::Reference::layout`]); any other repository name is refused rather
//!   than silently sharing the folder;
//! - a tag is an `index.json` entry whose `org.opencontainers.image.ref.name` is the tag; other
//!   entries (untagged ones, names that are not valid tags, written by other tools) are kept
//!   untouched and not listed as tags;
//! - manifests are blobs like any other content, and `index.json` lists the top-level ones, as
//!   skopeo writes it: a manifest put by tag is named there; one put by digest (the top of an
//!   image copied without a tag) gets an entry without a name, so that skopeo's `oci:DIR`
//!   finds it and layout garbage collectors keep it; and an index, once put, removes the
//!   unnamed entries of its own children (the engine puts children by digest before their
//!   index), which stay reachable through it;
//! - there are no cross-repository mounts (the engine then uploads) and no referrers API (the
//!   engine then finds signatures through their `sha256-<hex>` tags, which are entries here).
//!
//! Every manifest read is verified against its digest; blobs are verified by the engine's
//! verifying stream on the way out and again here on the way in, before they are renamed into
//! place. How the files are changed safely is in [`store`].

pub(crate) mod store;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

pub use store::LayoutError;

use super::{
    BlobBody, ByteStream, ErrorKind, ManifestHead, MountOutcome, RegistryError, Result,
    TagDeletion, Transport, UploadSession,
};
use crate::digest::{Digest, DigestError, Hasher, VerifyError};
use crate::manifest::{Descriptor, MAX_MANIFEST_SIZE, Manifest, ManifestError, ManifestView};
use crate::reference::{LAYOUT_PREFIX, Reference};

/// Buffer between the incoming blob stream and the file (per blob being written).
const WRITE_BUFFER: usize = 256 * 1024;
/// Chunk size when streaming a blob out of the layout.
const READ_CHUNK: usize = 64 * 1024;

/// One OCI image layout folder. Cheap to create: nothing is read or written until used; the
/// folder, `oci-layout` and an empty `index.json` are created on the first write.
pub struct LayoutTransport {
    name: String,
    root: PathBuf,
    /// `oci-layout` was found valid (or written): not checked again.
    ready: AtomicBool,
}

impl std::fmt::Debug for LayoutTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LayoutTransport({})", self.root.display())
    }
}

impl LayoutTransport {
    /// The layout in folder `root` (best absolute: its name is `oci:<root>`, the pseudo-registry
    /// of references to it).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        LayoutTransport {
            name: format!("{LAYOUT_PREFIX}{}", root.display()),
            root,
            ready: AtomicBool::new(false),
        }
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        store::blob_path(&self.root, digest)
    }

    fn error(&self, op: &'static str, e: LayoutError) -> RegistryError {
        let (kind, path) = match &e {
            LayoutError::Io { source, path, .. } => (io_kind(source), path.as_path()),
            LayoutError::Malformed { path, .. } | LayoutError::NotALayout { path } => {
                (ErrorKind::Invalid, path.as_path())
            }
            LayoutError::Version { path, .. } => (ErrorKind::Unsupported, path.as_path()),
        };
        RegistryError::new(kind, op, path.display().to_string())
            .with_message(e.to_string())
            .with_source(e)
    }

    fn io_error(&self, op: &'static str, path: &Path, e: io::Error) -> RegistryError {
        RegistryError::new(io_kind(&e), op, path.display().to_string())
            .with_message(e.to_string())
            .with_source(e)
    }

    fn url_of(&self, what: impl std::fmt::Display) -> String {
        format!("{}@{what}", self.name)
    }

    /// A layout holds one repository, which references name with the empty string.
    fn check_repo(&self, op: &'static str, repo: &str) -> Result<()> {
        if repo.is_empty() {
            return Ok(());
        }
        Err(
            RegistryError::new(ErrorKind::Invalid, op, &self.name).with_message(format!(
                "an OCI layout holds a single repository; got repository {repo:?} \
             (name another folder for another repository)"
            )),
        )
    }

    /// Whether the layout exists (a valid `oci-layout` file).
    async fn exists(&self, op: &'static str) -> Result<bool> {
        if self.ready.load(Ordering::Acquire) {
            return Ok(true);
        }
        let root = self.root.clone();
        let found = blocking(move || store::check_layout_file(&root))
            .await
            .map_err(|e| self.error(op, e))?;
        if found {
            self.ready.store(true, Ordering::Release);
        }
        Ok(found)
    }

    async fn require(&self, op: &'static str) -> Result<()> {
        if self.exists(op).await? {
            return Ok(());
        }
        Err(
            RegistryError::new(ErrorKind::NotFound, op, self.root.display().to_string())
                .with_message("no OCI image layout here (no oci-layout file)"),
        )
    }

    /// Creates the layout if it does not exist yet.
    async fn ensure(&self, op: &'static str) -> Result<()> {
        if self.ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let root = self.root.clone();
        blocking(move || store::initialize(&root))
            .await
            .map_err(|e| self.error(op, e))?;
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    async fn read_index(&self, op: &'static str) -> Result<store::IndexFile> {
        let root = self.root.clone();
        blocking(move || store::IndexFile::read(&root))
            .await
            .map_err(|e| self.error(op, e))
    }

    /// The descriptor a tag names, or `None`.
    async fn find_tag(&self, op: &'static str, tag: &str) -> Result<Option<Descriptor>> {
        check_tag(op, &self.name, tag)?;
        Ok(self.read_index(op).await?.find(tag))
    }

    /// Reads and verifies the manifest blob `digest`.
    async fn read_manifest(
        &self,
        op: &'static str,
        digest: &Digest,
        media_type: Option<&str>,
    ) -> Result<Manifest> {
        let path = self.blob_path(digest);
        let url = self.url_of(digest);
        let meta = tokio::fs::metadata(&path).await.map_err(|e| {
            let err = self.io_error(op, &path, e);
            if err.is_not_found() {
                err.with_message(format!("manifest {digest} is not in the layout"))
            } else {
                err
            }
        })?;
        if meta.len() > MAX_MANIFEST_SIZE as u64 {
            return Err(RegistryError::from_manifest(
                op,
                &url,
                ManifestError::TooLarge {
                    size: meta.len() as usize,
                },
            ));
        }
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|e| self.io_error(op, &path, e))?;
        Manifest::from_bytes_expecting(Bytes::from(bytes), media_type, digest)
            .map_err(|e| RegistryError::from_manifest(op, &url, e))
    }

    /// What a tag or digest reference points at, with the media type the index gives.
    async fn resolve(
        &self,
        op: &'static str,
        reference: &str,
    ) -> Result<Option<(Digest, Option<String>)>> {
        if reference.contains(':') {
            let digest = Digest::parse(reference).map_err(|e| {
                RegistryError::from_digest(op, &self.url_of(reference), e)
                    .with_message(format!("{reference:?} is neither a tag nor a valid digest"))
            })?;
            let path = self.blob_path(&digest);
            return match tokio::fs::try_exists(&path).await {
                Ok(true) => Ok(Some((digest, None))),
                Ok(false) => Ok(None),
                Err(e) => Err(self.io_error(op, &path, e)),
            };
        }
        match self.find_tag(op, reference).await? {
            None => Ok(None),
            Some(d) => {
                let path = self.blob_path(&d.digest);
                match tokio::fs::try_exists(&path).await {
                    Ok(true) => Ok(Some((d.digest, Some(d.media_type)))),
                    Ok(false) => {
                        // A broken layout (another tool deleted the blob): treat the tag as
                        // absent, so that a copy into the layout writes it again.
                        tracing::warn!(layout = %self.root.display(), tag = reference, digest = %d.digest,
                            "index.json names a manifest whose blob is missing");
                        Ok(None)
                    }
                    Err(e) => Err(self.io_error(op, &path, e)),
                }
            }
        }
    }

    /// Writes `bytes` as blob `digest` unless it is there already.
    async fn write_small_blob(
        &self,
        op: &'static str,
        digest: &Digest,
        bytes: Bytes,
    ) -> Result<()> {
        let path = self.blob_path(digest);
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(());
        }
        let root = self.root.clone();
        blocking(move || {
            let dir = path.parent().expect("blob path has a folder");
            std::fs::create_dir_all(dir).map_err(store::io_error("creating", dir))?;
            store::write_atomic(&root, &path, "manifest", &bytes)
        })
        .await
        .map_err(|e| self.error(op, e))
    }
}

/// Which kind of registry failure a file-system error is, for callers deciding to retry.
fn io_kind(e: &io::Error) -> ErrorKind {
    match e.kind() {
        io::ErrorKind::NotFound => ErrorKind::NotFound,
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => ErrorKind::Denied,
        io::ErrorKind::InvalidData => ErrorKind::Invalid,
        // A failing disk is to a layout what a 500 is to a registry.
        _ => ErrorKind::ServerError,
    }
}

fn check_tag(op: &'static str, name: &str, tag: &str) -> Result<()> {
    Reference::validate_tag(tag).map_err(|e| {
        RegistryError::new(ErrorKind::Invalid, op, format!("{name}:{tag}"))
            .with_message(e.to_string())
    })
}

/// Runs blocking file work on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LayoutError> + Send + 'static,
) -> Result<T, LayoutError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(LayoutError::Io {
            what: "file task",
            path: PathBuf::new(),
            source: io::Error::other(e.to_string()),
        })
    })
}

#[async_trait]
impl Transport for LayoutTransport {
    fn name(&self) -> &str {
        &self.name
    }

    async fn ping(&self) -> Result<()> {
        match tokio::fs::metadata(&self.root).await {
            Ok(m) if !m.is_dir() => Err(RegistryError::new(
                ErrorKind::Invalid,
                "open layout",
                self.root.display().to_string(),
            )
            .with_message("not a folder")),
            // A layout that does not exist yet is created by the first write.
            Ok(_) => self.exists("open layout").await.map(|_| ()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io_error("open layout", &self.root, e)),
        }
    }

    async fn manifest_head(&self, repo: &str, reference: &str) -> Result<Option<ManifestHead>> {
        const OP: &str = "HEAD manifest";
        self.check_repo(OP, repo)?;
        if !self.exists(OP).await? {
            return Ok(None);
        }
        let Some((digest, media_type)) = self.resolve(OP, reference).await? else {
            return Ok(None);
        };
        // The media type and size come from the manifest itself (small), which also proves
        // that the blob is the manifest it claims to be.
        let m = self
            .read_manifest(OP, &digest, media_type.as_deref())
            .await?;
        Ok(Some(ManifestHead {
            digest,
            media_type: m.media_type().to_string(),
            size: m.size(),
        }))
    }

    async fn manifest_get(&self, repo: &str, reference: &str) -> Result<Manifest> {
        const OP: &str = "GET manifest";
        self.check_repo(OP, repo)?;
        self.require(OP).await?;
        match self.resolve(OP, reference).await? {
            Some((digest, media_type)) => {
                self.read_manifest(OP, &digest, media_type.as_deref()).await
            }
            None => Err(
                RegistryError::new(ErrorKind::NotFound, OP, self.url_of(reference))
                    .with_message("no such tag or manifest in the layout"),
            ),
        }
    }

    async fn manifest_put(&self, repo: &str, reference: &str, manifest: &Manifest) -> Result<()> {
        const OP: &str = "PUT manifest";
        self.check_repo(OP, repo)?;
        let tag = if reference.contains(':') {
            let d = Digest::parse(reference)
                .map_err(|e| RegistryError::from_digest(OP, &self.url_of(reference), e))?;
            if &d != manifest.digest() {
                return Err(RegistryError::new(
                    ErrorKind::DigestInvalid,
                    OP,
                    self.url_of(reference),
                )
                .with_message(format!("the manifest's digest is {}", manifest.digest())));
            }
            None
        } else {
            check_tag(OP, &self.name, reference)?;
            Some(reference)
        };
        self.ensure(OP).await?;
        self.write_small_blob(OP, manifest.digest(), manifest.bytes().clone())
            .await?;
        // index.json lists what is at the top, as skopeo writes it: a manifest put by tag
        // under its name; one put by digest without a name (the top of an untagged copy, or
        // a child the engine puts before its index); an index, once put, replaces the
        // unnamed entries of its children, which it keeps reachable.
        let children: Vec<Digest> = match manifest.view() {
            ManifestView::Index(i) => i.manifests.iter().map(|d| d.digest.clone()).collect(),
            ManifestView::Image(_) => Vec::new(),
        };
        let root = self.root.clone();
        let (tag, descriptor) = (tag.map(str::to_string), manifest.descriptor());
        blocking(move || {
            store::update_index(&root, |i| {
                i.drop_untagged(&children);
                match &tag {
                    Some(tag) => i.set(tag, &descriptor),
                    None => i.add_untagged(&descriptor),
                }
            })
        })
        .await
        .map_err(|e| self.error(OP, e))
    }

    async fn manifest_delete(&self, repo: &str, reference: &str) -> Result<bool> {
        const OP: &str = "DELETE manifest";
        self.check_repo(OP, repo)?;
        if reference.contains(':') {
            Digest::parse(reference)
                .map_err(|e| RegistryError::from_digest(OP, &self.url_of(reference), e))?;
        } else {
            check_tag(OP, &self.name, reference)?;
        }
        if !self.exists(OP).await? {
            return Ok(false);
        }
        let (root, reference) = (self.root.clone(), reference.to_string());
        blocking(move || {
            let mut removed = false;
            store::update_index(&root, |i| removed = i.remove(&reference))?;
            Ok(removed)
        })
        .await
        .map_err(|e| self.error(OP, e))
    }

    /// A tag is one name in `index.json`: deleting it leaves the image and its other names.
    fn tag_deletion(&self) -> TagDeletion {
        TagDeletion::Alone
    }

    async fn blob_head(&self, repo: &str, digest: &Digest) -> Result<Option<u64>> {
        const OP: &str = "HEAD blob";
        self.check_repo(OP, repo)?;
        let path = self.blob_path(digest);
        match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io_error(OP, &path, e)),
        }
    }

    async fn blob_get(&self, repo: &str, digest: &Digest) -> Result<BlobBody> {
        const OP: &str = "GET blob";
        self.check_repo(OP, repo)?;
        self.require(OP).await?;
        let path = self.blob_path(digest);
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| self.io_error(OP, &path, e))?;
        let size = file
            .metadata()
            .await
            .map_err(|e| self.io_error(OP, &path, e))?
            .len();
        // Unverified here, like a registry's body: the caller wraps it in a VerifyingStream.
        let stream = tokio_util::io::ReaderStream::with_capacity(file, READ_CHUNK);
        Ok(BlobBody {
            stream: Box::pin(stream),
            size: Some(size),
        })
    }

    async fn blob_mount(&self, repo: &str, digest: &Digest, _from: &str) -> Result<MountOutcome> {
        const OP: &str = "mount blob";
        self.check_repo(OP, repo)?;
        Err(
            RegistryError::new(ErrorKind::Unsupported, OP, self.url_of(digest))
                .with_message("an OCI layout has no other repository to mount from"),
        )
    }

    async fn blob_put(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        mut body: ByteStream,
        _session: Option<UploadSession>,
    ) -> Result<()> {
        const OP: &str = "PUT blob";
        self.check_repo(OP, repo)?;
        self.ensure(OP).await?;
        let dest = self.blob_path(digest);
        if let Ok(m) = tokio::fs::metadata(&dest).await
            && m.is_file()
            && m.len() == size
        {
            return Ok(());
        }
        let root = self.root.clone();
        let dir = dest.parent().expect("blob path has a folder").to_path_buf();
        let (temp, file) = blocking(move || {
            std::fs::create_dir_all(&dir).map_err(store::io_error("creating", &dir))?;
            store::TempFile::create(&root, "blob")
        })
        .await
        .map_err(|e| self.error(OP, e))?;
        // From here on, any early return drops `temp`, which removes the partial file.
        let temp_path = temp.path().to_path_buf();
        let write_err = |e: io::Error| self.io_error(OP, &temp_path, e);
        let mut out =
            tokio::io::BufWriter::with_capacity(WRITE_BUFFER, tokio::fs::File::from_std(file));
        let mut hasher = Hasher::new(digest.algorithm());
        let mut seen: u64 = 0;
        let content_error =
            |e: DigestError| RegistryError::from_digest(OP, &self.url_of(digest), e);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| self.body_error(OP, digest, e))?;
            seen += chunk.len() as u64;
            if seen > size {
                return Err(content_error(DigestError::SizeMismatch {
                    digest: digest.clone(),
                    expected: size,
                    actual: seen,
                }));
            }
            hasher.update(&chunk);
            out.write_all(&chunk).await.map_err(write_err)?;
        }
        if seen != size {
            return Err(content_error(DigestError::SizeMismatch {
                digest: digest.clone(),
                expected: size,
                actual: seen,
            }));
        }
        let actual = hasher.finish();
        if &actual != digest {
            return Err(content_error(DigestError::Mismatch {
                expected: digest.clone(),
                actual,
            }));
        }
        out.flush().await.map_err(write_err)?;
        let file = out.into_inner();
        file.sync_all().await.map_err(write_err)?;
        drop(file);
        blocking(move || temp.persist(&dest))
            .await
            .map_err(|e| self.error(OP, e))
    }

    async fn upload_cancel(&self, _repo: &str, _session: UploadSession) {
        // No sessions: a failed blob_put has already removed its temporary file.
    }

    async fn tags(&self, repo: &str) -> Result<Vec<String>> {
        const OP: &str = "list tags";
        self.check_repo(OP, repo)?;
        self.require(OP).await?;
        let names = self.read_index(OP).await?.names();
        // Other tools may name entries with full references (`docker.io/x:1`): not tags.
        Ok(names
            .into_iter()
            .filter(|n| Reference::validate_tag(n).is_ok())
            .collect())
    }

    async fn referrers(&self, repo: &str, _digest: &Digest) -> Result<Option<Vec<Descriptor>>> {
        self.check_repo("list referrers", repo)?;
        // No referrers API in a layout; the engine falls back to `sha256-<hex>` tags.
        Ok(None)
    }
}

impl LayoutTransport {
    /// The error for a blob body stream that failed while being written: the content error
    /// when a verifying stream upstream refused it, else the read error at the source, which
    /// is worth retrying from a fresh stream.
    fn body_error(&self, op: &'static str, digest: &Digest, e: io::Error) -> RegistryError {
        if let Some(d) = VerifyError::digest_error(&e) {
            return RegistryError::from_digest(op, &self.url_of(digest), d.clone());
        }
        RegistryError::new(ErrorKind::Transport, op, self.url_of(digest))
            .with_message(format!("reading the blob to write: {e}"))
            .with_source(e)
    }
}

#[cfg(test)]
mod tests;
