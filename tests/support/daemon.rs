//! The one harness for `crossdock run` (the daemon) and `crossdock sync` in end-to-end tests:
//! a daemon child process started on a config file, spoken to with plain HTTP/1.0 over a socket
//! (the daemon's server is what is tested, so no client library stands in between), its log
//! kept in a file to assert on, signalled like Kubernetes would, killed on drop.
//! Also a registry configured to send its notifications to such a daemon.
//!
//! The daemon is started through [`super::cli::command`], so it sees the same cleaned
//! environment as every other crossdock run in the tests.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::cli;

/// A registry that sends its events to a daemon on `daemon_port` with `token`, configured as an
/// operator would (distribution retries a failed delivery after `backoff`).
pub(crate) fn notifying_registry(daemon_port: u16, token: &str) -> super::TestRegistry {
    super::TestRegistry::builder()
        .extra_yaml(&format!(
            "notifications:
  endpoints:
    - name: crossdock
      url: http://127.0.0.1:{daemon_port}/notifications
      headers:
        Authorization: [Bearer {token}]
      timeout: 1s
      threshold: 5
      backoff: 1s"
        ))
        .start()
}

/// A loopback port that was free a moment ago.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes `config.toml` into `dir`.
pub(crate) fn write_config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("config.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// `crossdock sync --config CONFIG --json` with `extra` arguments, to the end.
pub(crate) fn sync(config: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["sync", "--config", config.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    cli::run(cli::command(&args), None, Duration::from_secs(240)).output
}

/// [`sync`]'s report, asserting success.
pub(crate) fn sync_json(config: &Path, extra: &[&str]) -> serde_json::Value {
    let out = sync(config, extra);
    assert!(out.status.success(), "sync failed:\n{}", cli::text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The sum of the samples of every metric line starting with `prefix`.
pub(crate) fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A running daemon.
pub(crate) struct Daemon {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Daemon {
    /// Starts `crossdock run` on `config` (whose server listens on `port`), logging at debug
    /// level into `dir/daemon.log`, and waits until `/readyz` answers 200.
    pub(crate) fn start(config: &Path, port: u16, dir: &Path) -> Daemon {
        Daemon::start_logging(config, port, dir, "debug")
    }

    /// [`Daemon::start`] logging at `level` (`info` for a test moving hundreds of MiB, whose
    /// debug log would slow it down).
    pub(crate) fn start_logging(config: &Path, port: u16, dir: &Path, level: &str) -> Daemon {
        let log = dir.join("daemon.log");
        let child = cli::command(&[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--log-level",
            level,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
        let d = Daemon { child, port, log };
        d.wait_for(Duration::from_secs(20), "ready", |d| {
            d.get("/readyz").is_some_and(|(s, _)| s == 200)
        });
        d
    }

    fn exchange(&self, request: &[u8]) -> Option<(u16, String)> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(request).ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let status = text.split(' ').nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n")?.1.to_string();
        Some((status, body))
    }

    /// GET `path`: status and body; `None` when the daemon does not answer.
    pub(crate) fn get(&self, path: &str) -> Option<(u16, String)> {
        self.exchange(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
    }

    /// POST `body` to `path` with extra header lines (`Name: value`): status and body.
    pub(crate) fn post(&self, path: &str, headers: &[&str], body: &str) -> (u16, String) {
        let mut req = format!(
            "POST {path} HTTP/1.0\r\nHost: localhost\r\nContent-Length: {}\r\n",
            body.len()
        );
        for h in headers {
            req.push_str(h);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        req.push_str(body);
        self.exchange(req.as_bytes())
            .unwrap_or_else(|| panic!("no answer to POST {path}; log:\n{}", self.log()))
    }

    /// `/metrics`.
    pub(crate) fn metrics(&self) -> String {
        self.get("/metrics").map(|(_, b)| b).unwrap_or_default()
    }

    /// `/status` as JSON.
    pub(crate) fn status(&self) -> serde_json::Value {
        let (_, body) = self.get("/status").expect("status");
        serde_json::from_str(&body).unwrap()
    }

    /// Everything the daemon logged so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `f` every 50 ms until it holds; panics with the log after `timeout`.
    pub(crate) fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        mut f: impl FnMut(&Daemon) -> bool,
    ) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if f(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("timed out waiting for {what}; daemon log:\n{}", self.log());
    }

    /// Sends signal `sig` (`HUP`, `TERM`, …) to the daemon, by its own pid.
    pub(crate) fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success(), "kill -{sig} failed");
    }

    /// Waits for the daemon to exit; panics with the log after `timeout`.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                start.elapsed() < timeout,
                "daemon did not exit:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
