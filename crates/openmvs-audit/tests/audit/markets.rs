//! Markets are independent chains: interleaved records verify, and a break names its market.

use openmvs_audit::{AuditError, Sealed};

use crate::{Item, chain, checkpoint_at, trusted, verify};

/// DE and LU records interleaved one by one, with a checkpoint of each market's record #2.
fn interleaved(de: &[Sealed], lu: &[Sealed]) -> Vec<Item> {
    let mut items = Vec::new();
    for i in 0..de.len().max(lu.len()) {
        for rs in [de, lu] {
            if let Some(r) = rs.get(i) {
                items.push(Item::Record(r.clone()));
                if r.seq == 2 {
                    items.push(Item::Checkpoint(checkpoint_at(r)));
                }
            }
        }
    }
    items
}

#[test]
fn interleaved_records_of_two_markets_verify_as_two_chains() {
    let (de, _) = chain("DE", 5);
    let (lu, _) = chain("LU", 3);
    let summary = verify(&interleaved(&de, &lu), &trusted()).unwrap();
    let got: Vec<_> = summary
        .markets
        .iter()
        .map(|m| (m.market.as_str(), m.records, m.checkpoints, m.unsigned_tail))
        .collect();
    assert_eq!(got, [("DE", 5, 1, 3), ("LU", 3, 1, 1)]);
}

#[test]
fn a_break_in_one_market_names_that_market() {
    let (de, _) = chain("DE", 5);
    let (mut lu, _) = chain("LU", 3);
    lu.remove(1);
    assert_eq!(
        verify(&interleaved(&de, &lu), &trusted()),
        Err(AuditError::Gap { market: "LU".into(), seq: 3, after: 1 })
    );
}

#[test]
fn a_record_of_one_market_does_not_continue_another_markets_chain() {
    // Both chains are at #1; LU's record #2 carries LU's link, not DE's.
    let (de, _) = chain("DE", 2);
    let (lu, _) = chain("LU", 2);
    let mut moved = lu[1].clone();
    moved.entry.market = "DE".into();
    let items = vec![Item::Record(de[0].clone()), Item::Record(moved)];
    assert_eq!(verify(&items, &trusted()), Err(AuditError::HashMismatch { market: "DE".into(), seq: 2 }));
}
