//! The one error type of the service: a return code from the catalogue, a message and the fields
//! at fault. The HTTP layer maps it with the code's HTTP status and nothing else.

use openmvs_core::return_code::ReturnCode;
use openmvs_store::StoreError;
use openmvs_wire::api::{ErrorBody, ErrorDetail};

/// A request that was not processed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// The return code; its catalogue row gives the HTTP status.
    pub code: ReturnCode,
    /// What went wrong, in one sentence.
    pub message: String,
    /// The fields at fault.
    pub details: Vec<ErrorDetail>,
}

impl ApiError {
    /// An error with the catalogue's message and no details.
    pub fn new(code: ReturnCode) -> ApiError {
        ApiError { code, message: code.info().message.to_owned(), details: Vec::new() }
    }

    /// A malformed request, naming the field and the rule.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::new(ReturnCode::MalformedRequest).with(field, message)
    }

    /// Adds a detail.
    pub fn with(mut self, field: impl Into<String>, message: impl Into<String>) -> ApiError {
        self.details.push(ErrorDetail { field: field.into(), message: message.into() });
        self
    }

    /// The service cannot answer now; nothing was changed.
    pub fn unavailable(why: impl std::fmt::Display) -> ApiError {
        tracing::warn!(cause = %why, "request refused as unavailable");
        ApiError::new(ReturnCode::Unavailable)
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            return_code: self.code.as_str().to_owned(),
            message: self.message.clone(),
            details: self.details.clone(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Corrupt(ref what) => {
                tracing::error!(cause = %what, "stored data is corrupt");
                ApiError::new(ReturnCode::Unavailable)
            }
            e => ApiError::unavailable(e),
        }
    }
}
