//! `crossdock import` end to end, between two real registries (issue 3).
//!
//! Every test runs the real binary against `docker-registry` processes and checks the result
//! with an independent client (tests/support/raw.rs) and, where it matters, with skopeo.
//!
//! One test binary; the tests live in `import/`, one file per concept. This file holds what
//! they share: the platforms, a tagless reference, the check that a repository holds an image.

mod support;

#[path = "import/copying.rs"]
mod copying;
#[path = "import/inspect.rs"]
mod inspect;
#[path = "import/refusals.rs"]
mod refusals;
#[path = "import/requests.rs"]
mod requests;
#[path = "import/targets.rs"]
mod targets;

use support::TestRegistry;

/// `HOST/REPO` with neither tag nor digest.
fn repo_ref(reg: &TestRegistry, repo: &str) -> String {
    format!("{}/{repo}", reg.host())
}

const PLATFORMS: [&str; 3] = ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"];

/// Asserts that every manifest and blob of `image` is in `repo` at `reg`, byte for byte.
async fn assert_complete(reg: &TestRegistry, repo: &str, image: &support::BuiltImage) {
    let c = reg.client();
    for m in image.manifests.iter().chain(image.index.iter()) {
        let got = c
            .get_manifest(repo, &m.digest)
            .await
            .unwrap_or_else(|| panic!("manifest {} missing in {repo}", m.digest));
        assert_eq!(got.bytes, m.bytes, "manifest {} bytes differ", m.digest);
    }
    for d in image.blobs.keys() {
        assert!(c.blob_exists(repo, d).await, "blob {d} missing in {repo}");
    }
}
