//! A prune dry run tells what the real run will do (issue 16, follow-up), against real
//! distribution 2.8 registries (deletes enabled; see support::prune): a tag whose image a kept
//! tag shares is not promised to go, since distribution 2.8 deletes by digest only and the real
//! run keeps it; and the signature and attestation tags that would go with a pruned image are
//! listed; a percentage `prune_limit` counts the tags the dry run would copy, as the real run
//! counts the tags it copied; and a target that deletes a tag alone (an OCI layout folder) is
//! promised exactly that, without asking its kept tags, while a registry's kept tags are asked
//! once per target repository (counted in the mirror's access log). Each dry run is followed by
//! the real run, which must agree.

mod support;

use serde_json::Value;
use support::daemon::{sync, sync_json};
use support::prune::{Mirror, image, layout_tags, sync_text, tags, with_state};

/// The `error` of the outcome for target tag `tag` in a `sync --json` report.
fn reason(report: &Value, tag: &str) -> String {
    report[0]["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["target"].as_str().unwrap().ends_with(&format!(":{tag}")))
        .and_then(|i| i["error"].as_str())
        .unwrap_or_else(|| panic!("no reason for {tag} in {report:#}"))
        .to_string()
}

#[test]
fn a_dry_run_does_not_promise_a_tag_that_shares_its_image_with_a_kept_tag() {
    let m = Mirror::new();
    let (v1, shared, alone) = (image(101), image(102), image(103));
    m.push(&v1, &["v1"]);
    m.push(&shared, &["v2", "v3"]);
    m.push(&alone, &["v4"]);
    let cfg = m.config("prune = true");
    sync_json(&cfg, &[]);
    // v2 and v4 gone at the source; v3 (v2's image) stays. distribution 2.8 removes a tag only
    // with its digest: delete both, put v3 back.
    m.delete_at_source(&shared);
    m.push(&shared, &["v3"]);
    m.delete_at_source(&alone);

    let dry = sync_json(&cfg, &["--dry-run"]);
    assert_eq!(with_state(&dry, "would_prune"), tags(&["v4"]), "{dry:#}");
    assert_eq!(
        with_state(&dry, "would_prune_by_tag"),
        tags(&["v2"]),
        "{dry:#}"
    );
    assert_eq!(dry[0]["counts"]["would_prune_by_tag"], 1, "{dry:#}");
    let why = reason(&dry, "v2");
    assert!(
        why.contains("would be pruned only where the registry deletes tags by name")
            && why.contains(&format!(
                "where it deletes by digest only (distribution 2.8) it stays, because v3 also \
                 points at {}",
                shared.digest()
            )),
        "{why}"
    );
    let (ok, text) = sync_text(&cfg, &["--dry-run"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("1 would prune, 1 would prune only where the registry deletes by tag"),
        "{text}"
    );
    assert!(
        text.contains("by tag only v2: would be pruned only"),
        "{text}"
    );
    assert_eq!(m.mirror_tags(), tags(&["v1", "v2", "v3", "v4"]));

    // The real run on distribution 2.8 does what the dry run said it would there.
    let real = sync_json(&cfg, &[]);
    assert_eq!(with_state(&real, "pruned"), tags(&["v4"]), "{real:#}");
    assert_eq!(with_state(&real, "not_pruned"), tags(&["v2"]), "{real:#}");
    assert_eq!(m.mirror_tags(), tags(&["v1", "v2", "v3"]));
}

#[test]
fn a_dry_run_lists_the_signatures_that_would_go_with_an_image() {
    let m = Mirror::new();
    let (v1, v2) = (image(111), image(112));
    m.push(&v1, &["v1"]);
    m.push(&v2, &["v2"]);
    let hex = |i: &support::BuiltImage| i.digest()["sha256:".len()..].to_string();
    let (sig1, sig2, att2) = (
        format!("sha256-{}.sig", hex(&v1)),
        format!("sha256-{}.sig", hex(&v2)),
        format!("sha256-{}.att", hex(&v2)),
    );
    m.push(&image(113), &[&sig1]);
    m.push(&image(114), &[&sig2]);
    m.push(&image(115), &[&att2]);
    let cfg = m.config("prune = true");
    sync_json(&cfg, &[]);
    m.delete_at_source(&v2);

    let dry = sync_json(&cfg, &["--dry-run"]);
    let gone = tags(&["v2", &sig2, &att2]);
    assert_eq!(with_state(&dry, "would_prune"), gone, "{dry:#}");
    let sig_entry = dry[0]["pruned"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["target"].as_str().unwrap().ends_with(&sig2))
        .expect("the signature in the run's pruned list");
    assert_eq!(sig_entry["digest"], image(114).digest(), "{dry:#}");
    assert_eq!(
        m.mirror_tags(),
        tags(&["v1", "v2", &sig1, &sig2, &att2]),
        "a dry run deletes nothing"
    );

    let real = sync_json(&cfg, &[]);
    assert_eq!(with_state(&real, "pruned"), gone, "{real:#}");
    assert_eq!(m.mirror_tags(), tags(&["v1", &sig1]));
}

/// The run's problems outside any image (`errors` of a `sync --json` report), as text.
fn errors(config: &std::path::Path, extra: &[&str]) -> String {
    let out = sync(config, extra);
    assert!(!out.status.success(), "{}", support::cli::text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    report[0]["errors"].to_string()
}

/// A percentage limit is a share of the target's selected tags, and the real run counts the
/// tags it has just copied among them: the dry run counts those it would copy. Before, the
/// dry run counted only the tags the target held and refused (2 of 3 is over 50%) where the
/// real run pruned (2 of 6).
#[test]
fn a_percentage_limit_counts_the_tags_a_dry_run_would_copy() {
    let m = Mirror::new();
    let images: Vec<_> = (131..138).map(image).collect();
    for (i, img) in images[..3].iter().enumerate() {
        m.push(img, &[&format!("v{}", i + 1)]);
    }
    let cfg = m.config("prune = true\nprune_limit = \"50%\"");
    sync_json(&cfg, &[]);
    // v2 and v3 gone at the source, v4 to v6 new there.
    m.delete_at_source(&images[1]);
    m.delete_at_source(&images[2]);
    for (i, img) in images[3..6].iter().enumerate() {
        m.push(img, &[&format!("v{}", i + 4)]);
    }

    let dry = sync_json(&cfg, &["--dry-run"]);
    assert_eq!(
        with_state(&dry, "would_prune"),
        tags(&["v2", "v3"]),
        "{dry:#}"
    );
    assert_eq!(with_state(&dry, "dry_run"), tags(&["v4", "v5", "v6"]));
    assert_eq!(
        m.mirror_tags(),
        tags(&["v1", "v2", "v3"]),
        "a dry run deletes nothing"
    );
    let real = sync_json(&cfg, &[]);
    assert_eq!(with_state(&real, "pruned"), with_state(&dry, "would_prune"));
    assert_eq!(with_state(&real, "copied"), tags(&["v4", "v5", "v6"]));
    assert_eq!(m.mirror_tags(), tags(&["v1", "v4", "v5", "v6"]));

    // Past the limit, both refuse alike: v1, v4 and v5 gone, v7 new; 3 of 5 is over 50%.
    for img in [&images[0], &images[3], &images[4]] {
        m.delete_at_source(img);
    }
    m.push(&images[6], &["v7"]);
    let over = "3 tags would have been deleted, more than the limit of 2";
    let dry = errors(&cfg, &["--dry-run"]);
    assert!(dry.contains(over), "{dry}");
    let real = errors(&cfg, &[]);
    assert!(real.contains(over), "{real}");
    assert_eq!(m.mirror_tags(), tags(&["v1", "v4", "v5", "v6", "v7"]));
}

/// An OCI layout folder deletes a tag alone, and knows it: a dry run promises that a tag
/// sharing its image with a kept tag goes (`would_prune`, not `would_prune_by_tag`), without
/// asking the kept tags which image they point at, and the real run deletes just that tag.
#[test]
fn a_dry_run_into_a_layout_promises_a_tag_that_shares_its_image() {
    let m = Mirror::new();
    let (v1, shared) = (image(141), image(142));
    m.push(&v1, &["v1"]);
    m.push(&shared, &["v2", "v3"]);
    let layout = m.dir.path().join("layout");
    let cfg = m.layout_config(&layout);
    sync_json(&cfg, &[]);
    let app = layout.join("app");
    // A kept tag outside the selection whose manifest is missing: a dry run asking the kept
    // tags would fail to read it and could then promise nothing (`dev (digest unknown)`).
    let index_path = app.join("index.json");
    let mut index: Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let mut dev = index["manifests"][0].clone();
    dev["digest"] = format!("sha256:{}", "0".repeat(64)).into();
    dev["annotations"]["org.opencontainers.image.ref.name"] = "dev".into();
    index["manifests"].as_array_mut().unwrap().push(dev);
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    // v2 gone at the source, v3 (same image) still there.
    m.delete_at_source(&shared);
    m.push(&shared, &["v3"]);

    let dry = sync_json(&cfg, &["--dry-run"]);
    assert_eq!(with_state(&dry, "would_prune"), tags(&["v2"]), "{dry:#}");
    assert_eq!(dry[0]["counts"]["would_prune_by_tag"], 0, "{dry:#}");
    assert_eq!(layout_tags(&app), tags(&["dev", "v1", "v2", "v3"]));

    let real = sync_json(&cfg, &[]);
    assert_eq!(with_state(&real, "pruned"), tags(&["v2"]), "{real:#}");
    assert_eq!(layout_tags(&app), tags(&["dev", "v1", "v3"]));
    let index: Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let v3 = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["annotations"]["org.opencontainers.image.ref.name"] == "v3")
        .expect("v3 in the layout");
    assert_eq!(v3["digest"], shared.digest(), "v3 keeps the image");
}

/// On a registry, which cannot tell before a DELETE whether it deletes a tag alone, a dry run
/// asks each kept tag's image once per target repository, and only when something would go:
/// two doomed images cost the kept tag `v1` one HEAD more than a run with nothing to prune.
#[test]
fn a_dry_run_asks_each_kept_tag_once_and_only_when_something_would_go() {
    let m = Mirror::new();
    let images: Vec<_> = (151..154).map(image).collect();
    for (i, img) in images.iter().enumerate() {
        m.push(img, &[&format!("v{}", i + 1)]);
    }
    let cfg = m.config("prune = true");
    sync_json(&cfg, &[]);
    let heads_of_v1 = |extra: &[&str]| {
        let mark = m.dst.request_mark();
        let report = sync_json(&cfg, extra);
        let heads = m
            .dst
            .requests_since(mark)
            .into_iter()
            .filter(|r| r.method == "HEAD" && r.path == "/v2/app/manifests/v1")
            .count();
        (report, heads)
    };
    let (_, nothing_to_prune) = heads_of_v1(&["--dry-run"]);

    m.delete_at_source(&images[1]);
    m.delete_at_source(&images[2]);
    let (dry, two_doomed) = heads_of_v1(&["--dry-run"]);
    assert_eq!(
        with_state(&dry, "would_prune"),
        tags(&["v2", "v3"]),
        "{dry:#}"
    );
    assert_eq!(
        two_doomed,
        nothing_to_prune + 1,
        "one HEAD of v1 for pruning"
    );
    let real = sync_json(&cfg, &[]);
    assert_eq!(with_state(&real, "pruned"), tags(&["v2", "v3"]), "{real:#}");
}
