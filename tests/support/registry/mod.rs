//! [`TestRegistry`]: one private `docker-registry` (CNCF distribution 2.8) per test.
//!
//! Each registry is a child process on a free 127.0.0.1 port with its own temporary
//! directory (config, storage, logs), so tests run in parallel without sharing state and
//! can tamper with stored blobs. The registry's access log is the test's request log: it is
//! what the server actually saw, independent of any client-side counting.
//!
//! No orphan may outlive the test binary: [`Drop`] kills the child (also while a failing test
//! unwinds), and a tiny watchdog `sh` holding a pipe from us kills the registry if the test
//! process itself dies without unwinding (abort, SIGKILL, a timeout in CI).
//!
//! Files: `builder` (options and start), `process` (the child, its watchdog, its config and
//! readiness), `request_log` (the access log read back as [`LoggedRequest`]s).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::raw::RawClient;
use builder::TokenAuth;
use process::Processes;

pub(crate) use builder::TestRegistryBuilder;
pub(crate) use request_log::{LoggedRequest, RequestKind, RequestMark};

mod builder;
mod process;
mod request_log;

/// A running `docker-registry` child process; killed on drop.
pub(crate) struct TestRegistry {
    dir: tempfile::TempDir,
    port: u16,
    auth: Option<(String, String)>,
    token: Option<TokenAuth>,
    extra_yaml: String,
    tls: Option<(PathBuf, PathBuf)>,
    client_ca: Option<PathBuf>,
    refuse_deletes: bool,
    process: Mutex<Option<Processes>>,
    baseline: Mutex<RequestMark>,
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        if let Some(p) = self
            .process
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            p.kill();
        }
    }
}

impl TestRegistry {
    /// An anonymous registry with default settings.
    pub(crate) fn start() -> TestRegistry {
        Self::builder().start()
    }

    /// A registry that requires basic auth with this user and password.
    pub(crate) fn start_with_auth(user: &str, pass: &str) -> TestRegistry {
        Self::builder().auth(user, pass).start()
    }

    pub(crate) fn builder() -> TestRegistryBuilder {
        TestRegistryBuilder::default()
    }

    /// `127.0.0.1:PORT`, the registry part of an image reference.
    pub(crate) fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT` (`https://` when serving TLS).
    pub(crate) fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// `HOST/REPO:TAG` or `HOST/REPO@DIGEST` for this registry.
    pub(crate) fn image_ref(&self, repo: &str, reference: &str) -> String {
        let sep = if reference.contains(':') { '@' } else { ':' };
        format!("{}/{repo}{sep}{reference}", self.host())
    }

    /// The credentials this registry requires, if any.
    pub(crate) fn credentials(&self) -> Option<(&str, &str)> {
        self.auth.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// A raw (non-crossdock) client for this registry, carrying its credentials if any.
    pub(crate) fn client(&self) -> RawClient {
        let client = RawClient::new(&self.url());
        match self.credentials() {
            Some((u, p)) => client.with_auth(u, p),
            None => client,
        }
    }

    /// The temporary directory holding config.yml, storage/, access.log and registry.log.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Root of the filesystem storage driver.
    pub(crate) fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Where distribution keeps the bytes of a blob (`sha256:<hex>`); tests tamper with it.
    pub(crate) fn blob_data_path(&self, digest: &str) -> PathBuf {
        let hex = digest
            .strip_prefix("sha256:")
            .unwrap_or_else(|| panic!("not a sha256 digest: {digest}"));
        self.storage_dir()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// The registry's application log (stderr) path.
    pub(crate) fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    /// The access log (stdout) path.
    pub(crate) fn access_log_path(&self) -> PathBuf {
        self.dir.path().join("access.log")
    }

    /// The last `n` lines of both logs, for panic messages.
    pub(crate) fn log_tail(&self, n: usize) -> String {
        fn tail(path: &Path, n: usize) -> String {
            let text = fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        format!(
            "--- registry.log (tail) ---\n{}\n--- access.log (tail) ---\n{}",
            tail(&self.log_path(), n),
            tail(&self.access_log_path(), n)
        )
    }

    /// Kill the registry (storage is kept). Requests fail with "connection refused" until
    /// [`restart`](Self::restart).
    pub(crate) fn stop(&self) {
        if let Some(p) = self.lock_process().take() {
            p.kill();
        }
    }

    /// Start the registry again on the same port with the same storage (e.g. after
    /// [`stop`](Self::stop), to test retries across an outage). Panics if the port was taken
    /// in between.
    pub(crate) fn restart(&self) {
        self.stop();
        if let Err(e) = self.spawn_once() {
            panic!("registry restart on port {} failed: {e}", self.port);
        }
    }
}
