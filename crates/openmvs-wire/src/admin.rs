//! Bodies of the operator routes that exist only in demonstrations (`openmvs demo --fake-clock`).

use serde::{Deserialize, Serialize};

/// `POST /admin/v1/clock`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClockAdvance {
    /// Seconds to move the shared clock forward.
    pub advance_seconds: u64,
}

/// The clock after a move.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ClockAnswer {
    /// The time now, RFC 3339 UTC.
    pub now: String,
}
