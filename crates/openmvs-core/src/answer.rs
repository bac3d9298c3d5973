//! The answers of the services that no rule module of the core owns: a single-pack request's
//! answer as the terminal is given it, a bulk job, an authority's read of the trail, a token, a
//! client of a national system, an OBP's callback. Like every domain value they are not
//! `Serialize`: `openmvs-wire` makes their JSON.

use crate::ids::{AlertId, BulkId, ClientId, ClientTrxId, Location, PackIdentifier};
use crate::pack::{PackState, PackView};
use crate::return_code::{AlertCode, ReturnCode};
use crate::roles::Role;
use crate::scan::ScanWarning;
use crate::time::Timestamp;

/// The answer to a processed single-pack request, accepted or refused by the rules: what the
/// terminal is told, and what a repeat of the request is told again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackAnswer {
    /// The system's id of this transaction.
    pub trx_id: String,
    /// The client's id of this transaction.
    pub client_trx_id: ClientTrxId,
    /// Whether the operation did what was asked.
    pub accepted: bool,
    /// The return code.
    pub code: ReturnCode,
    /// Its level, 1-5, as the catalogue gave it when the request was decided.
    pub level: u8,
    /// What it means, as the catalogue said it when the request was decided.
    pub message: String,
    /// The pack; `None` when it is unknown.
    pub pack: Option<AnsweredPack>,
    /// The product's master data, when the product is known.
    pub product: Option<ProductSummary>,
    /// The alert the request raised, if any.
    pub alert: Option<AlertRef>,
    /// Whether another market processed the request through the hub.
    pub intermarket: bool,
    /// Scan-integrity hints, when a raw scan was given.
    pub warnings: Vec<ScanWarning>,
}

/// The pack an answer is about: its identifier as the request gave it, and what the terminal is
/// told about it after the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnsweredPack {
    /// The identifier.
    pub id: PackIdentifier,
    /// State, reasons and whether it may be dispensed.
    pub view: PackView,
}

/// The product master data a terminal is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductSummary {
    /// Name.
    pub name: String,
    /// Common name.
    pub common_name: String,
    /// Strength.
    pub strength: String,
    /// Pharmaceutical form.
    pub form: String,
    /// Pack size.
    pub pack_size: String,
}

/// An alert a request raised, as its answer names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRef {
    /// The alert id.
    pub id: AlertId,
    /// The hub alert code.
    pub code: AlertCode,
}

/// The answer to an accepted bulk request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkAccepted {
    /// The id to fetch its results with.
    pub bulk_id: BulkId,
}

/// Where a bulk job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkStatus {
    /// Accepted, waiting for a worker.
    Pending,
    /// Being processed.
    Running,
    /// Every row has a result.
    Done,
}

impl BulkStatus {
    /// The upper-case name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            BulkStatus::Pending => "PENDING",
            BulkStatus::Running => "RUNNING",
            BulkStatus::Done => "DONE",
        }
    }

    /// Parses an upper-case name.
    pub fn parse(s: &str) -> Option<BulkStatus> {
        [BulkStatus::Pending, BulkStatus::Running, BulkStatus::Done].into_iter().find(|b| b.as_str() == s)
    }
}

/// What one row of a bulk request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkRowResult {
    /// The serial, as the row gave it.
    pub serial: String,
    /// The product code, as the row gave it.
    pub product_code: String,
    /// Whether the row did what it asked.
    pub accepted: bool,
    /// The return code.
    pub code: ReturnCode,
    /// The pack's state afterwards, if known.
    pub state: Option<PackState>,
    /// The alert raised, if any.
    pub alert: Option<AlertRef>,
}

/// One row of a bulk job as its submitter sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkRowRequest {
    /// The operation, e.g. `verify`, `supply-undo`.
    pub operation: String,
    /// The scheme.
    pub scheme: String,
    /// The product code.
    pub product_code: String,
    /// The serial.
    pub serial: String,
    /// The batch.
    pub batch: String,
    /// The expiry, `YYMMDD`.
    pub expiry: String,
    /// The submitter's own label of the row, if it gave one.
    pub label: Option<String>,
}

/// A bulk job as its submitter reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkReport {
    /// The bulk id.
    pub bulk_id: BulkId,
    /// Where the job is.
    pub status: BulkStatus,
    /// Rows processed so far.
    pub done: u64,
    /// Rows in the request.
    pub total: u64,
    /// The results in request order, once done.
    pub results: Vec<BulkRowResult>,
}

/// One record of the audit trail as an authority reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecordView {
    /// Its position in the market's chain.
    pub seq: u64,
    /// When.
    pub at: Timestamp,
    /// Who.
    pub actor: String,
    /// In which role.
    pub role: String,
    /// From where.
    pub location: String,
    /// What.
    pub operation: String,
    /// What it was done to: a pack (`GTIN/<product code>/<serial>`), a batch
    /// (`GTIN/<product code>/#<batch>`) or product (`GTIN/<product code>/`) the hub delivered, an
    /// alert (`alert/<id>`), a client (`client/<id>`), or a message id.
    pub subject: String,
    /// The outcome's return code.
    pub return_code: String,
    /// The request, as the record holds it (JSON, as a rule).
    pub request: String,
    /// The result, as the record holds it (JSON, as a rule).
    pub result: String,
}

/// An access token issued to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The bearer token.
    pub access_token: String,
    /// Seconds until it expires.
    pub expires_in: i64,
}

/// A client of a national system as its NMVO sees it: never its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientView {
    /// The client id.
    pub client_id: ClientId,
    /// Its role.
    pub role: Role,
    /// Its premises.
    pub location: Location,
    /// Its name, for people.
    pub name: String,
    /// Whether it is cut off (its tokens are refused and it gets no new one).
    pub disabled: bool,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last obtained a token or made a request; `None`: never.
    pub last_used_at: Option<Timestamp>,
}

/// Where the hub posts an OBP's events, and the secret their signatures are made with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackAnswer {
    /// The URL, as set.
    pub url: String,
    /// The secret the OBP checks signatures with: 64 hex digits. The signature of a body is the
    /// hex HMAC-SHA256 of the body under these 64 characters as key.
    pub secret: String,
}
