//! Import rules, resolved: which tags of which source repositories go to which target
//! references.
//!
//! A [`RulePlan`] is one `[[rules]]` entry after validation (see [`crate::config`]): every regex
//! compiled, the semver range parsed, the target template checked against every source. Turning
//! it into concrete `(source, target)` pairs is the only step that needs the network, and only
//! when the tag selector has to see the tag list: an explicit list of tags costs no request,
//! which matters on Docker Hub, where every call counts against a rate limit.
//!
//! Tag selection combines an explicit list with a filter over the listed tags:
//! `list ∪ newest_N(semver(exclude(include(all tags))))`. Semver filters read tags leniently, as
//! image tags are written: a leading `v` is dropped and missing parts are zero (`3.20` is
//! 3.20.0, `v2` is 2.0.0); tags that are no version at all (`latest`, `edge`) are skipped by
//! semver filters. Pre-releases (`1.2.3-rc1`, but also `3.20.1-alpine`) are left out unless the
//! range names a pre-release of the same version, as Cargo does.

use std::fmt;
use std::time::Duration;

use regex::Regex;
use semver::{Prerelease, Version, VersionReq};
use serde::Deserialize;

use crate::manifest::Platform;
use crate::reference::{Reference, ReferenceError};
use crate::registry::{RegistryError, Transport};
use crate::schedule::Schedule;

/// What to do when the target tag already exists and points at a different image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnConflict {
    /// Move the target tag to the source's image (for moving tags like `latest`).
    #[default]
    Overwrite,
    /// Leave the target tag alone (for tags meant to be immutable).
    Keep,
}

impl OnConflict {
    /// The name as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            OnConflict::Overwrite => "overwrite",
            OnConflict::Keep => "keep",
        }
    }
}

/// Why a target template was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `{something}` that is not a known placeholder.
    #[error("unknown placeholder {{{0}}} (known: {{registry}}, {{repo}}, {{name}})")]
    UnknownPlaceholder(String),
    /// A `{` without its `}`, or a `}` without its `{`.
    #[error("unbalanced braces")]
    Unbalanced,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TemplatePart {
    Literal(String),
    Registry,
    Repo,
    Name,
}

/// Where a source repository lands: a reference template such as
/// `localhost:5001/mirror/{repo}`. Placeholders: `{registry}` (the source registry as named,
/// `docker.io` for Docker Hub), `{repo}` (the whole repository path, `library/alpine`) and
/// `{name}` (its last component, `alpine`).
#[derive(Clone, PartialEq, Eq)]
pub struct TargetTemplate {
    text: String,
    parts: Vec<TemplatePart>,
}

impl TargetTemplate {
    /// Parses a template (placeholders only; the expansion is checked per source by
    /// [`TargetTemplate::expand`]).
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                None => {
                    parts.push(TemplatePart::Literal(rest.to_string()));
                    break;
                }
                Some(i) => {
                    if i > 0 {
                        parts.push(TemplatePart::Literal(rest[..i].to_string()));
                    }
                    if rest[i..].starts_with('}') {
                        return Err(TemplateError::Unbalanced);
                    }
                    let close = rest[i..].find('}').ok_or(TemplateError::Unbalanced)? + i;
                    let name = &rest[i + 1..close];
                    if name.contains('{') {
                        return Err(TemplateError::Unbalanced);
                    }
                    parts.push(match name {
                        "registry" => TemplatePart::Registry,
                        "repo" => TemplatePart::Repo,
                        "name" => TemplatePart::Name,
                        other => return Err(TemplateError::UnknownPlaceholder(other.to_string())),
                    });
                    rest = &rest[close + 1..];
                }
            }
        }
        Ok(TargetTemplate {
            text: text.to_string(),
            parts,
        })
    }

    /// Whether the template uses any placeholder (without one, every source maps to the same
    /// target).
    pub fn has_placeholder(&self) -> bool {
        self.parts
            .iter()
            .any(|p| !matches!(p, TemplatePart::Literal(_)))
    }

    /// The target repository (no tag) for a source repository.
    pub fn expand(&self, source: &Reference) -> Result<Reference, ReferenceError> {
        let mut s = String::new();
        for part in &self.parts {
            match part {
                TemplatePart::Literal(l) => s.push_str(l),
                TemplatePart::Registry => s.push_str(source.registry()),
                TemplatePart::Repo => s.push_str(source.repository()),
                TemplatePart::Name => s.push_str(
                    source
                        .repository()
                        .rsplit('/')
                        .next()
                        .unwrap_or(source.repository()),
                ),
            }
        }
        Reference::parse(&s)
    }
}

impl fmt::Display for TargetTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for TargetTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TargetTemplate({:?})", self.text)
    }
}

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

/// Why a rule could not be turned into copy pairs.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// Listing the source repository's tags failed.
    #[error("listing tags of {repository}: {source}")]
    Tags {
        /// The source repository.
        repository: String,
        /// The transport's error.
        #[source]
        source: Box<RegistryError>,
    },
    /// A source or target reference could not be formed for a tag.
    #[error("tag {tag:?} of {repository}: {source}")]
    Reference {
        /// The source repository.
        repository: String,
        /// The tag.
        tag: String,
        /// Why the reference was refused.
        #[source]
        source: Box<ReferenceError>,
    },
}

/// One import rule with every default resolved; built by [`crate::config`].
#[derive(Debug, Clone)]
pub struct RulePlan {
    /// Unique name (metrics label, `--rule NAME`, shard key).
    pub name: String,
    /// Source repositories (no tag, no digest).
    pub sources: Vec<Reference>,
    /// Where each source lands.
    pub target: TargetTemplate,
    /// Further targets: each image goes to all of them, read from the source once.
    pub extra_targets: Vec<TargetTemplate>,
    /// Which tags to copy.
    pub tags: TagSelector,
    /// Platforms to copy out of multi-platform images; empty means all.
    pub platforms: Vec<Platform>,
    /// Whether to copy referrers (signatures, SBOMs, attestations).
    pub referrers: bool,
    /// What to do when a target tag points elsewhere.
    pub on_conflict: OnConflict,
    /// When the rule runs (UTC).
    pub schedule: Schedule,
    /// Time limit for one run of the rule.
    pub timeout: Duration,
    /// Backup tag template: before a tag moves off another image, that image is tagged with it.
    pub backup_tag: Option<String>,
    /// Signature policy: copy only images signed with one of these keys (`verify_keys`).
    pub verify: Option<std::sync::Arc<crate::trust::Policy>>,
    /// When to audit the rule's targets (`audit`), if ever.
    pub audit: Option<Schedule>,
}

impl RulePlan {
    /// The (first) target reference for `tag` of `source`.
    pub fn target_for(&self, source: &Reference, tag: &str) -> Result<Reference, ReferenceError> {
        self.target.expand(source)?.with_tag(tag)
    }

    /// Every target template, the first one first.
    pub fn targets(&self) -> impl Iterator<Item = &TargetTemplate> {
        std::iter::once(&self.target).chain(self.extra_targets.iter())
    }

    /// The `(source, target)` pairs for one of this rule's sources (one pair per target of
    /// each tag, in target order), asking `transport` (the
    /// source registry's) for the tag list only if the selector needs it.
    pub async fn resolve(
        &self,
        source: &Reference,
        transport: &dyn Transport,
    ) -> Result<Vec<(Reference, Reference)>, ResolveError> {
        Ok(self.resolve_listing(source, transport).await?.0)
    }

    /// [`RulePlan::resolve`], also giving the tag list when one was fetched, so that the copies
    /// can reuse it (finding signature tags needs it too) instead of listing again per image.
    pub async fn resolve_listing(
        &self,
        source: &Reference,
        transport: &dyn Transport,
    ) -> Result<(Vec<(Reference, Reference)>, Option<Vec<String>>), ResolveError> {
        if !self.tags.needs_tag_list() {
            return Ok((self.pairs(source, &[])?, None));
        }
        let available =
            transport
                .tags(source.repository())
                .await
                .map_err(|e| ResolveError::Tags {
                    repository: source.to_string(),
                    source: Box::new(e),
                })?;
        Ok((self.pairs(source, &available)?, Some(available)))
    }

    /// The pairs for the tags [`TagSelector::select`] picks out of `available`.
    fn pairs(
        &self,
        source: &Reference,
        available: &[String],
    ) -> Result<Vec<(Reference, Reference)>, ResolveError> {
        self.tags
            .select(available)
            .into_iter()
            .map(|tag| {
                let err = |e| ResolveError::Reference {
                    repository: source.to_string(),
                    tag: tag.clone(),
                    source: Box::new(e),
                };
                let src = source.with_tag(&tag).map_err(err)?;
                self.targets()
                    .map(|tpl| Ok((src.clone(), tpl.expand(source)?.with_tag(&tag)?)))
                    .collect::<Result<Vec<_>, ReferenceError>>()
                    .map_err(err)
            })
            .collect::<Result<Vec<Vec<_>>, _>>()
            .map(|v| v.into_iter().flatten().collect())
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

    #[test]
    fn templates() {
        let src = Reference::parse("docker.io/library/alpine").unwrap();
        let t = TargetTemplate::parse("localhost:5001/mirror/{registry}/{repo}").unwrap();
        assert_eq!(
            t.expand(&src).unwrap().to_string(),
            "localhost:5001/mirror/docker.io/library/alpine"
        );
        let t = TargetTemplate::parse("localhost:5001/{name}-copy").unwrap();
        assert!(t.has_placeholder());
        assert_eq!(
            t.expand(&src).unwrap().to_string(),
            "localhost:5001/alpine-copy"
        );
        let t = TargetTemplate::parse("localhost:5001/fixed").unwrap();
        assert!(!t.has_placeholder());
        assert_eq!(
            TargetTemplate::parse("x/{tag}").unwrap_err(),
            TemplateError::UnknownPlaceholder("tag".into())
        );
        for bad in ["x/{repo", "x/repo}", "x/{{repo}}", "x/{re{po}"] {
            assert!(TargetTemplate::parse(bad).is_err(), "{bad}");
        }
        // The registry of a port-bearing source is not a valid path component.
        let src = Reference::parse("localhost:5000/a/b").unwrap();
        let t = TargetTemplate::parse("localhost:5001/{registry}/{repo}").unwrap();
        assert!(t.expand(&src).is_err());
    }

    #[test]
    fn target_for_keeps_the_tag() {
        let rule = RulePlan {
            name: "r".into(),
            sources: vec![],
            target: TargetTemplate::parse("localhost:5001/m/{repo}").unwrap(),
            extra_targets: vec![],
            tags: TagSelector::default(),
            platforms: vec![],
            referrers: true,
            backup_tag: None,
            verify: None,
            audit: None,
            on_conflict: OnConflict::Keep,
            schedule: Schedule::Every(Duration::from_secs(60)),
            timeout: Duration::from_secs(60),
        };
        let src = Reference::parse("quay.io/org/img").unwrap();
        assert_eq!(
            rule.target_for(&src, "v1").unwrap().to_string(),
            "localhost:5001/m/org/img:v1"
        );
        assert!(rule.target_for(&src, "bad tag").is_err());
    }
}
