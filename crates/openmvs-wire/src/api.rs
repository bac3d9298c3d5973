//! Request and response bodies of the end-user API (api.md §2), exactly as they travel.
//!
//! Requests refuse unknown fields, so a misspelt optional field is an error instead of being
//! silently ignored.

use serde::{Deserialize, Serialize};

/// The body of `POST /v1/packs/{operation}` and `.../undo`: the identifier given field by field,
/// or as a raw scan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PackRequest {
    /// The client's id for this transaction, unique per client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_trx_id: Option<String>,
    /// `GTIN` or `PPN`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// The product code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_code: Option<String>,
    /// The serial number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// The batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<String>,
    /// The expiry, `YYMMDD`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiry: Option<String>,
    /// The raw scan instead of the fields (GS as `\\u001d`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scan: Option<String>,
    /// `SCANNED` or `MANUAL`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry_mode: Option<String>,
}

/// The pack as the terminal sees it after the operation.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct PackView {
    /// `GTIN` or `PPN`.
    pub scheme: String,
    /// The product code.
    pub product_code: String,
    /// The serial.
    pub serial: String,
    /// The batch.
    pub batch: String,
    /// The expiry as encoded in the request.
    pub expiry: String,
    /// The state after the operation.
    pub state: String,
    /// `EXPIRED`, `RECALLED`, `WITHDRAWN`.
    pub reasons: Vec<String>,
    /// Whether the pack may be dispensed.
    pub dispensable: bool,
}

/// Product master data shown to the terminal.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ProductView {
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

/// An alert raised by a request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct AlertRef {
    /// The alert id.
    pub id: String,
    /// The hub alert code, e.g. `A24`.
    pub code: String,
}

/// A scan-integrity hint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Warning {
    /// Stable code.
    pub code: String,
    /// What to do.
    pub message: String,
}

/// The answer to a processed single-pack request (HTTP 200), accepted or refused by the rules.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct PackResponse {
    /// The system's id of this transaction.
    pub trx_id: String,
    /// The client's id of this transaction.
    pub client_trx_id: String,
    /// Whether the operation did what was asked.
    pub accepted: bool,
    /// The return code.
    pub return_code: String,
    /// Its level, 1-5.
    pub level: u8,
    /// What it means.
    pub message: String,
    /// The pack, or null when unknown.
    pub pack: Option<PackView>,
    /// The product, when known.
    pub product: Option<ProductView>,
    /// The alert raised, if any.
    pub alert: Option<AlertRef>,
    /// Whether another market processed the request through the hub.
    pub intermarket: bool,
    /// Scan-integrity hints.
    pub warnings: Vec<Warning>,
}

/// One refusal detail: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ErrorDetail {
    /// The field (a JSON path such as `serial` or `transactions[3].expiry`), or `body`.
    pub field: String,
    /// The rule it breaks.
    pub message: String,
}

/// The body of every HTTP error.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ErrorBody {
    /// The return code.
    pub return_code: String,
    /// What went wrong.
    pub message: String,
    /// Which fields and why.
    pub details: Vec<ErrorDetail>,
}

impl From<&openmvs_core::error::ErrorDetail> for ErrorDetail {
    fn from(d: &openmvs_core::error::ErrorDetail) -> ErrorDetail {
        ErrorDetail { field: d.field.clone(), message: d.message.clone() }
    }
}

impl From<&openmvs_core::error::ApiError> for ErrorBody {
    fn from(e: &openmvs_core::error::ApiError) -> ErrorBody {
        ErrorBody {
            return_code: e.code.as_str().to_owned(),
            message: e.message.clone(),
            details: e.details.iter().map(ErrorDetail::from).collect(),
        }
    }
}

/// The OAuth2 token answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct TokenResponse {
    /// The bearer token.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until it expires.
    pub expires_in: i64,
}

/// An OAuth2 error (RFC 6749 §5.2).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct OAuthError {
    /// `invalid_request`, `invalid_client`, `unsupported_grant_type`...
    pub error: String,
    /// What went wrong.
    pub error_description: String,
}

/// One row of a mixed bulk request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BulkRow {
    /// The operation, e.g. `verify`, `supply`, `supply-undo`.
    pub operation: String,
    /// `GTIN` or `PPN`.
    pub scheme: String,
    /// Product code.
    pub product_code: String,
    /// Serial.
    pub serial: String,
    /// Batch.
    pub batch: String,
    /// Expiry.
    pub expiry: String,
}

/// The body of `POST /v1/bulk`: homogeneous (one operation, product, batch and expiry, many
/// serials) or mixed (`transactions`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    /// The client's id for this bulk.
    pub client_trx_id: Option<String>,
    /// Homogeneous: the operation.
    pub operation: Option<String>,
    /// Homogeneous: the scheme.
    pub scheme: Option<String>,
    /// Homogeneous: the product code.
    pub product_code: Option<String>,
    /// Homogeneous: the batch.
    pub batch: Option<String>,
    /// Homogeneous: the expiry.
    pub expiry: Option<String>,
    /// Homogeneous: the serials.
    pub serials: Option<Vec<String>>,
    /// Mixed: the rows.
    pub transactions: Option<Vec<BulkRow>>,
}

/// `202` answer to a bulk request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct BulkAccepted {
    /// The id to fetch results with.
    pub bulk_id: String,
}

/// One result row of a bulk request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct BulkResult {
    /// The serial.
    pub serial: String,
    /// The product code.
    pub product_code: String,
    /// Whether the row did what it asked.
    pub accepted: bool,
    /// The return code.
    pub return_code: String,
    /// The pack's state afterwards, if known.
    pub state: Option<String>,
    /// The alert raised, if any.
    pub alert: Option<AlertRef>,
}

/// `GET /v1/bulk/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct BulkStatusResponse {
    /// The bulk id.
    pub bulk_id: String,
    /// `PENDING`, `RUNNING` or `DONE`.
    pub status: String,
    /// Rows processed so far.
    pub done: u64,
    /// Rows in the request.
    pub total: u64,
    /// The results in request order, once `DONE`.
    pub results: Vec<BulkResult>,
}

/// An alert as listed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct AlertView {
    /// Id.
    pub id: String,
    /// Hub alert code.
    pub code: String,
    /// Return code that raised it.
    pub return_code: String,
    /// Market.
    pub market: String,
    /// Product code.
    pub product_code: String,
    /// Serial.
    pub serial: String,
    /// Batch.
    pub batch: String,
    /// Location of the request.
    pub location: String,
    /// When raised.
    pub created_at: String,
    /// `OPEN`, `INVESTIGATING`, `ESCALATED`, `CLOSED`.
    pub status: String,
    /// Classification, once closed.
    pub classification: Option<String>,
    /// Last comment.
    pub comment: Option<String>,
}

/// `GET /v1/alerts`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct AlertList {
    /// The page.
    pub alerts: Vec<AlertView>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// `POST /v1/alerts/{id}/status`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertStatusRequest {
    /// The new status.
    pub status: String,
    /// Required when closing.
    pub classification: Option<String>,
    /// At most 500 characters.
    pub comment: Option<String>,
}

/// One audit record as an authority reads it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct AuditRecordView {
    /// Position in the market's chain.
    pub seq: u64,
    /// When.
    pub at: String,
    /// Who.
    pub actor: String,
    /// In which role.
    pub role: String,
    /// From where.
    pub location: String,
    /// What.
    pub operation: String,
    /// Outcome.
    pub return_code: String,
    /// The request as received.
    pub request: serde_json::Value,
    /// The result as answered.
    pub result: serde_json::Value,
}

/// `GET /v1/audit/packs/...`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct AuditRecords {
    /// In chain order.
    pub records: Vec<AuditRecordView>,
}
