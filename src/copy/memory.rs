//! An in-process registry for the engine's unit tests: the [`Transport`] contract kept in a
//! few maps, every call logged, faults injectable, so that each phase of the copy is tested in
//! milliseconds with exact request counts. End-to-end tests run against real registries
//! (tests/support); this stands in only where the engine's own logic is under test.
//!
//! What it keeps of a real registry: blobs are committed only when the whole body arrived and
//! matched its digest (a failing [`crate::digest::VerifyingStream`] commits nothing); a mount
//! succeeds (201) only when the source repository holds the blob, else it opens an upload
//! session (202), as distribution does; a manifest PUT is refused (`ManifestBlobUnknown`) when a
//! blob or child it names is missing from the repository.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::TryStreamExt;

use crate::digest::Digest;
use crate::manifest::{Descriptor, Manifest, ManifestView};
use crate::registry::{
    BlobBody, ByteStream, ErrorKind, ManifestHead, MountOutcome, RegistryError, Result, Transport,
    UploadSession,
};

/// One call the engine made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Call {
    /// `manifest_head`, `blob_put`, …
    pub op: &'static str,
    /// The repository named.
    pub repo: String,
}

#[derive(Default)]
struct State {
    blobs: HashMap<(String, Digest), Bytes>,
    manifests: HashMap<(String, Digest), Manifest>,
    tags: HashMap<(String, String), Digest>,
    calls: Vec<Call>,
    /// Transient failures to serve, per operation, before answering normally.
    faults: HashMap<&'static str, Vec<RegistryError>>,
    /// Blobs served with their bytes altered.
    corrupt: HashSet<Digest>,
    next_session: u64,
}

/// An in-memory registry named `name`.
pub(crate) struct MemoryRegistry {
    name: String,
    state: Mutex<State>,
}

impl MemoryRegistry {
    pub(crate) fn new(name: &str) -> Self {
        MemoryRegistry {
            name: name.to_string(),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("memory registry lock")
    }

    fn log(&self, op: &'static str, repo: &str) -> Option<RegistryError> {
        let mut s = self.state();
        s.calls.push(Call {
            op,
            repo: repo.to_string(),
        });
        s.faults.get_mut(op).and_then(|f| f.pop())
    }

    /// Stores a blob in `repo`, returning its descriptor.
    pub(crate) fn put_blob(&self, repo: &str, media_type: &str, bytes: &[u8]) -> Descriptor {
        let digest = Digest::sha256_of(bytes);
        self.state().blobs.insert(
            (repo.to_string(), digest.clone()),
            Bytes::copy_from_slice(bytes),
        );
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size: bytes.len() as u64,
            platform: None,
            urls: Vec::new(),
            annotations: Default::default(),
            artifact_type: None,
        }
    }

    /// Stores a manifest in `repo` under its digest and `tag`, if any.
    pub(crate) fn put_manifest(&self, repo: &str, tag: Option<&str>, m: &Manifest) {
        let mut s = self.state();
        s.manifests
            .insert((repo.to_string(), m.digest().clone()), m.clone());
        if let Some(tag) = tag {
            s.tags
                .insert((repo.to_string(), tag.to_string()), m.digest().clone());
        }
    }

    /// Every call so far.
    pub(crate) fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// How many calls of `op` were made.
    pub(crate) fn count(&self, op: &str) -> usize {
        self.state().calls.iter().filter(|c| c.op == op).count()
    }

    /// Forgets the calls made so far.
    pub(crate) fn clear_calls(&self) {
        self.state().calls.clear();
    }

    /// The next calls of `op` fail with `errors` (the last one first), then answer normally.
    pub(crate) fn fail(&self, op: &'static str, errors: Vec<RegistryError>) {
        self.state().faults.insert(op, errors);
    }

    /// Serves `digest` with altered bytes (as a tampered storage would).
    pub(crate) fn corrupt(&self, digest: &Digest) {
        self.state().corrupt.insert(digest.clone());
    }

    /// Whether `repo` holds `digest`.
    pub(crate) fn has_blob(&self, repo: &str, digest: &Digest) -> bool {
        self.state()
            .blobs
            .contains_key(&(repo.to_string(), digest.clone()))
    }

    /// What `tag` of `repo` points at.
    pub(crate) fn tag(&self, repo: &str, tag: &str) -> Option<Digest> {
        self.state()
            .tags
            .get(&(repo.to_string(), tag.to_string()))
            .cloned()
    }

    fn not_found(&self, op: &'static str, repo: &str, what: &str) -> RegistryError {
        RegistryError::new(
            ErrorKind::NotFound,
            op,
            format!("{}/{repo}/{what}", self.name),
        )
    }

    fn resolve(&self, repo: &str, reference: &str) -> Option<Manifest> {
        let s = self.state();
        let digest = match Digest::parse(reference) {
            Ok(d) => d,
            Err(_) => s
                .tags
                .get(&(repo.to_string(), reference.to_string()))?
                .clone(),
        };
        s.manifests.get(&(repo.to_string(), digest)).cloned()
    }
}

#[async_trait]
impl Transport for MemoryRegistry {
    fn name(&self) -> &str {
        &self.name
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    async fn manifest_head(&self, repo: &str, reference: &str) -> Result<Option<ManifestHead>> {
        if let Some(e) = self.log("manifest_head", repo) {
            return Err(e);
        }
        Ok(self.resolve(repo, reference).map(|m| ManifestHead {
            digest: m.digest().clone(),
            media_type: m.media_type().to_string(),
            size: m.size(),
        }))
    }

    async fn manifest_get(&self, repo: &str, reference: &str) -> Result<Manifest> {
        if let Some(e) = self.log("manifest_get", repo) {
            return Err(e);
        }
        self.resolve(repo, reference)
            .ok_or_else(|| self.not_found("GET manifest", repo, reference))
    }

    async fn manifest_put(&self, repo: &str, reference: &str, m: &Manifest) -> Result<()> {
        if let Some(e) = self.log("manifest_put", repo) {
            return Err(e);
        }
        let named: Vec<Digest> = match m.view() {
            ManifestView::Index(i) => i.manifests.iter().map(|d| d.digest.clone()).collect(),
            ManifestView::Image(i) => std::iter::once(&i.config)
                .chain(&i.layers)
                .map(|d| d.digest.clone())
                .collect(),
        };
        let mut s = self.state();
        let key = |d: &Digest| (repo.to_string(), d.clone());
        if let Some(missing) = named
            .iter()
            .find(|d| !s.blobs.contains_key(&key(d)) && !s.manifests.contains_key(&key(d)))
        {
            return Err(RegistryError::new(
                ErrorKind::ManifestBlobUnknown,
                "PUT manifest",
                format!("{}/{repo}", self.name),
            )
            .with_message(format!("{missing} is missing")));
        }
        s.manifests.insert(key(m.digest()), m.clone());
        if Digest::parse(reference).is_err() {
            s.tags.insert(
                (repo.to_string(), reference.to_string()),
                m.digest().clone(),
            );
        }
        Ok(())
    }

    async fn blob_head(&self, repo: &str, digest: &Digest) -> Result<Option<u64>> {
        if let Some(e) = self.log("blob_head", repo) {
            return Err(e);
        }
        let s = self.state();
        Ok(s.blobs
            .get(&(repo.to_string(), digest.clone()))
            .map(|b| b.len() as u64))
    }

    async fn blob_get(&self, repo: &str, digest: &Digest) -> Result<BlobBody> {
        if let Some(e) = self.log("blob_get", repo) {
            return Err(e);
        }
        let s = self.state();
        let mut bytes = s
            .blobs
            .get(&(repo.to_string(), digest.clone()))
            .cloned()
            .ok_or_else(|| self.not_found("GET blob", repo, &digest.to_string()))?;
        if s.corrupt.contains(digest) {
            let mut v = bytes.to_vec();
            v[0] ^= 0xff;
            bytes = v.into();
        }
        let size = Some(bytes.len() as u64);
        // Two chunks, so that a consumer sees a stream, not one buffer.
        let mid = bytes.len() / 2;
        let chunks = vec![Ok(bytes.slice(..mid)), Ok(bytes.slice(mid..))];
        Ok(BlobBody {
            stream: Box::pin(futures_util::stream::iter(chunks)),
            size,
        })
    }

    async fn blob_mount(&self, repo: &str, digest: &Digest, from: &str) -> Result<MountOutcome> {
        if let Some(e) = self.log("blob_mount", repo) {
            return Err(e);
        }
        let mut s = self.state();
        if let Some(b) = s.blobs.get(&(from.to_string(), digest.clone())).cloned() {
            s.blobs.insert((repo.to_string(), digest.clone()), b);
            return Ok(MountOutcome::Mounted);
        }
        s.next_session += 1;
        Ok(MountOutcome::Upload(UploadSession {
            location: format!("session-{}", s.next_session),
        }))
    }

    async fn blob_put(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        body: ByteStream,
        _session: Option<UploadSession>,
    ) -> Result<()> {
        let fault = self.log("blob_put", repo);
        // A real upload takes a while: let other copies run meanwhile (and meet this one).
        tokio::task::yield_now().await;
        let url = format!("{}/{repo}/blobs/{digest}", self.name);
        // The body is read whole first, as a registry would, so that a fault still drains it.
        let chunks: Vec<Bytes> = body.try_collect().await.map_err(|e| {
            RegistryError::new(ErrorKind::DigestInvalid, "PUT blob", url.clone())
                .with_message(e.to_string())
        })?;
        if let Some(e) = fault {
            return Err(e);
        }
        let bytes: Bytes = chunks.concat().into();
        if bytes.len() as u64 != size || Digest::sha256_of(&bytes) != *digest {
            return Err(RegistryError::new(
                ErrorKind::DigestInvalid,
                "PUT blob",
                url,
            ));
        }
        self.state()
            .blobs
            .insert((repo.to_string(), digest.clone()), bytes);
        Ok(())
    }

    async fn upload_cancel(&self, repo: &str, _session: UploadSession) {
        let _ = self.log("upload_cancel", repo);
    }

    async fn tags(&self, repo: &str) -> Result<Vec<String>> {
        if let Some(e) = self.log("tags", repo) {
            return Err(e);
        }
        let s = self.state();
        let mut tags: Vec<String> = s
            .tags
            .keys()
            .filter(|(r, _)| r == repo)
            .map(|(_, t)| t.clone())
            .collect();
        tags.sort();
        Ok(tags)
    }

    async fn referrers(&self, repo: &str, _digest: &Digest) -> Result<Option<Vec<Descriptor>>> {
        let _ = self.log("referrers", repo);
        Ok(None)
    }
}
