//! Measures what authentication costs: argon2id secret verification, token validation without
//! and with the cache. Run with `cargo run --release -p openmvs-auth --example cost`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use openmvs_auth::{
    Claims, KeyRing, SigningKeyPair, Validator, hash_secret, new_client_secret, verify_secret,
};

const NOW: i64 = 1_780_000_000;

/// The mean time of `runs` calls of `f`.
fn mean(runs: u32, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..runs {
        f();
    }
    start.elapsed() / runs
}

fn main() {
    let secret = new_client_secret();
    let phc = hash_secret(&secret).expect("hashing succeeds");
    let verify = mean(20, || assert!(verify_secret(black_box(&secret), &phc)));
    println!("verify_secret ({phc:.32}...): {verify:?}");

    let ring = KeyRing::new(SigningKeyPair::generate());
    let claims = Claims::new("cl_0123456789abcdef0123456789abcdef", "PHARMACY", "DE", "LOC-4711", NOW);
    let token = ring.issue(&claims);
    println!("token length: {} bytes", token.len());
    let issue = mean(2_000, || {
        black_box(ring.issue(black_box(&claims)));
    });
    println!("issue: {issue:?}");

    // A fresh validator for every call, so that each one verifies the signature.
    let keys = ring.verification_keys();
    let validators: Vec<Validator> =
        (0..2_000).map(|_| Validator::new(keys.clone()).expect("usable keys")).collect();
    let mut fresh = validators.iter();
    let uncached = mean(2_000, || {
        let validator = fresh.next().expect("one validator per run");
        assert!(validator.validate(black_box(&token), NOW).is_ok());
    });
    println!("validate, uncached (signature verified): {uncached:?}");

    let validator = ring.validator();
    assert!(validator.validate(&token, NOW).is_ok());
    let cached = mean(200_000, || {
        assert!(validator.validate(black_box(&token), NOW).is_ok());
    });
    println!("validate, cached: {cached:?}");
}
