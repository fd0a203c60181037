//! A prune dry run tells what the real run will do (issue 16, follow-up), against real
//! distribution 2.8 registries (deletes enabled; see support::prune): a tag whose image a kept
//! tag shares is not promised to go, since distribution 2.8 deletes by digest only and the real
//! run keeps it; and the signature and attestation tags that would go with a pruned image are
//! listed. Each dry run is followed by the real run, which must agree.

mod support;

use serde_json::Value;
use support::daemon::sync_json;
use support::prune::{Mirror, image, sync_text, tags, with_state};

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
