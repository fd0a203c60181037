//! Tag selection: which tags of a source repository a rule copies.
//!
//! An explicit list combined with a filter over the listed tags:
//! `list ∪ newest_N(semver(exclude(include(all tags))))`. Semver filters read tags leniently, as
//! image tags are written: a leading `v` is dropped and missing parts are zero (`3.20` is
//! 3.20.0, `v2` is 2.0.0); tags that are no version at all (`latest`, `edge`) are skipped by
//! semver filters. Pre-releases (`1.2.3-rc1`, but also `3.20.1-alpine`) are left out unless the
//! range names a pre-release of the same version, as Cargo does.

use regex::Regex;
use semver::{Prerelease, Version, VersionReq};

use crate::reference::Reference;

/// The filter over a repository's listed tags: include, then exclude, then semver range,
/// then newest N. An empty filter selects every tag.
#[derive(Debug, Clone, Default)]
pub struct TagFilter {
    /// A tag is kept if any of these matches (unanchored; use `^…$`). Empty: all kept.
    pub include: Vec<Regex>,
    /// A tag is dropped if any of these matches (unanchored).
    pub exclude: Vec<Regex>,
    /// Only tags that read as versions inside this range.
    pub semver: Option<VersionReq>,
    /// Only the N tags with the highest versions (tags that are no version are dropped).
    pub newest: Option<usize>,
}

impl TagFilter {
    fn uses_versions(&self) -> bool {
        self.semver.is_some() || self.newest.is_some()
    }
}

/// Which tags of a source repository a rule copies: `list ∪ filter(all tags)`.
#[derive(Debug, Clone, Default)]
pub struct TagSelector {
    /// Tags copied whether or not the registry lists them (a missing one is the copy's error).
    pub list: Vec<String>,
    /// A filter over the tag list, if the rule asks for one. `None`: only `list`.
    pub filter: Option<TagFilter>,
}

/// Reads an image tag as a version, leniently: `v1.2.3`, `1.2` (1.2.0), `3` (3.0.0),
/// `1.2.3-rc.1` (a pre-release). `None` for tags that are no version.
pub fn tag_version(tag: &str) -> Option<Version> {
    let t = tag.strip_prefix(['v', 'V']).unwrap_or(tag);
    let (core, pre) = match t.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (t, None),
    };
    let mut nums = [0u64; 3];
    for (i, piece) in core.split('.').enumerate() {
        if i == 3 || piece.is_empty() || !piece.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        nums[i] = piece.parse().ok()?;
    }
    let pre = match pre {
        Some("") => return None,
        Some(p) => Prerelease::new(p).ok()?,
        None => Prerelease::EMPTY,
    };
    let mut v = Version::new(nums[0], nums[1], nums[2]);
    v.pre = pre;
    Some(v)
}

impl TagSelector {
    /// Whether [`TagSelector::select`] needs the registry's tag list (an explicit list does
    /// not, and then no `tags` request is made).
    pub fn needs_tag_list(&self) -> bool {
        self.filter.is_some()
    }

    /// The tags to copy, given the tags the registry lists (ignored without a filter).
    /// Order: the explicit list as written, then filtered tags in lexical order; no duplicates.
    /// Listed tags that are not valid tag names are ignored (a registry could send anything).
    pub fn select(&self, available: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for t in &self.list {
            if !out.contains(t) {
                out.push(t.clone());
            }
        }
        let Some(filter) = &self.filter else {
            return out;
        };
        let mut kept: Vec<(&String, Option<Version>)> = available
            .iter()
            .filter(|t| Reference::validate_tag(t).is_ok())
            .filter(|t| filter.include.is_empty() || filter.include.iter().any(|r| r.is_match(t)))
            .filter(|t| !filter.exclude.iter().any(|r| r.is_match(t)))
            .map(|t| (t, tag_version(t)))
            .collect();
        if filter.uses_versions() {
            kept.retain(|(_, v)| match (v, &filter.semver) {
                (None, _) => false,
                (Some(v), Some(req)) => req.matches(v),
                // newest N without a range: releases only.
                (Some(v), None) => v.pre.is_empty(),
            });
        }
        if let Some(n) = filter.newest {
            // Highest version first; equal versions (`3.20`, `v3.20.0`) by name, for a stable cut.
            kept.sort_by(|(ta, va), (tb, vb)| vb.cmp(va).then_with(|| ta.cmp(tb)));
            kept.truncate(n);
        }
        let mut filtered: Vec<&String> = kept.into_iter().map(|(t, _)| t).collect();
        filtered.sort();
        filtered.dedup();
        for t in filtered {
            if !out.contains(t) {
                out.push(t.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn re(list: &[&str]) -> Vec<Regex> {
        list.iter().map(|s| Regex::new(s).unwrap()).collect()
    }

    fn filter() -> TagFilter {
        TagFilter::default()
    }

    const ALPINE: &[&str] = &[
        "3",
        "3.18",
        "3.18.9",
        "3.19",
        "3.19.4",
        "3.20",
        "3.20.3",
        "3.21.0-rc1",
        "3.9",
        "edge",
        "latest",
        "v3.17.2",
        "20240606",
        "3.20.3-alpine",
        "sha256-abc.sig",
    ];

    fn select(sel: TagSelector) -> Vec<String> {
        sel.select(&tags(ALPINE))
    }

    #[test]
    fn explicit_list_needs_no_listing_and_keeps_order() {
        let sel = TagSelector {
            list: tags(&["latest", "3.20", "latest", "does-not-exist"]),
            filter: None,
        };
        assert!(!sel.needs_tag_list());
        assert_eq!(select(sel), tags(&["latest", "3.20", "does-not-exist"]));
    }

    #[test]
    fn all_tags_lexical_and_invalid_names_dropped() {
        let sel = TagSelector {
            list: vec![],
            filter: Some(filter()),
        };
        assert!(sel.needs_tag_list());
        let long = "a".repeat(200);
        let got = sel.select(&tags(&["b", "a", "../x", &long, "a"]));
        assert_eq!(got, tags(&["a", "b"]));
    }

    #[test]
    fn include_then_exclude_unanchored() {
        let sel = TagSelector {
            list: vec![],
            filter: Some(TagFilter {
                include: re(&[r"^3\.1", "^edge$"]),
                exclude: re(&["rc", r"\.9"]),
                ..filter()
            }),
        };
        assert_eq!(select(sel), tags(&["3.18", "3.19", "3.19.4", "edge"]));
    }

    #[test]
    fn semver_range_coerces_and_skips_prereleases() {
        let sel = TagSelector {
            list: vec![],
            filter: Some(TagFilter {
                semver: Some(VersionReq::parse(">=3.18, <3.20").unwrap()),
                ..filter()
            }),
        };
        // 3.18 reads as 3.18.0; `edge`, `latest`, `3.20.3-alpine` are skipped.
        assert_eq!(select(sel), tags(&["3.18", "3.18.9", "3.19", "3.19.4"]));
        let sel = TagSelector {
            list: vec![],
            filter: Some(TagFilter {
                semver: Some(VersionReq::parse(">=3.21.0-rc0").unwrap()),
                ..filter()
            }),
        };
        // The range names a 3.21.0 pre-release, so 3.21.0-rc1 is in; 20240606 reads as a
        // (large) major version.
        assert_eq!(select(sel), tags(&["20240606", "3.21.0-rc1"]));
    }

    #[test]
    fn newest_n_by_version() {
        let sel = TagSelector {
            list: vec![],
            filter: Some(TagFilter {
                include: re(&[r"^v?3\."]),
                newest: Some(3),
                ..filter()
            }),
        };
        // 3.21.0-rc1 and 3.20.3-alpine are pre-releases; the newest releases are 3.20.3,
        // 3.20 (3.20.0), 3.19.4.
        assert_eq!(select(sel), tags(&["3.19.4", "3.20", "3.20.3"]));
        let sel = TagSelector {
            list: tags(&["latest"]),
            filter: Some(TagFilter {
                semver: Some(VersionReq::parse("<3.19").unwrap()),
                newest: Some(2),
                ..filter()
            }),
        };
        // 3.18.9, 3.18 are newest below 3.19 (ahead of v3.17.2, 3.9, 3).
        assert_eq!(select(sel), tags(&["latest", "3.18", "3.18.9"]));
        let sel = TagSelector {
            list: vec![],
            filter: Some(TagFilter {
                newest: Some(0),
                ..filter()
            }),
        };
        assert!(select(sel).is_empty());
    }

    #[test]
    fn version_reading() {
        let v = |s| tag_version(s).map(|v| v.to_string());
        assert_eq!(v("v1.2.3").as_deref(), Some("1.2.3"));
        assert_eq!(v("1.2").as_deref(), Some("1.2.0"));
        assert_eq!(v("7").as_deref(), Some("7.0.0"));
        assert_eq!(v("2024.01.05").as_deref(), Some("2024.1.5"));
        assert_eq!(v("1.2.3-rc.1").as_deref(), Some("1.2.3-rc.1"));
        for no in [
            "latest",
            "1.2.3.4",
            "1..2",
            "v",
            "1.2.3_1",
            "1.2.3-",
            "1.2.3-rc..1",
            "x1.2",
        ] {
            assert_eq!(v(no), None, "{no}");
        }
    }
}
