//! Reading an archive: [`ArchiveSource`], a read-only transport over one tar file.
//!
//! On first use the tar's headers are indexed and its metadata read (`index.json`, or for a
//! classic docker archive `manifest.json`, from which a manifest is made per image). After that
//! every call is a lookup, and a blob is a stream from its offset in the file. Names: an
//! `oci-archive:` names images by `org.opencontainers.image.ref.name` (the tag); a
//! `docker-archive:` by `RepoTags` (`name:tag`, compared normalised, so `app:v1` and
//! `docker.io/library/app:v1` are one), or by containerd's `io.containerd.image.name` when it
//! carries an OCI layout. An archive read without a name gives its only image.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::Value;

use super::docker::{self, SavedImage};
use super::tarfile::{Span, TarIndex};
use super::{ArchiveError, MAX_METADATA_SIZE, blocking, transport_name};
use crate::digest::Digest;
use crate::manifest::{Descriptor, MAX_MANIFEST_SIZE, Manifest};
use crate::reference::{ArchiveKind, Reference};
use crate::registry::{
    BlobBody, ByteStream, ErrorKind, ManifestHead, MountOutcome, RegistryError, Result,
    TagDeletion, Transport, UploadSession,
};

/// containerd's (and docker 25's) annotation with an index entry's full image name.
pub const IMAGE_NAME: &str = "io.containerd.image.name";
/// The OCI annotation with an index entry's tag.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Chunk size when streaming a blob out of the archive.
const READ_CHUNK: usize = 64 * 1024;

/// One image an archive names at its top.
#[derive(Debug, Clone)]
struct Top {
    /// Its tag (`oci-archive:`) or normalised `registry/repository:tag` (`docker-archive:`).
    name: Option<String>,
    descriptor: Descriptor,
}

/// What one archive holds, indexed.
#[derive(Debug)]
struct Contents {
    tar: TarIndex,
    blobs: HashMap<Digest, Span>,
    /// Manifests made for images that have none (classic docker archives).
    made: HashMap<Digest, Manifest>,
    tops: Vec<Top>,
}

/// A tar file read as a repository of images (never written: see `ArchiveTarget`).
pub struct ArchiveSource {
    kind: ArchiveKind,
    path: PathBuf,
    name: String,
    contents: tokio::sync::OnceCell<Arc<Contents>>,
}

impl std::fmt::Debug for ArchiveSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ArchiveSource({})", self.name)
    }
}

fn normalised_name(name: &str) -> Option<String> {
    let r = Reference::parse(name).ok()?.with_default_tag();
    Some(format!("{}:{}", r.full_name(), r.tag()?))
}

fn load(kind: ArchiveKind, path: &Path) -> Result<Contents, ArchiveError> {
    let tar = TarIndex::open(path)?;
    let has_layout = tar.contains("oci-layout");
    let has_saved = tar.contains(docker::MANIFEST_FILE);
    let mut blobs = HashMap::new();
    for name in tar.names() {
        let Some(rest) = name.strip_prefix("blobs/") else {
            continue;
        };
        if let Some((alg, hex)) = rest.split_once('/')
            && let Ok(d) = Digest::parse(&format!("{alg}:{hex}"))
        {
            blobs.insert(d, tar.get(name).expect("listed"));
        }
    }
    let mut contents = Contents {
        tar,
        blobs,
        made: HashMap::new(),
        tops: Vec::new(),
    };
    match kind {
        ArchiveKind::Oci if !has_layout => {
            let hint = if has_saved {
                " (it has a manifest.json: it is a docker archive; read it as docker-archive:PATH)"
            } else {
                ""
            };
            return Err(ArchiveError::not_an_image(
                path,
                &format!("it has no oci-layout file, so it is no OCI archive{hint}"),
            ));
        }
        ArchiveKind::Oci => contents.tops = read_index(&contents.tar, false)?,
        ArchiveKind::Docker if !has_saved => {
            let hint = if has_layout {
                " (it has an oci-layout file: it is an OCI archive; read it as oci-archive:PATH)"
            } else {
                ""
            };
            return Err(ArchiveError::not_an_image(
                path,
                &format!("it has no manifest.json, so it is no docker archive{hint}"),
            ));
        }
        ArchiveKind::Docker => {
            let saved = docker::read_saved_images(&contents.tar)?;
            if has_layout && contents.tar.contains("index.json") {
                // Docker 25+ and crossdock write the manifests too: read them as they are.
                contents.tops = read_index(&contents.tar, true)?;
                if contents.tops.len() == 1 && contents.tops[0].name.is_none() {
                    let d = contents.tops.remove(0).descriptor;
                    contents.tops = named_tops(&saved[0], &d);
                }
            } else {
                for image in &saved {
                    let made = docker::synthesize(&contents.tar, image)?;
                    contents.blobs.extend(made.blobs.iter().cloned());
                    contents
                        .tops
                        .extend(named_tops(image, &made.manifest.descriptor()));
                    let d = made.manifest.digest().clone();
                    contents.made.insert(d, made.manifest);
                }
            }
        }
    }
    Ok(contents)
}

/// One top entry per `RepoTags` name of `image` (one unnamed entry when it has none).
fn named_tops(image: &SavedImage, descriptor: &Descriptor) -> Vec<Top> {
    let names: Vec<String> = image
        .repo_tags
        .iter()
        .flatten()
        .filter_map(|n| normalised_name(n))
        .collect();
    if names.is_empty() {
        return vec![Top {
            name: None,
            descriptor: descriptor.clone(),
        }];
    }
    names
        .into_iter()
        .map(|name| Top {
            name: Some(name),
            descriptor: descriptor.clone(),
        })
        .collect()
}

/// The top entries of the archive's `index.json`, named by tag or (`full_names`) by image name.
fn read_index(tar: &TarIndex, full_names: bool) -> Result<Vec<Top>, ArchiveError> {
    let path = tar.path();
    let bad = |reason: String| ArchiveError::not_an_image(path, &reason);
    let layout: Value = serde_json::from_slice(&tar.read("oci-layout", 4096)?)
        .map_err(|e| bad(format!("oci-layout is malformed: {e}")))?;
    let version = layout["imageLayoutVersion"].as_str().unwrap_or("");
    if !version.starts_with("1.") {
        return Err(bad(format!(
            "image layout version {version:?} is not supported (only 1.x)"
        )));
    }
    let index: Value = serde_json::from_slice(&tar.read("index.json", MAX_METADATA_SIZE)?)
        .map_err(|e| bad(format!("index.json is malformed: {e}")))?;
    let entries = index["manifests"]
        .as_array()
        .ok_or_else(|| bad("index.json has no \"manifests\" array".into()))?;
    let mut tops = Vec::new();
    for entry in entries {
        let descriptor: Descriptor = serde_json::from_value(entry.clone())
            .map_err(|e| bad(format!("an index.json entry is no descriptor: {e}")))?;
        let name = if full_names {
            descriptor
                .annotations
                .get(IMAGE_NAME)
                .and_then(|n| normalised_name(n))
        } else {
            descriptor.annotations.get(REF_NAME).cloned()
        };
        tops.push(Top { name, descriptor });
    }
    if tops.is_empty() {
        return Err(bad("its index.json lists no image".into()));
    }
    Ok(tops)
}

impl Contents {
    fn available(&self) -> String {
        let names: Vec<&str> = self.tops.iter().filter_map(|t| t.name.as_deref()).collect();
        let unnamed = self.tops.iter().filter(|t| t.name.is_none()).count();
        let mut out = names.join(", ");
        if unnamed > 0 {
            if !out.is_empty() {
                out.push_str(", and ");
            }
            out.push_str(&format!("{unnamed} unnamed image(s)"));
        }
        out
    }

    /// The image `repo` and `reference` (a tag or digest) name.
    fn resolve(
        &self,
        kind: ArchiveKind,
        repo: &str,
        reference: &str,
    ) -> Result<Option<(Digest, Option<String>)>, ArchiveError> {
        if reference.contains(':') {
            let Ok(d) = Digest::parse(reference) else {
                return Ok(None);
            };
            let known = self.made.contains_key(&d) || self.blobs.contains_key(&d);
            return Ok(known.then_some((d, None)));
        }
        let unnamed = kind == ArchiveKind::Docker && repo.is_empty();
        let wanted = match kind {
            ArchiveKind::Oci => reference.to_string(),
            ArchiveKind::Docker => format!("{repo}:{reference}"),
        };
        let found = self
            .tops
            .iter()
            .rev()
            .find(|t| !unnamed && t.name.as_deref() == Some(&wanted));
        let only = {
            let mut digests: Vec<&Digest> =
                self.tops.iter().map(|t| &t.descriptor.digest).collect();
            digests.dedup();
            (digests.len() == 1).then(|| &self.tops[0])
        };
        // Without a name (the default `latest` included) an archive gives its only image.
        let top = match (found, only) {
            (Some(t), _) => t,
            (None, Some(t)) if unnamed || reference == "latest" => t,
            (None, _) if unnamed => {
                return Err(ArchiveError::NoSuchImage {
                    path: self.tar.path().to_path_buf(),
                    wanted: "without a name: it holds several; name one, \
                             docker-archive:PATH:NAME:TAG"
                        .into(),
                    available: self.available(),
                });
            }
            (None, _) => return Ok(None),
        };
        Ok(Some((
            top.descriptor.digest.clone(),
            Some(top.descriptor.media_type.clone()),
        )))
    }

    fn manifest(&self, digest: &Digest, media_type: Option<&str>) -> Result<Manifest, String> {
        if let Some(m) = self.made.get(digest) {
            return Ok(m.clone());
        }
        let name = docker::blob_name(digest);
        let bytes = self
            .tar
            .read(&name, MAX_MANIFEST_SIZE as u64)
            .map_err(|e| e.to_string())?;
        Manifest::from_bytes_expecting(Bytes::from(bytes), media_type, digest)
            .map_err(|e| format!("{name}: {e}"))
    }
}

impl ArchiveSource {
    /// The archive at `path`; nothing is read until first used.
    pub fn new(kind: ArchiveKind, path: &Path) -> Self {
        ArchiveSource {
            kind,
            path: path.to_path_buf(),
            name: transport_name(kind, path),
            contents: tokio::sync::OnceCell::new(),
        }
    }

    async fn contents(&self, op: &'static str) -> Result<&Arc<Contents>> {
        self.contents
            .get_or_try_init(|| async {
                let (kind, path) = (self.kind, self.path.clone());
                blocking(&self.path, move || load(kind, &path).map(Arc::new)).await
            })
            .await
            .map_err(|e| e.into_registry(op, &self.name))
    }

    fn url_of(&self, what: impl std::fmt::Display) -> String {
        format!("{}@{what}", self.name)
    }

    fn check_repo(&self, op: &'static str, repo: &str) -> Result<()> {
        if self.kind == ArchiveKind::Docker || repo.is_empty() {
            return Ok(());
        }
        Err(
            RegistryError::new(ErrorKind::Invalid, op, &self.name).with_message(format!(
                "an OCI archive holds a single repository; got {repo:?}"
            )),
        )
    }

    async fn find(
        &self,
        op: &'static str,
        repo: &str,
        reference: &str,
    ) -> Result<Option<Manifest>> {
        self.check_repo(op, repo)?;
        let c = self.contents(op).await?;
        let found = c
            .resolve(self.kind, repo, reference)
            .map_err(|e| e.into_registry(op, &self.name))?;
        let Some((digest, media_type)) = found else {
            return Ok(None);
        };
        let c = c.clone();
        let m = tokio::task::spawn_blocking(move || c.manifest(&digest, media_type.as_deref()))
            .await
            .map_err(|e| {
                RegistryError::new(ErrorKind::ServerError, op, &self.name)
                    .with_message(e.to_string())
            })?;
        m.map(Some).map_err(|msg| {
            RegistryError::new(ErrorKind::Invalid, op, self.url_of(reference)).with_message(msg)
        })
    }

    fn read_only(&self, op: &'static str) -> RegistryError {
        RegistryError::new(ErrorKind::Unsupported, op, &self.name).with_message(format!(
            "archives are written only as targets of `crossdock import` \
             (e.g. crossdock import SOURCE {}PATH)",
            self.kind.prefix()
        ))
    }
}

#[async_trait]
impl Transport for ArchiveSource {
    fn name(&self) -> &str {
        &self.name
    }

    /// An archive is read, or written whole: it deletes nothing.
    fn tag_deletion(&self) -> TagDeletion {
        TagDeletion::Never
    }

    async fn ping(&self) -> Result<()> {
        self.contents("open archive").await.map(|_| ())
    }

    async fn manifest_head(&self, repo: &str, reference: &str) -> Result<Option<ManifestHead>> {
        Ok(self
            .find("HEAD manifest", repo, reference)
            .await?
            .map(|m| ManifestHead {
                digest: m.digest().clone(),
                media_type: m.media_type().to_string(),
                size: m.size(),
            }))
    }

    async fn manifest_get(&self, repo: &str, reference: &str) -> Result<Manifest> {
        const OP: &str = "GET manifest";
        match self.find(OP, repo, reference).await? {
            Some(m) => Ok(m),
            None => {
                let c = self.contents(OP).await?;
                Err(ArchiveError::NoSuchImage {
                    path: self.path.clone(),
                    wanted: match (self.kind, repo) {
                        (ArchiveKind::Docker, r) if !r.is_empty() => format!("{r}:{reference}"),
                        _ => reference.to_string(),
                    },
                    available: c.available(),
                }
                .into_registry(OP, &self.name))
            }
        }
    }

    async fn manifest_put(&self, _repo: &str, _reference: &str, _m: &Manifest) -> Result<()> {
        Err(self.read_only("PUT manifest"))
    }

    async fn blob_head(&self, _repo: &str, digest: &Digest) -> Result<Option<u64>> {
        let c = self.contents("HEAD blob").await?;
        Ok(c.blobs.get(digest).map(|s| s.size))
    }

    async fn blob_get(&self, _repo: &str, digest: &Digest) -> Result<BlobBody> {
        const OP: &str = "GET blob";
        let c = self.contents(OP).await?;
        let span = *c.blobs.get(digest).ok_or_else(|| {
            RegistryError::new(ErrorKind::NotFound, OP, self.url_of(digest))
                .with_message("the archive does not hold this blob")
        })?;
        let stream = c
            .tar
            .stream(span, READ_CHUNK)
            .await
            .map_err(|e| ArchiveError::open(&self.path, e).into_registry(OP, &self.name))?;
        // Unverified here, like a registry's body: the caller wraps it in a VerifyingStream.
        Ok(BlobBody {
            stream: Box::pin(stream),
            size: Some(span.size),
        })
    }

    async fn blob_mount(&self, _repo: &str, _d: &Digest, _from: &str) -> Result<MountOutcome> {
        Err(self.read_only("mount blob"))
    }

    async fn blob_put(
        &self,
        _repo: &str,
        _digest: &Digest,
        _size: u64,
        _body: ByteStream,
        _session: Option<UploadSession>,
    ) -> Result<()> {
        Err(self.read_only("PUT blob"))
    }

    async fn upload_cancel(&self, _repo: &str, _session: UploadSession) {}

    async fn tags(&self, repo: &str) -> Result<Vec<String>> {
        self.check_repo("list tags", repo)?;
        let c = self.contents("list tags").await?;
        let prefix = format!("{repo}:");
        let mut tags: Vec<String> = c
            .tops
            .iter()
            .filter_map(|t| t.name.as_deref())
            .filter_map(|n| match self.kind {
                ArchiveKind::Oci => Some(n),
                ArchiveKind::Docker if repo.is_empty() => n.rsplit_once(':').map(|(_, t)| t),
                ArchiveKind::Docker => n.strip_prefix(&prefix),
            })
            .filter(|t| Reference::validate_tag(t).is_ok())
            .map(str::to_string)
            .collect();
        tags.dedup();
        Ok(tags)
    }

    async fn referrers(&self, _repo: &str, _digest: &Digest) -> Result<Option<Vec<Descriptor>>> {
        Ok(None)
    }

    fn made_manifest(&self, digest: &Digest) -> bool {
        self.contents
            .get()
            .is_some_and(|c| c.made.contains_key(digest))
    }
}
