//! Composing a multi-platform index from single-platform images (`crossdock index create`).
//!
//! This is `docker manifest create` + `docker manifest push` without Docker: each source is one
//! image manifest; its platform is read from its config blob (what the image says it runs on,
//! not what its tag suggests); every child not yet in the target repository is copied there
//! by digest with the copy engine, so the index never points at something missing; then the
//! index is pushed under the target tag(s), last, as the engine does with any top manifest.
//!
//! The index media type follows the children, because a client reading a Docker manifest list
//! expects Docker manifests in it: all Docker → Docker manifest list; all OCI, or a mix →
//! OCI index (the report says when it was a mix). Annotations exist only in the OCI schema, so
//! asking for them with Docker children is refused unless an OCI index is asked for.
//!
//! The index bytes are built here and are deterministic (same children in the same order, same
//! annotations → same digest), so composing again from unchanged sources is a no-op.

use std::collections::BTreeMap;
use std::io;

use futures_util::TryStreamExt;
use serde::Serialize;

use super::{CopyOptions, Engine, Source, Target, TargetStatus, error_chain};
use crate::digest::{Digest, VerifyingStream};
use crate::manifest::{Descriptor, Manifest, ManifestView, Platform, media_type};
use crate::registry::{RegistryError, Transport};

/// Config blobs larger than this are not read for their platform (real ones are a few KiB).
pub const MAX_CONFIG_SIZE: u64 = 4 * 1024 * 1024;

/// Why the platform of an image could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// The config blob could not be fetched.
    #[error("reading config blob {digest}: {error}")]
    Read {
        /// The config blob.
        digest: Digest,
        /// The transport error.
        #[source]
        error: Box<RegistryError>,
    },
    /// The config is implausibly large.
    #[error("config blob {digest} is {size} bytes, over the {MAX_CONFIG_SIZE}-byte limit")]
    TooLarge {
        /// The config blob.
        digest: Digest,
        /// Its declared size.
        size: u64,
    },
    /// The bytes failed verification or the stream broke.
    #[error("config blob {digest}: {source}")]
    Content {
        /// The config blob.
        digest: Digest,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// Not an image config (an artifact, or not JSON).
    #[error("config blob {digest} is not an image config with os and architecture: {source}")]
    NotAConfig {
        /// The config blob.
        digest: Digest,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// `os` or `architecture` is empty.
    #[error("config blob {digest} names no os or no architecture")]
    Missing {
        /// The config blob.
        digest: Digest,
    },
}

/// Reads the platform an image runs on from its config blob: `os`, `architecture`, `variant`,
/// `os.version` and `os.features` (top-level fields of both the OCI and the Docker config).
/// The blob is read whole (bounded by [`MAX_CONFIG_SIZE`]) and verified.
pub async fn read_platform(
    t: &dyn Transport,
    repo: &str,
    config: &Descriptor,
) -> Result<Platform, PlatformError> {
    let digest = &config.digest;
    if config.size > MAX_CONFIG_SIZE {
        return Err(PlatformError::TooLarge {
            digest: digest.clone(),
            size: config.size,
        });
    }
    let body = t
        .blob_get(repo, digest)
        .await
        .map_err(|error| PlatformError::Read {
            digest: digest.clone(),
            error: Box::new(error),
        })?;
    let chunks: Vec<bytes::Bytes> =
        VerifyingStream::new(body.stream, digest.clone(), Some(config.size))
            .try_collect()
            .await
            .map_err(|source| PlatformError::Content {
                digest: digest.clone(),
                source,
            })?;
    let mut p: Platform =
        serde_json::from_slice(&chunks.concat()).map_err(|source| PlatformError::NotAConfig {
            digest: digest.clone(),
            source,
        })?;
    if p.os.is_empty() || p.architecture.is_empty() {
        return Err(PlatformError::Missing {
            digest: digest.clone(),
        });
    }
    // Some builders write `"variant": ""`; it means no variant.
    p.variant = p.variant.filter(|v| !v.is_empty());
    p.os_version = p.os_version.filter(|v| !v.is_empty());
    Ok(p)
}

/// Why an index could not be composed.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// No source was given.
    #[error("an index needs at least one source image")]
    NoSources,
    /// A source could not be read.
    #[error("reading {reference}: {error}")]
    Source {
        /// The source reference.
        reference: String,
        /// The transport error.
        #[source]
        error: Box<RegistryError>,
    },
    /// A source is itself an index.
    #[error(
        "{reference} is a multi-platform {kind} ({count} entries), not a single-platform image; \
         name one of its platform images by digest instead (see `crossdock inspect --platforms {reference}`)"
    )]
    SourceIsIndex {
        /// The source reference.
        reference: String,
        /// "OCI index" or "Docker manifest list".
        kind: &'static str,
        /// Its number of entries.
        count: usize,
    },
    /// A source's platform could not be read.
    #[error("platform of {reference}: {error}")]
    Platform {
        /// The source reference.
        reference: String,
        /// Why.
        #[source]
        error: PlatformError,
    },
    /// Two sources run on the same platform.
    #[error("{first} and {second} are both {platform}: an index holds one image per platform")]
    DuplicatePlatform {
        /// The platform.
        platform: String,
        /// The first source with it.
        first: String,
        /// The second.
        second: String,
    },
    /// Annotations were asked for on a Docker manifest list.
    #[error(
        "every source is a Docker image, so the index would be a Docker manifest list, which has \
         no annotations; ask for an OCI index (--oci) to annotate it"
    )]
    DockerAnnotations,
    /// A child could not be copied into the target repository.
    #[error("copying {reference} into {target}: {error}")]
    Copy {
        /// The source reference.
        reference: String,
        /// The target repository.
        target: String,
        /// What went wrong (cause chain).
        error: String,
    },
    /// Checking or writing the index at the target failed.
    #[error("target {target}: {error}")]
    Target {
        /// The target reference.
        target: String,
        /// The transport error.
        #[source]
        error: Box<RegistryError>,
    },
}

/// How to compose.
#[derive(Clone, Default)]
pub struct ComposeOptions {
    /// Annotations on the index.
    pub annotations: BTreeMap<String, String>,
    /// Write an OCI index even when every child is a Docker manifest.
    pub oci: bool,
    /// How children are copied (progress, referrers); `platforms` and `dry_run` are ignored.
    pub copy: CopyOptions,
}

/// One image in the composed index.
#[derive(Debug, Clone, Serialize)]
pub struct ComposedChild {
    /// The source reference as given.
    pub source: String,
    /// Its manifest digest (the same at the target).
    pub digest: Digest,
    /// Its manifest media type.
    pub media_type: String,
    /// Its manifest size.
    pub size: u64,
    /// Its platform, from its config.
    pub platform: Platform,
    /// Whether it had to be copied into the target repository (false: it was there).
    pub copied: bool,
}

/// What composing did.
#[derive(Debug, Clone, Serialize)]
pub struct ComposeReport {
    /// The target repository.
    pub target: String,
    /// The tags pointed at the index.
    pub tags: Vec<String>,
    /// The index digest.
    pub digest: Digest,
    /// The index media type.
    pub media_type: String,
    /// Whether Docker and OCI children were mixed (the index is then an OCI index).
    pub mixed: bool,
    /// Whether every tag already pointed at this very index (nothing was written).
    pub up_to_date: bool,
    /// Tags that pointed at another manifest before, and what at.
    pub previous: Vec<(String, Digest)>,
    /// The children, in index order.
    pub children: Vec<ComposedChild>,
}

/// Two platforms an index cannot both hold. `linux/arm64` and `linux/arm64/v8` are the same
/// (v8 is arm64's only variant in practice; containerd normalises it the same way).
fn same_platform(a: &Platform, b: &Platform) -> bool {
    let variant = |p: &Platform| match (p.architecture.as_str(), p.variant.as_deref()) {
        ("arm64", None) => Some("v8".to_string()),
        (_, v) => v.map(str::to_string),
    };
    a.os == b.os
        && a.architecture == b.architecture
        && variant(a) == variant(b)
        && a.os_version == b.os_version
        && a.os_features == b.os_features
}

/// The index for `children` (descriptors with their platforms), in the order given, and
/// whether Docker and OCI children were mixed.
pub fn build_index(
    children: &[Descriptor],
    annotations: &BTreeMap<String, String>,
    oci: bool,
) -> Result<(Manifest, bool), ComposeError> {
    let docker = children
        .iter()
        .filter(|d| d.media_type == media_type::DOCKER_MANIFEST)
        .count();
    let mixed = docker > 0 && docker < children.len();
    let media_type = if docker == children.len() && !oci {
        if !annotations.is_empty() {
            return Err(ComposeError::DockerAnnotations);
        }
        media_type::DOCKER_MANIFEST_LIST
    } else {
        media_type::OCI_INDEX
    };
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct IndexDocument<'a> {
        schema_version: u32,
        media_type: &'a str,
        manifests: &'a [Descriptor],
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        annotations: &'a BTreeMap<String, String>,
    }
    let mut bytes = serde_json::to_vec_pretty(&IndexDocument {
        schema_version: 2,
        media_type,
        manifests: children,
        annotations,
    })
    .expect("an index serializes");
    bytes.push(b'\n');
    let m = Manifest::from_bytes(bytes.into(), Some(media_type))
        .expect("the index built here is a valid manifest");
    Ok((m, mixed))
}

/// Reads one source: its manifest (which must be a single image) and its platform.
async fn read_source(source: &Source) -> Result<(Manifest, Platform), ComposeError> {
    let reference = source.reference.to_string();
    let repo = source.reference.repository();
    let m = source
        .transport
        .manifest_get(repo, &source.reference.manifest_reference())
        .await
        .map_err(|error| ComposeError::Source {
            reference: reference.clone(),
            error: Box::new(error),
        })?;
    let platform = image_platform(source, &m).await?;
    Ok((m, platform))
}

/// The platform of `m`, read from `source`: its config's os and architecture. An index is
/// refused (an index entry must be a single image).
pub async fn image_platform(source: &Source, m: &Manifest) -> Result<Platform, ComposeError> {
    let reference = source.reference.to_string();
    let config = match m.view() {
        ManifestView::Index(i) => {
            return Err(ComposeError::SourceIsIndex {
                kind: if m.media_type() == media_type::DOCKER_MANIFEST_LIST {
                    "Docker manifest list"
                } else {
                    "OCI index"
                },
                count: i.manifests.len(),
                reference,
            });
        }
        ManifestView::Image(img) => img.config.clone(),
    };
    let repo = source.reference.repository();
    read_platform(&*source.transport, repo, &config)
        .await
        .map_err(|error| ComposeError::Platform { reference, error })
}

/// Composes an index of `sources` (single-platform images) in `target`'s repository and points
/// `target.tags` at it (none: it is put by digest only). Sources are read and checked before
/// anything is written; then missing children are copied; the index goes up last.
pub async fn compose(
    engine: &Engine,
    sources: &[Source],
    target: &Target,
    opts: &ComposeOptions,
) -> Result<ComposeReport, ComposeError> {
    if sources.is_empty() {
        return Err(ComposeError::NoSources);
    }
    let read = futures_util::future::try_join_all(sources.iter().map(read_source)).await?;
    let mut descriptors: Vec<Descriptor> = Vec::new();
    for (i, (m, platform)) in read.iter().enumerate() {
        if let Some(j) = read[..i]
            .iter()
            .position(|(_, p)| same_platform(p, platform))
        {
            return Err(ComposeError::DuplicatePlatform {
                platform: platform.to_string(),
                first: sources[j].reference.to_string(),
                second: sources[i].reference.to_string(),
            });
        }
        descriptors.push(Descriptor {
            platform: Some(platform.clone()),
            ..m.descriptor()
        });
    }
    let (index, mixed) = build_index(&descriptors, &opts.annotations, opts.oci)?;
    let target_name = target.display();
    let repo = target.repo();
    let mut report = ComposeReport {
        target: target_name.clone(),
        tags: target.tags.clone(),
        digest: index.digest().clone(),
        media_type: index.media_type().to_string(),
        mixed,
        up_to_date: false,
        previous: Vec::new(),
        children: sources
            .iter()
            .zip(&read)
            .map(|(s, (m, p))| ComposedChild {
                source: s.reference.to_string(),
                digest: m.digest().clone(),
                media_type: m.media_type().to_string(),
                size: m.size(),
                platform: p.clone(),
                copied: false,
            })
            .collect(),
    };
    let target_error = |error| ComposeError::Target {
        target: target_name.clone(),
        error: Box::new(error),
    };

    // Cheapest first: tags already at this very index mean its children are there too.
    let names: Vec<String> = if target.tags.is_empty() {
        vec![index.digest().to_string()]
    } else {
        target.tags.clone()
    };
    if index_in_place(target, &index, &names, &mut report.previous)
        .await
        .map_err(target_error)?
    {
        report.up_to_date = true;
        return Ok(report);
    }
    let copied = copy_children(engine, sources, &read, target, opts).await?;
    for (child, copied) in report.children.iter_mut().zip(copied) {
        child.copied = copied;
    }

    // The index, last.
    for name in &names {
        target
            .transport
            .manifest_put(repo, name, &index)
            .await
            .map_err(target_error)?;
    }
    Ok(report)
}

/// Whether every one of `names` (tags, or the index digest) already points at `index` at
/// `target`; tags pointing elsewhere are added to `previous`.
async fn index_in_place(
    target: &Target,
    index: &Manifest,
    names: &[String],
    previous: &mut Vec<(String, Digest)>,
) -> Result<bool, RegistryError> {
    let mut all_there = true;
    for name in names {
        match target.transport.manifest_head(target.repo(), name).await? {
            Some(h) if &h.digest == index.digest() => {}
            Some(h) => {
                all_there = false;
                if !target.tags.is_empty() {
                    previous.push((name.clone(), h.digest));
                }
            }
            None => all_there = false,
        }
    }
    Ok(all_there)
}

/// Copies every child (`read`: each source's manifest) into `target`'s repository by digest,
/// untagged; for each, whether it had to be copied.
async fn copy_children(
    engine: &Engine,
    sources: &[Source],
    read: &[(Manifest, Platform)],
    target: &Target,
    opts: &ComposeOptions,
) -> Result<Vec<bool>, ComposeError> {
    let copy_opts = CopyOptions {
        platforms: Vec::new(),
        dry_run: false,
        ..opts.copy.clone()
    };
    let child_target = Target {
        tags: Vec::new(),
        ..target.clone()
    };
    let target_name = target.display();
    let copies = sources.iter().zip(read).map(|(s, (m, _))| {
        let source = Source {
            transport: s.transport.clone(),
            reference: s.reference.with_digest(m.digest().clone()),
        };
        let (child_target, copy_opts, target_name) = (&child_target, &copy_opts, &target_name);
        async move {
            let failed = |error: String| ComposeError::Copy {
                reference: s.reference.to_string(),
                target: target_name.clone(),
                error,
            };
            let r = engine
                .copy(&source, std::slice::from_ref(child_target), copy_opts)
                .await
                .map_err(|e| failed(error_chain(&e)))?;
            match &r.targets[0].status {
                TargetStatus::Failed(e) => Err(failed(error_chain(&**e))),
                TargetStatus::Copied => Ok(true),
                _ => Ok(false),
            }
        }
    });
    futures_util::future::try_join_all(copies).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(mt: &str, n: u8, platform: &str) -> Descriptor {
        Descriptor {
            media_type: mt.into(),
            digest: Digest::sha256_of(&[n]),
            size: 100 + n as u64,
            platform: Some(Platform::parse(platform).unwrap()),
            urls: vec![],
            annotations: BTreeMap::new(),
            artifact_type: None,
        }
    }

    #[test]
    fn media_type_follows_the_children() {
        let none = BTreeMap::new();
        let docker = [
            child(media_type::DOCKER_MANIFEST, 1, "linux/amd64"),
            child(media_type::DOCKER_MANIFEST, 2, "linux/arm64"),
        ];
        let (m, mixed) = build_index(&docker, &none, false).unwrap();
        assert_eq!(m.media_type(), media_type::DOCKER_MANIFEST_LIST);
        assert!(!mixed);
        let (m, _) = build_index(&docker, &none, true).unwrap();
        assert_eq!(m.media_type(), media_type::OCI_INDEX);
        let oci = [
            child(media_type::OCI_MANIFEST, 1, "linux/amd64"),
            child(media_type::OCI_MANIFEST, 2, "linux/arm/v7"),
        ];
        let (m, mixed) = build_index(&oci, &none, false).unwrap();
        assert_eq!(m.media_type(), media_type::OCI_INDEX);
        assert!(!mixed);
        let mix = [docker[0].clone(), oci[1].clone()];
        let (m, mixed) = build_index(&mix, &none, false).unwrap();
        assert_eq!(m.media_type(), media_type::OCI_INDEX);
        assert!(mixed);
        let ManifestView::Index(i) = m.view() else {
            panic!("an index")
        };
        assert_eq!(i.manifests, mix, "entries kept in order, with platforms");
    }

    #[test]
    fn annotations_need_an_oci_index_and_digests_are_deterministic() {
        let mut ann = BTreeMap::new();
        ann.insert(
            "org.opencontainers.image.source".to_string(),
            "x".to_string(),
        );
        let docker = [child(media_type::DOCKER_MANIFEST, 1, "linux/amd64")];
        assert!(matches!(
            build_index(&docker, &ann, false),
            Err(ComposeError::DockerAnnotations)
        ));
        let (a, _) = build_index(&docker, &ann, true).unwrap();
        let (b, _) = build_index(&docker, &ann, true).unwrap();
        assert_eq!(a.digest(), b.digest());
        let doc: serde_json::Value = serde_json::from_slice(a.bytes()).unwrap();
        assert_eq!(doc["annotations"]["org.opencontainers.image.source"], "x");
        assert_eq!(doc["schemaVersion"], 2);
        assert_eq!(doc["manifests"][0]["platform"]["architecture"], "amd64");
    }

    #[test]
    fn arm64_without_variant_is_arm64_v8() {
        let p = |s| Platform::parse(s).unwrap();
        assert!(same_platform(&p("linux/arm64"), &p("linux/arm64/v8")));
        assert!(!same_platform(&p("linux/arm/v6"), &p("linux/arm/v7")));
        assert!(!same_platform(&p("linux/arm"), &p("linux/arm/v7")));
        let mut win = p("windows/amd64");
        win.os_version = Some("10.0.17763.1".into());
        assert!(!same_platform(&win, &p("windows/amd64")));
    }
}
