//! The one mapping from service errors to HTTP responses. Both services refuse with
//! [`ApiError`]; the status comes from the return-code catalogue, a 429 or 503 carries
//! `Retry-After` (the wait the refusal names, or [`RETRY_AFTER_SECS`]), a 401 carries
//! `WWW-Authenticate: Bearer`. The body is the national systems' [`ErrorBody`], or on the hub's
//! routes its [`HubErrorBody`] (the same fields plus `code`): the body type is the one type
//! parameter.

use std::marker::PhantomData;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use openmvs_core::error::ApiError;
use openmvs_core::return_code::ReturnCode;
use openmvs_wire::api::ErrorBody;
use openmvs_wire::obp::HubErrorBody;
use serde::Serialize;

/// Seconds a client should wait after a 429 or a 503 whose refusal names no wait.
pub const RETRY_AFTER_SECS: u32 = 1;

/// A refused request, as HTTP, answered with a body of type `B`.
pub struct HttpError<B = ErrorBody>(pub ApiError, PhantomData<fn() -> B>);

/// A refused request on the hub's routes.
pub type HubHttpError = HttpError<HubErrorBody>;

impl<B> std::fmt::Debug for HttpError<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("HttpError").field(&self.0).finish()
    }
}

impl<B> From<ApiError> for HttpError<B> {
    fn from(e: ApiError) -> HttpError<B> {
        HttpError(e, PhantomData)
    }
}

impl From<HttpError> for HubHttpError {
    fn from(e: HttpError) -> HubHttpError {
        HttpError(e.0, PhantomData)
    }
}

impl HttpError {
    /// A refusal with the national systems' body.
    pub fn new(e: ApiError) -> HttpError {
        e.into()
    }

    /// A 400 naming the field.
    pub fn field(field: &str, message: impl Into<String>) -> HttpError {
        ApiError::field(field, message).into()
    }

    /// An error with a code and its catalogue message.
    pub fn code(code: ReturnCode) -> HttpError {
        ApiError::new(code).into()
    }
}

impl<B> IntoResponse for HttpError<B>
where
    B: for<'a> From<&'a ApiError> + Serialize,
{
    fn into_response(self) -> Response {
        let e = self.0;
        let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, Json(B::from(&e))).into_response();
        let limited =
            matches!(e.code, ReturnCode::Unavailable | ReturnCode::RateLimited | ReturnCode::ClientSuspended);
        if let Some(secs) = e.retry_after.or(limited.then_some(u64::from(RETRY_AFTER_SECS))) {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if e.code == ReturnCode::Unauthenticated {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
