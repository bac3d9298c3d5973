//! The command line of `openmvs-bench`: one subcommand per measurement, with its flags.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// OpenMVS measured on this machine: the national system, the hub, inter-market verifies, the
/// whole suite against the machine's own limits, the false-alert rate of a generated market, and
/// offline agents replaying their backlogs.
#[derive(Debug, Parser)]
#[command(name = "openmvs-bench", version, about, long_about = None)]
pub struct Cli {
    /// What to measure.
    #[command(subcommand)]
    pub command: Command,
}

/// The measurements.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Everything measured in one run against the machine's own limits (an HTTPS hello-world and
    /// the raw database on the same data): verify at its maximum and at 80, 100 and 200 % of it
    /// (open loop), unknown serials, concurrent supplies, a pharmacy mix, a replay burst, ingest
    /// and bulk alone and under verifies, for each size; then per engine a streamed upload through
    /// the hub to DISTRIBUTED and inter-market against local verifies. On SQLite and (given a
    /// database) on PostgreSQL. Writes report.json and report.md.
    Suite {
        /// Packs seeded, one run per size (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "1000000,10000000")]
        sizes: Vec<u64>,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Connections of the load generator (each a keep-alive HTTPS connection).
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Also run on this PostgreSQL database (default: `OPENMVS_DATABASE_URL`).
        #[arg(long)]
        database_url: Option<String>,
        /// Where report.json and report.md go.
        #[arg(long, default_value = "bench-report")]
        out: PathBuf,
        /// The bound on requests in flight of the node under test (over it: 503 at once).
        #[arg(long, default_value_t = openmvs_http::shed::DEFAULT_MAX_IN_FLIGHT)]
        max_in_flight: usize,
        /// Serials of the streamed upload through the hub (one upload per engine).
        #[arg(long, default_value_t = 1_000_000)]
        upload_serials: u64,
        /// A run of seconds on small data, to check that the harness works (the test suite runs it);
        /// inter-market requests then get seconds, not the law's 300 ms, as speed is not judged.
        #[arg(long)]
        smoke: bool,
    },
    /// A market's pharmacies coming back together after an outage of their national system (in
    /// this process, SQLite, HTTP on 127.0.0.1, admitting requests as a node does by default):
    /// one offline agent per pharmacy, each holding the operations of the outage at the normal
    /// rate, all replaying from the same instant at `multiplier` times the normal peak, while live
    /// traffic runs at the peak. Drain time, refusals for load and their `Retry-After`, requests
    /// without an answer, live latency before and during the drain, alerts, and every operation
    /// applied exactly once. See BENCHMARKS.md.
    Burst {
        /// Pharmacies coming back, one agent (and one queue) each.
        #[arg(long, default_value_t = 200)]
        pharmacies: usize,
        /// Hours the national system was down: each pharmacy recorded 40 operations an hour.
        #[arg(long, default_value_t = 6.0)]
        outage_hours: f64,
        /// The market's normal peak in requests per second: the live traffic's rate.
        #[arg(long, default_value_t = 300.0)]
        peak_rate: f64,
        /// The replay's demand, in multiples of the peak (shared evenly by the agents).
        #[arg(long, default_value_t = 3.0)]
        multiplier: f64,
        /// Seconds of live traffic measured before the replay starts.
        #[arg(long, default_value_t = 10.0)]
        before_seconds: f64,
        /// Packs each agent replays at the same time (the agent's default: 4).
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// The national system's bound on requests in flight (over it: 503 at once), lowered by
        /// its governor while its workers are saturated, as a node's.
        #[arg(long, default_value_t = openmvs_http::shed::DEFAULT_MAX_IN_FLIGHT)]
        max_in_flight: usize,
        /// The national system's requests per second per client (twice as many at once; over
        /// it: 429), as a node's `client_rate_per_second`.
        #[arg(long, default_value_t = 100)]
        client_rate: u32,
        /// Print one JSON object instead of the sentences.
        #[arg(long)]
        json: bool,
    },
    /// The NMVS SOAP verify (G110, the login inside the envelope) against the JSON verify (bearer
    /// token), on one national system in this process on a fresh embedded store, over HTTPS with
    /// keep-alive: p50, p95, p99 and throughput of each, one client and many, in the same run.
    Soap {
        /// Packs to seed.
        #[arg(long, default_value_t = 100_000)]
        packs: u64,
        /// Seconds per scenario.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Concurrent clients in the concurrent scenarios.
        #[arg(long, default_value_t = 16)]
        clients: usize,
    },
    /// A national system in this process on a fresh embedded store, over HTTPS with keep-alive:
    /// durable supply rate with one client and with many, and verify latency.
    National {
        /// Packs to seed.
        #[arg(long, default_value_t = 200_000)]
        packs: u64,
        /// Seconds per scenario.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Concurrent clients in the concurrent scenarios.
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Also measure on this PostgreSQL database (default: `OPENMVS_DATABASE_URL`), with each
        /// number of nodes of `--nodes` sharing a schema made for the run and dropped after it.
        #[arg(long)]
        database_url: Option<String>,
        /// The numbers of nodes to run on PostgreSQL, comma-separated: the scale-out figures.
        #[arg(long, value_delimiter = ',', default_value = "1,2")]
        nodes: Vec<usize>,
    },
    /// The hub and one national system per market in this process on fresh stores, over HTTPS
    /// with mutual TLS: an OBP streams N serials as text/plain; time to the 202 (durable at the
    /// hub) and to DISTRIBUTED in every market, peak memory, packs at the national systems.
    Hub {
        /// Serials to upload (`S` and a zero-padded number each).
        #[arg(long, default_value_t = 1_000_000)]
        serials: u64,
        /// The markets of the batch, comma-separated.
        #[arg(long, default_value = "DE")]
        markets: String,
        /// Run on this PostgreSQL database instead of SQLite: a schema per national system and
        /// one for the hub, made for the run and dropped after it.
        #[arg(long)]
        database_url: Option<String>,
    },
    /// The hub and the national systems DE and FR in this process, wired over mutual TLS as the
    /// demo wires them, with a product sold only in FR uploaded through the OBP API: verify
    /// latency of one FR pharmacy verifying FR packs, and of one DE pharmacy verifying the same
    /// packs inter-market through the hub (fmd-rules §4.10); sequential, keep-alive.
    Intermarket {
        /// Measured requests per leg (after 100 warm-up requests).
        #[arg(long, default_value_t = 2000)]
        requests: u64,
        /// Run on this PostgreSQL database instead of SQLite: a schema per national system and
        /// one for the hub, made for the run and dropped after it.
        #[arg(long)]
        database_url: Option<String>,
    },
    /// The false-alert rate and the recall: a generated market (pharmacies, hospitals and
    /// wholesalers in each market scanning genuine packs with realistic corruption, double scans,
    /// retries after timeouts, replays after an outage, and a known set of true falsifications)
    /// runs against the hub and a national system per market in this process, over HTTPS with
    /// mutual TLS; alerts are counted from the answers and checked against each NMVO's list.
    /// See BENCHMARKS.md for the workload and the counting rules.
    Alerts {
        /// Transactions (distinct client_trx_ids) to generate.
        #[arg(long, default_value_t = 100_000)]
        transactions: u64,
        /// The workload's seed: the same seed gives the same workload, byte for byte.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The markets, comma-separated (at least two: cloned codes are dispensed in two).
        #[arg(long, default_value = "DE,FR")]
        markets: String,
        /// Run on this PostgreSQL database instead of SQLite: a schema per national system and
        /// one for the hub, made for the run and dropped after it.
        #[arg(long)]
        database_url: Option<String>,
        /// Print one JSON object instead of the report.
        #[arg(long)]
        json: bool,
        /// A small market (at most 2,000 transactions, 5 terminals per market) with every kind of
        /// step, to check that the harness works (the test suite runs it).
        #[arg(long)]
        smoke: bool,
    },
    /// An offline agent's replay against a national system in this process (SQLite, HTTP on
    /// 127.0.0.1): N supplies recorded while the system is stopped, then replayed (a verify, then
    /// the supply) as fast as the system answers; the operations replayed per second.
    Agent {
        /// Supplies recorded, one pack each.
        #[arg(long, default_value_t = 10_000)]
        packs: u64,
        /// Packs replayed at the same time.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Print one JSON object instead of the sentences.
        #[arg(long)]
        json: bool,
    },
}
