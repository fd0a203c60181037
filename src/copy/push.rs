//! Writing one image to its targets, in the order that keeps a mirror safe to read: every blob
//! (to every target at once, each read from the source once), then image manifests, then
//! nested indexes, then the top manifest under its tags — last. A tag about to move first gets
//! its old image kept under a backup tag when asked.

use std::sync::atomic::Ordering;

use futures_util::StreamExt;
use futures_util::future::join_all;
use futures_util::stream::FuturesUnordered;

use super::{
    BlobOutcome, CopyError, CopyOptions, Counters, Engine, Source, SourceImage, Target, backup,
};
use crate::digest::Digest;
use crate::manifest::Manifest;

impl Engine {
    /// Counts a blob outcome for a target.
    pub(super) fn count_blob(
        counters: &Counters,
        opts: &CopyOptions,
        target_name: &str,
        d: &crate::manifest::Descriptor,
        outcome: BlobOutcome,
    ) {
        let (n, bytes) = match outcome {
            BlobOutcome::Skipped => (&counters.blobs_skipped, &counters.bytes_skipped),
            BlobOutcome::Mounted | BlobOutcome::WouldMount => {
                (&counters.blobs_mounted, &counters.bytes_mounted)
            }
            BlobOutcome::Copied | BlobOutcome::WouldCopy => {
                (&counters.blobs_copied, &counters.bytes_copied)
            }
        };
        n.fetch_add(1, Ordering::Relaxed);
        bytes.fetch_add(d.size, Ordering::Relaxed);
        crate::metrics::record_blob(outcome, d.size);
        opts.progress
            .blob_done(target_name, &d.digest, d.size, outcome);
    }

    /// Every blob of `image` to every one of `targets`, each blob read from the source once for
    /// all of them ([`super::blob`]). Returns, per target, its first failure: a target whose
    /// blobs failed gets no manifest, and the others carry on.
    pub(super) async fn push_blobs(
        &self,
        source: &Source,
        targets: &[&Target],
        image: &SourceImage,
        opts: &CopyOptions,
        counters: &[Counters],
    ) -> Vec<Option<CopyError>> {
        let names: Vec<String> = targets.iter().map(|t| t.display()).collect();
        let total = image
            .blobs
            .iter()
            .fold(0u64, |n, d| n.saturating_add(d.size));
        for n in &names {
            opts.progress.target_started(n, image.blobs.len(), total);
        }
        let fresh: Vec<bool> = if opts.dry_run || image.blobs.is_empty() {
            vec![false; targets.len()]
        } else {
            join_all(targets.iter().map(|t| self.target_is_fresh(t))).await
        };
        let fresh = &fresh;
        // Every blob is polled at once; the engine's blob permits bound the transfers.
        let mut transfers: FuturesUnordered<_> = image
            .blobs
            .iter()
            .map(|d| async move {
                let outcomes = self.transfer_blob(source, targets, fresh, d, opts).await;
                (d, outcomes)
            })
            .collect();
        let mut failures: Vec<Option<CopyError>> = targets.iter().map(|_| None).collect();
        while let Some((d, outcomes)) = transfers.next().await {
            for (k, r) in outcomes.into_iter().enumerate() {
                match r {
                    Ok(outcome) => Self::count_blob(&counters[k], opts, &names[k], d, outcome),
                    Err(e) => {
                        failures[k].get_or_insert(e);
                    }
                }
            }
            // Every target failed: the other transfers would be for nothing. Dropping them
            // releases their permits.
            if failures.iter().all(Option::is_some) {
                break;
            }
        }
        failures
    }

    /// The manifests of `image` to one target whose blobs are all present: image manifests
    /// (all independent), then indexes deepest first, then the root — under its tags last.
    pub(super) async fn push_manifests(
        &self,
        t: &Target,
        image: &SourceImage,
        opts: &CopyOptions,
        counters: &Counters,
        previous: &[(String, Digest)],
    ) -> Result<Digest, CopyError> {
        if opts.dry_run {
            return Ok(image.root.digest().clone());
        }
        let target_name = t.display();
        let put = |m: &Manifest, reference: String| {
            let tr = t.transport.clone();
            let m = m.clone();
            let target_name = target_name.clone();
            async move {
                tr.manifest_put(t.repo(), &reference, &m)
                    .await
                    .map_err(|error| CopyError::Target {
                        target: format!("{target_name}@{}", m.digest()),
                        error: Box::new(error),
                    })?;
                counters.manifests_pushed.fetch_add(1, Ordering::Relaxed);
                Ok::<_, CopyError>(())
            }
        };
        // Tags about to move keep their old image reachable under a backup tag first.
        if let Some(template) = &opts.backup_tag {
            for (tag, old) in previous {
                self.backup(t, template, tag, old, counters).await?;
            }
        }
        // distribution 2.8's filesystem storage can lose a race between two identical manifest
        // PUTs into one repository (two processes mirroring the same image): the parent is then
        // refused with MANIFEST_BLOB_UNKNOWN although its children were just written. Writing
        // the children again and retrying is safe (the bytes are the same) and settles it.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = async {
                let image_puts: Vec<_> = image
                    .children
                    .iter()
                    .filter(|m| !m.is_index())
                    .map(|m| put(m, m.digest().to_string()))
                    .collect();
                futures_util::future::try_join_all(image_puts).await?;
                for m in image.children.iter().filter(|m| m.is_index()) {
                    put(m, m.digest().to_string()).await?;
                }
                // The root goes up under its tags — each PUT by tag both stores the manifest
                // and moves the tag, after every part it refers to is present. Without tags, by
                // digest.
                if t.tags.is_empty() {
                    put(&image.root, image.root.digest().to_string()).await?;
                } else {
                    for tag in &t.tags {
                        put(&image.root, tag.clone()).await?;
                    }
                }
                Ok::<_, CopyError>(())
            }
            .await;
            match result {
                Ok(()) => break,
                Err(CopyError::Target { error, .. })
                    if error.kind == crate::registry::ErrorKind::ManifestBlobUnknown
                        && attempt < 3 =>
                {
                    tracing::warn!(target = %target_name, error = %error, "manifest refused for a missing child; writing the children again");
                    tokio::time::sleep(std::time::Duration::from_millis(200 * attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
        crate::metrics::record_image();
        Ok(image.root.digest().clone())
    }

    /// Tags the image `tag` points at (`old`) with the expanded backup template.
    pub(super) async fn backup(
        &self,
        t: &Target,
        template: &str,
        tag: &str,
        old: &Digest,
        counters: &Counters,
    ) -> Result<(), CopyError> {
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
        counters
            .backups
            .lock()
            .expect("backups lock")
            .push((name, old.clone()));
        Ok(())
    }
}
