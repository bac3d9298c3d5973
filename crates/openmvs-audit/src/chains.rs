//! Every market's chain as a writer keeps it between two commits: its head and its last signed
//! checkpoint, with the sealing of new entries and the signing of due tails. Pure: the writer reads
//! the clock and passes the time in, and stores what this returns.
//!
//! A writer seals on a copy ([`Chains::clone`]) inside its transaction and keeps the copy only
//! once the transaction has committed, so a head never advances past a record that was not
//! written.

use std::collections::BTreeMap;
use std::time::Duration;

use ed25519_dalek::SigningKey;

use crate::{AuditError, ChainHead, Checkpoint, Entry, Sealed, sign_checkpoint};

/// When a market's unsigned tail is due for a checkpoint: after `every_records` records, or once
/// its last checkpoint (or first record) is `every_millis` old, whichever comes first. It reads no
/// clock: counts and times are passed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointPolicy {
    /// Sign after this many records since the last checkpoint.
    pub every_records: u64,
    /// Sign when the last checkpoint is this many milliseconds old and records wait unsigned.
    pub every_millis: i64,
}

impl CheckpointPolicy {
    /// Whether a tail of `unsigned` records, last signed (or begun) at `signed_at`, is due at `now`.
    pub fn due(&self, unsigned: u64, signed_at: i64, now: i64) -> bool {
        unsigned > 0 && (unsigned >= self.every_records || now.saturating_sub(signed_at) >= self.every_millis)
    }

    /// How long from `now` until such a tail is due by time: zero if it is already, `None` if it
    /// has no unsigned record. Never longer than the interval itself.
    pub fn due_in(&self, unsigned: u64, signed_at: i64, now: i64) -> Option<Duration> {
        if unsigned == 0 {
            return None;
        }
        let ms = signed_at
            .saturating_add(self.every_millis)
            .saturating_sub(now)
            .clamp(0, self.every_millis.max(0));
        Some(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
    }
}

/// A market's chain as its writer knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tail {
    /// The last record.
    pub head: ChainHead,
    /// The sequence number the last checkpoint signed (0 if none).
    pub signed_seq: u64,
    /// When the last checkpoint was signed, or the chain's first record made if none was.
    pub signed_at: i64,
}

impl Tail {
    /// How many records follow the last checkpoint.
    pub fn unsigned(&self) -> u64 {
        self.head.seq.saturating_sub(self.signed_seq)
    }
}

/// Every market's [`Tail`], by market.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chains(BTreeMap<String, Tail>);

impl Chains {
    /// Each market's tail, in market order.
    pub fn tails(&self) -> impl Iterator<Item = &Tail> {
        self.0.values()
    }

    /// The tail of `market`, if it has a record.
    pub fn get(&self, market: &str) -> Option<&Tail> {
        self.0.get(market)
    }

    /// Replaces what is known of `markets` with `tails` as read back from storage: a market of
    /// `markets` without a tail there has no record yet.
    pub fn reload<'a>(&mut self, markets: impl IntoIterator<Item = &'a str>, tails: Vec<Tail>) {
        for m in markets {
            self.0.remove(m);
        }
        for t in tails {
            self.0.insert(t.head.market.clone(), t);
        }
    }

    /// Seals `entry` as the next record of its market's chain.
    pub fn seal(&mut self, entry: &Entry) -> Result<Sealed, AuditError> {
        let tail = self.0.entry(entry.market.clone()).or_insert_with(|| Tail {
            head: ChainHead::genesis(&entry.market),
            signed_seq: 0,
            signed_at: entry.at_millis,
        });
        tail.head.seal(entry.clone())
    }

    /// The markets whose unsigned tail is due at `now` under `policy` (every unsigned one when
    /// `all`).
    pub fn due(&self, policy: &CheckpointPolicy, now: i64, all: bool) -> Vec<String> {
        self.0
            .values()
            .filter(|t| t.unsigned() > 0 && (all || policy.due(t.unsigned(), t.signed_at, now)))
            .map(|t| t.head.market.clone())
            .collect()
    }

    /// Signs a checkpoint at `now` for each market of `markets` that has unsigned records, and
    /// records it as the market's last.
    pub fn sign(&mut self, markets: &[String], now: i64, key: &SigningKey) -> Vec<Checkpoint> {
        let mut signed = Vec::new();
        for m in markets {
            if let Some(t) = self.0.get_mut(m)
                && t.unsigned() > 0
            {
                let cp = sign_checkpoint(&t.head, now, key);
                t.signed_seq = cp.seq;
                t.signed_at = now;
                signed.push(cp);
            }
        }
        signed
    }

    /// How long from `now` until the first unsigned tail is due by time; `None` while every tail
    /// is signed.
    pub fn next_due(&self, policy: &CheckpointPolicy, now: i64) -> Option<Duration> {
        self.0.values().filter_map(|t| policy.due_in(t.unsigned(), t.signed_at, now)).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVERY: CheckpointPolicy = CheckpointPolicy { every_records: 3, every_millis: 1000 };

    fn entry(market: &str, at: i64) -> Entry {
        Entry { market: market.into(), at_millis: at, ..Entry::default() }
    }

    #[test]
    fn a_tail_is_due_by_count_or_by_age_and_never_when_empty() {
        assert!(!EVERY.due(0, 0, 10_000), "nothing unsigned");
        assert!(!EVERY.due(2, 0, 999));
        assert!(EVERY.due(3, 0, 0), "by count");
        assert!(EVERY.due(1, 0, 1000), "by age");
        assert!(!EVERY.due(1, 5000, 1000), "a clock stepped back is not an age");
    }

    #[test]
    fn the_wait_until_due_is_at_most_one_interval() {
        assert_eq!(EVERY.due_in(0, 0, 0), None);
        assert_eq!(EVERY.due_in(1, 0, 400), Some(Duration::from_millis(600)));
        assert_eq!(EVERY.due_in(1, 0, 5000), Some(Duration::ZERO));
        assert_eq!(EVERY.due_in(1, 9000, 0), Some(Duration::from_millis(1000)));
    }

    #[test]
    fn sealing_and_signing_move_only_the_copy() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let kept = Chains::default();
        let mut work = kept.clone();
        for at in 0..3 {
            work.seal(&entry("DE", at)).unwrap();
        }
        work.seal(&entry("FR", 0)).unwrap();
        assert_eq!(kept, Chains::default(), "the kept chains do not move");
        assert_eq!(work.due(&EVERY, 10, false), ["DE"]);
        assert_eq!(work.due(&EVERY, 1000, false), ["DE", "FR"]);
        let signed = work.sign(&["DE".into()], 10, &key);
        assert_eq!((signed.len(), signed[0].seq), (1, 3));
        assert_eq!(work.get("DE").unwrap().unsigned(), 0);
        assert_eq!(work.next_due(&EVERY, 10), Some(Duration::from_millis(990)), "FR, begun at 0");
        work.reload(["FR"], Vec::new());
        assert!(work.get("FR").is_none());
        assert_eq!(work.next_due(&EVERY, 10), None);
    }
}
