//! Signed heads kept outside the database: they catch a chain cut short together with the
//! database's own checkpoints of the records cut off, and every finding names where they came from.

use openmvs_audit::{AuditError, ChainHead, Checkpoint, Sealed, Verifier, key_id, sign_checkpoint};

use crate::{checkpoint_at, key, trusted};

/// Where the heads of these tests are kept.
const FILE: &str = "audit-heads.jsonl";

/// Feeds the database's checkpoints, then the outside heads (each with its origin), then the
/// records, as `openmvs audit verify` does.
fn verify(
    checkpoints: &[Checkpoint],
    outside: &[(&Checkpoint, &str)],
    records: &[Sealed],
) -> Result<openmvs_audit::Summary, AuditError> {
    let mut v = Verifier::new(trusted());
    for cp in checkpoints {
        v.checkpoint(cp)?;
    }
    for (cp, origin) in outside {
        v.outside_head(cp, origin)?;
    }
    for r in records {
        v.record(r)?;
    }
    v.finish()
}

fn outside(origin: &str, finding: AuditError) -> AuditError {
    AuditError::OutsideHead { origin: origin.into(), finding: Box::new(finding) }
}

#[test]
fn records_cut_off_with_their_checkpoints_are_caught_by_a_head_kept_outside() {
    let (rs, _) = crate::chain("DE", 40);
    let head = checkpoint_at(&rs[39]);
    // The attacker removed records #21 to #40 and the database's checkpoint of #40: what is left
    // is a whole chain with a checkpoint at #20.
    let kept = &rs[..20];
    let db = [checkpoint_at(&rs[19])];
    assert!(verify(&db, &[], kept).is_ok(), "the database alone looks whole");
    assert_eq!(
        verify(&db, &[(&head, FILE)], kept).unwrap_err(),
        outside(FILE, AuditError::CheckpointBeyondEnd { market: "DE".into(), seq: 40, last: 20 })
    );
    // The newest record alone, cut off with its checkpoint.
    let db = [checkpoint_at(&rs[38])];
    assert_eq!(
        verify(&db, &[(&head, "hub heads")], &rs[..39]).unwrap_err(),
        outside("hub heads", AuditError::CheckpointBeyondEnd { market: "DE".into(), seq: 40, last: 39 })
    );
    // Every record of the market gone.
    assert_eq!(
        verify(&[], &[(&head, FILE)], &[]).unwrap_err(),
        outside(FILE, AuditError::CheckpointBeyondEnd { market: "DE".into(), seq: 40, last: 0 })
    );
}

#[test]
fn a_checkpoint_left_in_the_database_names_the_truncation_itself() {
    let (rs, _) = crate::chain("DE", 10);
    let cp = checkpoint_at(&rs[9]);
    assert_eq!(
        verify(std::slice::from_ref(&cp), &[(&cp, FILE)], &rs[..6]).unwrap_err(),
        AuditError::CheckpointBeyondEnd { market: "DE".into(), seq: 10, last: 6 }
    );
}

#[test]
fn a_head_kept_outside_matches_the_whole_chain_or_an_earlier_record_of_it() {
    let (rs, _) = crate::chain("DE", 10);
    let db = [checkpoint_at(&rs[9])];
    let at_end = checkpoint_at(&rs[9]);
    let earlier = checkpoint_at(&rs[4]);
    let summary = verify(&db, &[(&at_end, FILE), (&earlier, "hub heads")], &rs).expect("verifies");
    assert_eq!(summary.markets[0].checkpoints, 3);
    assert_eq!(summary.markets[0].unsigned_tail, 0);
}

#[test]
fn a_chain_rewritten_and_resealed_under_a_head_kept_outside_is_caught() {
    let (rs, _) = crate::chain("DE", 10);
    let head = checkpoint_at(&rs[7]);
    // The records from #5 on rewritten and resealed, with a new checkpoint the attacker cannot
    // sign with the operator's key: the database holds none after #4.
    let mut chain = ChainHead::after(&rs[3]);
    let mut forged: Vec<Sealed> = rs[..4].to_vec();
    for n in 5..=10 {
        let mut e = crate::entry("DE", n);
        e.result = r#"{"state":"SUPPLIED"}"#.into();
        forged.push(chain.seal(e).expect("seals"));
    }
    let db = [checkpoint_at(&rs[3])];
    assert_eq!(
        verify(&db, &[(&head, FILE)], &forged).unwrap_err(),
        outside(
            FILE,
            AuditError::CheckpointHashMismatch {
                market: "DE".into(),
                seq: 8,
                key_id: key_id(&key(1).verifying_key())
            }
        )
    );
}

#[test]
fn a_forged_head_kept_outside_is_refused_with_its_origin() {
    let (rs, _) = crate::chain("DE", 4);
    let mut head = checkpoint_at(&rs[3]);
    head.seq = 40;
    let id = key_id(&key(1).verifying_key());
    assert_eq!(
        verify(&[], &[(&head, FILE)], &rs).unwrap_err(),
        outside(FILE, AuditError::BadSignature { market: "DE".into(), seq: 40, key_id: id })
    );
    let stranger = sign_checkpoint(&ChainHead::after(&rs[3]), 1, &key(2));
    assert_eq!(
        verify(&[], &[(&stranger, FILE)], &rs).unwrap_err(),
        outside(
            FILE,
            AuditError::UnknownKey { market: "DE".into(), seq: 4, key_id: key_id(&key(2).verifying_key()) }
        )
    );
}
