//! Running the `crossdock` binary under test: with no ambient configuration (no `RUST_LOG`, no
//! Docker credentials, no shard variables), so every test states what it gives it.

use std::process::{Command, Output};

use serde_json::Value;

/// The binary, with the environment cleaned.
pub fn command(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_crossdock"));
    c.args(args)
        .env_remove("RUST_LOG")
        .env_remove("CROSSDOCK_SHARD")
        .env_remove("CROSSDOCK_SHARD_COUNT")
        .env_remove("CROSSDOCK_DOCKER_CONFIG")
        .env("DOCKER_CONFIG", "/nonexistent-crossdock-test");
    c
}

/// Runs crossdock to completion.
pub fn crossdock(args: &[&str]) -> Output {
    command(args).output().expect("run crossdock")
}

/// Its stdout, after asserting it succeeded (showing both streams when not).
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "crossdock failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Its stdout as JSON, after asserting it succeeded.
pub fn json(out: &Output) -> Value {
    serde_json::from_str(&ok(out)).expect("a JSON report")
}
