//! `openmvs-bench burst`: a market's pharmacies coming back together after an outage of their
//! national system. A national system of DE (SQLite, in this process, served over HTTP on
//! 127.0.0.1, admitting requests as a node does: the governed bound on requests in flight and the
//! per-client rate limit, at a node's defaults unless told otherwise) is stopped; one offline agent per pharmacy, each with its
//! own queue, records the operations the pharmacy makes in the outage at the normal rate
//! ([`openmvs_workload::PHARMACY_OPERATIONS_PER_HOUR`]); the system is started again, live
//! traffic (online pharmacies verifying and dispensing new packs) runs at the normal peak, and
//! then every agent starts its replay at the same instant, each at its share of `multiplier`
//! times the peak. The agents and the live traffic run on a runtime of their own (two threads),
//! so that the agents' queue commits do not take the server's workers.
//!
//! Printed: the backlog, the drain time, the refusals for load (429 and 503) and their peak per
//! second, whether each carried `Retry-After`, the requests left without an answer, the live
//! traffic's latency before and during the drain, the alerts the replay raised against those it
//! must raise, and whether every recorded operation was applied exactly once (the national
//! system's audit trail, read back). The run fails when one of those properties does not hold.

mod check;
mod live;
mod plan;
mod tally;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use openmvs_agent::drain::Round;
use openmvs_agent::upstream::{Reply, Upstream};
use openmvs_agent::{Agent, AgentConfig, PackAnswer};
use openmvs_core::pack::{Command, Operation};
use openmvs_core::roles::Role;
use openmvs_core::time::Clock;
use openmvs_http::agent_upstream::ClientUpstream;
use openmvs_http::limit::RateLimit;
use openmvs_http::shed::LoadShed;
use openmvs_national::clock::SystemClock;
use openmvs_testkit::{Admission, LocalNational, TempDir};
use openmvs_workload::PHARMACY_OPERATIONS_PER_HOUR;
use serde_json::json;

use self::live::Live;
use self::plan::{EXPIRY, GOOD_BATCH, Kind, Pack, RECALLED_BATCH};
use self::tally::{Counted, Tally};
use crate::out::outln;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Pharmacies coming back, one agent each.
    pub pharmacies: usize,
    /// Hours the national system was down.
    pub outage_hours: f64,
    /// The market's normal peak, in requests per second: the live traffic's rate.
    pub peak_rate: f64,
    /// The replay's demand, in multiples of the peak.
    pub multiplier: f64,
    /// Seconds of live traffic before the replay starts.
    pub before_seconds: f64,
    /// Packs each agent replays at the same time.
    pub concurrency: usize,
    /// The national system's bound on requests in flight.
    pub max_in_flight: usize,
    /// The national system's requests per second per client (twice as many at once).
    pub client_rate: u32,
    /// Print one JSON object instead of the sentences.
    pub json: bool,
}

impl Options {
    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.pharmacies >= 1, "--pharmacies: at least one");
        anyhow::ensure!(
            self.outage_hours.is_finite() && self.outage_hours > 0.0,
            "--outage-hours: a number of hours above zero"
        );
        anyhow::ensure!(
            self.peak_rate.is_finite() && self.peak_rate > 0.0,
            "--peak-rate: requests per second above zero"
        );
        anyhow::ensure!(self.multiplier.is_finite() && self.multiplier > 0.0, "--multiplier: above zero");
        anyhow::ensure!(
            self.before_seconds.is_finite() && self.before_seconds >= 0.0,
            "--before-seconds: zero or more"
        );
        anyhow::ensure!(self.concurrency >= 1, "--concurrency: at least one pack at a time");
        anyhow::ensure!(self.max_in_flight >= 1, "--max-in-flight: at least one request");
        anyhow::ensure!(self.client_rate >= 1, "--client-rate: at least one request a second");
        Ok(())
    }
}

/// Live pharmacies (online, not replaying).
const LIVE_PHARMACIES: usize = 8;
/// The longest the drain may take, in multiples of the time its demand asks for (and at least
/// ten minutes): beyond, the run fails as a replay that does not end.
const DRAIN_DEADLINE_FACTOR: f64 = 20.0;

/// Runs the burst and prints its figures.
pub fn burst(opts: Options) -> anyhow::Result<std::process::ExitCode> {
    opts.check()?;
    let rt = openmvs_node::server_runtime()?;
    // The pharmacies' side: agents and live traffic, on threads of their own.
    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("burst-clients")
        .enable_all()
        .build()
        .context("starting the clients' runtime")?;
    let failed = rt.block_on(run(&opts, clients.handle().clone()))?;
    drop(clients);
    if failed.is_empty() {
        Ok(std::process::ExitCode::SUCCESS)
    } else {
        eprintln!("openmvs-bench burst: {}", failed.join("; "));
        Ok(std::process::ExitCode::FAILURE)
    }
}

/// A node's admission (the governed bound, the per-client limit) with the options' figures.
fn admission(opts: &Options) -> Admission {
    let rate = f64::from(opts.client_rate);
    Admission {
        load: Arc::new(LoadShed::new(opts.max_in_flight)),
        per_client: RateLimit { per_second: rate, burst: 2.0 * rate },
    }
}

/// One pharmacy's agent and what it recorded.
struct Pharmacy {
    client_id: String,
    agent: Arc<Agent>,
    packs: Vec<Pack>,
}

fn upstream(
    url: &str,
    client: &openmvs_national::NewClient,
    timeout: Duration,
) -> anyhow::Result<ClientUpstream> {
    ClientUpstream::new(url, None, &client.client_id, &client.client_secret, timeout)
        .map_err(|e| anyhow::anyhow!(e))
}

/// Runs `f` on the clients' runtime and waits for it.
async fn on<T: Send + 'static>(
    clients: &tokio::runtime::Handle,
    f: impl Future<Output = anyhow::Result<T>> + Send + 'static,
) -> anyhow::Result<T> {
    clients.spawn(f).await.context("a task of the clients' runtime failed")?
}

async fn run(opts: &Options, clients: tokio::runtime::Handle) -> anyhow::Result<Vec<String>> {
    let dir = TempDir::new("bench-burst");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let per_pharmacy = ((opts.outage_hours * f64::from(PHARMACY_OPERATIONS_PER_HOUR)).round() as u64).max(1);
    let backlogs: Vec<Vec<Pack>> = (0..opts.pharmacies).map(|p| plan::backlog(p, per_pharmacy)).collect();
    let operations: u64 = backlogs.iter().flatten().map(|p| p.kind.commands().len() as u64).sum();
    let requests: u64 = backlogs.iter().flatten().map(|p| p.kind.audited().len() as u64).sum();
    let demand = opts.multiplier * opts.peak_rate;
    let agent_rate = demand / opts.pharmacies as f64;
    let expected_drain = requests as f64 / demand;
    // Fresh packs for the live traffic (a verify and a dispense each), for the run and a margin.
    let live_ops_rate = opts.peak_rate / 2.0;
    let pool = (live_ops_rate * (opts.before_seconds + 3.0 * expected_drain + 30.0)).ceil().min(5e6) as u64;

    eprintln!(
        "burst: {} pharmacies x {} operations recorded offline ({operations} in all, {requests} requests to replay); live pool of {pool} packs",
        opts.pharmacies, per_pharmacy
    );
    let mut national =
        LocalNational::start_with(&dir.path().join("national"), clock.clone(), admission(opts)).await?;
    let url = national.url();
    let mut good: Vec<String> = backlogs
        .iter()
        .flatten()
        .filter(|p| {
            matches!(p.kind, Kind::Supply | Kind::VerifyThenSupply | Kind::SupplyThenUndo | Kind::Elsewhere)
        })
        .map(|p| p.serial.clone())
        .collect();
    good.extend((0..pool).map(plan::live_serial));
    national.seed(GOOD_BATCH, EXPIRY, &good).await?;
    drop(good);
    let recalled: Vec<String> =
        backlogs.iter().flatten().filter(|p| p.kind == Kind::Recalled).map(|p| p.serial.clone()).collect();
    national.seed(RECALLED_BATCH, EXPIRY, &recalled).await?;
    national.recall(RECALLED_BATCH).await?;

    let mut live_clients = Vec::new();
    for k in 0..LIVE_PHARMACIES {
        live_clients.push(national.client(Role::Pharmacy, &format!("DE-PH-LIVE-{k:03}")).await?);
    }
    let mut pharmacy_clients = Vec::new();
    for p in 0..opts.pharmacies {
        pharmacy_clients.push(national.client(Role::Pharmacy, &format!("DE-PH-BURST-{p:05}")).await?);
    }
    let base = Instant::now();
    let agents_tally = Arc::new(Tally::new(base));
    let live_tally = Arc::new(Tally::new(base));
    let timeout = AgentConfig::new("", "", "").timeout;
    let mut live_links = Vec::new();
    for c in &live_clients {
        live_links.push(Counted::new(upstream(&url, c, timeout)?, live_tally.clone(), timeout));
    }
    let live = Arc::new(Live::new(live_links, pool, timeout));

    // Before the outage, live pharmacies dispense the packs the backlog's pharmacies will find
    // dispensed elsewhere (each logs in on the way).
    let elsewhere: Vec<Pack> =
        backlogs.iter().flatten().filter(|p| p.kind == Kind::Elsewhere).cloned().collect();
    {
        let live = live.clone();
        on(&clients, async move {
            live.log_in().await?;
            for (i, p) in elsewhere.iter().enumerate() {
                let mut body = p.request(usize::MAX, 0);
                body.client_trx_id = Some(format!("BEFORE-{i}"));
                match live.link(i).pack(Command::Set(Operation::Supply), &body).await {
                    Reply::Answered(a) if a.accepted => {}
                    other => anyhow::bail!("dispensing {} before the outage: {other:?}", p.serial),
                }
            }
            Ok(())
        })
        .await?;
    }

    let mut pharmacies = Vec::new();
    for ((p, client), packs) in pharmacy_clients.iter().enumerate().zip(backlogs) {
        let link = Arc::new(Counted::new(upstream(&url, client, timeout)?, agents_tally.clone(), timeout));
        let mut config = AgentConfig::new(&url, &client.client_id, &client.client_secret);
        config.rate_per_second = agent_rate;
        config.burst = agent_rate.ceil().max(1.0) as u32;
        config.concurrency = opts.concurrency;
        let link: Arc<dyn Upstream> = link;
        let agent = Agent::open(config, &dir.path().join(format!("agent-{p}")), link, clock.clone())?;
        pharmacies.push(Pharmacy { client_id: client.client_id.clone(), agent: Arc::new(agent), packs });
    }
    let retry = AgentConfig::new("", "", "").retry;

    // The outage: every pharmacy records its operations, the pharmacies side by side.
    eprintln!("burst: the national system is down; the agents record ...");
    national.stop().await;
    let recording = Instant::now();
    let mut tasks = Vec::new();
    for (p, ph) in pharmacies.iter().enumerate() {
        let (agent, packs) = (ph.agent.clone(), ph.packs.clone());
        tasks.push(clients.spawn(async move {
            for pack in &packs {
                for (k, command) in pack.kind.commands().into_iter().enumerate() {
                    match agent.pack(command, pack.request(p, k)).await? {
                        PackAnswer::Recorded(_) => {}
                        other => anyhow::bail!("{} was not recorded: {other:?}", pack.serial),
                    }
                }
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await.context("a recording task failed")??;
    }
    let recorded_in = recording.elapsed();
    // Each agent waits out the backoff of its first failed attempt (at most twice `retry`) before
    // it sends again: the replay starts once every agent may send, so all start together.
    let free = recording + 2 * retry + Duration::from_millis(100);
    tokio::time::sleep(free.saturating_duration_since(Instant::now())).await;

    // The system is back: live traffic first, then every agent at the same instant.
    eprintln!(
        "burst: recorded in {:.1} s; the national system is back, live traffic for {} s, then the replay ...",
        recorded_in.as_secs_f64(),
        opts.before_seconds
    );
    national.restart()?;
    live.set_phase(live::BEFORE);
    agents_tally.reset();
    live_tally.reset();
    let scheduler = clients.spawn(live.clone().run(opts.peak_rate));
    tokio::time::sleep(Duration::from_secs_f64(opts.before_seconds)).await;
    let (go, ready) = tokio::sync::watch::channel(false);
    let mut drains = Vec::new();
    for ph in &pharmacies {
        let (agent, clock, mut ready) = (ph.agent.clone(), clock.clone(), ready.clone());
        drains.push(clients.spawn(async move {
            let _ = ready.wait_for(|go| *go).await;
            loop {
                match agent.drain_round().await? {
                    Round::Idle => break,
                    Round::Worked(_) => {}
                    Round::Wait(until) => tokio::time::sleep(until.since(clock.now())).await,
                }
            }
            anyhow::Ok(Instant::now())
        }));
    }
    drop(ready);
    let shed_before = national.load().shed_total();
    live.set_phase(live::DURING);
    let started = Instant::now();
    let _ = go.send(true);
    let progress = {
        let (agents, tally, live) = (
            pharmacies.iter().map(|ph| ph.agent.clone()).collect::<Vec<_>>(),
            agents_tally.clone(),
            live_tally.clone(),
        );
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let left: u64 = agents.iter().filter_map(|a| a.figures().ok()).map(|f| f.queue_length).sum();
                eprintln!(
                    "burst: {:.0} s: {left} operations left; replay {}; live {}",
                    started.elapsed().as_secs_f64(),
                    tally.summary(),
                    live.summary()
                );
            }
        })
    };
    let deadline = Duration::from_secs_f64((expected_drain * DRAIN_DEADLINE_FACTOR).max(600.0));
    let mut last = started;
    let mut unfinished = 0;
    for d in drains {
        match tokio::time::timeout(deadline.saturating_sub(started.elapsed()), d).await {
            Ok(done) => last = last.max(done.context("a replay task failed")??),
            Err(_) => unfinished += 1,
        }
    }
    let drain = last.duration_since(started);
    progress.abort();
    eprintln!(
        "burst: the replay ended after {:.1} s; reading the national system's trail ...",
        drain.as_secs_f64()
    );
    live.set_phase(live::AFTER);
    scheduler.await.context("the live traffic failed")?;
    let shed_by_node = national.load().shed_total() - shed_before;

    let mut queue_left = 0;
    let (mut recorded, mut replayed) = (0, 0);
    for ph in &pharmacies {
        let f = ph.agent.figures()?;
        queue_left += f.queue_length;
        recorded += f.recorded;
        replayed += f.replayed;
    }
    let backlogs: Vec<(String, Vec<Pack>)> =
        pharmacies.iter().map(|ph| (ph.client_id.clone(), ph.packs.clone())).collect();
    let applied = check::check(&national.db_path(), &backlogs)?;

    let shed_seconds: Vec<u64> = {
        let (a, l) = (agents_tally.shed_per_second(), live_tally.shed_per_second());
        (0..a.len().max(l.len())).map(|i| a.get(i).unwrap_or(&0) + l.get(i).unwrap_or(&0)).collect()
    };
    let peak_shed = shed_seconds.iter().copied().max().unwrap_or(0);
    let shed = agents_tally.shed() + live_tally.shed();
    let without_retry_after = agents_tally.without_retry_after.load(Ordering::Relaxed)
        + live_tally.without_retry_after.load(Ordering::Relaxed);
    let timeouts =
        agents_tally.timeouts.load(Ordering::Relaxed) + live_tally.timeouts.load(Ordering::Relaxed);
    let unanswered = agents_tally.unanswered() + live_tally.unanswered();
    let timeouts_first = agents_tally.timeouts_first.load(Ordering::Relaxed)
        + live_tally.timeouts_first.load(Ordering::Relaxed);
    let (before, during) = (live.figures(live::BEFORE), live.figures(live::DURING));
    let sent = agents_tally.sent.load(Ordering::Relaxed);
    let drain_s = drain.as_secs_f64();

    let mut failed = Vec::new();
    if unfinished > 0 || queue_left > 0 || replayed != recorded {
        failed.push(format!(
            "the backlog was not drained: {unfinished} agents unfinished, {queue_left} operations left, {replayed} of {recorded} replayed"
        ));
    }
    if applied.wrong_packs > 0 || applied.applied_once != operations {
        failed.push(format!(
            "{} of {operations} operations applied exactly once; packs not as recorded: {:?}",
            applied.applied_once, applied.wrong
        ));
    }
    if applied.false_alerts_replay > 0 || applied.false_alerts_other > 0 {
        failed.push(format!(
            "false alerts: {} from the replay, {} on other packs",
            applied.false_alerts_replay, applied.false_alerts_other
        ));
    }
    if applied.alerts_true != applied.alerts_expected || applied.alerts_by_replay != applied.alerts_expected {
        failed.push(format!(
            "the replay raised {} alerts ({} expected ones) where {} are expected",
            applied.alerts_by_replay, applied.alerts_true, applied.alerts_expected
        ));
    }
    if without_retry_after > 0 {
        failed.push(format!("{without_retry_after} of {shed} refusals for load carried no Retry-After"));
    }
    if unanswered > 0 {
        let mut why = agents_tally.failures.lock().unwrap_or_else(|p| p.into_inner()).clone();
        why.extend(live_tally.failures.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned());
        failed.push(format!("{unanswered} requests got no answer ({timeouts} timed out): {why:?}"));
    }

    if opts.json {
        outln!(
            "{}",
            json!({
                "pharmacies": opts.pharmacies, "outage_hours": opts.outage_hours,
                "operations_per_pharmacy_hour": PHARMACY_OPERATIONS_PER_HOUR,
                "peak_rate": opts.peak_rate, "multiplier": opts.multiplier, "concurrency": opts.concurrency,
                "max_in_flight": opts.max_in_flight, "client_rate": opts.client_rate,
                "replay_rate_per_pharmacy": agent_rate,
                "backlog_operations": operations, "backlog_requests": requests,
                "record_seconds": recorded_in.as_secs_f64(),
                "drain_seconds": drain_s, "drained": unfinished == 0 && queue_left == 0,
                "queue_left": queue_left, "recorded": recorded, "replayed": replayed,
                "replay_requests_sent": sent,
                "replay_requests_per_second": sent as f64 / drain_s.max(1e-9),
                "shed": shed, "shed_429": agents_tally.limited.load(Ordering::Relaxed) + live_tally.limited.load(Ordering::Relaxed),
                "shed_503": agents_tally.unavailable.load(Ordering::Relaxed) + live_tally.unavailable.load(Ordering::Relaxed),
                "shed_by_node": shed_by_node,
                "peak_shed_per_second": peak_shed,
                "shed_with_retry_after": shed - without_retry_after,
                "client_timeouts": timeouts, "client_timeouts_before_a_first_answer": timeouts_first,
                "unanswered": unanswered,
                "live_before": before.json(), "live_during": during.json(),
                "alerts_expected": applied.alerts_expected, "alerts_by_replay": applied.alerts_by_replay,
                "false_alerts_replay": applied.false_alerts_replay, "false_alerts_other": applied.false_alerts_other,
                "operations_applied_once": applied.applied_once, "packs_not_as_recorded": applied.wrong_packs,
                "answered_from_idempotency_record": applied.answered_again,
                "failed": failed,
            })
        );
    } else {
        outln!(
            "backlog: {} pharmacies x {} h x {PHARMACY_OPERATIONS_PER_HOUR} operations an hour = {operations} operations ({requests} requests with the verifies before dispenses), recorded offline in {:.1} s",
            opts.pharmacies,
            opts.outage_hours,
            recorded_in.as_secs_f64()
        );
        outln!(
            "replay: every agent from the same instant at {agent_rate:.2} requests/s ({} x the peak of {} requests/s)",
            opts.multiplier,
            opts.peak_rate
        );
        outln!(
            "drain time: {drain_s:.1} s ({} requests sent, {:.0} per second; {queue_left} operations left)",
            sent,
            sent as f64 / drain_s.max(1e-9)
        );
        outln!(
            "shed: {shed} answers (429: {}, 503: {}), peak {peak_shed} per second; with Retry-After: {} of {shed}",
            agents_tally.limited.load(Ordering::Relaxed) + live_tally.limited.load(Ordering::Relaxed),
            agents_tally.unavailable.load(Ordering::Relaxed) + live_tally.unavailable.load(Ordering::Relaxed),
            shed - without_retry_after
        );
        outln!(
            "client-side timeouts: {timeouts} ({timeouts_first} of a pharmacy before its first answer, its login included); requests without an answer: {unanswered}"
        );
        outln!("live traffic at {} requests/s before the drain: {}", opts.peak_rate, before.sentence());
        outln!("live traffic during the drain: {}", during.sentence());
        outln!(
            "alerts by the replay: {} ({} expected); false alerts: {} from the replay, {} elsewhere",
            applied.alerts_by_replay,
            applied.alerts_expected,
            applied.false_alerts_replay,
            applied.false_alerts_other
        );
        outln!(
            "applied exactly once: {} of {operations} operations ({} packs not as recorded; {} requests sent again answered from the idempotency record)",
            applied.applied_once,
            applied.wrong_packs,
            applied.answered_again
        );
    }
    drop(pharmacies);
    national.close().await;
    Ok(failed)
}
