//! The workload's terminals: each sends its steps' requests in order, one phase after the other,
//! through the network to its national system's service (the same call the HTTP handler makes
//! once a token is checked). A request the network loses, or whose answer it loses, is sent again
//! with the same `client_trx_id`, as a real client retries, until an answer comes back; the
//! workload's own lost answers and abandoned requests are kept as the workload says.

use std::collections::{BTreeMap, VecDeque};

use openmvs_core::ids::{ClientId, MarketCode};
use openmvs_core::pack::{Command, Operation as CoreOperation};
use openmvs_core::return_code::ReturnCode;
use openmvs_national::{Actor, National};
use openmvs_wire::api::{PackRequest, PackResponse};
use openmvs_workload::tally::{Outcome, outcome};
use openmvs_workload::{Delivery, Operation, Request, Workload};
use serde_json::{Value, json};

/// The command of a workload operation.
pub fn command(op: Operation) -> Command {
    match op {
        Operation::Verify => Command::Verify,
        Operation::Supply => Command::Set(CoreOperation::Supply),
        Operation::Export => Command::Set(CoreOperation::Export),
        Operation::Destroy => Command::Set(CoreOperation::Destroy),
        Operation::UndoSupply => Command::Undo(CoreOperation::Supply),
    }
}

/// The client id of terminal `i`.
pub fn client_id(i: usize) -> String {
    format!("terminal-{i:04}")
}

/// One terminal: who it is and what it has left to send.
pub struct Terminal {
    /// Its identity at its national system.
    pub actor: Actor,
    /// Its steps' requests not yet sent, per phase: (step, request).
    queue: [VecDeque<(usize, usize)>; 2],
    /// The request it is retrying, if one got no answer.
    pub retry: Option<(usize, usize)>,
}

impl Terminal {
    /// The terminals of `w`.
    pub fn all(w: &Workload) -> Vec<Terminal> {
        let mut terms: Vec<Terminal> = w
            .terminals
            .iter()
            .enumerate()
            .map(|(i, t)| Terminal {
                actor: Actor {
                    client_id: ClientId::from(client_id(i)),
                    role: t.role,
                    market: t.market,
                    location: t.location.clone(),
                },
                queue: [VecDeque::new(), VecDeque::new()],
                retry: None,
            })
            .collect();
        for (si, step) in w.steps.iter().enumerate() {
            let phase = usize::from(step.phase.min(1));
            for ri in 0..step.requests.len() {
                terms[step.terminal].queue[phase].push_back((si, ri));
            }
        }
        terms
    }

    /// Whether it has anything to send in `phase` (a retry included).
    pub fn has_work(&self, phase: u8) -> bool {
        self.retry.is_some() || !self.queue[usize::from(phase.min(1))].is_empty()
    }

    /// The next request to send in `phase`.
    pub fn next(&mut self, phase: u8) -> Option<(usize, usize)> {
        self.retry.take().or_else(|| self.queue[usize::from(phase.min(1))].pop_front())
    }

    /// Its market.
    pub fn market(&self) -> MarketCode {
        self.actor.market
    }
}

/// The request as its JSON body reads (the same body the HTTP API takes).
pub fn pack_request(r: &Request) -> Result<PackRequest, String> {
    let body = openmvs_workload::tally::body(r);
    serde_json::from_slice(&body).map_err(|e| format!("the request body does not read: {e}"))
}

/// What the national system answered, as the terminal reads it: the HTTP status and JSON body.
pub async fn send(national: &National, actor: &Actor, r: &Request) -> (u16, Value) {
    let req = match pack_request(r) {
        Ok(req) => req,
        Err(e) => return (400, json!({"return_code": "NMVS_TE_XM_02", "message": e})),
    };
    match national.pack(actor, command(r.operation), &req).await {
        Ok(answer) => (200, serde_json::to_value(PackResponse::from(&answer)).unwrap_or(Value::Null)),
        Err(e) => (e.code.http_status(), json!({"return_code": e.code.as_str(), "message": e.message})),
    }
}

/// The outcome the tally counts, for an answer the terminal read (`seen`) or not.
pub fn read(status: u16, body: &Value, r: &Request) -> Outcome {
    outcome(status, body, r.delivery == Delivery::Answered)
}

/// The first answer each state-changing transaction got (terminal, `client_trx_id`), whether or
/// not the terminal saw it: every later answer to the same transaction must be the same.
#[derive(Default)]
pub struct Answered {
    first: BTreeMap<(usize, String), String>,
}

impl Answered {
    /// Records `body` for the transaction, or compares it with the first; answers a violation.
    /// "The hub (or the market behind it) could not be reached" is not an answer the national
    /// system keeps: a retry asks again, so such an answer is not compared.
    pub fn check(&mut self, terminal: usize, r: &Request, status: u16, body: &Value) -> Option<String> {
        let code = body["return_code"].as_str().and_then(ReturnCode::parse);
        if r.operation == Operation::Verify || status != 200 || code.is_none_or(ReturnCode::is_unreachable) {
            return None;
        }
        let seen = format!(
            "{} accepted={} alert={}",
            body["return_code"].as_str().unwrap_or_default(),
            body["accepted"],
            body["alert"]["id"]
        );
        match self.first.get(&(terminal, r.client_trx_id.clone())) {
            None => {
                self.first.insert((terminal, r.client_trx_id.clone()), seen);
                None
            }
            Some(first) if *first == seen => None,
            Some(first) => Some(format!(
                "idempotency: terminal {terminal} {} {} answered '{first}' first and '{seen}' on a retry",
                r.operation.as_str(),
                r.client_trx_id
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use openmvs_workload::{Delivery, Fields, Input, Truth};

    use super::*;

    fn supply(trx: &str) -> Request {
        Request {
            operation: Operation::Supply,
            client_trx_id: trx.into(),
            input: Input::Fields(Fields {
                product_code: "09501101530003".into(),
                serial: "S1".into(),
                batch: "B1".into(),
                expiry: "281231".into(),
            }),
            delivery: Delivery::Answered,
            truth: Truth::Genuine(openmvs_workload::Conduct::Plain),
        }
    }

    #[test]
    fn a_retry_must_get_the_first_answer_of_its_transaction() {
        let mut a = Answered::default();
        let ok = json!({"return_code": "NMVS_SUCCESS", "accepted": true});
        assert_eq!(a.check(1, &supply("t1"), 200, &ok), None);
        assert_eq!(a.check(1, &supply("t1"), 200, &ok), None);
        // Another terminal's transaction of the same id is another transaction.
        let refused = json!({"return_code": "NMVS_NC_PCK_22", "accepted": false});
        assert_eq!(a.check(2, &supply("t1"), 200, &refused), None);
        let v = a.check(1, &supply("t1"), 200, &refused).expect("a different answer to a retry");
        assert!(v.contains("NMVS_SUCCESS") && v.contains("NMVS_NC_PCK_22"), "{v}");
        // An unreachable hub is not an answer kept: the retry asks again and may be answered.
        let unreachable = json!({"return_code": "NMVS_TI_HUB_01", "accepted": false});
        assert_eq!(a.check(3, &supply("t3"), 200, &unreachable), None);
        assert_eq!(a.check(3, &supply("t3"), 200, &ok), None);
        assert!(a.check(3, &supply("t3"), 200, &unreachable).is_none());
    }
}
