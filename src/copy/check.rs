//! Phase 2 of a copy, check the targets, before anything is written anywhere: a target whose
//! tags already point at the wanted digest is up to date (one HEAD per tag, and nothing else
//! happens there); a tag pointing at another image stops the whole copy unless forced (the
//! report of a forced copy keeps what the tags pointed at, for backup tags); the rest are
//! pending — the walk and the transfer are for them.
//!
//! The tag HEADs need nothing from the source, so [`look`] sends them while the source resolves
//! (phase 1) and [`Engine::judge_targets`] weighs them once the wanted digest is known: a no-op
//! copy costs one round trip, not two, which is most of a no-op sync's time over a wide-area
//! link (issue 18). Only a target without tags (checked by digest) waits for the resolve.
//! A target the caller confirmed at the wanted digest before ([`CopyOptions::confirmed`]) is
//! up to date without a HEAD; its tags are HEADed late only if the source moved.

use futures_util::future::join_all;

use super::{CopyError, CopyOptions, Engine, Target, TargetReport, TargetStatus};
use crate::digest::Digest;
use crate::registry::RegistryError;

/// Phase 2's hand-off: a report per target (up to date and failed ones final), and which
/// targets still need the image.
pub(super) struct Checked {
    /// One per target, in order.
    pub reports: Vec<TargetReport>,
    /// Indices of the targets to write.
    pub pending: Vec<usize>,
}

/// What one target's tags say.
struct TargetState {
    up_to_date: bool,
    /// Tags at another image, and what at.
    previous: Vec<(String, Digest)>,
}

/// What each target's tags point at (`None` per tag: absent), HEADed without waiting for the
/// source; `None` for a target without tags, which is checked by digest, and for one the caller
/// confirmed (see [`look`]).
pub(super) struct Looked(Vec<Option<Result<TagHeads, RegistryError>>>);

type TagHeads = Vec<(String, Option<Digest>)>;

/// HEADs every tag of every target, all at once (the registries' request limits apply), but
/// not those of a target the caller `confirmed` at some digest: it is judged once the source's
/// digest is known (no request at all when that is the confirmed one).
pub(super) async fn look(targets: &[Target], confirmed: &[Option<Digest>]) -> Looked {
    let per_target = targets.iter().enumerate().map(|(i, t)| async move {
        if t.tags.is_empty() || confirmed.get(i).is_some_and(Option::is_some) {
            return None;
        }
        Some(tag_heads(t).await)
    });
    Looked(join_all(per_target).await)
}

/// What each of `t`'s tags points at.
async fn tag_heads(t: &Target) -> Result<TagHeads, RegistryError> {
    join_all(t.tags.iter().map(|tag| async move {
        let head = t.transport.manifest_head(t.repo(), tag).await?;
        Ok((tag.clone(), head.map(|h| h.digest)))
    }))
    .await
    .into_iter()
    .collect()
}

impl Engine {
    /// Phase 2: checks every target against `wanted` (see the module header).
    #[cfg(test)]
    pub(super) async fn check_targets(
        &self,
        targets: &[Target],
        wanted: &Digest,
        opts: &CopyOptions,
    ) -> Result<Checked, CopyError> {
        let looked = look(targets, &opts.confirmed).await;
        self.judge_targets(targets, looked, wanted, opts).await
    }

    /// Phase 2 with the tags already [`look`]ed at.
    pub(super) async fn judge_targets(
        &self,
        targets: &[Target],
        looked: Looked,
        wanted: &Digest,
        opts: &CopyOptions,
    ) -> Result<Checked, CopyError> {
        let mut checked = Checked {
            reports: Vec::with_capacity(targets.len()),
            pending: Vec::new(),
        };
        let mut conflict = None;
        for (i, (t, heads)) in targets.iter().zip(looked.0).enumerate() {
            let mut report = TargetReport::new(t.display(), t.tags.clone(), wanted.clone());
            let confirmed = opts.confirmed.get(i).and_then(Option::as_ref);
            if confirmed == Some(wanted) {
                report.status = TargetStatus::UpToDate;
                checked.reports.push(report);
                continue;
            }
            // A confirmed target was not looked at: the source moved, so look now.
            let heads = match (heads, confirmed) {
                (None, Some(_)) if !t.tags.is_empty() => Some(tag_heads(t).await),
                (heads, _) => heads,
            };
            match check_target(t, heads, wanted).await {
                Err(error) => report.fail(CopyError::Target {
                    target: t.display(),
                    error: Box::new(error),
                }),
                Ok(state) => {
                    if state.up_to_date {
                        report.status = TargetStatus::UpToDate;
                    } else {
                        checked.pending.push(i);
                    }
                    if let Some((tag, existing)) = state.previous.first().filter(|_| !opts.force) {
                        conflict.get_or_insert(CopyError::Conflict {
                            target: format!("{}:{tag}", t.display()),
                            existing: existing.clone(),
                            wanted: wanted.clone(),
                        });
                    }
                    report.previous = state.previous;
                }
            }
            checked.reports.push(report);
        }
        match conflict {
            Some(c) => Err(c),
            None => Ok(checked),
        }
    }
}

/// Weighs what the target's tags point at (`heads`), or HEADs the digest when it has no tags.
async fn check_target(
    t: &Target,
    heads: Option<Result<TagHeads, RegistryError>>,
    wanted: &Digest,
) -> Result<TargetState, RegistryError> {
    let mut state = TargetState {
        up_to_date: true,
        previous: Vec::new(),
    };
    let Some(heads) = heads else {
        let head = t
            .transport
            .manifest_head(t.repo(), &wanted.to_string())
            .await?;
        state.up_to_date = head.is_some();
        return Ok(state);
    };
    for (tag, digest) in heads? {
        match digest {
            Some(d) if &d == wanted => {}
            Some(d) => {
                state.up_to_date = false;
                state.previous.push((tag, d));
            }
            None => state.up_to_date = false,
        }
    }
    Ok(state)
}
