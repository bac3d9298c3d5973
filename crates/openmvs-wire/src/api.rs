//! Request and response bodies of the end-user API (api.md §2), exactly as they travel.
//!
//! Requests refuse unknown fields, so a misspelt optional field is an error instead of being
//! silently ignored. Each answer is made from the domain value the service answers with (a `From`
//! impl); the answers that are kept or relayed also read back into that value (`to_answer` and
//! the like), so that it makes the same JSON again.

use openmvs_core::alert::{self, AlertStatus, Classification};
use openmvs_core::answer;
use openmvs_core::ids::{
    AlertId, Batch, BulkId, ClientTrxId, Expiry, Location, MarketCode, PackIdentifier, ProductCode, Scheme,
    Serial,
};
use openmvs_core::pack::{self, PackState, Reason};
use openmvs_core::return_code::{AlertCode, ReturnCode};
use openmvs_core::scan::{ScanWarning, WarningCode};
use openmvs_core::time::{Date, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::schema;

/// The body of `POST /v1/packs/{operation}` and `.../undo`: the identifier given field by field,
/// or as a raw scan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(
    json!({"client_trx_id": "pos7-000123", "scheme": "GTIN", "product_code": "09501101530003",
           "serial": "X4K9P7Q2M8R5", "batch": "ABC123", "expiry": "271231"}),
    json!({"client_trx_id": "pos7-000124", "scan": "]d201095011015300031727123110ABC123\u{1d}21X4K9P7Q2M8R5", "entry_mode": "SCANNED"})
))]
pub struct PackRequest {
    /// The client's id for this transaction, unique per client.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = true, value_type = schema::ClientTrxId)]
    pub client_trx_id: Option<String>,
    /// `GTIN` or `PPN`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<schema::Scheme>)]
    pub scheme: Option<String>,
    /// The product code.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<schema::ProductCode>)]
    pub product_code: Option<String>,
    /// The serial number.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<schema::SerialNumber>)]
    pub serial: Option<String>,
    /// The batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<schema::BatchNumber>)]
    pub batch: Option<String>,
    /// The expiry, `YYMMDD`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<schema::ExpiryDate>)]
    pub expiry: Option<String>,
    /// The raw scan instead of the fields (GS as `\\u001d`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 512)]
    pub scan: Option<String>,
    /// `SCANNED` or `MANUAL`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<schema::EntryMode>)]
    pub entry_mode: Option<String>,
}

/// The pack as the terminal sees it after the operation.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub struct PackView {
    /// `GTIN` or `PPN`.
    #[schema(value_type = schema::Scheme)]
    pub scheme: String,
    /// The product code.
    #[schema(value_type = schema::ProductCode)]
    pub product_code: String,
    /// The serial.
    #[schema(value_type = schema::SerialNumber)]
    pub serial: String,
    /// The batch.
    #[schema(value_type = schema::BatchNumber)]
    pub batch: String,
    /// The expiry as encoded in the request.
    #[schema(value_type = schema::ExpiryDate)]
    pub expiry: String,
    /// The state after the operation.
    #[schema(value_type = schema::PackStateName)]
    pub state: String,
    /// `EXPIRED`, `RECALLED`, `WITHDRAWN`.
    #[schema(value_type = Vec<schema::ReasonName>)]
    pub reasons: Vec<String>,
    /// Whether the pack may be dispensed.
    pub dispensable: bool,
}

/// Product master data shown to the terminal.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub struct AlertRef {
    /// The alert id.
    pub id: String,
    /// The hub alert code, e.g. `A24`.
    #[schema(value_type = schema::AlertCodeName)]
    pub code: String,
}

/// A scan-integrity hint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub struct Warning {
    /// Stable code.
    #[schema(value_type = schema::WarningCodeName)]
    pub code: String,
    /// What to do.
    pub message: String,
}

/// The answer to a processed single-pack request (HTTP 200), accepted or refused by the rules.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[schema(examples(json!({
    "trx_id": "TRX-01a227e36092-e577faac0f16cfd0", "client_trx_id": "pos7-000123",
    "accepted": true, "return_code": "NMVS_SUCCESS", "level": 1, "message": "Done.",
    "pack": {"scheme": "GTIN", "product_code": "09501101530003", "serial": "X4K9P7Q2M8R5",
             "batch": "ABC123", "expiry": "271231", "state": "ACTIVE", "reasons": [], "dispensable": true},
    "product": {"name": "Examplomab 10 mg tablets", "common_name": "examplomab", "strength": "10 mg",
                "form": "TABLET", "pack_size": "30"},
    "alert": null, "intermarket": false, "warnings": []
}), json!({
    "trx_id": "TRX-01a227e36123-45b93e0ddaafc04f", "client_trx_id": "pos7-000125",
    "accepted": false, "return_code": "NMVS_NC_PC_02", "level": 5,
    "message": "The serial number is unknown for this product. An alert was raised: do not dispense the pack.",
    "pack": null,
    "product": {"name": "Examplomab 10 mg tablets", "common_name": "examplomab", "strength": "10 mg",
                "form": "TABLET", "pack_size": "30"},
    "alert": {"id": "ALR-01a227e36123-45b93e0ddaafc04f", "code": "A3"}, "intermarket": false, "warnings": []
})))]
pub struct PackResponse {
    /// The system's id of this transaction.
    pub trx_id: String,
    /// The client's id of this transaction.
    pub client_trx_id: String,
    /// Whether the operation did what was asked.
    pub accepted: bool,
    /// The return code.
    #[schema(value_type = schema::ReturnCodeName)]
    pub return_code: String,
    /// Its level, 1-5.
    #[schema(minimum = 1, maximum = 5)]
    pub level: u8,
    /// What it means.
    pub message: String,
    /// The pack, or null when unknown.
    #[schema(required = true)]
    pub pack: Option<PackView>,
    /// The product, when known.
    #[schema(required = true)]
    pub product: Option<ProductView>,
    /// The alert raised, if any.
    #[schema(required = true)]
    pub alert: Option<AlertRef>,
    /// Whether another market processed the request through the hub.
    pub intermarket: bool,
    /// Scan-integrity hints.
    pub warnings: Vec<Warning>,
}

/// One refusal detail: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// The field (a JSON path such as `serial` or `transactions[3].expiry`), or `body`.
    pub field: String,
    /// The rule it breaks.
    pub message: String,
}

/// The body of every HTTP error.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[schema(examples(json!({
    "return_code": "NMVS_FE_GR_01",
    "message": "The product code '09501101530004' fails its check digit: check digit is 4, expected 3.",
    "details": [{"field": "product_code", "message": "'09501101530004' check digit is 4, expected 3"}]
})))]
pub struct ErrorBody {
    /// The return code.
    #[schema(value_type = schema::ReturnCodeName)]
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

/// The form of `POST /oauth/token` (`application/x-www-form-urlencoded`, RFC 6749 §4.4).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[schema(examples(json!({"grant_type": "client_credentials", "client_id": "cl_9502d35169718f7dbe9cf7b17e344cec",
    "client_secret": "uW8iDkMA9H3gSRtu28gxXb6c6RBSJS2KhlxH0W3nd8A"})))]
pub struct TokenRequest {
    /// Only `client_credentials`.
    #[schema(value_type = String, pattern = "^client_credentials$")]
    pub grant_type: String,
    /// The client id `openmvs admin client create` printed.
    pub client_id: String,
    /// Its secret.
    pub client_secret: String,
}

/// The OAuth2 token answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[schema(examples(json!({"access_token": "eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0.eyJzdWIiOiJjbF85NTAyIn0.c2lnbmF0dXJl",
                             "token_type": "Bearer", "expires_in": 3600})))]
pub struct TokenResponse {
    /// The bearer token.
    pub access_token: String,
    /// Always `Bearer`.
    #[schema(examples("Bearer"))]
    pub token_type: String,
    /// Seconds until it expires.
    pub expires_in: i64,
}

/// An OAuth2 error (RFC 6749 §5.2).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[schema(examples(json!({"error": "invalid_client", "error_description": "invalid client id or client secret"})))]
pub struct OAuthError {
    /// `invalid_request`, `invalid_client`, `unsupported_grant_type`...
    pub error: String,
    /// What went wrong.
    pub error_description: String,
}

/// One row of a mixed bulk request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRow {
    /// The operation, e.g. `verify`, `supply`, `supply-undo`.
    #[schema(value_type = schema::BulkOperation)]
    pub operation: String,
    /// `GTIN` or `PPN`.
    #[schema(value_type = schema::Scheme)]
    pub scheme: String,
    /// Product code.
    #[schema(value_type = schema::ProductCode)]
    pub product_code: String,
    /// Serial.
    #[schema(value_type = schema::SerialNumber)]
    pub serial: String,
    /// Batch.
    #[schema(value_type = schema::BatchNumber)]
    pub batch: String,
    /// Expiry.
    #[schema(value_type = schema::ExpiryDate)]
    pub expiry: String,
}

/// The body of `POST /v1/bulk`: homogeneous (one operation, product, batch and expiry, many
/// serials) or mixed (`transactions`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(
    json!({"client_trx_id": "wh3-bulk-0001", "operation": "supply", "scheme": "GTIN",
           "product_code": "09501101530003", "batch": "ABC123", "expiry": "271231",
           "serials": ["X4K9P7Q2M8R5", "X4K9P7Q2M8R6"]}),
    json!({"client_trx_id": "wh3-bulk-0002", "transactions": [
        {"operation": "verify", "scheme": "GTIN", "product_code": "09501101530003", "serial": "X4K9P7Q2M8R5", "batch": "ABC123", "expiry": "271231"},
        {"operation": "supply-undo", "scheme": "GTIN", "product_code": "09501101530003", "serial": "X4K9P7Q2M8R6", "batch": "ABC123", "expiry": "271231"}]})
))]
pub struct BulkRequest {
    /// The client's id for this bulk.
    #[schema(required = true, value_type = schema::ClientTrxId)]
    pub client_trx_id: Option<String>,
    /// Homogeneous: the operation.
    #[schema(value_type = Option<schema::BulkOperation>)]
    pub operation: Option<String>,
    /// Homogeneous: the scheme.
    #[schema(value_type = Option<schema::Scheme>)]
    pub scheme: Option<String>,
    /// Homogeneous: the product code.
    #[schema(value_type = Option<schema::ProductCode>)]
    pub product_code: Option<String>,
    /// Homogeneous: the batch.
    #[schema(value_type = Option<schema::BatchNumber>)]
    pub batch: Option<String>,
    /// Homogeneous: the expiry.
    #[schema(value_type = Option<schema::ExpiryDate>)]
    pub expiry: Option<String>,
    /// Homogeneous: the serials.
    #[schema(value_type = Option<Vec<schema::SerialNumber>>, max_items = 100000)]
    pub serials: Option<Vec<String>>,
    /// Mixed: the rows.
    #[schema(max_items = 100000)]
    pub transactions: Option<Vec<BulkRow>>,
}

/// `202` answer to a bulk request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[schema(examples(json!({"bulk_id": "BLK-01a2282c5acf-c9eab4deebbd4b18"})))]
pub struct BulkAccepted {
    /// The id to fetch results with.
    pub bulk_id: String,
}

/// One result row of a bulk request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub struct BulkResult {
    /// The serial.
    pub serial: String,
    /// The product code.
    pub product_code: String,
    /// Whether the row did what it asked.
    pub accepted: bool,
    /// The return code.
    #[schema(value_type = schema::ReturnCodeName)]
    pub return_code: String,
    /// The pack's state afterwards, if known.
    #[schema(required = true, value_type = Option<schema::PackStateName>)]
    pub state: Option<String>,
    /// The alert raised, if any.
    #[schema(required = true)]
    pub alert: Option<AlertRef>,
}

/// `GET /v1/bulk/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[schema(examples(json!({"bulk_id": "BLK-01a2282c5acf-c9eab4deebbd4b18", "status": "DONE", "done": 2, "total": 2,
    "results": [
        {"serial": "X4K9P7Q2M8R5", "product_code": "09501101530003", "accepted": true, "return_code": "NMVS_SUCCESS", "state": "SUPPLIED", "alert": null},
        {"serial": "X4K9P7Q2M8R6", "product_code": "09501101530003", "accepted": false, "return_code": "NMVS_NC_PC_02", "state": null,
         "alert": {"id": "ALR-01a2282c5ad0-0b7e4c2a9f1d3e55", "code": "A3"}}]})))]
pub struct BulkStatusResponse {
    /// The bulk id.
    pub bulk_id: String,
    /// `PENDING`, `RUNNING` or `DONE`.
    #[schema(value_type = schema::BulkStatusName)]
    pub status: String,
    /// Rows processed so far.
    pub done: u64,
    /// Rows in the request.
    pub total: u64,
    /// The results in request order, once `DONE`.
    pub results: Vec<BulkResult>,
}

/// An alert as listed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[schema(examples(json!({"id": "ALR-01a227e36123-45b93e0ddaafc04f", "code": "A3", "return_code": "NMVS_NC_PC_02",
    "market": "DE", "pack_market": "DE", "product_code": "09501101530003", "serial": "NOSUCHSERIAL",
    "batch": "ABC123", "location": "DE-PH-0001", "created_at": "2026-12-06T09:30:00.000Z",
    "status": "INVESTIGATING", "classification": null, "comment": "Pack kept aside; asked the pharmacy for a photo."})))]
pub struct AlertView {
    /// Id.
    pub id: String,
    /// Hub alert code.
    #[schema(value_type = schema::AlertCodeName)]
    pub code: String,
    /// Return code that raised it.
    #[schema(value_type = schema::ReturnCodeName)]
    pub return_code: String,
    /// The market of the request that raised it.
    #[schema(value_type = schema::Market)]
    pub market: String,
    /// The market that holds the pack (another market for an inter-market request). Absent in
    /// alerts kept before inter-market alerts were shared: `market` then.
    #[serde(default)]
    #[schema(value_type = Option<schema::Market>)]
    pub pack_market: Option<String>,
    /// Product code.
    pub product_code: String,
    /// Serial.
    #[schema(value_type = schema::SerialNumber)]
    pub serial: String,
    /// Batch.
    pub batch: String,
    /// Location of the request.
    #[schema(value_type = schema::LocationCode)]
    pub location: String,
    /// When raised.
    #[schema(value_type = schema::Time)]
    pub created_at: String,
    /// `OPEN`, `INVESTIGATING`, `ESCALATED`, `CLOSED`.
    #[schema(value_type = schema::AlertStatusName)]
    pub status: String,
    /// Classification, once closed.
    #[schema(required = true, value_type = Option<schema::ClassificationName>)]
    pub classification: Option<String>,
    /// Last comment.
    #[schema(required = true)]
    pub comment: Option<String>,
}

/// `GET /v1/alerts/{id}`: the alert as listed, with its comments and its status history.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[schema(examples(json!({"id": "ALR-01a227e36123-45b93e0ddaafc04f", "code": "A3", "return_code": "NMVS_NC_PC_02",
    "market": "DE", "pack_market": "DE", "product_code": "09501101530003", "serial": "NOSUCHSERIAL",
    "batch": "ABC123", "location": "DE-PH-0001", "created_at": "2026-12-06T09:30:00.000Z",
    "status": "INVESTIGATING", "classification": null, "comment": "Pack kept aside; asked the pharmacy for a photo.",
    "comments": [{"id": "CMT-01a227e37000-1f2e3d4c5b6a7988", "author": "cl_5b1f0c2d9e8a7b6c5d4e3f2a1b0c9d8e", "role": "NMVO",
                  "at": "2026-12-06T09:41:00.000Z", "text": "Pack kept aside; asked the pharmacy for a photo."}],
    "history": [{"id": "CHG-01a227e36f00-8a7b6c5d4e3f2a1b", "from": "OPEN", "to": "INVESTIGATING",
                 "by": "cl_5b1f0c2d9e8a7b6c5d4e3f2a1b0c9d8e", "role": "NMVO", "at": "2026-12-06T09:40:00.000Z", "classification": null}]})))]
pub struct AlertDetail {
    /// The alert as listed.
    #[serde(flatten)]
    pub alert: AlertView,
    /// The comments, oldest first.
    pub comments: Vec<AlertCommentView>,
    /// The status changes, oldest first.
    pub history: Vec<AlertChangeView>,
}

/// One comment on an alert.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"id": "CMT-01a227e37000-1f2e3d4c5b6a7988", "author": "cl_5b1f0c2d9e8a7b6c5d4e3f2a1b0c9d8e",
    "role": "NMVO", "at": "2026-12-06T09:41:00.000Z", "text": "Pack kept aside; asked the pharmacy for a photo."})))]
pub struct AlertCommentView {
    /// Unique id of the comment.
    pub id: String,
    /// Who wrote it (a client id at a national system, an OBP id at the hub).
    pub author: String,
    /// Their role, e.g. `NMVO` or `OBP`.
    pub role: String,
    /// When, RFC 3339.
    #[schema(value_type = schema::Time)]
    pub at: String,
    /// The text.
    #[schema(min_length = 1, max_length = 500)]
    pub text: String,
}

/// One status change of an alert.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertChangeView {
    /// Unique id of the change.
    pub id: String,
    /// The status it was made on.
    #[schema(value_type = schema::AlertStatusName)]
    pub from: String,
    /// The status asked for.
    #[schema(value_type = schema::AlertStatusName)]
    pub to: String,
    /// Who made it.
    pub by: String,
    /// Their role.
    pub role: String,
    /// When, RFC 3339.
    #[schema(value_type = schema::Time)]
    pub at: String,
    /// The classification, when closing.
    #[schema(required = true, value_type = Option<schema::ClassificationName>)]
    pub classification: Option<String>,
}

/// `POST /v1/alerts/{id}/comments`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"text": "Pack kept aside; asked the pharmacy for a photo."})))]
pub struct AlertCommentRequest {
    /// 1 to 500 characters.
    #[schema(min_length = 1, max_length = 500, pattern = "\\S")]
    pub text: String,
}

/// `GET /v1/alerts`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[schema(examples(json!({"alerts": [{"id": "ALR-01a227e36123-45b93e0ddaafc04f", "code": "A3", "return_code": "NMVS_NC_PC_02",
    "market": "DE", "pack_market": "DE", "product_code": "09501101530003", "serial": "NOSUCHSERIAL",
    "batch": "ABC123", "location": "DE-PH-0001", "created_at": "2026-12-06T09:30:00.000Z",
    "status": "INVESTIGATING", "classification": null, "comment": "Pack kept aside; asked the pharmacy for a photo."}], "next_cursor": null})))]
pub struct AlertList {
    /// The page.
    pub alerts: Vec<AlertView>,
    /// Pass as `cursor` for the next page; null on the last.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// `POST /v1/alerts/{id}/status`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(
    json!({"status": "INVESTIGATING", "comment": "Asked the pharmacy for a photo of the pack."}),
    json!({"status": "CLOSED", "classification": "PROCEDURAL_ERROR", "comment": "The pharmacy scanned the pack twice."})
))]
pub struct AlertStatusRequest {
    /// The new status.
    #[schema(value_type = schema::AlertStatusName)]
    pub status: String,
    /// Required when closing.
    #[schema(value_type = Option<schema::ClassificationName>)]
    pub classification: Option<String>,
    /// 1 to 500 characters, not only white space; joins the alert's thread as a comment.
    #[schema(min_length = 1, max_length = 500, pattern = "\\S")]
    pub comment: Option<String>,
}

/// One audit record as an authority reads it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
pub struct AuditRecordView {
    /// Position in the market's chain.
    pub seq: u64,
    /// When.
    #[schema(value_type = schema::Time)]
    pub at: String,
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
    /// Outcome.
    #[schema(value_type = schema::ReturnCodeName)]
    pub return_code: String,
    /// The request as received.
    #[schema(value_type = schema::AnyJson)]
    pub request: serde_json::Value,
    /// The result as answered.
    #[schema(value_type = schema::AnyJson)]
    pub result: serde_json::Value,
}

/// `GET /v1/audit/packs/...`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
#[schema(examples(json!({"records": [{"seq": 5, "at": "2026-12-06T09:30:00.000Z", "actor": "cl_9502d35169718f7dbe9cf7b17e344cec",
    "role": "PHARMACY", "location": "DE-PH-0001", "operation": "verify", "subject": "GTIN/09501101530003/X4K9P7Q2M8R5", "return_code": "NMVS_SUCCESS",
    "request": {"client_trx_id": "pos7-000123", "scheme": "GTIN", "product_code": "09501101530003", "serial": "X4K9P7Q2M8R5", "batch": "ABC123", "expiry": "271231"},
    "result": {"accepted": true, "return_code": "NMVS_SUCCESS", "state": "ACTIVE"}}]})))]
pub struct AuditRecords {
    /// In chain order.
    pub records: Vec<AuditRecordView>,
}

// Made from the domain's answers, and read back into them for the answers that are kept or
// relayed (a replay of a kept answer, another market's answer through the hub).

fn return_code(field: &str, s: &str) -> Result<ReturnCode, String> {
    ReturnCode::parse(s).ok_or_else(|| format!("{field}: '{s}' is no return code"))
}

fn pack_state(field: &str, s: &str) -> Result<PackState, String> {
    PackState::parse(s).ok_or_else(|| format!("{field}: '{s}' is no pack state"))
}

impl From<&answer::AnsweredPack> for PackView {
    fn from(p: &answer::AnsweredPack) -> PackView {
        let (id, v) = (&p.id, &p.view);
        PackView {
            scheme: id.product_code.scheme().to_string(),
            product_code: id.product_code.to_string(),
            serial: id.serial.to_string(),
            batch: id.batch.to_string(),
            expiry: id.expiry.to_string(),
            state: v.state.to_string(),
            reasons: v.reasons.iter().map(|r| r.as_str().to_owned()).collect(),
            dispensable: v.dispensable,
        }
    }
}

impl PackView {
    /// The pack this view shows; `decided_on` is the day the answer was decided, against which
    /// the expiry's century is read as it was then.
    pub fn to_answered(&self, decided_on: Date) -> Result<answer::AnsweredPack, String> {
        let scheme = Scheme::parse(&self.scheme).map_err(|e| format!("pack.scheme: {e}"))?;
        let product_code =
            ProductCode::new(scheme, &self.product_code).map_err(|e| format!("pack.product_code: {e}"))?;
        let id = PackIdentifier {
            product_code,
            serial: Serial::new(&self.serial).map_err(|e| format!("pack.serial: {e}"))?,
            batch: Batch::new(&self.batch).map_err(|e| format!("pack.batch: {e}"))?,
            expiry: Expiry::parse(&self.expiry, decided_on).map_err(|e| format!("pack.expiry: {e}"))?,
            nhrn: None,
        };
        let reasons = self
            .reasons
            .iter()
            .map(|r| Reason::parse(r).ok_or_else(|| format!("pack.reasons: '{r}' is no reason")))
            .collect::<Result<Vec<_>, _>>()?;
        let view = pack::PackView {
            state: pack_state("pack.state", &self.state)?,
            reasons,
            dispensable: self.dispensable,
        };
        Ok(answer::AnsweredPack { id, view })
    }
}

impl From<&answer::ProductSummary> for ProductView {
    fn from(p: &answer::ProductSummary) -> ProductView {
        ProductView {
            name: p.name.clone(),
            common_name: p.common_name.clone(),
            strength: p.strength.clone(),
            form: p.form.clone(),
            pack_size: p.pack_size.clone(),
        }
    }
}

impl From<&ProductView> for answer::ProductSummary {
    fn from(p: &ProductView) -> answer::ProductSummary {
        answer::ProductSummary {
            name: p.name.clone(),
            common_name: p.common_name.clone(),
            strength: p.strength.clone(),
            form: p.form.clone(),
            pack_size: p.pack_size.clone(),
        }
    }
}

impl From<&answer::AlertRef> for AlertRef {
    fn from(a: &answer::AlertRef) -> AlertRef {
        AlertRef { id: a.id.to_string(), code: a.code.as_str().to_owned() }
    }
}

impl AlertRef {
    /// The alert this reference names.
    pub fn to_alert_ref(&self) -> Result<answer::AlertRef, String> {
        let code =
            AlertCode::parse(&self.code).ok_or_else(|| format!("alert.code: '{}' is unknown", self.code))?;
        Ok(answer::AlertRef { id: AlertId::new(self.id.as_str()), code })
    }
}

impl From<&ScanWarning> for Warning {
    fn from(w: &ScanWarning) -> Warning {
        Warning { code: w.code.as_str().to_owned(), message: w.message.clone() }
    }
}

impl Warning {
    /// The scan warning this hint carries.
    pub fn to_scan_warning(&self) -> Result<ScanWarning, String> {
        let code =
            WarningCode::parse(&self.code).ok_or_else(|| format!("warnings: '{}' is unknown", self.code))?;
        Ok(ScanWarning { code, message: self.message.clone() })
    }
}

impl From<&answer::PackAnswer> for PackResponse {
    fn from(a: &answer::PackAnswer) -> PackResponse {
        PackResponse {
            trx_id: a.trx_id.clone(),
            client_trx_id: a.client_trx_id.to_string(),
            accepted: a.accepted,
            return_code: a.code.as_str().to_owned(),
            level: a.level,
            message: a.message.clone(),
            pack: a.pack.as_ref().map(PackView::from),
            product: a.product.as_ref().map(ProductView::from),
            alert: a.alert.as_ref().map(AlertRef::from),
            intermarket: a.intermarket,
            warnings: a.warnings.iter().map(Warning::from).collect(),
        }
    }
}

impl PackResponse {
    /// The answer this response gives; `decided_on` is the day it was decided (see
    /// [`PackView::to_answered`]).
    pub fn to_answer(&self, decided_on: Date) -> Result<answer::PackAnswer, String> {
        Ok(answer::PackAnswer {
            trx_id: self.trx_id.clone(),
            client_trx_id: ClientTrxId::new(self.client_trx_id.as_str()),
            accepted: self.accepted,
            code: return_code("return_code", &self.return_code)?,
            level: self.level,
            message: self.message.clone(),
            pack: self.pack.as_ref().map(|p| p.to_answered(decided_on)).transpose()?,
            product: self.product.as_ref().map(answer::ProductSummary::from),
            alert: self.alert.as_ref().map(AlertRef::to_alert_ref).transpose()?,
            intermarket: self.intermarket,
            warnings: self.warnings.iter().map(Warning::to_scan_warning).collect::<Result<_, _>>()?,
        })
    }
}

impl From<&answer::BulkAccepted> for BulkAccepted {
    fn from(a: &answer::BulkAccepted) -> BulkAccepted {
        BulkAccepted { bulk_id: a.bulk_id.to_string() }
    }
}

impl From<&BulkAccepted> for answer::BulkAccepted {
    fn from(a: &BulkAccepted) -> answer::BulkAccepted {
        answer::BulkAccepted { bulk_id: BulkId::new(a.bulk_id.as_str()) }
    }
}

impl From<&answer::BulkRowResult> for BulkResult {
    fn from(r: &answer::BulkRowResult) -> BulkResult {
        BulkResult {
            serial: r.serial.clone(),
            product_code: r.product_code.clone(),
            accepted: r.accepted,
            return_code: r.code.as_str().to_owned(),
            state: r.state.map(|s| s.to_string()),
            alert: r.alert.as_ref().map(AlertRef::from),
        }
    }
}

impl BulkResult {
    /// The row result this shows.
    pub fn to_row_result(&self) -> Result<answer::BulkRowResult, String> {
        Ok(answer::BulkRowResult {
            serial: self.serial.clone(),
            product_code: self.product_code.clone(),
            accepted: self.accepted,
            code: return_code("return_code", &self.return_code)?,
            state: self.state.as_deref().map(|s| pack_state("state", s)).transpose()?,
            alert: self.alert.as_ref().map(AlertRef::to_alert_ref).transpose()?,
        })
    }
}

impl From<&answer::BulkReport> for BulkStatusResponse {
    fn from(r: &answer::BulkReport) -> BulkStatusResponse {
        BulkStatusResponse {
            bulk_id: r.bulk_id.to_string(),
            status: r.status.as_str().to_owned(),
            done: r.done,
            total: r.total,
            results: r.results.iter().map(BulkResult::from).collect(),
        }
    }
}

impl From<&alert::AlertView> for AlertView {
    fn from(a: &alert::AlertView) -> AlertView {
        AlertView {
            id: a.id.to_string(),
            code: a.code.to_string(),
            return_code: a.return_code.to_string(),
            market: a.market.to_string(),
            pack_market: Some(a.pack_market.to_string()),
            product_code: a.product_code.clone(),
            serial: a.serial.to_string(),
            batch: a.batch.clone(),
            location: a.location.to_string(),
            created_at: a.created_at.to_rfc3339(),
            status: a.status.to_string(),
            classification: a.classification.map(|c| c.as_str().to_owned()),
            comment: a.comment.clone(),
        }
    }
}

impl AlertView {
    /// The alert this view shows (with an empty thread: a view carries none).
    pub fn to_alert(&self) -> Result<alert::AlertView, String> {
        let market = MarketCode::new(&self.market).map_err(|e| format!("market: {e}"))?;
        Ok(alert::AlertView {
            id: AlertId::new(self.id.as_str()),
            code: AlertCode::parse(&self.code).ok_or_else(|| format!("code: '{}' is unknown", self.code))?,
            return_code: return_code("return_code", &self.return_code)?,
            market,
            pack_market: match &self.pack_market {
                Some(m) => MarketCode::new(m).map_err(|e| format!("pack_market: {e}"))?,
                None => market,
            },
            product_code: self.product_code.clone(),
            serial: Serial::new(&self.serial).map_err(|e| format!("serial: {e}"))?,
            batch: self.batch.clone(),
            location: Location::new(&self.location).map_err(|e| format!("location: {e}"))?,
            created_at: Timestamp::parse_rfc3339(&self.created_at)
                .ok_or_else(|| format!("created_at: '{}' is no time", self.created_at))?,
            status: AlertStatus::parse(&self.status)
                .ok_or_else(|| format!("status: '{}' is unknown", self.status))?,
            classification: self
                .classification
                .as_deref()
                .map(|c| Classification::parse(c).ok_or_else(|| format!("classification: '{c}' is unknown")))
                .transpose()?,
            comment: self.comment.clone(),
            thread: alert::AlertThread::default(),
        })
    }
}

impl From<&alert::AlertView> for AlertDetail {
    fn from(a: &alert::AlertView) -> AlertDetail {
        AlertDetail {
            alert: AlertView::from(a),
            comments: a.thread.comments.iter().map(AlertCommentView::from).collect(),
            history: a.thread.history.iter().map(AlertChangeView::from).collect(),
        }
    }
}

impl From<&alert::AlertComment> for AlertCommentView {
    fn from(c: &alert::AlertComment) -> AlertCommentView {
        AlertCommentView {
            id: c.id.clone(),
            author: c.author.clone(),
            role: c.role.clone(),
            at: c.at.to_rfc3339(),
            text: c.text.clone(),
        }
    }
}

impl From<&alert::AlertChange> for AlertChangeView {
    fn from(c: &alert::AlertChange) -> AlertChangeView {
        AlertChangeView {
            id: c.id.clone(),
            from: c.from.as_str().to_owned(),
            to: c.to.as_str().to_owned(),
            by: c.by.clone(),
            role: c.role.clone(),
            at: c.at.to_rfc3339(),
            classification: c.classification.map(|k| k.as_str().to_owned()),
        }
    }
}

fn text_of(field: &str, s: &str, max: usize) -> Result<String, String> {
    let n = s.chars().count();
    if n == 0 || n > max {
        return Err(format!("{field}: {n} characters, must be 1 to {max}"));
    }
    Ok(s.to_owned())
}

fn time_of(field: &str, s: &str) -> Result<Timestamp, String> {
    Timestamp::parse_rfc3339(s).ok_or_else(|| format!("{field}: '{s}' is no time"))
}

impl AlertCommentView {
    /// The comment this view shows, checked as another system sent it.
    pub fn to_comment(&self) -> Result<alert::AlertComment, String> {
        Ok(alert::AlertComment {
            id: text_of("id", &self.id, 100)?,
            author: text_of("author", &self.author, 200)?,
            role: text_of("role", &self.role, 20)?,
            at: time_of("at", &self.at)?,
            text: text_of("text", &self.text, alert::MAX_COMMENT_CHARS)?,
        })
    }
}

impl AlertChangeView {
    /// The change this view shows, checked as another system sent it.
    pub fn to_change(&self) -> Result<alert::AlertChange, String> {
        let status = |field: &str, s: &str| {
            AlertStatus::parse(s).ok_or_else(|| format!("{field}: '{s}' is not an alert status"))
        };
        let to = status("to", &self.to)?;
        let classification = self
            .classification
            .as_deref()
            .map(|c| Classification::parse(c).ok_or_else(|| format!("classification: '{c}' is unknown")))
            .transpose()?;
        if (to == AlertStatus::Closed) != classification.is_some() {
            return Err("classification: given exactly when closing".into());
        }
        Ok(alert::AlertChange {
            id: text_of("id", &self.id, 100)?,
            from: status("from", &self.from)?,
            to,
            classification,
            by: text_of("by", &self.by, 200)?,
            role: text_of("role", &self.role, 20)?,
            at: time_of("at", &self.at)?,
        })
    }
}

impl From<&alert::AlertPage> for AlertList {
    fn from(p: &alert::AlertPage) -> AlertList {
        AlertList {
            alerts: p.alerts.iter().map(AlertView::from).collect(),
            next_cursor: p.next_cursor.as_ref().map(AlertId::to_string),
        }
    }
}

impl From<&answer::AuditRecordView> for AuditRecordView {
    fn from(r: &answer::AuditRecordView) -> AuditRecordView {
        // A record holds its request and result as JSON; one that does not parse is shown as text.
        let parse = |s: &str| serde_json::from_str(s).unwrap_or(serde_json::Value::String(s.to_owned()));
        AuditRecordView {
            seq: r.seq,
            at: r.at.to_rfc3339(),
            actor: r.actor.clone(),
            role: r.role.clone(),
            location: r.location.clone(),
            operation: r.operation.clone(),
            subject: r.subject.clone(),
            return_code: r.return_code.clone(),
            request: parse(&r.request),
            result: parse(&r.result),
        }
    }
}

/// `GET /v1/audit/records`: a page of a search of the audit trail.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
#[schema(examples(json!({"records": [{"seq": 5, "at": "2026-12-06T09:30:00.000Z", "actor": "cl_9502d35169718f7dbe9cf7b17e344cec",
    "role": "PHARMACY", "location": "DE-PH-0001", "operation": "supply", "subject": "GTIN/09501101530003/X4K9P7Q2M8R5", "return_code": "NMVS_SUCCESS",
    "request": {"client_trx_id": "pos7-000124", "scheme": "GTIN", "product_code": "09501101530003", "serial": "X4K9P7Q2M8R5", "batch": "ABC123", "expiry": "271231"},
    "result": {"accepted": true, "return_code": "NMVS_SUCCESS", "state": "SUPPLIED"}}], "next_cursor": null})))]
pub struct AuditSearchResponse {
    /// In commit order.
    pub records: Vec<AuditRecordView>,
    /// The `cursor` of the next page; null at the end of the trail. A page may hold fewer
    /// records than asked while this goes on: a search that names no pack reads a million
    /// positions of the trail at most per page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

impl From<&[answer::AuditRecordView]> for AuditRecords {
    fn from(records: &[answer::AuditRecordView]) -> AuditRecords {
        AuditRecords { records: records.iter().map(AuditRecordView::from).collect() }
    }
}

impl From<&answer::IssuedToken> for TokenResponse {
    fn from(t: &answer::IssuedToken) -> TokenResponse {
        TokenResponse {
            access_token: t.access_token.clone(),
            token_type: "Bearer".into(),
            expires_in: t.expires_in,
        }
    }
}
