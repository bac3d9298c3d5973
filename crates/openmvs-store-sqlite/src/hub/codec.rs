//! Conversions between the hub's rows and records: a SQLite row is exposed as the engine-neutral
//! `Columns` and decoded by `openmvs_store::decode_hub`, the same decoders every hub engine
//! uses, so a corrupt row is reported as corrupt.

use openmvs_core::ids::{MarketCode, ProductCode};
use openmvs_store::decode_hub;
pub use openmvs_store::decode_hub::{ALERT_COLUMNS, OBP_COLUMNS, UPLOAD_COLUMNS, market_data_json};
use openmvs_store::hub::*;
use openmvs_store::*;
use rusqlite::Row;

use crate::codec::R;

/// Market lists are stored sorted and without repeats, so that every read gives them in market
/// order whatever order they were written in.
pub fn markets_text(m: &[MarketCode]) -> String {
    decode_hub::markets_text(m)
}

pub fn obp(r: &Row<'_>) -> StoreResult<ObpRecord> {
    decode_hub::obp(&R(r))
}

/// Columns: product_code, scheme, owner, current_version, created_at, withdrawn markets (concatenated).
pub fn product(r: &Row<'_>) -> StoreResult<HubProductRecord> {
    decode_hub::product(&R(r))
}

/// Columns: version, name, common_name, form, strength, pack_type, pack_size, market_data,
/// created_at (the product code is known to the caller).
pub fn product_version(pc: &ProductCode, r: &Row<'_>) -> StoreResult<ProductVersionRecord> {
    decode_hub::product_version(pc, &R(r), decode_hub::market_data)
}

/// Columns: batch, product_version, expiry, expiry_year, markets, recalled markets (concatenated).
pub fn batch_record(pc: &ProductCode, r: &Row<'_>) -> StoreResult<HubBatchRecord> {
    decode_hub::batch_record(pc, &R(r))
}

/// An upload row; its markets are read apart and added by the caller.
pub fn upload(r: &Row<'_>) -> StoreResult<UploadRecord> {
    decode_hub::upload(&R(r))
}

/// Columns: market, sent, acked.
pub fn upload_market(status: UploadStatus, r: &Row<'_>) -> StoreResult<UploadMarket> {
    decode_hub::upload_market(status, &R(r), 0)
}

/// Columns: line, serial, reason.
pub fn rejection(r: &Row<'_>) -> StoreResult<UploadRejection> {
    decode_hub::rejection(&R(r))
}

pub fn alert(r: &Row<'_>) -> StoreResult<HubAlertRecord> {
    decode_hub::alert(&R(r))
}
