//! `skopeo`, the peer tool: tests cross-check crossdock's results against an independent,
//! widely used implementation of the same protocol.
//!
//! Calls are blocking (std::process): skopeo talks to the test registries, never to the code
//! under test, so blocking the test's runtime briefly cannot deadlock. Credentials are passed
//! with `--creds` and never echoed in panic messages.

use std::process::{Command, Output};

/// Run `skopeo ARGS...`; panics with stderr if it fails. `what` names the call for messages
/// (so that arguments carrying credentials are never printed).
pub(crate) fn run(what: &str, args: &[&str]) -> Output {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run skopeo ({what}): {e}; install it with `.ci/run`"));
    assert!(
        out.status.success(),
        "skopeo {what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `skopeo inspect --raw` of `HOST/REPO:TAG` (or `@DIGEST`): the manifest bytes as served.
pub(crate) fn inspect_raw(image: &str, creds: Option<(&str, &str)>) -> Vec<u8> {
    let reference = format!("docker://{image}");
    let creds = creds.map(|(u, p)| format!("{u}:{p}"));
    let mut args = vec!["inspect", "--raw", "--tls-verify=false"];
    if let Some(c) = &creds {
        args.extend(["--creds", c.as_str()]);
    }
    args.push(&reference);
    run(&format!("inspect --raw {reference}"), &args).stdout
}

/// `skopeo copy --all` between two `HOST/REPO:TAG` references (plain HTTP both sides).
pub(crate) fn copy_all(src: &str, dst: &str) {
    let (s, d) = (format!("docker://{src}"), format!("docker://{dst}"));
    run(
        &format!("copy --all {s} {d}"),
        &[
            "copy",
            "--all",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            &s,
            &d,
        ],
    );
}

/// Anonymous `skopeo inspect --raw docker://IMAGE`.
pub(crate) fn skopeo_inspect_raw(image: &str) -> Vec<u8> {
    inspect_raw(image, None)
}
