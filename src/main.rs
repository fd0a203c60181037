//! The `crossdock` binary: parse the command line, set up logging, run, map the result to an
//! exit code (0 success, 1 failure, 2 usage or configuration error). Errors print with their
//! whole cause chain.

use std::process::ExitCode;

use clap::Parser;
use crossdock::cli::{self, Cli};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging(cli.log_level(), cli.log_format);
    match cli::run(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(cli::EXIT_FAILURE)
        }
    }
}
