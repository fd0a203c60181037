//! `tags = …` of a `[[rules]]` table: a list, or a table of filters, checked and resolved into a
//! [`TagSelector`] (regexes compiled, the semver range parsed).

use regex::Regex;
use semver::VersionReq;

use super::error::{KeyPath, Problems};
use super::raw::RawTags;
use crate::reference::Reference;
use crate::rule::{TagFilter, TagSelector};

/// regex's messages draw a caret diagram over several lines; keep the one that says what is
/// wrong, so that each problem stays on one line.
pub(super) fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .unwrap_or(text.lines().last().unwrap_or(""))
        .to_string()
}

pub(super) fn tag_selector(
    raw: &RawTags,
    path: &KeyPath,
    problems: &mut Problems<'_>,
) -> TagSelector {
    let check_tags = |list: &[String], path: &KeyPath, problems: &mut Problems<'_>| {
        let mut out = Vec::new();
        for (i, t) in list.iter().enumerate() {
            match Reference::validate_tag(t) {
                Ok(()) => out.push(t.clone()),
                Err(e) => problems.add(&path.index(i), e),
            }
        }
        out
    };
    match raw {
        RawTags::List(list) => {
            if list.is_empty() {
                problems.add(path, "an empty list selects no tags");
            }
            TagSelector {
                list: check_tags(list, path, problems),
                filter: None,
            }
        }
        RawTags::Table(t) => {
            let list = t
                .list
                .as_deref()
                .map(|l| check_tags(l, &path.key("list"), problems))
                .unwrap_or_default();
            let regexes = |key: &str, list: &Option<Vec<String>>, problems: &mut Problems<'_>| {
                let mut out = Vec::new();
                for (i, r) in list.iter().flatten().enumerate() {
                    match Regex::new(r) {
                        Ok(re) => out.push(re),
                        Err(e) => problems.add(
                            &path.key(key).index(i),
                            format!("invalid regex {r:?}: {}", regex_reason(&e)),
                        ),
                    }
                }
                out
            };
            let include = regexes("include", &t.include, problems);
            let exclude = regexes("exclude", &t.exclude, problems);
            let semver = t
                .semver
                .as_deref()
                .and_then(|s| match VersionReq::parse(s) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        problems.add(
                            &path.key("semver"),
                            format!("invalid semver range {s:?}: {e}"),
                        );
                        None
                    }
                });
            let has_filter = t.include.is_some()
                || t.exclude.is_some()
                || t.semver.is_some()
                || t.newest.is_some();
            let filter = match (t.all, has_filter) {
                (Some(false), true) => {
                    problems.add(
                        &path.key("all"),
                        "all = false contradicts the filters (include/exclude/semver/newest \
                         select from all tags); remove it",
                    );
                    None
                }
                (Some(true), _) | (_, true) => Some(TagFilter {
                    include,
                    exclude,
                    semver,
                    newest: t.newest.map(|n| n as usize),
                }),
                _ => None,
            };
            if filter.is_none() && list.is_empty() && !problems.has_problem_at(path) {
                problems.add(
                    path,
                    "selects no tags: give list, include, exclude, semver, newest, or all = true",
                );
            }
            TagSelector { list, filter }
        }
    }
}
