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

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::raw::RawClient;

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Path prefix of the harness's own marker requests in the access log; never reported.
const SYNC_PATH: &str = "/_crossdock_harness_sync/";
/// Attempts at finding a port: another process may take the port between our probe bind and
/// the registry's bind.
const PORT_ATTEMPTS: usize = 5;

static SYNC_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Options for a [`TestRegistry`]; start with [`TestRegistry::builder`].
#[derive(Default)]
pub(crate) struct TestRegistryBuilder {
    auth: Option<(String, String)>,
    extra_yaml: String,
    tls: Option<(PathBuf, PathBuf)>,
    client_ca: Option<PathBuf>,
    refuse_deletes: bool,
    token: Option<TokenAuth>,
}

/// Token authentication settings of a registry (distribution's `auth.token`).
#[derive(Clone)]
struct TokenAuth {
    realm: String,
    service: String,
    issuer: String,
    bundle: PathBuf,
}

impl TestRegistryBuilder {
    /// Refuse manifest deletes (`storage.delete.enabled: false`, distribution's default; the
    /// harness enables them otherwise).
    pub(crate) fn refuse_deletes(mut self) -> Self {
        self.refuse_deletes = true;
        self
    }

    /// Require bearer tokens from `realm`, signed by a key whose certificate is in `bundle`
    /// (see [`super::token_realm`]), for `service`, issued by `issuer`.
    pub(crate) fn token_auth(
        mut self,
        realm: &str,
        service: &str,
        issuer: &str,
        bundle: &Path,
    ) -> Self {
        self.token = Some(TokenAuth {
            realm: realm.to_owned(),
            service: service.to_owned(),
            issuer: issuer.to_owned(),
            bundle: bundle.to_owned(),
        });
        self
    }

    /// Require HTTP basic auth (htpasswd, bcrypt) with this one user.
    pub(crate) fn auth(mut self, user: &str, pass: &str) -> Self {
        self.auth = Some((user.to_owned(), pass.to_owned()));
        self
    }

    /// YAML appended at the top level of config.yml (e.g. a `notifications:` block). It must
    /// not repeat the keys the harness writes: version, log, storage, http, health, auth.
    pub(crate) fn extra_yaml(mut self, yaml: &str) -> Self {
        self.extra_yaml.push('\n');
        self.extra_yaml.push_str(yaml);
        self.extra_yaml.push('\n');
        self
    }

    /// Serve HTTPS with this certificate chain and key (PEM files). The registry's request
    /// log ([`TestRegistry::requests`]) and [`TestRegistry::client`] speak plain HTTP and do
    /// not work with it.
    pub(crate) fn tls(mut self, certificate: &Path, key: &Path) -> Self {
        self.tls = Some((certificate.to_owned(), key.to_owned()));
        self
    }

    /// With [`tls`](Self::tls): require a client certificate signed by this CA (PEM), as
    /// distribution's `http.tls.clientcas` does (Go's `RequireAndVerifyClientCert`).
    pub(crate) fn client_ca(mut self, ca: &Path) -> Self {
        self.client_ca = Some(ca.to_owned());
        self
    }

    /// Start the registry and wait until `GET /v2/` answers. Panics (with the log tail) if it
    /// does not come up within ~10 s.
    pub(crate) fn start(self) -> TestRegistry {
        assert!(
            Path::new(REGISTRY_BIN).exists(),
            "{REGISTRY_BIN} is missing: run `.ci/run` or `apt-get install -y docker-registry`"
        );
        let dir = tempfile::Builder::new()
            .prefix("crossdock-registry-")
            .tempdir()
            .expect("create registry temp dir");
        fs::create_dir_all(dir.path().join("storage")).expect("create storage dir");
        if let Some((user, pass)) = &self.auth {
            // Cost 4 (the minimum): distribution checks bcrypt on every request, and the
            // default cost 12 would make each request take ~250 ms.
            let hash = bcrypt::hash(pass, 4).expect("bcrypt hash");
            fs::write(dir.path().join("htpasswd"), format!("{user}:{hash}\n"))
                .expect("write htpasswd");
        }
        let mut registry = TestRegistry {
            dir,
            port: 0,
            auth: self.auth,
            token: self.token,
            extra_yaml: self.extra_yaml,
            tls: self.tls,
            client_ca: self.client_ca,
            refuse_deletes: self.refuse_deletes,
            process: Mutex::new(None),
            baseline: Mutex::new(RequestMark(0)),
        };
        registry.spawn_on_free_port();
        registry
    }
}

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

struct Processes {
    registry: Child,
    /// Holds the read end of a pipe whose write end only we hold; when we die it sees EOF and
    /// kills the registry.
    watchdog: Child,
}

impl Processes {
    fn kill(mut self) {
        // Watchdog first: once the registry is reaped its PID may be reused, and a late
        // watchdog must not kill a stranger.
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
        let _ = self.registry.kill();
        let _ = self.registry.wait();
    }
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

/// A position in the request log; see [`TestRegistry::request_mark`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RequestMark(usize);

/// One line of the registry's access log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LoggedRequest {
    pub method: String,
    /// Request path without the query string, e.g. `/v2/app/manifests/latest`.
    pub path: String,
    /// The query string without `?`, if any.
    pub query: Option<String>,
    pub status: u16,
    /// Response body bytes the server wrote (0 for HEAD).
    pub bytes: u64,
    pub user_agent: String,
}

/// What a logged request was, by route of the distribution API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RequestKind {
    /// `/v2/` (API version check / auth probe).
    Base,
    Catalog,
    /// `/v2/<repo>/tags/list`.
    TagList {
        repo: String,
    },
    /// `/v2/<repo>/manifests/<reference>`.
    Manifest {
        repo: String,
        reference: String,
    },
    /// `/v2/<repo>/blobs/uploads/...` (POST start/mount, PATCH, PUT finish, GET, DELETE).
    Upload {
        repo: String,
    },
    /// `/v2/<repo>/blobs/<digest>`.
    Blob {
        repo: String,
        digest: String,
    },
    Other,
}

impl LoggedRequest {
    /// Parse one combined-log-format line as distribution writes it:
    /// `127.0.0.1 - - [26/Nov/2026:15:11:23 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "ua"`.
    pub(crate) fn parse(line: &str) -> Option<LoggedRequest> {
        let (_, rest) = line.split_once("] \"")?;
        let (request, rest) = rest.split_once("\" ")?;
        let mut request = request.split(' ');
        let method = request.next()?.to_owned();
        let uri = request.next()?;
        let mut rest_fields = rest.split(' ');
        let status = rest_fields.next()?.parse().ok()?;
        let bytes = rest_fields.next()?.parse().unwrap_or(0);
        // The user agent is the last quoted field.
        let user_agent = rest
            .trim_end()
            .strip_suffix('"')
            .and_then(|s| s.rsplit_once('"'))
            .map(|(_, ua)| ua.to_owned())
            .unwrap_or_default();
        let (path, query) = match uri.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (uri.to_owned(), None),
        };
        Some(LoggedRequest {
            method,
            path,
            query,
            status,
            bytes,
            user_agent,
        })
    }

    /// Which API route this request hit. Repository names may contain `/`, so the route is
    /// recognised from the end of the path.
    pub(crate) fn kind(&self) -> RequestKind {
        let Some(rest) = self.path.strip_prefix("/v2/") else {
            return RequestKind::Other;
        };
        if rest.is_empty() {
            return RequestKind::Base;
        }
        if rest == "_catalog" {
            return RequestKind::Catalog;
        }
        if let Some(repo) = rest.strip_suffix("/tags/list") {
            return RequestKind::TagList {
                repo: repo.to_owned(),
            };
        }
        if let Some((repo, _)) = rest.split_once("/blobs/uploads") {
            return RequestKind::Upload {
                repo: repo.to_owned(),
            };
        }
        if let Some((repo, reference)) = rest.rsplit_once("/manifests/") {
            return RequestKind::Manifest {
                repo: repo.to_owned(),
                reference: reference.to_owned(),
            };
        }
        if let Some((repo, digest)) = rest.rsplit_once("/blobs/") {
            return RequestKind::Blob {
                repo: repo.to_owned(),
                digest: digest.to_owned(),
            };
        }
        RequestKind::Other
    }

    /// Shorthand for assertions: `r.is("HEAD", RequestKind::is_manifest)`.
    pub(crate) fn is(&self, method: &str, kind: impl Fn(&RequestKind) -> bool) -> bool {
        self.method == method && kind(&self.kind())
    }
}

impl RequestKind {
    pub(crate) fn is_manifest(&self) -> bool {
        matches!(self, RequestKind::Manifest { .. })
    }
    pub(crate) fn is_blob(&self) -> bool {
        matches!(self, RequestKind::Blob { .. })
    }
    pub(crate) fn is_upload(&self) -> bool {
        matches!(self, RequestKind::Upload { .. })
    }
    pub(crate) fn is_tag_list(&self) -> bool {
        matches!(self, RequestKind::TagList { .. })
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

    /// Every request since start (or since [`clear_requests`](Self::clear_requests)), in log
    /// order. Waits until the log has caught up with everything answered so far.
    pub(crate) fn requests(&self) -> Vec<LoggedRequest> {
        let baseline = *self.baseline.lock().unwrap();
        self.requests_since(baseline)
    }

    /// Forget the requests logged so far (for [`requests`](Self::requests)).
    pub(crate) fn clear_requests(&self) {
        let mark = self.request_mark();
        *self.baseline.lock().unwrap() = mark;
    }

    /// The current end of the request log; pass it to [`requests_since`](Self::requests_since)
    /// to see what one operation did.
    pub(crate) fn request_mark(&self) -> RequestMark {
        RequestMark(self.synced_log_lines().len())
    }

    /// Requests logged after `mark`, without the harness's own marker requests.
    ///
    /// The access log is written by the server after each handler returns, so a request the
    /// client has seen answered may not be logged yet. To catch up, the harness sends a
    /// marker request of its own and waits for its line (plus a short grace period).
    pub(crate) fn requests_since(&self, mark: RequestMark) -> Vec<LoggedRequest> {
        self.synced_log_lines()
            .iter()
            .skip(mark.0)
            .filter_map(|l| LoggedRequest::parse(l))
            .filter(|r| !r.path.starts_with(SYNC_PATH))
            .collect()
    }

    fn synced_log_lines(&self) -> Vec<String> {
        let n = SYNC_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = format!("{SYNC_PATH}{}-{n}", std::process::id());
        let needle = format!(" {path} ");
        if let Err(e) = http_status(self.port, &path) {
            panic!(
                "registry {} did not answer a log-sync request: {e}\n{}",
                self.host(),
                self.log_tail(20)
            );
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = fs::read_to_string(self.access_log_path()).unwrap_or_default();
            if text.contains(&needle) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "access log never showed the sync request {path}\n{}",
                self.log_tail(20)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // Grace for handlers that answered before the marker but log after it (large
        // responses are flushed before the access-log line is written).
        std::thread::sleep(Duration::from_millis(20));
        fs::read_to_string(self.access_log_path())
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn lock_process(&self) -> std::sync::MutexGuard<'_, Option<Processes>> {
        self.process.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spawn_on_free_port(&mut self) {
        let mut errors = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            self.port = free_port();
            match self.spawn_once() {
                Ok(()) => return,
                Err(SpawnError::PortTaken) => errors.push(format!("port {} taken", self.port)),
                Err(e) => panic!("{e}"),
            }
        }
        panic!("could not start docker-registry: {}", errors.join("; "));
    }

    fn write_config(&self) {
        let dir = self.dir.path();
        let auth = match (&self.auth, &self.token) {
            (Some(_), _) => format!(
                "auth:\n  htpasswd:\n    realm: crossdock-test\n    path: {}\n",
                dir.join("htpasswd").display()
            ),
            (None, Some(t)) => format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                t.realm,
                t.service,
                t.issuer,
                t.bundle.display()
            ),
            (None, None) => String::new(),
        };
        let mut tls = match &self.tls {
            Some((cert, key)) => format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ),
            None => String::new(),
        };
        if let Some(ca) = &self.client_ca {
            tls.push_str(&format!("    clientcas:\n      - {}\n", ca.display()));
        }
        let config = format!(
            "version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: {deletes}
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: crossdock-test-not-a-secret
{tls}health:
  storagedriver:
    enabled: false
{auth}{extra}",
            storage = dir.join("storage").display(),
            port = self.port,
            deletes = !self.refuse_deletes,
            extra = self.extra_yaml,
        );
        fs::write(dir.join("config.yml"), config).expect("write config.yml");
    }

    fn spawn_once(&self) -> Result<(), SpawnError> {
        self.write_config();
        let dir = self.dir.path();
        let open_append = |name: &str| {
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(name))
                .expect("open registry log")
        };
        // A restart must not confuse the old process's "address in use" with ours.
        let log_start = fs::metadata(self.log_path()).map(|m| m.len()).unwrap_or(0);
        // distribution writes the access log to stdout and its own log to stderr.
        let registry = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(open_append("access.log"))
            .stderr(open_append("registry.log"))
            .spawn()
            .map_err(|e| SpawnError::Other(format!("spawn {REGISTRY_BIN}: {e}")))?;
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg("cat >/dev/null; kill -9 \"$0\" 2>/dev/null")
            .arg(registry.id().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let watchdog = match watchdog {
            Ok(w) => w,
            Err(e) => {
                let mut registry = registry;
                let _ = registry.kill();
                let _ = registry.wait();
                return Err(SpawnError::Other(format!("spawn watchdog sh: {e}")));
            }
        };
        *self.lock_process() = Some(Processes { registry, watchdog });

        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let exited = self
                .lock_process()
                .as_mut()
                .map(|p| p.registry.try_wait())
                .and_then(|r| r.ok().flatten());
            if let Some(status) = exited {
                self.stop();
                let log = fs::read(self.log_path()).unwrap_or_default();
                let new_log = String::from_utf8_lossy(&log[log_start as usize..]);
                if new_log.contains("address already in use") {
                    return Err(SpawnError::PortTaken);
                }
                return Err(SpawnError::Other(format!(
                    "docker-registry exited early ({status})\n{}",
                    self.log_tail(30)
                )));
            }
            // Any HTTP answer means it is serving: 200 anonymous, 401 with auth, and over TLS
            // Go's 400 "client sent an HTTP request to an HTTPS server" to our plain request.
            let serving = match http_status(self.port, "/v2/") {
                Ok(200 | 401) => true,
                Ok(400) => self.tls.is_some(),
                _ => false,
            };
            if serving {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(SpawnError::Other(format!(
                    "docker-registry on {} did not answer GET /v2/ within {READY_TIMEOUT:?}\n{}",
                    self.host(),
                    self.log_tail(30)
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

enum SpawnError {
    PortTaken,
    Other(String),
}

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpawnError::PortTaken => f.write_str("port taken"),
            SpawnError::Other(s) => f.write_str(s),
        }
    }
}

/// A port that was free a moment ago. Racy by nature; callers retry on "address in use".
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Minimal blocking `GET` returning the status code. Plain std so that it works the same
/// inside and outside an async runtime.
fn http_status(port: u16, path: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: crossdock-test-harness\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {text:.80}")))
}
