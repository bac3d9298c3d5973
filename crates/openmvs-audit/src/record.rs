//! Audit records: the entry a caller provides, its sealing into a market's hash chain, and the
//! canonical encoding that the record hash covers.

use sha2::{Digest, Sha256};

use crate::AuditError;

/// A SHA-256 digest: the hash of a record, and what checkpoints sign.
pub type Hash = [u8; 32];

/// The `prev_hash` of a market's first record: SHA-256 of `b"openmvs-audit-v1 genesis"`.
///
/// It is a fixed, well-known value rather than zeros so that it cannot be mistaken for an unset
/// field; a test recomputes it.
pub const GENESIS: Hash = [
    0xde, 0x33, 0x82, 0x7a, 0x9d, 0xb9, 0x99, 0xe7, 0xea, 0xc6, 0x96, 0x4b, 0xb8, 0xf2, 0x6c, 0x2f, 0xd5,
    0xf5, 0x36, 0x02, 0x92, 0xb2, 0x35, 0x3a, 0xd1, 0x0a, 0xcd, 0x7d, 0x39, 0xed, 0x50, 0x56,
];

/// The domain tag that opens every record encoding. The version in it changes if the encoding
/// ever does, so that old and new hashes can never be confused.
const RECORD_TAG: &[u8] = b"openmvs-audit-v1 record";

/// One audited operation, as the caller provides it (`fmd-rules.md` §4.6).
///
/// Every field is covered by the record hash byte for byte; none is normalised.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    /// The market whose chain the record joins, e.g. `DE`.
    pub market: String,
    /// When the operation happened, in milliseconds since the Unix epoch, as the caller's clock
    /// said. The chain orders records; times are not required to increase, since clocks step back.
    pub at_millis: i64,
    /// Who acted: a client id, `hub` or `system`.
    pub actor: String,
    /// The actor's role, e.g. `pharmacy`, `nmvo`, `nca`.
    pub role: String,
    /// The location (premises) the operation came from; empty if none.
    pub location: String,
    /// What was done, e.g. `supply`, `verify`, `login`, `alert-status`, `hub-inbound`.
    pub operation: String,
    /// What it was done to, e.g. `GTIN/09501101530003/X4K9P7Q2M8R5`; empty if none.
    pub subject: String,
    /// The return code of the outcome, e.g. `NMVS_SUCCESS` or `NMVS_NC_PCK_22`.
    pub return_code: String,
    /// The request as JSON text, including the raw scan where one was given.
    pub request: String,
    /// The result as JSON text.
    pub result: String,
}

/// A record as stored: an entry with its place in its market's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The record's position in its market's chain, from 1.
    pub seq: u64,
    /// What was audited.
    pub entry: Entry,
    /// The hash of the market's previous record, or [`GENESIS`] for record 1.
    pub prev_hash: Hash,
    /// [`record_hash`] of `seq`, `prev_hash` and `entry`.
    pub hash: Hash,
}

/// The end of a market's chain: what the next record links to.
///
/// A storage engine keeps one per market (or rebuilds it from the last stored record with
/// [`ChainHead::after`]) and seals each new entry with it, inside the transaction that stores the
/// record, so that two appends can never claim the same sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    /// The market whose chain this is.
    pub market: String,
    /// The sequence number of the last record, 0 for an empty chain.
    pub seq: u64,
    /// The hash of the last record, [`GENESIS`] for an empty chain.
    pub hash: Hash,
}

impl ChainHead {
    /// The head of a market's empty chain: sequence number 0 and [`GENESIS`].
    pub fn genesis(market: impl Into<String>) -> Self {
        ChainHead { market: market.into(), seq: 0, hash: GENESIS }
    }

    /// The head of a chain whose last record is `record`.
    pub fn after(record: &Sealed) -> Self {
        ChainHead { market: record.entry.market.clone(), seq: record.seq, hash: record.hash }
    }

    /// Seals `entry` as the chain's next record and advances the head past it.
    ///
    /// An entry of another market is refused with [`AuditError::WrongMarket`] and the head is
    /// left as it was: sealing it here would put the record in the wrong chain, where the
    /// verifier would later report it as a gap in both.
    ///
    /// # Panics
    ///
    /// If the chain already holds `u64::MAX` records, which no national system will live to see.
    pub fn seal(&mut self, entry: Entry) -> Result<Sealed, AuditError> {
        if entry.market != self.market {
            return Err(AuditError::WrongMarket { chain: self.market.clone(), market: entry.market });
        }
        let seq = self.seq.checked_add(1).expect("a chain holds fewer than u64::MAX records");
        let prev_hash = self.hash;
        let hash = record_hash(seq, &prev_hash, &entry);
        self.seq = seq;
        self.hash = hash;
        Ok(Sealed { seq, entry, prev_hash, hash })
    }
}

/// The hash of a record: SHA-256 over its canonical encoding.
///
/// The encoding is, in this order:
///
/// 1. `field(b"openmvs-audit-v1 record")`, the domain tag;
/// 2. `seq` as 8 bytes, big-endian;
/// 3. `prev` as its 32 bytes;
/// 4. `field(market)`;
/// 5. `at_millis` as 8 bytes, big-endian two's complement;
/// 6. `field(actor)`, `field(role)`, `field(location)`, `field(operation)`, `field(subject)`,
///    `field(return_code)`, `field(request)`, `field(result)`;
///
/// where `field(x)` is the length of `x` in bytes as 8 bytes big-endian, then the UTF-8 bytes of
/// `x`. Every part has either a fixed width or a length in front, so the encoding reads back in
/// exactly one way: no two different records encode alike, however their fields are split.
pub fn record_hash(seq: u64, prev: &Hash, entry: &Entry) -> Hash {
    let mut h = Sha256::new();
    field(&mut h, RECORD_TAG);
    h.update(seq.to_be_bytes());
    h.update(prev);
    field(&mut h, entry.market.as_bytes());
    h.update(entry.at_millis.to_be_bytes());
    for text in [
        &entry.actor,
        &entry.role,
        &entry.location,
        &entry.operation,
        &entry.subject,
        &entry.return_code,
        &entry.request,
        &entry.result,
    ] {
        field(&mut h, text.as_bytes());
    }
    h.finalize().into()
}

/// Where an encoding goes: straight into a hasher for records (so that a large request is never
/// copied), into a buffer for the checkpoint message that is signed.
pub(crate) trait Sink {
    /// Appends bytes as they are.
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Sha256 {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Appends a variable-length field: its length as a big-endian `u64`, then its bytes.
pub(crate) fn field(sink: &mut impl Sink, bytes: &[u8]) {
    // A usize always fits in a u64 on the platforms Rust supports.
    sink.put(&(bytes.len() as u64).to_be_bytes());
    sink.put(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn genesis_is_the_sha256_of_its_domain_string() {
        let expected: Hash = Sha256::digest(b"openmvs-audit-v1 genesis").into();
        assert_eq!(GENESIS, expected);
    }
}
