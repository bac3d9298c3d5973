//! The hub's one error type: a return code from the core catalogue (whose row gives the HTTP
//! status), a message and the fields at fault.

use openmvs_core::master_data::{FieldCode, FieldError};
use openmvs_core::return_code::ReturnCode;
use openmvs_store::StoreError;
use openmvs_wire::api::{ErrorBody, ErrorDetail};

/// A request the hub did not carry out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct HubError {
    /// The return code; its catalogue row gives the HTTP status (A16 and I1 are 422).
    pub code: ReturnCode,
    /// What went wrong, in one sentence.
    pub message: String,
    /// The fields at fault.
    pub details: Vec<ErrorDetail>,
}

impl HubError {
    /// An error with the catalogue's message and no details.
    pub fn new(code: ReturnCode) -> HubError {
        HubError { code, message: code.info().message.to_owned(), details: Vec::new() }
    }

    /// Adds a detail.
    pub fn with(mut self, field: impl Into<String>, message: impl Into<String>) -> HubError {
        self.details.push(ErrorDetail { field: field.into(), message: message.into() });
        self
    }

    /// A malformed request (400), naming the field and the rule.
    pub fn malformed(field: impl Into<String>, message: impl Into<String>) -> HubError {
        HubError::new(ReturnCode::MalformedRequest).with(field, message)
    }

    /// The product or resource belongs to another OBP, or the OBP may not call the hub (403).
    pub fn forbidden(field: impl Into<String>, message: impl Into<String>) -> HubError {
        HubError::new(ReturnCode::Forbidden).with(field, message)
    }

    /// Nothing of this OBP exists at this id (404).
    pub fn not_found(field: impl Into<String>, message: impl Into<String>) -> HubError {
        HubError::new(ReturnCode::NotFound).with(field, message)
    }

    /// A field of the request is empty, invalid or not allowed in this state (422 `I1`).
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> HubError {
        HubError::new(ReturnCode::MasterDataInvalid).with(field, message)
    }

    /// The same id (a batch number) was used before with other data (409, `HUB_DATA_CONFLICT`).
    pub fn conflict(field: impl Into<String>, message: impl Into<String>) -> HubError {
        let mut e = HubError::new(ReturnCode::HubDataConflict);
        e.message = "This batch was uploaded before with other data: a batch never changes.".into();
        e.with(field, message)
    }

    /// Refused master data: A16 if any field is missing, else I1, with every field at fault.
    pub fn master_data(errors: &[FieldError]) -> HubError {
        let missing = errors.iter().any(|e| e.code == FieldCode::A16);
        let code = if missing { ReturnCode::MasterDataMissing } else { ReturnCode::MasterDataInvalid };
        let mut e = HubError::new(code);
        e.details = errors
            .iter()
            .map(|f| ErrorDetail {
                field: f.field.clone(),
                message: format!("{}: {}", f.code.as_str(), f.message),
            })
            .collect();
        e
    }

    /// The hub cannot answer now; nothing was changed (503). The cause is logged, not answered.
    pub fn unavailable(why: impl std::fmt::Display) -> HubError {
        tracing::warn!(cause = %why, "hub request refused as unavailable");
        HubError::new(ReturnCode::Unavailable)
    }

    /// The HTTP status, from the catalogue.
    pub fn http_status(&self) -> u16 {
        self.code.http_status()
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

impl From<StoreError> for HubError {
    fn from(e: StoreError) -> HubError {
        match e {
            StoreError::Corrupt(ref what) => {
                tracing::error!(cause = %what, "hub data is corrupt");
                HubError::new(ReturnCode::Unavailable)
            }
            e => HubError::unavailable(e),
        }
    }
}

impl From<openmvs_core::error::ApiError> for HubError {
    fn from(e: openmvs_core::error::ApiError) -> HubError {
        let details =
            e.details.into_iter().map(|d| ErrorDetail { field: d.field, message: d.message }).collect();
        HubError { code: e.code, message: e.message, details }
    }
}
