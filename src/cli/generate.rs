//! `crossdock completions SHELL` and `crossdock man [COMMAND]`: shell completions and man pages
//! generated from the same clap definitions as `--help`, so they never drift from the binary.

use std::io::Write as _;

use clap::{Args, CommandFactory as _};
use clap_complete::Shell;

use super::{Cli, EXIT_USAGE};

/// Arguments of `completions`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  crossdock completions bash > /etc/bash_completion.d/crossdock
  crossdock completions zsh > \"${fpath[1]}/_crossdock\"
  crossdock completions fish > ~/.config/fish/completions/crossdock.fish")]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Arguments of `man`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  crossdock man | man -l -
  crossdock man import > crossdock-import.1")]
pub struct ManArgs {
    /// A command, for its own page (`crossdock-import(1)`); none for the main page.
    #[arg(value_name = "COMMAND")]
    pub command: Option<String>,
}

/// Prints the completion script.
pub(super) fn completions(args: CompletionsArgs) -> anyhow::Result<u8> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "crossdock", &mut out);
    print(&out)
}

/// Writes to stdout; a reader that stops early (`| head`) is not an error.
fn print(bytes: &[u8]) -> anyhow::Result<u8> {
    match std::io::stdout().lock().write_all(bytes) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(0),
    }
}

/// Prints a man page in roff.
pub(super) fn man(args: ManArgs) -> anyhow::Result<u8> {
    let mut cmd = Cli::command();
    cmd.build();
    let page = match &args.command {
        None => cmd,
        Some(name) => match cmd.find_subcommand(name) {
            // clap names are `&'static str` (without its `string` feature); this process
            // prints one page and exits.
            Some(sub) => sub
                .clone()
                .name(&*Box::leak(format!("crossdock-{name}").into_boxed_str()))
                .version(env!("CARGO_PKG_VERSION")),
            None => {
                let names: Vec<&str> = cmd.get_subcommands().map(|c| c.get_name()).collect();
                eprintln!("error: no command {name:?}; commands: {}", names.join(", "));
                return Ok(EXIT_USAGE);
            }
        },
    };
    let mut out = Vec::new();
    clap_mangen::Man::new(page).render(&mut out)?;
    print(&out)
}
