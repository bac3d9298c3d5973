//! Counting, from what the systems answered and what the NMVOs list, against the workload's
//! ground truth: which alerts are false, which falsifications were caught. Pure: the answers and
//! the lists come in, the figures go out. `openmvs-bench alerts` counts with it what real systems
//! answered over HTTPS; a deterministic simulation can count what it answered in the same way,
//! building each request with [`body`] and reading each answer with [`outcome`].
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

use serde_json::{Value, json};

use crate::{Conduct, Corruption, Falsification, Input, Operation, Request, Truth, Workload};

/// The false-alert rate targeted (0.02 %).
pub const TARGET_FALSE_ALERT_RATE: f64 = 0.0002;
/// The recall targeted (every true falsification alerts).
pub const TARGET_RECALL: f64 = 1.0;

/// An alert named in an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRef {
    /// The alert's id.
    pub id: String,
    /// Its alert code (`A2`, `A24`, ...).
    pub code: String,
}

/// What one request got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An HTTP answer; `seen` is false when the terminal had given up on it (a timeout).
    Http {
        /// The HTTP status.
        status: u16,
        /// The answer's `return_code` (empty when it has none).
        return_code: String,
        /// The answer's `accepted`, when it has one.
        accepted: Option<bool>,
        /// The answer's `alert`, when it has one.
        alert: Option<AlertRef>,
        /// The codes of the answer's scan `warnings`.
        warnings: Vec<String>,
        /// Whether the answer says the request went to another market.
        intermarket: bool,
        /// The pack's `reasons` (a verify's `RECALLED`, ...).
        reasons: Vec<String>,
        /// False when the terminal had given up on the answer.
        seen: bool,
    },
    /// Sent, and the connection closed at once: no answer.
    Abandoned,
    /// Not sent or not answered, for a reason of the transport.
    Failed(String),
}

/// One request of the workload and what it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The step, an index into [`Workload::steps`].
    pub step: usize,
    /// The request, an index into that step's requests.
    pub request: usize,
    /// What it got.
    pub outcome: Outcome,
}

/// An alert as an NMVO lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The alert's id.
    pub id: String,
    /// Its alert code.
    pub code: String,
    /// The market whose NMVO lists it.
    pub market: String,
    /// The product code of the pack it is about.
    pub product_code: String,
    /// The serial of that pack.
    pub serial: String,
}

/// What one falsification kind got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindFigures {
    /// Falsifications of the kind in the workload.
    pub events: u64,
    /// Of them, those with at least one alert.
    pub detected: u64,
    /// Alert codes attributed to events of the kind.
    pub codes: BTreeMap<String, u64>,
    /// Of the detected, those whose only alert came from the NMVO's list.
    pub detected_by_list_only: u64,
}

/// Packs of recalled batches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recalled {
    /// Packs of recalled batches the workload presents.
    pub packs: u64,
    /// Answers that stopped one: a dispense refused with `NMVS_FE_LOT_01`, a verify `RECALLED`.
    pub stopped: u64,
    /// Alerts raised on them (false alerts).
    pub alerted: u64,
}

/// Everything counted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    /// Distinct (terminal, `client_trx_id`).
    pub transactions: u64,
    /// Requests answered or not.
    pub requests: u64,
    /// Requests abandoned (sent, the connection closed at once).
    pub abandoned: u64,
    /// Distinct alert ids, answered or listed.
    pub alerts: u64,
    /// Alerts not attributed to a falsification of an alerting kind.
    pub false_alerts: u64,
    /// False alerts on requests whose code arrived intact (no corruption): the rules allow none.
    pub false_alerts_clean: u64,
    /// Falsifications of an alerting kind in the workload (recalled packs left out).
    pub true_falsifications: u64,
    /// Of them, those with at least one alert.
    pub detected: u64,
    /// Of the detected, those with an alert in an answer (not only in an NMVO's list): caught
    /// while the code was being scanned.
    pub detected_in_answers: u64,
    /// Cause (the request's ground truth) -> alert code -> false alerts.
    pub false_by_cause: BTreeMap<String, BTreeMap<String, u64>>,
    /// Ground truth label of a transaction's first request -> transactions.
    pub transactions_by_kind: BTreeMap<String, u64>,
    /// Falsification kind (of an alerting kind) -> what its events got.
    pub falsifications: BTreeMap<String, KindFigures>,
    /// Packs of recalled batches.
    pub recalled: Recalled,
    /// Corruption -> outcome (`alert A2`, `HTTP 400 NMVS_TE_XM_02`, `refused <code>`, `accepted`).
    pub corruption_outcomes: BTreeMap<String, BTreeMap<String, u64>>,
    /// Corruption -> scan warning code -> answers that carried it.
    pub corruption_warnings: BTreeMap<String, BTreeMap<String, u64>>,
    /// Distinct alert ids the NMVOs list.
    pub listed: u64,
    /// Of them, those in no answer.
    pub listed_only: u64,
    /// Alert ids answered that no NMVO lists.
    pub answered_not_listed: u64,
    /// Alert ids answered to two different steps (never expected).
    pub alerts_shared: u64,
    /// Genuine requests answered with neither acceptance nor an alert, other than a double
    /// scan's repeat (`NMVS_NC_PCK_23`): what they got -> how many.
    pub unexpected: BTreeMap<String, u64>,
    /// Answers that are failures of the run, not of the rules: transport failures, HTTP statuses
    /// other than 200 and 400, a 400 on a code that arrived intact.
    pub errors: u64,
    /// The first few errors, each naming its step and request.
    pub first_errors: Vec<String>,
}

impl Figures {
    /// False alerts per transaction.
    pub fn false_alert_rate(&self) -> f64 {
        if self.transactions == 0 { 0.0 } else { self.false_alerts as f64 / self.transactions as f64 }
    }

    /// Detected / true falsifications (1 when there are none).
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
pub fn tally(w: &Workload, answers: &[Answer], listed: &[Listed]) -> Figures {
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

/// The JSON body of a request, as a terminal sends it to `POST /v1/packs/<operation>`.
pub fn body_json(r: &Request) -> Value {
    match &r.input {
        Input::Scan(scan) => json!({"client_trx_id": r.client_trx_id, "scan": scan}),
        Input::Fields(f) => json!({
            "client_trx_id": r.client_trx_id, "scheme": f.scheme(), "product_code": f.product_code,
            "serial": f.serial, "batch": f.batch, "expiry": f.expiry,
        }),
    }
}

/// [`body_json`], serialised.
pub fn body(r: &Request) -> Vec<u8> {
    body_json(r).to_string().into_bytes()
}

/// What an answer says: its HTTP `status` and its JSON `body` (`Value::Null` when it had none
/// or it was not JSON); `seen` is false when the terminal had given up on it.
pub fn outcome(status: u16, body: &Value, seen: bool) -> Outcome {
    let strings = |x: &Value, key: Option<&str>| -> Vec<String> {
        x.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| match key {
                        Some(k) => e[k].as_str(),
                        None => e.as_str(),
                    })
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let alert = match (&body["alert"]["id"], &body["alert"]["code"]) {
        (Value::String(id), Value::String(code)) => Some(AlertRef { id: id.clone(), code: code.clone() }),
        _ => None,
    };
    Outcome::Http {
        status,
        return_code: body["return_code"].as_str().unwrap_or_default().to_owned(),
        accepted: body["accepted"].as_bool(),
        alert,
        warnings: strings(&body["warnings"], Some("code")),
        intermarket: body["intermarket"].as_bool() == Some(true),
        reasons: strings(&body["pack"]["reasons"], None),
        seen,
    }
}

#[cfg(test)]
mod tests {
    use openmvs_core::ids::MarketCode;

    use super::*;
    use crate::{Config, Delivery, Fields, generate};

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

    #[test]
    fn a_request_body_carries_the_scan_or_the_fields_with_the_client_trx_id() {
        let mut r = Request {
            operation: Operation::Supply,
            client_trx_id: "DE-PH-0001-0000001".into(),
            input: Input::Scan("0109501101530003\u{1d}21X".into()),
            delivery: Delivery::Answered,
            truth: Truth::Genuine(Conduct::Plain),
        };
        let v: Value = serde_json::from_slice(&body(&r)).unwrap();
        assert_eq!(v, json!({"client_trx_id": "DE-PH-0001-0000001", "scan": "0109501101530003\u{1d}21X"}));
        r.input = Input::Fields(Fields {
            product_code: "09501101530003".into(),
            serial: "X".into(),
            batch: "B".into(),
            expiry: "271231".into(),
        });
        let v = body_json(&r);
        assert_eq!(v["scheme"], "GTIN");
        assert_eq!(v["serial"], "X");
        assert_eq!(serde_json::from_slice::<Value>(&body(&r)).unwrap(), v);
    }

    #[test]
    fn an_answer_is_read_for_its_alert_warnings_and_reasons() {
        let v = json!({"accepted": false, "return_code": "NMVS_FE_LOT_03", "alert": {"id": "ALR-1", "code": "A2"},
                       "warnings": [{"code": "LOWERCASE_FIELD", "message": "..."}], "intermarket": false,
                       "pack": {"reasons": ["RECALLED"]}});
        let Outcome::Http { alert, warnings, accepted, reasons, seen, .. } = outcome(200, &v, false) else {
            panic!()
        };
        assert_eq!(alert, Some(AlertRef { id: "ALR-1".into(), code: "A2".into() }));
        assert_eq!((warnings, accepted, seen), (vec!["LOWERCASE_FIELD".to_owned()], Some(false), false));
        assert_eq!(reasons, vec!["RECALLED".to_owned()]);
        let Outcome::Http { status, return_code, accepted, alert, .. } = outcome(502, &Value::Null, true)
        else {
            panic!()
        };
        assert_eq!((status, return_code.as_str(), accepted, alert), (502, "", None, None));
    }
}
