//! Client credentials: client ids, client secrets, and their argon2id hashes.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::{AuthError, jws, random_bytes};

/// Argon2id memory cost, in KiB (19 MiB).
///
/// The parameters are OWASP's recommended minimum for argon2id (m = 19 MiB, t = 2, p = 1). One
/// verification took 22-26 ms on one core of the 2-core Xeon build machine (measured by
/// `cargo run --release -p openmvs-auth --example cost`), within the 10-50 ms aimed at: slow
/// enough that a stolen hash table is expensive to attack, fast enough that token requests (one
/// per client per hour) stay cheap. Memory is what makes argon2 costly on GPUs; 19 MiB per
/// concurrent token request is affordable for a server.
pub const ARGON2_M_COST_KIB: u32 = 19 * 1024;
/// Argon2id time cost (passes over memory); see [`ARGON2_M_COST_KIB`].
pub const ARGON2_T_COST: u32 = 2;
/// Argon2id parallelism (lanes); one, because the server runs requests in parallel already.
pub const ARGON2_P_COST: u32 = 1;

/// A new client id: `cl_` and 16 random bytes in lowercase hex, URL-safe and case-insensitive.
///
/// # Panics
///
/// If the operating system's random number generator fails.
#[must_use]
pub fn new_client_id() -> String {
    let mut id = String::with_capacity(3 + 32);
    id.push_str("cl_");
    for byte in random_bytes::<16>() {
        id.push_str(&format!("{byte:02x}"));
    }
    id
}

/// A new client secret: 32 random bytes (256 bits) in base64url without padding, 43 characters.
///
/// It is shown to the client once; only its [`hash_secret`] is stored.
///
/// # Panics
///
/// If the operating system's random number generator fails.
#[must_use]
pub fn new_client_secret() -> String {
    jws::b64(&random_bytes::<32>())
}

/// Hashes a client secret as an argon2id PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`)
/// with a fresh 16-byte salt, for storage.
///
/// # Errors
///
/// [`AuthError::Internal`] if argon2 refuses the input (it does so only beyond 4 GiB).
///
/// # Panics
///
/// If the operating system's random number generator fails.
pub fn hash_secret(secret: &str) -> Result<String, AuthError> {
    let salt = SaltString::encode_b64(&random_bytes::<16>())
        .map_err(|e| AuthError::Internal(format!("argon2 salt: {e}")))?;
    let hash = hasher()
        .hash_password(secret.as_bytes(), &salt)
        .map_err(|e| AuthError::Internal(format!("argon2 hashing: {e}")))?;
    Ok(hash.to_string())
}

/// Whether `secret` matches the stored PHC string `phc`.
///
/// The parameters are read from `phc`, so hashes made with older parameters still verify (see
/// [`needs_rehash`]). The final comparison is constant-time (argon2's `verify_password`). A `phc`
/// that does not parse gives `false`.
#[must_use]
pub fn verify_secret(secret: &str, phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    hasher().verify_password(secret.as_bytes(), &hash).is_ok()
}

/// Checks a client's secret at `POST /oauth/token`: `stored_phc` is the client's stored hash, or
/// `None` if the client id is unknown.
///
/// An unknown client costs one argon2 verification against a fixed dummy hash, as much as a
/// known one, so that the response time does not tell which client ids exist.
///
/// # Errors
///
/// [`AuthError::InvalidClient`] if the client is unknown or the secret does not match.
pub fn authenticate_client(secret: &str, stored_phc: Option<&str>) -> Result<(), AuthError> {
    match stored_phc {
        Some(phc) if verify_secret(secret, phc) => Ok(()),
        Some(_) => Err(AuthError::InvalidClient),
        None => {
            let _ = verify_secret(secret, dummy_phc());
            Err(AuthError::InvalidClient)
        }
    }
}

/// Whether a stored hash was made with other parameters than the current ones (or is not an
/// argon2id hash at all), so that the storage layer can re-hash the secret after the next
/// successful [`verify_secret`].
#[must_use]
pub fn needs_rehash(phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return true;
    };
    let current = params();
    hash.algorithm != Algorithm::Argon2id.ident()
        || hash.version != Some(Version::V0x13.into())
        || Params::try_from(&hash).map_or(true, |p| {
            (p.m_cost(), p.t_cost(), p.p_cost()) != (current.m_cost(), current.t_cost(), current.p_cost())
        })
}

fn params() -> Params {
    // The constants are within argon2's limits; a test checks that they build.
    Params::new(ARGON2_M_COST_KIB, ARGON2_T_COST, ARGON2_P_COST, None).unwrap_or(Params::DEFAULT)
}

fn hasher() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params())
}

/// The hash verified for unknown clients, made once with the current parameters (so that it costs
/// exactly what a real verification costs) from a secret nobody knows.
fn dummy_phc() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_secret(&new_client_secret()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_argon2_parameters_are_valid() {
        assert!(Params::new(ARGON2_M_COST_KIB, ARGON2_T_COST, ARGON2_P_COST, None).is_ok());
    }

    #[test]
    fn the_dummy_hash_costs_what_a_real_verification_costs() {
        assert!(!needs_rehash(dummy_phc()));
    }
}
