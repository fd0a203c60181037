//! The containerd the archive tests import into with `ctr`: started per test, waited for,
//! asked for its images, stopped when dropped, so that none of that clutters the tests.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A containerd of the test's own (root, state, socket in a temporary folder), stopped when
/// dropped. `ctr image import` is the reader `docker load`'s users on containerd hosts have.
pub(crate) struct Containerd {
    child: Child,
    dir: tempfile::TempDir,
}

impl Containerd {
    pub(crate) fn start() -> Containerd {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let config = format!(
            "version = 2\nroot = \"{r}/root\"\nstate = \"{r}/state\"\n\
             [grpc]\n  address = \"{r}/c.sock\"\n\
             [plugins.\"io.containerd.grpc.v1.cri\"]\n  disable = true\n",
            r = d.display()
        );
        std::fs::write(d.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(d.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start containerd: {e}; install it with `.ci/run`"));
        let c = Containerd { child, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while c.ctr(&["version"]).status.code() != Some(0) {
            assert!(
                Instant::now() < deadline,
                "containerd did not answer: {}",
                std::fs::read_to_string(c.dir.path().join("containerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        c
    }

    fn ctr(&self, args: &[&str]) -> Output {
        let sock = self.dir.path().join("c.sock");
        Command::new("ctr")
            .arg("--address")
            .arg(&sock)
            .args(["--namespace", "crossdock-test"])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run ctr: {e}; install containerd with `.ci/run`"))
    }

    /// `ctr image import ARGS…`, asserting it succeeded.
    pub(crate) fn import(&self, args: &[&str]) -> String {
        let mut all = vec!["image", "import"];
        all.extend_from_slice(args);
        let out = self.ctr(&all);
        assert!(
            out.status.success(),
            "ctr image import {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The digest of the image `name` containerd holds.
    pub(crate) fn digest_of(&self, name: &str) -> Option<String> {
        let out = self.ctr(&["image", "ls"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|cols| cols.first() == Some(&name))
            .map(|cols| cols[2].to_string())
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
