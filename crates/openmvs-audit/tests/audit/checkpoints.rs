//! Signed checkpoints: forged, altered, unknown-key and misplaced checkpoints are caught.

use openmvs_audit::{AuditError, ChainHead, Checkpoint, GENESIS, key_id, sign_checkpoint, verify_checkpoint};

use crate::{Item, chain, key, records, verify};

/// When the checkpoints are signed in these tests.
const AT: i64 = 1_767_230_000_000;

/// Feeds a four-record chain of DE followed by `cp` (made from the genuine checkpoint of record
/// #4 by `tamper`), trusting keys 1 and 3, and compares the outcome with `expected`.
#[expect(
    clippy::needless_pass_by_value,
    reason = "the table reads better with plain values than with a `&` on every row"
)]
fn check(name: &str, tamper: fn(&mut Checkpoint), expected: Result<(), AuditError>) {
    let (rs, head) = chain("DE", 4);
    let mut cp = sign_checkpoint(&head, AT, &key(1));
    tamper(&mut cp);
    let mut items = records(&rs);
    items.push(Item::Checkpoint(cp));
    let trusted = [key(1).verifying_key(), key(3).verifying_key()];
    assert_eq!(verify(&items, &trusted).map(|_| ()), expected, "{name}");
}

fn id(n: u8) -> String {
    key_id(&key(n).verifying_key())
}

fn bad_signature(market: &str, seq: u64, key: u8) -> Result<(), AuditError> {
    Err(AuditError::BadSignature { market: market.into(), seq, key_id: id(key) })
}

#[test]
fn altered_or_forged_checkpoints_are_caught() {
    check("the genuine checkpoint", |_| {}, Ok(()));
    check("a flipped signature byte", |cp| cp.signature[17] ^= 0x01, bad_signature("DE", 4, 1));
    check("an all-zero signature", |cp| cp.signature = [0; 64], bad_signature("DE", 4, 1));
    check("a flipped byte of the signed hash", |cp| cp.hash[0] ^= 0x80, bad_signature("DE", 4, 1));
    check("a later signing time", |cp| cp.at_millis += 1, bad_signature("DE", 4, 1));
    check("another sequence number", |cp| cp.seq = 3, bad_signature("DE", 3, 1));
    check("another market", |cp| cp.market = "LU".into(), bad_signature("LU", 4, 1));
    check(
        "a checkpoint signed by a key not trusted",
        |cp| *cp = sign_checkpoint(&after_four(), AT, &key(2)),
        Err(AuditError::UnknownKey { market: "DE".into(), seq: 4, key_id: id(2) }),
    );
    check(
        "a checkpoint signed by an untrusted key but naming a trusted one",
        |cp| {
            *cp = sign_checkpoint(&after_four(), AT, &key(2));
            cp.key_id = id(1);
        },
        bad_signature("DE", 4, 1),
    );
    check(
        "a checkpoint signed by the second trusted key",
        |cp| *cp = sign_checkpoint(&after_four(), AT, &key(3)),
        Ok(()),
    );
    check(
        "a validly signed checkpoint of another chain",
        |cp| *cp = sign_checkpoint(&ChainHead { hash: [9; 32], ..after_four() }, AT, &key(1)),
        Err(AuditError::CheckpointHashMismatch { market: "DE".into(), seq: 4, key_id: id(1) }),
    );
    check(
        "a checkpoint of a record that never came",
        |cp| *cp = sign_checkpoint(&ChainHead { seq: 9, ..after_four() }, AT, &key(1)),
        Err(AuditError::CheckpointBeyondEnd { market: "DE".into(), seq: 9, last: 4 }),
    );
    check(
        "a checkpoint of record #2 fed after record #4",
        |cp| *cp = sign_checkpoint(&ChainHead { seq: 2, ..after_four() }, AT, &key(1)),
        Err(AuditError::CheckpointTooLate { market: "DE".into(), seq: 2, head: 4 }),
    );
}

/// The head of the four-record chain of DE the table uses.
fn after_four() -> ChainHead {
    chain("DE", 4).1
}

#[test]
fn checkpoints_verify_whether_fed_before_or_right_after_their_records() {
    let (rs, head) = chain("DE", 4);
    let cp2 = sign_checkpoint(&ChainHead::after(&rs[1]), AT, &key(1));
    let cp4 = sign_checkpoint(&head, AT, &key(1));
    let first = {
        let mut items = vec![Item::Checkpoint(cp4.clone()), Item::Checkpoint(cp2.clone())];
        items.extend(records(&rs));
        items
    };
    let interleaved = {
        let mut items = records(&rs);
        items.insert(2, Item::Checkpoint(cp2));
        items.push(Item::Checkpoint(cp4));
        items
    };
    for (name, items) in [("checkpoints first", first), ("interleaved", interleaved)] {
        let summary = verify(&items, &[key(1).verifying_key()]).unwrap();
        let de = &summary.markets[0];
        assert_eq!((de.checkpoints, de.last_checkpoint_seq, de.unsigned_tail), (2, Some(4), 0), "{name}");
    }
}

#[test]
fn the_empty_chain_can_be_checkpointed_but_only_with_the_genesis_hash() {
    let trusted = [key(1).verifying_key()];
    let genuine = sign_checkpoint(&ChainHead::genesis("DE"), AT, &key(1));
    let summary = verify(&[Item::Checkpoint(genuine)], &trusted).unwrap();
    assert_eq!(summary.markets[0].records, 0);
    assert_eq!(summary.markets[0].last_hash, GENESIS);

    let forged = sign_checkpoint(&ChainHead { hash: [1; 32], ..ChainHead::genesis("DE") }, AT, &key(1));
    assert_eq!(
        verify(&[Item::Checkpoint(forged)], &trusted),
        Err(AuditError::CheckpointHashMismatch { market: "DE".into(), seq: 0, key_id: id(1) })
    );
}

#[test]
fn verifying_a_checkpoint_with_another_key_than_it_names_is_refused_as_a_mismatch() {
    let cp = sign_checkpoint(&after_four(), AT, &key(1));
    assert_eq!(verify_checkpoint(&cp, &key(1).verifying_key()), Ok(()));
    assert_eq!(
        verify_checkpoint(&cp, &key(2).verifying_key()),
        Err(AuditError::KeyMismatch { market: "DE".into(), seq: 4, key_id: id(1), checked_with: id(2) })
    );
}

#[test]
fn a_checkpoint_names_the_key_that_signed_it() {
    let cp = sign_checkpoint(&after_four(), AT, &key(1));
    assert_eq!(cp.key_id, id(1));
    assert_eq!((cp.market.as_str(), cp.seq, cp.at_millis), ("DE", 4, AT));
}

#[test]
fn key_ids_are_sixteen_hex_digits_of_the_public_keys_sha256() {
    use sha2::{Digest, Sha256};
    let public = key(1).verifying_key();
    let digest = Sha256::digest(public.as_bytes());
    let expected: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(key_id(&public), expected);
    assert_eq!(expected.len(), 16);
    assert_ne!(key_id(&public), id(2));
}
