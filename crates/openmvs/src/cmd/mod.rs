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
use std::time::Duration;

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
        Command::Admin(a) => on_small_runtime(admin::run(a)),
        Command::Audit(a) => on_small_runtime(audit::run(a)),
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

/// Threads a server's runtime keeps for blocking work: every read of the embedded (SQLite) store
/// runs on one of these, on a read connection of its own. Bounded so that a burst of reads cannot
/// start hundreds of threads and connections (each with stacks, page caches and allocator heaps
/// of their own); reads past the bound wait for a thread, as they would for a pool connection.
/// PostgreSQL reads are plain async queries and need none.
const MAX_BLOCKING_THREADS: usize = 32;

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

/// The runtime of a node (national system, hub, demo, the servers of a bench).
pub(crate) fn server_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    // Every connection is an open file: take what the system allows (the connection limit is
    // then fitted below it).
    openmvs_http::server::raise_open_file_limit();
    tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .thread_keep_alive(Duration::from_secs(2))
        .enable_all()
        .build()
        .context("starting the runtime")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// However many blocking waits come at once, a node's runtime runs at most
    /// `MAX_BLOCKING_THREADS` of them on threads of their own; the rest wait their turn.
    #[test]
    fn a_server_runtime_bounds_its_blocking_threads() {
        let rt = super::server_runtime().unwrap();
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        rt.block_on(async {
            let waits: Vec<_> = (0..4 * super::MAX_BLOCKING_THREADS)
                .map(|_| {
                    let (running, most) = (running.clone(), most.clone());
                    tokio::task::spawn_blocking(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                })
                .collect();
            for w in waits {
                w.await.unwrap();
            }
        });
        let most = most.load(Ordering::SeqCst);
        assert!((2..=super::MAX_BLOCKING_THREADS).contains(&most), "{most} at once");
    }
}
