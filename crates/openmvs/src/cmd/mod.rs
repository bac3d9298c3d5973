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
mod suite;

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
        Command::Bench(BenchCommand::Hub { serials, markets, database_url }) => {
            bench_hub::hub(serials, &markets, database_url.as_deref())
        }
        Command::Bench(BenchCommand::Suite {
            sizes,
            seconds,
            connections,
            database_url,
            out,
            max_in_flight,
            upload_serials,
            smoke,
        }) => {
            let from_env = std::env::var("OPENMVS_DATABASE_URL").ok().filter(|u| !u.is_empty());
            let mut opts = suite::Options {
                sizes,
                seconds,
                connections,
                database_url: database_url.or(from_env),
                out,
                max_in_flight,
                upload_serials,
            };
            if smoke {
                opts.sizes = vec![20_000];
                opts.seconds = opts.seconds.min(0.5);
                opts.connections = opts.connections.min(8);
                opts.upload_serials = opts.upload_serials.min(30_000);
            }
            suite::run(opts)
        }
        Command::Bench(BenchCommand::Intermarket { requests, database_url }) => {
            bench_intermarket::intermarket(requests, database_url.as_deref())
        }
    }
}
