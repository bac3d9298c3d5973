//! `openmvs-bench agent` runs: a small backlog is recorded, replayed to the end, and its figures
//! are printed, so that the measurement cannot rot.

use std::process::Command;

use serde_json::Value;

#[test]
fn the_agent_benchmark_replays_a_small_backlog_and_prints_its_rate() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_openmvs-bench"));
    cmd.args(["agent", "--packs", "200", "--concurrency", "4", "--json"]);
    for (k, _) in std::env::vars() {
        if k.starts_with("OPENMVS") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().expect("openmvs-bench runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!((v["packs"].as_u64(), v["concurrency"].as_u64()), (Some(200), Some(4)));
    // Counted, not judged: the machine's speed is not asserted.
    assert!(v["operations_per_second"].as_f64().is_some_and(|r| r > 0.0), "{v}");
    // Two national requests per replayed operation (the verify, then the operation). Compared with
    // a relative tolerance: a float read back from JSON may differ from the printed one in its last
    // bit.
    let ops = v["operations_per_second"].as_f64().unwrap_or_default();
    let national = v["national_requests_per_second"].as_f64().unwrap_or_default();
    assert!((national - 2.0 * ops).abs() <= 1e-9 * national.abs().max(1.0), "{v}");
}
