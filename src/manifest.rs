//! Manifests as the registry served them: raw bytes, media type, digest — plus read-only views.
//!
//! The digest of a manifest is the hash of its exact bytes, so a mirror that re-serialises JSON
//! changes every digest and breaks every pin and signature downstream. A [`Manifest`] therefore
//! keeps the bytes it was built from and is pushed with those bytes, never re-encoded. The typed
//! [`ManifestView`] exists only to *read* children (config, layers, index entries, subject).
//!
//! Four media types are understood: OCI image manifest and index, Docker v2 schema 2 manifest and
//! manifest list. Docker schema 1 is refused (it is deprecated, signed over re-encoded JSON and
//! cannot be mirrored by digest). Anything over [`MAX_MANIFEST_SIZE`] is refused, as registries do.

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::digest::{Digest, DigestError};

/// Manifests larger than this are refused (distribution's limit; OCI recommends it).
pub const MAX_MANIFEST_SIZE: usize = 4 * 1024 * 1024;

/// Media type strings crossdock knows.
pub mod media_type {
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// Docker image manifest v2 schema 2.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker manifest list.
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    /// Docker schema 1 (refused).
    pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
    /// Docker schema 1, signed (refused).
    pub const DOCKER_SCHEMA1_SIGNED: &str =
        "application/vnd.docker.distribution.manifest.v1+prettyjws";
    /// OCI image config.
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// Docker image config.
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    /// OCI empty descriptor (artifacts).
    pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
    /// Docker foreign (non-distributable) layer.
    pub const DOCKER_FOREIGN_LAYER: &str =
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
    /// OCI non-distributable layer prefix.
    pub const OCI_NONDISTRIBUTABLE_PREFIX: &str =
        "application/vnd.oci.image.layer.nondistributable";

    /// The `Accept` header value for manifest requests: all four types, so that distribution
    /// neither hides an OCI index (404) nor swaps a manifest list for its amd64 image.
    pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
        application/vnd.docker.distribution.manifest.list.v2+json, \
        application/vnd.oci.image.manifest.v1+json, \
        application/vnd.docker.distribution.manifest.v2+json";

    /// Whether `mt` names an index (OCI index or Docker manifest list).
    pub fn is_index(mt: &str) -> bool {
        mt == OCI_INDEX || mt == DOCKER_MANIFEST_LIST
    }

    /// Whether `mt` names an image manifest (OCI or Docker).
    pub fn is_image(mt: &str) -> bool {
        mt == OCI_MANIFEST || mt == DOCKER_MANIFEST
    }

    /// Whether `mt` is any manifest type crossdock copies.
    pub fn is_manifest(mt: &str) -> bool {
        is_index(mt) || is_image(mt)
    }
}

/// Why bytes could not be taken as a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Over [`MAX_MANIFEST_SIZE`].
    #[error("manifest is {size} bytes, over the {MAX_MANIFEST_SIZE}-byte limit")]
    TooLarge {
        /// Its size.
        size: usize,
    },
    /// Docker schema 1.
    #[error(
        "manifest is Docker schema 1 ({media_type}), which is deprecated and cannot be copied by digest; \
         ask the publisher for a schema 2 or OCI image"
    )]
    Schema1 {
        /// The media type found.
        media_type: String,
    },
    /// A media type crossdock does not copy.
    #[error("unsupported manifest media type {media_type:?}")]
    UnsupportedMediaType {
        /// The media type found.
        media_type: String,
    },
    /// No media type in the body nor in `Content-Type`.
    #[error("manifest has no mediaType field and no usable Content-Type")]
    NoMediaType,
    /// The body's `mediaType` disagrees with what the registry said.
    #[error("manifest body says mediaType {body:?} but it was served as {header:?}")]
    MediaTypeConflict {
        /// From the body.
        body: String,
        /// From Content-Type.
        header: String,
    },
    /// Not valid JSON of the expected shape.
    #[error("malformed {media_type} manifest: {source}")]
    Malformed {
        /// The media type it claims.
        media_type: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The bytes do not match the digest they were asked for or announced with.
    #[error("manifest content does not match its digest: {0}")]
    Digest(#[from] DigestError),
}

/// A content descriptor: what a manifest says about one of its children.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Platform of an index entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Where non-distributable content can be fetched from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Artifact type of an artifact manifest referenced from an index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    /// Whether this is a non-distributable ("foreign") layer that registries usually do not hold.
    pub fn is_foreign(&self) -> bool {
        self.media_type == media_type::DOCKER_FOREIGN_LAYER
            || self
                .media_type
                .starts_with(media_type::OCI_NONDISTRIBUTABLE_PREFIX)
    }
}

/// The platform an image runs on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct Platform {
    /// Operating system, e.g. `linux`.
    pub os: String,
    /// CPU architecture, e.g. `arm64`.
    pub architecture: String,
    /// CPU variant, e.g. `v8`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// OS version (Windows).
    #[serde(
        default,
        rename = "os.version",
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// OS features (Windows).
    #[serde(default, rename = "os.features", skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
}

impl Platform {
    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &&str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        };
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                ..Default::default()
            }),
            [os, arch, variant] if ok(os) && ok(arch) && ok(variant) => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(variant.to_string()),
                ..Default::default()
            }),
            _ => Err(format!(
                "invalid platform {s:?}: expected os/arch or os/arch/variant"
            )),
        }
    }

    /// Whether this platform (of an index entry) is selected by `wanted` (from the user): os and
    /// architecture must be equal; a variant is compared only when `wanted` names one.
    pub fn matches(&self, wanted: &Platform) -> bool {
        self.os == wanted.os
            && self.architecture == wanted.architecture
            && (wanted.variant.is_none() || self.variant == wanted.variant)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// An image manifest (OCI or Docker v2 schema 2), read-only.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// The config blob.
    pub config: Descriptor,
    /// The layer blobs, in order.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// The manifest this one refers to (OCI referrers).
    #[serde(default)]
    pub subject: Option<Descriptor>,
    /// Artifact type.
    #[serde(default)]
    pub artifact_type: Option<String>,
}

/// An index (OCI image index or Docker manifest list), read-only.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    /// The child manifests.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    /// The manifest this one refers to (OCI referrers).
    #[serde(default)]
    pub subject: Option<Descriptor>,
    /// Artifact type.
    #[serde(default)]
    pub artifact_type: Option<String>,
}

/// The typed reading of a manifest.
// Both variants are a few hundred bytes and live once per fetched manifest: boxing buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum ManifestView {
    /// A single image.
    Image(ImageManifest),
    /// An index of manifests.
    Index(ImageIndex),
}

/// A manifest exactly as fetched: its bytes, media type and digest (computed from the bytes).
#[derive(Clone)]
pub struct Manifest {
    bytes: Bytes,
    media_type: String,
    digest: Digest,
    view: ManifestView,
}

impl fmt::Debug for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manifest")
            .field("media_type", &self.media_type)
            .field("digest", &self.digest)
            .field("size", &self.bytes.len())
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    schema_version: Option<i64>,
    #[serde(default)]
    manifests: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    config: Option<serde::de::IgnoredAny>,
}

impl Manifest {
    /// Takes `bytes` as a manifest. `content_type` is what the registry (or layout) said, used
    /// when the body has no `mediaType` (optional in OCI). The digest is computed with sha256;
    /// use [`Manifest::from_bytes_expecting`] when the digest is known in advance.
    pub fn from_bytes(bytes: Bytes, content_type: Option<&str>) -> Result<Self, ManifestError> {
        if bytes.len() > MAX_MANIFEST_SIZE {
            return Err(ManifestError::TooLarge { size: bytes.len() });
        }
        let header = content_type
            .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
            .filter(|c| !c.is_empty());
        let probe: Probe =
            serde_json::from_slice(&bytes).map_err(|source| ManifestError::Malformed {
                media_type: header.clone().unwrap_or_else(|| "unknown".into()),
                source,
            })?;
        let body_mt = probe.media_type.clone();
        if probe.schema_version == Some(1)
            || [&body_mt, &header]
                .into_iter()
                .flatten()
                .any(|m| m == media_type::DOCKER_SCHEMA1 || m == media_type::DOCKER_SCHEMA1_SIGNED)
        {
            return Err(ManifestError::Schema1 {
                media_type: body_mt
                    .or(header)
                    .unwrap_or_else(|| media_type::DOCKER_SCHEMA1.into()),
            });
        }
        let media_type = match (body_mt, header) {
            (Some(b), Some(h)) if media_type::is_manifest(&h) && b != h => {
                return Err(ManifestError::MediaTypeConflict { body: b, header: h });
            }
            (Some(b), _) => b,
            (None, Some(h)) if media_type::is_manifest(&h) => h,
            // OCI allows omitting mediaType: infer from the shape.
            (None, _) if probe.manifests.is_some() => media_type::OCI_INDEX.to_string(),
            (None, _) if probe.config.is_some() => media_type::OCI_MANIFEST.to_string(),
            (None, _) => return Err(ManifestError::NoMediaType),
        };
        let malformed = |source| ManifestError::Malformed {
            media_type: media_type.clone(),
            source,
        };
        let view = if media_type::is_index(&media_type) {
            // Both index formats require `manifests`. `ImageIndex` defaults it (referrers
            // responses may leave it out), so without this check an image manifest served under
            // an index type (found by fuzzing) would be read, and copied, as an empty index.
            if probe.manifests.is_none() {
                return Err(malformed(serde::de::Error::missing_field("manifests")));
            }
            // `filter_index` rewrites an index through `serde_json::Value`, which refuses what
            // the typed reading skips over in unknown fields (a number beyond f64, `1e400`,
            // found by fuzzing). Such an index is refused here, with serde_json's position,
            // rather than failing as an internal error when a platform filter applies.
            serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&bytes)
                .map_err(malformed)?;
            ManifestView::Index(serde_json::from_slice(&bytes).map_err(malformed)?)
        } else if media_type::is_image(&media_type) {
            ManifestView::Image(serde_json::from_slice(&bytes).map_err(malformed)?)
        } else {
            return Err(ManifestError::UnsupportedMediaType { media_type });
        };
        let digest = Digest::sha256_of(&bytes);
        Ok(Manifest {
            bytes,
            media_type,
            digest,
            view,
        })
    }

    /// Like [`Manifest::from_bytes`], but the bytes must hash to `expected` (whose algorithm is
    /// used), and the manifest's digest is `expected`.
    pub fn from_bytes_expecting(
        bytes: Bytes,
        content_type: Option<&str>,
        expected: &Digest,
    ) -> Result<Self, ManifestError> {
        if bytes.len() > MAX_MANIFEST_SIZE {
            return Err(ManifestError::TooLarge { size: bytes.len() });
        }
        expected.verify(&bytes)?;
        let mut m = Manifest::from_bytes(bytes, content_type)?;
        m.digest = expected.clone();
        Ok(m)
    }

    /// The exact bytes, to be pushed as they are.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The media type.
    pub fn media_type(&self) -> &str {
        &self.media_type
    }

    /// The digest of the bytes.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The size in bytes.
    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// The typed reading.
    pub fn view(&self) -> &ManifestView {
        &self.view
    }

    /// Whether this is an index.
    pub fn is_index(&self) -> bool {
        matches!(self.view, ManifestView::Index(_))
    }

    /// A descriptor pointing at this manifest.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size(),
            platform: None,
            urls: vec![],
            annotations: BTreeMap::new(),
            artifact_type: None,
        }
    }

    /// The subject (referrers API) of this manifest, if any.
    pub fn subject(&self) -> Option<&Descriptor> {
        match &self.view {
            ManifestView::Image(m) => m.subject.as_ref(),
            ManifestView::Index(i) => i.subject.as_ref(),
        }
    }

    /// A new index holding only the entries of this index for which `keep` is true, each entry
    /// kept exactly as it was, every other field of the document untouched. The result has a new
    /// digest — the caller must say so. Returns `None` when this is not an index.
    pub fn filter_index(&self, keep: impl Fn(&Descriptor) -> bool) -> Option<Manifest> {
        let ManifestView::Index(index) = &self.view else {
            return None;
        };
        let mut doc: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&self.bytes).ok()?;
        let raw_entries = doc.get("manifests")?.as_array()?.clone();
        let kept: Vec<serde_json::Value> = raw_entries
            .into_iter()
            .zip(index.manifests.iter())
            .filter(|(_, d)| keep(d))
            .map(|(v, _)| v)
            .collect();
        doc.insert("manifests".into(), serde_json::Value::Array(kept));
        let mut bytes = serde_json::to_vec_pretty(&doc).ok()?;
        bytes.push(b'\n');
        Manifest::from_bytes(Bytes::from(bytes), Some(&self.media_type)).ok()
    }
}

#[cfg(test)]
mod tests;
