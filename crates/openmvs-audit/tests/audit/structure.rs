//! Deleted, duplicated, reordered, replaced and truncated records.

use openmvs_audit::{AuditError, ChainHead, Sealed};

use crate::{Item, chain, checkpoint_at, entry, records, trusted, verify};

/// Feeds the items `build` makes from a six-record chain of DE, and compares the outcome with
/// `expected`: `Ok(n)` for a chain that verifies with `n` records, or the error.
#[expect(
    clippy::needless_pass_by_value,
    reason = "the table reads better with plain values than with a `&` on every row"
)]
fn check(name: &str, build: fn(&[Sealed]) -> Vec<Item>, expected: Result<u64, AuditError>) {
    let (rs, _) = chain("DE", 6);
    let got = verify(&build(&rs), &trusted()).map(|s| s.markets[0].records);
    assert_eq!(got, expected, "{name}");
}

/// The records at `indexes` of `rs`, in that order.
fn pick(rs: &[Sealed], indexes: &[usize]) -> Vec<Item> {
    indexes.iter().map(|&i| Item::Record(rs[i].clone())).collect()
}

fn gap(seq: u64, after: u64) -> Result<u64, AuditError> {
    Err(AuditError::Gap { market: "DE".into(), seq, after })
}

fn out_of_order(seq: u64, after: u64) -> Result<u64, AuditError> {
    Err(AuditError::OutOfOrder { market: "DE".into(), seq, after })
}

fn beyond_end(seq: u64, last: u64) -> Result<u64, AuditError> {
    Err(AuditError::CheckpointBeyondEnd { market: "DE".into(), seq, last })
}

#[test]
fn deleted_duplicated_and_reordered_records_are_caught_and_named() {
    check("the whole chain", records, Ok(6));
    check("a deleted middle record", |rs| pick(rs, &[0, 1, 3, 4, 5]), gap(4, 2));
    check("a deleted first record", |rs| pick(rs, &[1, 2, 3, 4, 5]), gap(2, 0));
    check("two deleted records", |rs| pick(rs, &[0, 1, 4, 5]), gap(5, 2));
    check("a duplicated record", |rs| pick(rs, &[0, 1, 2, 2, 3, 4, 5]), out_of_order(3, 3));
    check("a record repeated later", |rs| pick(rs, &[0, 1, 2, 3, 1, 4, 5]), out_of_order(2, 4));
    check("two swapped records", |rs| pick(rs, &[0, 1, 3, 2, 4, 5]), gap(4, 2));
    check("a record moved to the end", |rs| pick(rs, &[0, 2, 3, 4, 5, 1]), gap(3, 1));
}

#[test]
fn truncation_is_caught_up_to_the_last_checkpoint() {
    check(
        "a checkpoint fed first, the records after #4 gone",
        |rs| {
            let mut items = vec![Item::Checkpoint(checkpoint_at(&rs[5]))];
            items.extend(pick(rs, &[0, 1, 2, 3]));
            items
        },
        beyond_end(6, 4),
    );
    check(
        "the signed last record gone, its checkpoint fed in its place",
        |rs| {
            let mut items = pick(rs, &[0, 1, 2, 3, 4]);
            items.push(Item::Checkpoint(checkpoint_at(&rs[5])));
            items
        },
        beyond_end(6, 5),
    );
    check(
        "every record gone, the checkpoint left",
        |rs| vec![Item::Checkpoint(checkpoint_at(&rs[5]))],
        beyond_end(6, 0),
    );
    // Without a checkpoint, a shortened chain is still a valid chain: this is the unsigned tail
    // the summary warns about.
    check("the last two records gone, no checkpoint", |rs| pick(rs, &[0, 1, 2, 3]), Ok(4));
}

#[test]
fn a_record_replaced_by_one_sealed_on_another_chain_is_caught_by_its_link() {
    check(
        "record #3 from a forked chain",
        |rs| {
            let mut fork = ChainHead::genesis("DE");
            let forged: Vec<Sealed> = (101..=103).map(|n| fork.seal(entry("DE", n)).unwrap()).collect();
            let mut items = records(rs);
            items[2] = Item::Record(forged[2].clone());
            items
        },
        Err(AuditError::PrevHashMismatch { market: "DE".into(), seq: 3 }),
    );
    check(
        "record #1 from a chain that does not start at genesis",
        |rs| {
            let mut other = ChainHead { market: "DE".into(), seq: 0, hash: [7; 32] };
            let mut items = records(rs);
            items[0] = Item::Record(other.seal(entry("DE", 1)).unwrap());
            items
        },
        Err(AuditError::PrevHashMismatch { market: "DE".into(), seq: 1 }),
    );
}

#[test]
fn a_pruned_chain_verifies_from_the_checkpoint_that_anchors_it() {
    let (rs, _) = chain("DE", 6);
    let mut items = vec![
        // Checkpoints of pruned records are set aside unchecked.
        Item::Checkpoint(checkpoint_at(&rs[0])),
        Item::Checkpoint(checkpoint_at(&rs[2])),
    ];
    items.extend(pick(&rs, &[3, 4, 5]));
    let summary = verify(&items, &trusted()).unwrap();
    let de = &summary.markets[0];
    assert_eq!((de.first_seq, de.last_seq, de.records), (4, 6, 3));
    assert_eq!((de.checkpoints, de.last_checkpoint_seq, de.unsigned_tail), (1, Some(3), 3));
}

#[test]
fn a_pruned_chain_without_an_anchoring_checkpoint_is_a_gap() {
    check("records #1 to #3 gone, no checkpoint", |rs| pick(rs, &[3, 4, 5]), gap(4, 0));
    check(
        "records #1 to #3 gone, a checkpoint of #2 only",
        |rs| {
            let mut items = vec![Item::Checkpoint(checkpoint_at(&rs[1]))];
            items.extend(pick(rs, &[3, 4, 5]));
            items
        },
        gap(4, 0),
    );
}

#[test]
fn a_pruned_chain_whose_first_record_does_not_link_to_the_anchor_is_caught() {
    let (rs, _) = chain("DE", 6);
    let mut fork = ChainHead::genesis("DE");
    let forged: Vec<Sealed> = (101..=104).map(|n| fork.seal(entry("DE", n)).unwrap()).collect();
    let cp = checkpoint_at(&rs[2]);
    let items = vec![Item::Checkpoint(cp.clone()), Item::Record(forged[3].clone())];
    assert_eq!(
        verify(&items, &trusted()),
        Err(AuditError::CheckpointHashMismatch { market: "DE".into(), seq: 3, key_id: cp.key_id })
    );
}
