//! `crossdock login REGISTRY` and `crossdock logout REGISTRY`: one login for docker, skopeo and
//! crossdock, kept in Docker's `config.json` (or its credential helper).

use std::io::{BufRead as _, IsTerminal as _};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use super::{EXIT_FAILURE, EXIT_USAGE};
use crate::reference::is_loopback_registry;
use crate::registry::Transport as _;
use crate::registry::auth::{Credentials, Secret, login};
use crate::registry::http::{HttpOptions, HttpRegistry};

/// Arguments of `login`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  echo \"$TOKEN\" | crossdock login docker.io -u me --password-stdin
  crossdock login registry.example.com -u mirror --password-stdin < token.txt
  crossdock login reg.internal:5000 -u me --insecure-registry --password-stdin < token.txt")]
pub struct LoginArgs {
    /// Registry host[:port] (docker.io for Docker Hub).
    pub registry: String,
    /// Username.
    #[arg(long, short)]
    pub username: String,
    /// Password (prefer --password-stdin: command lines are visible to other users).
    #[arg(long, short, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from standard input (first line).
    #[arg(long)]
    pub password_stdin: bool,
    /// The Docker config.json to write (default: $DOCKER_CONFIG/config.json or
    /// ~/.docker/config.json).
    #[arg(long, value_name = "PATH", env = "CROSSDOCK_DOCKER_CONFIG")]
    pub docker_config: Option<PathBuf>,
    /// Speak plain HTTP to the registry (loopback registries always do). The same flag as on
    /// the other commands; here its value may be left out (`--insecure` is an alias).
    #[arg(
        long = "insecure-registry",
        alias = "insecure",
        value_name = "HOST[:PORT]",
        num_args = 0..=1,
        default_missing_value = ""
    )]
    pub insecure_registry: Option<String>,
}

/// Arguments of `logout`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  crossdock logout docker.io
  crossdock logout registry.example.com --docker-config ./config.json")]
pub struct LogoutArgs {
    /// Registry host[:port].
    pub registry: String,
    /// The Docker config.json to change.
    #[arg(long, value_name = "PATH", env = "CROSSDOCK_DOCKER_CONFIG")]
    pub docker_config: Option<PathBuf>,
}

fn normalise(registry: &str) -> String {
    match registry.trim_end_matches('/') {
        "index.docker.io" | "registry-1.docker.io" | "https://index.docker.io/v1" => {
            "docker.io".to_string()
        }
        r => r
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .to_string(),
    }
}

/// Runs `login`: checks the credentials against the registry, then stores them.
pub(super) async fn login(args: LoginArgs) -> anyhow::Result<u8> {
    let registry = normalise(&args.registry);
    let password = match (&args.password, args.password_stdin) {
        (Some(p), _) => p.clone(),
        (None, true) => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) if std::io::stdin().is_terminal() => {
            eprintln!("error: give the password with --password-stdin (or --password)");
            return Ok(EXIT_USAGE);
        }
        (None, false) => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim_end_matches(['\n', '\r']).to_string()
        }
    };
    if password.is_empty() {
        eprintln!("error: empty password");
        return Ok(EXIT_USAGE);
    }
    let insecure = match args.insecure_registry.as_deref() {
        None => false,
        Some("") => true,
        Some(host) if normalise(host) == registry => true,
        Some(host) => {
            eprintln!(
                "error: --insecure-registry {host} names another registry than {registry}, \
                 the one logged in to"
            );
            return Ok(EXIT_USAGE);
        }
    };
    let password = Secret::new(password);
    let mut opts = HttpOptions {
        credentials: Some(Credentials::Basic {
            username: args.username.clone(),
            password: password.clone(),
        }),
        ..HttpOptions::default()
    };
    opts.plain_http =
        insecure || (is_loopback_registry(&registry) && !opts.tls_configured(&registry));
    let transport = HttpRegistry::new(&registry, opts)?;
    if let Err(e) = transport.ping().await {
        eprintln!(
            "error: login to {registry} as {} failed: {}",
            args.username,
            crate::copy::error_chain(&e)
        );
        return Ok(EXIT_FAILURE);
    }
    let path = login::config_path(args.docker_config.as_deref())?;
    let where_ = login::store(&path, &registry, &args.username, &password)
        .with_context(|| format!("storing credentials in {}", path.display()))?;
    println!(
        "Login Succeeded ({registry} as {}, stored in {where_})",
        args.username
    );
    Ok(0)
}

/// Runs `logout`.
pub(super) fn logout(args: LogoutArgs) -> anyhow::Result<u8> {
    let registry = normalise(&args.registry);
    let path = login::config_path(args.docker_config.as_deref())?;
    if login::erase(&path, &registry)? {
        println!("Removed login credentials for {registry}");
    } else {
        println!("Not logged in to {registry}");
    }
    Ok(0)
}
