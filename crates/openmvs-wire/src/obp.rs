//! Request and response bodies of the OBP API at the hub (api.md §3), exactly as they travel.
//!
//! Requests refuse unknown fields. The master data fields are all optional here so that a
//! missing one reaches the core's validation and is named there with its hub code (A16), instead
//! of failing to parse.

use std::collections::BTreeMap;

use openmvs_core::answer::CallbackAnswer;
use openmvs_core::catalog;
use openmvs_core::ids::MarketCode;
use openmvs_core::master_data::{RawMarket, RawProduct, RawWholesaler};
use openmvs_core::obp_states::{PackAcrossMarkets, PackStateResult, PackStatesAnswer};
use openmvs_core::upload::{UploadAccepted, UploadRejection, UploadView};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::{ErrorBody, ErrorDetail};
use crate::schema;

/// `PUT /v1/products/{product_code}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"scheme": "GTIN", "name": "Examplomab 10 mg tablets", "common_name": "examplomab",
    "form": "TABLET", "strength": "10 mg", "pack_type": "BLISTER", "pack_size": "30",
    "markets": [{"market": "DE", "national_code": "PZN-12345678",
                 "mah": {"name": "Acme Pharma GmbH", "address": "Hauptstrasse 1, 10115 Berlin"},
                 "wholesalers": [{"id": "WS-DE-01", "name": "Grosshandel Nord"}]},
                {"market": "FR", "national_code": "CIP-3400930000000",
                 "mah": {"name": "Acme Pharma SAS", "address": "1 rue de la Paix, 75002 Paris"}}]})))]
pub struct ProductRequest {
    /// `GTIN` or `PPN`.
    #[schema(required = true, value_type = schema::Scheme)]
    pub scheme: Option<String>,
    /// Name.
    #[schema(required = true, value_type = String, max_length = 200, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub name: Option<String>,
    /// Common (INN) name.
    #[schema(required = true, value_type = String, max_length = 200, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub common_name: Option<String>,
    /// Pharmaceutical form.
    #[schema(required = true, value_type = String, max_length = 100, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub form: Option<String>,
    /// Strength.
    #[schema(required = true, value_type = String, max_length = 100, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub strength: Option<String>,
    /// Pack type.
    #[schema(required = true, value_type = String, max_length = 100, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub pack_type: Option<String>,
    /// Pack size.
    #[schema(required = true, value_type = String, max_length = 50, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub pack_size: Option<String>,
    /// The target markets.
    #[schema(required = true, value_type = Vec<ProductMarket>, min_items = 1)]
    pub markets: Option<Vec<ProductMarket>>,
}

/// One target market of a product.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductMarket {
    /// The market code.
    #[schema(required = true, value_type = schema::Market)]
    pub market: Option<String>,
    /// The national product number.
    #[schema(required = true, value_type = String, max_length = 50, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub national_code: Option<String>,
    /// The marketing authorisation holder.
    #[schema(required = true, value_type = Mah)]
    pub mah: Option<Mah>,
    /// Designated wholesalers.
    #[serde(default)]
    #[schema(max_items = 500)]
    pub wholesalers: Vec<WholesalerEntry>,
}

/// A marketing authorisation holder.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Mah {
    /// Its name.
    #[schema(required = true, value_type = String, max_length = 200, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub name: Option<String>,
    /// Its address.
    #[schema(required = true, value_type = String, max_length = 500, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub address: Option<String>,
}

/// A designated wholesaler.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WholesalerEntry {
    /// Its id.
    #[schema(required = true, value_type = String, max_length = 50, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub id: Option<String>,
    /// Its name.
    #[schema(required = true, value_type = String, max_length = 200, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub name: Option<String>,
}

impl ProductRequest {
    /// The master data as the core validates it.
    pub fn to_raw(&self) -> RawProduct {
        RawProduct {
            scheme: self.scheme.clone(),
            name: self.name.clone(),
            common_name: self.common_name.clone(),
            form: self.form.clone(),
            strength: self.strength.clone(),
            pack_type: self.pack_type.clone(),
            pack_size: self.pack_size.clone(),
            markets: self.markets.as_ref().map(|ms| {
                ms.iter()
                    .map(|m| RawMarket {
                        market: m.market.clone(),
                        national_code: m.national_code.clone(),
                        mah_name: m.mah.as_ref().and_then(|x| x.name.clone()),
                        mah_address: m.mah.as_ref().and_then(|x| x.address.clone()),
                        wholesalers: m
                            .wholesalers
                            .iter()
                            .map(|w| RawWholesaler { id: w.id.clone(), name: w.name.clone() })
                            .collect(),
                    })
                    .collect()
            }),
        }
    }
}

/// The answer to a product upload.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[schema(examples(json!({"product_code": "09501101530003", "version": 1})))]
pub struct ProductAnswer {
    /// The product code.
    #[schema(value_type = schema::ProductCode)]
    pub product_code: String,
    /// The current master data version.
    #[schema(minimum = 1)]
    pub version: u32,
}

/// `PUT /v1/products/{product_code}/batches/{batch}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"expiry": "271231", "markets": ["DE", "FR"]}), json!({"expiry": "271200"})))]
pub struct BatchRequest {
    /// `YYMMDD`.
    #[schema(value_type = schema::ExpiryDate)]
    pub expiry: String,
    /// The batch's markets; absent: the product's.
    #[serde(default)]
    #[schema(value_type = Option<Vec<schema::Market>>)]
    pub markets: Option<Vec<String>>,
}

/// The answer to a batch upload.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[schema(examples(json!({"product_code": "09501101530003", "batch": "ABC123", "version": 1, "markets": ["DE", "FR"]})))]
pub struct BatchAnswer {
    /// The product code.
    #[schema(value_type = schema::ProductCode)]
    pub product_code: String,
    /// The batch.
    #[schema(value_type = schema::BatchNumber)]
    pub batch: String,
    /// The product version the batch is bound to.
    pub version: u32,
    /// Its markets.
    #[schema(value_type = Vec<schema::Market>)]
    pub markets: Vec<String>,
}

/// `POST .../packs` as `application/json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"serials": ["X4K9P7Q2M8R5", "X4K9P7Q2M8R6", "X4K9P7Q2M8R7"]})))]
pub struct PacksRequest {
    /// The serials, one per pack.
    pub serials: Vec<String>,
}

/// The answer to an upload (202): every line is durable.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[schema(examples(json!({"upload_id": "UPL-01a2282c62d2-95d2de49d32d2f5a", "received": 3})))]
pub struct UploadAcceptedBody {
    /// The id for `GET /v1/uploads/{upload_id}`.
    pub upload_id: String,
    /// Lines received, rejected ones included.
    pub received: u64,
}

/// A rejected line of an upload.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub struct RejectedLine {
    /// Its line number, from 1.
    #[schema(minimum = 1)]
    pub line: u64,
    /// The line (at most 64 characters of it).
    pub serial: String,
    /// Why it was rejected.
    pub reason: String,
}

/// `GET /v1/uploads/{upload_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[schema(examples(json!({"upload_id": "UPL-01a2282c62d2-95d2de49d32d2f5a", "product_code": "09501101530003", "batch": "ABC123",
    "status": "VALIDATED", "received": 3, "rejected_count": 1,
    "rejected": [{"line": 2, "serial": "X4K9 P7Q2", "reason": "not a serial: ' ' (space) at position 5 is not in GS1 character set 82"}],
    "markets": {"DE": "DISTRIBUTED", "FR": "PENDING"}})))]
pub struct UploadStatusBody {
    /// The upload id.
    pub upload_id: String,
    /// The product code.
    #[schema(value_type = schema::ProductCode)]
    pub product_code: String,
    /// The batch.
    #[schema(value_type = schema::BatchNumber)]
    pub batch: String,
    /// `RECEIVED`, `VALIDATED`, `DISTRIBUTED` or `FAILED`.
    #[schema(value_type = schema::UploadStatusName)]
    pub status: String,
    /// Lines received.
    pub received: u64,
    /// Lines rejected (all of them; `rejected` lists the first 1,000).
    pub rejected_count: u64,
    /// The first rejected lines, in line order.
    pub rejected: Vec<RejectedLine>,
    /// Each target market: `PENDING` or `DISTRIBUTED`.
    #[schema(value_type = BTreeMap<String, schema::MarketDeliveryName>)]
    pub markets: BTreeMap<String, String>,
}

/// `POST .../batches/{batch}/recall`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"reason": "Out-of-specification dissolution results.", "markets": ["DE"]})))]
pub struct RecallRequest {
    /// Why.
    #[schema(max_length = 500, pattern = "\\S")]
    pub reason: String,
    /// Where.
    #[schema(value_type = Vec<schema::Market>)]
    pub markets: Vec<String>,
}

/// The answer to a recall.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[schema(examples(json!({"product_code": "09501101530003", "batch": "ABC123", "recalled": ["DE"]})))]
pub struct RecallAnswer {
    /// The product code.
    #[schema(value_type = schema::ProductCode)]
    pub product_code: String,
    /// The batch.
    #[schema(value_type = schema::BatchNumber)]
    pub batch: String,
    /// Every market the batch is recalled in now.
    #[schema(value_type = Vec<schema::Market>)]
    pub recalled: Vec<String>,
}

/// `POST /v1/products/{product_code}/withdraw`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"reason": "Marketing authorisation withdrawn.", "markets": ["FR"]})))]
pub struct WithdrawRequest {
    /// Why.
    #[schema(max_length = 500, pattern = "\\S")]
    pub reason: String,
    /// Where.
    #[schema(value_type = Vec<schema::Market>)]
    pub markets: Vec<String>,
}

/// The answer to a withdrawal.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[schema(examples(json!({"product_code": "09501101530003", "withdrawn": ["FR"]})))]
pub struct WithdrawalAnswer {
    /// The product code.
    #[schema(value_type = schema::ProductCode)]
    pub product_code: String,
    /// Every market the product is withdrawn from now.
    #[schema(value_type = Vec<schema::Market>)]
    pub withdrawn: Vec<String>,
}

/// The body of every hub error: the national systems' error body plus `code`, the hub's name
/// for the same return code, which is how api.md §3 writes master data refusals
/// (`{"code": "A16", "details": [...]}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[schema(examples(json!({"code": "A16", "return_code": "A16", "message": "A mandatory field of the product master data is missing.",
    "details": [{"field": "markets[0].national_code", "message": "A16: is required"}]})))]
pub struct HubErrorBody {
    /// The return code (`A16`, `I1`, `NMVS_FE_AU_04`, ...).
    #[schema(value_type = schema::ReturnCodeName)]
    pub code: String,
    /// The same code, under the name the national systems use.
    #[schema(value_type = schema::ReturnCodeName)]
    pub return_code: String,
    /// What went wrong.
    pub message: String,
    /// Which fields and why.
    pub details: Vec<ErrorDetail>,
}

impl From<ErrorBody> for HubErrorBody {
    fn from(e: ErrorBody) -> HubErrorBody {
        HubErrorBody {
            code: e.return_code.clone(),
            return_code: e.return_code,
            message: e.message,
            details: e.details,
        }
    }
}

impl From<&openmvs_core::error::ApiError> for HubErrorBody {
    fn from(e: &openmvs_core::error::ApiError) -> HubErrorBody {
        ErrorBody::from(e).into()
    }
}

fn names(markets: &[MarketCode]) -> Vec<String> {
    markets.iter().map(|m| m.as_str().to_owned()).collect()
}

impl From<&catalog::ProductAnswer> for ProductAnswer {
    fn from(a: &catalog::ProductAnswer) -> ProductAnswer {
        ProductAnswer { product_code: a.product_code.as_str().to_owned(), version: a.version }
    }
}

impl From<&catalog::BatchAnswer> for BatchAnswer {
    fn from(a: &catalog::BatchAnswer) -> BatchAnswer {
        BatchAnswer {
            product_code: a.product_code.as_str().to_owned(),
            batch: a.batch.as_str().to_owned(),
            version: a.version,
            markets: names(&a.markets),
        }
    }
}

impl From<&catalog::RecallAnswer> for RecallAnswer {
    fn from(a: &catalog::RecallAnswer) -> RecallAnswer {
        RecallAnswer {
            product_code: a.product_code.as_str().to_owned(),
            batch: a.batch.as_str().to_owned(),
            recalled: names(&a.recalled),
        }
    }
}

impl From<&catalog::WithdrawalAnswer> for WithdrawalAnswer {
    fn from(a: &catalog::WithdrawalAnswer) -> WithdrawalAnswer {
        WithdrawalAnswer { product_code: a.product_code.as_str().to_owned(), withdrawn: names(&a.withdrawn) }
    }
}

/// `PUT /v1/callback`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"url": "https://events.acme-pharma.example/openmvs"})))]
pub struct CallbackRequest {
    /// Where the hub POSTs the OBP's events: `https://` only.
    #[schema(
        max_length = 2000,
        pattern = "^https://[^\\s\\x00-\\x1f\\x7f-\\x9f/?#:][^\\s\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub url: String,
}

/// The answer to `PUT /v1/callback`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[schema(examples(json!({"url": "https://events.acme-pharma.example/openmvs", "secret": "3q2+7wYhN1Zr8kLm0pQsTuVwXyZaBcDeFgHiJkLmNoP"})))]
pub struct CallbackBody {
    /// The URL, as set.
    pub url: String,
    /// The key of the signatures (`x-openmvs-signature`: hex HMAC-SHA256 of the body under
    /// these characters).
    pub secret: String,
}

/// `POST /v1/products/{product_code}/batches/{batch}/packs/state`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"state": "STOLEN", "serials": ["X4K9P7Q2M8R5", "X4K9P7Q2M8R6"]}),
                   json!({"state": "CHECKED_OUT", "undo": true, "serials": ["X4K9P7Q2M8R7"]})))]
pub struct PackStatesRequest {
    /// `STOLEN`, `DESTROYED`, `FREE_SAMPLE` or `CHECKED_OUT`; with `undo`, `CHECKED_OUT`.
    #[schema(value_type = schema::ObpPackState)]
    pub state: String,
    /// Undoes `state` instead of setting it: the OBP's check-out is reverted and the packs
    /// return to ACTIVE (fmd-rules §3). False when absent.
    #[serde(default)]
    pub undo: bool,
    /// The serials, at most 10,000.
    #[schema(min_items = 1, max_items = 10000)]
    pub serials: Vec<String>,
}

/// What happened to one serial of a pack state change.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub struct PackStateResultBody {
    /// The serial as sent.
    pub serial: String,
    /// Whether the change was queued for the batch's markets.
    pub accepted: bool,
    /// `NMVS_SUCCESS`, or why not.
    #[schema(value_type = schema::ReturnCodeName)]
    pub return_code: String,
    /// Why not, in words.
    #[schema(required = true)]
    pub reason: Option<String>,
}

/// The answer to a pack state change.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[schema(examples(json!({"product_code": "09501101530003", "batch": "ABC123", "state": "STOLEN", "undo": false,
    "markets": ["DE", "FR"], "recalled": [],
    "results": [{"serial": "X4K9P7Q2M8R5", "accepted": true, "return_code": "NMVS_SUCCESS", "reason": null},
                {"serial": "X4K9P7Q2M8R6", "accepted": false, "return_code": "NMVS_TE_NF_01", "reason": "was never uploaded for 09501101530003"}]})))]
pub struct PackStatesBody {
    /// The product code.
    #[schema(value_type = schema::ProductCode)]
    pub product_code: String,
    /// The batch.
    #[schema(value_type = schema::BatchNumber)]
    pub batch: String,
    /// The state asked for, or undone.
    #[schema(value_type = schema::ObpPackState)]
    pub state: String,
    /// Whether the change undoes `state`.
    pub undo: bool,
    /// The markets the accepted changes go to.
    #[schema(value_type = Vec<schema::Market>)]
    pub markets: Vec<String>,
    /// The batch's markets that recalled it and take no change.
    #[schema(value_type = Vec<schema::Market>)]
    pub recalled: Vec<String>,
    /// One per serial, in request order.
    pub results: Vec<PackStateResultBody>,
}

/// Where a pack stands in one market, in the OBP's pack query.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub struct MarketPackStateBody {
    /// `ACTIVE`, `SUPPLIED`, ..., or `UNKNOWN` when the market did not answer (or does not hold
    /// the pack yet).
    #[schema(value_type = schema::MarketPackStateName)]
    pub state: String,
    /// `WITHDRAWN`, `RECALLED`, `EXPIRED`; for `UNKNOWN`, `UNREACHABLE` or `NOT_DISTRIBUTED`.
    #[schema(value_type = Vec<schema::MarketPackReason>)]
    pub reasons: Vec<String>,
}

/// The answer to `GET /v1/products/{product_code}/packs/{serial}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[schema(examples(json!({"batch": "ABC123", "markets": {"DE": {"state": "SUPPLIED", "reasons": []},
    "FR": {"state": "UNKNOWN", "reasons": ["UNREACHABLE"]}}})))]
pub struct PackQueryBody {
    /// The pack's batch; null when no market that answered holds the pack.
    #[schema(required = true)]
    pub batch: Option<String>,
    /// Each target market by market code.
    pub markets: BTreeMap<String, MarketPackStateBody>,
}

impl From<&UploadAccepted> for UploadAcceptedBody {
    fn from(a: &UploadAccepted) -> UploadAcceptedBody {
        UploadAcceptedBody { upload_id: a.upload_id.to_string(), received: a.received }
    }
}

impl From<&UploadRejection> for RejectedLine {
    fn from(r: &UploadRejection) -> RejectedLine {
        RejectedLine { line: r.line, serial: r.serial.clone(), reason: r.reason.clone() }
    }
}

impl From<&UploadView> for UploadStatusBody {
    fn from(u: &UploadView) -> UploadStatusBody {
        UploadStatusBody {
            upload_id: u.id.to_string(),
            product_code: u.product_code.as_str().to_owned(),
            batch: u.batch.as_str().to_owned(),
            status: u.status.as_str().to_owned(),
            received: u.received,
            rejected_count: u.rejected_count,
            rejected: u.rejected.iter().map(RejectedLine::from).collect(),
            markets: u.markets.iter().map(|(m, d)| (m.as_str().to_owned(), d.as_str().to_owned())).collect(),
        }
    }
}

impl From<&PackStateResult> for PackStateResultBody {
    fn from(r: &PackStateResult) -> PackStateResultBody {
        PackStateResultBody {
            serial: r.serial.clone(),
            accepted: r.accepted,
            return_code: r.return_code.as_str().to_owned(),
            reason: r.reason.clone(),
        }
    }
}

impl From<&PackStatesAnswer> for PackStatesBody {
    fn from(a: &PackStatesAnswer) -> PackStatesBody {
        PackStatesBody {
            product_code: a.product_code.as_str().to_owned(),
            batch: a.batch.as_str().to_owned(),
            state: a.state.as_str().to_owned(),
            undo: a.undo,
            markets: names(&a.markets),
            recalled: names(&a.recalled),
            results: a.results.iter().map(PackStateResultBody::from).collect(),
        }
    }
}

impl From<&PackAcrossMarkets> for PackQueryBody {
    fn from(a: &PackAcrossMarkets) -> PackQueryBody {
        PackQueryBody {
            batch: a.batch.clone(),
            markets: a
                .markets
                .iter()
                .map(|(m, p)| {
                    (
                        m.as_str().to_owned(),
                        MarketPackStateBody { state: p.state.clone(), reasons: p.reasons.clone() },
                    )
                })
                .collect(),
        }
    }
}

impl From<&CallbackAnswer> for CallbackBody {
    fn from(a: &CallbackAnswer) -> CallbackBody {
        CallbackBody { url: a.url.clone(), secret: a.secret.clone() }
    }
}
