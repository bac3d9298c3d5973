//! The one-line messages the CLI prints for the first bad record.

use openmvs_audit::AuditError;

#[test]
fn each_finding_reads_as_one_line_naming_the_market_and_sequence_number() {
    let cases = [
        (
            AuditError::HashMismatch { market: "DE".into(), seq: 1234 },
            "record DE #1234: hash does not match its contents (edited?)",
        ),
        (
            AuditError::PrevHashMismatch { market: "DE".into(), seq: 1234 },
            "record DE #1234: prev_hash does not match record #1233",
        ),
        (
            AuditError::PrevHashMismatch { market: "DE".into(), seq: 1 },
            "record DE #1: prev_hash does not match the genesis hash",
        ),
        (
            AuditError::Gap { market: "DE".into(), seq: 1236, after: 1234 },
            "record DE #1236 follows #1234: record #1235 is missing",
        ),
        (
            AuditError::Gap { market: "DE".into(), seq: 1240, after: 1234 },
            "record DE #1240 follows #1234: records #1235 to #1239 are missing",
        ),
        (
            AuditError::Gap { market: "LU".into(), seq: 5, after: 0 },
            "record LU #5 is the first of its market: records #1 to #4 are missing",
        ),
        (
            AuditError::OutOfOrder { market: "DE".into(), seq: 1230, after: 1234 },
            "record DE #1230 follows #1234: duplicated or out of order",
        ),
        (
            AuditError::OutsideHead {
                origin: "audit-heads.jsonl".into(),
                finding: Box::new(AuditError::CheckpointBeyondEnd { market: "DE".into(), seq: 57, last: 17 }),
            },
            "checkpoint DE #57: record #57 is missing, the records end at #17 (truncated?); \
             signed head from audit-heads.jsonl",
        ),
        (
            AuditError::UnknownKey { market: "DE".into(), seq: 2000, key_id: "k9".into() },
            "checkpoint DE #2000: signed with unknown key k9",
        ),
        (
            AuditError::KeyMismatch {
                market: "DE".into(),
                seq: 2000,
                key_id: "k1".into(),
                checked_with: "k2".into(),
            },
            "checkpoint DE #2000: names key k1 but was checked with key k2",
        ),
        (
            AuditError::BadSignature { market: "DE".into(), seq: 2000, key_id: "k1".into() },
            "checkpoint DE #2000: signature invalid for key k1",
        ),
        (
            AuditError::CheckpointHashMismatch { market: "DE".into(), seq: 2000, key_id: "k1".into() },
            "checkpoint DE #2000 (key k1): hash does not match the chain at record #2000 (rewritten?)",
        ),
        (
            AuditError::CheckpointBeyondEnd { market: "DE".into(), seq: 2000, last: 1995 },
            "checkpoint DE #2000: record #2000 is missing, the records end at #1995 (truncated?)",
        ),
        (
            AuditError::CheckpointBeyondEnd { market: "DE".into(), seq: 2000, last: 0 },
            "checkpoint DE #2000: record #2000 is missing, the market has no records (truncated?)",
        ),
        (
            AuditError::CheckpointTooLate { market: "DE".into(), seq: 2000, head: 2100 },
            "checkpoint DE #2000 came after record #2100: feed each checkpoint before the record after the one it signs",
        ),
        (
            AuditError::WrongMarket { chain: "DE".into(), market: "LU".into() },
            "cannot seal an entry of market LU on the chain of market DE",
        ),
    ];
    for (err, expected) in cases {
        assert_eq!(err.to_string(), expected);
    }
}

#[test]
fn a_market_name_with_a_line_break_cannot_forge_a_second_line_of_output() {
    let err = AuditError::HashMismatch { market: "DE\nrecord DE #1: ok".into(), seq: 7 };
    let shown = err.to_string();
    assert!(!shown.contains('\n'), "{shown}");
    assert_eq!(err.position(), ("DE\nrecord DE #1: ok", 7));
}
