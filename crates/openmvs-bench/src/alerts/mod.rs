//! `openmvs-bench alerts`: the false-alert rate and the recall, measured. A generated market
//! workload (`openmvs-workload`: pharmacies, hospitals and wholesalers scanning genuine packs
//! with realistic corruption, double scans, retries after timeouts, replays after an outage, and
//! a known set of true falsifications) runs against the real systems: the hub and a national
//! system per market in this process, over HTTPS with mutual TLS as the demo wires them, on
//! SQLite or PostgreSQL. Every terminal is a client of its national system on a connection of its
//! own; the terminals run side by side on the client runtime. The alerts are counted from the
//! answers' `alert` field and cross-checked against each NMVO's `GET /v1/alerts` once the outboxes
//! have drained; `openmvs_workload::tally` counts them and states the counting rules, `report`
//! prints the figures.
//!
//! Inter-market requests get seconds rather than the law's 300 ms here: this measures which
//! alerts are raised, not how fast, and a busy machine must not turn a clone into a timeout.

mod report;
mod setup;
mod sync;
mod terminal;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use openmvs_core::ids::MarketCode;
use openmvs_core::time::Clock;
use openmvs_national::clock::SystemClock;
use openmvs_workload::tally::{self, Figures};
use openmvs_workload::{Config, Workload, generate};
use tokio::sync::Barrier;

use crate::hub::{self as bench_hub, Deadlines, Running, Wiring};
use crate::load;
use crate::out::outln;
use report::Run;

/// Transactions of a `--smoke` run at most.
pub(crate) const SMOKE_TRANSACTIONS: u64 = 2_000;
/// How long the outboxes may take to drain after the steps (generous: a slow machine is slow).
const DRAIN_DEADLINE: Duration = Duration::from_secs(1200);
/// How often the outboxes are looked at, and progress printed.
const DRAIN_POLL: Duration = Duration::from_millis(100);
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// What `openmvs-bench alerts` was asked.
pub(crate) struct Options {
    pub transactions: u64,
    pub seed: u64,
    pub markets: Vec<MarketCode>,
    pub database_url: Option<String>,
    pub json: bool,
    pub smoke: bool,
}

/// `openmvs-bench alerts`.
pub(crate) fn alerts(opts: Options) -> anyhow::Result<ExitCode> {
    openmvs_node::init_tracing("warn");
    let year = SystemClock.now().date().year();
    // Batches expire from next year on: none has expired while the workload runs.
    let first_expiry_year = u16::try_from(year + 1).context("the year")?;
    let config = if opts.smoke {
        Config::small(opts.seed, opts.transactions.min(SMOKE_TRANSACTIONS), opts.markets, first_expiry_year)
    } else {
        Config::new(opts.seed, opts.transactions, opts.markets, first_expiry_year)
    };
    let w = generate(&config).map_err(|e| anyhow::anyhow!("--{}: {}", e.field.replace('_', "-"), e.rule))?;
    eprintln!(
        "openmvs-bench alerts: {} transactions, {} requests, {} steps, {} terminals, {} packs uploaded (seed {}, workload {:016x})",
        w.transactions(),
        w.requests(),
        w.steps.len(),
        w.terminals.len(),
        w.products.iter().flat_map(|p| &p.batches).map(|b| b.serials.len()).sum::<usize>(),
        w.seed,
        w.fingerprint()
    );
    let (figures, run, sync) = measure(w, opts.database_url.as_deref())?;
    if opts.json {
        let mut v = report::json(&figures, &run);
        v["status_sync"] = sync.json();
        outln!("{v}");
    } else {
        report::print(&figures, &run);
        sync.print();
    }
    if figures.errors > 0 {
        eprintln!("openmvs-bench alerts: {} errors, the first: {:?}", figures.errors, figures.first_errors);
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `w` against fresh systems in a fresh directory (removed afterwards), counts, and then
/// times status changes of the alerts raised on their way to the other side.
fn measure(w: Workload, database_url: Option<&str>) -> anyhow::Result<(Figures, Run, sync::SyncFigures)> {
    bench_hub::in_a_world("alerts", "terminals", |dir, client_rt| async move {
        run(&dir, w, client_rt, database_url).await
    })
}

async fn run(
    dir: &std::path::Path,
    w: Workload,
    client_rt: tokio::runtime::Handle,
    database_url: Option<&str>,
) -> anyhow::Result<(Figures, Run, sync::SyncFigures)> {
    let markets = w.markets.clone();
    let pki = bench_hub::pki(dir, &markets)?;
    let (hub_addr, running) =
        bench_hub::start(dir, &markets, &pki, Wiring::Demo(Deadlines::generous()), database_url).await?;
    let outcome = async {
        let w = Arc::new(w);
        let setup_started = Instant::now();
        let obp_tls = bench_hub::client_tls(&pki)?;
        let catalogue = w.clone();
        client_rt
            .spawn(async move { setup::catalogue(hub_addr, obp_tls, catalogue).await })
            .await
            .context("the OBP client panicked")?
            .context("uploading the catalogue")?;
        let (clients, nmvos) = setup::clients(&running, &w).await?;
        let setup_seconds = setup_started.elapsed().as_secs_f64();

        let tls = load::tls(&pki.ca_der)?;
        let addrs: BTreeMap<MarketCode, std::net::SocketAddr> =
            running.nationals.iter().map(|(m, (_, a))| (*m, *a)).collect();
        let barrier = Arc::new(Barrier::new(w.terminals.len()));
        let done = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let progress = client_rt.spawn(progress(done.clone(), w.requests()));
        let mut tasks = Vec::new();
        for (i, (t, client)) in w.terminals.iter().zip(clients).enumerate() {
            let addr = *addrs.get(&t.market).with_context(|| format!("no national system {}", t.market))?;
            tasks.push(client_rt.spawn(terminal::run(
                w.clone(),
                i,
                addr,
                tls.clone(),
                client,
                barrier.clone(),
                done.clone(),
            )));
        }
        let mut answers = Vec::new();
        for t in tasks {
            answers.extend(t.await.context("a terminal panicked")?);
        }
        let seconds = started.elapsed().as_secs_f64();
        progress.abort();
        let drain_started = Instant::now();
        let outboxes_drained = drained(&running).await;
        let drain_seconds = drain_started.elapsed().as_secs_f64();
        if !outboxes_drained {
            eprintln!("openmvs-bench alerts: the outboxes had not drained after {DRAIN_DEADLINE:?}");
        }
        let listed = client_rt
            .spawn(setup::list_alerts(addrs.clone(), nmvos.clone(), tls.clone()))
            .await
            .context("the NMVO client panicked")?
            .context("listing the alerts as the NMVOs")?;
        let figures = tally::tally(&w, &answers, &listed);
        let obp_tls = bench_hub::client_tls(&pki)?;
        let sync = sync::measure(&running, &listed, &nmvos, &addrs, tls, hub_addr, obp_tls)
            .await
            .context("timing status changes")?;
        let run = Run {
            seed: w.seed,
            engine: if database_url.is_some() { "postgres" } else { "sqlite" },
            markets: markets.iter().map(|m| m.as_str().to_owned()).collect(),
            terminals: w.terminals.len(),
            seconds,
            setup_seconds,
            outboxes_drained,
            drain_seconds,
            build: if cfg!(debug_assertions) { "debug" } else { "release" },
            fingerprint: w.fingerprint(),
        };
        Ok((figures, run, sync))
    }
    .await;
    running.stop().await;
    outcome
}

/// Waits until no outbox holds a message (every state change has reached the other markets and
/// every alert the hub), seen twice in a row; false when that does not happen in time.
async fn drained(running: &Running) -> bool {
    let started = Instant::now();
    let mut quiet = 0;
    while started.elapsed() < DRAIN_DEADLINE {
        let mut pending = 0;
        for (national, _) in running.nationals.values() {
            pending += national.outbox_pending().await.unwrap_or(1);
        }
        if let Some(hub) = &running.hub {
            pending += hub.outbox_pending().await.unwrap_or(1);
        }
        quiet = if pending == 0 { quiet + 1 } else { 0 };
        if quiet >= 2 {
            return true;
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
    false
}

/// Prints the requests made every few seconds, on standard error.
async fn progress(done: Arc<AtomicU64>, total: u64) {
    let started = Instant::now();
    loop {
        tokio::time::sleep(PROGRESS_EVERY).await;
        let n = done.load(Ordering::Relaxed);
        eprintln!(
            "openmvs-bench alerts: {n} of {total} requests, {:.0}/s",
            n as f64 / started.elapsed().as_secs_f64()
        );
    }
}
