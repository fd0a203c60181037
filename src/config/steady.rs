//! The rule keys of issue 18 — `immutable_tags` (tags that never change once written, settled
//! by the target's tag list) and `full_check` (when the daemon asks the targets again what it
//! remembers having confirmed there) — checked and resolved here, apart from the rest of a rule.
//!
//! `full_check` is a schedule like `schedule` and `audit`, in the same grammar (a cron line or
//! `@every DURATION`), so that a user writes what they already know; `@every 24h` by default
//! rather than `@daily`, so that the full checks of many rules and daemons spread over the day
//! instead of all landing at midnight.

use regex::Regex;

use super::error::{KeyPath, Problems};
use super::raw::RawRule;
use super::tags::regex_reason;
use crate::rule::RulePlan;
use crate::schedule::Schedule;

/// `full_check` when a rule does not set it.
pub(super) const DEFAULT_FULL_CHECK: &str = "@every 24h";

/// The default full-check schedule.
pub(super) fn default_full_check() -> Schedule {
    Schedule::parse(DEFAULT_FULL_CHECK).expect("the default full_check parses")
}

/// Sets `plan.immutable_tags` and `plan.full_check` from rule `index` as written; problems are
/// recorded at their key paths.
pub(crate) fn apply(plan: &mut RulePlan, index: usize, raw: &RawRule, problems: &mut Problems<'_>) {
    let path = KeyPath::root().key("rules").index(index);
    if let Some(re) = &raw.immutable_tags {
        match Regex::new(re) {
            Ok(r) => plan.immutable_tags = Some(r),
            Err(e) => problems.add(
                &path.key("immutable_tags"),
                format!(
                    "rule {:?}: invalid regex {re:?}: {}; write a regular expression matching \
                     the tags that never change, such as \"^v?[0-9]+\\\\.[0-9]+\\\\.[0-9]+$\"",
                    plan.name,
                    regex_reason(&e)
                ),
            ),
        }
    }
    if let Some(line) = &raw.full_check {
        match Schedule::parse(line) {
            Ok(s) => plan.full_check = s,
            Err(e) => problems.add(
                &path.key("full_check"),
                format!("rule {:?}: {e}", plan.name),
            ),
        }
    }
}
