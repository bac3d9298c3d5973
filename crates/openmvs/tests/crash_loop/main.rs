//! The crash loop: a hub and two national systems (DE, FR) as real `openmvs` processes over
//! mutual TLS, under concurrent load from client tasks (verify, supply, undo of a supply, bulk
//! submitted and polled, OBP uploads at the hub, distribution), on SQLite and on PostgreSQL. Each
//! cycle kills one process, picked at random, with SIGKILL at a random point of the load, and
//! starts it again on the same data; the requests that got no answer are sent again with the same
//! `client_trx_id`. Afterwards, with every process up and every relay drained: each acknowledged
//! operation took effect exactly once (the pack's state in every market, one audit record per
//! `client_trx_id` with the answer given), the copies of every multi-market pack agree, every
//! uploaded batch reached both markets, no message is dead, the hub holds no serial (its outbox
//! is empty), and `openmvs audit verify` passes for the hub and in each market against the heads
//! the hub received.
//!
//! `OPENMVS_CRASH_CYCLES` sets the cycles per engine (default [`CI_CYCLES_SQLITE`] and
//! [`CI_CYCLES_POSTGRES`]), `OPENMVS_CRASH_SEED` the seed (default: a fresh one, printed).
//! PostgreSQL runs need `OPENMVS_TEST_DATABASE_URL` (without it the PostgreSQL case says on
//! stderr that it skips).

#[path = "../common/mod.rs"]
mod common;

mod cluster;
mod load;

use std::collections::BTreeMap;
use std::time::Instant;

use cluster::{Cluster, Engine, Kind};
use load::{Ledger, Repro, Run, What, XorShift, number_from_env, seed_from_env};

/// Cycles on SQLite when `OPENMVS_CRASH_CYCLES` is not set. With [`CI_CYCLES_POSTGRES`], more
/// than 500 kills in CI; SQLite restarts faster, so it takes more of them and the two cases, which
/// run side by side, end at about the same time.
const CI_CYCLES_SQLITE: u64 = 320;
/// Cycles on PostgreSQL when `OPENMVS_CRASH_CYCLES` is not set.
const CI_CYCLES_POSTGRES: u64 = 200;

#[test]
fn crash_loop_sqlite() {
    crash_loop("sqlite", Engine::Sqlite, CI_CYCLES_SQLITE);
}

#[test]
fn crash_loop_postgres() {
    let Some(engine) = Engine::fresh_postgres("crashloop", "the PostgreSQL crash loop", 2) else { return };
    crash_loop("postgres", engine, CI_CYCLES_POSTGRES);
}

fn crash_loop(engine_name: &str, engine: Engine, ci_cycles: u64) {
    let cycles = number_from_env("OPENMVS_CRASH_CYCLES").unwrap_or(ci_cycles);
    assert!(cycles > 0, "OPENMVS_CRASH_CYCLES: must be at least 1");
    let seed = seed_from_env("OPENMVS_CRASH_SEED");
    let repro = Repro(
        "the crash loop",
        format!(
            "OPENMVS_CRASH_SEED={seed:#x} OPENMVS_CRASH_CYCLES={cycles} cargo test -p openmvs --test crash_loop -- crash_loop_{engine_name} --exact"
        ),
    );
    eprintln!("crash loop {engine_name}: {cycles} cycles, seed {seed:#x}");
    let mut rng = XorShift(seed);

    let mut cluster = Cluster::new(&format!("crash-loop-{engine_name}"), &["DE", "FR"], &engine);
    let run = Run::new(&mut cluster, engine_name, cycles);
    let mut ledger = Ledger::default();
    let mut kills: BTreeMap<String, u64> = BTreeMap::new();
    let started = Instant::now();
    for cycle in 1..=cycles {
        let victim = match rng.between(0, 3) {
            0 => Kind::Hub,
            i => Kind::National(usize::try_from(i - 1).expect("a small number")),
        };
        // The kill comes after a random number of answers, with requests in flight.
        let after = rng.between(1, 24);
        let seen = run.cycle(&mut cluster, victim, after);
        *kills.entry(cluster.system(victim).name.clone()).or_default() += 1;
        cluster.system(victim).start();
        // What got no answer is sent again with its transaction id, to the restarted process.
        let seen = run.resolve(seen);
        if let Some(bad) = seen.unexpected.first() {
            panic!("cycle {cycle} (killed {}): unexpected answer: {bad}", cluster.system(victim).name);
        }
        ledger.absorb(seen, cycle, &cluster.system(victim).name.clone());
    }
    let elapsed = started.elapsed();

    // Healing: every process restarted cleanly, so that each relay resumes its outbox at once,
    // then the relays drain, the bulks end and the uploads are distributed.
    let healing = Instant::now();
    cluster.stop_all();
    cluster.start_all();
    run.heal(&cluster, &ledger);
    let healed = healing.elapsed();
    let findings = run.check(&cluster, &ledger);
    cluster.stop_all();
    run.audit_verify(&cluster);

    let minutes = elapsed.as_secs_f64() / 60.0;
    let kinds: Vec<String> = kills.iter().map(|(k, n)| format!("{k} {n}")).collect();
    eprintln!(
        "crash loop {engine_name}: {cycles} cycles in {:.1} s ({:.0} cycles/min); kills: {}; acknowledged {}, \
         unknown {} (resolved by retry), lost {}, applied twice {}; {}; healed in {:.1} s; seed {seed:#x}",
        elapsed.as_secs_f64(),
        cycles as f64 / minutes,
        kinds.join(", "),
        ledger.count(|o| !o.unknown),
        ledger.count(|o| o.unknown),
        findings.lost.len(),
        findings.twice.len(),
        ledger.describe(),
        healed.as_secs_f64(),
    );
    findings.assert_none();
    assert!(ledger.count(|o| matches!(o.what, What::Supply)) > 0, "no supply was acknowledged");
    drop(repro);
}
