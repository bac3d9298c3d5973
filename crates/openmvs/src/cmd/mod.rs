//! One module per subcommand; `run` dispatches.

mod return_codes;
mod scan;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Scan { input, today } => scan::run(&input, today.as_deref()),
        Command::ReturnCodes => return_codes::run(),
    }
}
