//! The one mapping from service errors to HTTP responses.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use openmvs_core::return_code::ReturnCode;
use openmvs_national::ApiError;

/// Seconds a client should wait after a 429 or a 503.
pub const RETRY_AFTER_SECS: u32 = 1;

/// A refused request, as HTTP.
#[derive(Debug)]
pub struct HttpError(pub ApiError);

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> HttpError {
        HttpError(e)
    }
}

impl HttpError {
    /// A 400 naming the field.
    pub fn field(field: &str, message: impl Into<String>) -> HttpError {
        HttpError(ApiError::field(field, message))
    }

    /// An error with a code and its catalogue message.
    pub fn code(code: ReturnCode) -> HttpError {
        HttpError(ApiError::new(code))
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, Json(self.0.body())).into_response();
        if matches!(self.0.code, ReturnCode::Unavailable | ReturnCode::RateLimited) {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        if self.0.code == ReturnCode::Unauthenticated {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
