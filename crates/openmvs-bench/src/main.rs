//! `openmvs-bench`: OpenMVS measured on this machine, in this process, against the machine's own
//! limits. Kept out of the `openmvs` command so that the shipped binary carries no benchmark; it
//! wires its nodes with the same code as `openmvs serve` (`openmvs-node`).

// Standard output goes through `out::outln!`, which ends quietly when the reader has gone away.
#![deny(clippy::print_stdout)]

mod agent;
mod alerts;
mod baseline;
mod burst;
mod cli;
mod hub;
mod intermarket;
mod load;
mod national;
mod out;
mod soap;
mod suite;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

// As the `openmvs` command: the servers under measurement allocate as they do in production.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("openmvs-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the parsed command line.
fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::National { packs, seconds, clients, database_url, nodes } => {
            national::national(packs, seconds, clients, database_url.as_deref(), &nodes)
        }
        Command::Soap { packs, seconds, clients } => soap::soap(packs, seconds, clients),
        Command::Hub { serials, markets, database_url } => {
            hub::hub(serials, &markets, database_url.as_deref())
        }
        Command::Suite {
            sizes,
            seconds,
            connections,
            database_url,
            out,
            max_in_flight,
            upload_serials,
            smoke,
        } => {
            let from_env = std::env::var("OPENMVS_DATABASE_URL").ok().filter(|u| !u.is_empty());
            let mut opts = suite::Options {
                sizes,
                seconds,
                connections,
                database_url: database_url.or(from_env),
                out,
                max_in_flight,
                upload_serials,
                smoke,
            };
            if smoke {
                opts.sizes = vec![20_000];
                opts.seconds = opts.seconds.min(0.5);
                opts.connections = opts.connections.min(8);
                opts.upload_serials = opts.upload_serials.min(30_000);
            }
            suite::run(opts)
        }
        Command::Intermarket { requests, database_url } => {
            intermarket::intermarket(requests, database_url.as_deref())
        }
        Command::Agent { packs, concurrency, json } => agent::agent(packs, concurrency, json),
        Command::Burst {
            pharmacies,
            outage_hours,
            peak_rate,
            multiplier,
            before_seconds,
            concurrency,
            max_in_flight,
            client_rate,
            json,
        } => burst::burst(burst::Options {
            pharmacies,
            outage_hours,
            peak_rate,
            multiplier,
            before_seconds,
            concurrency,
            max_in_flight,
            client_rate,
            json,
        }),
        Command::Alerts { transactions, seed, markets, database_url, json, smoke } => {
            let markets = hub::parse_markets(&markets)?;
            alerts::alerts(alerts::Options { transactions, seed, markets, database_url, json, smoke })
        }
    }
}
