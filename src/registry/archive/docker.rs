//! The `docker save` format: `manifest.json`, and the manifest crossdock makes for an image
//! that has none.
//!
//! `manifest.json` is a list of `{Config, RepoTags, Layers}`, each a file name in the tar (the
//! config JSON; one tar per layer, plain or gzip, in order). Registries need a manifest, so
//! reading such an image means writing one ([`synthesize`]): a Docker v2 schema 2 manifest
//! (the format `docker push` would write for it) whose config is the config file and whose
//! layers are the layer files as they are, with the media type their bytes show. A plain
//! layer's digest is its `diff_id` from the config (the digest of the uncompressed tar: the
//! copy engine verifies the bytes against it); a compressed one is hashed here. The result
//! is deterministic: the same archive always gives the same manifest and digest — but not the
//! digest of the image the archive was saved from, which was never in it.

use std::io::Read;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::ArchiveError;
use super::MAX_METADATA_SIZE;
use super::tarfile::{Span, TarIndex};
use crate::digest::{Algorithm, Digest, Hasher};
use crate::manifest::{ImageManifest, Manifest, media_type};

/// The file listing the images of a `docker save` archive.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Docker's uncompressed layer.
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker's gzip layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// One image of `manifest.json`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SavedImage {
    /// The config file's name in the tar.
    pub config: String,
    /// Its names, `name:tag` (`null` for an untagged image).
    #[serde(default)]
    pub repo_tags: Option<Vec<String>>,
    /// The layer files' names, base first.
    pub layers: Vec<String>,
}

/// Reads `manifest.json`.
pub fn read_saved_images(tar: &TarIndex) -> Result<Vec<SavedImage>, ArchiveError> {
    let bytes = tar.read(MANIFEST_FILE, MAX_METADATA_SIZE)?;
    let images: Vec<SavedImage> = serde_json::from_slice(&bytes).map_err(|e| {
        ArchiveError::not_an_image(tar.path(), &format!("{MANIFEST_FILE} is malformed: {e}"))
    })?;
    if images.is_empty() {
        return Err(ArchiveError::not_an_image(
            tar.path(),
            &format!("{MANIFEST_FILE} lists no image"),
        ));
    }
    Ok(images)
}

/// A manifest made for a saved image, and where its blobs are.
#[derive(Debug)]
pub struct Synthesized {
    /// The manifest (Docker v2 schema 2).
    pub manifest: Manifest,
    /// Every blob it names (config first), with its place in the tar.
    pub blobs: Vec<(Digest, Span)>,
}

#[derive(Deserialize)]
struct ConfigProbe {
    rootfs: RootFs,
}

#[derive(Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

/// Makes the manifest of `image` (blocking: a compressed layer is read once to hash it).
pub fn synthesize(tar: &TarIndex, image: &SavedImage) -> Result<Synthesized, ArchiveError> {
    let path = tar.path();
    let config = tar.read(&image.config, MAX_METADATA_SIZE)?;
    let config_span = tar.get(&image.config).expect("just read");
    let probe: ConfigProbe = serde_json::from_slice(&config).map_err(|e| {
        ArchiveError::not_an_image(
            path,
            &format!("{} is not an image config: {e}", image.config),
        )
    })?;
    let diff_ids = probe.rootfs.diff_ids;
    if diff_ids.len() != image.layers.len() {
        return Err(ArchiveError::not_an_image(
            path,
            &format!(
                "{} lists {} layers, its config {} diff_ids",
                MANIFEST_FILE,
                image.layers.len(),
                diff_ids.len()
            ),
        ));
    }
    let config_digest = Digest::sha256_of(&config);
    let mut blobs = vec![(config_digest.clone(), config_span)];
    let mut layers = Vec::new();
    for (name, diff_id) in image.layers.iter().zip(&diff_ids) {
        let span = tar
            .get(name)
            .ok_or_else(|| ArchiveError::missing(path, name))?;
        let mut magic = [0u8; 4];
        let n = tar.peek(span, &mut magic)?;
        let (digest, mt) = match &magic[..n] {
            [0x1f, 0x8b, ..] => (hash(tar, span)?, DOCKER_LAYER_GZIP),
            [0x28, 0xb5, 0x2f, 0xfd] => {
                return Err(ArchiveError::not_an_image(
                    path,
                    &format!("layer {name} is zstd-compressed, which a docker archive cannot say"),
                ));
            }
            _ => {
                let d = Digest::parse(diff_id).map_err(|e| {
                    ArchiveError::not_an_image(path, &format!("diff_id {diff_id:?}: {e}"))
                })?;
                (d, DOCKER_LAYER)
            }
        };
        layers.push(json!({"mediaType": mt, "size": span.size, "digest": digest}));
        blobs.push((digest, span));
    }
    let doc = json!({
        "schemaVersion": 2,
        "mediaType": media_type::DOCKER_MANIFEST,
        "config": {
            "mediaType": media_type::DOCKER_CONFIG,
            "size": config.len(),
            "digest": config_digest,
        },
        "layers": layers,
    });
    let bytes = serde_json::to_vec_pretty(&doc).expect("JSON serializes");
    let manifest = Manifest::from_bytes(Bytes::from(bytes), Some(media_type::DOCKER_MANIFEST))
        .map_err(|e| ArchiveError::not_an_image(path, &e.to_string()))?;
    Ok(Synthesized { manifest, blobs })
}

fn hash(tar: &TarIndex, span: Span) -> Result<Digest, ArchiveError> {
    let mut r = tar.reader(span)?;
    let mut h = Hasher::new(Algorithm::Sha256);
    let mut buf = vec![0u8; 256 * 1024];
    let mut seen = 0u64;
    loop {
        let n = r
            .read(&mut buf)
            .map_err(|e| ArchiveError::open(tar.path(), e))?;
        if n == 0 {
            break;
        }
        seen += n as u64;
        h.update(&buf[..n]);
    }
    if seen != span.size {
        return Err(ArchiveError::not_an_image(
            tar.path(),
            "a layer is cut short: the archive is truncated",
        ));
    }
    Ok(h.finish())
}

/// The name of a blob's file in an archive that also is an OCI layout (docker 25+, crossdock).
pub fn blob_name(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm().as_str(), digest.hex())
}

/// `manifest.json` for one image whose blobs are stored as [`blob_name`]s.
pub fn manifest_json(image: &ImageManifest, repo_tags: &[String]) -> Vec<u8> {
    let saved = [SavedImage {
        config: blob_name(&image.config.digest),
        repo_tags: Some(repo_tags.to_vec()),
        layers: image.layers.iter().map(|l| blob_name(&l.digest)).collect(),
    }];
    serde_json::to_vec(&saved).expect("JSON serializes")
}
