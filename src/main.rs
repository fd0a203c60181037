//! The `crossdock` binary: parse the command line, set up logging, run, map the result to an
//! exit code (0 success, 1 failure, 2 usage or configuration error). Errors print with each
//! cause once and a hint where one applies (`cli::errors`).

use std::process::ExitCode;

use clap::Parser;
use crossdock::cli::{self, Cli};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let retries_as_progress = cli.retries_as_progress();
    cli::init_logging(cli.log_level(), cli.log_format, retries_as_progress);
    match cli::run(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("{}", cli::errors::render(&e));
            ExitCode::from(cli::EXIT_FAILURE)
        }
    }
}
