//! The `openmvs` command: parses the command line and hands each subcommand to its module.

// Standard output goes through `out::outln!`, which ends quietly when the reader has gone away.
#![deny(clippy::print_stdout)]

mod agent_config;
mod cli;
mod cmd;
mod config;
mod health;
mod hub_config;
mod out;

use openmvs_node::{heads, hub as hub_node, national as node};

use std::process::ExitCode;

use clap::Parser;

// The request path allocates many small, short-lived buffers on every worker thread; mimalloc's
// thread-local free lists serve them without the contention and consolidation passes of the
// system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
