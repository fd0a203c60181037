//! Prune (issue 16) against real registries: two distribution 2.8 registries (`storage.delete`
//! enabled, see support::registry), a source and a mirror, and `crossdock sync` or the daemon
//! between them. distribution 2.8 deletes by digest only, so deletions at the mirror go through
//! the fallback (a digest is deleted only when no kept tag points at it); one test mirrors into
//! an OCI layout folder, which deletes by tag.
//!
//! One test per guard rail and per deleting rule of the issue: a deleted source tag disappears
//! from the mirror while tags outside the filter and fresh backup tags stay; an emptied source
//! prunes nothing and fails the run, as does a failed copy or listing; past `prune_limit`
//! nothing goes; a tag sharing its digest with a kept tag is reported, not deleted (and goes
//! alone where the target deletes by tag); signature tags go with their image; `--dry-run`
//! deletes nothing; the daemon counts and shows what it pruned; bad keys are reported with the
//! rule's name.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::cli;
use support::daemon::{Daemon, free_port, metric, sync, sync_json, write_config};
use support::prune::{Mirror, image, layout_tags, sync_text, tags, with_state};
use support::{BuiltImage, TestRegistry};

#[test]
fn a_deleted_source_tag_disappears_and_tags_outside_the_filter_and_fresh_backups_stay() {
    let m = Mirror::new();
    let (v1, v2, v3, old) = (image(1), image(2), image(3), image(4));
    m.push(&v1, &["v1"]);
    m.push(&v2, &["v2"]);
    m.push(&v3, &["v3"]);
    // `keep` rules prune too; backup tags older than 30 days go, fresh ones stay.
    let cfg = m.config(
        "prune = true\non_conflict = \"keep\"\nbackup_tag = \"{tag}-backup-{date}\"\n\
         prune_backups = \"30d\"",
    );
    sync_json(&cfg, &[]);
    let today = chrono::Utc::now().format("%Y%m%d").to_string();
    let fresh = format!("v1-backup-{today}");
    m.push_to_mirror(&v1, &fresh);
    m.push_to_mirror(&old, "v3-backup-20200101");
    m.push_to_mirror(&image(5), "dev");

    m.delete_at_source(&v2);
    let report = sync_json(&cfg, &[]);
    assert_eq!(
        with_state(&report, "pruned"),
        tags(&["v2", "v3-backup-20200101"])
    );
    let pruned = report[0]["pruned"].as_array().unwrap();
    // v1 and v3 are `present` (a keep rule's tags the mirror lists): not pruned tags.
    assert!(
        pruned.iter().all(|p| p["state"] == "pruned"),
        "only pruned tags in the run's pruned list: {report:#}"
    );
    let v2_entry = pruned
        .iter()
        .find(|p| p["target"].as_str().unwrap().ends_with(":v2"))
        .expect("v2 in the run's pruned list");
    assert_eq!(v2_entry["digest"], v2.digest(), "{report:#}");
    assert_eq!(
        m.mirror_tags(),
        tags(&["dev", "v1", &fresh, "v3"]),
        "v2 and the old backup are gone; the rest stays"
    );
    // Nothing more to prune: the next run deletes nothing.
    let again = sync_json(&cfg, &[]);
    assert!(with_state(&again, "pruned").is_empty(), "{again:#}");
}

#[test]
fn an_emptied_source_prunes_nothing_and_the_run_fails() {
    let m = Mirror::new();
    let (v1, v2) = (image(11), image(12));
    m.push(&v1, &["v1"]);
    m.push(&v2, &["v2"]);
    let cfg = m.config("prune = true");
    sync_json(&cfg, &[]);
    m.delete_at_source(&v1);
    m.delete_at_source(&v2);
    let (ok, text) = sync_text(&cfg, &[]);
    assert!(!ok, "an emptied source must fail the run:\n{text}");
    assert!(
        text.contains("not pruned: the source listed no tags (2 tags would have been deleted)"),
        "{text}"
    );
    assert_eq!(m.mirror_tags(), tags(&["v1", "v2"]));
}

/// A run whose copy failed, or whose source could not be listed, deletes nothing: what the
/// source lacks cannot be told from what it failed to give.
#[test]
fn a_failed_copy_or_listing_prunes_nothing() {
    let m = Mirror::new();
    let (v1, v2, v3) = (image(81), image(82), image(83));
    m.push(&v1, &["v1"]);
    m.push(&v2, &["v2"]);
    let cfg = m.config("prune = true");
    sync_json(&cfg, &[]);
    m.delete_at_source(&v2);
    // A new tag with a blob corrupt in the source's storage: its copy fails the digest check.
    m.push(&v3, &["v3"]);
    let (blob, bytes) = v3.blobs.iter().next().unwrap();
    std::fs::write(m.src.blob_data_path(blob), vec![b'x'; bytes.len()]).unwrap();
    let (ok, text) = sync_text(&cfg, &[]);
    assert!(!ok, "{text}");
    assert!(
        text.contains(
            "not pruned: this run had failures (1: failed copies and problems outside any \
             image); 1 tags would have been deleted"
        ),
        "{text}"
    );
    assert_eq!(m.mirror_tags(), tags(&["v1", "v2"]));

    m.src.stop();
    let (ok, text) = sync_text(&cfg, &[]);
    assert!(!ok, "{text}");
    assert!(text.contains("listing tags of"), "{text}");
    assert_eq!(m.mirror_tags(), tags(&["v1", "v2"]));
}

#[test]
fn past_the_limit_nothing_is_deleted_and_the_run_says_how_many_would_have_gone() {
    let m = Mirror::new();
    let images: Vec<BuiltImage> = (21..25).map(image).collect();
    for (i, img) in images.iter().enumerate() {
        m.push(img, &[&format!("v{}", i + 1)]);
    }
    let cfg = m.config("prune = true\nprune_limit = 2");
    sync_json(&cfg, &[]);
    for img in &images[..3] {
        m.delete_at_source(img);
    }
    let out = sync(&cfg, &[]);
    let text = cli::text(&out);
    assert!(!out.status.success(), "{text}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors = report[0]["errors"].to_string();
    assert!(
        errors.contains("3 tags would have been deleted, more than the limit of 2"),
        "{report:#}"
    );
    assert_eq!(m.mirror_tags(), tags(&["v1", "v2", "v3", "v4"]));
}

#[test]
fn a_tag_sharing_its_digest_with_a_kept_tag_is_not_removed_alone() {
    let m = Mirror::new();
    let (v1, shared) = (image(31), image(32));
    m.push(&v1, &["v1"]);
    m.push(&shared, &["v2", "v3"]);
    let cfg = m.config("prune = true");
    sync_json(&cfg, &[]);
    // distribution 2.8 removes a tag only with its digest: delete both, put v3 back.
    m.delete_at_source(&shared);
    m.push(&shared, &["v3"]);
    let (ok, text) = sync_text(&cfg, &[]);
    assert!(
        ok,
        "a tag that cannot be removed alone does not fail the run:\n{text}"
    );
    assert!(
        text.contains("v2: the registry deletes by digest only and v3 also points at"),
        "{text}"
    );
    assert!(
        text.contains("the tag could not be removed alone"),
        "{text}"
    );
    assert_eq!(m.mirror_tags(), tags(&["v1", "v2", "v3"]));
    let head = m.rt.block_on(m.dst.client().head_manifest("app", "v3"));
    assert_eq!(head.as_deref(), Some(shared.digest()), "the digest is kept");
}

#[test]
fn signature_tags_of_a_pruned_digest_go_with_it() {
    let m = Mirror::new();
    let (v1, v2) = (image(41), image(42));
    m.push(&v1, &["v1"]);
    m.push(&v2, &["v2"]);
    let hex = |i: &BuiltImage| i.digest().trim_start_matches("sha256:").to_string();
    let (sig1, sig2) = (
        format!("sha256-{}.sig", hex(&v1)),
        format!("sha256-{}.sig", hex(&v2)),
    );
    let att2 = format!("sha256-{}.att", hex(&v2));
    m.push(&image(43), &[&sig1]);
    m.push(&image(44), &[&sig2]);
    m.push(&image(45), &[&att2]);
    let cfg = m.config("prune = true");
    sync_json(&cfg, &[]);
    assert_eq!(
        m.mirror_tags(),
        tags(&["v1", "v2", &sig1, &sig2, &att2]),
        "the signatures were mirrored"
    );
    m.delete_at_source(&v2);
    let report = sync_json(&cfg, &[]);
    assert_eq!(
        with_state(&report, "pruned"),
        tags(&["v2", &sig2, &att2]),
        "{report:#}"
    );
    assert_eq!(m.mirror_tags(), tags(&["v1", &sig1]));
}

#[test]
fn dry_run_lists_what_would_go_and_deletes_nothing() {
    let m = Mirror::new();
    let (v1, v2) = (image(51), image(52));
    m.push(&v1, &["v1"]);
    m.push(&v2, &["v2"]);
    // No `prune = true`: `sync --prune` asks for it.
    let cfg = m.config("");
    sync_json(&cfg, &[]);
    m.delete_at_source(&v2);

    let plain = sync_json(&cfg, &[]);
    assert!(with_state(&plain, "pruned").is_empty(), "{plain:#}");
    let (ok, text) = sync_text(&cfg, &["--prune", "--dry-run"]);
    assert!(ok, "{text}");
    assert!(text.contains("would prune v2"), "{text}");
    assert!(text.contains("1 would prune"), "{text}");
    assert_eq!(
        m.mirror_tags(),
        tags(&["v1", "v2"]),
        "a dry run deletes nothing"
    );

    let (ok, text) = sync_text(&cfg, &["--prune"]);
    assert!(ok, "{text}");
    assert!(text.contains("pruned      v2"), "{text}");
    assert_eq!(m.mirror_tags(), tags(&["v1"]));
}

#[test]
fn the_daemon_counts_and_shows_what_it_pruned() {
    let m = Mirror::new();
    let (v1, v2) = (image(61), image(62));
    m.push(&v1, &["v1"]);
    m.push(&v2, &["v2"]);
    let cfg = m.config("prune = true");
    sync_json(&cfg, &[]);
    m.delete_at_source(&v2);

    let port = free_port();
    let text = std::fs::read_to_string(&cfg).unwrap();
    let cfg = write_config(
        m.dir.path(),
        &format!("[server]\nlisten = \"127.0.0.1:{port}\"\n{text}"),
    );
    let d = Daemon::start(&cfg, port, m.dir.path());
    d.wait_for(Duration::from_secs(30), "the first run", |d| {
        d.status()["rules"]["r"]["last_run"]["result"] == "ok"
    });
    let status = d.status();
    let pruned = &status["rules"]["r"]["last_run"]["pruned"];
    assert_eq!(pruned.as_array().map(Vec::len), Some(1), "{status:#}");
    assert!(
        pruned[0]["target"].as_str().unwrap().ends_with("/app:v2"),
        "{status:#}"
    );
    assert_eq!(pruned[0]["digest"], v2.digest());
    assert_eq!(pruned[0]["state"], "pruned");
    let metrics = d.metrics();
    assert_eq!(
        metric(&metrics, "crossdock_rule_pruned_total{rule=\"r\"}"),
        1.0,
        "{metrics}"
    );
    assert!(
        d.log().contains("pruned: its source tag is gone"),
        "{}",
        d.log()
    );
    assert_eq!(m.mirror_tags(), tags(&["v1"]));
}

#[test]
fn bad_prune_keys_are_reported_with_the_rule_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[[rules]]\nname = \"one\"\nsource = \"localhost:5000/a\"\n\
                target = \"localhost:5001/{repo}\"\ntags = [\"v1\"]\nprune = true\n\
                prune_limit = \"ten\"\nprune_backups = \"30d\"\n\n\
                [[rules]]\nname = \"two\"\nsource = \"localhost:5000/b\"\n\
                target = \"localhost:5001/{repo}\"\ntags = [\"v1\"]\nprune_limit = 0\n\
                backup_tag = \"old-{tag}\"\nprune_backups = \"soon\"\n\n\
                [[rules]]\nname = \"three\"\nsource = \"localhost:5000/c\"\n\
                target = \"localhost:5001/{repo}\"\ntags = [\"v1\"]\n\
                backup_tag = \"old-{tag}\"\nprune_backups = \"30d\"\n";
    let cfg = write_config(dir.path(), text);
    let out = cli::crossdock(&["check-config", cfg.to_str().unwrap()]);
    let text = cli::text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    for want in [
        "rules[0].prune_limit: rule \"one\": \"ten\" is neither a count (10) nor a percentage",
        "rules[0].prune_backups: rule \"one\": prune_backups needs a backup_tag",
        "rules[1].prune_limit: rule \"two\": a limit of 0 lets no tag be pruned",
        "rules[1].prune_backups: rule \"two\": invalid age \"soon\"",
        "rules[2].prune_backups: rule \"three\": its backup_tag \"old-{tag}\" puts no date in the tag",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}

/// A target that deletes by tag (an OCI layout folder): a tag sharing its image with a kept tag
/// goes alone, and the image's signature stays with the kept tag; once no tag keeps an image,
/// its signature goes too.
#[test]
fn a_target_deleting_by_tag_loses_just_the_tag() {
    let m = Mirror::new();
    let (v1, shared) = (image(71), image(72));
    m.push(&v1, &["v1"]);
    m.push(&shared, &["v2", "v3"]);
    let sig = |i: &BuiltImage| format!("sha256-{}.sig", &i.digest()["sha256:".len()..]);
    m.push(&image(73), &[&sig(&v1)]);
    m.push(&image(74), &[&sig(&shared)]);
    let layout = m.dir.path().join("layout");
    let cfg = m.layout_config(&layout);
    sync_json(&cfg, &[]);
    let app = layout.join("app");
    assert_eq!(
        layout_tags(&app),
        tags(&["v1", "v2", "v3", &sig(&v1), &sig(&shared)])
    );

    // v2 gone at the source, v3 (same image) still there.
    m.delete_at_source(&shared);
    m.push(&shared, &["v3"]);
    let report = sync_json(&cfg, &[]);
    assert_eq!(with_state(&report, "pruned"), tags(&["v2"]), "{report:#}");
    assert_eq!(
        layout_tags(&app),
        tags(&["v1", "v3", &sig(&v1), &sig(&shared)]),
        "v2 went alone; v3 keeps the image and its signature"
    );

    m.delete_at_source(&v1);
    let report = sync_json(&cfg, &[]);
    assert_eq!(
        with_state(&report, "pruned"),
        tags(&["v1", &sig(&v1)]),
        "{report:#}"
    );
    assert_eq!(layout_tags(&app), tags(&["v3", &sig(&shared)]));
}

/// A mirror that refuses deletes (distribution's default) fails the run with what to change,
/// and keeps its tags.
#[test]
fn a_registry_refusing_deletes_fails_the_run_and_says_what_to_change() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let src = TestRegistry::start();
    let dst = TestRegistry::builder().refuse_deletes().start();
    let (v1, v2) = (image(91), image(92));
    rt.block_on(src.client().push_image("app", "v1", &v1));
    rt.block_on(src.client().push_image("app", "v2", &v2));
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[[rules]]\nname = \"r\"\nsource = \"{}/app\"\ntarget = \"{}/{{repo}}\"\n\
         prune = true\n[rules.tags]\ninclude = [\"^v\"]\n",
        src.host(),
        dst.host()
    );
    let cfg = write_config(dir.path(), &text);
    sync_json(&cfg, &[]);
    rt.block_on(src.client().delete_manifest("app", v2.digest()));
    let (ok, text) = sync_text(&cfg, &[]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("failed      v2: pruning v2:")
            && text.contains(
                "the registry refuses deletes; for distribution, set storage.delete.enabled: true"
            ),
        "{text}"
    );
    let mut left = rt.block_on(dst.client().tags("app"));
    left.sort();
    assert_eq!(left, tags(&["v1", "v2"]));
}

/// A rule that lists its targets for its immutable tags (`on_conflict = "keep"`) plans its
/// pruning from that listing: a run with nothing to prune lists the mirror once, not twice.
/// What it deletes is still judged on the mirror as it is after the copies: a tag this run
/// copied onto the image of a pruned tag keeps that image on distribution 2.8.
#[test]
fn a_keep_rule_prunes_from_the_listing_its_copies_made() {
    let m = Mirror::new();
    let (v1, shared) = (image(121), image(122));
    m.push(&v1, &["v1"]);
    m.push(&shared, &["v2"]);
    let cfg = m.config("prune = true\non_conflict = \"keep\"");
    sync_json(&cfg, &[]);

    let mark = m.dst.request_mark();
    let report = sync_json(&cfg, &[]);
    assert_eq!(report[0]["counts"]["present"], 2, "{report:#}");
    let listings = m
        .dst
        .requests_since(mark)
        .into_iter()
        .filter(|r| r.is("GET", support::RequestKind::is_tag_list))
        .count();
    assert_eq!(listings, 1, "a no-op lists the mirror once");

    // v2 gone at the source, and v3 new there on v2's image: this run copies v3, whose
    // tag the listing made before the copies does not hold.
    m.delete_at_source(&shared);
    m.push(&shared, &["v3"]);
    let report = sync_json(&cfg, &[]);
    assert_eq!(with_state(&report, "copied"), tags(&["v3"]), "{report:#}");
    assert_eq!(
        with_state(&report, "not_pruned"),
        tags(&["v2"]),
        "{report:#}"
    );
    assert!(
        report.to_string().contains("v3 also points at"),
        "{report:#}"
    );
    assert_eq!(m.mirror_tags(), tags(&["v1", "v2", "v3"]));
}

/// Two rules fill one mirror repository from two sources (`app` and `tools`). Pruning either
/// would delete the other's tags on every run, so `prune = true` is refused by the
/// configuration and `sync --prune` before any request, and the mirror keeps both.
#[test]
fn a_rule_sharing_its_target_with_another_source_is_not_pruned() {
    let m = Mirror::new();
    m.push(&image(61), &["v1"]);
    m.rt.block_on(m.src.client().push_image("tools", "v9", &image(62)));
    let rules = |prune: &str| {
        let (src, dst) = (m.src.host(), m.dst.host());
        format!(
            "[[rules]]\nname = \"app\"\nsource = \"{src}/app\"\ntarget = \"{dst}/app\"\n\
             tags = [\"v1\"]\n{prune}\n[[rules]]\nname = \"tools\"\n\
             source = \"{src}/tools\"\ntarget = \"{dst}/app\"\ntags = [\"v9\"]\n"
        )
    };
    let plain = write_config(m.dir.path(), &rules(""));
    sync_json(&plain, &[]);
    assert_eq!(m.mirror_tags(), tags(&["v1", "v9"]));

    let (ok, out) = sync_text(&plain, &["--prune"]);
    assert!(!ok, "{out}");
    let src = m.src.host();
    for rule in ["app", "tools"] {
        assert!(
            out.contains(&format!("error: --prune: rule \"{rule}\" prunes")),
            "{out}"
        );
    }
    assert!(
        out.contains(&format!(
            "which rule \"tools\" also fills (from {src}/tools): pruning would delete the tags \
             {src}/app does not list"
        )),
        "{out}"
    );
    assert!(out.contains("or leave out --prune"), "{out}");

    let pruning = write_config(m.dir.path(), &rules("prune = true"));
    let (ok, out) = sync_text(&pruning, &[]);
    assert!(!ok, "{out}");
    assert!(out.contains("rules[0].prune: rule \"app\" prunes"), "{out}");
    assert!(out.contains("or set prune = false"), "{out}");
    assert_eq!(m.mirror_tags(), tags(&["v1", "v9"]), "nothing was deleted");
}
