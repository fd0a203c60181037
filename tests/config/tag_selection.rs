//! Tag selection against a real registry with many tags, and the requests it costs: an explicit
//! list costs no tag listing, a filter costs one.

use crossdock::config::Plan;
use crossdock::reference::Reference;
use crossdock::registry::http::HttpRegistry;

use crate::load;
use crate::support::TestRegistry;
use crate::support::fixtures::{Format, ImageSpec};

/// The tags pushed to the source: releases, pre-releases, a `v` prefix, a variant, floating
/// tags, a dated nightly.
const TAGS: [&str; 18] = [
    "1.0.0",
    "1.1.0",
    "1.2.0",
    "1.2.1",
    "1.3.0-rc1",
    "1.3.0",
    "1.3",
    "v1.4.0",
    "2.0.0-beta",
    "2.0.0",
    "2.1.0",
    "2.1.1",
    "latest",
    "edge",
    "nightly-20240101",
    "1.4.0-alpine",
    "0.9.0",
    "3.0.0",
];

/// Three rules over `HOST/app`: an explicit list, a filter (list, exclude, semver range, newest
/// few), and regexes.
fn rules(host: &str) -> String {
    format!(
        r#"
[[rules]]
name = "listed"
source = "{host}/app"
target = "localhost:5999/mirror/{{repo}}"
tags = ["latest", "1.2.1"]

[[rules]]
name = "filtered"
source = "{host}/app"
target = "localhost:5999/mirror/{{repo}}"
[rules.tags]
list = ["edge"]
exclude = ["^0\\."]
semver = ">=1.2, <3"
newest = 4

[[rules]]
name = "regex"
source = "{host}/app"
target = "localhost:5999/{{name}}"
[rules.tags]
include = ["^v?1\\.\\d+$", "^nightly-"]
"#
    )
}

/// The (source, target) pairs the rule `name` resolves to, and how many tag listings that cost
/// at `reg`.
async fn resolve(
    plan: &Plan,
    transport: &HttpRegistry,
    reg: &TestRegistry,
    name: &str,
) -> (Vec<(Reference, Reference)>, usize) {
    let rule = plan.rule(name).unwrap();
    let mark = reg.request_mark();
    let pairs = rule.resolve(&rule.sources[0], transport).await.unwrap();
    let listings = reg
        .requests_since(mark)
        .iter()
        .filter(|r| r.kind().is_tag_list())
        .count();
    (pairs, listings)
}

/// The tags of `pairs`, each the same at the source and the target.
fn tags_of(pairs: &[(Reference, Reference)]) -> Vec<String> {
    pairs
        .iter()
        .map(|(s, t)| {
            assert_eq!(s.tag(), t.tag());
            s.tag().unwrap().to_string()
        })
        .collect()
}

/// Tag selection against a real registry with many tags, and the request it costs: an explicit
/// list costs no tag listing, a filter costs one.
#[tokio::test]
async fn tag_selection_against_a_real_registry() {
    let reg = TestRegistry::start();
    let image = ImageSpec::single(Format::Oci, "linux/amd64")
        .layers(1)
        .build();
    let client = reg.client();
    for t in TAGS {
        client.push_image("app", t, &image).await;
    }
    let host = reg.host();
    let plan = load(&rules(&host), &[]).unwrap_or_else(|e| panic!("{e}"));
    let transport = HttpRegistry::new(&host, plan.registry_options(&host).http_options(&host))
        .expect("transport");

    let (pairs, listings) = resolve(&plan, &transport, &reg, "listed").await;
    assert_eq!(listings, 0, "an explicit list needs no tag listing");
    let shown: Vec<String> = pairs.iter().map(|(s, t)| format!("{s} -> {t}")).collect();
    assert_eq!(
        shown,
        [
            format!("{host}/app:latest -> localhost:5999/mirror/app:latest"),
            format!("{host}/app:1.2.1 -> localhost:5999/mirror/app:1.2.1"),
        ]
    );

    let (pairs, listings) = resolve(&plan, &transport, &reg, "filtered").await;
    assert_eq!(listings, 1);
    // In range and released: 1.2.0 1.2.1 1.3.0 1.3 v1.4.0 2.0.0 2.1.0 2.1.1; the newest four.
    assert_eq!(
        tags_of(&pairs),
        ["edge", "2.0.0", "2.1.0", "2.1.1", "v1.4.0"]
    );

    let (pairs, _) = resolve(&plan, &transport, &reg, "regex").await;
    assert_eq!(tags_of(&pairs), ["1.3", "nightly-20240101"]);
    assert_eq!(
        pairs[0].1.to_string(),
        "localhost:5999/app:1.3",
        "{{name}} is the last path component"
    );
}
