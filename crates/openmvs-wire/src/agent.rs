//! The shapes of the offline agent's own routes (`openmvs agent`): its status with the
//! pharmacist's list of problems found when recorded operations were replayed, and the
//! acknowledgement of a problem. The routes it shares with the national system take and give that
//! system's shapes ([`crate::api`]) unchanged.

use serde::{Deserialize, Serialize};

use crate::api::AlertRef;

/// `GET /status` of the agent.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct AgentStatus {
    /// The national system the agent forwards to.
    pub national_url: String,
    /// Whether the last attempt to reach it got an answer.
    pub online: bool,
    /// Operations recorded and not yet replayed.
    pub queue_length: u64,
    /// When the oldest of them was recorded.
    pub oldest_recorded_at: Option<String>,
    /// How long ago, in seconds.
    pub oldest_age_seconds: Option<u64>,
    /// The last time the national system answered (anything, even a refusal).
    pub last_contact_at: Option<String>,
    /// What went wrong at the last failed attempt, while it is not answering.
    pub last_failure: Option<String>,
    /// When the replay tries again, while it waits (the national system is down or asked to wait).
    pub next_attempt_at: Option<String>,
    /// Operations recorded offline and since replayed, in total.
    pub replayed: u64,
    /// Problems not acknowledged yet.
    pub problems_open: u64,
    /// Those problems, oldest first.
    pub problems: Vec<Problem>,
}

/// An operation recorded offline that the replay did not apply as recorded: the pharmacist must
/// look at the pack (and at the patient it went to).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Problem {
    /// The problem's id, for the acknowledgement.
    pub id: i64,
    /// The operation as recorded: `verify`, `supply`, `supply-undo`, ...
    pub operation: String,
    /// The transaction id the pharmacy software gave it.
    pub client_trx_id: String,
    /// `GTIN` or `PPN`.
    pub scheme: String,
    /// The product code.
    pub product_code: String,
    /// The serial.
    pub serial: String,
    /// The batch.
    pub batch: String,
    /// The expiry as encoded.
    pub expiry: String,
    /// When it was recorded.
    pub recorded_at: String,
    /// When the replay found the problem.
    pub found_at: String,
    /// `REFUSED` (the national system refused the operation), `NOT_DISPENSABLE` (the verify
    /// showed that the pack must not be dispensed; a decommission was not sent), or `NOT_SENT`
    /// (an undo whose operation was never applied).
    pub outcome: String,
    /// The national system's return code (`NMVS_...`), or the agent's reason for `NOT_SENT`.
    pub return_code: String,
    /// What it means.
    pub message: String,
    /// The alert the national system raised, if any.
    pub alert: Option<AlertRef>,
    /// The national system's answer as it came (a single-pack response or an error body, with
    /// its HTTP status), null for `NOT_SENT`.
    pub answer: Option<serde_json::Value>,
    /// When it was acknowledged.
    pub acknowledged_at: Option<String>,
    /// Who acknowledged it, as they said.
    pub acknowledged_by: Option<String>,
}

/// `GET /v1/agent/problems`: every problem, acknowledged or not, oldest first.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ProblemList {
    /// The problems.
    pub problems: Vec<Problem>,
}

/// The body of `POST /v1/agent/problems/{id}/acknowledge` (optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AcknowledgeRequest {
    /// Who acknowledges (a name or initials), kept with the problem.
    pub by: Option<String>,
}
