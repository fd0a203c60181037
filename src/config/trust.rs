//! The rule keys of issue 17 — `verify_keys` (the signature policy) and `audit` (a schedule
//! for re-reading the rule's targets) — checked and resolved here, apart from the rest of a
//! rule, so that the policy's key files are read once, when the configuration loads.

use std::path::Path;
use std::sync::Arc;

use super::credentials::resolve_path;
use super::error::{KeyPath, Problems};
use super::raw::RawRule;
use crate::rule::RulePlan;
use crate::schedule::Schedule;
use crate::trust::{Policy, PublicKey};

/// Sets `plan.verify` and `plan.audit` from rule `index` as written; problems are recorded at
/// their key paths (each key file that cannot be used, each with the reason).
pub(crate) fn apply(
    plan: &mut RulePlan,
    index: usize,
    raw: &RawRule,
    base: &Path,
    problems: &mut Problems<'_>,
) {
    let path = KeyPath::root().key("rules").index(index);
    if let Some(files) = &raw.verify_keys {
        let key_path = path.key("verify_keys");
        if files.is_empty() {
            problems.add(
                &key_path,
                "an empty list admits no image; name at least one public key file, or remove \
                 the key to copy unsigned images",
            );
        }
        let mut keys = Vec::new();
        for (i, f) in files.iter().enumerate() {
            match PublicKey::load(&resolve_path(base, Path::new(f))) {
                Ok(k) => keys.push(k),
                Err(e) => problems.add(&key_path.index(i), e.to_string()),
            }
        }
        if keys.len() == files.len() {
            plan.verify = Policy::new(keys).map(Arc::new);
        }
    }
    if let Some(cron) = &raw.audit {
        match Schedule::parse(cron) {
            Ok(s) => plan.audit = Some(s),
            Err(e) => problems.add(&path.key("audit"), e),
        }
    }
}
