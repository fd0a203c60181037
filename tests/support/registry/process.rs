//! The `docker-registry` child behind a [`TestRegistry`]: writing its config.yml, spawning it
//! with a watchdog (so no orphan outlives the test binary), waiting until it serves, retrying
//! on another port when the one probed was taken meanwhile, and stopping it.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::TestRegistry;

pub(super) const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts at finding a port: another process may take the port between our probe bind and
/// the registry's bind.
const PORT_ATTEMPTS: usize = 5;

/// A running registry child and the watchdog that kills it if the test process dies.
pub(super) struct Processes {
    registry: Child,
    /// Holds the read end of a pipe whose write end only we hold; when we die it sees EOF and
    /// kills the registry.
    watchdog: Child,
}

impl Processes {
    pub(super) fn kill(mut self) {
        // Watchdog first: once the registry is reaped its PID may be reused, and a late
        // watchdog must not kill a stranger.
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
        let _ = self.registry.kill();
        let _ = self.registry.wait();
    }
}

impl TestRegistry {
    pub(super) fn lock_process(&self) -> std::sync::MutexGuard<'_, Option<Processes>> {
        self.process.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn spawn_on_free_port(&mut self) {
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

    pub(super) fn spawn_once(&self) -> Result<(), SpawnError> {
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

pub(super) enum SpawnError {
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
pub(super) fn http_status(port: u16, path: &str) -> std::io::Result<u16> {
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
