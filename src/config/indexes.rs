//! `[[indexes]]`: index rules checked and resolved into [`IndexPlan`]s.
//!
//! Kept apart from [`super::validate`] because an index rule shares only two things with the
//! mirror rules there: one name space (a name is a metrics label, a `--rule` argument and a
//! shard key, whatever the kind) and `[defaults]` (schedule, timeout, retry_backoff, referrers).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::error::{KeyPath, Problems};
use super::fields::{duration, rule_name};
use super::raw::RawIndex;
use crate::reference::Reference;
use crate::rule::IndexPlan;
use crate::schedule::Schedule;

/// The `[defaults]` an index rule takes.
pub(super) struct IndexDefaults {
    pub(super) referrers: bool,
    pub(super) schedule: Schedule,
    pub(super) timeout: Duration,
    pub(super) retry_backoff: Duration,
}

/// `[[indexes]]`, each checked; `names` holds the mirror rules' names (one name space).
pub(super) fn indexes(
    raw: &[RawIndex],
    defaults: &IndexDefaults,
    names: &HashMap<String, usize>,
    problems: &mut Problems<'_>,
) -> Vec<IndexPlan> {
    let mut own: HashMap<String, usize> = HashMap::new();
    raw.iter()
        .enumerate()
        .filter_map(|(i, r)| index(i, r, defaults, names, &mut own, problems))
        .collect()
}

/// `target`: a repository and a tag, no digest.
fn index_target(raw: &RawIndex, path: &KeyPath, problems: &mut Problems<'_>) -> Option<Reference> {
    let target_path = path.key("target");
    match &raw.target {
        None => {
            problems.missing(
                &target_path,
                "give the index's repository and tag, e.g. \"localhost:5001/app:latest\"",
            );
            None
        }
        Some(t) => match Reference::parse(t) {
            Err(e) => {
                problems.add(&target_path, e);
                None
            }
            Ok(r) if r.digest().is_some() => {
                problems.add(
                    &target_path,
                    format!("{t:?} names a digest; the index rule keeps a tag, give REPO:TAG"),
                );
                None
            }
            Ok(r) if r.tag().is_none() => {
                problems.add(
                    &target_path,
                    format!("{t:?} has no tag; give the tag the index is kept at, e.g. {t}:latest"),
                );
                None
            }
            Ok(r) => Some(r),
        },
    }
}

/// `sources`: per-platform images by tag, none twice, none the target.
fn index_sources(
    raw: &RawIndex,
    target: Option<&Reference>,
    path: &KeyPath,
    problems: &mut Problems<'_>,
) -> Vec<Reference> {
    let sources_path = path.key("sources");
    let mut sources: Vec<Reference> = Vec::new();
    match &raw.sources {
        None => problems.missing(
            &sources_path,
            "give the per-platform images by tag, e.g. [\"localhost:5000/app:amd64\", \
             \"localhost:5000/app:arm64\"]",
        ),
        Some(list) if list.is_empty() => {
            problems.add(&sources_path, "an empty list composes no index")
        }
        Some(list) => {
            for (j, s) in list.iter().enumerate() {
                let p = sources_path.index(j);
                match Reference::parse(s) {
                    Err(e) => problems.add(&p, e),
                    Ok(r) if r.digest().is_some() || r.tag().is_none() => problems.add(
                        &p,
                        format!(
                            "{s:?} needs a tag and no digest: the rule follows what the tag \
                             points at (for a fixed set of digests, run `crossdock index create` \
                             once)"
                        ),
                    ),
                    Ok(r) if Some(&r) == target => problems.add(
                        &p,
                        format!("{r} is the index's own target; a source must be another tag"),
                    ),
                    Ok(r) if sources.contains(&r) => {
                        problems.add(&p, format!("{r} is listed twice"))
                    }
                    Ok(r) => sources.push(r),
                }
            }
        }
    }
    sources
}

fn index(
    i: usize,
    raw: &RawIndex,
    defaults: &IndexDefaults,
    rule_names: &HashMap<String, usize>,
    own: &mut HashMap<String, usize>,
    problems: &mut Problems<'_>,
) -> Option<IndexPlan> {
    let path = KeyPath::root().key("indexes").index(i);
    let name = rule_name(
        raw.name.as_ref(),
        &path.key("name"),
        "every index rule needs a unique name",
        |n| {
            let also = match (rule_names.get(n), own.get(n)) {
                (Some(r), _) => format!("rules[{r}]"),
                (None, Some(x)) => format!("indexes[{x}]"),
                (None, None) => return None,
            };
            Some(format!(
                "duplicate rule name {n:?} (also {also}); rules and index rules share one name space"
            ))
        },
        problems,
    );
    if let Some(n) = &name {
        own.insert(n.clone(), i);
    }

    let target = index_target(raw, &path, problems);
    let sources = index_sources(raw, target.as_ref(), &path, problems);

    let mut annotations = BTreeMap::new();
    for (k, v) in raw.annotations.iter().flatten() {
        if k.trim().is_empty() {
            problems.add(&path.key("annotations"), "an annotation key is empty");
        } else {
            annotations.insert(k.clone(), v.clone());
        }
    }

    let schedule = match &raw.schedule {
        Some(s) => Schedule::parse(s)
            .map_err(|e| problems.add(&path.key("schedule"), e))
            .ok(),
        None => Some(defaults.schedule.clone()),
    };
    let timeout = duration(
        raw.timeout.as_deref(),
        defaults.timeout,
        &path.key("timeout"),
        problems,
    );
    if timeout.is_zero() {
        problems.add(&path.key("timeout"), "must be more than zero");
    }
    if sources.is_empty() {
        return None;
    }
    Some(IndexPlan {
        name: name?,
        target: target?,
        sources,
        annotations,
        oci: raw.oci.unwrap_or(false),
        referrers: raw.referrers.unwrap_or(defaults.referrers),
        schedule: schedule?,
        timeout,
        retry_backoff: duration(
            raw.retry_backoff.as_deref(),
            defaults.retry_backoff,
            &path.key("retry_backoff"),
            problems,
        ),
    })
}
