//! Writing an archive: [`ArchiveTarget`], a transport that stages a copy as an OCI layout and
//! writes the tar when finished.
//!
//! The staging folder (`.crossdock-<file>-<random>.d`, next to the destination so that the
//! final rename stays on one file system) is an ordinary [`LayoutTransport`]: every blob and
//! manifest is verified and written there exactly as into an `oci:` folder, and the engine's
//! checks (what is there already) read it back. [`Transport::finish`] then writes the tar to a
//! temporary file, syncs it and puts it in place: renamed over the destination with
//! `--force`, else hard-linked, which fails if a file appeared there meanwhile (the check and
//! the write are one atomic step). The staging folder and any temporary file are removed
//! whatever happens. For a `docker-archive:` the tar also gets `manifest.json`, naming the one
//! image's config and layers by their blob files and its `RepoTags`, and the `index.json`
//! entries get containerd's image name, as docker 25 writes them.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;

use super::docker;
use super::source::{IMAGE_NAME, REF_NAME};
use super::{ArchiveError, blocking, transport_name};
use crate::digest::Digest;
use crate::manifest::{Descriptor, Manifest, ManifestView};
use crate::reference::{ArchiveKind, familiar_name};
use crate::registry::layout::LayoutTransport;
use crate::registry::layout::store::{self, TempFile};
use crate::registry::{
    BlobBody, ByteStream, ManifestHead, MountOutcome, Result, TagDeletion, Transport, UploadSession,
};

/// A folder removed (with its content) when dropped.
#[derive(Debug)]
struct StagingDir(PathBuf);

impl Drop for StagingDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// An archive being written. Nothing appears at its path before [`Transport::finish`].
pub struct ArchiveTarget {
    kind: ArchiveKind,
    dest: PathBuf,
    name: String,
    replace: bool,
    staging: StagingDir,
    layout: LayoutTransport,
    /// `docker-archive:`: the image name each tag was put under (the repository).
    names: Mutex<BTreeMap<String, String>>,
    finished: AtomicBool,
}

impl std::fmt::Debug for ArchiveTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ArchiveTarget({})", self.name)
    }
}

impl ArchiveTarget {
    /// A new archive at `dest`, refused if something is there unless `replace`.
    pub fn create(kind: ArchiveKind, dest: &Path, replace: bool) -> Result<Self, ArchiveError> {
        match fs::symlink_metadata(dest) {
            Ok(m) if m.is_dir() => {
                return Err(ArchiveError::unfit(
                    dest,
                    "it is a folder; name a file (an OCI layout folder is written as oci:PATH)"
                        .into(),
                ));
            }
            Ok(_) if !replace => {
                return Err(ArchiveError::Exists {
                    path: dest.to_path_buf(),
                });
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ArchiveError::open(dest, e)),
        }
        let parent = dest.parent().unwrap_or(Path::new("/"));
        fs::create_dir_all(parent).map_err(ArchiveError::write(dest, "creating its folder"))?;
        let file_name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let staging = parent.join(format!(
            "{}{file_name}-{:016x}.d",
            store::TEMP_PREFIX,
            rand::random_range(0..u64::MAX)
        ));
        Ok(ArchiveTarget {
            kind,
            dest: dest.to_path_buf(),
            name: transport_name(kind, dest),
            replace,
            layout: LayoutTransport::new(&staging),
            staging: StagingDir(staging),
            names: Mutex::new(BTreeMap::new()),
            finished: AtomicBool::new(false),
        })
    }

    /// Checks, as it is put, that a docker archive gets one platform.
    fn check_fits(&self, manifest: &Manifest) -> Result<(), ArchiveError> {
        if self.kind != ArchiveKind::Docker {
            return Ok(());
        }
        let ManifestView::Index(index) = manifest.view() else {
            return Ok(());
        };
        let platforms = runnable(&index.manifests);
        if platforms.len() == 1 {
            return Ok(());
        }
        let list: Vec<String> = platforms
            .iter()
            .map(|d| d.platform.as_ref().map_or("?".into(), |p| p.to_string()))
            .collect();
        Err(ArchiveError::unfit(
            &self.dest,
            format!(
                "a docker archive holds one platform and the source has {}: {}; \
                 choose one with --platform (e.g. --platform {})",
                list.len(),
                list.join(", "),
                list.first().map_or("linux/amd64", String::as_str)
            ),
        ))
    }
}

/// The children of an index that are images to run (not attestations, `unknown/unknown`).
fn runnable(children: &[Descriptor]) -> Vec<&Descriptor> {
    children
        .iter()
        .filter(|d| d.platform.as_ref().is_none_or(|p| p.os != "unknown"))
        .collect()
}

/// A tag the engine gives a signature or attestation (`sha256-<hex>[.sig]`), not the image.
fn is_referrer_tag(tag: &str) -> bool {
    tag.strip_prefix("sha256-")
        .is_some_and(|rest| rest.len() >= 64 && rest[..64].bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The files of the archive: (name in the tar, where its bytes are).
enum Content {
    File(PathBuf),
    Bytes(Vec<u8>),
}

fn staged_files(root: &Path) -> Result<Vec<(String, Content)>, ArchiveError> {
    let mut out = Vec::new();
    let blobs = root.join(store::BLOBS_DIR);
    let read = |dir: &Path| -> Result<Vec<fs::DirEntry>, ArchiveError> {
        let mut v: Vec<fs::DirEntry> = fs::read_dir(dir)
            .map_err(|e| ArchiveError::open(dir, e))?
            .collect::<io::Result<_>>()
            .map_err(|e| ArchiveError::open(dir, e))?;
        v.sort_by_key(|e| e.file_name());
        Ok(v)
    };
    for alg in read(&blobs)? {
        for blob in read(&alg.path())? {
            let name = format!(
                "{}/{}/{}",
                store::BLOBS_DIR,
                alg.file_name().to_string_lossy(),
                blob.file_name().to_string_lossy()
            );
            out.push((name, Content::File(blob.path())));
        }
    }
    Ok(out)
}

/// `manifest.json` and the `index.json` of a docker archive, from the staged layout.
fn docker_metadata(
    dest: &Path,
    root: &Path,
    names: &BTreeMap<String, String>,
) -> Result<(Vec<u8>, Vec<u8>), ArchiveError> {
    let index =
        store::IndexFile::read(root).map_err(|e| ArchiveError::unfit(dest, e.to_string()))?;
    let tags: Vec<String> = index
        .names()
        .into_iter()
        .filter(|t| !is_referrer_tag(t))
        .collect();
    let top = match tags.first() {
        Some(t) => index.find(t),
        None => index.untagged().into_iter().next(),
    }
    .ok_or_else(|| ArchiveError::unfit(dest, "no image was copied into it".into()))?;
    if let Some(other) = tags
        .iter()
        .find(|t| index.find(t).map(|d| d.digest) != Some(top.digest.clone()))
    {
        return Err(ArchiveError::unfit(
            dest,
            format!("a docker archive holds one image; tag {other} names another"),
        ));
    }
    let read_manifest = |d: &Descriptor| -> Result<Manifest, ArchiveError> {
        let p = store::blob_path(root, &d.digest);
        let bytes = fs::read(&p).map_err(|e| ArchiveError::open(&p, e))?;
        Manifest::from_bytes_expecting(bytes.into(), Some(&d.media_type), &d.digest)
            .map_err(|e| ArchiveError::unfit(dest, e.to_string()))
    };
    let mut image = read_manifest(&top)?;
    if let ManifestView::Index(i) = image.view() {
        let child = match runnable(&i.manifests).as_slice() {
            [one] => (*one).clone(),
            _ => {
                return Err(ArchiveError::unfit(
                    dest,
                    "a docker archive holds one platform; choose one with --platform".into(),
                ));
            }
        };
        image = read_manifest(&child)?;
    }
    let ManifestView::Image(image) = image.view() else {
        return Err(ArchiveError::unfit(dest, "nested indexes".into()));
    };
    for d in std::iter::once(&image.config).chain(&image.layers) {
        if !store::blob_path(root, &d.digest).exists() {
            return Err(ArchiveError::unfit(
                dest,
                format!(
                    "blob {} ({}) was not copied: a docker archive needs every layer \
                     (for a foreign layer pass --include-foreign)",
                    d.digest, d.media_type
                ),
            ));
        }
    }
    let mut repo_tags = Vec::new();
    let mut entries = Vec::new();
    for tag in &tags {
        let mut entry = serde_json::to_value(&top).expect("descriptor serializes");
        let mut annotations = serde_json::Map::new();
        if let Some(name) = names.get(tag).filter(|n| !n.is_empty()) {
            repo_tags.push(format!("{}:{tag}", familiar_name(name)));
            annotations.insert(IMAGE_NAME.into(), format!("{name}:{tag}").into());
        }
        annotations.insert(REF_NAME.into(), tag.clone().into());
        entry["annotations"] = annotations.into();
        entries.push(entry);
    }
    if entries.is_empty() {
        entries.push(serde_json::to_value(&top).expect("descriptor serializes"));
    }
    let index_json = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": crate::manifest::media_type::OCI_INDEX,
        "manifests": entries,
    });
    Ok((
        docker::manifest_json(image, &repo_tags),
        serde_json::to_vec(&index_json).expect("JSON serializes"),
    ))
}

/// Writes the staged layout `root` as the tar `dest` (see the module documentation).
fn write_archive(
    kind: ArchiveKind,
    dest: &Path,
    root: &Path,
    replace: bool,
    names: &BTreeMap<String, String>,
) -> Result<(), ArchiveError> {
    if !root.join(store::LAYOUT_FILE).exists() {
        // Nothing was copied (a dry run): no archive.
        return Ok(());
    }
    let layout_file =
        fs::read(root.join(store::LAYOUT_FILE)).map_err(|e| ArchiveError::open(root, e))?;
    let mut files = vec![(store::LAYOUT_FILE.to_string(), Content::Bytes(layout_file))];
    match kind {
        ArchiveKind::Oci => files.push((
            store::INDEX_FILE.into(),
            Content::File(root.join(store::INDEX_FILE)),
        )),
        ArchiveKind::Docker => {
            let (saved, index) = docker_metadata(dest, root, names)?;
            files.push((docker::MANIFEST_FILE.into(), Content::Bytes(saved)));
            files.push((store::INDEX_FILE.into(), Content::Bytes(index)));
        }
    }
    files.extend(staged_files(root)?);
    let parent = dest.parent().unwrap_or(Path::new("/"));
    let (temp, file) = TempFile::create(parent, "archive")
        .map_err(|e| ArchiveError::unfit(dest, e.to_string()))?;
    let werr = |what| ArchiveError::write(dest, what);
    let mut tar = tar::Builder::new(BufWriter::with_capacity(256 * 1024, file));
    let mut dirs: Vec<String> = Vec::new();
    for (name, content) in &files {
        // Folders first, as tar readers that extract expect.
        let mut dir = String::new();
        for part in name
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map_or(&[][..], |(_, d)| d)
        {
            dir.push_str(part);
            dir.push('/');
            if !dirs.contains(&dir) {
                let mut h = header(tar::EntryType::Directory, 0o755, 0);
                tar.append_data(&mut h, &dir, io::empty())
                    .map_err(werr("adding a folder"))?;
                dirs.push(dir.clone());
            }
        }
        match content {
            Content::Bytes(b) => {
                let mut h = header(tar::EntryType::Regular, 0o644, b.len() as u64);
                tar.append_data(&mut h, name, b.as_slice())
            }
            Content::File(p) => {
                let f = File::open(p).map_err(|e| ArchiveError::open(p, e))?;
                let len = f.metadata().map_err(|e| ArchiveError::open(p, e))?.len();
                let mut h = header(tar::EntryType::Regular, 0o644, len);
                tar.append_data(&mut h, name, f)
            }
        }
        .map_err(werr("adding a file"))?;
    }
    let mut out = tar.into_inner().map_err(werr("ending the tar"))?;
    out.flush().map_err(werr("writing"))?;
    let file = out
        .into_inner()
        .map_err(|e| werr("writing")(e.into_error()))?;
    file.sync_all().map_err(werr("syncing"))?;
    drop(file);
    if replace {
        return temp
            .persist(dest)
            .map_err(|e| ArchiveError::unfit(dest, e.to_string()));
    }
    // Without --force: a link fails if the destination appeared since the check.
    fs::hard_link(temp.path(), dest).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => ArchiveError::Exists {
            path: dest.to_path_buf(),
        },
        _ => werr("putting it in place")(e),
    })?;
    drop(temp);
    let _ = File::open(parent).and_then(|d| d.sync_all());
    Ok(())
}

/// A deterministic header: no owner, no time.
fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

#[async_trait]
impl Transport for ArchiveTarget {
    fn name(&self) -> &str {
        &self.name
    }

    /// An archive is read, or written whole: it deletes nothing.
    fn tag_deletion(&self) -> TagDeletion {
        TagDeletion::Never
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    async fn manifest_head(&self, _repo: &str, reference: &str) -> Result<Option<ManifestHead>> {
        self.layout.manifest_head("", reference).await
    }

    async fn manifest_get(&self, _repo: &str, reference: &str) -> Result<Manifest> {
        self.layout.manifest_get("", reference).await
    }

    async fn manifest_put(&self, repo: &str, reference: &str, manifest: &Manifest) -> Result<()> {
        self.check_fits(manifest)
            .map_err(|e| e.into_registry("PUT manifest", &self.name))?;
        if !reference.contains(':') {
            let mut names = self.names.lock().expect("names lock");
            names.insert(reference.to_string(), repo.to_string());
        }
        self.layout.manifest_put("", reference, manifest).await
    }

    async fn blob_head(&self, _repo: &str, digest: &Digest) -> Result<Option<u64>> {
        self.layout.blob_head("", digest).await
    }

    async fn blob_get(&self, _repo: &str, digest: &Digest) -> Result<BlobBody> {
        self.layout.blob_get("", digest).await
    }

    async fn blob_mount(&self, _repo: &str, digest: &Digest, from: &str) -> Result<MountOutcome> {
        self.layout.blob_mount("", digest, from).await
    }

    async fn blob_put(
        &self,
        _repo: &str,
        digest: &Digest,
        size: u64,
        body: ByteStream,
        session: Option<UploadSession>,
    ) -> Result<()> {
        self.layout.blob_put("", digest, size, body, session).await
    }

    async fn upload_cancel(&self, _repo: &str, session: UploadSession) {
        self.layout.upload_cancel("", session).await
    }

    async fn tags(&self, _repo: &str) -> Result<Vec<String>> {
        self.layout.tags("").await
    }

    async fn has_tags(&self, _repo: &str) -> Result<bool> {
        // A new archive: whatever the staging folder holds was put by this copy.
        Ok(false)
    }

    async fn referrers(&self, _repo: &str, _digest: &Digest) -> Result<Option<Vec<Descriptor>>> {
        Ok(None)
    }

    async fn finish(&self) -> Result<()> {
        if self.finished.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let names = self.names.lock().expect("names lock").clone();
        let (kind, dest, root, replace) = (
            self.kind,
            self.dest.clone(),
            self.staging.0.clone(),
            self.replace,
        );
        let written = blocking(&self.dest, move || {
            write_archive(kind, &dest, &root, replace, &names)
        })
        .await;
        // The staging folder goes whatever happened; its content is in the tar or unwanted.
        let root = self.staging.0.clone();
        let _ = tokio::task::spawn_blocking(move || fs::remove_dir_all(root)).await;
        written.map_err(|e| e.into_registry("write archive", &self.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referrer_tags_are_told_apart() {
        assert!(is_referrer_tag(&format!("sha256-{}.sig", "a".repeat(64))));
        assert!(is_referrer_tag(&format!("sha256-{}", "0".repeat(64))));
        assert!(!is_referrer_tag("v1"));
        assert!(!is_referrer_tag("sha256-short"));
    }

    #[test]
    fn an_existing_file_is_refused_unless_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("a.tar");
        fs::write(&dest, b"keep me").unwrap();
        let e = ArchiveTarget::create(ArchiveKind::Oci, &dest, false).unwrap_err();
        assert!(e.to_string().contains("--force"), "{e}");
        assert!(ArchiveTarget::create(ArchiveKind::Oci, &dest, true).is_ok());
        let e = ArchiveTarget::create(ArchiveKind::Docker, dir.path(), true).unwrap_err();
        assert!(e.to_string().contains("folder"), "{e}");
        assert_eq!(fs::read(&dest).unwrap(), b"keep me");
    }
}
