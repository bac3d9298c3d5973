//! The deterministic simulation: the same seed gives the same trace, byte for byte, and every
//! seed keeps every invariant.
//!
//! `every_seed_keeps_every_invariant` runs `OPENMVS_SIM_SEEDS` schedules (default 12, so that
//! `cargo test` in a debug build stays quick) of `OPENMVS_SIM_STEPS` steps (default 200) from
//! `OPENMVS_SIM_FIRST_SEED` (default 0); `.ci/run` runs it with 1,000 seeds in a release build. A
//! failing seed prints the one command that runs it again.

use openmvs_sim::{Options, run, run_many};

fn env(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

#[test]
fn the_same_seed_gives_the_same_trace_byte_for_byte() {
    let a = run(&Options { seed: 7, steps: 150 });
    let b = run(&Options { seed: 7, steps: 150 });
    assert!(a.trace.len() > 150, "a trace of {} lines", a.trace.len());
    assert_eq!(a.trace.join("\n"), b.trace.join("\n"));
    assert_eq!((a.faults, a.kills, a.violations), (b.faults, b.kills, b.violations));
    let c = run(&Options { seed: 8, steps: 150 });
    assert_ne!(a.trace, c.trace, "another seed, another schedule");
}

#[test]
fn every_seed_keeps_every_invariant() {
    let first = env("OPENMVS_SIM_FIRST_SEED", 0);
    let count = env("OPENMVS_SIM_SEEDS", 12);
    let steps = env("OPENMVS_SIM_STEPS", 200);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).min(4);
    let started = std::time::Instant::now();
    let done = std::sync::atomic::AtomicU64::new(0);
    let s = run_many(first, count, steps, threads, &|r| {
        if !r.passed() {
            eprintln!("seed {} broke an invariant; run it again with: {}", r.seed, r.command());
        }
        let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if n.is_multiple_of(5000) {
            eprintln!("{n} of {count} schedules, {:.0} s", started.elapsed().as_secs_f64());
        }
    });
    eprintln!(
        "{} schedules of {steps} steps from seed {first} in {:.1} s: {} faults injected {:?}, kills {:?}; \
         {} transactions, {} false alerts, recall {}/{} {:?}; heal within {} relay passes; {} dead letters",
        s.schedules,
        started.elapsed().as_secs_f64(),
        s.faults_injected(),
        s.faults,
        s.kills,
        s.transactions,
        s.false_alerts,
        s.detected,
        s.true_falsifications,
        s.by_kind,
        s.heal_rounds_max,
        s.dead_letters
    );
    assert_eq!(s.schedules, count);
    // Each kind of fault happened somewhere, so the run tested what it claims to.
    if count >= 12 {
        for kind in
            ["request_lost", "answer_lost", "duplicated", "delayed", "sender_died", "partition", "crash"]
        {
            assert!(s.faults.get(kind).copied().unwrap_or(0) > 0, "no fault of kind {kind}: {:?}", s.faults);
        }
    }
    let failed: Vec<String> =
        s.failed.iter().map(|(command, v)| format!("{command}\n    {}", v.join("\n    "))).collect();
    assert!(failed.is_empty(), "{} schedules broke an invariant:\n{}", failed.len(), failed.join("\n"));
}

/// Seed 24: an inter-market supply from AT reaches DE, and DE's answer is lost on its way back
/// through the hub, so the pharmacy is told that the market cannot be reached (`NMVS_TI_MKT_01`,
/// an answer the national system does not keep); it asks again with the same `client_trx_id`,
/// several times through further faults, and the supply is applied in DE exactly once, with every
/// falsification of the workload still detected.
#[test]
fn seed_24_an_intermarket_supply_whose_answer_was_lost_is_applied_once_when_asked_again() {
    let r = run(&Options { seed: 24, steps: 200 });
    assert!(r.passed(), "{:#?}", r.violations);
    assert!(r.trace.iter().any(|l| l.contains("NMVS_TI_MKT_01: sent again later")), "no unreachable answer");
    assert!(r.actions.get("unreachable_retry").copied().unwrap_or(0) > 0);
    assert_eq!(r.figures.detected, r.figures.true_falsifications);
}
