//! A `crossdock run` child process for end-to-end tests of the daemon's event and index rules
//! (`tests/notifications.rs`, `tests/index_rule.rs`, each declaring `mod support;` too):
//! started on a config file, spoken to with plain HTTP/1.0 over a socket (the daemon's server
//! is what is tested, so no client library stands in between), its log kept in a file to
//! assert on, killed on drop. Also a registry configured to notify such a daemon.
#![allow(dead_code)]

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The crossdock binary, with nothing from the caller's environment that would change it.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_crossdock"));
    c.env_remove("RUST_LOG")
        .env("DOCKER_CONFIG", "/nonexistent-crossdock-test")
        .env_remove("CROSSDOCK_SHARD")
        .env_remove("CROSSDOCK_SHARD_COUNT");
    c
}

/// A registry that sends its events to a daemon on `daemon_port` with `token`, configured as an
/// operator would (distribution retries a failed delivery after `backoff`).
pub fn notifying_registry(daemon_port: u16, token: &str) -> crate::support::TestRegistry {
    crate::support::TestRegistry::builder()
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
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes `config.toml` into `dir`.
pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("config.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// `crossdock sync --json` with `extra` arguments; the report, asserting success.
pub fn sync_json(config: &Path, extra: &[&str]) -> serde_json::Value {
    let out: Output = bin()
        .args(["sync", "--config", config.to_str().unwrap(), "--json"])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sync failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The sum of the samples of every metric line starting with `prefix`.
pub fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A running daemon.
pub struct Daemon {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Daemon {
    /// Starts `crossdock run` and waits until `/readyz` answers 200.
    pub fn start(config: &Path, port: u16, dir: &Path) -> Daemon {
        let log = dir.join("daemon.log");
        let child = bin()
            .args([
                "run",
                "--config",
                config.to_str().unwrap(),
                "--log-level",
                "debug",
            ])
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

    /// GET `path`: status and body.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        self.exchange(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
    }

    /// POST `body` to `path` with extra header lines (`Name: value`): status and body.
    pub fn post(&self, path: &str, headers: &[&str], body: &str) -> (u16, String) {
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
    pub fn metrics(&self) -> String {
        self.get("/metrics").map(|(_, b)| b).unwrap_or_default()
    }

    /// `/status` as JSON.
    pub fn status(&self) -> serde_json::Value {
        let (_, body) = self.get("/status").expect("status");
        serde_json::from_str(&body).unwrap()
    }

    /// Everything the daemon logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `f` every 50 ms until it holds; panics with the log after `timeout`.
    pub fn wait_for(&self, timeout: Duration, what: &str, mut f: impl FnMut(&Daemon) -> bool) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if f(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("timed out waiting for {what}; daemon log:\n{}", self.log());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
