//! The audit trail's tests, as one test binary: sealing and verifying chains, and every kind of
//! tampering the verifier must catch.

mod checkpoints;
mod encoding;
mod markets;
mod messages;
mod outside;
mod structure;
mod tamper;

use ed25519_dalek::{SigningKey, VerifyingKey};
use openmvs_audit::{AuditError, ChainHead, Checkpoint, Entry, Sealed, Summary, Verifier, sign_checkpoint};

/// One thing fed to the verifier, so that tests can reorder, drop and mix records and
/// checkpoints freely.
#[derive(Debug, Clone)]
pub enum Item {
    /// A record, for [`Verifier::record`].
    Record(Sealed),
    /// A checkpoint, for [`Verifier::checkpoint`].
    Checkpoint(Checkpoint),
}

/// Feeds `items` in order to a verifier trusting `keys`, then finishes it.
pub fn verify(items: &[Item], keys: &[VerifyingKey]) -> Result<Summary, AuditError> {
    let mut v = Verifier::new(keys.iter().copied());
    for item in items {
        match item {
            Item::Record(r) => v.record(r)?,
            Item::Checkpoint(cp) => v.checkpoint(cp)?,
        }
    }
    v.finish()
}

/// A deterministic signing key; tests need no randomness.
pub fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

/// A plausible entry of `market`, different for each `n`.
pub fn entry(market: &str, n: u64) -> Entry {
    let serial = format!("X4K9P7Q2M8R{n}");
    Entry {
        market: market.to_owned(),
        at_millis: 1_767_225_600_000 + i64::try_from(n).unwrap() * 1_000,
        actor: format!("client-{}", n % 3),
        role: "pharmacy".to_owned(),
        location: format!("LOC-{}", n % 2),
        operation: if n.is_multiple_of(2) { "verify" } else { "supply" }.to_owned(),
        subject: format!("GTIN/09501101530003/{serial}"),
        return_code: "NMVS_SUCCESS".to_owned(),
        request: format!(r#"{{"scan":"]d201095011015300032110{serial}\u001d17271231"}}"#),
        result: r#"{"state":"ACTIVE"}"#.to_owned(),
    }
}

/// A chain of `n` records of `market`, and its head.
pub fn chain(market: &str, n: u64) -> (Vec<Sealed>, ChainHead) {
    let mut head = ChainHead::genesis(market);
    let records = (1..=n).map(|i| head.seal(entry(market, i)).unwrap()).collect();
    (records, head)
}

/// Records as items.
pub fn records(rs: &[Sealed]) -> Vec<Item> {
    rs.iter().cloned().map(Item::Record).collect()
}

/// The head of the chain right after `record`, signed with key 1 at a fixed time.
pub fn checkpoint_at(record: &Sealed) -> Checkpoint {
    sign_checkpoint(&ChainHead::after(record), 1_767_230_000_000, &key(1))
}

/// The trusted keys of most tests: the public half of key 1.
pub fn trusted() -> Vec<VerifyingKey> {
    vec![key(1).verifying_key()]
}

#[test]
fn a_sealed_chain_with_checkpoints_verifies_and_the_summary_counts_it() {
    let (rs, head) = chain("DE", 7);
    let mut items = records(&rs[..4]);
    items.push(Item::Checkpoint(checkpoint_at(&rs[3])));
    items.extend(records(&rs[4..]));
    let summary = verify(&items, &trusted()).unwrap();
    assert_eq!(summary.markets.len(), 1);
    let de = &summary.markets[0];
    assert_eq!(de.market, "DE");
    assert_eq!((de.first_seq, de.last_seq, de.records), (1, 7, 7));
    assert_eq!(de.last_hash, head.hash);
    assert_eq!((de.checkpoints, de.last_checkpoint_seq, de.unsigned_tail), (1, Some(4), 3));
}

#[test]
fn a_chain_without_checkpoints_is_reported_as_entirely_unsigned() {
    let (rs, _) = chain("DE", 5);
    let summary = verify(&records(&rs), &trusted()).unwrap();
    let de = &summary.markets[0];
    assert_eq!((de.checkpoints, de.last_checkpoint_seq, de.unsigned_tail), (0, None, 5));
}

#[test]
fn an_empty_stream_verifies_with_no_markets() {
    assert_eq!(verify(&[], &trusted()).unwrap(), Summary { markets: vec![] });
}

#[test]
fn sealing_links_each_record_to_the_previous_one_from_genesis() {
    let (rs, head) = chain("DE", 3);
    assert_eq!(rs[0].prev_hash, openmvs_audit::GENESIS);
    assert_eq!(rs[1].prev_hash, rs[0].hash);
    assert_eq!(rs[2].prev_hash, rs[1].hash);
    assert_eq!(rs.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(head, ChainHead::after(&rs[2]));
}

#[test]
fn sealing_an_entry_of_another_market_is_refused_and_leaves_the_head_alone() {
    let mut head = ChainHead::genesis("DE");
    head.seal(entry("DE", 1)).unwrap();
    let before = head.clone();
    let err = head.seal(entry("LU", 2)).unwrap_err();
    assert_eq!(err, AuditError::WrongMarket { chain: "DE".into(), market: "LU".into() });
    assert_eq!(head, before);
}

#[test]
fn sealing_continues_from_a_head_rebuilt_from_the_last_stored_record() {
    let (rs, _) = chain("DE", 3);
    let mut head = ChainHead::after(&rs[2]);
    let next = head.seal(entry("DE", 4)).unwrap();
    let mut items = records(&rs);
    items.push(Item::Record(next));
    assert_eq!(verify(&items, &[]).unwrap().markets[0].last_seq, 4);
}
