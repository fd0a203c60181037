//! Table-driven tests of prune planning: one row per guard rail.

use chrono::TimeZone;
use regex::Regex;

use super::*;
use crate::rule::select::TagFilter;

fn tags(list: &[&str]) -> Vec<String> {
    list.iter().map(|t| t.to_string()).collect()
}

fn include(pattern: &str) -> TagSelector {
    TagSelector {
        list: Vec::new(),
        filter: Some(TagFilter {
            include: vec![Regex::new(pattern).unwrap()],
            ..TagFilter::default()
        }),
    }
}

const SIG: &str = "sha256-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.sig";

struct Case {
    name: &'static str,
    source: Option<&'static [&'static str]>,
    target: &'static [&'static str],
    failed: usize,
    /// Selected tags this run wrote that the target listing predates.
    unlisted: usize,
    limit: PruneLimit,
    backups: Option<u64>,
    want: Result<&'static [&'static str], Refusal>,
}

fn case(name: &'static str, source: Option<&'static [&'static str]>) -> Case {
    Case {
        name,
        source,
        target: &["v1", "v2", "v3", "dev"],
        failed: 0,
        unlisted: 0,
        limit: PruneLimit::default(),
        backups: None,
        want: Ok(&[]),
    }
}

/// Which tags go: those the source no longer has, within the filter.
fn selection_cases() -> Vec<Case> {
    vec![
        Case {
            want: Ok(&["v2"]),
            ..case("a deleted source tag goes", Some(&["v1", "v3"]))
        },
        Case {
            target: &["v1", "dev", "ci-7"],
            want: Ok(&[]),
            ..case("tags outside the filter stay", Some(&["v1"]))
        },
    ]
}

/// What makes a run prune nothing: a failed listing, an empty source, a failed copy.
fn refusal_cases() -> Vec<Case> {
    vec![
        Case {
            want: Err(Refusal::ListingFailed),
            ..case("a failed listing prunes nothing", None)
        },
        Case {
            want: Err(Refusal::SourceEmpty { would: 3 }),
            ..case("an empty source prunes nothing", Some(&[]))
        },
        Case {
            failed: 2,
            want: Err(Refusal::CopiesFailed {
                failed: 2,
                would: 2,
            }),
            ..case("a failed copy prunes nothing", Some(&["v1"]))
        },
    ]
}

/// The prune limit, as a count and as a percentage of the selected tags.
fn limit_cases() -> Vec<Case> {
    vec![
        Case {
            limit: PruneLimit::Count(2),
            want: Err(Refusal::OverLimit { would: 3, limit: 2 }),
            ..case("past the limit nothing goes", Some(&["x"]))
        },
        Case {
            limit: PruneLimit::Count(3),
            want: Ok(&["v1", "v2", "v3"]),
            ..case("at the limit all go", Some(&["x"]))
        },
        Case {
            target: &["v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10"],
            limit: PruneLimit::Percent(10),
            want: Ok(&["v5"]),
            ..case(
                "10% of 10 selected is 1",
                Some(&["v1", "v2", "v3", "v4", "v6", "v7", "v8", "v9", "v10"]),
            )
        },
        Case {
            limit: PruneLimit::Percent(10),
            want: Err(Refusal::OverLimit { would: 1, limit: 0 }),
            ..case("10% of 3 selected is 0", Some(&["v1", "v3"]))
        },
    ]
}

/// Guard rails that stay quiet when nothing would go.
fn quiet_cases() -> Vec<Case> {
    vec![
        Case {
            limit: PruneLimit::Percent(10),
            unlisted: 7,
            want: Ok(&["v2"]),
            ..case(
                "tags copied after the target was listed count: 10% of 3 + 7 is 1",
                Some(&["v1", "v3"]),
            )
        },
        Case {
            failed: 1,
            want: Ok(&[]),
            ..case(
                "guard rails stay quiet when nothing would go",
                Some(&["v1", "v2", "v3"]),
            )
        },
        Case {
            target: &["dev"],
            want: Ok(&[]),
            ..case(
                "an empty source with nothing selected at the target",
                Some(&[]),
            )
        },
    ]
}

/// Signature tags and backup tags (which go only with prune_backups).
fn exempt_tag_cases() -> Vec<Case> {
    let day = 86_400;
    vec![
        Case {
            target: &["v1", SIG],
            want: Ok(&[]),
            ..case("signature tags are never candidates", Some(&["v1"]))
        },
        Case {
            target: &["v1", "v1-bak-20261001", "v1-bak-20261120"],
            want: Ok(&[]),
            ..case("backup tags stay without prune_backups", Some(&["v1"]))
        },
        Case {
            target: &["v1", "v1-bak-20261001", "v1-bak-20261120"],
            backups: Some(30 * day),
            want: Ok(&["v1-bak-20261001"]),
            ..case("backup tags older than prune_backups go", Some(&["v1"]))
        },
    ]
}

#[test]
fn guard_rails() {
    let cases = [
        selection_cases(),
        refusal_cases(),
        limit_cases(),
        quiet_cases(),
        exempt_tag_cases(),
    ]
    .into_iter()
    .flatten();
    let now = Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap();
    for c in cases {
        let source = c.source.map(tags);
        let target = tags(c.target);
        let selector = include("^v");
        let input = PlanInput {
            source_tags: source.as_deref(),
            target_tags: &target,
            unlisted_selected: c.unlisted,
            selector: &selector,
            backup_tag: Some("{tag}-bak-{date}"),
            failed_copies: c.failed,
            now,
        };
        let policy = PrunePolicy {
            enabled: true,
            limit: c.limit,
            backups: c.backups.map(Duration::from_secs),
        };
        let want = c.want.map(tags);
        assert_eq!(plan(input, &policy), want, "{}", c.name);
    }
}

#[test]
fn limits_parse_as_counts_or_percentages() {
    assert_eq!(PruneLimit::parse("10"), Ok(PruneLimit::Count(10)));
    assert_eq!(PruneLimit::parse("25%"), Ok(PruneLimit::Percent(25)));
    for bad in ["", "-1", "101%", "ten", "5 %%"] {
        assert!(PruneLimit::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn artifact_tags_name_their_digest() {
    let hex = &SIG["sha256-".len().."sha256-".len() + 64];
    assert_eq!(artifact_subject(SIG), Some(format!("sha256:{hex}")));
    for suffix in ["att", "sbom"] {
        assert!(artifact_subject(&format!("sha256-{hex}.{suffix}")).is_some());
    }
    assert!(
        artifact_subject(&format!("sha256-{hex}")).is_some(),
        "referrers fallback tag"
    );
    for not in ["sha256-abc.sig", "v1.sig", &format!("sha256-{hex}.txt")] {
        assert_eq!(artifact_subject(not), None, "{not}");
    }
}

#[test]
fn backup_patterns_read_dates_or_none() {
    let p = BackupPattern::new("{tag}-backup-{datetime}-{digest}");
    let d = p.date_of("v1-backup-20261001120000-0123456789ab").unwrap();
    assert_eq!(d, Some(Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap()));
    assert_eq!(p.date_of("v1-backup-2026"), None);
    assert_eq!(p.date_of("v1"), None);
    let undated = BackupPattern::new("old-{tag}");
    assert_eq!(undated.date_of("old-v1"), Some(None));
}

#[test]
fn explicit_list_tags_and_newest_filters_are_taken() {
    let list = TagSelector {
        list: tags(&["pinned"]),
        filter: None,
    };
    assert!(selection_takes(&list, "pinned"));
    assert!(!selection_takes(&list, "other"));
    let newest = TagSelector {
        list: Vec::new(),
        filter: Some(TagFilter {
            newest: Some(3),
            ..TagFilter::default()
        }),
    };
    assert!(selection_takes(&newest, "1.2.3"));
    assert!(!selection_takes(&newest, "latest"));
}
