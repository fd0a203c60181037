//! Faults between crossdock and real registries (issue 6): resets, server errors, rate limits,
//! stalls, short and corrupt bodies, lost answers, a tag moving mid-copy, `kill -9`, and copies
//! that must not deadlock on tight request limits (within one registry, in both directions
//! between two, to several repositories at once).
//!
//! Every test runs the crossdock binary against `docker-registry` processes with a
//! [`FaultProxy`] in front of the source or the target. Whatever the fault, one of two things
//! must hold, and each test checks which: the copy finished and the target holds exactly the
//! source's bytes, or it failed with an error that says what went wrong — and in both cases no
//! target tag points at an image that is not wholly there.

mod support;

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::cli::{command, crossdock, text};
use support::proxy::{Fault, FaultProxy, RetryAfter, Rule, Seen};
use support::{BuiltImage, Format, ImageSpec, TestRegistry};

fn ok(out: &Output) -> Value {
    assert!(out.status.success(), "crossdock failed:\n{}", text(out));
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// The run failed with exit code 1 (an operation failure, not a usage error), without a panic,
/// and its output contains every one of `needles`.
fn failed_with(out: &Output, needles: &[&str]) {
    let all = text(out);
    assert_eq!(out.status.code(), Some(1), "expected a failure:\n{all}");
    assert!(!all.contains("panicked"), "{all}");
    for n in needles {
        assert!(all.contains(n), "error does not mention {n:?}:\n{all}");
    }
}

/// An image of `platforms` × `layers` layers of `size` bytes.
fn image(seed: u64, platforms: usize, layers: usize, size: usize) -> BuiltImage {
    let all = ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"];
    ImageSpec::multi(Format::Oci, &all[..platforms])
        .layers(layers)
        .layer_size(size)
        .seed(seed)
        .build()
}

/// Every manifest and blob of `image` is in `repo`, byte for byte, and `tag` points at it.
async fn assert_copied(reg: &TestRegistry, repo: &str, tag: &str, image: &BuiltImage) {
    let c = reg.client();
    for m in image.manifests.iter().chain(image.index.iter()) {
        let got = c
            .get_manifest(repo, &m.digest)
            .await
            .unwrap_or_else(|| panic!("manifest {} missing in {repo}", m.digest));
        assert_eq!(got.bytes, m.bytes, "manifest {} differs", m.digest);
    }
    for (d, bytes) in &image.blobs {
        let got = c
            .get_blob(repo, d)
            .await
            .unwrap_or_else(|| panic!("blob {d} missing in {repo}"));
        assert!(got == *bytes, "blob {d} differs in {repo}");
    }
    assert_eq!(
        c.head_manifest(repo, tag).await.as_deref(),
        Some(image.digest()),
        "{repo}:{tag}"
    );
}

/// No tag was created.
async fn assert_untagged(reg: &TestRegistry, repo: &str) {
    assert!(
        reg.client().tags(repo).await.is_empty(),
        "a tag was written in {repo}"
    );
}

fn import(src: &str, dst: &str, extra: &[&str]) -> Output {
    let mut args = vec!["import", src, dst, "--json"];
    args.extend_from_slice(extra);
    crossdock(&args)
}

/// Source registry behind a proxy, and a target registry behind another.
struct Pair {
    a: TestRegistry,
    b: TestRegistry,
    pa: FaultProxy,
    pb: FaultProxy,
}

impl Pair {
    fn start() -> Pair {
        let (a, b) = (TestRegistry::start(), TestRegistry::start());
        let (pa, pb) = (FaultProxy::start(&a), FaultProxy::start(&b));
        Pair { a, b, pa, pb }
    }

    fn src(&self) -> String {
        self.pa.image_ref("app", "v1")
    }

    fn dst(&self) -> String {
        self.pb.image_ref("app", "v1")
    }
}

/// Gives the target repository `app` a tag of its own, so that crossdock checks each blob with
/// a HEAD there (into a repository without tags it asks with a mount instead).
async fn seed_target(reg: &TestRegistry) {
    let other = ImageSpec::single(Format::Oci, "linux/amd64")
        .seed(999)
        .build();
    reg.client().push_image("app", "other", &other).await;
}

fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap()
}

/// Requests with this method whose target matches `pattern`.
fn matching<'a>(seen: &'a [Seen], method: &str, pattern: &str) -> Vec<&'a Seen> {
    let re = regex::Regex::new(pattern).unwrap();
    seen.iter()
        .filter(|s| {
            let target = match &s.query {
                Some(q) => format!("{}?{q}", s.path),
                None => s.path.clone(),
            };
            s.method == method && re.is_match(&target)
        })
        .collect()
}

#[tokio::test]
async fn a_reset_in_the_middle_of_a_blob_download_is_retried() {
    let p = Pair::start();
    let img = image(1, 2, 2, 64 * 1024);
    p.a.client().push_image("app", "v1", &img).await;
    let layer = img.images[0].layer_digests[1].clone();
    let path = format!("^/v2/app/blobs/{layer}$");
    let rule = p.pa.add(Rule::new(
        "GET",
        &path,
        Fault::ResetResponse { after: 10_000 },
    ));
    ok(&import(&p.src(), &p.dst(), &[]));
    assert_eq!(rule.fired(), 1);
    assert_eq!(
        matching(&p.pa.requests(), "GET", &path).len(),
        2,
        "one retry"
    );
    assert_copied(&p.b, "app", "v1", &img).await;
}

#[tokio::test]
async fn a_reset_in_the_middle_of_an_upload_is_retried() {
    let p = Pair::start();
    let img = image(2, 2, 2, 64 * 1024);
    p.a.client().push_image("app", "v1", &img).await;
    let layer = img.images[1].layer_digests[0].clone();
    let upload = format!("^/v2/app/blobs/uploads/.*{}", hex(&layer));
    let rule = p.pb.add(Rule::new(
        "PUT",
        &upload,
        Fault::ResetRequest { after: 20_000 },
    ));
    ok(&import(&p.src(), &p.dst(), &[]));
    assert_eq!(rule.fired(), 1);
    assert_eq!(matching(&p.pb.requests(), "PUT", &upload).len(), 2);
    assert_copied(&p.b, "app", "v1", &img).await;
}

#[tokio::test]
async fn server_errors_on_every_kind_of_request_are_retried() {
    let p = Pair::start();
    let img = image(3, 2, 1, 8 * 1024);
    p.a.client().push_image("app", "v1", &img).await;
    seed_target(&p.b).await;
    let source_rules = [
        ("HEAD", "^/v2/app/manifests/v1$", 500),
        ("GET", "^/v2/app/manifests/sha256:", 502),
        ("GET", "^/v2/app/blobs/sha256:", 503),
    ];
    let target_rules = [
        ("HEAD", "^/v2/app/manifests/v1$", 503),
        ("HEAD", "^/v2/app/blobs/sha256:", 500),
        ("POST", "^/v2/app/blobs/uploads/$", 502),
        ("PUT", "^/v2/app/blobs/uploads/.+digest=", 503),
        ("PUT", "^/v2/app/manifests/sha256:", 500),
        ("PUT", "^/v2/app/manifests/v1$", 502),
    ];
    let mut stats = Vec::new();
    for (proxy, rules) in [(&p.pa, &source_rules[..]), (&p.pb, &target_rules[..])] {
        for (method, path, status) in rules {
            let s = proxy.add(Rule::new(method, path, Fault::Status(*status)));
            stats.push((*method, *path, s));
        }
    }
    let report = ok(&import(&p.src(), &p.dst(), &[]));
    assert_eq!(report["targets"][0]["status"]["state"], "copied");
    for (method, path, s) in &stats {
        assert_eq!(s.fired(), 1, "{method} {path} never got its error");
    }
    assert_copied(&p.b, "app", "v1", &img).await;

    // Into a repository without tags, blobs are checked with a mount request (POST ?mount=)
    // instead of a HEAD: that fails once too.
    let mount = p.pb.add(Rule::new(
        "POST",
        r"^/v2/fresh/blobs/uploads/\?mount=",
        Fault::Status(503),
    ));
    ok(&import(&p.src(), &p.pb.image_ref("fresh", "v1"), &[]));
    assert_eq!(mount.fired(), 1);
    assert_copied(&p.b, "fresh", "v1", &img).await;
}

#[tokio::test]
async fn an_upload_that_always_fails_ends_clearly_and_tags_nothing() {
    let p = Pair::start();
    let img = image(4, 1, 2, 8 * 1024);
    p.a.client().push_image("app", "v1", &img).await;
    let layer = img.images[0].layer_digests[1].clone();
    let upload = format!("^/v2/app/blobs/uploads/.*{}", hex(&layer));
    p.pb.add(Rule::new("PUT", &upload, Fault::Status(503)).always());
    let out = import(&p.src(), &p.dst(), &[]);
    failed_with(&out, &[&layer, "503"]);
    // The engine tried the blob a bounded number of times.
    let tries = matching(&p.pb.requests(), "PUT", &upload).len();
    assert!((2..=5).contains(&tries), "{tries} attempts");
    assert_untagged(&p.b, "app").await;
    assert!(!p.b.client().blob_exists("app", &layer).await);
}

#[tokio::test]
async fn rate_limits_are_waited_out_as_retry_after_says() {
    let p = Pair::start();
    let img = image(5, 1, 1, 4 * 1024);
    p.a.client().push_image("app", "v1", &img).await;
    seed_target(&p.b).await;
    let manifest = "^/v2/app/manifests/sha256:";
    let blob_head = "^/v2/app/blobs/sha256:";
    p.pa.add(Rule::new(
        "GET",
        manifest,
        Fault::TooManyRequests(RetryAfter::Seconds(1)),
    ));
    p.pb.add(Rule::new(
        "HEAD",
        blob_head,
        Fault::TooManyRequests(RetryAfter::DateIn(Duration::from_secs(2))),
    ));
    ok(&import(&p.src(), &p.dst(), &[]));
    assert_copied(&p.b, "app", "v1", &img).await;
    // Each limited request was sent again only after the wait the registry asked for.
    for (proxy, method, pattern) in [(&p.pa, "GET", manifest), (&p.pb, "HEAD", blob_head)] {
        let seen = proxy.requests();
        let hits = matching(&seen, method, pattern);
        let limited = hits
            .iter()
            .position(|s| s.status == Some(429))
            .expect("a 429 was served");
        let again = hits[limited + 1..]
            .iter()
            .find(|s| s.path == hits[limited].path)
            .expect("the request was retried");
        let waited = again.at - hits[limited].at;
        assert!(
            waited >= Duration::from_millis(900),
            "{method} {pattern} retried after {waited:?}"
        );
    }
}

#[tokio::test]
async fn a_stalled_body_is_cut_by_the_idle_timeout_and_retried() {
    let p = Pair::start();
    let img = image(6, 1, 2, 64 * 1024);
    p.a.client().push_image("app", "v1", &img).await;
    let layer = img.images[0].layer_digests[0].clone();
    let path = format!("^/v2/app/blobs/{layer}$");
    let stall = Fault::Stall {
        after: 8 * 1024,
        stall: Duration::from_secs(120),
    };
    let rule = p.pa.add(Rule::new("GET", &path, stall));
    let start = Instant::now();
    ok(&import(&p.src(), &p.dst(), &["--read-timeout", "1"]));
    let took = start.elapsed();
    assert_eq!(rule.fired(), 1);
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert_copied(&p.b, "app", "v1", &img).await;
}

#[tokio::test]
async fn a_slow_body_that_keeps_moving_is_not_cut_off() {
    let p = Pair::start();
    let img = image(7, 1, 1, 64 * 1024);
    p.a.client().push_image("app", "v1", &img).await;
    let layer = img.images[0].layer_digests[0].clone();
    let path = format!("^/v2/app/blobs/{layer}$");
    // 16 pieces, 250 ms apart: 4 s in all, never 1 s without a byte.
    let slow = Fault::Slow {
        piece: 4096,
        every: Duration::from_millis(250),
    };
    p.pa.add(Rule::new("GET", &path, slow).always());
    let start = Instant::now();
    ok(&import(&p.src(), &p.dst(), &["--read-timeout", "1"]));
    assert!(
        start.elapsed() >= Duration::from_secs(4),
        "the body was slow"
    );
    assert_eq!(
        matching(&p.pa.requests(), "GET", &path).len(),
        1,
        "read once, never cut off"
    );
    assert_copied(&p.b, "app", "v1", &img).await;
}

#[tokio::test]
async fn a_body_that_always_stalls_fails_clearly_and_tags_nothing() {
    let p = Pair::start();
    let img = image(8, 1, 2, 64 * 1024);
    p.a.client().push_image("app", "v1", &img).await;
    let layer = img.images[0].layer_digests[1].clone();
    let path = format!("^/v2/app/blobs/{layer}$");
    let stall = Fault::Stall {
        after: 1000,
        stall: Duration::from_secs(120),
    };
    p.pa.add(Rule::new("GET", &path, stall).always());
    let start = Instant::now();
    let out = import(&p.src(), &p.dst(), &["--read-timeout", "1"]);
    assert!(start.elapsed() < Duration::from_secs(30));
    failed_with(&out, &[&layer]);
    let all = text(&out);
    assert!(
        all.contains("timed out") || all.contains("no progress"),
        "the error says the transfer stalled:\n{all}"
    );
    assert_untagged(&p.b, "app").await;
    assert!(!p.b.client().blob_exists("app", &layer).await);
}

#[tokio::test]
async fn a_truncated_body_is_retried() {
    let p = Pair::start();
    let img = image(9, 2, 1, 64 * 1024);
    p.a.client().push_image("app", "v1", &img).await;
    let layer = img.images[1].layer_digests[0].clone();
    let blob = p.pa.add(Rule::new(
        "GET",
        &format!("^/v2/app/blobs/{layer}$"),
        Fault::Truncate { keep: 30_000 },
    ));
    let manifest = p.pa.add(Rule::new(
        "GET",
        &format!("^/v2/app/manifests/{}$", img.manifests[0].digest),
        Fault::Truncate { keep: 100 },
    ));
    ok(&import(&p.src(), &p.dst(), &[]));
    assert_eq!((blob.fired(), manifest.fired()), (1, 1));
    assert_copied(&p.b, "app", "v1", &img).await;
}

#[tokio::test]
async fn a_complete_answer_with_too_few_bytes_is_refused() {
    let p = Pair::start();
    let img = image(10, 1, 2, 64 * 1024);
    p.a.client().push_image("app", "v1", &img).await;
    let layer = img.images[0].layer_digests[0].clone();
    p.pa.add(Rule::new(
        "GET",
        &format!("^/v2/app/blobs/{layer}$"),
        Fault::Shorten { keep: 1000 },
    ));
    let out = import(&p.src(), &p.dst(), &[]);
    failed_with(&out, &[&layer, "1000 bytes", "65536 bytes"]);
    assert_untagged(&p.b, "app").await;
    assert!(!p.b.client().blob_exists("app", &layer).await);
}

#[tokio::test]
async fn one_flipped_byte_is_caught_and_nothing_corrupt_is_written() {
    let p = Pair::start();
    let img = image(11, 2, 2, 64 * 1024);
    p.a.client().push_image("app", "v1", &img).await;
    // In a layer: the upload is refused before the registry sees a complete body.
    let layer = img.images[1].layer_digests[1].clone();
    p.pa.add(Rule::new(
        "GET",
        &format!("^/v2/app/blobs/{layer}$"),
        Fault::FlipByte { at: 40_000 },
    ));
    let out = import(&p.src(), &p.dst(), &[]);
    failed_with(&out, &[&layer, "mismatch"]);
    assert_untagged(&p.b, "app").await;
    assert!(!p.b.client().blob_exists("app", &layer).await);

    // In a manifest: the digest check refuses it before anything is written.
    p.pa.clear_rules();
    let child = img.manifests[0].digest.clone();
    p.pa.add(Rule::new(
        "GET",
        &format!("^/v2/app/manifests/{child}$"),
        Fault::FlipByte { at: 30 },
    ));
    let mark = p.pb.requests().len();
    let out = import(&p.src(), &p.pb.image_ref("other", "v1"), &[]);
    failed_with(&out, &[&child, "digest"]);
    let writes: Vec<_> = p.pb.requests()[mark..]
        .iter()
        .filter(|s| s.method != "HEAD" && s.method != "GET")
        .cloned()
        .collect();
    assert!(
        writes.is_empty(),
        "wrote after a corrupt manifest: {writes:?}"
    );
    assert_untagged(&p.b, "other").await;
}

#[tokio::test]
async fn a_descriptor_whose_size_lies_is_refused() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let layer = support::fixtures::random_bytes(12, 10_000);
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let c = a.client();
    c.push_blob("app", &layer).await;
    c.push_blob("app", &config).await;
    // distribution 2.8 checks that a manifest's blobs exist, not their sizes: it stores both.
    for (tag, declared) in [("smaller", 9_000usize), ("larger", 11_000usize)] {
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": support::fixtures::OCI_MANIFEST,
            "config": {"mediaType": support::fixtures::OCI_CONFIG,
                       "digest": support::sha256_digest(&config), "size": config.len()},
            "layers": [{"mediaType": support::fixtures::OCI_LAYER,
                        "digest": support::sha256_digest(&layer), "size": declared}],
        });
        let m = support::RawManifest::from_json(support::fixtures::OCI_MANIFEST, &manifest);
        c.put_manifest("app", tag, &m).await;
        let out = import(&a.image_ref("app", tag), &b.image_ref("app", tag), &[]);
        failed_with(
            &out,
            &[
                &support::sha256_digest(&layer),
                "10000 bytes",
                &format!("{declared} bytes"),
            ],
        );
    }
    assert_untagged(&b, "app").await;
    assert!(
        !b.client()
            .blob_exists("app", &support::sha256_digest(&layer))
            .await
    );
}

#[tokio::test]
async fn answers_lost_after_the_registry_committed_a_put_are_recovered() {
    let p = Pair::start();
    let img = image(13, 2, 1, 16 * 1024);
    p.a.client().push_image("app", "v1", &img).await;
    let layer = img.images[0].layer_digests[0].clone();
    let rules = [
        ("PUT", format!("^/v2/app/blobs/uploads/.*{}", hex(&layer))),
        (
            "PUT",
            format!("^/v2/app/manifests/{}$", img.manifests[1].digest),
        ),
        ("PUT", "^/v2/app/manifests/v1$".to_string()),
    ];
    let stats: Vec<_> = rules
        .iter()
        .map(|(m, path)| p.pb.add(Rule::new(m, path, Fault::LoseResponse)))
        .collect();
    ok(&import(&p.src(), &p.dst(), &[]));
    for ((_, path), s) in rules.iter().zip(&stats) {
        assert_eq!(s.fired(), 1, "{path}");
    }
    assert_copied(&p.b, "app", "v1", &img).await;
}

#[tokio::test]
async fn a_source_tag_moving_mid_copy_gives_one_whole_image() {
    let p = Pair::start();
    let old = image(14, 2, 2, 16 * 1024);
    let new = image(15, 2, 2, 16 * 1024);
    p.a.client().push_image("app", "v1", &old).await;
    // Right after crossdock has read the tag, it moves to another image.
    let registry = p.a.client();
    let moved = new.clone();
    let hook = p.pa.add(Rule::new(
        "*",
        "^/v2/app/manifests/v1$",
        Fault::after(move || {
            let registry = registry.clone();
            let moved = moved.clone();
            async move { registry.push_image("app", "v1", &moved).await }
        }),
    ));
    let report = ok(&import(&p.src(), &p.dst(), &[]));
    assert_eq!(hook.fired(), 1);
    assert_eq!(
        p.a.client().head_manifest("app", "v1").await.as_deref(),
        Some(new.digest()),
        "the tag did move during the copy"
    );
    // The target got the image the tag named when the copy started, whole, and nothing of the
    // other one.
    assert_eq!(report["targets"][0]["digest"], old.digest());
    assert_copied(&p.b, "app", "v1", &old).await;
    for m in new.manifests.iter().chain(new.index.iter()) {
        assert!(
            p.b.client().get_manifest("app", &m.digest).await.is_none(),
            "a manifest of the other image was copied"
        );
    }
    for d in new.blobs.keys() {
        assert!(!p.b.client().blob_exists("app", d).await);
    }
}

#[tokio::test]
async fn kill_9_in_the_middle_of_an_import_then_the_same_import_completes() {
    let p = Pair::start();
    // 3 platforms × 2 layers of 256 KiB: a dozen blobs in flight at once.
    let img = image(16, 3, 2, 256 * 1024);
    p.a.client().push_image("app", "v1", &img).await;
    // One layer crawls, so the kill lands while it is being copied and the others are done.
    let slow_layer = img.images[2].layer_digests[1].clone();
    p.pa.add(
        Rule::new(
            "GET",
            &format!("^/v2/app/blobs/{slow_layer}$"),
            Fault::Slow {
                piece: 4 * 1024,
                every: Duration::from_millis(100),
            },
        )
        .always(),
    );
    let mut child = command(&["import", &p.src(), &p.dst(), "--json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let others: Vec<&String> = img.blobs.keys().filter(|d| **d != slow_layer).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut present = 0;
        for d in &others {
            if p.b.client().blob_exists("app", d).await {
                present += 1;
            }
        }
        if present == others.len() {
            break;
        }
        assert!(Instant::now() < deadline, "{present} blobs arrived");
        assert!(child.try_wait().unwrap().is_none(), "import ended early");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success());
    // Killed mid-copy: no tag, and the blob in transit was not committed.
    assert_untagged(&p.b, "app").await;
    assert!(!p.b.client().blob_exists("app", &slow_layer).await);

    p.pa.clear_rules();
    let report = ok(&import(&p.src(), &p.dst(), &[]));
    assert_eq!(report["targets"][0]["digest"], img.digest());
    assert_eq!(report["targets"][0]["blobs_skipped"], others.len());
    assert_eq!(report["targets"][0]["blobs_copied"], 1);
    assert_copied(&p.b, "app", "v1", &img).await;
}

/// `crossdock sync` of `app:v1` to `to/app:v1` within the registry behind `proxy`, whose
/// request limit is `max_concurrency`.
fn sync_within(proxy: &FaultProxy, to: &str, max_concurrency: usize) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("crossdock.toml");
    std::fs::write(
        &config,
        format!(
            r#"[registries."{host}"]
max_concurrency = {max_concurrency}

[[rules]]
name = "within"
source = "{host}/app"
target = "{host}/{to}/app"
tags = ["v1"]
timeout = "30s"
"#,
            host = proxy.host()
        ),
    )
    .unwrap();
    crossdock(&["sync", "--config", config.to_str().unwrap(), "--json"])
}

#[tokio::test]
async fn copies_within_one_registry_never_deadlock_on_its_request_limit() {
    let a = TestRegistry::start();
    let proxy = FaultProxy::start(&a);
    let img = image(17, 3, 2, 32 * 1024);
    a.client().push_image("app", "v1", &img).await;
    // The registry will not mount: it opens a plain upload instead (as registries without
    // cross-repository mounts do), so every blob is streamed out of and back into it.
    proxy.add(
        Rule::new(
            "POST",
            r"^/v2/copy/app/blobs/uploads/\?mount=",
            Fault::StripQuery,
        )
        .always(),
    );

    let out = sync_within(&proxy, "copy", 2);
    let report = ok(&out);
    assert_eq!(report[0]["result"], "ok", "{report}");
    assert_copied(&a, "copy/app", "v1", &img).await;
    assert!(proxy.peak_in_flight() <= 2, "{}", proxy.peak_in_flight());
    let streamed = matching(&proxy.requests(), "GET", "^/v2/app/blobs/sha256:").len();
    assert_eq!(
        streamed,
        img.blobs.len(),
        "every blob was streamed, none mounted"
    );

    // With a limit of one request, a blob cannot be streamed within the registry at all (a
    // download and an upload must be open at once): a clear error, not a hang.
    proxy.clear_rules();
    proxy.add(
        Rule::new(
            "POST",
            r"^/v2/one/app/blobs/uploads/\?mount=",
            Fault::Status(405),
        )
        .always(),
    );
    let out = sync_within(&proxy, "one", 1);
    failed_with(&out, &["max_concurrency"]);
    assert!(!text(&out).contains("time limit"), "{}", text(&out));
    assert_untagged(&a, "one/app").await;
}

#[tokio::test]
async fn fan_out_to_three_repositories_of_one_registry_completes() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let img = image(18, 3, 3, 256 * 1024);
    a.client().push_image("app", "v1", &img).await;
    let out = import(
        &a.image_ref("app", "v1"),
        &b.image_ref("x/app", "v1"),
        &[&b.image_ref("y/app", "v1"), &b.image_ref("z/app", "v1")],
    );
    ok(&out);
    for repo in ["x/app", "y/app", "z/app"] {
        assert_copied(&b, repo, "v1", &img).await;
    }
}

#[tokio::test]
async fn copies_in_opposite_directions_never_deadlock_on_request_limits() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let (pa, pb) = (FaultProxy::start(&a), FaultProxy::start(&b));
    // Three blobs each: both rules' transfers fit in the engine's six at once.
    let (one, two) = (image(19, 1, 2, 64 * 1024), image(20, 1, 2, 64 * 1024));
    a.client().push_image("one", "v1", &one).await;
    b.client().push_image("two", "v1", &two).await;
    // Each rule streams out of one registry into the other while the other rule does the
    // reverse, with one request allowed at each. The last read of each rule before its blobs
    // (the source's tag list, for attached signatures) waits for the other's, so both rules
    // start on their blobs at the same moment. Taking permits one request at a time, each rule
    // then opened a download at its source and waited forever to start its upload at the other
    // registry, whose only request the other rule's download held.
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(2));
    for (proxy, repo) in [(&pa, "one"), (&pb, "two")] {
        let barrier = barrier.clone();
        proxy.add(Rule::new(
            "GET",
            &format!("^/v2/{repo}/tags/list"),
            Fault::before(move || {
                let barrier = barrier.clone();
                async move {
                    let _ = tokio::time::timeout(Duration::from_secs(5), barrier.wait()).await;
                }
            }),
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("crossdock.toml");
    std::fs::write(
        &config,
        format!(
            r#"[registries."{a}"]
max_concurrency = 1
[registries."{b}"]
max_concurrency = 1

[[rules]]
name = "a-to-b"
source = "{a}/one"
target = "{b}/one"
tags = ["v1"]
timeout = "20s"

[[rules]]
name = "b-to-a"
source = "{b}/two"
target = "{a}/two"
tags = ["v1"]
timeout = "20s"
"#,
            a = pa.host(),
            b = pb.host()
        ),
    )
    .unwrap();
    let report = ok(&crossdock(&[
        "sync",
        "--config",
        config.to_str().unwrap(),
        "--json",
    ]));
    for run in report.as_array().unwrap() {
        assert_eq!(run["result"], "ok", "{report}");
    }
    assert_copied(&b, "one", "v1", &one).await;
    assert_copied(&a, "two", "v1", &two).await;
    assert_eq!((pa.peak_in_flight(), pb.peak_in_flight()), (1, 1));
}

#[tokio::test]
async fn a_registry_refusing_a_large_body_gets_chunks_instead() {
    // A proxy in front of a registry that refuses request bodies as too large (413), as nginx
    // does above its `client_max_body_size`: the transport switches to chunked uploads, and the
    // copy completes with the same digests.
    let p = Pair::start();
    let img = image(31, 1, 2, 256 * 1024);
    p.a.client().push_image("app", "v1", &img).await;
    let rule = p.pb.add(Rule::new(
        "PUT",
        r"^/v2/app/blobs/uploads/.*digest=",
        Fault::Status(413),
    ));
    ok(&import(&p.src(), &p.dst(), &[]));
    assert_eq!(rule.fired(), 1);
    let seen = p.pb.requests();
    let patches = matching(&seen, "PATCH", r"^/v2/app/blobs/uploads/");
    assert!(!patches.is_empty(), "chunks were sent after the 413");
    assert_copied(&p.b, "app", "v1", &img).await;
}
