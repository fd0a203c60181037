//! [`TinyProxy`]: a real HTTP proxy (Debian's `tinyproxy`) on a free loopback port, with its own
//! config file and log in a temporary folder, killed on drop.
//!
//! It is what an enterprise network puts between crossdock and registries: plain-HTTP requests
//! are forwarded, HTTPS goes through `CONNECT` tunnels (only to the ports the test allows), and
//! `BasicAuth` makes it demand proxy credentials. Its log names every request it handled, which
//! is how a test proves a request really went through it.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TINYPROXY_BIN: &str = "/usr/bin/tinyproxy";

/// A running tinyproxy; killed on drop.
pub(crate) struct TinyProxy {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    watchdog: Option<Child>,
}

impl TinyProxy {
    /// Starts tinyproxy allowing `CONNECT` to `connect_ports`, demanding `basic_auth` (user,
    /// password) when given. Panics naming the package when tinyproxy is not installed.
    pub(crate) fn start(connect_ports: &[u16], basic_auth: Option<(&str, &str)>) -> TinyProxy {
        assert!(
            Path::new(TINYPROXY_BIN).exists(),
            "{TINYPROXY_BIN} is missing: run `.ci/run` or `apt-get install -y tinyproxy`"
        );
        let dir = tempfile::Builder::new()
            .prefix("crossdock-tinyproxy-")
            .tempdir()
            .unwrap();
        let mut errors = Vec::new();
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .unwrap()
                .port();
            let mut conf = format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 30\nLogFile \"{log}\"\nLogLevel Info\n\
                 MaxClients 50\nAllow 127.0.0.1\nDisableViaHeader Yes\n",
                log = dir.path().join("tinyproxy.log").display()
            );
            for p in connect_ports {
                conf.push_str(&format!("ConnectPort {p}\n"));
            }
            if let Some((user, pass)) = basic_auth {
                conf.push_str(&format!("BasicAuth {user} {pass}\n"));
            }
            let conf_path = dir.path().join("tinyproxy.conf");
            fs::write(&conf_path, conf).unwrap();
            let mut child = Command::new(TINYPROXY_BIN)
                .arg("-d")
                .arg("-c")
                .arg(&conf_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(
                    fs::File::create(dir.path().join("stderr.log")).unwrap(),
                ))
                .spawn()
                .expect("spawn tinyproxy");
            // Killed with us even if the test process dies without unwinding.
            let watchdog = Command::new("sh")
                .arg("-c")
                .arg("cat >/dev/null; kill -9 \"$0\" 2>/dev/null")
                .arg(child.id().to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    errors.push(format!(
                        "tinyproxy exited ({status}): {}",
                        fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default()
                    ));
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return TinyProxy {
                        dir,
                        port,
                        child: Some(child),
                        watchdog,
                    };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    errors.push("tinyproxy did not listen within 10 s".into());
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Some(mut w) = watchdog {
                let _ = w.kill();
                let _ = w.wait();
            }
        }
        panic!("could not start tinyproxy: {}", errors.join("; "));
    }

    /// `http://127.0.0.1:PORT`, or with `user:pass@` credentials.
    pub(crate) fn url(&self, credentials: Option<(&str, &str)>) -> String {
        match credentials {
            Some((u, p)) => format!("http://{u}:{p}@127.0.0.1:{}", self.port),
            None => format!("http://127.0.0.1:{}", self.port),
        }
    }

    /// `127.0.0.1:PORT`.
    pub(crate) fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The request lines tinyproxy logged (`CONNECT 127.0.0.1:5000 HTTP/1.1`, `GET http://…`).
    pub(crate) fn requests(&self) -> Vec<String> {
        fs::read_to_string(self.log_path())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once("): ").map(|(_, r)| r.to_string()))
            .filter(|r| r.contains(" HTTP/1."))
            .collect()
    }

    /// The whole log (for assertion messages).
    pub(crate) fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("tinyproxy.log")
    }

    /// Kills the proxy (its port then refuses connections).
    pub(crate) fn stop(&mut self) {
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for TinyProxy {
    fn drop(&mut self) {
        self.stop();
    }
}
