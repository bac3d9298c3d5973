//! The benchmark harness runs end to end on small data in seconds, so that it cannot rot: every
//! scenario is answered without errors and the report carries every figure and target, for the
//! national system alone (per size) and for the hub with national systems (per engine: a streamed
//! upload, inter-market verifies). On PostgreSQL too when `OPENMVS_TEST_DATABASE_URL` is set. The figures themselves are not judged
//! here: speed is measured by the harness, never asserted by a test.

use std::process::{Command, Output, Stdio};

use openmvs_testkit::TempDir;
use serde_json::Value;

/// Serials of the smoke run's upload through the hub.
const UPLOAD_SERIALS: u64 = 20_000;

#[test]
fn the_benchmark_suite_runs_every_scenario_and_writes_its_report() {
    let dir = TempDir::new("bench-smoke");
    let out = dir.path().join("report");
    let mut args = vec![
        "suite".to_owned(),
        "--smoke".to_owned(),
        "--seconds".to_owned(),
        "0.3".to_owned(),
        "--upload-serials".to_owned(),
        UPLOAD_SERIALS.to_string(),
        "--out".to_owned(),
        out.display().to_string(),
    ];
    let pg = std::env::var("OPENMVS_TEST_DATABASE_URL").ok().filter(|u| !u.is_empty());
    match &pg {
        Some(url) => args.extend(["--database-url".to_owned(), url.clone()]),
        None => eprintln!("the PostgreSQL part is skipped: OPENMVS_TEST_DATABASE_URL is not set"),
    }
    let run = openmvs_bench(&args);
    assert!(
        run.status.success(),
        "openmvs-bench suite --smoke: {}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("# OpenMVS benchmark report"), "{stdout}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).expect("report.json"))
            .expect("JSON");
    let md = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    assert!(md.contains("| target | value | bound | met |"), "{md}");
    assert!(report["hello_world"]["answered_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{report}");
    let runs = report["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), if pg.is_some() { 2 } else { 1 }, "one run per engine");
    for r in runs {
        for key in ["point_reads_per_s", "batched_inserts_per_s", "single_commits_per_s"] {
            assert!(r["raw"][key].as_f64().unwrap_or(0.0) > 0.0, "{key}: {r}");
        }
        for scenario in [
            "verify_max",
            "verify_80",
            "verify_100",
            "verify_known_50",
            "verify_unknown_50",
            "supply_max",
            "pharmacy_mix_50",
            "replay_first_pass",
            "replay_second_pass",
            "verify_known_50_under_ingest",
            "verify_known_50_under_bulk",
        ] {
            let s = &r[scenario];
            assert!(s["ok"].as_u64().unwrap_or(0) > 0, "{scenario} answered nothing: {s}");
            assert_eq!(s["errors"], 0, "{scenario} had errors: {s}");
        }
        assert_eq!(r["replay_first_pass"]["ok"], r["replay_second_pass"]["ok"], "every replay answered: {r}");
        for key in ["ingest_alone_serials_per_s", "ingest_under_verify_serials_per_s"] {
            assert!(r[key].as_f64().unwrap_or(0.0) > 0.0, "{key}: {r}");
        }
        for phase in ["bulk_alone", "bulk_under_verify"] {
            let b = &r[phase];
            assert!(b["requests"].as_u64().unwrap_or(0) > 0, "{phase} sent no bulk: {b}");
            let (packs, rows) =
                (b["packs"].as_u64().unwrap_or(0), b["rows_per_request"].as_u64().unwrap_or(0));
            assert!(packs > 0 && packs <= b["requests"].as_u64().unwrap() * rows, "{phase}: {b}");
            assert!(b["packs_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{phase}: {b}");
        }
        let targets = r["targets"].as_array().expect("targets");
        assert!(targets.len() >= 9, "{r}");
        assert!(targets.iter().all(well_formed), "{r}");
    }

    let systems = report["systems"].as_array().expect("systems");
    let engines = |list: &[Value]| list.iter().map(|r| r["engine"].clone()).collect::<Vec<_>>();
    assert_eq!(engines(systems), engines(runs), "one hub system per engine");
    for s in systems {
        let u = &s["upload"];
        assert_eq!(u["received"], UPLOAD_SERIALS, "every serial received: {u}");
        assert_eq!(u["rejected"], 0, "{u}");
        assert!(u["packs"].as_object().expect("packs").values().all(|n| n == UPLOAD_SERIALS), "{u}");
        for key in ["accepted_per_s", "distributed_per_s", "raw_batched_inserts_per_s"] {
            assert!(u[key].as_f64().unwrap_or(0.0) > 0.0, "{key}: {u}");
        }
        let im = &s["intermarket"];
        for (leg, through_hub) in [("local", false), ("intermarket", true)] {
            let l = &im[leg];
            let requests = l["requests"].as_u64().unwrap_or(0);
            assert!(requests > 0, "{leg} sent nothing: {l}");
            assert_eq!(l["errors"], 0, "{leg} had errors: {l}");
            assert_eq!(l["intermarket"], if through_hub { requests } else { 0 }, "{leg}: {l}");
            for key in ["answered_per_s", "p50_ms", "p99_ms", "p999_ms", "share_under_300ms"] {
                assert!(l[key].as_f64().unwrap_or(0.0) > 0.0, "{leg} {key}: {l}");
            }
        }
        assert!(im["p99_ratio"].as_f64().unwrap_or(0.0) > 0.0, "{im}");
        let targets = s["targets"].as_array().expect("targets");
        assert!(targets.iter().all(well_formed), "{s}");
        let upload = targets
            .iter()
            .find(|t| t["target"].as_str().unwrap_or("").starts_with("upload ingest serials/s"))
            .expect("the upload target");
        assert!(upload["value"].as_f64().unwrap_or(0.0) > 0.0 && upload["met"].is_boolean(), "{upload}");
        assert_eq!(targets.len(), 3, "{s}");
    }
}

/// A target has a value, and is met or not, or has no bound (a figure shown as a ratio).
fn well_formed(t: &Value) -> bool {
    t["value"].is_number() && (t["met"].is_boolean() || (t["met"].is_null() && t["bound"] == "-"))
}

/// Runs the `openmvs-bench` binary to completion, without any `OPENMVS...` variable of the
/// developer's environment, so that only the test's arguments count.
fn openmvs_bench(args: &[String]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_openmvs-bench"));
    cmd.args(args).stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("OPENMVS") {
            cmd.env_remove(k);
        }
    }
    cmd.output().expect("openmvs-bench runs")
}
