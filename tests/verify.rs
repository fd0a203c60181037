//! `crossdock verify` end to end (issue 17): a mirror written by `import`, then damaged on disk
//! in the real registry's storage (distribution's filesystem layout), is re-read and every
//! damaged object is named.

mod support;

use std::time::Duration;

use crossdock::audit::Sample;
use crossdock::digest::Digest;
use support::cli::{crossdock, ok};
use support::{Format, ImageSpec, TestRegistry};

fn flip_byte(path: &std::path::Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test]
async fn flipped_bytes_and_a_lost_blob_are_found_and_named() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let image = ImageSpec::multi(Format::Oci, &["linux/amd64", "linux/arm64/v8"])
        .layers(2)
        .seed(11)
        .build();
    a.client().push_image("app", "v1", &image).await;
    let target = b.image_ref("mirror/app", "v1");
    ok(&crossdock(&["import", &a.image_ref("app", "v1"), &target]));
    let out = ok(&crossdock(&["verify", &target]));
    assert!(
        out.contains(": intact — 3 manifest(s), 6 blob(s) read"),
        "{out}"
    );

    let layers = &image.images[0].layer_digests;
    flip_byte(&b.blob_data_path(&layers[0]), 10);
    // A child manifest whose stored bytes changed but still parse (one digit of a digest in it),
    // so the registry serves it and only the digest check can tell.
    let child = &image.manifest_for("linux/arm64/v8").digest;
    let path = b.blob_data_path(child);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.windows(7).position(|w| w == b"sha256:").unwrap() + 7;
    bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
    std::fs::write(&path, bytes).unwrap();
    // A blob whose bytes are gone from storage (the repository still links it).
    let config = &image.images[0].config_digest;
    std::fs::remove_file(b.blob_data_path(config)).unwrap();

    let out = crossdock(&["verify", &target]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("CORRUPT blob {}", layers[0])),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("CORRUPT manifest {child}")),
        "{stdout}"
    );
    // distribution answers 200 for it and then fails the body: named, as unreadable.
    assert!(
        stdout.contains(&format!("UNREADABLE blob {config}")),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 image(s) checked, 0 intact, 1 failed"),
        "{stdout}"
    );

    // A sample reads only the blobs its digest picks, the same ones every time; the others are
    // only looked for.
    let sample = Sample::parse("50%").unwrap();
    let picked = sample.includes(&Digest::parse(&layers[0]).unwrap());
    let out = crossdock(&["verify", "--sample", "50%", "--json", &target]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let findings = v["images"][0]["findings"].as_array().unwrap();
    let named = |d: &str| findings.iter().any(|f| f["digest"] == d);
    assert_eq!(named(&layers[0]), picked, "{v:#}");
    assert!(named(child), "manifests are always read: {v:#}");
}

#[tokio::test]
async fn verify_config_checks_every_rule_target() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let c = a.client();
    let one = ImageSpec::single(Format::Oci, "linux/amd64")
        .seed(1)
        .build();
    let two = ImageSpec::single(Format::Docker, "linux/amd64")
        .seed(2)
        .build();
    c.push_image("app", "1.0", &one).await;
    c.push_image("app", "2.0", &two).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[rules]]\nname = \"app\"\nsource = \"{a}/app\"\ntarget = \"{b}/m/app\"\n\
             tags = [\"1.0\", \"2.0\"]\naudit = \"@every 1h\"\n",
            a = a.host(),
            b = b.host()
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    ok(&crossdock(&["sync", "--config", cfg]));
    let out = ok(&crossdock(&["verify", "--config", cfg]));
    assert!(
        out.contains("2 image(s) checked, 2 intact, 0 failed"),
        "{out}"
    );

    let config_blob = &two.images[0].config_digest;
    flip_byte(&b.blob_data_path(config_blob), 0);
    let out = crossdock(&["verify", "--config", cfg]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("CORRUPT blob {config_blob}")),
        "{stdout}"
    );
    assert!(
        stdout.contains("2 image(s) checked, 1 intact, 1 failed"),
        "{stdout}"
    );
}

#[tokio::test]
async fn the_daemon_audits_a_rule_on_its_schedule_and_counts_what_it_finds() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let image = ImageSpec::single(Format::Oci, "linux/amd64")
        .seed(4)
        .build();
    a.client().push_image("app", "1.0", &image).await;
    let dir = tempfile::tempdir().unwrap();
    let port = support::daemon::free_port();
    let cfg = support::daemon::write_config(
        dir.path(),
        &format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[[rules]]\nname = \"app\"\n\
             source = \"{a}/app\"\ntarget = \"{b}/m/app\"\ntags = [\"1.0\"]\n\
             schedule = \"@every 1h\"\naudit = \"@every 1s\"\n",
            a = a.host(),
            b = b.host()
        ),
    );
    let layer = image.images[0].layer_digests[0].clone();
    let d = support::daemon::Daemon::start(&cfg, port, dir.path());
    let corrupt = "crossdock_audited_objects_total{rule=\"app\",result=\"corrupt\"}";
    let intact = "crossdock_audited_objects_total{rule=\"app\",result=\"intact\"}";
    d.wait_for(Duration::from_secs(30), "an intact audit", |d| {
        support::daemon::metric(&d.metrics(), intact) >= 3.0
    });
    flip_byte(&b.blob_data_path(&layer), 0);
    d.wait_for(Duration::from_secs(30), "the corrupt layer found", |d| {
        support::daemon::metric(&d.metrics(), corrupt) >= 1.0
    });
    assert!(d.log().contains(&layer), "{}", d.log());
}
