//! The rule keys of issue 17 — `verify_keys` and the keyless `verify_identity` /
//! `verify_identity_regexp`, `verify_issuer`, `verify_trust_root` (the signature policy) and
//! `audit` (a schedule for re-reading the rule's targets) — checked and resolved here, apart
//! from the rest of a rule, so that the policy's key and trust root files are read once, when
//! the configuration loads.

use std::path::Path;
use std::sync::Arc;

use super::credentials::resolve_path;
use super::error::{KeyPath, Problems};
use super::raw::RawRule;
use crate::rule::RulePlan;
use crate::schedule::Schedule;
use crate::trust::{Identity, Keyless, Policy, PublicKey, TrustRoot};

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
    let mut usable = true;
    let mut keys = Vec::new();
    if let Some(files) = &raw.verify_keys {
        let key_path = path.key("verify_keys");
        if files.is_empty() {
            problems.add(
                &key_path,
                "an empty list admits no image; name at least one public key file, or remove \
                 the key to copy unsigned images",
            );
        }
        for (i, f) in files.iter().enumerate() {
            match PublicKey::load(&resolve_path(base, Path::new(f))) {
                Ok(k) => keys.push(k),
                Err(e) => {
                    usable = false;
                    problems.add(&key_path.index(i), e.to_string());
                }
            }
        }
    }
    let keyless = keyless(raw, base, &path, problems).unwrap_or_else(|()| {
        usable = false;
        None
    });
    if usable {
        plan.verify = Policy::with_keyless(keys, keyless).map(Arc::new);
    }
    if let Some(cron) = &raw.audit {
        match Schedule::parse(cron) {
            Ok(s) => plan.audit = Some(s),
            Err(e) => problems.add(&path.key("audit"), e),
        }
    }
}

/// The keyless part of a rule's policy: `None` when none of its keys is set; `Err` (problems
/// recorded) when it is incomplete or a file is unusable.
fn keyless(
    raw: &RawRule,
    base: &Path,
    path: &KeyPath,
    problems: &mut Problems<'_>,
) -> Result<Option<Keyless>, ()> {
    let (exact, regexp) = (&raw.verify_identity, &raw.verify_identity_regexp);
    if exact.is_none() && regexp.is_none() && raw.verify_issuer.is_none() {
        if raw.verify_trust_root.is_some() {
            problems.add(
                &path.key("verify_trust_root"),
                "a trust root alone admits nothing: add verify_identity (or \
                 verify_identity_regexp) and verify_issuer",
            );
            return Err(());
        }
        return Ok(None);
    }
    let mut ok = true;
    let identity = match (exact, regexp) {
        (Some(_), Some(_)) => {
            problems.add(
                &path.key("verify_identity_regexp"),
                "give verify_identity or verify_identity_regexp, not both",
            );
            ok = false;
            None
        }
        (Some(e), None) => Some(Identity::Exact(e.clone())),
        (None, Some(r)) => Identity::regexp(r)
            .map_err(|e| problems.add(&path.key("verify_identity_regexp"), e))
            .ok(),
        (None, None) => {
            problems.add(
                &path.key("verify_identity"),
                "keyless verification needs the signer's identity: verify_identity (the \
                 certificate's e-mail or URI) or verify_identity_regexp",
            );
            None
        }
    };
    if raw.verify_issuer.is_none() {
        problems.add(
            &path.key("verify_issuer"),
            "keyless verification needs the OIDC issuer the certificate names, e.g. \
             \"https://token.actions.githubusercontent.com\"",
        );
    }
    let root = match &raw.verify_trust_root {
        None => {
            problems.add(
                &path.key("verify_trust_root"),
                "keyless verification needs a Sigstore trust root file (trusted_root.json)",
            );
            None
        }
        Some(f) => TrustRoot::load(&resolve_path(base, Path::new(f)))
            .map_err(|e| problems.add(&path.key("verify_trust_root"), e))
            .ok(),
    };
    match (identity, &raw.verify_issuer, root) {
        (Some(i), Some(issuer), Some(root)) if ok => {
            Ok(Some(Keyless::new(Arc::new(root), i, issuer.clone())))
        }
        _ => Err(()),
    }
}
