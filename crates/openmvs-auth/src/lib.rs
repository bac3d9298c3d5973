//! Authentication for a national system: OAuth2 client secrets and locally validated access tokens.
//!
//! End users (pharmacies, hospitals, wholesalers, the NMVO, the NCA) obtain an access token at
//! `POST /oauth/token` with the OAuth2 client-credentials grant and send it as a bearer token on
//! every other request. This crate is the logic behind both steps; the HTTP layer and storage are
//! elsewhere. It does no IO except drawing randomness for secrets, salts, token ids and keys, and it
//! takes time as a number (`now_secs`, Unix seconds) so that every rule can be tested with a fake
//! clock.
//!
//! # Why tokens are validated locally
//!
//! A national system signs its own tokens and validates them with its own public keys, in process,
//! on every request. No external identity provider is consulted at request time: outages of shared
//! identity providers have broken token renewal across Europe, and a verification at the pharmacy
//! counter must not depend on one.
//!
//! # The pieces
//!
//! - [`new_client_id`], [`new_client_secret`], [`hash_secret`], [`verify_secret`] and
//!   [`authenticate_client`]: client credentials, stored as argon2id PHC strings.
//! - [`Claims`]: what a token says about its holder (client id, role, market, location) and when
//!   it is valid.
//! - [`SigningKeyPair`] and [`KeyRing`]: Ed25519 signing keys with key ids, one active key that
//!   signs new tokens and any number of verification-only keys that still accept older tokens.
//! - [`Validator`]: the cheap, thread-safe check run on every request, with a bounded cache so
//!   that a token seen before costs well under a microsecond to accept again.
//!
//! # Token format
//!
//! A token is a compact JWS (RFC 7515) with the header `{"alg":"EdDSA","typ":"JWT","kid":"..."}`
//! and the [`Claims`] as payload, each part base64url without padding. Only `EdDSA` (Ed25519,
//! verified with `verify_strict`) is accepted; `none`, HMAC and every other algorithm are refused
//! before any key is looked up, so no algorithm-confusion attack has anything to work with.
//!
//! # Time
//!
//! A token is accepted while `now < exp + LEEWAY_SECS` and `iat <= now + LEEWAY_SECS`. The
//! [`LEEWAY_SECS`] allowance absorbs clock differences between the instances of a national system
//! (which issue and validate each other's tokens) without letting a token live noticeably longer.
//! A token whose lifetime `exp - iat` exceeds [`TOKEN_LIFETIME_SECS`] is refused even if correctly
//! signed: that bound is what makes the key-retirement rule below safe.
//!
//! # Zero-downtime key rotation
//!
//! Keys are rotated without refusing a single valid token:
//!
//! 1. Generate the new key ([`SigningKeyPair::generate`]) and persist it.
//! 2. On a system with several instances, first give every instance the new public key as a
//!    verification-only key ([`KeyRing::add_verification_key`]), so that a token signed with it is
//!    accepted everywhere before any instance signs with it. A single instance can skip this step.
//! 3. Make it the active key ([`KeyRing::rotate`]) on every instance. New tokens carry the new
//!    `kid`; the old key becomes verification-only and keeps accepting the tokens it signed.
//! 4. Once [`TOKEN_LIFETIME_SECS`] + [`LEEWAY_SECS`] have passed since the last instance stopped
//!    signing with the old key (see [`earliest_retirement`]), no token it signed can still be
//!    valid: drop it with [`KeyRing::retire`] and delete its secret from storage.
//!
//! Every [`Validator`] handed out by a [`KeyRing`] follows the ring: a rotation is visible to all
//! of them at once, and a retirement refuses the retired key's tokens at once, cached or not.
//! For a compromised key, skip the wait in step 4: retiring it immediately logs out its holders,
//! who simply request a new token.

mod claims;
mod error;
mod jws;
mod keys;
mod secret;
mod validator;

pub use claims::Claims;
pub use error::AuthError;
pub use keys::{KeyRing, SigningKeyPair};
pub use secret::{
    ARGON2_M_COST_KIB, ARGON2_P_COST, ARGON2_T_COST, authenticate_client, hash_secret, needs_rehash,
    new_client_id, new_client_secret, verify_secret,
};
pub use validator::{CACHE_CAPACITY, MAX_TOKEN_LEN, Validator};

/// How long an access token is valid, in seconds; the `expires_in` of `POST /oauth/token`.
///
/// It is also the longest lifetime a [`Validator`] accepts, so that a retired signing key can be
/// dropped safely once this long (plus [`LEEWAY_SECS`]) has passed since it last signed.
pub const TOKEN_LIFETIME_SECS: i64 = 3600;

/// Clock skew tolerated when checking `exp` and `iat`, in seconds.
///
/// Thirty seconds covers instances whose clocks are kept by NTP (typically within milliseconds)
/// with a wide margin, and adds less than 1% to a token's one-hour life.
pub const LEEWAY_SECS: i64 = 30;

/// The earliest Unix time at which a key that stopped signing at `last_signed_secs` may be
/// retired without refusing any token it signed that is still valid.
///
/// A token signed at `t <= last_signed_secs` has `exp <= t + TOKEN_LIFETIME_SECS` (a longer
/// lifetime is refused) and is accepted only while `now < exp + LEEWAY_SECS`.
#[must_use]
pub const fn earliest_retirement(last_signed_secs: i64) -> i64 {
    last_signed_secs.saturating_add(TOKEN_LIFETIME_SECS).saturating_add(LEEWAY_SECS)
}

/// Draws `N` bytes from the operating system's random number generator.
///
/// # Panics
///
/// If the operating system cannot provide randomness. That happens only on a broken system, where
/// issuing secrets or keys from anything weaker would be worse than stopping.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system's random number generator failed");
    bytes
}
