//! The deterministic simulation of a whole OpenMVS deployment, driven by one seed.
//!
//! A hub, three national systems, the OBP that owns every product and the terminals of a
//! generated market workload (`openmvs-workload`, the workload of `openmvs-bench alerts`) run in
//! one thread, on the in-memory engine, with one fake clock. The processes are the production
//! services (`openmvs_national::National`, `openmvs_hub::Hub`) with their relays, inbound
//! handlers, inter-market routing and callbacks; only the ports between them are simulated
//! (`world.rs`): every call meets a fate drawn from the seed (`net.rs`). A schedule
//! (`schedule.rs`) runs a number of steps drawn from the seed, heals, and checks the invariants
//! (`check.rs`). The same seed gives the same trace, byte for byte: the only randomness is the
//! seed's (the ids the services make draw from it too, `openmvs_store::entropy`), nothing reads
//! the wall clock, and one thread runs everything.
//!
//! What a kill loses: a process's memory (its caches, counters, remembered logins, the claims its
//! relay was sending, a request it was deciding). The in-memory store is its disk: a unit of work
//! is either committed whole before its answer or not at all, as every engine promises, so a kill
//! after a commit and before the answer is a lost answer, and a kill in a relay's send leaves its
//! claim in the outbox, as a SIGKILL leaves them in SQLite or PostgreSQL.

mod check;
mod net;
mod schedule;
mod terminals;
mod world;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openmvs_core::ids::MarketCode;
use openmvs_core::time::{Date, Timestamp};
use openmvs_national::clock::FakeClock;
use openmvs_workload::tally::{Figures, tally};
use openmvs_workload::{Config, Rng, generate};

pub use net::{Fate, Part, Profile};
pub use schedule::{HEAL_BOUND, HEAL_ROUNDS, HEAL_TICK};

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The seed: everything else follows from it.
    pub seed: u64,
    /// Steps before the network heals.
    pub steps: u64,
}

/// What one schedule did and found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Steps run before the heal.
    pub steps: u64,
    /// The fault intensity the seed drew (0 calm to 4 stormy).
    pub level: u64,
    /// The trace: one line per event, the same for the same seed.
    pub trace: Vec<String>,
    /// Faults injected, by kind (network fates, partitions, crashes).
    pub faults: BTreeMap<String, u64>,
    /// Processes killed, by part.
    pub kills: BTreeMap<String, u64>,
    /// Actions taken, by kind.
    pub actions: BTreeMap<String, u64>,
    /// Invariants broken: empty when the schedule passed.
    pub violations: Vec<String>,
    /// Dead letters, each with its cause.
    pub dead_letters: Vec<String>,
    /// The alert figures of the workload (false alerts, recall) under these faults.
    pub figures: Figures,
    /// Relay rounds and virtual time from the heal until every outbox was empty.
    pub heal_rounds: u64,
    /// See `heal_rounds`.
    pub heal_time: Duration,
}

impl Report {
    /// Whether every invariant held.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The command that runs this schedule again.
    pub fn command(&self) -> String {
        format!("openmvs sim --seed {} --steps {}", self.seed, self.steps)
    }
}

/// The markets of every schedule.
pub const MARKETS: [&str; 3] = ["DE", "FR", "AT"];
/// The workload's transactions per step.
const TRANSACTIONS_PER_STEP: f64 = 0.3;

/// The clock's start: 2027-03-01T08:00:00Z (batches expire from 2028 on).
fn start() -> Timestamp {
    Timestamp::start_of(Date::new(2027, 3, 1).expect("a valid date")).plus(Duration::from_secs(8 * 3600))
}

/// Runs one schedule on this thread (with a runtime of its own) and checks it.
pub fn run(opts: &Options) -> Report {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build();
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            return Report {
                seed: opts.seed,
                violations: vec![format!("no runtime: {e}")],
                ..Report::default()
            };
        }
    };
    openmvs_store::entropy::seed_this_thread(Some(opts.seed ^ 0x05EE_D1D5));
    let report = rt.block_on(run_async(opts));
    openmvs_store::entropy::seed_this_thread(None);
    report
}

async fn run_async(opts: &Options) -> Report {
    let mut report = Report { seed: opts.seed, steps: opts.steps, ..Report::default() };
    match schedule_and_check(opts, &mut report).await {
        Ok(()) => {}
        Err(e) => report.violations.push(format!("the schedule could not go on: {e}")),
    }
    report
}

async fn schedule_and_check(opts: &Options, report: &mut Report) -> Result<(), String> {
    let mut rng = Rng::new(opts.seed);
    let markets: Vec<MarketCode> =
        MARKETS.iter().map(|m| MarketCode::new(m).map_err(|e| e.to_string())).collect::<Result<_, _>>()?;
    let transactions = ((opts.steps as f64 * TRANSACTIONS_PER_STEP) as u64).max(20);
    let config = Config::small(rng.next_u64(), transactions, markets, 2028);
    let w = generate(&config).map_err(|e| format!("the workload: {e}"))?;
    report.level = rng.below(5);
    let profile = Profile::of_level(report.level);
    let clock = Arc::new(FakeClock::at(start()));
    let mut sim = schedule::Sim::new(w, clock, rng.fork(), profile).await?;
    let outcome = async {
        sim.run(opts.steps).await?;
        sim.heal().await
    }
    .await;
    let found = match outcome {
        Ok(()) => Some(check::check(&sim).await?),
        Err(e) => {
            sim.violations.push(format!("step {}: {e}", sim.step));
            None
        }
    };
    report.violations.append(&mut sim.violations);
    if let Some(found) = found {
        report.violations.extend(found.violations);
        report.dead_letters = found.dead_letters;
        report.figures = tally(&sim.w, &sim.tally_answers(), &found.listed);
    }
    report.trace = std::mem::take(&mut *world_trace(&sim));
    let net = world::lock(&sim.world.shared.net);
    report.faults = net.faults.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
    report.kills = sim.kills.clone();
    report.actions = sim.actions.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
    (report.heal_rounds, report.heal_time) = sim.heal;
    Ok(())
}

fn world_trace(sim: &schedule::Sim) -> std::sync::MutexGuard<'_, Vec<String>> {
    world::lock(&sim.world.shared.trace)
}

/// What many schedules did and found, summed.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Schedules run.
    pub schedules: u64,
    /// Steps run, all schedules.
    pub steps: u64,
    /// Faults injected, by kind.
    pub faults: BTreeMap<String, u64>,
    /// Processes killed, by part.
    pub kills: BTreeMap<String, u64>,
    /// The schedules that broke an invariant: the command that runs each again, and what broke.
    pub failed: Vec<(String, Vec<String>)>,
    /// Dead letters, all schedules.
    pub dead_letters: u64,
    /// Workload transactions, all schedules.
    pub transactions: u64,
    /// False alerts, all schedules.
    pub false_alerts: u64,
    /// True falsifications, all schedules.
    pub true_falsifications: u64,
    /// Of those, detected.
    pub detected: u64,
    /// Per kind of falsification: (events, detected).
    pub by_kind: BTreeMap<String, (u64, u64)>,
    /// Requests the tally counted as failures of the run.
    pub errors: u64,
    /// The most relay rounds a heal took, and the longest virtual time.
    pub heal_rounds_max: u64,
    /// See `heal_rounds_max`.
    pub heal_time_max: Duration,
}

impl Summary {
    fn add(&mut self, r: &Report) {
        self.schedules += 1;
        self.steps += r.steps;
        for (k, v) in &r.faults {
            *self.faults.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &r.kills {
            *self.kills.entry(k.clone()).or_default() += v;
        }
        if !r.passed() {
            self.failed.push((r.command(), r.violations.clone()));
        }
        self.dead_letters += r.dead_letters.len() as u64;
        self.transactions += r.figures.transactions;
        self.false_alerts += r.figures.false_alerts;
        self.true_falsifications += r.figures.true_falsifications;
        self.detected += r.figures.detected;
        for (kind, k) in &r.figures.falsifications {
            let e = self.by_kind.entry(kind.clone()).or_default();
            e.0 += k.events;
            e.1 += k.detected;
        }
        self.errors += r.figures.errors;
        self.heal_rounds_max = self.heal_rounds_max.max(r.heal_rounds);
        self.heal_time_max = self.heal_time_max.max(r.heal_time);
    }

    /// False alerts per transaction.
    pub fn false_alert_rate(&self) -> f64 {
        if self.transactions == 0 { 0.0 } else { self.false_alerts as f64 / self.transactions as f64 }
    }

    /// Detected falsifications per true falsification.
    pub fn recall(&self) -> f64 {
        if self.true_falsifications == 0 {
            1.0
        } else {
            self.detected as f64 / self.true_falsifications as f64
        }
    }

    /// Every fault injected.
    pub fn faults_injected(&self) -> u64 {
        self.faults.values().sum()
    }
}

/// Runs the schedules of seeds `first..first + count`, `steps` steps each, on `threads` threads
/// (each schedule on one thread, as always); `progress` hears of each report as it ends.
pub fn run_many(
    first: u64,
    count: u64,
    steps: u64,
    threads: usize,
    progress: &(dyn Fn(&Report) + Sync),
) -> Summary {
    let next = std::sync::atomic::AtomicU64::new(first);
    let end = first.saturating_add(count);
    let summary = std::sync::Mutex::new(Summary::default());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if seed >= end {
                        return;
                    }
                    let mut r = run(&Options { seed, steps });
                    r.trace = Vec::new();
                    progress(&r);
                    world::lock(&summary).add(&r);
                }
            });
        }
    });
    let mut s = summary.into_inner().unwrap_or_else(|e| e.into_inner());
    s.failed.sort();
    s
}
