//! The JSON shapes of OpenMVS's public interface, and their construction from domain values.
//!
//! Architecture invariant: this is the only crate that decides what JSON looks like. Domain types
//! in `openmvs-core` are not `Serialize`; each shape here is built from them explicitly, so a
//! change in the core never changes the wire by accident.
//!
//! One rule for converting between wire and domain values: services speak domain types, the
//! core's. A service answers with a domain value (`openmvs_core::catalog`, `answer`, `alert`,
//! `upload`, `obp_states`), and the handler in `openmvs-http` makes its wire shape with a `From`
//! impl of this crate (as `ErrorBody` and `HubErrorBody` are made from
//! `openmvs_core::error::ApiError`); `openmvs` prints the shapes its commands show the same way.
//! What a service keeps of an answer (the answer kept with a client's transaction id for a
//! replay, a bulk job's row results, the alert a market forwarded to the hub, the audit records
//! that hold an answer or a refusal) is the JSON of that wire shape, written and read back into
//! the domain value only through [`kept`], with the same `From` impls, so that a replay answers
//! the bytes first answered. Requests go the other way: the handler parses the body into its
//! shape, and the service takes it unvalidated (the national system an `api` request, since it
//! audits a refusal with the body as received; the hub the core's raw values, such as
//! [`obp::ProductRequest::to_raw`]) and validates it itself. The hub protocol ([`hub`]) is the
//! exception: its envelopes, and the `api` answers they carry, are what the outboxes store and the
//! systems exchange, so the services build and read them (as the hub builds its OBPs' callback
//! events). `openmvs/tests/tidy.rs` checks that the services name no `api`, `obp` or `admin`
//! shape beyond the requests they validate.

pub mod admin;
pub mod agent;
pub mod api;
pub mod hub;
pub mod kept;
pub mod obp;
pub mod schema;

use openmvs_core::return_code::ReturnCode;
use openmvs_core::scan::Scan;
use serde::{Deserialize, Serialize};

/// What `openmvs scan` prints for an input that parses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScanOutput {
    /// `GTIN` or `PPN`.
    pub scheme: &'static str,
    /// The product code (14 digits for a GTIN).
    pub product_code: String,
    /// The serial number, exactly as encoded.
    pub serial: String,
    /// The batch, exactly as encoded.
    pub batch: String,
    /// The expiry, exactly as encoded (`YYMMDD`).
    pub expiry: String,
    /// The date the expiry means, `YYYY-MM-DD` (day `00` resolved to the month's last day).
    pub expiry_date: String,
    /// The national reimbursement number, if the code carries one.
    pub nhrn: Option<NhrnOutput>,
    /// Scan-integrity hints.
    pub warnings: Vec<WarningOutput>,
}

/// A national reimbursement number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NhrnOutput {
    /// The GS1 AI, `710`-`717`.
    pub ai: String,
    /// The number as encoded.
    pub value: String,
}

/// A scan-integrity hint: the pack may have been misread, rescan it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WarningOutput {
    /// Stable machine-readable code.
    pub code: &'static str,
    /// What to do, in English.
    pub message: String,
}

impl From<&Scan> for ScanOutput {
    fn from(scan: &Scan) -> ScanOutput {
        let id = &scan.id;
        ScanOutput {
            scheme: id.product_code.scheme().as_str(),
            product_code: id.product_code.as_str().to_owned(),
            serial: id.serial.as_str().to_owned(),
            batch: id.batch.as_str().to_owned(),
            expiry: id.expiry.as_str().to_owned(),
            expiry_date: id.expiry.date().to_string(),
            nhrn: id
                .nhrn
                .as_ref()
                .map(|n| NhrnOutput { ai: n.ai().to_string(), value: n.value().to_owned() }),
            warnings: scan
                .warnings
                .iter()
                .map(|w| WarningOutput { code: w.code.as_str(), message: w.message.clone() })
                .collect(),
        }
    }
}

/// What the pack commands of `openmvs` (`verify`, `supply`, ..., `undo`) print with `--json`
/// when a request ends without an answer of the rules (exit status 1); an answer is printed as the
/// national system sent it ([`api::PackResponse`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandError {
    /// What stopped it: `input` (refused before any request, e.g. a scan that cannot be read),
    /// `settings` (where to connect is missing or unusable), `login` (the token endpoint refused
    /// the client), `http` (an HTTP error, after the client's retries), `network` (no answer) or
    /// `answer` (an answer the API does not give).
    pub error: String,
    /// What happened, for people.
    pub message: String,
    /// The request's `client_trx_id`: sent again with it, a request that was processed gets its
    /// first answer instead of being done twice.
    pub client_trx_id: String,
    /// The HTTP status, when the server answered.
    pub status: Option<u16>,
    /// The return code of the server's error body, e.g. `NMVS_FE_AU_01`.
    pub return_code: Option<String>,
    /// The fields at fault and why, from the server's error body.
    pub details: Vec<api::ErrorDetail>,
}

/// One row of the return-code catalogue, as served by `GET /v1/return-codes` and `openmvs return-codes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(examples(json!({"code": "NMVS_NC_PCK_22", "kind": "OUTCOME", "level": 5, "alert": "A24", "http_status": 200,
    "message": "The pack is not active, so its state cannot change. An alert was raised: do not dispense the pack."})))]
pub struct ReturnCodeEntry {
    /// The code.
    #[schema(value_type = schema::ReturnCodeName)]
    pub code: String,
    /// `OUTCOME` (in a 200 answer), `ERROR` (an HTTP error), `HUB` (refused by the hub) or
    /// `AGENT` (answered by a pharmacy's offline agent in place of the national system, HTTP 202).
    #[schema(value_type = schema::CodeKindName)]
    pub kind: String,
    /// Severity, 1 (success) to 5 (refused with an alert).
    #[schema(minimum = 1, maximum = 5)]
    pub level: u8,
    /// The alert it raises, if any.
    #[schema(required = true, value_type = Option<schema::AlertCodeName>)]
    pub alert: Option<String>,
    /// The HTTP status it is answered with.
    #[schema(minimum = 200, maximum = 599)]
    pub http_status: u16,
    /// What it means.
    pub message: String,
}

/// The catalogue of return codes: `{"return_codes": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReturnCodeCatalogue {
    /// Every code, in catalogue order.
    pub return_codes: Vec<ReturnCodeEntry>,
}

impl ReturnCodeCatalogue {
    /// Builds the catalogue from the core's one table.
    pub fn build() -> ReturnCodeCatalogue {
        let return_codes = ReturnCode::ALL
            .iter()
            .map(|c| {
                let i = c.info();
                ReturnCodeEntry {
                    code: i.code.to_owned(),
                    kind: i.kind.as_str().to_owned(),
                    level: i.level,
                    alert: i.alert.map(|a| a.as_str().to_owned()),
                    http_status: i.http_status,
                    message: i.message.to_owned(),
                }
            })
            .collect();
        ReturnCodeCatalogue { return_codes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_has_one_row_per_code_with_its_http_status() {
        let cat = ReturnCodeCatalogue::build();
        assert_eq!(cat.return_codes.len(), ReturnCode::ALL.len());
        let json = serde_json::to_value(&cat).unwrap();
        let a24 =
            json["return_codes"].as_array().unwrap().iter().find(|r| r["code"] == "NMVS_NC_PCK_22").unwrap();
        assert_eq!(a24["alert"], "A24");
        assert_eq!(a24["level"], 5);
        assert_eq!(a24["http_status"], 200);
    }
}
