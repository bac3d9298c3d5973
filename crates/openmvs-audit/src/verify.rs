//! The streaming verifier: fed every record and checkpoint of a national system, it keeps one
//! running head per market and reports the first record or checkpoint that is wrong.

use std::collections::{BTreeMap, HashMap};

use ed25519_dalek::VerifyingKey;

use crate::AuditError;
use crate::checkpoint::{Checkpoint, key_id, verify_checkpoint};
use crate::record::{GENESIS, Hash, Sealed, record_hash};

/// Checks a stream of records and checkpoints, market by market.
///
/// # Feeding order
///
/// Feed each market's records in sequence order; markets may be interleaved as they like. Feed
/// each checkpoint either before its market's records reach it, or right after the record it
/// signs, and in any case before the record after that one: the verifier keeps only a running
/// head per market, not every hash, because a national system writes billions of records. The
/// simplest order is "all checkpoints, then all records"; merging the two by sequence number
/// works too. Checkpoints are few, so those waiting for their record cost little memory.
///
/// # Pruned chains
///
/// Records may be deleted once their retention period is over (`fmd-rules.md` §4.6). A market's
/// chain may therefore begin at record `k` above 1, provided a checkpoint of record `k - 1` was
/// fed first: that signed hash stands in for the pruned records, and record `k`'s `prev_hash`
/// must equal it. Checkpoints of records before it are set aside unchecked, since their records
/// are gone. [`MarketSummary::first_seq`] shows where each chain begins, since a deletion of a
/// chain's oldest records up to a checkpoint is indistinguishable from pruning.
///
/// The first error is the finding; after it, the verifier's state is unspecified.
#[derive(Debug)]
pub struct Verifier {
    /// The operator's public keys, by [`key_id`].
    keys: HashMap<String, VerifyingKey>,
    /// One running state per market, ordered so that the summary is too.
    markets: BTreeMap<String, Market>,
}

/// What the verifier remembers of one market.
#[derive(Debug)]
struct Market {
    /// The sequence number of the first record seen, 0 while there is none.
    first_seq: u64,
    /// The sequence number of the last record accepted, or of the anchoring checkpoint.
    seq: u64,
    /// The hash at `seq`.
    hash: Hash,
    /// How many records were accepted.
    records: u64,
    /// How many checkpoints matched the chain.
    checkpoints: u64,
    /// The highest sequence number a matched checkpoint signed.
    last_checkpoint_seq: Option<u64>,
    /// Checkpoints with a valid signature whose record has not come yet, by sequence number.
    pending: BTreeMap<u64, Vec<Waiting>>,
}

impl Market {
    fn new() -> Self {
        Market {
            first_seq: 0,
            seq: 0,
            hash: GENESIS,
            records: 0,
            checkpoints: 0,
            last_checkpoint_seq: None,
            pending: BTreeMap::new(),
        }
    }

    /// Counts `n` checkpoints as matched at `seq`.
    fn matched(&mut self, seq: u64, n: usize) {
        self.checkpoints += n as u64;
        self.last_checkpoint_seq = Some(self.last_checkpoint_seq.map_or(seq, |s| s.max(seq)));
    }
}

/// A validly signed checkpoint waiting for the record it signs.
#[derive(Debug)]
struct Waiting {
    /// The hash it signs.
    hash: Hash,
    /// The key id it names.
    key_id: String,
    /// Where it was kept, if outside the database (see [`Verifier::outside_head`]).
    origin: Option<String>,
}

impl Waiting {
    /// `finding` about this checkpoint, naming where it was kept if outside the database.
    fn finding(&self, finding: AuditError) -> AuditError {
        match &self.origin {
            Some(origin) => AuditError::OutsideHead { origin: origin.clone(), finding: Box::new(finding) },
            None => finding,
        }
    }
}

/// What a successful verification found, market by market.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// One summary per market that had a record or a checkpoint, ordered by market.
    pub markets: Vec<MarketSummary>,
}

/// What a successful verification found in one market.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarketSummary {
    /// The market.
    pub market: String,
    /// The sequence number of the first record: 1, or above if older records were pruned after a
    /// checkpoint; 0 if the market has no records.
    pub first_seq: u64,
    /// The sequence number of the last record, 0 if there is none.
    pub last_seq: u64,
    /// How many records were verified.
    pub records: u64,
    /// The hash of the last record, [`GENESIS`] if there is none.
    pub last_hash: Hash,
    /// How many checkpoints were verified, signed heads kept outside the database included.
    pub checkpoints: u64,
    /// The highest sequence number a verified checkpoint (or signed head) signs, if any.
    pub last_checkpoint_seq: Option<u64>,
    /// How many records come after the last checkpoint. Their truncation, or their rewriting
    /// with recomputed hashes, cannot be detected until a checkpoint signs them.
    pub unsigned_tail: u64,
}

impl Verifier {
    /// A verifier that trusts checkpoints signed by any of `keys`; each is known by its
    /// [`key_id`], which the verifier derives itself.
    pub fn new(keys: impl IntoIterator<Item = VerifyingKey>) -> Self {
        Verifier { keys: keys.into_iter().map(|k| (key_id(&k), k)).collect(), markets: BTreeMap::new() }
    }

    /// Checks the next record of its market.
    ///
    /// The checks run in this order, so that the message names the most specific fault: the
    /// hash recomputes from the record's contents (any edited byte fails here); the sequence
    /// number is the next one for the market (a gap, duplicate or reordering fails here);
    /// `prev_hash` equals the previous record's hash; and any checkpoint waiting for this record
    /// signs this very hash.
    pub fn record(&mut self, r: &Sealed) -> Result<(), AuditError> {
        let name = &r.entry.market;
        if record_hash(r.seq, &r.prev_hash, &r.entry) != r.hash {
            return Err(AuditError::HashMismatch { market: name.clone(), seq: r.seq });
        }
        let m = market(&mut self.markets, name);
        if m.records == 0 && r.seq > 1 {
            anchor(m, name, r)?;
        }
        if r.seq <= m.seq {
            return Err(AuditError::OutOfOrder { market: name.clone(), seq: r.seq, after: m.seq });
        }
        if r.seq - m.seq > 1 {
            return Err(AuditError::Gap { market: name.clone(), seq: r.seq, after: m.seq });
        }
        if r.prev_hash != m.hash {
            return Err(AuditError::PrevHashMismatch { market: name.clone(), seq: r.seq });
        }
        m.seq = r.seq;
        m.hash = r.hash;
        m.records += 1;
        if m.first_seq == 0 {
            m.first_seq = r.seq;
        }
        if let Some(waiting) = m.pending.remove(&r.seq) {
            if let Some(w) = waiting.iter().find(|w| w.hash != r.hash) {
                return Err(w.finding(AuditError::CheckpointHashMismatch {
                    market: name.clone(),
                    seq: r.seq,
                    key_id: w.key_id.clone(),
                }));
            }
            m.matched(r.seq, waiting.len());
        }
        Ok(())
    }

    /// Checks a checkpoint: its key is known, its signature verifies, and the hash it signs is
    /// the chain's at its sequence number (now, if that record was the last one fed, or when the
    /// record comes).
    pub fn checkpoint(&mut self, cp: &Checkpoint) -> Result<(), AuditError> {
        self.check(cp, None)
    }

    /// Checks a signed head kept outside the database: a copy of a checkpoint that left the
    /// database when it was signed (a national system's head file, or the heads the hub
    /// received), found at `origin`. It is checked as a checkpoint is, and so catches a trail
    /// cut short behind the database's back: if the records it signs are gone, together with
    /// the checkpoints in the database that signed them, it still names its record. Each finding
    /// about it is an [`AuditError::OutsideHead`] naming `origin`. Feed it as a checkpoint: before
    /// its market's records reach it.
    pub fn outside_head(&mut self, cp: &Checkpoint, origin: &str) -> Result<(), AuditError> {
        self.check(cp, Some(origin))
    }

    fn check(&mut self, cp: &Checkpoint, origin: Option<&str>) -> Result<(), AuditError> {
        let waiting = Waiting { hash: cp.hash, key_id: cp.key_id.clone(), origin: origin.map(str::to_owned) };
        self.check_signed(cp).map_err(|e| waiting.finding(e))?;
        let m = market(&mut self.markets, &cp.market);
        match cp.seq.cmp(&m.seq) {
            std::cmp::Ordering::Greater => {
                m.pending.entry(cp.seq).or_default().push(waiting);
            }
            std::cmp::Ordering::Equal if cp.hash == m.hash => m.matched(cp.seq, 1),
            std::cmp::Ordering::Equal => {
                return Err(waiting.finding(AuditError::CheckpointHashMismatch {
                    market: cp.market.clone(),
                    seq: cp.seq,
                    key_id: cp.key_id.clone(),
                }));
            }
            std::cmp::Ordering::Less => {
                return Err(waiting.finding(AuditError::CheckpointTooLate {
                    market: cp.market.clone(),
                    seq: cp.seq,
                    head: m.seq,
                }));
            }
        }
        Ok(())
    }

    /// Checks that `cp` names a known key and that its signature verifies.
    fn check_signed(&self, cp: &Checkpoint) -> Result<(), AuditError> {
        let Some(key) = self.keys.get(&cp.key_id) else {
            return Err(AuditError::UnknownKey {
                market: cp.market.clone(),
                seq: cp.seq,
                key_id: cp.key_id.clone(),
            });
        };
        verify_checkpoint(cp, key)
    }

    /// Ends the stream: any checkpoint still waiting for its record means the chain was
    /// truncated after it. Otherwise returns what was verified.
    pub fn finish(self) -> Result<Summary, AuditError> {
        let mut markets = Vec::with_capacity(self.markets.len());
        for (name, m) in self.markets {
            if let Some((&seq, waiting)) = m.pending.first_key_value() {
                let last = if m.records == 0 { 0 } else { m.seq };
                let finding = AuditError::CheckpointBeyondEnd { market: name, seq, last };
                // A checkpoint from the database names the truncation first; an outside head
                // only when the database's own checkpoints were removed with the records.
                return Err(match waiting.iter().find(|w| w.origin.is_none()) {
                    Some(w) => w.finding(finding),
                    None => waiting[0].finding(finding),
                });
            }
            markets.push(MarketSummary {
                first_seq: m.first_seq,
                last_seq: if m.records == 0 { 0 } else { m.seq },
                records: m.records,
                last_hash: if m.records == 0 { GENESIS } else { m.hash },
                checkpoints: m.checkpoints,
                last_checkpoint_seq: m.last_checkpoint_seq,
                unsigned_tail: if m.records == 0 { 0 } else { m.seq - m.last_checkpoint_seq.unwrap_or(0) },
                market: name,
            });
        }
        Ok(Summary { markets })
    }
}

/// The state of market `name`, created on first sight. The lookup comes first so that the
/// market's name is copied once per market rather than once per record.
fn market<'a>(markets: &'a mut BTreeMap<String, Market>, name: &str) -> &'a mut Market {
    if !markets.contains_key(name) {
        markets.insert(name.to_owned(), Market::new());
    }
    markets.get_mut(name).expect("inserted above")
}

/// Starts market `name`'s chain after a pruned prefix: if checkpoints of record `r.seq - 1` are
/// waiting, `r`'s `prev_hash` must be what they sign, and the chain continues from there. Without
/// such a checkpoint nothing changes, and the caller reports the gap.
fn anchor(m: &mut Market, name: &str, r: &Sealed) -> Result<(), AuditError> {
    let below = r.seq - 1;
    let Some(waiting) = m.pending.get(&below) else {
        return Ok(());
    };
    if let Some(w) = waiting.iter().find(|w| w.hash != r.prev_hash) {
        return Err(w.finding(AuditError::CheckpointHashMismatch {
            market: name.to_owned(),
            seq: below,
            key_id: w.key_id.clone(),
        }));
    }
    let n = waiting.len();
    // Checkpoints below the anchor sign records that were pruned; nothing is left to check them
    // against.
    m.pending = m.pending.split_off(&r.seq);
    m.seq = below;
    m.hash = r.prev_hash;
    m.matched(below, n);
    Ok(())
}
