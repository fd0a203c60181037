//! The one launcher of the `crossdock` binary under test, used by every end-to-end test.
//!
//! Its environment is cleaned the same way for every test: no `RUST_LOG`, no `CROSSDOCK_…`
//! variable of any kind (configuration overrides, shard, credentials, Docker config path, log
//! level, certificate folders), no proxy variable, no `JOB_COMPLETION_INDEX`, and `DOCKER_CONFIG`
//! pointing nowhere, so that nothing
//! from the machine running the tests changes what crossdock does; a test states what it gives
//! it with [`Command::env`]. (Eight copies of this launcher had drifted apart: some removed the
//! credentials variables, some the shard ones, some neither.)
//!
//! Every run is bounded in time (a hang fails the test with crossdock's stderr, instead of
//! stalling CI) and reaped with `wait4`, which also reports the process's peak resident memory.

use std::io::{Read as _, Write as _};
use std::os::unix::process::ExitStatusExt as _;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Longest a crossdock run may take unless a test says otherwise.
pub(crate) const RUN_LIMIT: Duration = Duration::from_secs(60);

/// The binary with `args` and the cleaned environment (see the module header).
pub(crate) fn command(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_crossdock"));
    c.args(args);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CROSSDOCK_") {
            c.env_remove(name);
        }
    }
    for name in PROXY_VARIABLES {
        c.env_remove(name);
    }
    c.env_remove("RUST_LOG")
        .env_remove("JOB_COMPLETION_INDEX")
        .env("DOCKER_CONFIG", "/nonexistent-crossdock-test");
    c
}

/// The proxy variables crossdock honours, in both cases.
const PROXY_VARIABLES: [&str; 8] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// Runs crossdock to completion (within [`RUN_LIMIT`]).
pub(crate) fn crossdock(args: &[&str]) -> Output {
    run(command(args), None, RUN_LIMIT).output
}

/// [`crossdock`] with these variables set (on top of the cleaned environment).
pub(crate) fn crossdock_env(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = command(args);
    for (k, v) in envs {
        c.env(k, v);
    }
    run(c, None, RUN_LIMIT).output
}

/// A finished run and its peak resident set size.
pub(crate) struct Measured {
    /// Exit status and both streams.
    pub output: Output,
    /// Peak RSS in KiB, from `wait4`.
    pub max_rss_kib: i64,
}

/// Runs `cmd` to the end with `stdin` as its input (none: empty), killing it (by its own pid)
/// and panicking with its stderr after `limit`.
// The child is reaped by `wait4` (which std cannot do), not by `Child::wait`.
#[allow(clippy::zombie_processes)]
pub(crate) fn run(mut cmd: Command, stdin: Option<&str>, limit: Duration) -> Measured {
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn crossdock");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).unwrap();
    }
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let pid = child.id() as libc::pid_t;
    let deadline = Instant::now() + limit;
    let (status, rusage) = loop {
        let mut status = 0;
        // SAFETY: a zeroed rusage is a valid value for wait4 to fill in.
        let mut rusage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: pid is our own unreaped child; the pointers are to live locals.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut rusage) };
        if r == pid {
            break (status, rusage);
        }
        assert!(r == 0, "wait4: {}", std::io::Error::last_os_error());
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let err = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
            panic!("crossdock {cmd:?} hung for {limit:?}; stderr:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Measured {
        output: Output {
            status: ExitStatus::from_raw(status),
            stdout: out.join().unwrap(),
            stderr: err.join().unwrap(),
        },
        max_rss_kib: rusage.ru_maxrss,
    }
}

/// Both streams and the status, for assertion messages.
pub(crate) fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Its stdout, after asserting it succeeded (showing both streams when not).
pub(crate) fn ok(out: &Output) -> String {
    assert!(out.status.success(), "crossdock failed:\n{}", text(out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Its stdout as JSON, after asserting it succeeded.
pub(crate) fn json(out: &Output) -> Value {
    serde_json::from_str(&ok(out)).expect("a JSON report")
}
