//! What a call of the clients can end in, other than its answer: [`ClientError`].

use std::time::Duration;

use openmvs_wire::api::{ErrorBody, OAuthError};

/// Why a call did not give its answer.
///
/// A single-pack request that the rules refused is not an error: it is a `PackResponse` with
/// `accepted: false` and its return code. This type is for what stopped the request before
/// that: the server's HTTP errors (with their body), the network, a bad configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered with an HTTP error and its body (api.md §2: `return_code`, `message`,
    /// `details`; the hub's body carries the same fields). A 429 or 503 is returned here once
    /// the retry policy gave up on it.
    #[error("HTTP {status} {}: {}{}", body.return_code, body.message, details(body))]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The error body.
        body: ErrorBody,
        /// The wait the server asked for (`Retry-After`), on a 429 or 503.
        retry_after: Option<Duration>,
        /// How many times the request was sent.
        attempts: u32,
    },
    /// The token endpoint refused the client id and secret (RFC 6749: `invalid_client`, 401).
    #[error("the token endpoint refused the client (HTTP {status}): {}: {}", error.error, error.error_description)]
    Login {
        /// The HTTP status.
        status: u16,
        /// The OAuth2 error.
        error: OAuthError,
    },
    /// No answer came: the connection failed, the request timed out, or the answer was cut off,
    /// on every attempt the retry policy allowed.
    #[error("{what}: no answer after {attempts} attempt(s): {source}")]
    Transport {
        /// The request, e.g. `POST /v1/packs/supply`.
        what: String,
        /// How many times the request was sent.
        attempts: u32,
        /// The last failure.
        #[source]
        source: reqwest::Error,
    },
    /// An answer the API does not give: an unexpected status, or a body that is not the shape
    /// of the route.
    #[error("{what}: unexpected answer (HTTP {status}): {detail}")]
    UnexpectedAnswer {
        /// The request.
        what: String,
        /// The HTTP status.
        status: u16,
        /// What was wrong, with the start of the body.
        detail: String,
    },
    /// A wait for a bulk request or an upload reached its deadline first.
    #[error("{what}: not done after {waited:?}; last status {last_status}")]
    DeadlineExceeded {
        /// What was waited for.
        what: String,
        /// How long the client waited.
        waited: Duration,
        /// The status last seen.
        last_status: String,
    },
    /// An upload ended `FAILED` while the client waited for another status.
    #[error("upload {upload_id} failed")]
    UploadFailed {
        /// The upload.
        upload_id: String,
    },
    /// The client's configuration is unusable (a URL, a certificate, a key).
    #[error("configuration: {field}: {message}")]
    Config {
        /// The setting at fault.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// An argument the client refuses before sending anything.
    #[error("{field}: {message}")]
    InvalidInput {
        /// The argument at fault.
        field: &'static str,
        /// The rule it breaks.
        message: String,
    },
}

fn details(body: &ErrorBody) -> String {
    body.details.iter().map(|d| format!(" [{}: {}]", d.field, d.message)).collect()
}

impl ClientError {
    /// The HTTP status of a refusal or an unexpected answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Refused { status, .. }
            | ClientError::Login { status, .. }
            | ClientError::UnexpectedAnswer { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The error body of a refusal.
    pub fn error_body(&self) -> Option<&ErrorBody> {
        match self {
            ClientError::Refused { body, .. } => Some(body),
            _ => None,
        }
    }

    /// The return code of a refusal, e.g. `NMVS_TE_XM_02`.
    pub fn return_code(&self) -> Option<&str> {
        self.error_body().map(|b| b.return_code.as_str())
    }

    /// Whether the same request may succeed later unchanged: a refusal for load (429, 503) or
    /// no answer at all. A client that keeps requests for later (an offline queue) sends these
    /// again with the same `client_trx_id`; anything else needs a changed request.
    pub fn is_temporary(&self) -> bool {
        match self {
            ClientError::Refused { status, .. } => *status == 429 || *status == 503,
            ClientError::Transport { .. } => true,
            _ => false,
        }
    }
}
