//! Conversions between rows and records: a SQLite row is exposed as the engine-neutral
//! [`Columns`] and decoded by `openmvs_store::decode`, the same decoders every engine uses.

use openmvs_audit::{Checkpoint, Sealed};
use openmvs_core::ids::ProductCode;
use openmvs_store::decode::{self, Columns};
pub use openmvs_store::decode::{
    ALERT_COLUMNS, AUDIT_COLUMNS, OUTBOX_COLUMNS, change_columns, corrupt, hash, markets_to_text,
};
use openmvs_store::*;
use rusqlite::Row;

pub fn sql_err(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::FromSqlConversionFailure(..) | rusqlite::Error::InvalidColumnType(..) => corrupt(e),
        e => StoreError::Unavailable(e.to_string()),
    }
}

/// The alerts not closed, per status, in the `alerts` table of either store
/// ([`decode::OPEN_ALERT_COUNTS`]).
pub fn open_alert_counts(
    c: &rusqlite::Connection,
) -> StoreResult<Vec<(openmvs_core::alert::AlertStatus, u64)>> {
    let mut s = c.prepare_cached(decode::OPEN_ALERT_COUNTS).map_err(sql_err)?;
    let rows = s
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .map_err(sql_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql_err)?;
    decode::open_alert_counts(&rows)
}

/// A SQLite row as [`Columns`] (national and hub rows alike).
pub(crate) struct R<'a, 'b>(pub(crate) &'a Row<'b>);

impl Columns for R<'_, '_> {
    fn text(&self, i: usize) -> StoreResult<String> {
        self.0.get(i).map_err(sql_err)
    }
    fn opt_text(&self, i: usize) -> StoreResult<Option<String>> {
        self.0.get(i).map_err(sql_err)
    }
    fn int(&self, i: usize) -> StoreResult<i64> {
        self.0.get(i).map_err(sql_err)
    }
    fn opt_int(&self, i: usize) -> StoreResult<Option<i64>> {
        self.0.get(i).map_err(sql_err)
    }
    fn boolean(&self, i: usize) -> StoreResult<bool> {
        self.0.get(i).map_err(sql_err)
    }
    fn bytes(&self, i: usize) -> StoreResult<Vec<u8>> {
        self.0.get(i).map_err(sql_err)
    }
}

/// Columns: batch, state, last_command, last_location, last_at, synced_from, repeats, version.
pub fn stored_pack(r: &Row<'_>) -> StoreResult<StoredPack> {
    decode::stored_pack(&R(r), 0)
}

/// Columns: product_code, scheme, name, common_name, form, strength, pack_type, pack_size, owner, withdrawn, version.
pub fn product(r: &Row<'_>) -> StoreResult<ProductRecord> {
    decode::product(&R(r), 0)
}

/// Columns: batch, expiry, expiry_year, recalled, markets (the product code is known to the caller).
pub fn batch_record(pc: &ProductCode, r: &Row<'_>) -> StoreResult<BatchRecord> {
    decode::batch_record(pc, &R(r), 0)
}

pub fn alert(r: &Row<'_>) -> StoreResult<AlertRecord> {
    decode::alert(&R(r))
}

pub fn audit(r: &Row<'_>) -> StoreResult<(u64, Sealed)> {
    decode::audit(&R(r))
}

pub fn checkpoint(r: &Row<'_>) -> StoreResult<Checkpoint> {
    decode::checkpoint(&R(r))
}

pub fn outbox(r: &Row<'_>) -> StoreResult<StoredOutboxMessage> {
    decode::outbox(&R(r))
}

pub fn bulk(r: &Row<'_>) -> StoreResult<BulkJob> {
    decode::bulk(&R(r))
}

pub fn client(r: &Row<'_>) -> StoreResult<ClientRecord> {
    decode::client(&R(r))
}

pub fn key(r: &Row<'_>) -> StoreResult<KeyRecord> {
    decode::key(&R(r))
}
