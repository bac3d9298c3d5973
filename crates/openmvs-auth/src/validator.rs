//! Validation of bearer tokens on every request: structure, algorithm, key, signature and time,
//! with a bounded cache of tokens already verified.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use ed25519_dalek::{Signature, VerifyingKey};

use crate::jws::{self, HeaderIn};
use crate::{AuthError, Claims, LEEWAY_SECS, TOKEN_LIFETIME_SECS};

/// How many verified tokens a validator remembers.
///
/// A token is about 400 bytes and its claims about 200, so a full cache holds roughly 60 MB. That
/// is room for every client of a large market to hold several live tokens at once; beyond it, a
/// token is simply verified again.
pub const CACHE_CAPACITY: usize = 100_000;

/// The longest token accepted, in bytes. Ours are about 400 bytes; the bound stops an oversized
/// header from costing a base64 decode, a JSON parse or a cache lookup of its full length.
pub const MAX_TOKEN_LEN: usize = 2048;

/// Verification keys by key id.
pub(crate) type KeySet = HashMap<String, VerifyingKey>;

/// Checks bearer tokens against a set of public keys, locally, and remembers those it verified.
///
/// Cloning is cheap and clones share one key set and one cache (an `Arc` inside), so one validator
/// serves every request handler on every thread. A validator from [`KeyRing::validator`] follows
/// the ring's key changes; one from [`Validator::new`] changes keys with
/// [`set_keys`](Self::set_keys).
///
/// # Cost
///
/// The first validation of a token verifies its Ed25519 signature (about 50 µs on the 2-core
/// build machine). The validator then keeps the token's claims in a cache keyed by the token's
/// exact text, so that the next request with the same token costs a hash lookup under a read lock
/// and a copy of the claims (about 0.2 µs); `examples/cost.rs` measures both. The
/// cache only ever holds tokens whose signature verified under the current key set: it is emptied
/// whenever the key set changes, and the time rules (`exp`, `iat`) are checked again on every
/// hit, so a cached token is refused once it expires. When the cache reaches [`CACHE_CAPACITY`],
/// expired entries are dropped and, if that frees less than half, all entries are: a simple rule
/// whose worst case is one extra signature verification per live token, and which keeps the cost
/// of eviction amortised to a constant per insertion.
///
/// [`KeyRing::validator`]: crate::KeyRing::validator
#[derive(Clone)]
pub struct Validator {
    shared: Arc<Shared>,
}

struct Shared {
    state: RwLock<State>,
    capacity: usize,
}

/// The key set and the cache sit under one lock so that a key change and the emptying of the cache
/// are one step: no reader can see the new keys with entries verified under the old ones.
struct State {
    keys: Arc<KeySet>,
    /// Counts key-set changes. A validation that verified a token under generation `g` caches it
    /// only if the generation is still `g`, so a token verified with a key retired meanwhile never
    /// enters the cache.
    generation: u64,
    cache: HashMap<Box<str>, Claims>,
}

impl Validator {
    /// A validator for the given key ids and 32-byte Ed25519 public keys, for a process that
    /// validates tokens but does not issue them.
    ///
    /// # Errors
    ///
    /// [`AuthError::Internal`] if a public key is not a usable Ed25519 key or a key id repeats.
    pub fn new(keys: impl IntoIterator<Item = (String, [u8; 32])>) -> Result<Self, AuthError> {
        let validator = Self::with_capacity(CACHE_CAPACITY);
        validator.set_keys(keys)?;
        Ok(validator)
    }

    /// Replaces the key set, for this validator and all its clones, and empties the cache.
    ///
    /// For a validator from a [`KeyRing`](crate::KeyRing), change the ring instead: the ring
    /// replaces the key set again at its next change.
    ///
    /// # Errors
    ///
    /// [`AuthError::Internal`] if a public key is not a usable Ed25519 key or a key id repeats;
    /// the key set is then left as it was.
    pub fn set_keys(&self, keys: impl IntoIterator<Item = (String, [u8; 32])>) -> Result<(), AuthError> {
        let mut set = KeySet::new();
        for (kid, public) in keys {
            let key = verifying_key(&kid, &public)?;
            if set.insert(kid.clone(), key).is_some() {
                return Err(AuthError::Internal(format!("key id '{kid}' appears twice in the key set")));
            }
        }
        self.install(set);
        Ok(())
    }

    /// Checks `token` at time `now_secs` and returns its claims.
    ///
    /// # Errors
    ///
    /// - [`AuthError::Malformed`]: not three base64url parts, a header or payload that is not the
    ///   expected JSON, a signature that is not 64 bytes, a lifetime over
    ///   [`TOKEN_LIFETIME_SECS`], or longer than [`MAX_TOKEN_LEN`].
    /// - [`AuthError::UnsupportedAlgorithm`]: `alg` is not `EdDSA`.
    /// - [`AuthError::UnknownKey`]: `kid` is not in the key set.
    /// - [`AuthError::BadSignature`]: the signature does not verify (strictly) under that key.
    /// - [`AuthError::Expired`]: `now_secs >= exp + LEEWAY_SECS`.
    /// - [`AuthError::NotYetValid`]: `iat > now_secs + LEEWAY_SECS`.
    pub fn validate(&self, token: &str, now_secs: i64) -> Result<Claims, AuthError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Malformed("longer than any token issued"));
        }
        let (keys, generation) = {
            let state = self.read();
            if let Some(claims) = state.cache.get(token) {
                check_time(claims, now_secs)?;
                return Ok(claims.clone());
            }
            (Arc::clone(&state.keys), state.generation)
        };
        // The signature is verified without holding the lock, so that a slow verification never
        // stalls the cache hits of other requests.
        let claims = verify(&keys, token, now_secs)?;
        self.remember(generation, token, &claims, now_secs);
        Ok(claims)
    }

    /// How many verified tokens the cache holds, for metrics.
    #[must_use]
    pub fn cached_tokens(&self) -> usize {
        self.read().cache.len()
    }

    pub(crate) fn empty() -> Self {
        Self::with_capacity(CACHE_CAPACITY)
    }

    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: RwLock::new(State {
                    keys: Arc::new(KeySet::new()),
                    generation: 0,
                    cache: HashMap::new(),
                }),
                capacity,
            }),
        }
    }

    /// Caches a token verified under key-set `generation`, unless the key set changed since.
    fn remember(&self, generation: u64, token: &str, claims: &Claims, now_secs: i64) {
        let mut state = self.write();
        if state.generation == generation {
            insert(&mut state.cache, self.shared.capacity, token, claims, now_secs);
        }
    }

    /// Replaces the key set and empties the cache, in one step under the lock.
    pub(crate) fn install(&self, keys: KeySet) {
        let mut state = self.write();
        state.keys = Arc::new(keys);
        state.generation = state.generation.wrapping_add(1);
        state.cache.clear();
    }

    // A panic while the lock is held cannot leave the state half-changed (each change is a single
    // assignment or map operation), so a poisoned lock is used as it is rather than failing every
    // later request.
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.shared.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.shared.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.read();
        let mut kids: Vec<&String> = state.keys.keys().collect();
        kids.sort();
        f.debug_struct("Validator")
            .field("kids", &kids)
            .field("cached_tokens", &state.cache.len())
            .finish_non_exhaustive()
    }
}

/// Parses a public key for the key set, refusing encodings that are not a curve point and weak
/// (small-order) keys, under which a signature could verify for many messages.
pub(crate) fn verifying_key(kid: &str, public: &[u8; 32]) -> Result<VerifyingKey, AuthError> {
    match VerifyingKey::from_bytes(public) {
        Ok(key) if !key.is_weak() => Ok(key),
        _ => Err(AuthError::Internal(format!("public key of key id '{kid}' is not a usable Ed25519 key"))),
    }
}

/// The full check of a token not in the cache. The order matters: the algorithm is checked before
/// a key is chosen, and the signature before the payload is parsed, so that nothing an attacker
/// wrote is interpreted before it is proven to be ours.
fn verify(keys: &KeySet, token: &str, now_secs: i64) -> Result<Claims, AuthError> {
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed("not three dot-separated parts"));
    };
    let header = jws::unb64(header_b64).ok_or(AuthError::Malformed("header is not base64url"))?;
    let header: HeaderIn =
        serde_json::from_slice(&header).map_err(|_| AuthError::Malformed("header is not a JWS header"))?;
    if header.alg != jws::ALG {
        return Err(AuthError::UnsupportedAlgorithm);
    }
    if header.typ.as_deref() != Some(jws::TYP) {
        return Err(AuthError::Malformed("header typ is not JWT"));
    }
    let kid = header.kid.ok_or(AuthError::Malformed("header has no kid"))?;
    let key = keys.get(&kid).ok_or(AuthError::UnknownKey)?;
    let signature: [u8; 64] = jws::unb64(signature_b64)
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or(AuthError::Malformed("signature is not 64 bytes of base64url"))?;
    let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
    key.verify_strict(signing_input.as_bytes(), &Signature::from_bytes(&signature))
        .map_err(|_| AuthError::BadSignature)?;
    let payload = jws::unb64(payload_b64).ok_or(AuthError::Malformed("payload is not base64url"))?;
    let claims: Claims = serde_json::from_slice(&payload)
        .map_err(|_| AuthError::Malformed("payload is not the expected claims"))?;
    // Key retirement relies on no token outliving TOKEN_LIFETIME_SECS, so a longer-lived token is
    // refused even though it carries a valid signature.
    if claims.exp <= claims.iat || claims.exp - claims.iat > TOKEN_LIFETIME_SECS {
        return Err(AuthError::Malformed("lifetime is not within the maximum"));
    }
    check_time(&claims, now_secs)?;
    Ok(claims)
}

/// The time rules, checked on every validation, cached or not.
fn check_time(claims: &Claims, now_secs: i64) -> Result<(), AuthError> {
    if now_secs >= claims.exp.saturating_add(LEEWAY_SECS) {
        return Err(AuthError::Expired);
    }
    if claims.iat > now_secs.saturating_add(LEEWAY_SECS) {
        return Err(AuthError::NotYetValid);
    }
    Ok(())
}

/// Remembers a verified token, making room first if the cache is full (see [`Validator`]).
fn insert(
    cache: &mut HashMap<Box<str>, Claims>,
    capacity: usize,
    token: &str,
    claims: &Claims,
    now_secs: i64,
) {
    if cache.len() >= capacity {
        cache.retain(|_, cached| now_secs < cached.exp.saturating_add(LEEWAY_SECS));
        if cache.len() > capacity / 2 {
            cache.clear();
        }
    }
    cache.insert(token.into(), claims.clone());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KeyRing, SigningKeyPair};

    fn ring_with_capacity(capacity: usize) -> (KeyRing, Validator) {
        let ring = KeyRing::new(SigningKeyPair::generate());
        let validator = Validator::with_capacity(capacity);
        validator.set_keys(ring.verification_keys()).expect("generated keys are usable");
        (ring, validator)
    }

    #[test]
    fn a_full_cache_drops_expired_tokens_first() {
        let (ring, validator) = ring_with_capacity(4);
        for now in 0..3 {
            let token = ring.issue(&Claims::new("cl_old", "PHARMACY", "DE", "L1", now));
            validator.validate(&token, now).expect("fresh token");
        }
        let live = ring.issue(&Claims::new("cl_live", "PHARMACY", "DE", "L1", 5000));
        validator.validate(&live, 5000).expect("fresh token");
        assert_eq!(validator.cached_tokens(), 4);

        // The three tokens from time 0..3 have expired by now, so room is made by dropping them
        // and the live token stays cached.
        let next = ring.issue(&Claims::new("cl_next", "PHARMACY", "DE", "L1", 5001));
        validator.validate(&next, 5001).expect("fresh token");
        assert_eq!(validator.cached_tokens(), 2);
    }

    #[test]
    fn a_full_cache_of_live_tokens_is_emptied_and_refilled() {
        let (ring, validator) = ring_with_capacity(4);
        for n in 0..4 {
            let token = ring.issue(&Claims::new(format!("cl_{n}"), "PHARMACY", "DE", "L1", 0));
            validator.validate(&token, 0).expect("fresh token");
        }
        let token = ring.issue(&Claims::new("cl_5", "PHARMACY", "DE", "L1", 0));
        assert!(validator.validate(&token, 0).is_ok());
        assert_eq!(validator.cached_tokens(), 1);
        // Evicted tokens are verified again, not refused.
        let first = ring.issue(&Claims::new("cl_0", "PHARMACY", "DE", "L1", 0));
        assert!(validator.validate(&first, 0).is_ok());
    }

    #[test]
    fn a_token_verified_under_a_replaced_key_set_is_not_cached() {
        let (ring, validator) = ring_with_capacity(4);
        let token = ring.issue(&Claims::new("cl_a", "PHARMACY", "DE", "L1", 0));
        let (keys, generation) = {
            let state = validator.read();
            (Arc::clone(&state.keys), state.generation)
        };
        let claims = verify(&keys, &token, 0).expect("valid token");
        // A key change lands between the verification and the caching.
        validator.install(KeySet::new());
        validator.remember(generation, &token, &claims, 0);
        assert_eq!(validator.cached_tokens(), 0);
    }
}
