//! Reading an image archive in place: an index of the tar's entries, then reads that seek.
//!
//! Archives hold blobs of any size (GiB layers), so nothing is unpacked: one pass over the
//! headers (seeking past each entry's content, not reading it) records where every file's
//! bytes start and how many there are; a blob is then streamed with a seek and a bounded
//! read. Memory is one map entry per file, whatever the archive's size. Links (old `docker
//! save` writes a repeated layer as a symlink to the first) resolve to the entry they name.
//!
//! Everything here is blocking `std::fs` (callers run it on tokio's blocking pool), except
//! [`TarIndex::stream`], which opens its own async file.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use tar::EntryType;

use super::ArchiveError;

/// Where one file's bytes are in the tar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Offset of the first content byte.
    pub offset: u64,
    /// Content length.
    pub size: u64,
}

/// The files of one tar, by normalised name (`blobs/sha256/…`, no leading `./`).
#[derive(Debug)]
pub struct TarIndex {
    path: PathBuf,
    files: HashMap<String, Span>,
}

/// Links are followed this many times at most (a loop is an error, not a hang).
const MAX_LINK_DEPTH: usize = 8;

/// `./a/../b//c` → `b/c`; `None` for a name that climbs out of the archive.
fn normalise(name: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

impl TarIndex {
    /// Reads the headers of the tar at `path`.
    pub fn open(path: &Path) -> Result<TarIndex, ArchiveError> {
        let mut file = File::open(path).map_err(|e| ArchiveError::open(path, e))?;
        if file
            .metadata()
            .map_err(|e| ArchiveError::open(path, e))?
            .is_dir()
        {
            return Err(ArchiveError::not_an_image(
                path,
                "it is a folder (an OCI layout folder is read as oci:PATH)",
            ));
        }
        let mut magic = [0u8; 4];
        let n = read_up_to(&mut file, &mut magic).map_err(|e| ArchiveError::open(path, e))?;
        match &magic[..n] {
            [] => return Err(ArchiveError::not_an_image(path, "the file is empty")),
            [0x1f, 0x8b, ..] => {
                return Err(ArchiveError::not_an_image(
                    path,
                    "it is gzip-compressed; decompress it first (gunzip)",
                ));
            }
            [0x28, 0xb5, 0x2f, 0xfd] => {
                return Err(ArchiveError::not_an_image(
                    path,
                    "it is zstd-compressed; decompress it first (unzstd)",
                ));
            }
            _ => {}
        }
        file.rewind().map_err(|e| ArchiveError::open(path, e))?;
        let not_tar = |e: io::Error| ArchiveError::not_an_image(path, &format!("not a tar: {e}"));
        let mut archive = tar::Archive::new(file);
        let mut files = HashMap::new();
        let mut links: Vec<(String, String)> = Vec::new();
        for entry in archive.entries_with_seek().map_err(not_tar)? {
            let entry = entry.map_err(not_tar)?;
            let raw_name = entry.path_bytes();
            let name = String::from_utf8_lossy(&raw_name).into_owned();
            let Some(name) = normalise(&name) else {
                continue;
            };
            match entry.header().entry_type() {
                EntryType::Regular | EntryType::Continuous => {
                    let span = Span {
                        offset: entry.raw_file_position(),
                        size: entry.size(),
                    };
                    files.insert(name, span);
                }
                EntryType::Symlink | EntryType::Link => {
                    let target = entry
                        .link_name_bytes()
                        .map(|b| String::from_utf8_lossy(&b).into_owned());
                    let Some(target) = target else { continue };
                    // A symlink is relative to its own folder; a hard link names an entry.
                    let target = if entry.header().entry_type() == EntryType::Symlink
                        && !target.starts_with('/')
                    {
                        match name.rsplit_once('/') {
                            Some((dir, _)) => format!("{dir}/{target}"),
                            None => target,
                        }
                    } else {
                        target
                    };
                    if let Some(target) = normalise(&target) {
                        links.push((name, target));
                    }
                }
                _ => {}
            }
        }
        for _ in 0..MAX_LINK_DEPTH {
            let mut unresolved = Vec::new();
            for (name, target) in links {
                match files.get(&target) {
                    Some(span) => {
                        files.insert(name, *span);
                    }
                    None => unresolved.push((name, target)),
                }
            }
            links = unresolved;
        }
        Ok(TarIndex {
            path: path.to_path_buf(),
            files,
        })
    }

    /// The archive file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where file `name` is, if the archive holds it.
    pub fn get(&self, name: &str) -> Option<Span> {
        normalise(name).and_then(|n| self.files.get(&n).copied())
    }

    /// Whether the archive holds file `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Every file name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    /// Reads a small file whole (JSON documents), refusing one over `limit` bytes.
    pub fn read(&self, name: &str, limit: u64) -> Result<Vec<u8>, ArchiveError> {
        let span = self
            .get(name)
            .ok_or_else(|| ArchiveError::missing(&self.path, name))?;
        if span.size > limit {
            return Err(ArchiveError::not_an_image(
                &self.path,
                &format!(
                    "{name} is {} bytes, over the {limit} a metadata file may have",
                    span.size
                ),
            ));
        }
        let mut out = Vec::with_capacity(span.size as usize);
        self.reader(span)?
            .read_to_end(&mut out)
            .map_err(|e| ArchiveError::open(&self.path, e))?;
        check_length(&self.path, name, span, out.len() as u64)?;
        Ok(out)
    }

    /// A blocking reader of one file's bytes.
    pub fn reader(&self, span: Span) -> Result<impl Read + use<>, ArchiveError> {
        let mut file = File::open(&self.path).map_err(|e| ArchiveError::open(&self.path, e))?;
        file.seek(SeekFrom::Start(span.offset))
            .map_err(|e| ArchiveError::open(&self.path, e))?;
        Ok(file.take(span.size))
    }

    /// The first bytes of a file (to tell its compression), at most `buf.len()`.
    pub fn peek(&self, span: Span, buf: &mut [u8]) -> Result<usize, ArchiveError> {
        read_up_to(&mut self.reader(span)?, buf).map_err(|e| ArchiveError::open(&self.path, e))
    }

    /// An async stream of one file's bytes, `chunk` at a time.
    pub async fn stream(
        &self,
        span: Span,
        chunk: usize,
    ) -> io::Result<tokio_util::io::ReaderStream<tokio::io::Take<tokio::fs::File>>> {
        use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
        let mut file = tokio::fs::File::open(&self.path).await?;
        file.seek(SeekFrom::Start(span.offset)).await?;
        Ok(tokio_util::io::ReaderStream::with_capacity(
            file.take(span.size),
            chunk,
        ))
    }
}

/// A tar cut short gives fewer bytes than its header announced.
fn check_length(path: &Path, name: &str, span: Span, got: u64) -> Result<(), ArchiveError> {
    if got == span.size {
        return Ok(());
    }
    Err(ArchiveError::not_an_image(
        path,
        &format!(
            "{name} is cut short ({got} of {} bytes): the archive is truncated",
            span.size
        ),
    ))
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(entries: &[(&str, &[u8])], links: &[(&str, &str)]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut b = tar::Builder::new(file.reopen().unwrap());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, *data).unwrap();
        }
        for (name, target) in links {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, name, target).unwrap();
        }
        b.finish().unwrap();
        file
    }

    #[test]
    fn indexes_files_and_follows_links() {
        let f = tar_with(
            &[("./a/layer.tar", b"layer bytes"), ("manifest.json", b"[]")],
            &[("b/layer.tar", "../a/layer.tar"), ("loop", "loop")],
        );
        let idx = TarIndex::open(f.path()).unwrap();
        assert_eq!(idx.read("a/layer.tar", 100).unwrap(), b"layer bytes");
        assert_eq!(idx.read("./b/layer.tar", 100).unwrap(), b"layer bytes");
        assert_eq!(idx.read("manifest.json", 100).unwrap(), b"[]");
        assert!(!idx.contains("loop"));
        assert!(idx.read("a/layer.tar", 3).is_err(), "over the limit");
        let mut buf = [0u8; 5];
        let n = idx.peek(idx.get("a/layer.tar").unwrap(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"layer");
        assert_eq!(normalise("../x"), None);
    }

    #[test]
    fn refuses_what_is_not_a_tar() {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes, says) in [
            ("empty", &b""[..], "empty"),
            ("gz", &[0x1f, 0x8b, 8, 0][..], "gzip"),
            ("text", &[b'x'; 1024][..], "not a tar"),
        ] {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            let e = TarIndex::open(&p).unwrap_err().to_string();
            assert!(
                e.contains(says) && e.contains(&p.display().to_string()),
                "{e}"
            );
        }
        let e = TarIndex::open(&dir.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope") && e.contains("No such file"), "{e}");
    }
}
