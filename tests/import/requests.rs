//! What an import costs: a second import one HEAD per registry, blobs within one registry
//! mounted rather than read, and two imports sharing layers at once both completing.

use crate::PLATFORMS;
use crate::support::cli::{crossdock, json, ok};
use crate::support::{Format, ImageSpec, RequestKind, TestRegistry};

#[tokio::test]
async fn second_import_costs_one_head_per_registry() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let image = ImageSpec::multi(Format::Oci, &PLATFORMS).seed(3).build();
    a.client().push_image("app", "v1", &image).await;
    let (src, dst) = (a.image_ref("app", "v1"), b.image_ref("app", "v1"));
    ok(&crossdock(&["import", &src, &dst]));
    let (ma, mb) = (a.request_mark(), b.request_mark());
    let out = ok(&crossdock(&["import", &src, &dst]));
    assert!(out.contains("nothing to do"), "{out}");
    let (ra, rb) = (a.requests_since(ma), b.requests_since(mb));
    assert_eq!(ra.len(), 1, "source requests: {ra:?}");
    assert!(ra[0].is("HEAD", RequestKind::is_manifest), "{ra:?}");
    assert_eq!(rb.len(), 1, "target requests: {rb:?}");
    assert!(rb[0].is("HEAD", RequestKind::is_manifest), "{rb:?}");
}

#[tokio::test]
async fn blobs_in_the_same_registry_are_mounted() {
    let a = TestRegistry::start();
    let image = ImageSpec::multi(Format::Oci, &PLATFORMS[..2])
        .seed(5)
        .build();
    a.client().push_image("src/app", "v1", &image).await;
    let mark = a.request_mark();
    let report = json(&crossdock(&[
        "import",
        &a.image_ref("src/app", "v1"),
        &a.image_ref("dst/app", "v1"),
        "--json",
    ]));
    assert_eq!(report["targets"][0]["blobs_mounted"], image.blobs.len());
    assert_eq!(report["targets"][0]["blobs_copied"], 0);
    let reqs = a.requests_since(mark);
    assert!(
        !reqs.iter().any(|r| r.is("GET", RequestKind::is_blob)),
        "no blob read when mounting: {reqs:?}"
    );
    a.client().assert_holds_image("dst/app", None, &image).await;
}

#[tokio::test]
async fn two_imports_at_once_sharing_layers_both_complete() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let image = ImageSpec::multi(Format::Oci, &PLATFORMS)
        .shared_base_layer(true)
        .layer_size(256 * 1024)
        .seed(31)
        .build();
    a.client().push_image("app", "v1", &image).await;
    a.client().push_image("app", "v2", &image).await;
    let (s1, s2) = (a.image_ref("app", "v1"), a.image_ref("app", "v2"));
    let (d1, d2) = (b.image_ref("app", "v1"), b.image_ref("app", "v2"));
    let h1 = std::thread::spawn(move || crossdock(&["import", &s1, &d1]));
    let h2 = std::thread::spawn(move || crossdock(&["import", &s2, &d2]));
    ok(&h1.join().unwrap());
    ok(&h2.join().unwrap());
    b.client().assert_holds_image("app", None, &image).await;
    for t in ["v1", "v2"] {
        assert_eq!(
            b.client().head_manifest("app", t).await.as_deref(),
            Some(image.digest())
        );
    }
}
