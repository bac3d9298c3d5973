//! The national system as the agent sees it: a port that sends one single-pack request, or
//! forwards another end-user request as it came, and says what became of it. The binary wires
//! the end-user client over HTTPS; the tests script it, or point it at a real national system.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use openmvs_core::pack::Command;
use openmvs_wire::api::{BulkRequest, ErrorBody, PackRequest, PackResponse};

/// A future the port answers with.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What became of a request sent to the national system.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// It was processed (HTTP 200): accepted or refused by the rules.
    Answered(PackResponse),
    /// It was refused before being processed (a 4xx other than 429): bad input, a role, a
    /// transaction id used for another request.
    Refused {
        /// The HTTP status.
        status: u16,
        /// The error body.
        body: ErrorBody,
    },
    /// It was not processed and the system says when to come back: a 429 or a 503.
    Busy {
        /// The HTTP status.
        status: u16,
        /// The wait its `Retry-After` names, if any.
        retry_after: Option<Duration>,
        /// The error body, when there was one.
        body: Option<ErrorBody>,
    },
    /// No answer: the system could not be reached, failed (another 5xx), answered something that
    /// is not the contract's, or was slower than the agent waits. It may or may not have acted.
    Unreachable(String),
}

/// Another end-user request the agent forwards while the national system answers (bulk,
/// alerts), and never records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forward {
    /// `POST /v1/bulk`.
    SubmitBulk(BulkRequest),
    /// `GET /v1/bulk/{bulk_id}`.
    BulkStatus(String),
    /// `GET /v1/alerts`.
    Alerts {
        /// `status`.
        status: Option<String>,
        /// `limit`.
        limit: Option<usize>,
        /// `cursor`.
        cursor: Option<String>,
    },
    /// `GET /v1/alerts/{id}`.
    Alert(String),
}

/// The answer to a forwarded request, whatever its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    /// The HTTP status.
    pub status: u16,
    /// Its `Retry-After`, in seconds, if any.
    pub retry_after: Option<u64>,
    /// The body (JSON).
    pub body: Vec<u8>,
}

/// The national system, reached with the pharmacy's own client credentials.
pub trait Upstream: Send + Sync {
    /// `POST /v1/packs/{command}` (or `.../undo`) with `body`.
    fn pack(&self, command: Command, body: &PackRequest) -> BoxFuture<'_, Reply>;

    /// Another end-user request, forwarded; `Err` when no answer came.
    fn forward(&self, request: Forward) -> BoxFuture<'_, Result<Forwarded, String>>;
}

/// The path of a single-pack command: `verify`, `supply`, `supply/undo`, ...
pub fn pack_path(command: Command) -> String {
    match command {
        Command::Verify => "/v1/packs/verify".to_owned(),
        Command::Set(op) => format!("/v1/packs/{op}"),
        Command::Undo(op) => format!("/v1/packs/{op}/undo"),
    }
}
