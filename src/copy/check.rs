//! Phase 2 of a copy, check the targets, before anything is written anywhere: a target whose
//! tags already point at the wanted digest is up to date (one HEAD per tag, and nothing else
//! happens there); a tag pointing at another image stops the whole copy unless forced (the
//! report of a forced copy keeps what the tags pointed at, for backup tags); the rest are
//! pending — the walk and the transfer are for them. A target the caller confirmed at the
//! wanted digest before ([`CopyOptions::confirmed`]) is up to date without a HEAD.

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

impl Engine {
    /// Phase 2: checks every target against `wanted` (see the module header).
    pub(super) async fn check_targets(
        &self,
        targets: &[Target],
        wanted: &Digest,
        opts: &CopyOptions,
    ) -> Result<Checked, CopyError> {
        let mut checked = Checked {
            reports: Vec::with_capacity(targets.len()),
            pending: Vec::new(),
        };
        let mut conflict = None;
        for (i, t) in targets.iter().enumerate() {
            let mut report = TargetReport::new(t.display(), t.tags.clone(), wanted.clone());
            if opts
                .confirmed
                .get(i)
                .is_some_and(|c| c.as_ref() == Some(wanted))
            {
                report.status = TargetStatus::UpToDate;
                checked.reports.push(report);
                continue;
            }
            match check_target(t, wanted).await {
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

/// HEADs each target tag (or the digest when there are no tags).
async fn check_target(t: &Target, wanted: &Digest) -> Result<TargetState, RegistryError> {
    let mut state = TargetState {
        up_to_date: true,
        previous: Vec::new(),
    };
    if t.tags.is_empty() {
        let head = t
            .transport
            .manifest_head(t.repo(), &wanted.to_string())
            .await?;
        state.up_to_date = head.is_some();
        return Ok(state);
    }
    for tag in &t.tags {
        match t.transport.manifest_head(t.repo(), tag).await? {
            Some(h) if &h.digest == wanted => {}
            Some(h) => {
                state.up_to_date = false;
                state.previous.push((tag.clone(), h.digest));
            }
            None => state.up_to_date = false,
        }
    }
    Ok(state)
}
