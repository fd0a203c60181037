//! Unit tests of the engine's phases over the in-memory registry ([`super::memory`]): exact
//! request counts for the cheap paths, and the invariants (verified before commit, tag last,
//! nothing written on a conflict) for the others. Each runs in milliseconds; the same
//! behaviours are pinned end to end against real registries in tests/.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::memory::MemoryRegistry;
use super::{
    CopyError, CopyOptions, CopyReport, Engine, EngineOptions, Source, Target, TargetStatus,
};
use crate::manifest::{Manifest, media_type};
use crate::reference::Reference;
use crate::registry::retry::RetryPolicy;
use crate::registry::{ErrorKind, RegistryError, Transport};

/// An OCI image of `layers` layers in `reg`'s `repo` under `tag`, seeded by `seed`.
fn image(reg: &MemoryRegistry, repo: &str, tag: &str, seed: u8, layers: usize) -> Manifest {
    let config = reg.put_blob(
        repo,
        "application/vnd.oci.image.config.v1+json",
        format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#).as_bytes(),
    );
    let layers: Vec<_> = (0..layers)
        .map(|i| {
            let bytes = vec![seed.wrapping_add(i as u8); 1000 + i];
            reg.put_blob(repo, "application/vnd.oci.image.layer.v1.tar", &bytes)
        })
        .collect();
    let doc = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": config,
        "layers": layers,
    });
    let m = Manifest::from_bytes(
        serde_json::to_vec(&doc).unwrap().into(),
        Some(media_type::OCI_MANIFEST),
    )
    .unwrap();
    reg.put_manifest(repo, Some(tag), &m);
    m
}

/// An OCI index of `images` in `repo` under `tag`.
fn index(reg: &MemoryRegistry, repo: &str, tag: &str, images: &[(&Manifest, &str)]) -> Manifest {
    let manifests: Vec<_> = images
        .iter()
        .map(|(m, arch)| {
            let mut d = serde_json::to_value(m.descriptor()).unwrap();
            d["platform"] = serde_json::json!({"os": "linux", "architecture": arch});
            d
        })
        .collect();
    let doc = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": manifests,
    });
    let m = Manifest::from_bytes(
        serde_json::to_vec(&doc).unwrap().into(),
        Some(media_type::OCI_INDEX),
    )
    .unwrap();
    reg.put_manifest(repo, Some(tag), &m);
    m
}

fn source(reg: &Arc<MemoryRegistry>, reference: &str) -> Source {
    Source {
        transport: reg.clone() as Arc<dyn Transport>,
        reference: Reference::parse(&format!("{}/{reference}", reg.name())).unwrap(),
    }
}

fn target(reg: &Arc<MemoryRegistry>, repo: &str, tags: &[&str]) -> Target {
    Target {
        transport: reg.clone() as Arc<dyn Transport>,
        reference: Reference::parse(&format!("{}/{repo}", reg.name())).unwrap(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
    }
}

fn registries() -> (Arc<MemoryRegistry>, Arc<MemoryRegistry>) {
    (
        Arc::new(MemoryRegistry::new("src.test")),
        Arc::new(MemoryRegistry::new("dst.test")),
    )
}

async fn copy(engine: &Engine, src: &Source, targets: &[Target]) -> CopyReport {
    engine
        .copy(src, targets, &CopyOptions::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_no_op_costs_one_head_at_each_registry() {
    let (a, b) = registries();
    image(&a, "app", "v1", 1, 3);
    let engine = Engine::default();
    let (src, dst) = (source(&a, "app:v1"), target(&b, "app", &["v1"]));
    assert!(copy(&engine, &src, std::slice::from_ref(&dst)).await.ok());
    a.clear_calls();
    b.clear_calls();
    let report = copy(&engine, &src, &[dst]).await;
    assert_eq!(report.targets[0].status, TargetStatus::UpToDate);
    assert_eq!(a.calls().len(), 1, "{:?}", a.calls());
    assert_eq!(a.count("manifest_head"), 1);
    assert_eq!(b.calls().len(), 1, "{:?}", b.calls());
    assert_eq!(b.count("manifest_head"), 1);
}

#[tokio::test]
async fn a_fresh_repository_gets_each_blob_without_a_head() {
    let (a, b) = registries();
    let m = image(&a, "app", "v1", 2, 3);
    let report = copy(
        &Engine::default(),
        &source(&a, "app:v1"),
        &[target(&b, "mirror/app", &["v1"])],
    )
    .await;
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.targets[0].counts.blobs_copied, 4);
    // One tag question for the repository, then per blob a mount from itself (which asks "have
    // you got it?" and opens the upload) and the upload: no HEAD.
    assert_eq!(b.count("tags"), 1);
    assert_eq!(b.count("blob_head"), 0);
    assert_eq!(b.count("blob_mount"), 4);
    assert_eq!(b.count("blob_put"), 4);
    assert_eq!(b.count("manifest_put"), 1);
    assert_eq!(b.tag("mirror/app", "v1").as_ref(), Some(m.digest()));
}

#[tokio::test]
async fn a_corrupt_blob_is_never_committed_and_nothing_is_tagged() {
    let (a, b) = registries();
    let m = image(&a, "app", "v1", 3, 2);
    let crate::manifest::ManifestView::Image(img) = m.view() else {
        panic!("an image")
    };
    let bad = img.layers[1].digest.clone();
    a.corrupt(&bad);
    let report = copy(
        &Engine::default(),
        &source(&a, "app:v1"),
        &[target(&b, "app", &["v1"])],
    )
    .await;
    let TargetStatus::Failed(err) = &report.targets[0].status else {
        panic!("{report:?}")
    };
    assert!(
        matches!(err.cause(), CopyError::Blob { digest, .. } if *digest == bad),
        "a blob failure, typed: {err:?}"
    );
    let e = report.targets[0].status.error_text().unwrap();
    assert!(e.contains(&bad.to_string()) && e.contains("digest"), "{e}");
    assert!(!b.has_blob("app", &bad));
    assert_eq!(b.tag("app", "v1"), None);
    assert_eq!(b.count("manifest_put"), 0);
}

#[tokio::test]
async fn an_index_goes_up_children_first_and_its_tag_last() {
    let (a, b) = registries();
    let amd = image(&a, "app", "amd64", 4, 2);
    let arm = image(&a, "app", "arm64", 5, 2);
    let top = index(&a, "app", "v1", &[(&amd, "amd64"), (&arm, "arm64")]);
    let report = copy(
        &Engine::default(),
        &source(&a, "app:v1"),
        &[target(&b, "app", &["v1"])],
    )
    .await;
    assert!(report.ok(), "{report:?}");
    assert_eq!((report.images, report.manifests, report.blobs), (2, 3, 6));
    let calls = b.calls();
    let puts: Vec<usize> = calls
        .iter()
        .enumerate()
        .filter(|(_, c)| c.op == "manifest_put")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(puts.len(), 3);
    // Every blob before any manifest; the tag (the last PUT) last of all.
    let last_blob = calls.iter().rposition(|c| c.op == "blob_put").unwrap();
    assert!(last_blob < puts[0], "{calls:?}");
    assert_eq!(*puts.last().unwrap(), calls.len() - 1);
    assert_eq!(b.tag("app", "v1").as_ref(), Some(top.digest()));
}

#[tokio::test]
async fn a_tag_at_another_image_stops_the_copy_before_any_write() {
    let (a, b) = registries();
    image(&a, "app", "v1", 6, 1);
    let other = image(&b, "app", "v1", 7, 1);
    b.clear_calls();
    let e = Engine::default()
        .copy(
            &source(&a, "app:v1"),
            &[target(&b, "app", &["v1"])],
            &CopyOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, super::CopyError::Conflict { .. }), "{e}");
    assert_eq!(b.tag("app", "v1").as_ref(), Some(other.digest()));
    assert!(
        b.calls().iter().all(|c| c.op == "manifest_head"),
        "{:?}",
        b.calls()
    );
}

#[tokio::test]
async fn engine_options_bound_nothing_a_copy_needs() {
    // One blob permit and one image permit still copy an image with several blobs.
    let (a, b) = registries();
    image(&a, "app", "v1", 8, 4);
    let engine = Engine::new(EngineOptions {
        max_concurrent_blobs: 1,
        max_concurrent_images: 1,
    });
    let report = copy(
        &engine,
        &source(&a, "app:v1"),
        &[target(&b, "app", &["v1"])],
    )
    .await;
    assert!(report.ok(), "{report:?}");
}

/// An engine whose blob retries wait milliseconds.
fn fast_engine() -> Engine {
    Engine::with_blob_retry(
        EngineOptions::default(),
        RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            max_elapsed: Duration::from_secs(5),
        },
    )
}

#[tokio::test]
async fn a_failed_upload_is_retried_from_a_fresh_source_stream() {
    let (a, b) = registries();
    let m = image(&a, "app", "v1", 9, 1);
    let reset = crate::registry::RegistryError::new(
        crate::registry::ErrorKind::Transport,
        "PUT blob",
        "dst.test/app",
    );
    b.fail("blob_put", vec![reset]);
    let report = copy(
        &fast_engine(),
        &source(&a, "app:v1"),
        &[target(&b, "app", &["v1"])],
    )
    .await;
    assert!(report.ok(), "{report:?}");
    assert_eq!(b.count("blob_put"), 3, "2 blobs, one of them twice");
    assert_eq!(a.count("blob_get"), 3, "the retry read the source again");
    assert_eq!(b.tag("app", "v1").as_ref(), Some(m.digest()));
}

#[tokio::test]
async fn a_retry_after_beyond_the_budget_fails_the_blob_at_once_and_says_so() {
    let (a, b) = registries();
    image(&a, "app", "v1", 10, 1);
    let mut limited = RegistryError::new(
        ErrorKind::RateLimited,
        "PUT blob",
        "https://dst.test/v2/app/blobs/uploads/1",
    );
    limited.retry_after = Some(Duration::from_secs(2 * 3600));
    b.fail("blob_put", vec![limited]);
    let started = Instant::now();
    let report = copy(
        &Engine::default(),
        &source(&a, "app:v1"),
        &[target(&b, "app", &["v1"])],
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(1), "it waited");
    let e = report.targets[0].status.error_text().expect("failed");
    assert!(e.contains("registry dst.test asked to wait 2h"), "{e}");
    assert_eq!(b.tag("app", "v1"), None);
}

#[tokio::test]
async fn fan_out_into_repositories_of_one_registry_uploads_once_and_mounts() {
    let (a, b) = registries();
    let m = image(&a, "app", "v1", 11, 3);
    let repos = ["one/app", "two/app", "three/app"];
    let targets: Vec<Target> = repos.iter().map(|r| target(&b, r, &["v1"])).collect();
    let report = copy(&Engine::default(), &source(&a, "app:v1"), &targets).await;
    assert!(report.ok(), "{report:?}");
    // 4 blobs: read once, uploaded once (into the first repository), mounted into the others.
    assert_eq!(a.count("blob_get"), 4);
    assert_eq!(b.count("blob_put"), 4);
    assert_eq!(b.count("blob_head"), 0, "fresh repositories are not HEADed");
    // The first repository's own mount asks "have you got it?"; the others mount from it.
    assert_eq!(b.count("blob_mount"), 4 + 2 * 4);
    let counts: Vec<_> = report
        .targets
        .iter()
        .map(|t| (t.counts.blobs_copied, t.counts.blobs_mounted))
        .collect();
    assert_eq!(counts, [(4, 0), (0, 4), (0, 4)]);
    for r in repos {
        assert_eq!(b.tag(r, "v1").as_ref(), Some(m.digest()), "{r}");
    }
}

#[tokio::test]
async fn fan_out_to_two_registries_reads_the_source_once() {
    let (a, b) = registries();
    let c = Arc::new(MemoryRegistry::new("other.test"));
    image(&a, "app", "v1", 12, 2);
    let targets = [target(&b, "app", &["v1"]), target(&c, "app", &["v1"])];
    let report = copy(&Engine::default(), &source(&a, "app:v1"), &targets).await;
    assert!(report.ok(), "{report:?}");
    assert_eq!(a.count("blob_get"), 3);
    assert_eq!((b.count("blob_put"), c.count("blob_put")), (3, 3));
    // The fresh-repository shortcut holds for several targets too.
    assert_eq!((b.count("blob_head"), c.count("blob_head")), (0, 0));
}

#[tokio::test]
async fn copies_at_the_same_time_share_transfers_whatever_their_number_of_targets() {
    let (a, b) = registries();
    image(&a, "app", "v1", 13, 3);
    let engine = Engine::default();
    let src = source(&a, "app:v1");
    let first = [target(&b, "x/app", &["v1"]), target(&b, "y/app", &["v1"])];
    let second = [target(&b, "x/app", &["v2"]), target(&b, "y/app", &["v2"])];
    let (r1, r2) = futures_util::join!(copy(&engine, &src, &first), copy(&engine, &src, &second));
    assert!(r1.ok() && r2.ok(), "{r1:?}\n{r2:?}");
    // 4 blobs, each read and uploaded once for both copies and both repositories.
    assert_eq!(a.count("blob_get"), 4);
    assert_eq!(b.count("blob_put"), 4);
    for r in ["x/app", "y/app"] {
        assert_eq!(b.tag(r, "v1"), b.tag(r, "v2"));
        assert!(b.tag(r, "v1").is_some());
    }
}

#[tokio::test]
async fn a_target_that_fails_does_not_fail_the_others() {
    let (a, b) = registries();
    let c = Arc::new(MemoryRegistry::new("other.test"));
    let m = image(&a, "app", "v1", 14, 1);
    let denied = || RegistryError::new(ErrorKind::Denied, "PUT blob", "https://other.test/v2/app");
    c.fail("blob_put", vec![denied(), denied()]);
    let targets = [target(&b, "app", &["v1"]), target(&c, "app", &["v1"])];
    let report = copy(&fast_engine(), &source(&a, "app:v1"), &targets).await;
    assert!(report.targets[0].ok(), "{report:?}");
    assert!(matches!(report.targets[1].status, TargetStatus::Failed(_)));
    assert_eq!(b.tag("app", "v1").as_ref(), Some(m.digest()));
    assert_eq!(c.tag("app", "v1"), None);
}

#[tokio::test]
async fn resolve_under_a_platform_filter_reads_the_index_once() {
    let (a, _) = registries();
    let amd = image(&a, "app", "amd64", 15, 1);
    let arm = image(&a, "app", "arm64", 16, 1);
    let top = index(&a, "app", "v1", &[(&amd, "amd64"), (&arm, "arm64")]);
    a.clear_calls();
    let opts = CopyOptions {
        platforms: vec![crate::manifest::Platform::parse("linux/arm64").unwrap()],
        ..CopyOptions::default()
    };
    let src = source(&a, "app:v1");
    let engine = Engine::default();
    let resolved = engine.resolve(&src, &opts).await.unwrap();
    assert_eq!(&resolved.source_digest, top.digest());
    assert_ne!(
        resolved.wanted, resolved.source_digest,
        "a new, filtered index"
    );
    assert_eq!(a.calls().len(), 1, "{:?}", a.calls());
    assert_eq!(a.count("manifest_get"), 1);
    // The walk starts from what was resolved: only the kept image is read.
    let image = engine.read_source(&src, resolved, &opts).await.unwrap();
    assert!(image.filtered);
    assert_eq!(image.children.len(), 1);
    assert_eq!(image.children[0].digest(), arm.digest());
}

#[tokio::test]
async fn check_targets_sorts_up_to_date_from_pending_and_keeps_moved_tags() {
    let (a, b) = registries();
    let m = image(&a, "app", "v1", 17, 1);
    let old = image(&b, "moved", "v1", 18, 1);
    b.put_manifest("same", Some("v1"), &m);
    let targets = [
        target(&b, "same", &["v1"]),
        target(&b, "new", &["v1"]),
        target(&b, "moved", &["v1"]),
    ];
    let engine = Engine::default();
    let e = engine
        .check_targets(&targets, m.digest(), &CopyOptions::default())
        .await
        .err()
        .expect("a moved tag stops an unforced copy");
    assert!(matches!(e, super::CopyError::Conflict { .. }), "{e}");
    let forced = CopyOptions {
        force: true,
        ..CopyOptions::default()
    };
    let checked = engine
        .check_targets(&targets, m.digest(), &forced)
        .await
        .unwrap();
    assert_eq!(checked.pending, [1, 2]);
    assert_eq!(checked.reports[0].status, TargetStatus::UpToDate);
    assert_eq!(
        checked.reports[2].previous,
        [("v1".to_string(), old.digest().clone())]
    );
}

#[test]
fn one_counts_type_counts_each_outcome_where_the_report_reads_it() {
    use super::{BlobOutcome, TransferCounts};
    let mut c = TransferCounts::default();
    c.blob(BlobOutcome::Copied, 10);
    c.blob(BlobOutcome::WouldCopy, 1);
    c.blob(BlobOutcome::Mounted, 20);
    c.blob(BlobOutcome::Skipped, 30);
    c.blob(BlobOutcome::Skipped, u64::MAX);
    assert_eq!((c.blobs_copied, c.bytes_copied), (2, 11));
    assert_eq!((c.blobs_mounted, c.bytes_mounted), (1, 20));
    assert_eq!(
        (c.blobs_skipped, c.bytes_skipped),
        (2, u64::MAX),
        "saturating"
    );
    let json = serde_json::to_value(super::TargetReport {
        counts: c,
        ..super::TargetReport::new("r/x".into(), vec![], crate::digest::Digest::sha256_of(b""))
    })
    .unwrap();
    assert_eq!(json["blobs_copied"], 2, "flattened into the report: {json}");
}
