//! `openmvs-bench alerts --smoke` runs end to end: a small generated market against the real
//! systems, and a report whose figures add up. What the rules promise is checked on the way:
//! every true falsification alerts, a recalled pack is stopped without one, and no code that
//! arrived intact (everyday work, double scans, retries, replays after an outage, rescans) raises
//! a false alert; the false alerts of corrupted scans are counted, not judged (the rate is what
//! the benchmark measures). On PostgreSQL too when `OPENMVS_TEST_DATABASE_URL` is set.

use std::process::{Command, Stdio};

use serde_json::Value;

#[test]
fn the_alerts_benchmark_runs_a_small_market_and_its_figures_add_up() {
    let mut engines = vec![None];
    match std::env::var("OPENMVS_TEST_DATABASE_URL").ok().filter(|u| !u.is_empty()) {
        Some(url) => engines.push(Some(url)),
        None => eprintln!("the PostgreSQL run is skipped: OPENMVS_TEST_DATABASE_URL is not set"),
    }
    for url in engines {
        let mut args = vec!["alerts", "--smoke", "--json", "--seed", "3"];
        if let Some(u) = &url {
            args.extend(["--database-url", u.as_str()]);
        }
        let r = run(&args);
        check(&r);
        assert_eq!(r["engine"], if url.is_some() { "postgres" } else { "sqlite" });
    }
}

#[test]
fn a_market_the_workload_cannot_have_is_refused_naming_the_flag() {
    let out = openmvs_bench(&["alerts", "--smoke", "--markets", "DE"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--markets: at least two are needed"), "{stderr}");
}

/// Runs `openmvs-bench` with `args` and reads its JSON report.
fn run(args: &[&str]) -> Value {
    let out = openmvs_bench(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "openmvs-bench {}: {}\n{stderr}", args.join(" "), out.status);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("one JSON object: {e}\n{}", String::from_utf8_lossy(&out.stdout)))
}

/// The checks of one report.
fn check(r: &Value) {
    let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k}: {r}"));
    let (transactions, false_alerts) = (n("transactions"), n("false_alerts"));
    assert!((1_000..=2_001).contains(&transactions), "{r}");
    assert!(n("requests") > transactions, "retries and abandoned requests are requests: {r}");
    assert_eq!((n("errors"), n("alerts_answered_to_two_steps")), (0, 0), "{r}");
    assert_eq!(r["genuine_requests_refused"], serde_json::json!({}), "{r}");
    let rate = r["false_alert_rate"].as_f64().unwrap();
    assert!((rate - false_alerts as f64 / transactions as f64).abs() < 1e-12, "{r}");

    // Every true falsification alerts: the recall is 1.
    let (truly, detected) = (n("true_falsifications"), n("detected"));
    let kinds = r["falsifications_by_kind"].as_object().unwrap();
    let names = [
        "batch_mismatch",
        "clone_intermarket",
        "clone_multimarket",
        "expiry_mismatch",
        "unknown_batch",
        "unknown_serial",
    ];
    assert_eq!(kinds.keys().map(String::as_str).collect::<Vec<_>>(), names, "{r}");
    for (kind, k) in kinds {
        let events = k["events"].as_u64().unwrap();
        assert!(events >= 2, "{kind}: at least the minimum: {r}");
        assert_eq!(k["detected"], events, "{kind} detected: {r}");
    }
    assert_eq!(kinds.values().map(|k| k["events"].as_u64().unwrap()).sum::<u64>(), truly);
    assert_eq!((detected, r["recall"].as_f64()), (truly, Some(1.0)), "{r}");
    let recalled = &r["recalled_batches"];
    assert!(recalled["packs"].as_u64().unwrap() >= 2, "{r}");
    assert_eq!(recalled["stopped_without_alert"], recalled["packs"], "{r}");
    assert_eq!(recalled["alerted"], 0, "{r}");

    // False alerts come from corrupted codes alone, and add up.
    assert_eq!(n("false_alerts_on_intact_codes"), 0, "{r}");
    let causes = r["false_alerts_by_cause"].as_object().unwrap();
    let sum: u64 =
        causes.values().flat_map(|c| c.as_object().unwrap().values()).map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(sum, false_alerts, "{r}");
    assert!(causes.keys().all(|c| c.starts_with("corrupted/")), "{r}");
    let by_kind = r["transactions_by_kind"].as_object().unwrap();
    for kind in [
        "corrupted/caps_lock",
        "corrupted/keyboard_layout",
        "corrupted/lost_group_separator",
        "genuine/double_scan",
        "genuine/timeout_retry",
        "genuine/outage_replay",
        "genuine/rescan",
        "falsified/recalled_batch",
    ] {
        assert!(by_kind.get(kind).and_then(Value::as_u64).unwrap_or(0) >= 2, "{kind}: {r}");
    }
    assert_eq!(by_kind.values().map(|v| v.as_u64().unwrap()).sum::<u64>(), transactions, "{r}");
    let outcomes = r["corrupted_scan_outcomes"].as_object().unwrap();
    for (kind, o) in outcomes {
        let total: u64 = o.as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
        assert_eq!(Some(total), by_kind[&format!("corrupted/{kind}")].as_u64(), "{kind}: {r}");
    }

    // Every alert an answer carried is in an NMVO's list, once the outboxes have drained.
    let x = &r["nmvo_cross_check"];
    assert_eq!(
        (&x["outboxes_drained"], &x["answered_not_listed"]),
        (&Value::Bool(true), &Value::from(0)),
        "{r}"
    );
    assert_eq!(n("alerts"), x["listed"].as_u64().unwrap(), "{r}");
}

/// Runs the `openmvs-bench` binary to completion, without any `OPENMVS...` variable of the
/// developer's environment, so that only the test's arguments count.
fn openmvs_bench(args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_openmvs-bench"));
    cmd.args(args).stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("OPENMVS") {
            cmd.env_remove(k);
        }
    }
    cmd.output().expect("openmvs-bench runs")
}
