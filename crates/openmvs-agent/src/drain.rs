//! The replay of recorded operations once the national system answers again.
//!
//! A round takes the oldest pending operation of up to `concurrency` packs (a pack's later
//! operations wait for its earlier ones), as many as the token bucket allows, and replays them at
//! once; each sends the operation's own request with its own `client_trx_id`, so that an
//! operation the national system applied already (the agent died after sending it, or a
//! forwarded request timed out after the system acted) is answered from the system's idempotency
//! record and applied, and alerted, once. A decommission is preceded by a verify under a
//! transaction id derived from the operation's (the same at every replay), and sent or held as
//! `openmvs_core::offline::after_verify` decides; a decommission refused for load after its
//! verify is sent in a later round without verifying again. An undo of an operation that was not applied is
//! not sent. A 429 or 503 stops the replay for its `Retry-After`; no answer stops it for the
//! backoff. What did not apply goes on the pharmacist's list with the national system's answer.
//!
//! Tests step the rounds ([`Agent::drain_round`]) and move a fake clock; the binary runs
//! [`Agent::run_drain`], which sleeps until the round's `Wait` or a new recording.

use std::sync::Arc;
use std::time::Duration;

use openmvs_core::offline::{AfterVerify, Verified, after_verify};
use openmvs_core::pack::{Command, PackState, Reason};
use openmvs_core::return_code::ReturnCode;
use openmvs_core::time::Timestamp;
use openmvs_wire::api::{PackRequest, PackResponse};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::queue::{Finish, Op, Outcome};
use crate::upstream::Reply;
use crate::{Agent, AgentError};

/// What a round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// Nothing is pending.
    Idle,
    /// This many operations were finished or postponed; call again.
    Worked(usize),
    /// Nothing can be sent before this time: the national system did not answer or asked to
    /// wait, the bucket is empty, or every pending operation is postponed.
    Wait(Timestamp),
}

/// What became of one operation in a round.
enum Step {
    Finished(Finish),
    Postponed(i64, Timestamp),
    /// The national system did not answer or asked to wait (the link says until when).
    Stopped,
}

/// The transaction id of the verify sent before a recorded decommission: derived from the
/// operation's own, so every replay of the operation sends the same verify, which the national
/// system answers from its idempotency record the second time.
pub fn verify_trx_id(client_trx_id: &str) -> String {
    let digest = Sha256::digest(format!("openmvs-agent verify before\0{client_trx_id}").as_bytes());
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("AGENT-V-{hex}")
}

fn verified(resp: &PackResponse) -> Verified {
    Verified {
        code: ReturnCode::parse(&resp.return_code).unwrap_or(ReturnCode::PackInactive),
        state: resp.pack.as_ref().and_then(|p| PackState::parse(&p.state)),
        reasons: resp
            .pack
            .as_ref()
            .map(|p| p.reasons.iter().filter_map(|r| Reason::parse(r)).collect())
            .unwrap_or_default(),
    }
}

fn kept(status: u16, body: &impl serde::Serialize) -> String {
    serde_json::json!({"status": status, "body": body}).to_string()
}

fn answered(seq: i64, outcome: Outcome, resp: &PackResponse, at: Timestamp) -> Finish {
    Finish {
        seq,
        outcome,
        return_code: resp.return_code.clone(),
        message: resp.message.clone(),
        alert: resp.alert.as_ref().map(|a| (a.id.clone(), a.code.clone())),
        answer: Some(kept(200, resp)),
        at,
    }
}

impl Agent {
    /// One round of the replay.
    pub async fn drain_round(self: &Arc<Self>) -> Result<Round, AgentError> {
        let now = self.clock.now();
        if let Some(until) = self.paused_until(now) {
            return Ok(Round::Wait(until));
        }
        let due = self.queue.due(self.config.concurrency.max(1), now)?;
        if due.is_empty() {
            return Ok(match self.queue.next_due()? {
                None => Round::Idle,
                Some(t) => Round::Wait(t.max(now.plus(Duration::from_millis(1)))),
            });
        }
        let mut admitted = Vec::new();
        let mut empty_until = None;
        {
            let mut bucket = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
            for op in due {
                match bucket.take(now) {
                    Ok(()) => admitted.push(op),
                    Err(wait) => {
                        empty_until = Some(now.plus(wait));
                        break;
                    }
                }
            }
        }
        if admitted.is_empty() {
            return Ok(Round::Wait(empty_until.unwrap_or(now.plus(Duration::from_millis(1)))));
        }
        let mut tasks = tokio::task::JoinSet::new();
        for op in admitted {
            let agent = self.clone();
            tasks.spawn(async move { agent.replay(op).await });
        }
        let (mut finished, mut worked) = (Vec::new(), 0);
        while let Some(step) = tasks.join_next().await {
            match step {
                Ok(Step::Finished(f)) => {
                    finished.push(f);
                    worked += 1;
                }
                Ok(Step::Postponed(seq, until)) => {
                    self.queue.postpone(seq, until)?;
                    worked += 1;
                }
                Ok(Step::Stopped) => {}
                Err(e) => tracing::error!(cause = %e, "a replay task failed"),
            }
        }
        // One commit for the round. Should the agent die before it, the next start replays these
        // operations again, and the national system answers them from its idempotency records.
        self.queue.finish(&finished)?;
        if worked == 0 {
            // Nothing moved: the link says how long to wait (or, after a failure that set no
            // wait, the retry interval).
            let now = self.clock.now();
            return Ok(Round::Wait(self.paused_until(now).unwrap_or(now.plus(self.config.retry))));
        }
        Ok(Round::Worked(worked))
    }

    /// Runs the replay until `stop`: rounds while there is work, a sleep while it must wait, and
    /// a wait for the next recording while nothing is pending.
    pub async fn run_drain(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            let wait = match self.drain_round().await {
                Ok(Round::Worked(_)) => continue,
                Ok(Round::Wait(until)) => Some(until.since(self.clock.now())),
                Ok(Round::Idle) => None,
                Err(e) => {
                    tracing::error!(cause = %e, "the replay cannot read or write its queue");
                    Some(self.config.retry)
                }
            };
            tokio::select! {
                _ = stop.changed() => return,
                _ = self.recorded.notified() => {}
                _ = tokio::time::sleep(wait.unwrap_or(Duration::ZERO)), if wait.is_some() => {}
            }
        }
    }

    /// Sends one request of the replay and keeps the link's view up to date.
    async fn send(&self, command: Command, body: &PackRequest) -> Reply {
        let sent = tokio::time::timeout(self.config.timeout, self.upstream.pack(command, body)).await;
        let now = self.clock.now();
        let reply = sent.unwrap_or_else(|_| {
            Reply::Unreachable(format!("no answer within {} ms", self.config.timeout.as_millis()))
        });
        match &reply {
            Reply::Answered(_) => self.contact(now),
            Reply::Refused { status: 401, .. } => {
                tracing::error!(
                    "the national system refused the agent's client credentials: the replay waits (check client_id and client_secret)"
                );
                self.unreachable(now, "the national system refused the client credentials (HTTP 401)");
            }
            Reply::Refused { .. } => self.contact(now),
            Reply::Busy { status, retry_after, .. } => {
                self.contact(now);
                tracing::info!(status, ?retry_after, "the national system asks the replay to wait");
                self.busy(now, *retry_after);
            }
            Reply::Unreachable(why) => {
                tracing::warn!(cause = %why, "the national system did not answer the replay");
                self.unreachable(now, why);
            }
        }
        reply
    }

    async fn replay(&self, op: Op) -> Step {
        let _turn = self.locks.lock(&op.new.pack).await;
        let now = self.clock.now();
        let not_sent = |code: &str, message: String| {
            Step::Finished(Finish {
                seq: op.seq,
                outcome: Outcome::NotSent,
                return_code: code.to_owned(),
                message,
                alert: None,
                answer: None,
                at: now,
            })
        };
        let (Some(command), Ok(body)) =
            (Command::parse(&op.new.command), serde_json::from_str::<PackRequest>(&op.new.request))
        else {
            return not_sent("AGENT_UNREADABLE", "The recorded request could not be read back.".to_owned());
        };
        match command {
            Command::Verify => self.send_recorded(&op, command, &body).await,
            Command::Undo(operation) => {
                // An undo of an operation recorded here that was not applied would be refused
                // with an alert (the pack is not in the state it names): it is not sent.
                match self.queue.latest_before(&op.new.pack, operation.as_str(), op.seq) {
                    Ok(Some(Some(outcome))) if outcome != Outcome::Applied => not_sent(
                        "AGENT_UNDO_OF_UNAPPLIED",
                        format!(
                            "Not sent: the {operation} it undoes was recorded here and not applied (see that problem)."
                        ),
                    ),
                    _ => self.send_recorded(&op, command, &body).await,
                }
            }
            Command::Set(_) => {
                let known = self.verified().remove(&op.seq);
                let verified_now = known.is_none();
                let reply = match known {
                    // Verified in an earlier round, whose decommission did not get through.
                    Some(resp) => Reply::Answered(resp),
                    None => {
                        let mut verify = body.clone();
                        verify.client_trx_id = Some(verify_trx_id(&op.new.client_trx_id));
                        self.send(Command::Verify, &verify).await
                    }
                };
                match reply {
                    Reply::Answered(resp) => match after_verify(&verified(&resp)) {
                        AfterVerify::Send => {
                            if verified_now {
                                // The round's allowance paid for the verify; the decommission
                                // is a request of its own.
                                self.bucket
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .charge(self.clock.now());
                            }
                            let step = self.send_recorded(&op, command, &body).await;
                            if matches!(step, Step::Stopped) {
                                self.verified().insert(op.seq, resp);
                            }
                            step
                        }
                        AfterVerify::Hold => {
                            Step::Finished(answered(op.seq, Outcome::NotDispensable, &resp, self.clock.now()))
                        }
                        AfterVerify::Retry => {
                            Step::Postponed(op.seq, self.clock.now().plus(self.config.retry))
                        }
                    },
                    Reply::Refused { status, body } if status != 401 => Step::Finished(Finish {
                        seq: op.seq,
                        outcome: Outcome::Refused,
                        return_code: body.return_code.clone(),
                        message: body.message.clone(),
                        alert: None,
                        answer: Some(kept(status, &body)),
                        at: self.clock.now(),
                    }),
                    _ => Step::Stopped,
                }
            }
        }
    }

    /// The verify answers kept for decommissions that did not get through.
    fn verified(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<i64, PackResponse>> {
        self.verified.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends the recorded request itself and finishes the operation with the answer.
    async fn send_recorded(&self, op: &Op, command: Command, body: &PackRequest) -> Step {
        let reply = self.send(command, body).await;
        let now = self.clock.now();
        match reply {
            Reply::Answered(resp) => {
                let code = ReturnCode::parse(&resp.return_code);
                if code.is_some_and(ReturnCode::is_unreachable) {
                    return Step::Postponed(op.seq, now.plus(self.config.retry));
                }
                let outcome = match command {
                    Command::Verify if verified(&resp).dispensable() => Outcome::Applied,
                    Command::Verify => Outcome::NotDispensable,
                    _ if resp.accepted => Outcome::Applied,
                    _ => Outcome::Refused,
                };
                Step::Finished(answered(op.seq, outcome, &resp, now))
            }
            Reply::Refused { status, body } if status != 401 => Step::Finished(Finish {
                seq: op.seq,
                outcome: Outcome::Refused,
                return_code: body.return_code.clone(),
                message: body.message.clone(),
                alert: None,
                answer: Some(kept(status, &body)),
                at: now,
            }),
            _ => Step::Stopped,
        }
    }
}
