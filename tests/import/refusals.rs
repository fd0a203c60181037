//! Imports refused: a tampered blob fails the import naming the blob with nothing tagged or
//! committed, and a bad reference is a usage error (exit code 2).

use crate::PLATFORMS;
use crate::support::cli::crossdock;
use crate::support::{Format, ImageSpec, TestRegistry};

#[tokio::test]
async fn a_tampered_blob_fails_the_import_and_no_tag_is_written() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let image = ImageSpec::multi(Format::Docker, &PLATFORMS[..2])
        .layer_size(64 * 1024)
        .seed(13)
        .build();
    a.client().push_image("app", "v1", &image).await;
    let victim = &image.images[1].layer_digests[1];
    let path = a.blob_data_path(victim);
    let mut data = std::fs::read(&path).unwrap();
    data[1000] ^= 0xff;
    std::fs::write(&path, data).unwrap();

    let out = crossdock(&[
        "import",
        &a.image_ref("app", "v1"),
        &b.image_ref("app", "v1"),
        "--json",
    ]);
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(victim.as_str()),
        "error names the blob: {text}"
    );
    assert!(
        text.contains("mismatch") || text.contains("digest"),
        "{text}"
    );
    assert!(
        b.client().head_manifest("app", "v1").await.is_none(),
        "no tag on a corrupt image"
    );
    assert!(
        !b.client().blob_exists("app", victim).await,
        "corrupt blob not committed"
    );
    assert!(b.client().tags("app").await.is_empty());
}

#[tokio::test]
async fn bad_references_are_usage_errors() {
    let out = crossdock(&["import", "localhost:5000/UPPER:v1", "localhost:5001/x"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("UPPER") && err.contains("lowercase"), "{err}");
}
