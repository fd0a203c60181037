//! The files of one OCI image layout and the only ways crossdock changes them.
//!
//! A layout is read by other programs (skopeo, oras, a registry's import) while crossdock may
//! be writing it, possibly from two processes at once. So every change is a whole file put into
//! place with `rename`, which readers see either before or after, never half-written: blobs
//! are streamed to a temporary file in the layout folder (same file system, so the rename is
//! atomic), checked against their digest and size, `fsync`ed, then renamed; `index.json` is
//! rewritten the same way. Rewriting `index.json` is a read-modify-write, so it happens under
//! an exclusive `flock` on `index.json.lock`: two writers adding different tags both keep their
//! tag. Blobs need no lock — two writers of one blob write the same bytes.
//!
//! Everything here is blocking `std::fs` and runs on tokio's blocking pool (the transport calls
//! it through `spawn_blocking`), except blob streaming, which is async end to end.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::digest::Digest;
use crate::manifest::{Descriptor, media_type};

/// The layout marker file.
pub(crate) const LAYOUT_FILE: &str = "oci-layout";
/// The layout's top index.
pub(crate) const INDEX_FILE: &str = "index.json";
/// Held (flock) while `index.json` is read, changed and replaced.
pub(crate) const LOCK_FILE: &str = "index.json.lock";
/// The blob folder.
pub(crate) const BLOBS_DIR: &str = "blobs";
/// The annotation holding an index entry's name (crossdock: its tag).
pub(crate) const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The image-layout version written.
pub(crate) const LAYOUT_VERSION: &str = "1.0.0";
/// Temporary files start with this (they live in the layout root, as containers/image's do).
pub(crate) const TEMP_PREFIX: &str = ".crossdock-";

/// Why a folder is not a layout crossdock can use.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// File system failure.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// `oci-layout` or `index.json` is not what the spec says.
    #[error("{path} is not a valid OCI image layout file: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A layout version other than 1.x.
    #[error("{path}: image layout version {version:?} is not supported (only 1.x)")]
    Version {
        /// The `oci-layout` file.
        path: PathBuf,
        /// The version found.
        version: String,
    },
    /// The folder has content but no `oci-layout`: writing there would scatter files in it.
    #[error(
        "{path} exists, is not empty and is not an OCI image layout (no oci-layout file); \
         name an empty or new folder"
    )]
    NotALayout {
        /// The folder.
        path: PathBuf,
    },
}

/// Maps an I/O error to a [`LayoutError`] naming the file.
pub(crate) fn io_error<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> LayoutError + 'a {
    move |source| LayoutError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The path of a blob: `blobs/<algorithm>/<hex>`. Only a validated [`Digest`] goes into it
/// (algorithm from a fixed list, hex of fixed length in `[0-9a-f]`), so no input can name a
/// file outside the blob folder.
pub(crate) fn blob_path(root: &Path, digest: &Digest) -> PathBuf {
    root.join(BLOBS_DIR)
        .join(digest.algorithm().as_str())
        .join(digest.hex())
}

/// A temporary file in the layout root that is removed when dropped, unless kept.
pub(crate) struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl TempFile {
    /// A new, unique, empty temporary file for `purpose` (a word in its name).
    pub(crate) fn create(root: &Path, purpose: &str) -> Result<(TempFile, File), LayoutError> {
        loop {
            let name = format!(
                "{TEMP_PREFIX}{purpose}-{:016x}.tmp",
                rand::random_range(0..u64::MAX)
            );
            let path = root.join(name);
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(f) => return Ok((TempFile { path, keep: false }, f)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_error("creating temporary file", &path)(e)),
            }
        }
    }

    /// Its path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Renames it to `dest` (atomically replacing what is there) and syncs the folder, so that
    /// the new name survives a crash.
    pub(crate) fn persist(mut self, dest: &Path) -> Result<(), LayoutError> {
        fs::rename(&self.path, dest).map_err(io_error("renaming into place", dest))?;
        self.keep = true;
        if let Some(dir) = dest.parent() {
            // Best effort: some file systems refuse fsync on a directory.
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Writes `bytes` to `dest` atomically (temporary file, fsync, rename).
pub(crate) fn write_atomic(
    root: &Path,
    dest: &Path,
    purpose: &str,
    bytes: &[u8],
) -> Result<(), LayoutError> {
    let (temp, mut file) = TempFile::create(root, purpose)?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io_error("writing", temp.path()))?;
    drop(file);
    temp.persist(dest)
}

/// Checks `oci-layout`. `Ok(false)` when the file does not exist.
pub(crate) fn check_layout_file(root: &Path) -> Result<bool, LayoutError> {
    let path = root.join(LAYOUT_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_error("reading", &path)(e)),
    };
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct LayoutFile {
        image_layout_version: String,
    }
    let f: LayoutFile = serde_json::from_slice(&bytes).map_err(|e| LayoutError::Malformed {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if !f.image_layout_version.starts_with("1.") {
        return Err(LayoutError::Version {
            path,
            version: f.image_layout_version,
        });
    }
    Ok(true)
}

/// Makes `root` a layout if it is not one: creates the folder, an empty `index.json` and
/// `oci-layout` (last: its presence says the layout is complete). Refuses a non-empty folder
/// that is not a layout. Runs under the index lock so that two processes starting the same new
/// layout do not replace each other's `index.json`.
pub(crate) fn initialize(root: &Path) -> Result<(), LayoutError> {
    if check_layout_file(root)? {
        return Ok(());
    }
    fs::create_dir_all(root).map_err(io_error("creating layout folder", root))?;
    let foreign = fs::read_dir(root)
        .map_err(io_error("listing", root))?
        .filter_map(|e| e.ok())
        .any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            // What another crossdock process starting this layout may have put there already.
            !(name == LOCK_FILE
                || name == LAYOUT_FILE
                || name == INDEX_FILE
                || name == BLOBS_DIR
                || name.starts_with(TEMP_PREFIX))
        });
    if foreign {
        return Err(LayoutError::NotALayout {
            path: root.to_path_buf(),
        });
    }
    let _lock = lock(root)?;
    if check_layout_file(root)? {
        return Ok(());
    }
    let index = root.join(INDEX_FILE);
    if !index.exists() {
        write_atomic(root, &index, "index", &serialize_index(&empty_index()))?;
    }
    let blobs = root.join(BLOBS_DIR);
    fs::create_dir_all(&blobs).map_err(io_error("creating", &blobs))?;
    let marker = json!({ "imageLayoutVersion": LAYOUT_VERSION });
    write_atomic(
        root,
        &root.join(LAYOUT_FILE),
        "layout",
        marker.to_string().as_bytes(),
    )
}

/// An exclusive lock on the layout's index, released when dropped.
pub(crate) struct IndexLock {
    _file: File,
}

/// Takes the index lock, waiting for another holder (thread or process) to release it.
pub(crate) fn lock(root: &Path) -> Result<IndexLock, LayoutError> {
    let path = root.join(LOCK_FILE);
    // The lock file is never deleted: deleting it while another process waits on it would
    // let a third process lock a new file and both would "hold" the lock.
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_error("opening lock file", &path))?;
    file.lock().map_err(io_error("locking", &path))?;
    Ok(IndexLock { _file: file })
}

fn empty_index() -> Map<String, Value> {
    let mut doc = Map::new();
    doc.insert("schemaVersion".into(), json!(2));
    doc.insert("mediaType".into(), json!(media_type::OCI_INDEX));
    doc.insert("manifests".into(), json!([]));
    doc
}

fn serialize_index(doc: &Map<String, Value>) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(doc).expect("a JSON map serializes");
    bytes.push(b'\n');
    bytes
}

/// `index.json`, kept as JSON so that a rewrite keeps every field and entry it does not touch
/// (entries other tools wrote, their annotations and platforms).
#[derive(Debug, Clone)]
pub(crate) struct IndexFile {
    doc: Map<String, Value>,
}

impl IndexFile {
    /// Reads `index.json`.
    pub(crate) fn read(root: &Path) -> Result<IndexFile, LayoutError> {
        let path = root.join(INDEX_FILE);
        let bytes = fs::read(&path).map_err(io_error("reading", &path))?;
        IndexFile::parse(&bytes).map_err(|reason| LayoutError::Malformed { path, reason })
    }

    fn parse(bytes: &[u8]) -> Result<IndexFile, String> {
        let doc: Map<String, Value> = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if !doc.get("manifests").is_some_and(Value::is_array) {
            return Err("no \"manifests\" array".into());
        }
        Ok(IndexFile { doc })
    }

    fn entries(&self) -> &Vec<Value> {
        match self.doc.get("manifests") {
            Some(Value::Array(a)) => a,
            _ => unreachable!("checked when read"),
        }
    }

    fn entries_mut(&mut self) -> &mut Vec<Value> {
        match self.doc.get_mut("manifests") {
            Some(Value::Array(a)) => a,
            _ => unreachable!("checked when read"),
        }
    }

    /// The descriptor named `name`. Should a layout name two entries alike (the spec says it
    /// must not), the last one wins: it is the one most recently added.
    pub(crate) fn find(&self, name: &str) -> Option<Descriptor> {
        self.entries()
            .iter()
            .rev()
            .filter(|e| entry_name(e) == Some(name))
            // An entry that is no descriptor (bad digest, no size) names nothing we can read.
            .find_map(|e| serde_json::from_value::<Descriptor>(e.clone()).ok())
    }

    /// The entries without a name that are descriptors, in index order.
    pub(crate) fn untagged(&self) -> Vec<Descriptor> {
        self.entries()
            .iter()
            .filter(|e| entry_name(e).is_none())
            .filter_map(|e| serde_json::from_value::<Descriptor>(e.clone()).ok())
            .collect()
    }

    /// Every entry name, each once, in index order.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for name in self.entries().iter().filter_map(entry_name) {
            if !out.iter().any(|n| n == name) {
                out.push(name.to_string());
            }
        }
        out
    }

    /// Points `name` at `descriptor`: the first entry of that name is replaced in place (so the
    /// index keeps its order), any further ones are removed; else an entry is appended. An
    /// untagged entry for the same digest goes: the tag now keeps it.
    pub(crate) fn set(&mut self, name: &str, descriptor: &Descriptor) {
        let mut entry = json!({
            "mediaType": descriptor.media_type,
            "digest": descriptor.digest,
            "size": descriptor.size,
            "annotations": { REF_NAME: name },
        });
        if let Some(p) = &descriptor.platform {
            entry["platform"] = serde_json::to_value(p).expect("platform serializes");
        }
        self.drop_untagged(std::slice::from_ref(&descriptor.digest));
        let entries = self.entries_mut();
        let mut slot = None;
        let mut i = 0;
        while i < entries.len() {
            if entry_name(&entries[i]) == Some(name) {
                if slot.is_none() {
                    slot = Some(i);
                    i += 1;
                } else {
                    entries.remove(i);
                }
            } else {
                i += 1;
            }
        }
        match slot {
            Some(i) => entries[i] = entry,
            None => entries.push(entry),
        }
    }

    /// Lists `descriptor` without a name, as skopeo does for an image copied without a tag,
    /// unless some entry already lists its digest.
    pub(crate) fn add_untagged(&mut self, descriptor: &Descriptor) {
        let digest = descriptor.digest.to_string();
        if self
            .entries()
            .iter()
            .any(|e| entry_digest(e) == Some(&digest))
        {
            return;
        }
        self.entries_mut().push(json!({
            "mediaType": descriptor.media_type,
            "digest": descriptor.digest,
            "size": descriptor.size,
        }));
    }

    /// Removes the entries without a name that list one of `digests` (children of an index
    /// being listed, which the index keeps reachable).
    pub(crate) fn drop_untagged(&mut self, digests: &[Digest]) {
        if digests.is_empty() {
            return;
        }
        let digests: Vec<String> = digests.iter().map(Digest::to_string).collect();
        self.entries_mut().retain(|e| {
            entry_name(e).is_some()
                || !entry_digest(e).is_some_and(|d| digests.iter().any(|x| x == d))
        });
    }

    /// Removes the entries named `name` (a tag) or, for a digest, every entry listing it;
    /// whether any went. The blobs stay: other entries may share them.
    pub(crate) fn remove(&mut self, reference: &str) -> bool {
        let before = self.entries().len();
        let by_digest = reference.contains(':');
        self.entries_mut().retain(|e| {
            if by_digest {
                entry_digest(e) != Some(reference)
            } else {
                entry_name(e) != Some(reference)
            }
        });
        self.entries().len() != before
    }

    /// Replaces `index.json` with this content (atomically; the caller holds the lock).
    pub(crate) fn write(&self, root: &Path) -> Result<(), LayoutError> {
        write_atomic(
            root,
            &root.join(INDEX_FILE),
            "index",
            &serialize_index(&self.doc),
        )
    }
}

fn entry_name(entry: &Value) -> Option<&str> {
    entry.get("annotations")?.get(REF_NAME)?.as_str()
}

fn entry_digest(entry: &Value) -> Option<&str> {
    entry.get("digest")?.as_str()
}

/// Under the index lock: reads `index.json`, lets `change` edit it, writes it back.
pub(crate) fn update_index(
    root: &Path,
    change: impl FnOnce(&mut IndexFile),
) -> Result<(), LayoutError> {
    let _lock = lock(root)?;
    let mut index = IndexFile::read(root)?;
    change(&mut index);
    index.write(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descriptor(n: u8) -> Descriptor {
        let bytes = [n];
        Descriptor {
            media_type: media_type::OCI_MANIFEST.into(),
            digest: Digest::sha256_of(&bytes),
            size: 1,
            platform: None,
            urls: vec![],
            annotations: Default::default(),
            artifact_type: None,
        }
    }

    #[test]
    fn set_replaces_in_place_and_keeps_foreign_entries() {
        let foreign = r#"{"schemaVersion":2,"manifests":[
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0,"annotations":{"org.opencontainers.image.ref.name":"a","x":"y"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},
            {"weird":true,"annotations":{"org.opencontainers.image.ref.name":"b"}}
        ],"annotations":{"keep":"me"}}"#;
        let mut index = IndexFile::parse(foreign.as_bytes()).unwrap();
        assert_eq!(index.names(), vec!["a", "b"]);
        // An entry that is no descriptor names nothing readable.
        assert!(index.find("b").is_none());
        index.set("b", &descriptor(1));
        index.set("c", &descriptor(2));
        index.set("a", &descriptor(3));
        assert_eq!(index.names(), vec!["a", "b", "c"]);
        assert_eq!(index.find("a").unwrap().digest, descriptor(3).digest);
        assert_eq!(index.find("b").unwrap().digest, descriptor(1).digest);
        assert_eq!(index.entries().len(), 4, "the untagged entry stays");
        assert_eq!(index.doc["annotations"]["keep"], "me");
    }

    #[test]
    fn untagged_entries_list_top_level_manifests_only() {
        let mut index = IndexFile::parse(serialize_index(&empty_index()).as_slice()).unwrap();
        // The engine puts an index's children by digest, then the index.
        index.add_untagged(&descriptor(1));
        index.add_untagged(&descriptor(2));
        index.add_untagged(&descriptor(2));
        assert_eq!(index.entries().len(), 2);
        index.drop_untagged(&[descriptor(1).digest, descriptor(2).digest]);
        index.add_untagged(&descriptor(3));
        assert_eq!(index.entries().len(), 1);
        assert_eq!(index.names(), Vec::<String>::new());
        // Tagging it later replaces the untagged entry.
        index.set("v1", &descriptor(3));
        assert_eq!(index.entries().len(), 1);
        assert_eq!(index.find("v1").unwrap().digest, descriptor(3).digest);
        // A tagged entry is never dropped as a child, nor duplicated by an untagged one.
        index.drop_untagged(&[descriptor(3).digest]);
        index.add_untagged(&descriptor(3));
        assert_eq!(index.entries().len(), 1);
    }

    #[test]
    fn refuses_malformed_index_and_versions() {
        assert!(IndexFile::parse(b"{}").is_err());
        assert!(IndexFile::parse(b"[]").is_err());
        let dir = tempfile::tempdir().unwrap();
        assert!(!check_layout_file(dir.path()).unwrap());
        fs::write(
            dir.path().join(LAYOUT_FILE),
            r#"{"imageLayoutVersion":"2.0.0"}"#,
        )
        .unwrap();
        assert!(matches!(
            check_layout_file(dir.path()),
            Err(LayoutError::Version { .. })
        ));
    }

    #[test]
    fn initialize_refuses_a_foreign_folder_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("notes.txt"), "mine").unwrap();
        assert!(matches!(
            initialize(dir.path()),
            Err(LayoutError::NotALayout { .. })
        ));
        assert!(!dir.path().join(LAYOUT_FILE).exists());
        let root = dir.path().join("new/layout");
        initialize(&root).unwrap();
        assert!(check_layout_file(&root).unwrap());
        update_index(&root, |i| i.set("v1", &descriptor(1))).unwrap();
        initialize(&root).unwrap();
        assert_eq!(IndexFile::read(&root).unwrap().names(), vec!["v1"]);
    }

    #[test]
    fn temp_files_vanish_unless_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let (t, _f) = TempFile::create(dir.path(), "x").unwrap();
        let p = t.path().to_path_buf();
        assert!(p.exists());
        drop(t);
        assert!(!p.exists());
        write_atomic(dir.path(), &dir.path().join("f"), "x", b"hi").unwrap();
        assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"hi");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn concurrent_updates_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        initialize(&root).unwrap();
        let threads: Vec<_> = (0..16u8)
            .map(|n| {
                let root = root.clone();
                std::thread::spawn(move || {
                    update_index(&root, |i| i.set(&format!("t{n}"), &descriptor(n))).unwrap()
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(IndexFile::read(&root).unwrap().names().len(), 16);
    }
}
