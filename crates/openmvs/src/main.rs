//! The `openmvs` command: parses the command line and hands each subcommand to its module.

mod cli;
mod cmd;
mod config;
mod hub_config;
mod hub_node;
mod node;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cmd::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("openmvs: {e:#}");
            ExitCode::FAILURE
        }
    }
}
