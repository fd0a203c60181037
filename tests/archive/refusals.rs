//! Bad archives and targets refused: a missing file, a tar that is no image, a gzip file, an
//! existing target without `--force`, a platform or tag the archive does not hold — each named,
//! nothing half-written; and a daemon rule may not target an archive.

use std::path::Path;

use crate::support::cli::{crossdock, ok};
use crate::support::{Format, ImageSpec, TestRegistry};
use crate::{PLATFORMS, files_in, path_str, stderr};

#[tokio::test]
async fn bad_archives_are_named_and_nothing_is_half_written() {
    let a = TestRegistry::start();
    let image = ImageSpec::multi(Format::Oci, &PLATFORMS).seed(144).build();
    a.client().push_image("lib/app", "v1", &image).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fail = |args: &[&str], says: &[&str]| {
        let out = crossdock(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let e = stderr(&out);
        for s in says {
            assert!(e.contains(s), "{args:?}: {s:?} not in: {e}");
        }
    };
    let layout_dest = format!("oci:{}", d.join("out").display());
    // A missing archive.
    let missing = d.join("missing.tar");
    fail(
        &[
            "import",
            &format!("oci-archive:{}", missing.display()),
            &layout_dest,
        ],
        &[path_str(&missing), "check the path"],
    );
    // A tar that is no image, a gzip file, and an archive of the other kind.
    let not_image = d.join("files.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&not_image).unwrap());
    let mut h = tar::Header::new_gnu();
    h.set_size(2);
    b.append_data(&mut h, "notes.txt", &b"hi"[..]).unwrap();
    b.finish().unwrap();
    drop(b);
    fail(
        &[
            "import",
            &format!("docker-archive:{}", not_image.display()),
            &layout_dest,
        ],
        &[path_str(&not_image), "no manifest.json"],
    );
    let gz = d.join("app.tar.gz");
    std::fs::write(&gz, [0x1f, 0x8b, 8, 0, 0, 0]).unwrap();
    fail(
        &[
            "import",
            &format!("oci-archive:{}", gz.display()),
            &layout_dest,
        ],
        &[path_str(&gz), "gunzip"],
    );
    // An existing target is refused without --force and left as it was.
    let existing = d.join("existing.tar");
    std::fs::write(&existing, b"precious").unwrap();
    let target = format!("oci-archive:{}", existing.display());
    fail(
        &["import", &a.image_ref("lib/app", "v1"), &target],
        &[path_str(&existing), "--force"],
    );
    assert_eq!(std::fs::read(&existing).unwrap(), b"precious");
    // A platform the archive does not hold: named, and no target written.
    ok(&crossdock(&[
        "import",
        "--force",
        &a.image_ref("lib/app", "v1"),
        &target,
    ]));
    fail(
        &[
            "import",
            "--platform",
            "linux/s390x",
            &target,
            &format!("docker-archive:{}", d.join("s390x.tar").display()),
        ],
        &["linux/s390x", "linux/amd64"],
    );
    let mut want = vec!["app.tar.gz", "existing.tar", "files.tar"];
    want.sort();
    assert_eq!(files_in(d), want, "nothing half-written");
    // A tag the archive does not hold: what it holds is named.
    fail(
        &["import", &format!("{target}:v2"), &layout_dest],
        &[path_str(&existing), "no image v2", "v1"],
    );
}

#[test]
fn a_daemon_rule_cannot_target_an_archive() {
    // An archive is written whole by one import; a rule runs again and again.
    let text = "[[rules]]\nname = \"a\"\nsource = \"localhost:5000/x\"\n\
                target = \"oci-archive:/srv/{name}.tar\"\ntags = [\"latest\"]\n";
    let Err(errs) = crossdock::config::load_str(Path::new("crossdock.toml"), text, []) else {
        panic!("a rule targeting an archive was accepted");
    };
    let errs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert!(
        errs.iter()
            .any(|e| e.contains("rules[0].target") && e.contains("archive")),
        "{errs:#?}"
    );
}
