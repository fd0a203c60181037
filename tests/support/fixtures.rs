//! Deterministic image fixtures: random layers, configs, image manifests and indexes in both
//! the OCI and the Docker media types.
//!
//! Everything is derived from a seed, so a failing test reproduces byte for byte, and two
//! tests with different seeds never share blobs by accident. Manifests are pretty-printed
//! with sorted keys on purpose: a copier that re-serializes instead of copying the wire bytes
//! changes them, and the digest check catches it. Layers are random bytes, not tarballs;
//! registries and copiers never look inside.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const DOCKER_MANIFEST_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
pub(crate) const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub(crate) const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Every manifest media type; distribution answers 404 for an OCI index unless it is listed.
pub(crate) const ACCEPT_ALL: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// `sha256:<hex>` of `bytes`.
pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// `n` random bytes from `seed`.
pub(crate) fn random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = vec![0u8; n];
    rng.fill_bytes(&mut out);
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Oci,
    Docker,
}

impl Format {
    pub(crate) fn manifest_type(self) -> &'static str {
        match self {
            Format::Oci => OCI_MANIFEST,
            Format::Docker => DOCKER_MANIFEST,
        }
    }
    pub(crate) fn index_type(self) -> &'static str {
        match self {
            Format::Oci => OCI_INDEX,
            Format::Docker => DOCKER_MANIFEST_LIST,
        }
    }
    pub(crate) fn config_type(self) -> &'static str {
        match self {
            Format::Oci => OCI_CONFIG,
            Format::Docker => DOCKER_CONFIG,
        }
    }
    pub(crate) fn layer_type(self) -> &'static str {
        match self {
            Format::Oci => OCI_LAYER,
            Format::Docker => DOCKER_LAYER,
        }
    }
}

/// A manifest as it travels: exact bytes, media type, digest of the bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RawManifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: String,
}

impl RawManifest {
    /// Serialize `value` (pretty, sorted keys) and digest it.
    pub(crate) fn from_json(media_type: &str, value: &Value) -> RawManifest {
        let bytes = serde_json::to_vec_pretty(value).expect("serialize manifest");
        RawManifest::from_bytes(media_type, bytes)
    }

    pub(crate) fn from_bytes(media_type: &str, bytes: Vec<u8>) -> RawManifest {
        RawManifest {
            digest: sha256_digest(&bytes),
            media_type: media_type.to_owned(),
            bytes,
        }
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).expect("manifest is JSON")
    }

    /// A descriptor for this manifest (for an index), with an optional platform.
    pub(crate) fn descriptor(&self, platform: Option<&str>) -> Value {
        let mut d = json!({
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.bytes.len(),
        });
        if let Some(p) = platform {
            d["platform"] = platform_json(p);
        }
        d
    }
}

/// `"linux/arm64/v8"` → `{"architecture":"arm64","os":"linux","variant":"v8"}`.
pub(crate) fn platform_json(platform: &str) -> Value {
    let mut parts = platform.split('/');
    let os = parts.next().expect("platform os");
    let arch = parts
        .next()
        .unwrap_or_else(|| panic!("platform {platform:?} needs os/arch"));
    let mut v = json!({ "architecture": arch, "os": os });
    if let Some(variant) = parts.next() {
        v["variant"] = json!(variant);
    }
    v
}

/// An image config for `platform` whose rootfs lists one diff_id per layer. Layers are not
/// real tarballs, so the diff_id is the digest of the layer bytes themselves.
pub(crate) fn config_json(platform: &str, layers: &[&[u8]]) -> Value {
    let mut config = platform_json(platform);
    config["created"] = json!("2024-01-01T00:00:00Z");
    config["config"] = json!({ "Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/sh"] });
    config["rootfs"] = json!({
        "type": "layers",
        "diff_ids": layers.iter().map(|l| sha256_digest(l)).collect::<Vec<_>>(),
    });
    config
}

fn blob_descriptor(media_type: &str, bytes: &[u8]) -> Value {
    json!({ "mediaType": media_type, "digest": sha256_digest(bytes), "size": bytes.len() })
}

/// An image manifest naming `config` and `layers` (the blobs' bytes).
pub(crate) fn image_manifest(format: Format, config: &[u8], layers: &[&[u8]]) -> RawManifest {
    let value = json!({
        "schemaVersion": 2,
        "mediaType": format.manifest_type(),
        "config": blob_descriptor(format.config_type(), config),
        "layers": layers.iter().map(|l| blob_descriptor(format.layer_type(), l)).collect::<Vec<_>>(),
    });
    RawManifest::from_json(format.manifest_type(), &value)
}

/// An index (OCI) or manifest list (Docker) of `children` with their platforms.
pub(crate) fn index_manifest(format: Format, children: &[(&RawManifest, &str)]) -> RawManifest {
    let value = json!({
        "schemaVersion": 2,
        "mediaType": format.index_type(),
        "manifests": children.iter().map(|(m, p)| m.descriptor(Some(p))).collect::<Vec<_>>(),
    });
    RawManifest::from_json(format.index_type(), &value)
}

/// What to build; see [`ImageSpec::build`].
#[derive(Clone, Debug)]
pub(crate) struct ImageSpec {
    pub format: Format,
    /// `os/arch[/variant]`, e.g. `linux/amd64`, `linux/arm64/v8`, `linux/arm/v7`.
    pub platforms: Vec<String>,
    /// Wrap the image manifests in an index / manifest list. Only a spec with exactly one
    /// platform may set this to false.
    pub with_index: bool,
    pub layers_per_platform: usize,
    pub layer_size: usize,
    /// The first layer of every platform is the same blob (as with a common base image).
    pub shared_base_layer: bool,
    pub seed: u64,
}

impl ImageSpec {
    /// A multi-platform image (index / manifest list); 2 layers of 4 KiB per platform.
    pub(crate) fn multi(format: Format, platforms: &[&str]) -> ImageSpec {
        ImageSpec {
            format,
            platforms: platforms.iter().map(|p| p.to_string()).collect(),
            with_index: true,
            layers_per_platform: 2,
            layer_size: 4096,
            shared_base_layer: false,
            seed: 1,
        }
    }

    /// A single-platform image: one image manifest, no index.
    pub(crate) fn single(format: Format, platform: &str) -> ImageSpec {
        ImageSpec {
            with_index: false,
            ..ImageSpec::multi(format, &[platform])
        }
    }

    pub(crate) fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    pub(crate) fn layers(mut self, n: usize) -> Self {
        self.layers_per_platform = n;
        self
    }
    pub(crate) fn layer_size(mut self, bytes: usize) -> Self {
        self.layer_size = bytes;
        self
    }
    pub(crate) fn shared_base_layer(mut self, shared: bool) -> Self {
        self.shared_base_layer = shared;
        self
    }

    pub(crate) fn build(&self) -> BuiltImage {
        assert!(
            self.with_index || self.platforms.len() == 1,
            "an image without index has exactly one platform"
        );
        // Distinct sub-seeds per (platform, layer) so content never repeats unless asked to.
        let sub_seed = |platform: usize, layer: usize| {
            self.seed
                .wrapping_mul(1_000_003)
                .wrapping_add((platform as u64 + 1) * 10_007 + layer as u64)
        };
        let mut blobs = BTreeMap::new();
        let mut images = Vec::new();
        for (pi, platform) in self.platforms.iter().enumerate() {
            let layers: Vec<Vec<u8>> = (0..self.layers_per_platform)
                .map(|li| {
                    let platform_part = if li == 0 && self.shared_base_layer {
                        0
                    } else {
                        pi + 1
                    };
                    random_bytes(sub_seed(platform_part, li), self.layer_size)
                })
                .collect();
            let layer_refs: Vec<&[u8]> = layers.iter().map(Vec::as_slice).collect();
            let config = serde_json::to_vec_pretty(&config_json(platform, &layer_refs))
                .expect("serialize config");
            let manifest = image_manifest(self.format, &config, &layer_refs);
            let image = PlatformImage {
                platform: platform.clone(),
                config_digest: sha256_digest(&config),
                layer_digests: layers.iter().map(|l| sha256_digest(l)).collect(),
                manifest,
            };
            blobs.insert(image.config_digest.clone(), config);
            for l in layers {
                blobs.insert(sha256_digest(&l), l);
            }
            images.push(image);
        }
        let index = self.with_index.then(|| {
            let children: Vec<(&RawManifest, &str)> = images
                .iter()
                .map(|i| (&i.manifest, i.platform.as_str()))
                .collect();
            index_manifest(self.format, &children)
        });
        BuiltImage {
            format: self.format,
            index,
            manifests: images.iter().map(|i| i.manifest.clone()).collect(),
            images,
            blobs,
        }
    }
}

/// One platform's image inside a [`BuiltImage`].
#[derive(Clone, Debug)]
pub(crate) struct PlatformImage {
    pub platform: String,
    pub manifest: RawManifest,
    pub config_digest: String,
    pub layer_digests: Vec<String>,
}

/// The output of [`ImageSpec::build`]: everything a registry needs to serve the image.
#[derive(Clone, Debug)]
pub(crate) struct BuiltImage {
    pub format: Format,
    /// The index / manifest list, if the spec asked for one.
    pub index: Option<RawManifest>,
    /// The image manifests, in the spec's platform order (same order as `images`).
    pub manifests: Vec<RawManifest>,
    pub images: Vec<PlatformImage>,
    /// Every config and layer blob, by digest (shared layers appear once).
    pub blobs: BTreeMap<String, Vec<u8>>,
}

impl BuiltImage {
    /// The manifest a tag points at: the index if there is one, else the single manifest.
    pub(crate) fn top(&self) -> &RawManifest {
        self.index.as_ref().unwrap_or(&self.manifests[0])
    }

    /// Digest of [`top`](Self::top).
    pub(crate) fn digest(&self) -> &str {
        &self.top().digest
    }

    /// The image manifest for `platform` (e.g. `linux/arm64/v8`).
    pub(crate) fn manifest_for(&self, platform: &str) -> &RawManifest {
        &self
            .images
            .iter()
            .find(|i| i.platform == platform)
            .unwrap_or_else(|| panic!("no platform {platform} in image"))
            .manifest
    }

    /// Sum of all blob sizes (what a full copy must transfer, manifests aside).
    pub(crate) fn total_blob_bytes(&self) -> usize {
        self.blobs.values().map(Vec::len).sum()
    }
}
