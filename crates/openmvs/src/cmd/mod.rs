//! One module per subcommand; `run` dispatches.

mod admin;
mod audit;
mod bench;
mod bench_hub;
mod bench_intermarket;
mod demo;
mod load;
mod return_codes;
mod scan;
mod serve;
mod serve_hub;

use std::process::ExitCode;

use crate::cli::{BenchCommand, Cli, Command, ConfigCommand, Serve};

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Scan { input, today } => scan::run(&input, today.as_deref()),
        Command::ReturnCodes => return_codes::run(),
        Command::Serve(Serve::National { config }) => serve::national(&config),
        Command::Serve(Serve::Hub { config }) => serve_hub::hub(&config),
        Command::Demo { data_dir, port_base, markets, fake_clock, storage, database_url, schema_prefix } => {
            let storage = demo::DemoStorage::parse(&storage, database_url.as_deref(), &schema_prefix)?;
            demo::run(&data_dir, port_base, &markets, fake_clock, storage)
        }
        Command::Config(ConfigCommand::Check { config }) => serve::check(&config),
        Command::Admin(a) => admin::run(a),
        Command::Audit(a) => audit::run(a),
        Command::Migrate { target } => audit::migrate(&target),
        Command::Bench(BenchCommand::National { packs, seconds, clients, database_url }) => {
            bench::national(packs, seconds, clients, database_url.as_deref())
        }
        Command::Bench(BenchCommand::Hub { serials, markets }) => bench_hub::hub(serials, &markets),
        Command::Bench(BenchCommand::Intermarket { requests }) => bench_intermarket::intermarket(requests),
    }
}
