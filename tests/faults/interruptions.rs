//! Copies interrupted from outside: the source tag moving mid-copy gives one whole image, and
//! `kill -9` mid-import leaves no tag and lets the same import complete, reusing what it copied.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::cli::command;
use crate::support::proxy::{Fault, Rule};
use crate::{Pair, assert_untagged, image, import, ok};

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
    p.b.client()
        .assert_holds_image("app", Some("v1"), &old)
        .await;
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
    p.b.client()
        .assert_holds_image("app", Some("v1"), &img)
        .await;
}
