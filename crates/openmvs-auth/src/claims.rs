//! The claims an access token carries: who holds it, in which role, market and location, and when
//! it is valid.

use serde::{Deserialize, Serialize};

use crate::{TOKEN_LIFETIME_SECS, random_bytes};

/// The payload of an access token.
///
/// Decoding refuses unknown fields: every token was written by this crate, so an extra field means
/// a token from somewhere else or a mistake, never something to ignore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// The client id the token was issued to.
    pub sub: String,
    /// The client's role (pharmacy, hospital, wholesaler, NMVO, NCA, ...), as the permission table
    /// names it.
    pub role: String,
    /// The market (country code) of the national system that issued the token.
    pub market: String,
    /// The client's location, the one an undo must come from.
    pub location: String,
    /// When the token was issued, in Unix seconds.
    pub iat: i64,
    /// When the token expires, in Unix seconds.
    pub exp: i64,
    /// A random token id, unique per token, for audit and revocation lists.
    pub jti: String,
}

impl Claims {
    /// Claims for a token issued now to `sub`, valid for [`TOKEN_LIFETIME_SECS`], with a fresh
    /// random `jti`.
    ///
    /// # Panics
    ///
    /// If the operating system's random number generator fails.
    #[must_use]
    pub fn new(
        sub: impl Into<String>,
        role: impl Into<String>,
        market: impl Into<String>,
        location: impl Into<String>,
        now_secs: i64,
    ) -> Self {
        Self {
            sub: sub.into(),
            role: role.into(),
            market: market.into(),
            location: location.into(),
            iat: now_secs,
            exp: now_secs.saturating_add(TOKEN_LIFETIME_SECS),
            jti: crate::jws::b64(&random_bytes::<16>()),
        }
    }
}
