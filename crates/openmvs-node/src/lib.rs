//! Wiring a node from its data directory: the storage engine it runs on (the only place that
//! chooses one), its audit signing key and head file, the market the directory belongs to, the
//! hub's serial key and CRL, and the runtime and log every node runs with. Shared by the
//! `openmvs` command (serve, demo, admin, audit), the benchmark and the tests.

pub mod heads;
pub mod hub;
pub mod national;
pub mod out;

use std::path::Path;
use std::time::Duration;

/// Where a national system keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// The embedded store in the data directory.
    Sqlite,
    /// A PostgreSQL schema, which several nodes may share.
    Postgres {
        /// The database URL.
        url: String,
        /// The schema.
        schema: String,
        /// Shared read connections per node.
        pool: usize,
        /// How long a request waits for the database to confirm its commit before it is
        /// answered 503 (outcome unknown: sent again with its `client_trx_id`, it is answered
        /// once).
        commit_timeout: Duration,
    },
}

/// A database URL with its password replaced, for printing.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// What to say about a data directory whose database cannot be opened: whether the directory is
/// read-only. A database that served reads before keeps its WAL index (`*.db-shm`) beside it, and
/// a node then starts on a read-only directory with readiness false and becomes ready by itself
/// once it can write; without that file SQLite cannot even read the database.
pub fn open_failure_hint(dir: &Path) -> String {
    #[cfg(unix)]
    {
        match rustix::fs::access(dir, rustix::fs::Access::WRITE_OK) {
            Ok(()) => String::new(),
            Err(e) => format!(
                " ({} cannot be written: {e}; make it writable, the node needs to write its database there)",
                dir.display()
            ),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        String::new()
    }
}

/// Threads a server's runtime keeps for blocking work. Storage reads do not use them (SQLite reads
/// run on the store's own reader threads, PostgreSQL reads are async queries); what does is the
/// password hash of each token request (Argon2, tens of milliseconds of CPU and 19 MiB each), so
/// the bound is what keeps a burst of logins from holding gigabytes: hashes past it wait their turn.
pub const MAX_BLOCKING_THREADS: usize = 8;

/// The runtime of a node (national system, hub, demo, the servers of a bench).
pub fn server_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
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

/// Sends the log to stderr, filtered by `OPENMVS_LOG` or else by `filter`.
pub fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OPENMVS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Condvar, Mutex};
    use std::time::Duration;

    /// However many blocking waits come at once, a node's runtime runs at most
    /// `MAX_BLOCKING_THREADS` of them on threads of their own; the rest wait their turn.
    #[test]
    fn a_server_runtime_bounds_its_blocking_threads() {
        let rt = super::server_runtime().unwrap();
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        // Each wait holds its thread until the bound's worth of them run at once (or 30 s passed,
        // should fewer ever run together).
        let full = Arc::new((Mutex::new(false), Condvar::new()));
        rt.block_on(async {
            let waits: Vec<_> = (0..4 * super::MAX_BLOCKING_THREADS)
                .map(|_| {
                    let (running, most, full) = (running.clone(), most.clone(), full.clone());
                    tokio::task::spawn_blocking(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        let (reached, changed) = &*full;
                        let mut reached = reached.lock().unwrap();
                        if now >= super::MAX_BLOCKING_THREADS {
                            *reached = true;
                            changed.notify_all();
                        }
                        let _held =
                            changed.wait_timeout_while(reached, Duration::from_secs(30), |r| !*r).unwrap();
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
