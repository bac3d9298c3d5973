//! PostgreSQL rows as the engine-neutral [`Columns`], and errors as storage errors.

use openmvs_store::decode::{Columns, corrupt};
use openmvs_store::{StoreError, StoreResult};
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;

/// A database error as a storage error: decoding problems are corruption, the rest unavailability.
pub fn pg_err(e: tokio_postgres::Error) -> StoreError {
    if e.code().is_none() && e.to_string().contains("error deserializing column") {
        return corrupt(e);
    }
    // The server's own words ("cannot execute INSERT in a read-only transaction"), not only
    // "db error", so the log says why a commit failed.
    match e.as_db_error() {
        Some(db) => StoreError::Unavailable(format!("{} ({})", db.message(), db.code().code())),
        None => StoreError::Unavailable(e.to_string()),
    }
}

/// Whether the error is a lock wait that ended without the lock: a deadlock broken by the server,
/// a lock timeout, or a serialisation failure. Nothing of the statement was written; the unit of
/// work is decided again on fresh reads.
pub fn is_contention(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::LOCK_NOT_AVAILABLE
            || *c == SqlState::T_R_SERIALIZATION_FAILURE
    )
}

/// A PostgreSQL row as [`Columns`]. Integers of any width read as `i64`.
pub struct R<'a>(pub &'a Row);

impl R<'_> {
    fn get<'r, T: tokio_postgres::types::FromSql<'r>>(&'r self, i: usize) -> StoreResult<T> {
        self.0.try_get(i).map_err(|e| corrupt(format!("column {i}: {e}")))
    }
}

impl Columns for R<'_> {
    fn text(&self, i: usize) -> StoreResult<String> {
        self.get(i)
    }
    fn opt_text(&self, i: usize) -> StoreResult<Option<String>> {
        self.get(i)
    }
    fn int(&self, i: usize) -> StoreResult<i64> {
        self.opt_int(i)?.ok_or_else(|| corrupt(format!("column {i} is NULL")))
    }
    fn opt_int(&self, i: usize) -> StoreResult<Option<i64>> {
        let ty = self.0.columns().get(i).map(|c| c.type_().clone());
        match ty {
            Some(Type::INT2) => Ok(self.get::<Option<i16>>(i)?.map(i64::from)),
            Some(Type::INT4) => Ok(self.get::<Option<i32>>(i)?.map(i64::from)),
            _ => self.get(i),
        }
    }
    fn boolean(&self, i: usize) -> StoreResult<bool> {
        self.get(i)
    }
    fn bytes(&self, i: usize) -> StoreResult<Vec<u8>> {
        self.get(i)
    }
}
