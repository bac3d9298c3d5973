//! A storage failure as the services answer it: [`openmvs_core::error::ApiError`] with 503, the
//! cause logged and never answered. Here because this crate is the lowest one that knows both
//! [`StoreError`] and the services' error type.

use openmvs_core::error::ApiError;
use openmvs_core::return_code::ReturnCode;

use crate::StoreError;

/// The service cannot answer now; nothing was changed (503). The cause is logged, not answered.
pub fn unavailable(why: impl std::fmt::Display) -> ApiError {
    tracing::warn!(cause = %why, "request refused as unavailable");
    ApiError::new(ReturnCode::Unavailable)
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Corrupt(ref what) => {
                tracing::error!(cause = %what, "stored data is corrupt");
                ApiError::new(ReturnCode::Unavailable)
            }
            e => unavailable(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_storage_failure_is_503_without_its_cause() {
        for e in [StoreError::Unavailable("disk full".into()), StoreError::Corrupt("bad row".into())] {
            let a = ApiError::from(e);
            assert_eq!((a.code, a.details.len()), (ReturnCode::Unavailable, 0));
            assert!(!a.message.contains("disk") && !a.message.contains("row"));
        }
    }
}
