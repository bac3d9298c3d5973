//! `openmvs sim`: one schedule of the deterministic simulation with its trace, or many with their
//! summary (`openmvs_sim`).

use std::process::ExitCode;
use std::time::Instant;

use openmvs_sim::{Options, Report, Summary, run_many};
use serde_json::json;

use crate::out::outln;

pub fn run(
    seed: u64,
    steps: u64,
    count: Option<u64>,
    threads: usize,
    json: bool,
) -> anyhow::Result<ExitCode> {
    match count {
        None => one(seed, steps, json),
        Some(count) => many(seed, count, steps, threads, json),
    }
}

fn one(seed: u64, steps: u64, json: bool) -> anyhow::Result<ExitCode> {
    let r = openmvs_sim::run(&Options { seed, steps });
    if json {
        outln!("{}", report_json(&r));
    } else {
        for line in &r.trace {
            outln!("{line}");
        }
        outln!(
            "seed {seed}: {steps} steps at fault level {}, faults {:?}, kills {:?}",
            r.level,
            r.faults,
            r.kills
        );
        outln!(
            "workload: {} transactions, {} false alerts, recall {}/{}; heal: outboxes empty after {} relay passes ({} s)",
            r.figures.transactions,
            r.figures.false_alerts,
            r.figures.detected,
            r.figures.true_falsifications,
            r.heal_rounds,
            r.heal_time.as_secs()
        );
        for d in &r.dead_letters {
            outln!("dead letter: {d}");
        }
        for v in &r.violations {
            outln!("VIOLATION: {v}");
        }
        outln!("{}", if r.passed() { "every invariant held" } else { "invariants broken" });
    }
    Ok(if r.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn report_json(r: &Report) -> serde_json::Value {
    json!({
        "seed": r.seed, "steps": r.steps, "level": r.level, "trace": r.trace, "faults": r.faults,
        "kills": r.kills, "actions": r.actions, "violations": r.violations, "dead_letters": r.dead_letters,
        "transactions": r.figures.transactions, "false_alerts": r.figures.false_alerts,
        "true_falsifications": r.figures.true_falsifications, "detected": r.figures.detected,
        "heal_relay_passes": r.heal_rounds, "heal_seconds": r.heal_time.as_secs(),
    })
}

fn many(first: u64, count: u64, steps: u64, threads: usize, json: bool) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let done = std::sync::atomic::AtomicU64::new(0);
    let progress = |r: &Report| {
        let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if !r.passed() {
            eprintln!("seed {} broke an invariant: {}", r.seed, r.command());
        }
        if n.is_multiple_of(1000) {
            eprintln!("{n} of {count} schedules, {:.0} s", started.elapsed().as_secs_f64());
        }
    };
    let s = run_many(first, count, steps, threads, &progress);
    let seconds = started.elapsed().as_secs_f64();
    if json {
        outln!("{}", summary_json(&s, first, seconds));
    } else {
        print_summary(&s, first, seconds);
    }
    Ok(if s.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn summary_json(s: &Summary, first: u64, seconds: f64) -> serde_json::Value {
    json!({
        "first_seed": first, "schedules": s.schedules, "steps": s.steps, "seconds": seconds,
        "faults": s.faults, "faults_injected": s.faults_injected(), "kills": s.kills,
        "failed": s.failed.iter().map(|(c, v)| json!({"command": c, "violations": v})).collect::<Vec<_>>(),
        "dead_letters": s.dead_letters, "transactions": s.transactions, "false_alerts": s.false_alerts,
        "false_alert_rate": s.false_alert_rate(), "true_falsifications": s.true_falsifications,
        "detected": s.detected, "recall": s.recall(), "errors": s.errors,
        "recall_by_kind": s.by_kind.iter().map(|(k, (e, d))| (k.clone(), json!({"events": e, "detected": d}))).collect::<serde_json::Map<_, _>>(),
        "heal_relay_passes_max": s.heal_rounds_max, "heal_seconds_max": s.heal_time_max.as_secs(),
    })
}

fn print_summary(s: &Summary, first: u64, seconds: f64) {
    outln!(
        "{} schedules (seeds {first} to {}), {} steps, in {seconds:.1} s ({:.0} schedules per minute)",
        s.schedules,
        first + s.schedules.saturating_sub(1),
        s.steps,
        s.schedules as f64 * 60.0 / seconds.max(1e-9)
    );
    outln!("faults injected: {} {:?}", s.faults_injected(), s.faults);
    outln!("processes killed: {:?}", s.kills);
    outln!(
        "workload: {} transactions, {} false alerts (rate {:.5}), recall {}/{} = {:.4}, {} errors",
        s.transactions,
        s.false_alerts,
        s.false_alert_rate(),
        s.detected,
        s.true_falsifications,
        s.recall(),
        s.errors
    );
    for (kind, (events, detected)) in &s.by_kind {
        outln!("  {kind}: {detected} of {events} detected");
    }
    outln!(
        "heal: every outbox empty within {} relay passes ({} s of virtual time) at most; {} dead letters",
        s.heal_rounds_max,
        s.heal_time_max.as_secs(),
        s.dead_letters
    );
    outln!("schedules that broke an invariant: {}", s.failed.len());
    for (command, violations) in &s.failed {
        outln!("  {command}");
        for v in violations {
            outln!("    {v}");
        }
    }
}
