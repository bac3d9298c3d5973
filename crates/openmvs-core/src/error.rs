//! The one error type of every OpenMVS service, the national systems' and the hub's: a return
//! code from the catalogue (whose row gives the HTTP status), a message and the fields at fault.
//!
//! It lives here, at the bottom of the workspace, because every layer above meets it and none
//! has to depend upwards for it: the core's decisions refuse with it, `openmvs-store` turns a
//! storage failure into it (logging the cause), the services return it, `openmvs-wire` builds the
//! JSON error bodies from it and `openmvs-http` maps it to a response in one place. It is plain
//! data: no IO, no logging, no serialisation.

use crate::master_data::{FieldCode, FieldError};
use crate::return_code::ReturnCode;

/// One field at fault, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorDetail {
    /// The field's path, e.g. `markets[1]`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// A request that was not carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// The return code; its catalogue row gives the HTTP status.
    pub code: ReturnCode,
    /// What went wrong, in one sentence.
    pub message: String,
    /// The fields at fault.
    pub details: Vec<ErrorDetail>,
    /// How long the client should wait before sending again, in seconds, when the refusal says
    /// (`Retry-After` of a 429 or 503); `None` leaves the HTTP layer's default.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with the catalogue's message and no details.
    pub fn new(code: ReturnCode) -> ApiError {
        ApiError { code, message: code.info().message.to_owned(), details: Vec::new(), retry_after: None }
    }

    /// Says how long the client should wait before sending again (at least a second).
    pub fn with_retry_after(mut self, wait: std::time::Duration) -> ApiError {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        self.retry_after = Some(secs.max(1));
        self
    }

    /// Adds a detail.
    pub fn with(mut self, field: impl Into<String>, message: impl Into<String>) -> ApiError {
        self.details.push(ErrorDetail { field: field.into(), message: message.into() });
        self
    }

    /// A malformed request (400), naming the field and the rule.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::new(ReturnCode::MalformedRequest).with(field, message)
    }

    /// A malformed request (400), naming the field and the rule: the same as [`ApiError::field`].
    pub fn malformed(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::field(field, message)
    }

    /// The resource belongs to someone else, or the caller may not call at all (403).
    pub fn forbidden(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::new(ReturnCode::Forbidden).with(field, message)
    }

    /// Nothing of the caller's exists at this id (404).
    pub fn not_found(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::new(ReturnCode::NotFound).with(field, message)
    }

    /// A field of the request is empty, invalid or not allowed in this state (422 `I1`).
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::new(ReturnCode::MasterDataInvalid).with(field, message)
    }

    /// The same batch number was used before with other data (409, `HUB_DATA_CONFLICT`).
    pub fn conflict(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(ReturnCode::HubDataConflict);
        e.message = "This batch was uploaded before with other data: a batch never changes.".into();
        e.with(field, message)
    }

    /// Refused master data: A16 if any field is missing, else I1, with every field at fault.
    pub fn master_data(errors: &[FieldError]) -> ApiError {
        let missing = errors.iter().any(|e| e.code == FieldCode::A16);
        let code = if missing { ReturnCode::MasterDataMissing } else { ReturnCode::MasterDataInvalid };
        let mut e = ApiError::new(code);
        e.details = errors
            .iter()
            .map(|f| ErrorDetail {
                field: f.field.clone(),
                message: format!("{}: {}", f.code.as_str(), f.message),
            })
            .collect();
        e
    }

    /// The HTTP status, from the catalogue.
    pub fn http_status(&self) -> u16 {
        self.code.http_status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_carries_its_code_the_catalogue_message_and_its_fields() {
        let e = ApiError::invalid("markets", "names no market").with("markets[0]", "is not a market");
        assert_eq!((e.code, e.http_status()), (ReturnCode::MasterDataInvalid, 422));
        assert_eq!(e.message, ReturnCode::MasterDataInvalid.info().message);
        assert_eq!(e.details.len(), 2);
        assert_eq!(e.to_string(), format!("{}: {}", e.code, e.message));
    }

    #[test]
    fn refused_master_data_is_a16_if_any_field_is_missing() {
        let f = |code, field: &str| FieldError { code, field: field.into(), message: "x".into() };
        let e = ApiError::master_data(&[f(FieldCode::I1, "name"), f(FieldCode::A16, "form")]);
        assert_eq!(e.code, ReturnCode::MasterDataMissing);
        assert_eq!(e.details[0].message, "I1: x");
        assert_eq!(ApiError::master_data(&[f(FieldCode::I1, "name")]).code, ReturnCode::MasterDataInvalid);
    }
}
