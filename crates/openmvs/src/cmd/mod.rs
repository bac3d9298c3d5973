//! One module per subcommand; `run` dispatches.

mod admin;
mod agent;
mod audit;
mod backup;
mod demo;
mod incident;
mod pack;
mod return_codes;
mod scan;
mod serve;
mod serve_hub;
mod sim;

use std::process::ExitCode;

use crate::cli::{Cli, Command, ConfigCommand, Serve};
use openmvs_client::PackOperation;
use openmvs_national::clock::SystemClock;
use pack::Operation;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Scan { input, today } => scan::run(&input, today.as_deref(), &SystemClock),
        Command::ReturnCodes => return_codes::run(),
        Command::Verify(a) => pack::run(Operation::Pack(PackOperation::Verify), a, &SystemClock),
        Command::Supply(a) => pack::run(Operation::Pack(PackOperation::Supply), a, &SystemClock),
        Command::Destroy(a) => pack::run(Operation::Pack(PackOperation::Destroy), a, &SystemClock),
        Command::Export(a) => pack::run(Operation::Pack(PackOperation::Export), a, &SystemClock),
        Command::Sample(a) => pack::run(Operation::Pack(PackOperation::Sample), a, &SystemClock),
        Command::FreeSample(a) => pack::run(Operation::Pack(PackOperation::FreeSample), a, &SystemClock),
        Command::Lock(a) => pack::run(Operation::Pack(PackOperation::Lock), a, &SystemClock),
        Command::Stolen(a) => pack::run(Operation::Pack(PackOperation::Stolen), a, &SystemClock),
        Command::Undo { operation, pack } => pack::run(Operation::Undo(operation.into()), pack, &SystemClock),
        Command::Serve(Serve::National { config }) => serve::national(&config),
        Command::Serve(Serve::Hub { config }) => serve_hub::hub(&config),
        Command::Agent { config } => agent::run(&config),
        Command::Demo { data_dir, port_base, markets, fake_clock, storage, database_url, schema_prefix } => {
            let storage = demo::DemoStorage::parse(&storage, database_url.as_deref(), &schema_prefix)?;
            demo::run(&data_dir, port_base, &markets, fake_clock, storage)
        }
        Command::Config(ConfigCommand::Check { config }) => serve::check(&config),
        Command::Admin(a) => on_small_runtime(admin::run(a)),
        Command::Audit(a) => on_small_runtime(audit::run(a)),
        Command::Migrate { target } => audit::migrate(&target),
        Command::Sim { seed, steps, count, threads, json } => sim::run(seed, steps, count, threads, json),
    }
}

/// Runs a command that opens a store, reads or writes a little and closes it, on a runtime of
/// one thread: the store's connections and writer run on it while the command lasts.
fn on_small_runtime<T>(command: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    use anyhow::Context;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(command)
}
