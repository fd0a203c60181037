//! `crossdock inspect`: the raw manifest as the registry holds it, and the platforms as a table
//! or JSON.

use serde_json::Value;

use crate::PLATFORMS;
use crate::support::cli::{crossdock, ok};
use crate::support::{Format, ImageSpec, TestRegistry};

#[tokio::test]
async fn inspect_prints_the_raw_manifest_and_platforms() {
    let a = TestRegistry::start();
    let image = ImageSpec::multi(Format::Docker, &PLATFORMS)
        .seed(41)
        .build();
    a.client().push_image("app", "v1", &image).await;
    let out = crossdock(&["inspect", &a.image_ref("app", "v1")]);
    assert!(out.status.success());
    assert_eq!(
        out.stdout.strip_suffix(b"\n").unwrap_or(&out.stdout),
        image
            .top()
            .bytes
            .as_slice()
            .strip_suffix(b"\n")
            .unwrap_or(&image.top().bytes)
    );
    let table = ok(&crossdock(&[
        "inspect",
        "--platforms",
        &a.image_ref("app", "v1"),
    ]));
    for (p, m) in PLATFORMS.iter().zip(&image.manifests) {
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(p) && l.contains(&m.digest)),
            "{p}: {table}"
        );
    }
    let single = ImageSpec::single(Format::Oci, "linux/arm64/v8")
        .seed(42)
        .build();
    a.client().push_image("one", "v1", &single).await;
    let rows: Value = serde_json::from_str(&ok(&crossdock(&[
        "inspect",
        "--platforms",
        "--json",
        &a.image_ref("one", "v1"),
    ])))
    .unwrap();
    assert_eq!(rows[0]["platform"], "linux/arm64/v8");
}
