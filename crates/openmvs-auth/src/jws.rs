//! The compact JWS encoding shared by issuing and validation: header, base64url, signing input.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::Signer as _;
use serde::{Deserialize, Serialize};

use crate::{Claims, SigningKeyPair};

/// The only `alg` issued and accepted.
pub(crate) const ALG: &str = "EdDSA";
/// The `typ` every token carries (explicit typing, RFC 8725 §3.11).
pub(crate) const TYP: &str = "JWT";

/// The header as issued; field order gives `{"alg":..,"typ":..,"kid":..}`.
#[derive(Serialize)]
struct HeaderOut<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
}

/// The header as read from a token.
///
/// Unknown fields are refused, which also refuses `crit`, `jku`, `x5u` and every other parameter
/// that would ask a validator to fetch or trust something. `typ` and `kid` are optional here only
/// so that a header with a foreign `alg` is reported as such rather than as malformed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HeaderIn {
    pub(crate) alg: String,
    pub(crate) typ: Option<String>,
    pub(crate) kid: Option<String>,
}

/// Base64url without padding, the encoding of every JWS part.
pub(crate) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding, refusing padding and non-canonical trailing bits, so that one
/// token has exactly one spelling (the validator's cache is keyed by the spelling).
pub(crate) fn unb64(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// Signs `claims` with `key` as a compact JWS.
pub(crate) fn encode(key: &SigningKeyPair, claims: &Claims) -> String {
    let header = HeaderOut { alg: ALG, typ: TYP, kid: &key.kid };
    // Serialising a struct of strings and integers into memory cannot fail.
    let (header, payload) = (
        serde_json::to_vec(&header).expect("a JWS header serialises"),
        serde_json::to_vec(claims).expect("claims serialise"),
    );
    let mut token = b64(&header);
    token.push('.');
    token.push_str(&b64(&payload));
    let signature = key.signing_key().sign(token.as_bytes());
    token.push('.');
    token.push_str(&b64(&signature.to_bytes()));
    token
}
