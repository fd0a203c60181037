//! Image archives (`oci-archive:`, `docker-archive:`) as import source and target (issue 14
//! item 3), checked with the real readers: `ctr image import` into a containerd started here
//! (its own root, state and socket in a temporary folder), and skopeo reading and writing both
//! kinds; plus round trips through real registries and the bad inputs of the issue.
//!
//! One test binary; the tests live in `archive/`, one file per concept. This file holds what
//! they share: the platforms, what a folder holds, a run's stderr.

mod support;

#[path = "archive/containerd.rs"]
mod containerd;
#[path = "archive/memory.rs"]
mod memory;
#[path = "archive/readers.rs"]
mod readers;
#[path = "archive/refusals.rs"]
mod refusals;

use std::path::Path;
use std::process::Output;

const PLATFORMS: [&str; 2] = ["linux/amd64", "linux/arm64/v8"];

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Everything in `dir`, by name: after a failure, nothing half-written may be there.
fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}
