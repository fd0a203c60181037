//! The references that name images on the local file system rather than in a registry: OCI
//! layout folders (`oci:`) and image archives (`oci-archive:`, `docker-archive:`).
//!
//! Each parses into a [`Reference`] whose registry is a pseudo-registry, `<prefix><absolute
//! path>`, so that code keyed by registry name keeps one transport per folder or file; the
//! transports behind them live in `crate::registry` (`layout`, `archive`).

use std::fmt;
use std::path::{Path, PathBuf};

use super::{DOCKER_HUB, LAYOUT_PREFIX, Reference, ReferenceError, check_tag};
use crate::digest::Digest;

/// The kinds of image archive (a single tar file) a reference can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArchiveKind {
    /// `oci-archive:`: a tar of an OCI image layout, every platform.
    Oci,
    /// `docker-archive:`: what `docker save` writes and `docker load` reads, one image.
    Docker,
}

impl ArchiveKind {
    /// Every kind, for dispatch.
    pub const ALL: [ArchiveKind; 2] = [ArchiveKind::Oci, ArchiveKind::Docker];

    /// The reference prefix, which is also that of its pseudo-registry name.
    pub fn prefix(self) -> &'static str {
        match self {
            ArchiveKind::Oci => "oci-archive:",
            ArchiveKind::Docker => "docker-archive:",
        }
    }
}

impl fmt::Display for ArchiveKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.prefix().trim_end_matches(':'))
    }
}

impl Reference {
    /// The image name this reference gives an image (`registry/repository`, as in `RepoTags`):
    /// a registry reference's, a named `docker-archive:`'s; `None` for folders and archives
    /// that name none.
    pub fn image_name(&self) -> Option<String> {
        match self.archive() {
            Some((ArchiveKind::Docker, _)) if !self.repository.is_empty() => {
                Some(self.repository.clone())
            }
            Some(_) => None,
            None if self.layout_path().is_some() => None,
            None => Some(self.full_name()),
        }
    }
}

/// `oci:PATH[:TAG][@DIGEST]`, `rest` being what follows `oci:`. The digest is after the last
/// `@` when no `/` follows it; the tag is after the last `:` that follows the last `/`. A path
/// whose last component holds `:` or `@` is written with a trailing `/` (`oci:/d/a:b/:tag`).
pub(super) fn parse_layout(
    input: &str,
    rest: &str,
    prefix: &str,
) -> Result<Reference, ReferenceError> {
    let (rest, digest) = match rest.rsplit_once('@') {
        Some((r, d)) if !d.contains('/') => (r, Some(super::parse_digest(input, d)?)),
        _ => (rest, None),
    };
    let (path, tag) = super::split_tag(rest);
    layout_reference(input, Path::new(path), tag, digest, prefix)
}

/// `docker-archive:PATH[:NAME[:TAG]]`, `rest` being what follows the prefix. As skopeo does,
/// the path ends at the first `:`; the rest is an image name (`RepoTags` entry), normalised
/// as any reference (`app:v1` is `docker.io/library/app:v1`). No digest: such an archive
/// names its images by tag only.
pub(super) fn parse_docker_archive(input: &str, rest: &str) -> Result<Reference, ReferenceError> {
    let kind = ArchiveKind::Docker;
    let (path, name) = match rest.split_once(':') {
        Some((p, n)) => (p, Some(n)),
        None => (rest, None),
    };
    let mut r = layout_reference(input, Path::new(path), None, None, kind.prefix())?;
    if let Some(name) = name {
        let n = Reference::parse(name).map_err(|e| {
            archive_error(
                kind,
                input,
                format!(
                    "the image name after the path: {e} (write docker-archive:PATH[:NAME[:TAG]])"
                ),
            )
        })?;
        if n.digest().is_some() {
            return Err(archive_error(
                kind,
                input,
                "a docker archive names its images by tag, not digest".into(),
            ));
        }
        r.repository = n.full_name();
        r.tag = n.tag().map(str::to_string);
    }
    Ok(r)
}

pub(super) fn archive_error(kind: ArchiveKind, input: &str, reason: String) -> ReferenceError {
    ReferenceError::Archive {
        kind,
        input: input.to_string(),
        reason,
    }
}

pub(super) fn layout_reference(
    input: &str,
    path: &Path,
    tag: Option<&str>,
    digest: Option<Digest>,
    prefix: &str,
) -> Result<Reference, ReferenceError> {
    let archive = ArchiveKind::ALL.into_iter().find(|k| k.prefix() == prefix);
    let bad = |reason: &'static str| match archive {
        Some(kind) => archive_error(kind, input, reason.to_string()),
        None => ReferenceError::Layout {
            input: input.to_string(),
            reason,
        },
    };
    if path.as_os_str().is_empty() {
        return Err(bad(match archive {
            None => "empty path: write oci:PATH[:TAG], e.g. oci:./layout:v1",
            Some(ArchiveKind::Oci) => {
                "empty path: write oci-archive:PATH[:TAG], e.g. oci-archive:./app.tar:v1"
            }
            Some(ArchiveKind::Docker) => {
                "empty path: write docker-archive:PATH[:NAME[:TAG]], e.g. docker-archive:./app.tar:app:v1"
            }
        }));
    }
    if let Some(t) = tag {
        check_tag(t).map_err(|reason| ReferenceError::Tag {
            input: input.to_string(),
            tag: t.to_string(),
            reason,
        })?;
    }
    let absolute: PathBuf = std::path::absolute(path)
        .map_err(|_| bad("cannot make the path absolute (is the working directory gone?)"))?
        .components()
        .collect();
    let absolute = absolute.to_str().ok_or_else(|| bad("path is not UTF-8"))?;
    Ok(Reference {
        registry: format!("{prefix}{absolute}"),
        repository: String::new(),
        tag: tag.map(str::to_string),
        digest,
    })
}

/// The layout folder a pseudo-registry name (`oci:PATH`, from [`Reference::registry`]) stands
/// for; `None` for a real registry.
pub fn layout_path_of(registry: &str) -> Option<&Path> {
    registry.strip_prefix(LAYOUT_PREFIX).map(Path::new)
}

/// The archive a pseudo-registry name (`oci-archive:PATH`, `docker-archive:PATH`) stands for;
/// `None` for anything else.
pub fn archive_of(registry: &str) -> Option<(ArchiveKind, &Path)> {
    ArchiveKind::ALL
        .into_iter()
        .find_map(|k| registry.strip_prefix(k.prefix()).map(|p| (k, Path::new(p))))
}

/// An image name as docker prints it: `docker.io/library/` and `docker.io/` dropped
/// (`docker save` writes `RepoTags` so).
pub fn familiar_name(full_name: &str) -> &str {
    let name = full_name
        .strip_prefix(DOCKER_HUB)
        .and_then(|r| r.strip_prefix('/'))
        .unwrap_or(full_name);
    match name.strip_prefix("library/") {
        Some(short) if !short.contains('/') && name.len() != full_name.len() => short,
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn layout_references() {
        let r = Reference::parse("oci:/media/usb/repo:v1").unwrap();
        assert_eq!(r.layout_path(), Some(Path::new("/media/usb/repo")));
        assert_eq!(r.registry(), "oci:/media/usb/repo");
        assert_eq!((r.repository(), r.tag()), ("", Some("v1")));
        assert_eq!(r.to_string(), "oci:/media/usb/repo:v1");
        assert_eq!(r.repository_only().to_string(), "oci:/media/usb/repo");
        assert!(!r.is_loopback());
        // Relative paths become absolute; '.' and trailing '/' go, '..' stays.
        let r = Reference::parse("oci:./a/./b/").unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(r.layout_path().unwrap(), cwd.join("a/b"));
        assert_eq!(r.tag(), None);
        let r = Reference::parse("oci:/x/../y:t").unwrap();
        assert_eq!(r.registry(), "oci:/x/../y");
        // The tag is after the last ':' after the last '/'.
        let r = Reference::parse("oci:/d/a:b/c:t").unwrap();
        assert_eq!((r.registry(), r.tag()), ("oci:/d/a:b/c", Some("t")));
        let r = Reference::parse("oci:/d/a:b/").unwrap();
        assert_eq!((r.registry(), r.tag()), ("oci:/d/a:b", None));
        assert_eq!(r.to_string(), "oci:/d/a:b/");
        assert_eq!(Reference::parse(&r.to_string()).unwrap(), r);
        // Digest, with and without tag; '@' inside a directory stays in the path.
        let r = Reference::parse(&format!("oci:/d/l:v1@{D}")).unwrap();
        assert_eq!(
            (r.tag(), r.digest().unwrap().to_string()),
            (Some("v1"), D.into())
        );
        assert_eq!(r.manifest_reference(), D);
        assert_eq!(r.to_string(), format!("oci:/d/l:v1@{D}"));
        let r = Reference::parse("oci:/u@h/l").unwrap();
        assert_eq!((r.registry(), r.digest()), ("oci:/u@h/l", None));
        // Re-targeting keeps the layout.
        let again = Reference::from_parts(r.registry(), r.repository(), Some("x"), None).unwrap();
        assert_eq!(again.to_string(), "oci:/u@h/l:x");
        let again = Reference::layout(Path::new("/u@h/l"), Some("x"), None).unwrap();
        assert_eq!(again.registry(), "oci:/u@h/l");
    }

    #[test]
    fn layout_errors() {
        for bad in ["oci:", "oci::v1", &format!("oci:@{D}")] {
            assert!(
                matches!(Reference::parse(bad), Err(ReferenceError::Layout { .. })),
                "{bad}"
            );
        }
        let e = Reference::parse("oci:/d/l:..").unwrap_err();
        assert!(matches!(e, ReferenceError::Tag { .. }), "{e}");
        let e = Reference::parse("oci:/d/l@sha256:zz").unwrap_err();
        assert!(matches!(e, ReferenceError::Digest { .. }), "{e}");
        assert!(Reference::layout(Path::new("/d"), Some("a/b"), None).is_err());
        // Not a registry any more: `oci:` always means a layout.
        let r = Reference::parse("oci:5000/x").unwrap();
        assert!(r.layout_path().is_some());
    }

    #[test]
    fn archive_references() {
        let r = Reference::parse("oci-archive:/m/app.tar:v1").unwrap();
        assert_eq!(
            r.archive(),
            Some((ArchiveKind::Oci, Path::new("/m/app.tar")))
        );
        assert_eq!(
            (r.registry(), r.repository(), r.tag()),
            ("oci-archive:/m/app.tar", "", Some("v1"))
        );
        assert_eq!(r.layout_path(), None);
        assert_eq!(r.to_string(), "oci-archive:/m/app.tar:v1");
        assert_eq!(Reference::parse(&r.to_string()).unwrap(), r);
        // As skopeo: the path ends at the first ':', the rest is an image name.
        let r = Reference::parse("docker-archive:/m/app.tar:localhost:5000/team/app:v2").unwrap();
        assert_eq!(
            r.archive(),
            Some((ArchiveKind::Docker, Path::new("/m/app.tar")))
        );
        assert_eq!(
            (r.repository(), r.tag()),
            ("localhost:5000/team/app", Some("v2"))
        );
        assert_eq!(
            r.to_string(),
            "docker-archive:/m/app.tar:localhost:5000/team/app:v2"
        );
        let r = Reference::parse("docker-archive:/m/app.tar:app").unwrap();
        assert_eq!((r.repository(), r.tag()), ("docker.io/library/app", None));
        assert_eq!(r.to_string(), "docker-archive:/m/app.tar:app");
        let r = Reference::parse("docker-archive:/m/app.tar")
            .unwrap()
            .with_default_tag();
        assert_eq!((r.repository(), r.tag()), ("", Some("latest")));
        assert_eq!(r.to_string(), "docker-archive:/m/app.tar");
        // Re-targeting keeps the archive and its image name.
        let again = Reference::from_parts(r.registry(), "quay.io/x/y", Some("t"), None).unwrap();
        assert_eq!(again.to_string(), "docker-archive:/m/app.tar:quay.io/x/y:t");
        let again = Reference::from_parts("oci-archive:/a.tar", "", Some("t"), None).unwrap();
        assert_eq!(again.to_string(), "oci-archive:/a.tar:t");
        assert_eq!(familiar_name("docker.io/library/app"), "app");
        assert_eq!(familiar_name("docker.io/org/app"), "org/app");
        assert_eq!(familiar_name("quay.io/library/app"), "quay.io/library/app");
    }

    #[test]
    fn archive_errors() {
        for bad in ["oci-archive:", "docker-archive:", "docker-archive::app"] {
            let e = Reference::parse(bad).unwrap_err();
            assert!(matches!(e, ReferenceError::Archive { .. }), "{bad}: {e}");
            assert!(e.to_string().contains("empty path"), "{e}");
        }
        let e = Reference::parse("docker-archive:/a.tar:Bad/Name").unwrap_err();
        assert!(
            e.to_string().contains("docker-archive:PATH[:NAME[:TAG]]"),
            "{e}"
        );
        let e = Reference::parse(&format!("docker-archive:/a.tar:app@{D}")).unwrap_err();
        assert!(e.to_string().contains("not digest"), "{e}");
    }
}
