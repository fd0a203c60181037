//! The command line: argument definitions and dispatch, one file per verb.
//!
//! Each verb returns an [`ExitCode`]-like integer through `anyhow::Result<u8>`: 0 success,
//! 1 a failed operation, 2 a usage or configuration error (clap's own parse errors also exit 2).
//! Errors print with their whole cause chain.

mod daemon;
pub mod errors;
mod flags;
mod generate;
mod import;
mod index;
mod inspect;
mod login;
mod ls;
mod progress;
mod retry_line;
mod sync_report;
mod verify;

use clap::{Parser, Subcommand, ValueEnum};

pub use flags::{ConfigArg, ConnectFlags, DestCreds, ReadFlags, RegistryFlags};

/// Exit code for a failed operation.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for bad usage or configuration.
pub const EXIT_USAGE: u8 = 2;

/// crossdock copies container images between registries without Docker.
#[derive(Debug, Parser)]
#[command(name = "crossdock", version, about, long_about = None, after_help = "Examples:
  crossdock run config.example.toml                 # the daemon on the example rules
  crossdock import alpine:3.20 localhost:5001/mirror/alpine
  crossdock inspect --platforms oci:mirror:1.0
  crossdock COMMAND --help                          # each command's options and examples")]
pub struct Cli {
    /// Log level (error, warn, info, debug, trace) or a tracing filter; RUST_LOG overrides
    /// [default: info for `run`, warn for the others].
    #[arg(long, global = true, env = "CROSSDOCK_LOG", help_heading = flags::GLOBAL_HEADING)]
    pub log_level: Option<String>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text,
          help_heading = flags::GLOBAL_HEADING)]
    pub log_format: LogFormat,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Copy an image (every platform, digests preserved) from SOURCE to each TARGET.
    Import(import::ImportArgs),
    /// Show a manifest as the registry serves it, or its platforms.
    Inspect(inspect::InspectArgs),
    /// Compose a multi-platform index from single-platform images (`index create`).
    Index(index::IndexArgs),
    /// Run the mirroring daemon: every rule on its schedule, with health and metrics.
    Run(daemon::RunArgs),
    /// Run every rule (or one) once, then exit: 0 if all succeeded.
    Sync(daemon::SyncArgs),
    /// Check a configuration file and report every problem.
    CheckConfig(daemon::CheckArgs),
    /// List a repository's tags (with --digests, --platforms).
    Ls(ls::LsArgs),
    /// Check credentials against a registry and store them in Docker's config.json.
    Login(login::LoginArgs),
    /// Remove stored credentials for a registry.
    Logout(login::LogoutArgs),
    /// Re-read images at a mirror and check every digest and size (exit 1 if any is bad).
    Verify(verify::VerifyArgs),
    /// Print shell completions for bash, zsh, fish, elvish or PowerShell.
    Completions(generate::CompletionsArgs),
    /// Print the man page (roff) of crossdock or of one command.
    Man(generate::ManArgs),
}

impl Cli {
    /// The log level asked for, or the command's default: a daemon reports its runs at info,
    /// a one-shot command only what goes wrong.
    pub fn log_level(&self) -> &str {
        match (&self.log_level, &self.command) {
            (Some(l), _) => l,
            (None, Command::Run(_)) => "info",
            (None, _) => "warn",
        }
    }

    /// Whether retries show as one progress line rather than as log lines: for a one-shot
    /// command at the default log level in text format (see `retry_line`).
    pub fn retries_as_progress(&self) -> bool {
        self.log_level.is_none()
            && self.log_format == LogFormat::Text
            && !matches!(self.command, Command::Run(_))
            && std::env::var_os("RUST_LOG").is_none()
    }
}

/// Runs the parsed command line and returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Import(a) => import::run(a).await,
        Command::Inspect(a) => inspect::run(a).await,
        Command::Index(a) => index::run(a).await,
        Command::Run(a) => daemon::run(a).await,
        Command::Sync(a) => daemon::sync(a).await,
        Command::CheckConfig(a) => daemon::check_config(a),
        Command::Ls(a) => ls::run(a).await,
        Command::Login(a) => login::login(a).await,
        Command::Logout(a) => login::logout(a),
        Command::Verify(a) => verify::run(a).await,
        Command::Completions(a) => generate::completions(a),
        Command::Man(a) => generate::man(a),
    }
}

/// Crates of the AWS SDK whose logs are capped at info (see [`init_logging`]).
const AWS_LOG_TARGETS: &[&str] = &[
    "aws_config",
    "aws_runtime",
    "aws_sdk_ecr",
    "aws_sdk_sts",
    "aws_sigv4",
    "aws_smithy_http_client",
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_types",
];

/// Sets up logging to stderr; with `retries_as_progress`, the retry loop's warnings go to one
/// progress line instead (see `retry_line`).
pub fn init_logging(level: &str, format: LogFormat, retries_as_progress: bool) {
    use tracing_subscriber::prelude::*;

    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    if retries_as_progress {
        filter = filter.add_directive(
            format!("{}=off", retry_line::RETRY_TARGET)
                .parse()
                .expect("static directive"),
        );
    }
    // The AWS SDK traces whole HTTP exchanges (ECR tokens and STS session keys in the bodies,
    // signed headers): whatever level is asked, its crates log at most info, added last so
    // that they win over any directive naming them.
    for target in AWS_LOG_TARGETS {
        filter = filter.add_directive(format!("{target}=info").parse().expect("static directive"));
    }
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // Colours only for a person at a terminal, never into log files or collectors.
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(terminal)
        .with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    };
    let retries = retries_as_progress.then(|| {
        retry_line::RetryLine::new(terminal).with_filter(tracing_subscriber::filter::filter_fn(
            |m| m.target() == retry_line::RETRY_TARGET,
        ))
    });
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(retries)
        .init();
}
