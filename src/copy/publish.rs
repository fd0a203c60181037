//! Phase 5 of a copy, publish, at one target whose blobs are all present: the image manifests
//! (all independent), then nested indexes deepest first, then the top manifest under its tags —
//! last, when every part it points at is there, which is what keeps a mirror safe to read while
//! it is written. A tag about to move first gets its old image kept under a backup tag when
//! asked. Then the artifacts referring to the image (signatures, SBOMs), found at the source
//! while the blobs moved.
//!
//! Every manifest is PUT with the bytes fetched, so digests at the target equal the source's.

use std::fmt;

use futures_util::future::{join, try_join_all};

use super::referrers::{self, Discovery};
use super::{CopyError, CopyOptions, Engine, Source, SourceImage, Target, backup};
use crate::digest::Digest;
use crate::manifest::Manifest;
use crate::registry::ErrorKind;
use crate::registry::retry::{RetryPolicy, Transient, retry};

/// How often a manifest tree refused for a missing child is written again (see
/// [`ChildRace`]).
const CHILD_RACE_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 3,
    base_delay: std::time::Duration::from_millis(200),
    max_delay: std::time::Duration::from_millis(400),
    max_elapsed: std::time::Duration::from_secs(10),
};

/// A manifest PUT that failed; transient only when refused for a missing child.
///
/// distribution 2.8's filesystem storage can lose a race between two identical manifest PUTs
/// into one repository (two processes mirroring the same image): the parent is then refused
/// with MANIFEST_BLOB_UNKNOWN (after DIGEST_INVALID when it read a child's link file half
/// rewritten) although its children were just written. Writing the children
/// again and retrying is safe (the bytes are the same) and settles it.
struct ChildRace(CopyError);

impl fmt::Display for ChildRace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Transient for ChildRace {
    fn is_transient(&self) -> bool {
        matches!(&self.0, CopyError::Target { error, .. } if error.kind == ErrorKind::ManifestBlobUnknown)
    }

    fn wait_refused(self, _asked: std::time::Duration, _left: std::time::Duration) -> Self {
        self // no Retry-After: never asked
    }
}

/// Backup tags written and the image each keeps.
pub(super) type Backups = Vec<(String, Digest)>;

/// What publishing wrote at one target.
pub(super) struct Published {
    /// Manifests written.
    pub manifests: u64,
    /// Referrer artifacts copied.
    pub referrers: u64,
    /// Backup tags written before tags moved.
    pub backups: Backups,
}

impl Engine {
    /// Phase 5 at target `t` (see the module header); `previous` are the tags that pointed at
    /// another image, `discovery` the referrers being found at the source.
    pub(super) async fn publish(
        &self,
        source: &Source,
        t: &Target,
        image: &SourceImage,
        opts: &CopyOptions,
        previous: &[(String, Digest)],
        discovery: Discovery<'_>,
    ) -> Result<Published, CopyError> {
        let manifests = self.push_manifests(t, image, opts, previous);
        let (pushed, found) = join(manifests, discovery).await;
        let (manifests, backups) = pushed?;
        let mut referrers = 0;
        if !found.is_empty() && !opts.dry_run {
            referrers = referrers::copy_all(self, source, t, &found, opts).await?;
        }
        Ok(Published {
            manifests,
            referrers,
            backups,
        })
    }

    /// The manifests of `image` to `t`, tags last, after the backups of tags about to move:
    /// how many were written, and the backups.
    async fn push_manifests(
        &self,
        t: &Target,
        image: &SourceImage,
        opts: &CopyOptions,
        previous: &[(String, Digest)],
    ) -> Result<(u64, Backups), CopyError> {
        if opts.dry_run {
            return Ok((0, Vec::new()));
        }
        let mut backups = Vec::new();
        if let Some(template) = &opts.backup_tag {
            for (tag, old) in previous {
                backups.push(self.backup(t, template, tag, old).await?);
            }
        }
        let pushed = retry(&CHILD_RACE_RETRY, "manifest push", || async {
            put_tree(t, image).await.map_err(ChildRace)
        })
        .await
        .map_err(|e| e.0)?;
        crate::metrics::record_image();
        Ok((pushed, backups))
    }

    /// Tags the image `tag` points at (`old`) with the expanded backup template.
    async fn backup(
        &self,
        t: &Target,
        template: &str,
        tag: &str,
        old: &Digest,
    ) -> Result<(String, Digest), CopyError> {
        let name = backup::expand(template, tag, old, chrono::Utc::now())
            .map_err(|message| CopyError::Internal { message })?;
        let target_err = |error| CopyError::Target {
            target: format!("{}:{name} (backup of {tag})", t.display()),
            error: Box::new(error),
        };
        let m = t
            .transport
            .manifest_get(t.repo(), &old.to_string())
            .await
            .map_err(target_err)?;
        t.transport
            .manifest_put(t.repo(), &name, &m)
            .await
            .map_err(target_err)?;
        Ok((name, old.clone()))
    }
}

/// Image manifests (all at once), then indexes deepest first, then the root under each tag
/// (each PUT by tag both stores it and moves the tag) or, without tags, by digest. The number
/// of manifests written.
async fn put_tree(t: &Target, image: &SourceImage) -> Result<u64, CopyError> {
    let put = |m: &Manifest, reference: String| {
        let m = m.clone();
        async move {
            t.transport
                .manifest_put(t.repo(), &reference, &m)
                .await
                .map_err(|error| CopyError::Target {
                    target: format!("{}@{}", t.display(), m.digest()),
                    error: Box::new(error),
                })
        }
    };
    let images: Vec<_> = image
        .children
        .iter()
        .filter(|m| !m.is_index())
        .map(|m| put(m, m.digest().to_string()))
        .collect();
    let mut pushed = try_join_all(images).await?.len() as u64;
    for m in image.children.iter().filter(|m| m.is_index()) {
        put(m, m.digest().to_string()).await?;
        pushed += 1;
    }
    if t.tags.is_empty() {
        put(&image.root, image.root.digest().to_string()).await?;
        pushed += 1;
    }
    for tag in &t.tags {
        put(&image.root, tag.clone()).await?;
        pushed += 1;
    }
    Ok(pushed)
}
