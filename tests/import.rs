//! `crossdock import` end to end, between two real registries (issue 3).
//!
//! Every test runs the real binary against `docker-registry` processes and checks the result
//! with an independent client (tests/support/raw.rs) and, where it matters, with skopeo.
//!
//! One test binary; the tests live in `import/`, one file per concept. This file holds what
//! they share: the platforms and a tagless reference.

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
