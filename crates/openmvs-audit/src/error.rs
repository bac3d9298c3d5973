//! What verification can find wrong, each finding naming the market and sequence number of the
//! record or checkpoint concerned, in one line.

/// A finding of the audit verifier, or a refused seal.
///
/// Each message is one line that names the market and sequence number first, so that the
/// operator can go straight to the row. Market names and key ids are printed escaped, since they
/// come from the very data under suspicion and must not be able to forge further lines of output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// The record's hash does not recompute from its sequence number, `prev_hash` and entry:
    /// some byte of it was changed after sealing.
    #[error("record {} #{seq}: hash does not match its contents (edited?)", .market.escape_debug())]
    HashMismatch {
        /// The market of the record, as stored.
        market: String,
        /// The sequence number of the record, as stored.
        seq: u64,
    },

    /// The record is self-consistent but does not link to the previous record of its market:
    /// a record was replaced, or the previous one was edited and its hash recomputed.
    #[error("record {} #{seq}: prev_hash does not match {}", .market.escape_debug(), previous(*.seq))]
    PrevHashMismatch {
        /// The market of the record.
        market: String,
        /// The sequence number of the record.
        seq: u64,
    },

    /// One or more records before this one are missing (deleted, or reordered later).
    #[error("record {} #{seq} {}", .market.escape_debug(), gap(*.after, *.seq))]
    Gap {
        /// The market of the record.
        market: String,
        /// The sequence number of the record.
        seq: u64,
        /// The sequence number of the market's previous record, 0 if this is its first.
        after: u64,
    },

    /// The record's sequence number is not above the previous one's: it is a duplicate, or
    /// records were reordered.
    #[error(
        "record {} #{seq} follows #{after}: duplicated or out of order",
        .market.escape_debug()
    )]
    OutOfOrder {
        /// The market of the record.
        market: String,
        /// The sequence number of the record.
        seq: u64,
        /// The sequence number of the market's previous record.
        after: u64,
    },

    /// The checkpoint names a key the verifier was not given.
    #[error("checkpoint {} #{seq}: signed with unknown key {}", .market.escape_debug(), .key_id.escape_debug())]
    UnknownKey {
        /// The market of the checkpoint.
        market: String,
        /// The sequence number the checkpoint signs.
        seq: u64,
        /// The key id the checkpoint names.
        key_id: String,
    },

    /// The checkpoint was checked with a key other than the one it names.
    #[error(
        "checkpoint {} #{seq}: names key {} but was checked with key {checked_with}",
        .market.escape_debug(),
        .key_id.escape_debug()
    )]
    KeyMismatch {
        /// The market of the checkpoint.
        market: String,
        /// The sequence number the checkpoint signs.
        seq: u64,
        /// The key id the checkpoint names.
        key_id: String,
        /// The id of the key it was checked with.
        checked_with: String,
    },

    /// The checkpoint's signature does not verify: it was forged, or one of its fields altered.
    #[error("checkpoint {} #{seq}: signature invalid for key {}", .market.escape_debug(), .key_id.escape_debug())]
    BadSignature {
        /// The market of the checkpoint.
        market: String,
        /// The sequence number the checkpoint signs.
        seq: u64,
        /// The key id the checkpoint names.
        key_id: String,
    },

    /// A validly signed checkpoint disagrees with the stored chain at its sequence number: the
    /// records up to it were rewritten and resealed.
    #[error(
        "checkpoint {} #{seq} (key {}): hash does not match the chain at record #{seq} (rewritten?)",
        .market.escape_debug(),
        .key_id.escape_debug()
    )]
    CheckpointHashMismatch {
        /// The market of the checkpoint.
        market: String,
        /// The sequence number the checkpoint signs.
        seq: u64,
        /// The key id the checkpoint names.
        key_id: String,
    },

    /// A checkpoint signs a record that never came: the chain was truncated after it.
    #[error("checkpoint {} #{seq}: record #{seq} is missing, {} (truncated?)", .market.escape_debug(), records_end(*.last))]
    CheckpointBeyondEnd {
        /// The market of the checkpoint.
        market: String,
        /// The sequence number the checkpoint signs.
        seq: u64,
        /// The sequence number of the market's last record, 0 if it has none.
        last: u64,
    },

    /// A checkpoint came after the record following the one it signs. The verifier keeps only
    /// each market's running head, not every hash, so it can no longer check it; this is a fault
    /// of the feeding order, not of the data.
    #[error(
        "checkpoint {} #{seq} came after record #{head}: feed each checkpoint before the record after the one it signs",
        .market.escape_debug()
    )]
    CheckpointTooLate {
        /// The market of the checkpoint.
        market: String,
        /// The sequence number the checkpoint signs.
        seq: u64,
        /// The sequence number of the market's last record seen when it came.
        head: u64,
    },

    /// A finding about a signed head kept outside the database (see
    /// [`crate::Verifier::outside_head`]): most often [`AuditError::CheckpointBeyondEnd`], the
    /// records it signs are gone, together with the database's own checkpoints of them.
    #[error("{finding}; signed head from {}", .origin.escape_debug())]
    OutsideHead {
        /// Where the head was kept, e.g. a file name.
        origin: String,
        /// What is wrong with it, or with the chain it signs.
        finding: Box<AuditError>,
    },

    /// [`crate::ChainHead::seal`] was given an entry of another market.
    #[error(
        "cannot seal an entry of market {} on the chain of market {}",
        .market.escape_debug(),
        .chain.escape_debug()
    )]
    WrongMarket {
        /// The market of the chain.
        chain: String,
        /// The market of the entry.
        market: String,
    },
}

impl AuditError {
    /// The market and sequence number the finding is about: of the record, or of the record a
    /// checkpoint signs. For [`AuditError::WrongMarket`], the entry's market and 0.
    pub fn position(&self) -> (&str, u64) {
        match self {
            AuditError::HashMismatch { market, seq }
            | AuditError::PrevHashMismatch { market, seq }
            | AuditError::Gap { market, seq, .. }
            | AuditError::OutOfOrder { market, seq, .. }
            | AuditError::UnknownKey { market, seq, .. }
            | AuditError::KeyMismatch { market, seq, .. }
            | AuditError::BadSignature { market, seq, .. }
            | AuditError::CheckpointHashMismatch { market, seq, .. }
            | AuditError::CheckpointBeyondEnd { market, seq, .. }
            | AuditError::CheckpointTooLate { market, seq, .. } => (market, *seq),
            AuditError::OutsideHead { finding, .. } => finding.position(),
            AuditError::WrongMarket { market, .. } => (market, 0),
        }
    }
}

/// Names what record `seq`'s `prev_hash` should have matched.
fn previous(seq: u64) -> String {
    match seq {
        0 | 1 => "the genesis hash".to_owned(),
        _ => format!("record #{}", seq - 1),
    }
}

/// Describes the records missing between record `after` and record `seq`.
fn gap(after: u64, seq: u64) -> String {
    let first = after + 1;
    let last = seq.saturating_sub(1);
    let missing = if first == last {
        format!("record #{first} is missing")
    } else {
        format!("records #{first} to #{last} are missing")
    };
    if after == 0 {
        format!("is the first of its market: {missing}")
    } else {
        format!("follows #{after}: {missing}")
    }
}

/// Describes where a market's records end.
fn records_end(last: u64) -> String {
    match last {
        0 => "the market has no records".to_owned(),
        _ => format!("the records end at #{last}"),
    }
}
