//! The report of `openmvs-bench alerts`: the figures `openmvs_workload::tally` counted, with how
//! the run was made, printed for a reader or as JSON.

use std::collections::BTreeMap;

use openmvs_workload::tally::{Figures, TARGET_FALSE_ALERT_RATE, TARGET_RECALL};
use serde_json::{Value, json};

use crate::out::outln;

/// How the run was made, for the report.
pub(crate) struct Run {
    pub seed: u64,
    pub engine: &'static str,
    pub markets: Vec<String>,
    pub terminals: usize,
    pub seconds: f64,
    pub setup_seconds: f64,
    pub outboxes_drained: bool,
    /// Seconds from the last answer until the outboxes had drained.
    pub drain_seconds: f64,
    pub build: &'static str,
    pub fingerprint: u64,
}

/// The figures and the run as one JSON object.
pub(crate) fn json(f: &Figures, run: &Run) -> Value {
    let falsifications: BTreeMap<&str, Value> = f
        .falsifications
        .iter()
        .map(|(k, v)| {
            (
                k.as_str(),
                json!({"events": v.events, "detected": v.detected, "alert_codes": v.codes,
                       "detected_by_nmvo_list_only": v.detected_by_list_only}),
            )
        })
        .collect();
    json!({
        "transactions": f.transactions,
        "false_alerts": f.false_alerts,
        "false_alert_rate": f.false_alert_rate(),
        "true_falsifications": f.true_falsifications,
        "detected": f.detected,
        "recall": f.recall(),
        "detected_in_answers": f.detected_in_answers,
        "recall_in_answers": f.recall_in_answers(),
        "targets": {
            "false_alert_rate_at_most": TARGET_FALSE_ALERT_RATE,
            "false_alert_rate_met": f.false_alert_rate() <= TARGET_FALSE_ALERT_RATE,
            "recall_at_least": TARGET_RECALL,
            "recall_met": f.recall() >= TARGET_RECALL,
        },
        "false_alerts_on_intact_codes": f.false_alerts_clean,
        "false_alerts_by_cause": f.false_by_cause,
        "transactions_by_kind": f.transactions_by_kind,
        "falsifications_by_kind": falsifications,
        "recalled_batches": {"packs": f.recalled.packs, "stopped_without_alert": f.recalled.stopped,
                             "alerted": f.recalled.alerted},
        "corrupted_scan_outcomes": f.corruption_outcomes,
        "corrupted_scan_warnings": f.corruption_warnings,
        "alerts": f.alerts,
        "nmvo_cross_check": {"listed": f.listed, "listed_not_answered": f.listed_only,
                             "answered_not_listed": f.answered_not_listed,
                             "outboxes_drained": run.outboxes_drained,
                             "drain_seconds": run.drain_seconds},
        "alerts_answered_to_two_steps": f.alerts_shared,
        "genuine_requests_refused": f.unexpected,
        "requests": f.requests,
        "abandoned_requests": f.abandoned,
        "errors": f.errors,
        "first_errors": f.first_errors,
        "seed": run.seed,
        "workload_fingerprint": format!("{:016x}", run.fingerprint),
        "engine": run.engine,
        "markets": run.markets,
        "terminals": run.terminals,
        "build": run.build,
        "seconds": run.seconds,
        "setup_seconds": run.setup_seconds,
    })
}

/// The figures and the run, for a reader.
pub(crate) fn print(f: &Figures, run: &Run) {
    let pct = |x: f64| format!("{:.4} %", 100.0 * x);
    outln!(
        "openmvs-bench alerts: {} transactions ({} requests) by {} terminals in {} on {} ({} build), seed {}, {:.1} s (setup {:.1} s)",
        f.transactions,
        f.requests,
        run.terminals,
        run.markets.join(", "),
        run.engine,
        run.build,
        run.seed,
        run.seconds,
        run.setup_seconds
    );
    let met = |yes: bool| if yes { "met" } else { "NOT met" };
    outln!(
        "false alerts: {} of {} transactions = {}  (target <= {}: {})",
        f.false_alerts,
        f.transactions,
        pct(f.false_alert_rate()),
        pct(TARGET_FALSE_ALERT_RATE),
        met(f.false_alert_rate() <= TARGET_FALSE_ALERT_RATE)
    );
    outln!(
        "recall: {} of {} true falsifications alerted = {:.3}  (target {:.1}: {})",
        f.detected,
        f.true_falsifications,
        f.recall(),
        TARGET_RECALL,
        met(f.recall() >= TARGET_RECALL)
    );
    outln!(
        "  of which alerted in the answer to the terminal that scanned the code: {} = {:.3} (the others only in an NMVO's list, raised when a state change reached the other market)",
        f.detected_in_answers,
        f.recall_in_answers()
    );
    outln!("false alerts on codes that arrived intact: {}", f.false_alerts_clean);
    outln!("");
    outln!("false alerts by cause (the request's ground truth):");
    if f.false_by_cause.is_empty() {
        outln!("  none");
    }
    for (cause, codes) in &f.false_by_cause {
        let n: u64 = codes.values().sum();
        outln!("  {cause:<36} {n:>7}  {}", counts(codes));
    }
    outln!("");
    outln!("corrupted scans, what they got:");
    for (k, outcomes) in &f.corruption_outcomes {
        let warnings = f.corruption_warnings.get(k).map(counts).unwrap_or_default();
        let n: u64 = outcomes.values().sum();
        outln!(
            "  {k:<24} {n:>6}  {}{}",
            counts(outcomes),
            if warnings.is_empty() { String::new() } else { format!("; warnings: {warnings}") }
        );
    }
    outln!("");
    outln!("true falsifications (detected = at least one alert):");
    for (k, v) in &f.falsifications {
        outln!(
            "  {k:<24} {:>4} of {:<4} {}{}",
            v.detected,
            v.events,
            counts(&v.codes),
            if v.detected_by_list_only > 0 {
                format!(" ({} seen only in the NMVO's list)", v.detected_by_list_only)
            } else {
                String::new()
            }
        );
    }
    outln!(
        "  recalled batches (no alert by the rules; not in the recall): {} packs, {} stopped (NMVS_FE_LOT_01 or RECALLED), {} alerted",
        f.recalled.packs,
        f.recalled.stopped,
        f.recalled.alerted
    );
    outln!("");
    outln!("transactions by kind:");
    for (k, n) in &f.transactions_by_kind {
        outln!("  {k:<36} {n:>7}");
    }
    outln!("");
    outln!(
        "cross-check with GET /v1/alerts as each NMVO: {} listed; {} listed but in no answer; {} answered but listed nowhere; {}",
        f.listed,
        f.listed_only,
        f.answered_not_listed,
        if run.outboxes_drained {
            format!("the outboxes drained {:.1} s after the last answer", run.drain_seconds)
        } else {
            format!("the outboxes had NOT drained {:.0} s after the last answer", run.drain_seconds)
        }
    );
    if !f.unexpected.is_empty() {
        outln!("genuine requests refused without an alert: {}", counts(&f.unexpected));
    }
    if f.alerts_shared > 0 {
        outln!("alert ids answered to two different steps: {}", f.alerts_shared);
    }
    outln!(
        "errors: {}{}",
        f.errors,
        if f.errors > 0 { format!(" (first: {:?})", f.first_errors) } else { String::new() }
    );
}
/// `A2 3, A3 1`.
fn counts(m: &BTreeMap<String, u64>) -> String {
    m.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
}
