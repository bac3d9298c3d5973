//! The benchmark harness runs end to end on small data in seconds, so that it cannot rot: every
//! scenario is answered without errors and the report carries every figure and target. On
//! PostgreSQL too when `OPENMVS_TEST_DATABASE_URL` is set. The figures themselves are not judged
//! here: speed is measured by the harness, never asserted by a test.

mod common;

use common::TempDir;
use serde_json::Value;

#[test]
fn the_benchmark_suite_runs_every_scenario_and_writes_its_report() {
    let dir = TempDir::new("bench-smoke");
    let out = dir.path().join("report");
    let mut args = vec![
        "bench".to_owned(),
        "suite".to_owned(),
        "--smoke".to_owned(),
        "--seconds".to_owned(),
        "0.3".to_owned(),
        "--out".to_owned(),
        out.display().to_string(),
    ];
    let pg = std::env::var("OPENMVS_TEST_DATABASE_URL").ok().filter(|u| !u.is_empty());
    match &pg {
        Some(url) => args.extend(["--database-url".to_owned(), url.clone()]),
        None => eprintln!("the PostgreSQL part is skipped: OPENMVS_TEST_DATABASE_URL is not set"),
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = common::openmvs(&refs);
    assert!(
        run.status.success(),
        "openmvs bench suite --smoke: {}\n{}",
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
        ] {
            let s = &r[scenario];
            assert!(s["ok"].as_u64().unwrap_or(0) > 0, "{scenario} answered nothing: {s}");
            assert_eq!(s["errors"], 0, "{scenario} had errors: {s}");
        }
        assert_eq!(r["replay_first_pass"]["ok"], r["replay_second_pass"]["ok"], "every replay answered: {r}");
        for key in ["ingest_alone_serials_per_s", "ingest_under_verify_serials_per_s"] {
            assert!(r[key].as_f64().unwrap_or(0.0) > 0.0, "{key}: {r}");
        }
        let targets = r["targets"].as_array().expect("targets");
        assert!(targets.len() >= 8, "{r}");
        assert!(targets.iter().all(|t| t["value"].is_number() && t["met"].is_boolean()), "{r}");
    }
}
