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

use crate::api::{ErrorBody, ErrorDetail};

/// `PUT /v1/products/{product_code}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProductRequest {
    /// `GTIN` or `PPN`.
    pub scheme: Option<String>,
    /// Name.
    pub name: Option<String>,
    /// Common (INN) name.
    pub common_name: Option<String>,
    /// Pharmaceutical form.
    pub form: Option<String>,
    /// Strength.
    pub strength: Option<String>,
    /// Pack type.
    pub pack_type: Option<String>,
    /// Pack size.
    pub pack_size: Option<String>,
    /// The target markets.
    pub markets: Option<Vec<ProductMarket>>,
}

/// One target market of a product.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProductMarket {
    /// The market code.
    pub market: Option<String>,
    /// The national product number.
    pub national_code: Option<String>,
    /// The marketing authorisation holder.
    pub mah: Option<Mah>,
    /// Designated wholesalers.
    #[serde(default)]
    pub wholesalers: Vec<WholesalerEntry>,
}

/// A marketing authorisation holder.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Mah {
    /// Its name.
    pub name: Option<String>,
    /// Its address.
    pub address: Option<String>,
}

/// A designated wholesaler.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WholesalerEntry {
    /// Its id.
    pub id: Option<String>,
    /// Its name.
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
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ProductAnswer {
    /// The product code.
    pub product_code: String,
    /// The current master data version.
    pub version: u32,
}

/// `PUT /v1/products/{product_code}/batches/{batch}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// `YYMMDD`.
    pub expiry: String,
    /// The batch's markets; absent: the product's.
    #[serde(default)]
    pub markets: Option<Vec<String>>,
}

/// The answer to a batch upload.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct BatchAnswer {
    /// The product code.
    pub product_code: String,
    /// The batch.
    pub batch: String,
    /// The product version the batch is bound to.
    pub version: u32,
    /// Its markets.
    pub markets: Vec<String>,
}

/// `POST .../packs` as `application/json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PacksRequest {
    /// The serials, one per pack.
    pub serials: Vec<String>,
}

/// The answer to an upload (202): every line is durable.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct UploadAcceptedBody {
    /// The id for `GET /v1/uploads/{upload_id}`.
    pub upload_id: String,
    /// Lines received, rejected ones included.
    pub received: u64,
}

/// A rejected line of an upload.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct RejectedLine {
    /// Its line number, from 1.
    pub line: u64,
    /// The line (at most 64 characters of it).
    pub serial: String,
    /// Why it was rejected.
    pub reason: String,
}

/// `GET /v1/uploads/{upload_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct UploadStatusBody {
    /// The upload id.
    pub upload_id: String,
    /// The product code.
    pub product_code: String,
    /// The batch.
    pub batch: String,
    /// `RECEIVED`, `VALIDATED`, `DISTRIBUTED` or `FAILED`.
    pub status: String,
    /// Lines received.
    pub received: u64,
    /// Lines rejected (all of them; `rejected` lists the first 1,000).
    pub rejected_count: u64,
    /// The first rejected lines, in line order.
    pub rejected: Vec<RejectedLine>,
    /// Each target market: `PENDING` or `DISTRIBUTED`.
    pub markets: BTreeMap<String, String>,
}

/// `POST .../batches/{batch}/recall`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RecallRequest {
    /// Why.
    pub reason: String,
    /// Where.
    pub markets: Vec<String>,
}

/// The answer to a recall.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct RecallAnswer {
    /// The product code.
    pub product_code: String,
    /// The batch.
    pub batch: String,
    /// Every market the batch is recalled in now.
    pub recalled: Vec<String>,
}

/// `POST /v1/products/{product_code}/withdraw`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WithdrawRequest {
    /// Why.
    pub reason: String,
    /// Where.
    pub markets: Vec<String>,
}

/// The answer to a withdrawal.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct WithdrawalAnswer {
    /// The product code.
    pub product_code: String,
    /// Every market the product is withdrawn from now.
    pub withdrawn: Vec<String>,
}

/// The body of every hub error: the national systems' error body plus `code`, the hub's name
/// for the same return code, which is how api.md §3 writes master data refusals
/// (`{"code": "A16", "details": [...]}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct HubErrorBody {
    /// The return code (`A16`, `I1`, `NMVS_FE_AU_04`, ...).
    pub code: String,
    /// The same code, under the name the national systems use.
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
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CallbackRequest {
    /// Where the hub POSTs the OBP's events: `https://` only.
    pub url: String,
}

/// The answer to `PUT /v1/callback`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct CallbackBody {
    /// The URL, as set.
    pub url: String,
    /// The key of the signatures (`x-openmvs-signature`: hex HMAC-SHA256 of the body under
    /// these characters).
    pub secret: String,
}

/// `POST /v1/products/{product_code}/batches/{batch}/packs/state`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PackStatesRequest {
    /// `STOLEN`, `DESTROYED`, `FREE_SAMPLE` or `CHECKED_OUT`; with `undo`, `CHECKED_OUT`.
    pub state: String,
    /// Undoes `state` instead of setting it: the OBP's check-out is reverted and the packs
    /// return to ACTIVE (fmd-rules §3). False when absent.
    #[serde(default)]
    pub undo: bool,
    /// The serials, at most 10,000.
    pub serials: Vec<String>,
}

/// What happened to one serial of a pack state change.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct PackStateResultBody {
    /// The serial as sent.
    pub serial: String,
    /// Whether the change was queued for the batch's markets.
    pub accepted: bool,
    /// `NMVS_SUCCESS`, or why not.
    pub return_code: String,
    /// Why not, in words.
    pub reason: Option<String>,
}

/// The answer to a pack state change.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct PackStatesBody {
    /// The product code.
    pub product_code: String,
    /// The batch.
    pub batch: String,
    /// The state asked for, or undone.
    pub state: String,
    /// Whether the change undoes `state`.
    pub undo: bool,
    /// The markets the accepted changes go to.
    pub markets: Vec<String>,
    /// The batch's markets that recalled it and take no change.
    pub recalled: Vec<String>,
    /// One per serial, in request order.
    pub results: Vec<PackStateResultBody>,
}

/// Where a pack stands in one market, in the OBP's pack query.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct MarketPackStateBody {
    /// `ACTIVE`, `SUPPLIED`, ..., or `UNKNOWN` when the market did not answer (or does not hold
    /// the pack yet).
    pub state: String,
    /// `WITHDRAWN`, `RECALLED`, `EXPIRED`; for `UNKNOWN`, `UNREACHABLE` or `NOT_DISTRIBUTED`.
    pub reasons: Vec<String>,
}

/// The answer to `GET /v1/products/{product_code}/packs/{serial}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct PackQueryBody {
    /// The pack's batch; null when no market that answered holds the pack.
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
