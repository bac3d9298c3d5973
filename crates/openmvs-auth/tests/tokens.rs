//! Issuing, validating and rotating access tokens through the public API, with a fake clock.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signer as _, SigningKey};
use openmvs_auth::{
    AuthError, Claims, KeyRing, LEEWAY_SECS, MAX_TOKEN_LEN, SigningKeyPair, TOKEN_LIFETIME_SECS, Validator,
    earliest_retirement,
};

/// The fake clock's "now" for most tests, an ordinary Unix time in 2026.
const NOW: i64 = 1_780_000_000;

fn claims_at(now: i64) -> Claims {
    Claims::new("cl_0123456789abcdef0123456789abcdef", "PHARMACY", "DE", "LOC-4711", now)
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs an arbitrary header and payload with a key's real secret, so that tests can build tokens
/// the crate would never issue but whose signature is genuine.
fn sign_raw(key: &SigningKeyPair, header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let signature = SigningKey::from_bytes(&key.secret_bytes()).sign(input.as_bytes());
    format!("{input}.{}", b64(&signature.to_bytes()))
}

fn header_for(key: &SigningKeyPair) -> String {
    format!(r#"{{"alg":"EdDSA","typ":"JWT","kid":"{}"}}"#, key.kid)
}

fn payload_of(claims: &Claims) -> String {
    serde_json::to_string(claims).expect("claims serialise")
}

/// A key ring, its validator, and a token issued now.
fn setup() -> (KeyRing, Validator, String) {
    let ring = KeyRing::new(SigningKeyPair::generate());
    let validator = ring.validator();
    let token = ring.issue(&claims_at(NOW));
    (ring, validator, token)
}

/// Replaces part `index` (0 header, 1 payload, 2 signature) of a token.
fn with_part(token: &str, index: usize, part: &str) -> String {
    let mut parts: Vec<&str> = token.split('.').collect();
    parts[index] = part;
    parts.join(".")
}

/// Validates with a fresh validator (nothing cached) and returns the refusal.
fn refusal(ring: &KeyRing, token: &str, now: i64) -> AuthError {
    let validator = Validator::new(ring.verification_keys()).expect("ring keys are usable");
    match validator.validate(token, now) {
        Ok(claims) => panic!("token accepted with claims {claims:?}"),
        Err(error) => error,
    }
}

#[test]
fn an_issued_token_validates_to_the_claims_it_was_issued_with() {
    let ring = KeyRing::new(SigningKeyPair::generate());
    let claims = claims_at(NOW);
    let token = ring.issue(&claims);
    assert_eq!(ring.validator().validate(&token, NOW), Ok(claims));
}

#[test]
fn the_header_names_eddsa_jwt_and_the_active_key() {
    let (ring, _, token) = setup();
    let header = URL_SAFE_NO_PAD.decode(token.split('.').next().expect("a header")).expect("base64url");
    assert_eq!(
        String::from_utf8(header).expect("utf-8"),
        format!(r#"{{"alg":"EdDSA","typ":"JWT","kid":"{}"}}"#, ring.active().kid)
    );
    assert!(!token.contains('='), "no padding");
}

#[test]
fn each_token_gets_its_own_jti() {
    let a = claims_at(NOW);
    let b = claims_at(NOW);
    assert_ne!(a.jti, b.jti);
    assert_eq!(b.exp - b.iat, TOKEN_LIFETIME_SECS);
}

#[test]
fn a_tampered_payload_is_refused_as_a_bad_signature() {
    let (ring, _, token) = setup();
    let mut claims = claims_at(NOW);
    claims.role = "NCA".into();
    let forged = with_part(&token, 1, &b64(payload_of(&claims).as_bytes()));
    assert_eq!(refusal(&ring, &forged, NOW), AuthError::BadSignature);
}

#[test]
fn a_tampered_signature_is_refused_as_a_bad_signature() {
    let (ring, _, token) = setup();
    let mut signature =
        URL_SAFE_NO_PAD.decode(token.rsplit('.').next().expect("a signature")).expect("base64url");
    signature[10] ^= 0x01;
    let forged = with_part(&token, 2, &b64(&signature));
    assert_eq!(refusal(&ring, &forged, NOW), AuthError::BadSignature);
}

#[test]
fn a_token_signed_by_another_key_under_a_known_kid_is_refused_as_a_bad_signature() {
    let (ring, _, _) = setup();
    let impostor = SigningKeyPair::from_secret_bytes(Some(ring.active().kid.clone()), [7; 32]);
    let forged = sign_raw(&impostor, &header_for(&impostor), &payload_of(&claims_at(NOW)));
    assert_eq!(refusal(&ring, &forged, NOW), AuthError::BadSignature);
}

#[test]
fn foreign_algorithms_are_refused_before_any_key_is_used() {
    let (ring, _, token) = setup();
    let key = ring.active();
    let payload = payload_of(&claims_at(NOW));
    let kid = &key.kid;
    for header in [
        format!(r#"{{"alg":"none","typ":"JWT","kid":"{kid}"}}"#),
        r#"{"alg":"none"}"#.to_owned(),
        format!(r#"{{"alg":"HS256","typ":"JWT","kid":"{kid}"}}"#),
        format!(r#"{{"alg":"RS256","typ":"JWT","kid":"{kid}"}}"#),
        format!(r#"{{"alg":"ES256","typ":"JWT","kid":"{kid}"}}"#),
        format!(r#"{{"alg":"eddsa","typ":"JWT","kid":"{kid}"}}"#),
        format!(r#"{{"alg":"Ed25519","typ":"JWT","kid":"{kid}"}}"#),
    ] {
        // Even with a genuine Ed25519 signature over the forged header, and with the classic
        // "alg none" shape of an empty signature.
        let signed = sign_raw(key, &header, &payload);
        assert_eq!(refusal(&ring, &signed, NOW), AuthError::UnsupportedAlgorithm, "{header}");
        let unsigned = format!("{}.{}.", b64(header.as_bytes()), b64(payload.as_bytes()));
        assert_eq!(refusal(&ring, &unsigned, NOW), AuthError::UnsupportedAlgorithm, "{header}");
    }
    assert!(ring.validator().validate(&token, NOW).is_ok());
}

#[test]
fn a_token_from_an_unknown_key_is_refused_as_unknown_key() {
    let (ring, _, _) = setup();
    let stranger = KeyRing::new(SigningKeyPair::generate());
    let token = stranger.issue(&claims_at(NOW));
    assert_eq!(refusal(&ring, &token, NOW), AuthError::UnknownKey);
}

#[test]
fn a_token_is_accepted_until_exp_plus_leeway_and_refused_from_then_on() {
    let (ring, validator, token) = setup();
    let exp = NOW + TOKEN_LIFETIME_SECS;
    assert!(validator.validate(&token, exp + LEEWAY_SECS - 1).is_ok());
    assert_eq!(refusal(&ring, &token, exp + LEEWAY_SECS), AuthError::Expired);
    assert_eq!(refusal(&ring, &token, exp + 86_400), AuthError::Expired);
}

#[test]
fn a_token_issued_in_the_future_beyond_the_leeway_is_not_yet_valid() {
    let (ring, validator, token) = setup();
    assert!(validator.validate(&token, NOW - LEEWAY_SECS).is_ok());
    assert_eq!(refusal(&ring, &token, NOW - LEEWAY_SECS - 1), AuthError::NotYetValid);
}

#[test]
fn a_cached_token_is_still_refused_once_it_expires() {
    let (_, validator, token) = setup();
    assert!(validator.validate(&token, NOW).is_ok());
    assert_eq!(validator.cached_tokens(), 1);
    let expiry = NOW + TOKEN_LIFETIME_SECS + LEEWAY_SECS;
    assert_eq!(validator.validate(&token, expiry), Err(AuthError::Expired));
    // And, with the clock turned back, a cached token is not valid before its iat either.
    assert_eq!(validator.validate(&token, NOW - LEEWAY_SECS - 1), Err(AuthError::NotYetValid));
}

#[test]
fn repeated_validation_is_served_from_the_cache_and_refusals_are_not_cached() {
    let (ring, validator, token) = setup();
    for _ in 0..3 {
        assert!(validator.validate(&token, NOW).is_ok());
    }
    assert_eq!(validator.cached_tokens(), 1);
    let forged = with_part(&token, 2, &b64(&[0; 64]));
    assert_eq!(validator.validate(&forged, NOW), Err(AuthError::BadSignature));
    assert_eq!(validator.cached_tokens(), 1);
    // A token validated through one clone is cached for all clones.
    assert_eq!(ring.validator().cached_tokens(), 1);
}

#[test]
fn a_token_whose_lifetime_exceeds_the_maximum_is_refused_though_correctly_signed() {
    let (ring, _, _) = setup();
    let mut claims = claims_at(NOW);
    claims.exp = claims.iat + TOKEN_LIFETIME_SECS + 1;
    let token = ring.issue(&claims);
    assert!(matches!(refusal(&ring, &token, NOW), AuthError::Malformed(_)));
    claims.exp = claims.iat;
    let token = ring.issue(&claims);
    assert!(matches!(refusal(&ring, &token, NOW), AuthError::Malformed(_)));
}

#[test]
fn garbage_is_refused_as_malformed() {
    let (ring, _, token) = setup();
    let [header, payload, signature]: [&str; 3] =
        token.split('.').collect::<Vec<_>>().try_into().expect("three parts");
    let key = ring.active();
    let claims = payload_of(&claims_at(NOW));
    let overlong = format!("{token}{}", "A".repeat(MAX_TOKEN_LEN));
    let cases: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("one word", "Bearer".into()),
        ("whitespace", " \t\n".into()),
        ("only dots", "..".into()),
        ("two parts", format!("{header}.{payload}")),
        ("four parts", format!("{token}.{signature}")),
        ("trailing dot", format!("{token}.")),
        ("three empty parts", "..".into()),
        ("not base64 header", format!("!!!.{payload}.{signature}")),
        ("padded header", format!("{header}=.{payload}.{signature}")),
        ("standard alphabet", format!("{header}.{payload}.{}", STANDARD_NO_PAD.encode([0xff; 64]))),
        ("not base64 signature", format!("{header}.{payload}.***")),
        ("short signature", format!("{header}.{payload}.{}", b64(&[1; 63]))),
        ("long signature", format!("{header}.{payload}.{}", b64(&[1; 65]))),
        ("header not json", format!("{}.{payload}.{signature}", b64(b"alg=EdDSA"))),
        ("header a json string", format!("{}.{payload}.{signature}", b64(b"\"EdDSA\""))),
        ("overlong", overlong),
        ("non-ascii", format!("{header}.{payload}.{signature}é")),
        (
            "header with unknown field",
            sign_raw(
                key,
                &format!(r#"{{"alg":"EdDSA","typ":"JWT","kid":"{}","jku":"https://x"}}"#, key.kid),
                &claims,
            ),
        ),
        ("header without kid", sign_raw(key, r#"{"alg":"EdDSA","typ":"JWT"}"#, &claims)),
        (
            "header with another typ",
            sign_raw(key, &format!(r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"{}"}}"#, key.kid), &claims),
        ),
        (
            "header with duplicate alg",
            sign_raw(
                key,
                &format!(r#"{{"alg":"EdDSA","alg":"none","typ":"JWT","kid":"{}"}}"#, key.kid),
                &claims,
            ),
        ),
        ("signed payload not json", sign_raw(key, &header_for(key), "not json")),
        (
            "signed payload with an unknown claim",
            sign_raw(key, &header_for(key), &claims.replacen('{', r#"{"admin":true,"#, 1)),
        ),
        ("signed payload missing a claim", sign_raw(key, &header_for(key), r#"{"sub":"cl_x"}"#)),
    ];
    for (name, garbage) in cases {
        let error = refusal(&ring, &garbage, NOW);
        assert!(matches!(error, AuthError::Malformed(_)), "{name}: {error:?}");
    }
}

#[test]
fn refusal_messages_never_echo_the_token() {
    let (ring, _, token) = setup();
    let marker = "SECRETMARKER";
    for garbage in [
        marker.to_owned(),
        format!("{marker}.{marker}.{marker}"),
        with_part(&token, 1, marker),
        with_part(&token, 2, &b64(&[9; 64])),
        sign_raw(ring.active(), &format!(r#"{{"alg":"{marker}"}}"#), "{}"),
        sign_raw(ring.active(), &format!(r#"{{"alg":"EdDSA","typ":"JWT","kid":"{marker}"}}"#), "{}"),
    ] {
        let message = refusal(&ring, &garbage, NOW).to_string();
        assert!(!message.contains(marker), "{message}");
        assert!(!message.contains('\n'), "{message}");
    }
}

#[test]
fn a_token_from_the_old_key_stays_valid_after_rotation() {
    let (mut ring, validator, old_token) = setup();
    let old_kid = ring.active().kid.clone();
    ring.rotate(SigningKeyPair::generate()).expect("a fresh key");
    assert_ne!(ring.active().kid, old_kid);
    let new_token = ring.issue(&claims_at(NOW));
    // The validator taken before the rotation follows the ring.
    assert!(validator.validate(&old_token, NOW).is_ok());
    assert!(validator.validate(&new_token, NOW).is_ok());
    assert_eq!(ring.verification_keys().len(), 2);
    assert_eq!(ring.verification_keys()[0].0, ring.active().kid);
}

#[test]
fn a_token_from_a_retired_key_is_refused_even_when_cached() {
    let (mut ring, validator, old_token) = setup();
    let old_kid = ring.active().kid.clone();
    assert!(validator.validate(&old_token, NOW).is_ok());
    ring.rotate(SigningKeyPair::generate()).expect("a fresh key");
    assert!(validator.validate(&old_token, NOW).is_ok());
    assert_eq!(ring.retire(&old_kid), Ok(true));
    assert_eq!(validator.validate(&old_token, NOW), Err(AuthError::UnknownKey));
    // Retiring again is harmless; tokens of the active key are unaffected.
    assert_eq!(ring.retire(&old_kid), Ok(false));
    assert!(validator.validate(&ring.issue(&claims_at(NOW)), NOW).is_ok());
}

#[test]
fn the_active_key_cannot_be_retired() {
    let (mut ring, validator, token) = setup();
    let active = ring.active().kid.clone();
    assert!(matches!(ring.retire(&active), Err(AuthError::Internal(_))));
    assert!(validator.validate(&token, NOW).is_ok());
}

#[test]
fn a_key_announced_for_verification_is_accepted_before_it_signs_and_can_be_promoted() {
    // Two instances share keys: B announces the key A will rotate to, before A signs with it.
    let shared = SigningKeyPair::generate();
    let mut instance_a = KeyRing::new(SigningKeyPair::from_secret_bytes(None, shared.secret_bytes()));
    let mut instance_b = KeyRing::new(shared);
    let next = SigningKeyPair::generate();
    instance_b.add_verification_key(next.kid.clone(), next.public_bytes()).expect("a fresh key");
    instance_a.rotate(SigningKeyPair::from_secret_bytes(None, next.secret_bytes())).expect("a fresh key");
    let token = instance_a.issue(&claims_at(NOW));
    assert!(instance_b.validator().validate(&token, NOW).is_ok());
    instance_b.rotate(next).expect("promotion of the announced key");
    assert_eq!(instance_b.verification_keys().len(), 2);
    assert!(instance_b.validator().validate(&token, NOW).is_ok());
}

#[test]
fn a_key_id_cannot_name_two_different_keys() {
    let (mut ring, _, _) = setup();
    let kid = ring.active().kid.clone();
    let clash = SigningKeyPair::from_secret_bytes(Some(kid.clone()), [3; 32]);
    assert!(matches!(ring.rotate(clash), Err(AuthError::Internal(_))));
    assert!(matches!(ring.add_verification_key(kid, [0; 32]), Err(AuthError::Internal(_))));
    // Rotating to the active key itself changes nothing.
    let same = SigningKeyPair::from_secret_bytes(None, ring.active().secret_bytes());
    assert_eq!(ring.rotate(same), Ok(()));
    assert_eq!(ring.verification_keys().len(), 1);
}

#[test]
fn weak_or_invalid_public_keys_are_refused() {
    let (mut ring, _, _) = setup();
    // The identity point (small order) and a y-coordinate that is not on the curve.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut off_curve = [0u8; 32];
    off_curve[0] = 2;
    for public in [identity, off_curve] {
        assert!(matches!(ring.add_verification_key("k_weak", public), Err(AuthError::Internal(_))));
        assert!(Validator::new([("k_weak".to_owned(), public)]).is_err());
    }
}

#[test]
fn a_key_pair_restored_from_its_secret_bytes_is_the_same_key() {
    let key = SigningKeyPair::generate();
    let restored = SigningKeyPair::from_secret_bytes(None, key.secret_bytes());
    assert_eq!(restored.kid, key.kid);
    assert_eq!(restored.public_bytes(), key.public_bytes());
    let named = SigningKeyPair::from_secret_bytes(Some("2026-q3".into()), key.secret_bytes());
    assert_eq!(named.kid, "2026-q3");
    let token = KeyRing::new(restored).issue(&claims_at(NOW));
    assert!(KeyRing::new(key).validator().validate(&token, NOW).is_ok());
}

#[test]
fn debug_output_never_shows_a_secret_key() {
    let key = SigningKeyPair::generate();
    let secret = key.secret_bytes();
    let ring = KeyRing::new(SigningKeyPair::from_secret_bytes(None, secret));
    let printed = format!("{key:?} {ring:?} {:?}", ring.validator());
    assert!(printed.contains(&key.kid));
    assert!(!printed.contains(&b64(&secret)));
    assert!(!printed.contains(&format!("{secret:?}")));
    assert!(!printed.contains(&format!("{:?}", &secret[..8])));
}

#[test]
fn a_retired_key_can_be_dropped_once_its_last_token_expires() {
    let (mut ring, validator, _) = setup();
    let old_kid = ring.active().kid.clone();
    let last_token = ring.issue(&claims_at(NOW));
    ring.rotate(SigningKeyPair::generate()).expect("a fresh key");
    let retire_at = earliest_retirement(NOW);
    assert!(validator.validate(&last_token, retire_at - 1).is_ok());
    assert_eq!(validator.validate(&last_token, retire_at), Err(AuthError::Expired));
    ring.retire(&old_kid).expect("not the active key");
}

#[test]
fn a_validator_is_shared_across_threads() {
    fn assert_shareable<T: Send + Sync + Clone + 'static>() {}
    assert_shareable::<Validator>();
    let ring = KeyRing::new(SigningKeyPair::generate());
    let tokens: Vec<String> = (0..8).map(|_| ring.issue(&claims_at(NOW))).collect();
    let validator = ring.validator();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            let validator = validator.clone();
            let tokens = &tokens;
            scope.spawn(move || {
                for token in tokens.iter().cycle().take(64) {
                    assert!(validator.validate(token, NOW).is_ok());
                }
            });
        }
    });
    assert_eq!(validator.cached_tokens(), tokens.len());
}

#[test]
fn a_validator_built_from_public_keys_alone_accepts_the_rings_tokens_and_can_change_keys() {
    let (mut ring, _, token) = setup();
    let standalone = Validator::new(ring.verification_keys()).expect("usable keys");
    assert!(standalone.validate(&token, NOW).is_ok());
    let old_kid = ring.active().kid.clone();
    ring.rotate(SigningKeyPair::generate()).expect("a fresh key");
    ring.retire(&old_kid).expect("not the active key");
    standalone.set_keys(ring.verification_keys()).expect("usable keys");
    assert_eq!(standalone.cached_tokens(), 0);
    assert_eq!(standalone.validate(&token, NOW), Err(AuthError::UnknownKey));
    let duplicate = [ring.verification_keys()[0].clone(), ring.verification_keys()[0].clone()];
    assert!(standalone.set_keys(duplicate).is_err());
    assert!(standalone.validate(&ring.issue(&claims_at(NOW)), NOW).is_ok());
}
