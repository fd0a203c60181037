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
//!
//! One test binary; the tests live in `faults/`, one file per kind of fault. This file holds
//! what they share: running an import, the proxied pair of registries, and the check that no
//! tag was written (that the target holds the whole image is `RawClient::assert_holds_image`).

mod support;

#[path = "faults/bodies.rs"]
mod bodies;
#[path = "faults/interruptions.rs"]
mod interruptions;
#[path = "faults/limits.rs"]
mod limits;
#[path = "faults/retries.rs"]
mod retries;

use std::process::Output;

use serde_json::Value;
use support::cli::{crossdock, text};
use support::proxy::{FaultProxy, Seen};
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
