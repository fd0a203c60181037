//! Image references: `host[:port]/path/components[:tag][@digest]`, parsed and normalised.
//!
//! This follows the grammar of distribution's `reference` package, which docker, skopeo and crane
//! share, so that a reference means the same thing to crossdock as to the tools around it:
//! a first component is a registry only if it contains `.` or `:` or is `localhost`; otherwise the
//! image is on Docker Hub (`docker.io`), where one-component names live under `library/`. Docker
//! Hub's API is served at `registry-1.docker.io`, which [`Reference::api_host`] gives.
//!
//! A second form names an OCI image-layout folder: `oci:PATH[:TAG][@DIGEST]` (see
//! [`Reference::layout`]). It parses into the same type so that every place taking a registry
//! reference takes a layout too: its [`Reference::registry`] is the pseudo-registry
//! `oci:<absolute path>` (so code keyed by registry name keeps one transport per folder, and two
//! folders never share one) and its repository is empty (a layout holds one repository). The
//! `oci:` prefix always means a layout, so a registry host literally named `oci` cannot be
//! written with a port (`oci:5000/x` is the layout `5000/x`).
//!
//! Two more forms name image archives, as skopeo names them (see [`ArchiveKind`]):
//! `oci-archive:PATH[:TAG][@DIGEST]` (a tar of a layout; path, tag and digest split as for
//! `oci:`) and `docker-archive:PATH[:NAME[:TAG]]` (what `docker save` writes; as in skopeo the
//! path ends at the first `:` and the rest is an image name as in `RepoTags`, held in the
//! repository and tag). Their pseudo-registry is `<prefix><absolute path>`.
//!
//! Parsing does no I/O beyond reading the working directory to make a layout path absolute.
//! Errors name the part that is wrong.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};

mod local;
pub use local::{ArchiveKind, archive_of, familiar_name, layout_path_of};
use local::{archive_error, layout_reference, parse_docker_archive, parse_layout};

/// The registry name Docker Hub images are normalised to.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's registry API is actually served.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// Longest tag allowed.
pub const MAX_TAG_LEN: usize = 128;
/// Longest repository name (registry excluded), as distribution.
pub const MAX_NAME_LEN: usize = 255;
/// The prefix of a layout reference (`oci:PATH[:TAG][@DIGEST]`) and of its pseudo-registry name.
pub const LAYOUT_PREFIX: &str = "oci:";

/// Why a reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// Empty input.
    #[error("empty image reference")]
    Empty,
    /// The registry part is malformed.
    #[error("invalid registry {registry:?} in reference {input:?}: {reason}")]
    Registry {
        /// Whole input.
        input: String,
        /// The registry part.
        registry: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A repository path component is malformed.
    #[error("invalid repository path component {component:?} in reference {input:?}: {reason}")]
    Repository {
        /// Whole input.
        input: String,
        /// The bad component.
        component: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The tag is malformed.
    #[error("invalid tag {tag:?} in reference {input:?}: {reason}")]
    Tag {
        /// Whole input.
        input: String,
        /// The bad tag.
        tag: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The digest is malformed.
    #[error("invalid digest in reference {input:?}: {source}")]
    Digest {
        /// Whole input.
        input: String,
        /// Why the digest was refused.
        #[source]
        source: DigestError,
    },
    /// An `oci:` layout reference is malformed.
    #[error("invalid OCI layout reference {input:?}: {reason}")]
    Layout {
        /// Whole input.
        input: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// An `oci-archive:` or `docker-archive:` reference is malformed.
    #[error("invalid {kind} reference {input:?}: {reason}")]
    Archive {
        /// Which archive.
        kind: ArchiveKind,
        /// Whole input.
        input: String,
        /// What is wrong.
        reason: String,
    },
    /// A URL (`https://…`, `docker://…`) where a reference is expected.
    #[error("{input:?} is a URL, not an image reference: drop the {scheme}:// and write {rest:?}")]
    Scheme {
        /// Whole input.
        input: String,
        /// The scheme given, e.g. `https`.
        scheme: String,
        /// The input without it.
        rest: String,
    },
    /// The repository name is too long.
    #[error("repository name in reference {input:?} is {len} characters, over {MAX_NAME_LEN}")]
    NameTooLong {
        /// Whole input.
        input: String,
        /// Its length.
        len: usize,
    },
}

/// A parsed, normalised image reference.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// Checks one path component: `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`.
fn check_component(c: &str) -> Result<(), &'static str> {
    if c.is_empty() {
        return Err("empty path component");
    }
    if c == "." || c == ".." {
        return Err("path traversal is not allowed");
    }
    if c.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("repository names must be lowercase");
    }
    let b = c.as_bytes();
    if !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return Err("must start and end with a lowercase letter or digit");
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__", or one or more "-".
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return Err("only lowercase letters, digits and single separators (. _ __ -) allowed");
        }
    }
    Ok(())
}

fn check_tag(t: &str) -> Result<(), &'static str> {
    if t.is_empty() {
        return Err("empty tag");
    }
    if t.len() > MAX_TAG_LEN {
        return Err("tag longer than 128 characters");
    }
    let b = t.as_bytes();
    if !(b[0].is_ascii_alphanumeric() || b[0] == b'_') {
        return Err("tag must start with a letter, digit or underscore");
    }
    if !b
        .iter()
        .all(|&x| x.is_ascii_alphanumeric() || x == b'_' || x == b'.' || x == b'-')
    {
        return Err("tag may hold only letters, digits, '_', '.' and '-'");
    }
    Ok(())
}

fn check_registry(r: &str) -> Result<(), &'static str> {
    if r.is_empty() {
        return Err("empty registry");
    }
    let (host, port) = if let Some(rest) = r.strip_prefix('[') {
        let (inner, after) = rest.split_once(']').ok_or("unclosed '[' in IPv6 address")?;
        inner
            .parse::<std::net::Ipv6Addr>()
            .map_err(|_| "invalid IPv6 address")?;
        match after {
            "" => (None, None),
            p => (
                None,
                Some(p.strip_prefix(':').ok_or("expected ':' after ']'")?),
            ),
        }
    } else {
        match r.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(r), None),
        }
    };
    if let Some(host) = host {
        if host.is_empty() {
            return Err("empty host name");
        }
        for label in host.split('.') {
            let b = label.as_bytes();
            if b.is_empty()
                || !b[0].is_ascii_alphanumeric()
                || !b[b.len() - 1].is_ascii_alphanumeric()
                || !b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'-')
            {
                return Err("host name labels must be letters, digits and inner '-'");
            }
        }
    }
    if let Some(p) = port
        && (p.is_empty()
            || p.len() > 5
            || !p.bytes().all(|b| b.is_ascii_digit())
            || p.parse::<u32>().map_or(true, |n| n > 65535))
    {
        return Err("port must be a number from 0 to 65535");
    }
    Ok(())
}

impl Reference {
    /// Parses and normalises a reference. A reference with neither tag nor digest keeps no tag;
    /// see [`Reference::with_default_tag`].
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if let Some(rest) = input.strip_prefix(LAYOUT_PREFIX) {
            return parse_layout(input, rest, LAYOUT_PREFIX);
        }
        if let Some(rest) = input.strip_prefix(ArchiveKind::Oci.prefix()) {
            return parse_layout(input, rest, ArchiveKind::Oci.prefix());
        }
        if let Some(rest) = input.strip_prefix(ArchiveKind::Docker.prefix()) {
            return parse_docker_archive(input, rest);
        }
        if let Some((scheme, rest)) = input.split_once("://")
            && !scheme.is_empty()
            && scheme.bytes().all(|b| b.is_ascii_alphabetic())
        {
            return Err(ReferenceError::Scheme {
                input: input.to_string(),
                scheme: scheme.to_string(),
                rest: rest.to_string(),
            });
        }
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => (r, Some(parse_digest(input, d)?)),
            None => (input, None),
        };
        let (name, tag) = split_tag(rest);
        if let Some(t) = tag {
            check_tag(t).map_err(|reason| ReferenceError::Tag {
                input: input.to_string(),
                tag: t.to_string(),
                reason,
            })?;
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.')
                    || first.contains(':')
                    || first == "localhost"
                    || first.starts_with('[') =>
            {
                (first.to_string(), path.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        check_registry(&registry).map_err(|reason| ReferenceError::Registry {
            input: input.to_string(),
            registry: registry.clone(),
            reason,
        })?;
        let registry = match registry.as_str() {
            "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
            _ => registry,
        };
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        for component in repository.split('/') {
            check_component(component).map_err(|reason| ReferenceError::Repository {
                input: input.to_string(),
                component: component.to_string(),
                reason,
            })?;
        }
        if repository.len() > MAX_NAME_LEN {
            return Err(ReferenceError::NameTooLong {
                input: input.to_string(),
                len: repository.len(),
            });
        }
        Ok(Reference {
            registry,
            repository,
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// A reference from parts that are already valid (registry and repository from another
    /// reference, a checked tag): used by the engine when re-targeting. Validates all parts.
    /// For a layout pseudo-registry (`oci:PATH`) the repository is ignored.
    pub fn from_parts(
        registry: &str,
        repository: &str,
        tag: Option<&str>,
        digest: Option<&Digest>,
    ) -> Result<Self, ReferenceError> {
        if let Some(path) = layout_path_of(registry) {
            return Reference::layout(path, tag, digest.cloned());
        }
        if let Some((kind, path)) = archive_of(registry) {
            let input = format!("{registry}:{repository}");
            let mut r = layout_reference(&input, path, tag, digest.cloned(), kind.prefix())?;
            if kind == ArchiveKind::Docker && !repository.is_empty() {
                r.repository = Reference::parse(repository)
                    .map_err(|e| archive_error(kind, &input, e.to_string()))?
                    .full_name();
            }
            return Ok(r);
        }
        let mut s = format!("{registry}/{repository}");
        if let Some(t) = tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        Reference::parse(&s)
    }

    /// A reference to the OCI image layout in folder `path` (relative to the working directory
    /// unless absolute), optionally to one tag (an `org.opencontainers.image.ref.name` of its
    /// `index.json`) and/or digest. The path is made absolute (`.` components and trailing `/`
    /// removed, `..` and symlinks kept as they are: resolving them needs the file system).
    pub fn layout(
        path: &Path,
        tag: Option<&str>,
        digest: Option<Digest>,
    ) -> Result<Self, ReferenceError> {
        layout_reference(&path.to_string_lossy(), path, tag, digest, LAYOUT_PREFIX)
    }

    /// The layout folder, when this reference names an OCI image layout.
    pub fn layout_path(&self) -> Option<&Path> {
        layout_path_of(&self.registry)
    }

    /// The archive kind and file, when this reference names an image archive.
    pub fn archive(&self) -> Option<(ArchiveKind, &Path)> {
        archive_of(&self.registry)
    }

    /// `registry/repository`, e.g. `docker.io/library/alpine` (an image name as in `RepoTags`).
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same reference with another repository: for a `docker-archive:`, whose repository is
    /// the name of its image (`registry/repository`, see [`Reference::image_name`]).
    pub fn with_image_name(&self, name: &str) -> Self {
        Reference {
            repository: name.to_string(),
            ..self.clone()
        }
    }

    /// Checks a tag on its own (e.g. from `--tag`).
    pub fn validate_tag(tag: &str) -> Result<(), ReferenceError> {
        check_tag(tag).map_err(|reason| ReferenceError::Tag {
            input: tag.to_string(),
            tag: tag.to_string(),
            reason,
        })
    }

    /// The registry as named (`docker.io` for Docker Hub), with port if any.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host and port to connect to (`registry-1.docker.io` for Docker Hub).
    pub fn api_host(&self) -> &str {
        api_host(&self.registry)
    }

    /// The repository path, e.g. `library/alpine`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if one was given.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if one was given.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What to ask the registry for: the digest if given, else the tag, else `latest`.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// This reference with tag `latest` when it has neither tag nor digest (as docker does).
    pub fn with_default_tag(mut self) -> Self {
        if self.tag.is_none() && self.digest.is_none() {
            self.tag = Some("latest".into());
        }
        self
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Self, ReferenceError> {
        Reference::validate_tag(tag)?;
        Ok(Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: Some(tag.to_string()),
            digest: None,
        })
    }

    /// The same repository pinned to `digest` (tag kept for display).
    pub fn with_digest(&self, digest: Digest) -> Self {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The same repository with neither tag nor digest.
    pub fn repository_only(&self) -> Self {
        Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: None,
        }
    }

    /// Whether the registry is on a loopback address (`localhost`, `127.0.0.0/8`, `[::1]`),
    /// which speaks plain HTTP without configuration, as docker and crane do.
    pub fn is_loopback(&self) -> bool {
        is_loopback_registry(&self.registry)
    }
}

/// The host to connect to for a registry name: Docker Hub's API host for `docker.io`.
pub fn api_host(registry: &str) -> &str {
    if registry == DOCKER_HUB {
        DOCKER_HUB_API
    } else {
        registry
    }
}

/// Whether a registry (`host[:port]`) is on loopback.
pub fn is_loopback_registry(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        registry.split(':').next().unwrap_or("")
    };
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((ArchiveKind::Docker, path)) = self.archive() {
            write!(f, "{}{}", ArchiveKind::Docker.prefix(), path.display())?;
            // Without a name the tag (a default `latest`) would read back as a name.
            if !self.repository.is_empty() {
                write!(f, ":{}", familiar_name(&self.repository))?;
                if let Some(t) = &self.tag {
                    write!(f, ":{t}")?;
                }
            }
            if let Some(d) = &self.digest {
                write!(f, "@{d}")?;
            }
            return Ok(());
        }
        let local = match self.archive() {
            Some((kind, path)) => Some((kind.prefix(), path)),
            None => self.layout_path().map(|p| (LAYOUT_PREFIX, p)),
        };
        if let Some((prefix, path)) = local {
            write!(f, "{prefix}{}", path.display())?;
            // A last component holding ':' or '@' would read back as a tag or digest.
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().contains([':', '@']))
            {
                f.write_str("/")?;
            }
        } else {
            write!(f, "{}/{}", self.registry, self.repository)?;
        }
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// `name[:tag]` split at the last `:` that follows the last `/` (a registry's port comes
/// before a `/`, so it is never taken for a tag). Shared by every reference syntax.
fn split_tag(rest: &str) -> (&str, Option<&str>) {
    let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
    match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    }
}

/// The digest part `d` of `input`, or the error naming both.
fn parse_digest(input: &str, d: &str) -> Result<Digest, ReferenceError> {
    Digest::parse(d).map_err(|source| ReferenceError::Digest {
        input: input.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests;
