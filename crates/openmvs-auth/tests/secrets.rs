//! Client ids, client secrets and their argon2id hashes.

use std::collections::HashSet;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openmvs_auth::{
    ARGON2_M_COST_KIB, ARGON2_P_COST, ARGON2_T_COST, AuthError, authenticate_client, hash_secret,
    needs_rehash, new_client_id, new_client_secret, verify_secret,
};

#[test]
fn client_ids_are_distinct_url_safe_and_prefixed() {
    let ids: HashSet<String> = (0..10_000).map(|_| new_client_id()).collect();
    assert_eq!(ids.len(), 10_000);
    for id in &ids {
        let hex = id.strip_prefix("cl_").expect("cl_ prefix");
        assert_eq!(hex.len(), 32);
        assert!(hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{id}");
    }
}

#[test]
fn client_secrets_are_distinct_and_carry_32_random_bytes() {
    let secrets: HashSet<String> = (0..10_000).map(|_| new_client_secret()).collect();
    assert_eq!(secrets.len(), 10_000);
    for secret in &secrets {
        assert_eq!(secret.len(), 43);
        assert_eq!(URL_SAFE_NO_PAD.decode(secret).expect("base64url").len(), 32);
    }
}

#[test]
fn a_hashed_secret_verifies_for_the_right_secret_only() {
    let secret = new_client_secret();
    let phc = hash_secret(&secret).expect("hashing succeeds");
    assert!(verify_secret(&secret, &phc));
    assert!(!verify_secret(&new_client_secret(), &phc));
    assert!(!verify_secret("", &phc));
    assert!(!verify_secret(&secret[..42], &phc));
    assert!(!phc.contains(&secret));
}

#[test]
fn hashes_are_argon2id_with_the_documented_parameters_and_a_fresh_salt() {
    let phc = hash_secret("s3cret").expect("hashing succeeds");
    let prefix = format!("$argon2id$v=19$m={ARGON2_M_COST_KIB},t={ARGON2_T_COST},p={ARGON2_P_COST}$");
    assert!(phc.starts_with(&prefix), "{phc}");
    assert!(!needs_rehash(&phc));
    assert_ne!(phc, hash_secret("s3cret").expect("hashing succeeds"));
}

#[test]
fn a_hash_with_older_parameters_still_verifies_but_asks_to_be_rehashed() {
    // argon2id of "s3cret" with m=4096, t=1, p=1, as an older configuration might have stored.
    let old = argon2_hash("s3cret", 4096, 1);
    assert!(verify_secret("s3cret", &old));
    assert!(needs_rehash(&old));
    assert!(needs_rehash("not a phc string"));
}

#[test]
fn an_unparsable_stored_hash_never_verifies() {
    for phc in ["", "plain", "$argon2id$", "$argon2id$v=19$m=19456,t=2,p=1$$"] {
        assert!(!verify_secret("", phc), "{phc}");
        assert!(!verify_secret("plain", phc), "{phc}");
    }
}

#[test]
fn an_unknown_client_and_a_wrong_secret_are_both_invalid_client() {
    let secret = new_client_secret();
    let phc = hash_secret(&secret).expect("hashing succeeds");
    assert_eq!(authenticate_client(&secret, Some(&phc)), Ok(()));
    assert_eq!(authenticate_client("wrong", Some(&phc)), Err(AuthError::InvalidClient));
    assert_eq!(authenticate_client(&secret, None), Err(AuthError::InvalidClient));
}

fn argon2_hash(secret: &str, m_cost: u32, t_cost: u32) -> String {
    use argon2::password_hash::{PasswordHasher as _, SaltString};
    let params = argon2::Params::new(m_cost, t_cost, 1, None).expect("valid parameters");
    let hasher = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::encode_b64(b"0123456789abcdef").expect("a 16-byte salt");
    hasher.hash_password(secret.as_bytes(), &salt).expect("hashing succeeds").to_string()
}
