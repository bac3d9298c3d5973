//! `openmvs-bench burst` at a small scale, through the same code as the measurement: pharmacies
//! whose agents recorded an outage's operations replay them from the same instant, more at once
//! than the national system admits (so it answers 503), while live traffic
//! runs. What must hold whatever the machine's speed: the backlog drained, every operation applied
//! exactly once in the national audit trail, alerts only for the truly bad packs, every 429 and 503
//! with `Retry-After`, and no request left without an answer.

use std::process::Command;

use serde_json::Value;

fn burst(args: &[&str]) -> (bool, Value, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_openmvs-bench"));
    cmd.arg("burst").args(args).arg("--json");
    for (k, _) in std::env::vars() {
        if k.starts_with("OPENMVS") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().expect("openmvs-bench runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let v: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("one JSON object ({e}): {stderr}"));
    (out.status.success(), v, stderr)
}

#[test]
fn a_burst_of_replays_drains_applies_each_operation_once_raises_only_true_alerts_and_every_refusal_says_when()
{
    // Two pharmacies of four hours each (160 operations), replaying 16 packs at a time into a
    // national system that admits 4 requests at a time: the replay meets 503s.
    let (ok, v, stderr) = burst(&[
        "--pharmacies",
        "2",
        "--outage-hours",
        "4",
        "--peak-rate",
        "100",
        "--multiplier",
        "3",
        "--before-seconds",
        "1",
        "--concurrency",
        "16",
        "--max-in-flight",
        "4",
    ]);
    let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"));
    assert_eq!(v["failed"], Value::Array(Vec::new()), "{v}\n{stderr}");
    assert!(ok, "{stderr}");
    // The last pack of each pharmacy may add one.
    assert!((2 * 160..=2 * 161).contains(&n("backlog_operations")), "{v}");
    // Drained: nothing left, every recorded operation replayed.
    assert_eq!(v["drained"], Value::Bool(true), "{v}");
    assert_eq!((n("queue_left"), n("replayed")), (0, n("recorded")), "{v}");
    // Applied exactly once, in the order recorded, as the audit trail says.
    assert_eq!(
        (n("operations_applied_once"), n("packs_not_as_recorded")),
        (n("backlog_operations"), 0),
        "{v}"
    );
    // The true alerts and no other: an unknown serial (A3) and a pack dispensed elsewhere (A24)
    // for each pharmacy's bad packs; none for good packs, the live traffic's included.
    assert!(n("alerts_expected") > 0, "{v}");
    assert_eq!(n("alerts_by_replay"), n("alerts_expected"), "{v}");
    assert_eq!((n("false_alerts_replay"), n("false_alerts_other")), (0, 0), "{v}");
    // Every refusal for load says when to come back; every request got an answer. The agents send
    // 32 verifies at the same instant to a bound of 4: refusals there are.
    assert!(n("shed") > 0, "{v}");
    assert_eq!(n("shed_with_retry_after"), n("shed"), "{v}");
    assert_eq!(n("shed"), n("shed_429") + n("shed_503"), "{v}");
    assert_eq!((n("client_timeouts"), n("unanswered")), (0, 0), "{v}");
    // Counted, not judged: the machine's speed is not asserted.
    assert!(v["drain_seconds"].as_f64().is_some_and(|s| s > 0.0), "{v}");
    assert!(v["live_before"]["answered"].as_u64().is_some(), "{v}");
    eprintln!("{v}");
}
