//! Load: `crossdock sync` of 500 tags across 50 repositories under low limits (issue 6).
//!
//! Small images, many of them: what is under test is not throughput but that a large run stays
//! inside its limits — every tag copied with its digest, the crossdock process's peak memory
//! bounded, and never more requests in flight at a registry than its `max_concurrency`. The
//! in-flight count is measured from outside, by a [`FaultProxy`] in front of each registry
//! (with no faults installed it only forwards and counts).

mod support;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use support::fixtures::{self, Format, RawManifest};
use support::proxy::FaultProxy;
use support::{RawClient, TestRegistry};

const REPOS: usize = 50;
const TAGS_PER_REPO: usize = 10;
const MAX_CONCURRENCY: usize = 2;
const MAX_IMAGES: usize = 4;
/// Peak resident memory allowed to the crossdock process.
const MAX_RSS_KIB: i64 = 100 * 1024;

/// A tiny single-platform image for (repo, tag): a 512-byte base layer shared by the tags of
/// a repository (as tags of one project share their base), and a config of its own.
fn tiny_image(repo: usize, tag: usize) -> (Vec<u8>, Vec<u8>, RawManifest) {
    let layer = fixtures::random_bytes(repo as u64, 512);
    let mut config = fixtures::config_json("linux/amd64", &[&layer]);
    config["config"]["Labels"] = serde_json::json!({ "tag": format!("t{tag}") });
    let config = serde_json::to_vec(&config).unwrap();
    let manifest = fixtures::image_manifest(Format::Oci, &config, &[&layer]);
    (config, layer, manifest)
}

fn repo_name(i: usize) -> String {
    format!("load/r{i:02}")
}

/// Pushes every (repo, tag) image to `a` directly (not through a proxy), many uploads at once;
/// tag 0 of every repository first, as it brings the shared layer. Returns each one's digest.
async fn seed(a: &TestRegistry) -> Vec<((usize, usize), String)> {
    let images: Vec<(usize, usize)> = (0..TAGS_PER_REPO)
        .flat_map(|t| (0..REPOS).map(move |r| (r, t)))
        .collect();
    let client = a.client();
    let (first, rest) = images.split_at(REPOS);
    let mut digests: Vec<((usize, usize), String)> = Vec::new();
    for batch in [first, rest] {
        let pushed: Vec<((usize, usize), String)> = futures_util::stream::iter(batch.to_vec())
            .map(|(r, t)| {
                let client: RawClient = client.clone();
                async move {
                    let (config, layer, manifest) = tiny_image(r, t);
                    let repo = repo_name(r);
                    if t == 0 {
                        client.push_blob(&repo, &layer).await;
                    }
                    client.push_blob(&repo, &config).await;
                    client
                        .put_manifest(&repo, &format!("t{t}"), &manifest)
                        .await;
                    ((r, t), manifest.digest)
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        digests.extend(pushed);
    }
    digests
}

/// The sync configuration: every source repository through `pa` to `mirror/` through `pb`,
/// under the low limits.
fn write_config(dir: &std::path::Path, pa: &FaultProxy, pb: &FaultProxy) -> std::path::PathBuf {
    let sources: Vec<String> = (0..REPOS)
        .map(|r| format!("\"{}/{}\"", pa.host(), repo_name(r)))
        .collect();
    let config = dir.join("load.toml");
    std::fs::write(
        &config,
        format!(
            r#"[daemon]
max_concurrent_images = {MAX_IMAGES}

[registries."{src}"]
max_concurrency = {MAX_CONCURRENCY}

[registries."{dst}"]
max_concurrency = {MAX_CONCURRENCY}

[[rules]]
name = "load"
source = [{sources}]
target = "{dst}/mirror/{{repo}}"
timeout = "5m"
referrers = false
[rules.tags]
all = true
"#,
            src = pa.host(),
            dst = pb.host(),
            sources = sources.join(", "),
        ),
    )
    .unwrap();
    config
}

/// The tags of `digests` that `b` does not hold at the source's digest (under `mirror/`).
async fn wrong_at_target(b: &TestRegistry, digests: Vec<((usize, usize), String)>) -> Vec<String> {
    let target = b.client();
    futures_util::stream::iter(digests)
        .map(|((r, t), want)| {
            let target = target.clone();
            async move {
                let repo = format!("mirror/{}", repo_name(r));
                let got = target.head_manifest(&repo, &format!("t{t}")).await;
                (got.as_deref() != Some(want.as_str())).then(|| format!("{repo}:t{t} {got:?}"))
            }
        })
        .buffer_unordered(16)
        .filter_map(|w| async move { w })
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_of_500_tags_stays_within_its_limits() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let (pa, pb) = (FaultProxy::start(&a), FaultProxy::start(&b));

    // Seed the source directly (not through the proxy), many uploads at once.
    let started = Instant::now();
    let digests = seed(&a).await;
    let seeded = started.elapsed();

    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &pa, &pb);
    let cmd = support::cli::command(&["sync", "--config", config.to_str().unwrap(), "--json"]);
    let synced = Instant::now();
    let measured = support::cli::run(cmd, None, Duration::from_secs(240));
    let run = &measured.output;
    let sync_time = synced.elapsed();
    assert!(
        run.status.success(),
        "sync failed ({}):\n{}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let images = report[0]["images"].as_array().unwrap();
    assert_eq!(images.len(), REPOS * TAGS_PER_REPO);
    assert!(images.iter().all(|i| i["state"] == "copied"), "{report}");

    // Every tag at the target, at the source's digest.
    let wrong = wrong_at_target(&b, digests).await;
    assert!(
        wrong.is_empty(),
        "wrong or missing at the target: {wrong:?}"
    );

    eprintln!(
        "seeded in {seeded:?}, synced in {sync_time:?}; peak RSS {} KiB; requests {} + {}; \
         peak in flight {} and {}",
        measured.max_rss_kib,
        pa.requests().len(),
        pb.requests().len(),
        pa.peak_in_flight(),
        pb.peak_in_flight()
    );
    assert!(
        measured.max_rss_kib < MAX_RSS_KIB,
        "peak RSS {} KiB",
        measured.max_rss_kib
    );
    // Never over the limit, and the limit was reached (so the measure can see a breach).
    assert_eq!(pa.peak_in_flight(), MAX_CONCURRENCY, "source");
    assert_eq!(pb.peak_in_flight(), MAX_CONCURRENCY, "target");
}
