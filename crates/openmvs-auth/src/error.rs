//! The one error type of authentication, with variants the HTTP layer maps to responses.

/// Why a client could not be authenticated or a token was refused.
///
/// Messages are one line and name what is wrong, but never echo a secret, a token or any part of
/// one: they may be logged, and a token is a credential. [`AuthError::InvalidClient`] maps to
/// `401 invalid_client` at `POST /oauth/token`; every token refusal maps to `401 NMVS_FE_AU_01`;
/// [`AuthError::Internal`] is a fault of the system or its operator, not of the client;
/// [`AuthError::Unavailable`] says that no token is issued for now, whoever asks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The client id is unknown or the secret does not match; the two are deliberately not told
    /// apart, so that client ids cannot be probed.
    #[error("invalid client id or client secret")]
    InvalidClient,
    /// The token is not a compact JWS of the expected shape; the reason says which part is wrong.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The token's `kid` names no key this system verifies with (never issued, or retired).
    #[error("token signed with an unknown or retired key")]
    UnknownKey,
    /// The signature does not verify under the key the token names.
    #[error("token signature is invalid")]
    BadSignature,
    /// The token's `exp`, plus the leeway, has passed.
    #[error("token has expired")]
    Expired,
    /// The token's `iat` is later than now, beyond the leeway.
    #[error("token is not yet valid: issued in the future")]
    NotYetValid,
    /// The header's `alg` is not `EdDSA` (for example `none` or `HS256`).
    #[error("token algorithm is not EdDSA")]
    UnsupportedAlgorithm,
    /// A failure of the system or of its key material, not of the client's request.
    #[error("internal authentication error: {0}")]
    Internal(String),
    /// The system issues no token for now (it cannot read its signing keys); the reason says
    /// why. Tokens already issued stay valid: the client keeps its own and asks again later.
    #[error("no token is issued for now: {0}")]
    Unavailable(String),
}
