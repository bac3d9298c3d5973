//! The record encoding: pinned by known answers computed outside Rust, and unambiguous however
//! the fields are split.

use openmvs_audit::{ChainHead, Entry, GENESIS, Hash, key_id, record_hash, sign_checkpoint};

use crate::key;

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The entry of the known-answer tests.
fn known_entry() -> Entry {
    Entry {
        market: "BE".into(),
        at_millis: 1_767_225_600_000,
        actor: "client-7".into(),
        role: "pharmacy".into(),
        location: "LOC-1".into(),
        operation: "supply".into(),
        subject: "GTIN/09501101530003/X4K9P7Q2M8R5".into(),
        return_code: "NMVS_SUCCESS".into(),
        request: r#"{"scan":"01095011015300032110X4K9P7Q2M8R5"}"#.into(),
        result: r#"{"state":"SUPPLIED"}"#.into(),
    }
}

// The expected values below were computed by an independent Python implementation of the
// documented encoding (hashlib and the `cryptography` package's Ed25519). They pin the format:
// stored chains would all look edited if it ever changed, so a change must fail here first.

#[test]
fn the_record_hash_matches_an_independent_implementation_of_the_documented_encoding() {
    let hash = record_hash(1, &GENESIS, &known_entry());
    assert_eq!(hex(&hash), "e300de6634d63380bbf3500f5c2cbd068459e3181771a6ec1447c10e3b760088");
}

#[test]
fn the_checkpoint_signature_matches_an_independent_implementation_of_the_documented_message() {
    let mut head = ChainHead::genesis("BE");
    head.seal(known_entry()).unwrap();
    let cp = sign_checkpoint(&head, 1_767_225_660_000, &key(1));
    assert_eq!(cp.key_id, "34750f98bd59fcfc");
    assert_eq!(key_id(&key(1).verifying_key()), "34750f98bd59fcfc");
    assert_eq!(
        hex(&cp.signature),
        "8acdf50396331ec4e1ebd96f6e31d680c9a6ffc7da3f88438de20d79a5c3b85f\
         24351f02f470082a4d1bfef87bb2d52af253aedfb5e211e76ee02592231da904"
    );
}

/// Sets text field `f` of the encoding order (0 market, 1 actor, ..., 8 result).
fn set(e: &mut Entry, f: usize, value: &str) {
    let slot = match f {
        0 => &mut e.market,
        1 => &mut e.actor,
        2 => &mut e.role,
        3 => &mut e.location,
        4 => &mut e.operation,
        5 => &mut e.subject,
        6 => &mut e.return_code,
        7 => &mut e.request,
        8 => &mut e.result,
        _ => unreachable!("there are nine text fields"),
    };
    *slot = value.to_owned();
}

#[test]
fn entries_whose_fields_concatenate_alike_but_split_differently_hash_differently() {
    // For every pair of text fields, the same characters split between them at every point give a
    // different hash; so does moving them all into one field.
    let text = "ab|c";
    for i in 0..9 {
        for j in i + 1..9 {
            let mut seen: Vec<Hash> = Vec::new();
            for cut in 0..=text.len() {
                let mut e = Entry::default();
                set(&mut e, i, &text[..cut]);
                set(&mut e, j, &text[cut..]);
                let h = record_hash(1, &GENESIS, &e);
                assert!(!seen.contains(&h), "fields {i} and {j}, cut at {cut}");
                seen.push(h);
            }
        }
    }
}

#[test]
fn a_length_prefix_cannot_be_forged_from_field_contents() {
    // Field text that spells out an encoded length and the next field must not collide with the
    // genuine two fields.
    let two = Entry { actor: "a".into(), role: "b".into(), ..Entry::default() };
    let mut forged = b"a".to_vec();
    forged.extend_from_slice(&1u64.to_be_bytes());
    forged.extend_from_slice(b"b");
    let one = Entry { actor: String::from_utf8(forged).unwrap(), ..Entry::default() };
    assert_ne!(record_hash(1, &GENESIS, &two), record_hash(1, &GENESIS, &one));
}

#[test]
fn the_sequence_number_previous_hash_and_time_are_all_covered() {
    let e = known_entry();
    let base = record_hash(1, &GENESIS, &e);
    assert_ne!(base, record_hash(2, &GENESIS, &e));
    assert_ne!(base, record_hash(1, &[0; 32], &e));
    let later = Entry { at_millis: e.at_millis + 1, ..e.clone() };
    assert_ne!(base, record_hash(1, &GENESIS, &later));
    let negative = Entry { at_millis: -e.at_millis, ..e };
    assert_ne!(base, record_hash(1, &GENESIS, &negative));
}
