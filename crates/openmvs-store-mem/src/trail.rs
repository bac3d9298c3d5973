//! The audit trail: records sealed into one hash chain per market with `openmvs_audit`, and the
//! checkpoints signed over the chain heads by count and by time ([`CheckpointOptions`]), exactly
//! as the other engines' writers seal and sign.

use std::ops::Bound;

use ed25519_dalek::SigningKey;
use openmvs_audit::{ChainHead, Checkpoint, Entry, Sealed, sign_checkpoint};
use openmvs_store::{CheckpointOptions, StoreError, StoreResult};

use crate::table::{Counter, Table, journal};

/// A market's chain head and its last checkpoint.
#[derive(Debug, Clone)]
struct Chain {
    head: ChainHead,
    signed_seq: u64,
    signed_at: i64,
}

/// Every sealed record, by its global position (commit order), and every checkpoint.
#[derive(Debug, Default)]
pub(crate) struct Trail {
    records: Table<u64, Sealed>,
    by_subject: Table<(String, u64), ()>,
    chains: Table<String, Chain>,
    checkpoints: Table<(String, u64), Checkpoint>,
    last_pos: Counter,
}

journal!(Trail: records, by_subject, chains, checkpoints, last_pos);

impl Trail {
    /// Seals `entry` as the next record of its market's chain; returns its sequence number.
    pub(crate) fn append(&mut self, entry: &Entry) -> StoreResult<u64> {
        let mut chain = self.chains.get(&entry.market).cloned().unwrap_or_else(|| Chain {
            head: ChainHead::genesis(&entry.market),
            signed_seq: 0,
            signed_at: entry.at_millis,
        });
        let sealed = chain.head.seal(entry.clone()).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.chains.put(entry.market.clone(), chain);
        let pos = self.last_pos.next();
        self.by_subject.put((entry.subject.clone(), pos), ());
        let seq = sealed.seq;
        self.records.put(pos, sealed);
        Ok(seq)
    }

    /// Signs a checkpoint at `now` for every market whose unsigned tail is due (any unsigned tail
    /// when `all`); returns them, for the sink once they are committed.
    pub(crate) fn sign(
        &mut self,
        options: &CheckpointOptions,
        key: &SigningKey,
        now: i64,
        all: bool,
    ) -> Vec<Checkpoint> {
        let due: Vec<String> = self
            .chains
            .iter()
            .filter(|(_, c)| {
                let unsigned = c.head.seq - c.signed_seq;
                unsigned > 0 && (all || options.due(unsigned, c.signed_at, now))
            })
            .map(|(m, _)| m.clone())
            .collect();
        let mut signed = Vec::new();
        for market in due {
            let mut cp = None;
            self.chains.update(&market, |c| {
                cp = Some(sign_checkpoint(&c.head, now, key));
                c.signed_seq = c.head.seq;
                c.signed_at = now;
            });
            if let Some(cp) = cp {
                self.checkpoints.put((cp.market.clone(), cp.seq), cp.clone());
                signed.push(cp);
            }
        }
        signed
    }

    pub(crate) fn by_subject(&self, subject: &str) -> Vec<Sealed> {
        let from = (subject.to_owned(), 0);
        self.by_subject
            .range(from..)
            .take_while(|((s, _), _)| s == subject)
            .filter_map(|((_, pos), _)| self.records.get(pos).cloned())
            .collect()
    }

    pub(crate) fn page(&self, after: u64, limit: usize) -> Vec<(u64, Sealed)> {
        self.records
            .range((Bound::Excluded(after), Bound::Unbounded))
            .take(limit)
            .map(|(pos, r)| (*pos, r.clone()))
            .collect()
    }

    pub(crate) fn checkpoints(&self) -> Vec<Checkpoint> {
        self.checkpoints.values().cloned().collect()
    }
}
