//! [`Moto`]: the AWS API stand-in (PyPI `moto[server]`) as a child process on a free loopback
//! port, for the ECR tests: `GetAuthorizationToken`, `CreateRepository`, STS `AssumeRole`
//! and `AssumeRoleWithWebIdentity` as AWS specifies them, reached through `AWS_ENDPOINT_URL`.
//!
//! moto's token is base64 `AWS:<account>-auth-token` for the account of the caller's
//! credentials (123456789012 by default, the role's account after an assumed role), so a real
//! registry with that htpasswd user accepts exactly what crossdock got from the ECR API.
//! moto writes one line per request to stderr, kept as the log [`Moto::calls`] counts.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The account moto gives credentials that assume no role.
pub(crate) const DEFAULT_ACCOUNT: &str = "123456789012";

/// A running `moto_server`; killed on drop.
pub(crate) struct Moto {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Moto {
    /// Starts moto on a free port and waits until it answers. Panics naming the tool when it is
    /// not installed.
    pub(crate) fn start() -> Moto {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("moto.log");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("moto_server could not start ({e}): run `.ci/run` or `pip install 'moto[server]'`")
            });
        let moto = Moto {
            child,
            port,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen on {port}: {}",
                fs::read_to_string(&moto.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment of a process that is to reach this moto with static keys.
    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", "AKIACROSSDOCKTEST".to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
            ("AWS_REGION", "eu-west-1".to_string()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
            ("AWS_CONFIG_FILE", "/nonexistent-crossdock-test".to_string()),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent-crossdock-test".to_string(),
            ),
        ]
    }

    /// How many API calls (POSTs to `/`, every ECR and STS action) moto has answered.
    pub(crate) fn calls(&self) -> usize {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"POST / HTTP"))
            .count()
    }

    /// Turns on moto's IAM checks: from now on only credentials of IAM users moto created are
    /// accepted, so every call with the test keys is refused as AWS refuses unknown keys.
    pub(crate) fn enforce_iam(&self) {
        use std::io::{Read, Write};
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            s,
            "POST /moto-api/reset-auth HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\nConnection: close\r\n\r\n0"
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "moto reset-auth: {answer}"
        );
    }
}

/// The secret access key the tests give; it must never appear in crossdock's output.
pub(crate) const SECRET_KEY: &str = "crossdockTestSecretKey0123456789abcdefXYZ";

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
