//! Counting, from what the systems answered and what the NMVOs list, against the workload's
//! ground truth: which alerts are false, which falsifications were caught. Pure: the answers and
//! the lists come in, the figures go out.
//!
//! The rules, as BENCHMARKS.md states them:
//! - A **transaction** is a distinct (terminal, `client_trx_id`): a retry is the transaction it
//!   retries, a rescan or a double scan is a new one.
//! - An **alert** is a distinct alert id, from the `alert` field of any answer (answers the
//!   terminal never saw included: the alert exists all the same), and from the NMVOs' lists.
//!   An id answered is attributed to the step whose request got it; an id only listed (an A24
//!   raised when a clone's state change reached the other market) to the falsification whose
//!   code names that product code and serial, if one does.
//! - An alert is **true** when its step belongs to a falsification of an alerting kind (the
//!   genuine dispense of a cloned code included: which of two identical codes is the clone
//!   cannot be told). Every other alert is **false**, with the ground truth of its request as
//!   its cause (`listed_only/<code>` for a listed alert nothing explains).
//! - A falsification of an alerting kind is **detected** when at least one alert is attributed
//!   to it. Recall is detected / true falsifications.
//! - A pack of a **recalled batch** is not a falsification and the rules raise no alert for it:
//!   it is **stopped** when a dispense is refused with `NMVS_FE_LOT_01` or a verify reports it
//!   `RECALLED`. Recalled packs are outside the recall figure; an alert on one is a false alert.

use std::collections::{BTreeMap, HashMap, HashSet};

use openmvs_workload::{Conduct, Corruption, Falsification, Operation, Truth, Workload};
use serde_json::{Value, json};

use crate::out::outln;

/// The false-alert rate the issue sets as the target (0.02 %).
pub(crate) const TARGET_FALSE_ALERT_RATE: f64 = 0.0002;
/// The recall it sets (every true falsification alerts).
pub(crate) const TARGET_RECALL: f64 = 1.0;

/// An alert named in an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AlertRef {
    pub id: String,
    pub code: String,
}

/// What one request got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// An HTTP answer; `seen` is false when the terminal had given up on it (a timeout).
    Http {
        status: u16,
        return_code: String,
        accepted: Option<bool>,
        alert: Option<AlertRef>,
        warnings: Vec<String>,
        intermarket: bool,
        reasons: Vec<String>,
        seen: bool,
    },
    /// Sent, and the connection closed at once: no answer.
    Abandoned,
    /// Not sent or not answered, for a reason of the transport.
    Failed(String),
}

/// One request of the workload and what it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub step: usize,
    pub request: usize,
    pub outcome: Outcome,
}

/// An alert as an NMVO lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listed {
    pub id: String,
    pub code: String,
    pub market: String,
    pub product_code: String,
    pub serial: String,
}

/// What one falsification kind got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KindFigures {
    pub events: u64,
    pub detected: u64,
    /// Alert codes attributed to events of the kind.
    pub codes: BTreeMap<String, u64>,
    /// Of the detected, those whose only alert came from the NMVO's list.
    pub detected_by_list_only: u64,
}

/// Packs of recalled batches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Recalled {
    pub packs: u64,
    pub stopped: u64,
    pub alerted: u64,
}

/// Everything counted.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Figures {
    pub transactions: u64,
    pub requests: u64,
    pub abandoned: u64,
    pub alerts: u64,
    pub false_alerts: u64,
    /// False alerts on requests whose code arrived intact (no corruption): the rules allow none.
    pub false_alerts_clean: u64,
    pub true_falsifications: u64,
    pub detected: u64,
    /// Of the detected, those with an alert in an answer (not only in an NMVO's list): caught
    /// while the code was being scanned.
    pub detected_in_answers: u64,
    /// Cause (the request's ground truth) -> alert code -> false alerts.
    pub false_by_cause: BTreeMap<String, BTreeMap<String, u64>>,
    pub transactions_by_kind: BTreeMap<String, u64>,
    pub falsifications: BTreeMap<String, KindFigures>,
    pub recalled: Recalled,
    /// Corruption -> outcome (`alert A2`, `HTTP 400 NMVS_TE_XM_02`, `refused <code>`, `accepted`).
    pub corruption_outcomes: BTreeMap<String, BTreeMap<String, u64>>,
    /// Corruption -> scan warning code -> answers that carried it.
    pub corruption_warnings: BTreeMap<String, BTreeMap<String, u64>>,
    pub listed: u64,
    pub listed_only: u64,
    pub answered_not_listed: u64,
    /// Alert ids answered to two different steps (never expected).
    pub alerts_shared: u64,
    /// Genuine requests answered with neither acceptance nor an alert, other than a double
    /// scan's repeat (`NMVS_NC_PCK_23`): what they got -> how many.
    pub unexpected: BTreeMap<String, u64>,
    /// Answers that are failures of the run, not of the rules: transport failures, HTTP statuses
    /// other than 200 and 400, a 400 on a code that arrived intact.
    pub errors: u64,
    pub first_errors: Vec<String>,
}

impl Figures {
    pub fn false_alert_rate(&self) -> f64 {
        if self.transactions == 0 { 0.0 } else { self.false_alerts as f64 / self.transactions as f64 }
    }

    pub fn recall(&self) -> f64 {
        ratio(self.detected, self.true_falsifications)
    }

    /// The recall counting only alerts answered to a terminal.
    pub fn recall_in_answers(&self) -> f64 {
        ratio(self.detected_in_answers, self.true_falsifications)
    }
}

fn ratio(n: u64, of: u64) -> f64 {
    if of == 0 { 1.0 } else { n as f64 / of as f64 }
}

/// Where an alert id was first seen in an answer.
struct Seen {
    step: usize,
    truth: Truth,
    code: String,
}

/// Counts `answers` and `listed` against the ground truth of `w`.
pub(crate) fn tally(w: &Workload, answers: &[Answer], listed: &[Listed]) -> Figures {
    let mut f = Figures::default();
    let mut transactions = HashSet::new();
    let mut alerts: HashMap<String, Seen> = HashMap::new();
    for a in answers {
        let step = &w.steps[a.step];
        let r = &step.requests[a.request];
        f.requests += 1;
        if transactions.insert((step.terminal, r.client_trx_id.as_str())) {
            *f.transactions_by_kind.entry(r.truth.label()).or_default() += 1;
        }
        let (status, return_code, accepted, alert, warnings, reasons) = match &a.outcome {
            Outcome::Abandoned => {
                f.abandoned += 1;
                continue;
            }
            Outcome::Failed(e) => {
                error(&mut f, format!("step {} request {}: {e}", a.step, a.request));
                continue;
            }
            Outcome::Http { status, return_code, accepted, alert, warnings, reasons, .. } => {
                (*status, return_code.as_str(), *accepted, alert, warnings, reasons)
            }
        };
        if let Some(al) = alert {
            match alerts.get(&al.id) {
                Some(seen) if seen.step != a.step => f.alerts_shared += 1,
                Some(_) => {}
                None => {
                    alerts
                        .insert(al.id.clone(), Seen { step: a.step, truth: r.truth, code: al.code.clone() });
                }
            }
        }
        let corrupted = matches!(r.truth, Truth::Corrupted(_));
        if status != 200 && !(status == 400 && corrupted) {
            error(
                &mut f,
                format!(
                    "step {} request {} ({} {}): HTTP {status} {return_code}",
                    a.step,
                    a.request,
                    r.truth.label(),
                    r.operation.as_str()
                ),
            );
        }
        match r.truth {
            Truth::Corrupted(k) => {
                let outcome = match (status, alert, accepted) {
                    (_, Some(al), _) => format!("alert {}", al.code),
                    (200, None, Some(true)) => "accepted".to_owned(),
                    (200, None, _) => format!("refused {return_code}"),
                    (s, None, _) => format!("HTTP {s} {return_code}"),
                };
                *f.corruption_outcomes
                    .entry(k.as_str().to_owned())
                    .or_default()
                    .entry(outcome)
                    .or_default() += 1;
                for wcode in warnings {
                    *f.corruption_warnings
                        .entry(k.as_str().to_owned())
                        .or_default()
                        .entry(wcode.clone())
                        .or_default() += 1;
                }
            }
            Truth::Genuine(conduct) if status == 200 && alert.is_none() && accepted != Some(true) => {
                let repeat = conduct == Conduct::DoubleScan && return_code == "NMVS_NC_PCK_23";
                if !repeat {
                    let what = format!("{} {}: {return_code}", r.truth.label(), r.operation.as_str());
                    *f.unexpected.entry(what).or_default() += 1;
                }
            }
            Truth::Falsified(Falsification::RecalledBatch) => {
                let stopped = match r.operation {
                    Operation::Verify => reasons.iter().any(|x| x == "RECALLED"),
                    _ => accepted == Some(false) && return_code == "NMVS_FE_LOT_01",
                };
                f.recalled.stopped += u64::from(stopped && status == 200);
            }
            _ => {}
        }
    }
    f.transactions = transactions.len() as u64;

    // The falsifications, and the code each presents.
    let mut detected = vec![false; w.events.len()];
    let mut by_list_only = vec![true; w.events.len()];
    let mut by_pack: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, e) in w.events.iter().enumerate() {
        by_pack.insert((e.product_code.as_str(), e.serial.as_str()), i);
    }
    let mut codes: Vec<BTreeMap<String, u64>> = vec![BTreeMap::new(); w.events.len()];
    let false_alert = |f: &mut Figures, cause: String, code: &str, clean: bool| {
        f.false_alerts += 1;
        f.false_alerts_clean += u64::from(clean);
        *f.false_by_cause.entry(cause).or_default().entry(code.to_owned()).or_default() += 1;
    };
    for seen in alerts.values() {
        match w.steps[seen.step].event {
            Some(e) if w.events[e].kind.alert().is_some() => {
                detected[e] = true;
                by_list_only[e] = false;
                *codes[e].entry(seen.code.clone()).or_default() += 1;
            }
            Some(e) => {
                f.recalled.alerted += 1;
                false_alert(&mut f, format!("falsified/{}", w.events[e].kind.as_str()), &seen.code, false);
            }
            None => {
                let clean = !matches!(seen.truth, Truth::Corrupted(_));
                false_alert(&mut f, seen.truth.label(), &seen.code, clean);
            }
        }
    }
    let mut listed_ids = HashSet::new();
    for l in listed {
        if !listed_ids.insert(l.id.as_str()) {
            continue;
        }
        if alerts.contains_key(&l.id) {
            continue;
        }
        f.listed_only += 1;
        match by_pack.get(&(l.product_code.as_str(), l.serial.as_str())) {
            Some(&e) if w.events[e].kind.alert().is_some() => {
                detected[e] = true;
                *codes[e].entry(l.code.clone()).or_default() += 1;
            }
            _ => false_alert(&mut f, format!("listed_only/{}", l.code), &l.code, true),
        }
    }
    f.listed = listed_ids.len() as u64;
    f.answered_not_listed = alerts.keys().filter(|id| !listed_ids.contains(id.as_str())).count() as u64;
    f.alerts = (alerts.len() + f.listed_only as usize) as u64;

    for (i, e) in w.events.iter().enumerate() {
        if e.kind == Falsification::RecalledBatch {
            f.recalled.packs += 1;
            continue;
        }
        let k = f.falsifications.entry(e.kind.as_str().to_owned()).or_default();
        k.events += 1;
        k.detected += u64::from(detected[i]);
        k.detected_by_list_only += u64::from(detected[i] && by_list_only[i]);
        for (code, n) in &codes[i] {
            *k.codes.entry(code.clone()).or_default() += n;
        }
        f.true_falsifications += 1;
        f.detected += u64::from(detected[i]);
        f.detected_in_answers += u64::from(detected[i] && !by_list_only[i]);
    }
    for kind in Falsification::ALL.into_iter().filter(|k| k.alert().is_some()) {
        f.falsifications.entry(kind.as_str().to_owned()).or_default();
    }
    for c in Corruption::ALL {
        f.corruption_outcomes.entry(c.as_str().to_owned()).or_default();
    }
    f
}

fn error(f: &mut Figures, what: String) {
    f.errors += 1;
    if f.first_errors.len() < 5 {
        f.first_errors.push(what);
    }
}

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

impl Figures {
    pub(crate) fn json(&self, run: &Run) -> Value {
        let falsifications: BTreeMap<&str, Value> = self
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
            "transactions": self.transactions,
            "false_alerts": self.false_alerts,
            "false_alert_rate": self.false_alert_rate(),
            "true_falsifications": self.true_falsifications,
            "detected": self.detected,
            "recall": self.recall(),
            "detected_in_answers": self.detected_in_answers,
            "recall_in_answers": self.recall_in_answers(),
            "targets": {
                "false_alert_rate_at_most": TARGET_FALSE_ALERT_RATE,
                "false_alert_rate_met": self.false_alert_rate() <= TARGET_FALSE_ALERT_RATE,
                "recall_at_least": TARGET_RECALL,
                "recall_met": self.recall() >= TARGET_RECALL,
            },
            "false_alerts_on_intact_codes": self.false_alerts_clean,
            "false_alerts_by_cause": self.false_by_cause,
            "transactions_by_kind": self.transactions_by_kind,
            "falsifications_by_kind": falsifications,
            "recalled_batches": {"packs": self.recalled.packs, "stopped_without_alert": self.recalled.stopped,
                                 "alerted": self.recalled.alerted},
            "corrupted_scan_outcomes": self.corruption_outcomes,
            "corrupted_scan_warnings": self.corruption_warnings,
            "alerts": self.alerts,
            "nmvo_cross_check": {"listed": self.listed, "listed_not_answered": self.listed_only,
                                 "answered_not_listed": self.answered_not_listed,
                                 "outboxes_drained": run.outboxes_drained,
                                 "drain_seconds": run.drain_seconds},
            "alerts_answered_to_two_steps": self.alerts_shared,
            "genuine_requests_refused": self.unexpected,
            "requests": self.requests,
            "abandoned_requests": self.abandoned,
            "errors": self.errors,
            "first_errors": self.first_errors,
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

    pub(crate) fn print(&self, run: &Run) {
        let pct = |x: f64| format!("{:.4} %", 100.0 * x);
        outln!(
            "openmvs-bench alerts: {} transactions ({} requests) by {} terminals in {} on {} ({} build), seed {}, {:.1} s (setup {:.1} s)",
            self.transactions,
            self.requests,
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
            self.false_alerts,
            self.transactions,
            pct(self.false_alert_rate()),
            pct(TARGET_FALSE_ALERT_RATE),
            met(self.false_alert_rate() <= TARGET_FALSE_ALERT_RATE)
        );
        outln!(
            "recall: {} of {} true falsifications alerted = {:.3}  (target {:.1}: {})",
            self.detected,
            self.true_falsifications,
            self.recall(),
            TARGET_RECALL,
            met(self.recall() >= TARGET_RECALL)
        );
        outln!(
            "  of which alerted in the answer to the terminal that scanned the code: {} = {:.3} (the others only in an NMVO's list, raised when a state change reached the other market)",
            self.detected_in_answers,
            self.recall_in_answers()
        );
        outln!("false alerts on codes that arrived intact: {}", self.false_alerts_clean);
        outln!("");
        outln!("false alerts by cause (the request's ground truth):");
        if self.false_by_cause.is_empty() {
            outln!("  none");
        }
        for (cause, codes) in &self.false_by_cause {
            let n: u64 = codes.values().sum();
            outln!("  {cause:<36} {n:>7}  {}", counts(codes));
        }
        outln!("");
        outln!("corrupted scans, what they got:");
        for (k, outcomes) in &self.corruption_outcomes {
            let warnings = self.corruption_warnings.get(k).map(counts).unwrap_or_default();
            let n: u64 = outcomes.values().sum();
            outln!(
                "  {k:<24} {n:>6}  {}{}",
                counts(outcomes),
                if warnings.is_empty() { String::new() } else { format!("; warnings: {warnings}") }
            );
        }
        outln!("");
        outln!("true falsifications (detected = at least one alert):");
        for (k, v) in &self.falsifications {
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
            self.recalled.packs,
            self.recalled.stopped,
            self.recalled.alerted
        );
        outln!("");
        outln!("transactions by kind:");
        for (k, n) in &self.transactions_by_kind {
            outln!("  {k:<36} {n:>7}");
        }
        outln!("");
        outln!(
            "cross-check with GET /v1/alerts as each NMVO: {} listed; {} listed but in no answer; {} answered but listed nowhere; {}",
            self.listed,
            self.listed_only,
            self.answered_not_listed,
            if run.outboxes_drained {
                format!("the outboxes drained {:.1} s after the last answer", run.drain_seconds)
            } else {
                format!("the outboxes had NOT drained {:.0} s after the last answer", run.drain_seconds)
            }
        );
        if !self.unexpected.is_empty() {
            outln!("genuine requests refused without an alert: {}", counts(&self.unexpected));
        }
        if self.alerts_shared > 0 {
            outln!("alert ids answered to two different steps: {}", self.alerts_shared);
        }
        outln!(
            "errors: {}{}",
            self.errors,
            if self.errors > 0 { format!(" (first: {:?})", self.first_errors) } else { String::new() }
        );
    }
}

/// `A2 3, A3 1`.
fn counts(m: &BTreeMap<String, u64>) -> String {
    m.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use openmvs_core::ids::MarketCode;
    use openmvs_workload::{Config, Delivery, generate};

    fn workload() -> Workload {
        let markets = vec![MarketCode::new("DE").unwrap(), MarketCode::new("FR").unwrap()];
        generate(&Config::small(5, 500, markets, 2029)).unwrap()
    }

    fn http(status: u16, code: &str, accepted: bool, alert: Option<(&str, &str)>) -> Outcome {
        Outcome::Http {
            status,
            return_code: code.to_owned(),
            accepted: Some(accepted),
            alert: alert.map(|(id, code)| AlertRef { id: id.to_owned(), code: code.to_owned() }),
            warnings: Vec::new(),
            intermarket: false,
            reasons: Vec::new(),
            seen: true,
        }
    }

    /// Answers as the rules give them: genuine accepted, repeats PCK_23, corruptions an alert,
    /// falsifications their alert, a recalled pack's dispense refused and its verify RECALLED.
    fn as_the_rules_say(w: &Workload) -> Vec<Answer> {
        let mut out = Vec::new();
        let mut n = 0;
        for (i, s) in w.steps.iter().enumerate() {
            for (j, r) in s.requests.iter().enumerate() {
                n += 1;
                let outcome = match r.truth {
                    _ if r.delivery == Delivery::Abandoned => Outcome::Abandoned,
                    Truth::Genuine(Conduct::DoubleScan) => http(200, "NMVS_NC_PCK_23", false, None),
                    Truth::Genuine(_) => http(200, "NMVS_SUCCESS", true, None),
                    Truth::Corrupted(_) => http(200, "NMVS_FE_LOT_03", false, Some((&format!("C{n}"), "A2"))),
                    Truth::Falsified(Falsification::RecalledBatch) if r.operation == Operation::Verify => {
                        let mut answer = http(200, "NMVS_SUCCESS", true, None);
                        if let Outcome::Http { reasons, .. } = &mut answer {
                            reasons.push("RECALLED".into());
                        }
                        answer
                    }
                    Truth::Falsified(Falsification::RecalledBatch) => {
                        http(200, "NMVS_FE_LOT_01", false, None)
                    }
                    Truth::Falsified(k) => {
                        http(200, "X", false, Some((&format!("F{n}"), k.alert().unwrap())))
                    }
                };
                out.push(Answer { step: i, request: j, outcome });
            }
        }
        out
    }

    #[test]
    fn only_the_corrupted_scans_alert_falsely_and_every_falsification_is_detected() {
        let w = workload();
        let answers = as_the_rules_say(&w);
        let f = tally(&w, &answers, &[]);
        assert_eq!(f.transactions, w.transactions());
        assert_eq!(f.requests, w.requests());
        let corrupted: u64 = answers
            .iter()
            .filter(|a| matches!(w.steps[a.step].requests[a.request].truth, Truth::Corrupted(_)))
            .count() as u64;
        assert_eq!((f.false_alerts, f.false_alerts_clean), (corrupted, 0));
        assert_eq!(f.false_by_cause.values().flat_map(|c| c.values()).sum::<u64>(), f.false_alerts);
        let events = w.events.iter().filter(|e| e.kind != Falsification::RecalledBatch).count() as u64;
        assert_eq!((f.true_falsifications, f.detected, f.recall()), (events, events, 1.0));
        assert_eq!((f.detected_in_answers, f.recall_in_answers()), (events, 1.0));
        let recalled = w.events.len() as u64 - events;
        assert_eq!(f.recalled, Recalled { packs: recalled, stopped: recalled, alerted: 0 });
        assert!(f.unexpected.is_empty() && f.errors == 0, "{f:?}");
        assert_eq!(f.answered_not_listed, f.alerts, "nothing was listed");
    }

    #[test]
    fn a_retry_answered_with_the_stored_alert_is_one_alert_and_one_transaction() {
        let w = workload();
        let mut answers = as_the_rules_say(&w);
        let before = tally(&w, &answers, &[]);
        // A falsification's answer repeated, as a retry with the same client_trx_id gets it.
        let i = answers
            .iter()
            .position(|a| matches!(w.steps[a.step].requests[a.request].truth, Truth::Falsified(k) if k.alert().is_some()))
            .unwrap();
        answers.push(answers[i].clone());
        let after = tally(&w, &answers, &[]);
        assert_eq!(
            (after.alerts, after.transactions, after.detected),
            (before.alerts, before.transactions, before.detected)
        );
        assert_eq!(after.requests, before.requests + 1);
    }

    #[test]
    fn an_alert_only_the_nmvo_lists_counts_for_the_falsification_whose_code_it_names_or_as_false() {
        let w = workload();
        let mut answers = as_the_rules_say(&w);
        // The clone's dispense got no alert (the state change of the genuine pack had not arrived)...
        let e = w.events.iter().position(|e| e.kind == Falsification::CloneMultiMarket).unwrap();
        for a in answers.iter_mut().filter(|a| w.steps[a.step].event == Some(e)) {
            a.outcome = http(200, "NMVS_SUCCESS", true, None);
        }
        let missed = tally(&w, &answers, &[]);
        assert_eq!(missed.detected + 1, missed.true_falsifications);
        // ...and the A24 raised when it arrived is in the NMVO's list.
        let listed = |pc: &str, serial: &str| Listed {
            id: format!("L-{serial}"),
            code: "A24".into(),
            market: "FR".into(),
            product_code: pc.into(),
            serial: serial.into(),
        };
        let e = &w.events[e];
        let found = tally(&w, &answers, &[listed(&e.product_code, &e.serial)]);
        assert_eq!((found.detected, found.false_alerts), (found.true_falsifications, missed.false_alerts));
        assert_eq!(found.falsifications["clone_multimarket"].detected_by_list_only, 1);
        assert_eq!(found.detected_in_answers + 1, found.detected);
        let stray = tally(&w, &answers, &[listed("09501101530003", "NOSUCH")]);
        assert_eq!(stray.false_alerts, missed.false_alerts + 1);
        assert_eq!(stray.false_by_cause["listed_only/A24"]["A24"], 1);
        assert_eq!(stray.false_alerts_clean, 1);
    }

    #[test]
    fn an_alert_on_a_genuine_request_or_a_refused_dispense_is_reported_as_such() {
        let w = workload();
        let mut answers = as_the_rules_say(&w);
        let i = answers
            .iter()
            .position(|a| w.steps[a.step].requests[a.request].truth == Truth::Genuine(Conduct::Rescan))
            .unwrap();
        answers[i].outcome = http(200, "NMVS_NC_PC_02", false, Some(("G1", "A3")));
        let j = answers
            .iter()
            .position(|a| {
                let r = &w.steps[a.step].requests[a.request];
                r.truth == Truth::Genuine(Conduct::Plain) && r.operation == Operation::Supply
            })
            .unwrap();
        answers[j].outcome = http(200, "NMVS_NC_PCK_22", false, None);
        let k = answers
            .iter()
            .position(|a| {
                let r = &w.steps[a.step].requests[a.request];
                r.truth == Truth::Genuine(Conduct::Plain) && r.operation == Operation::Verify
            })
            .unwrap();
        answers[k].outcome = http(503, "NMVS_TI_UN_01", false, None);
        let f = tally(&w, &answers, &[]);
        assert_eq!(f.false_by_cause["genuine/rescan"]["A3"], 1);
        assert_eq!(f.false_alerts_clean, 1);
        assert_eq!(f.unexpected["genuine/plain supply: NMVS_NC_PCK_22"], 1);
        assert_eq!(f.errors, 1, "{:?}", f.first_errors);
    }
}
