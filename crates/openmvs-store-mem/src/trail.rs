//! The audit trail: records sealed into one hash chain per market and checkpoints signed over the
//! chain heads by count and by time, with the same `openmvs_audit::Chains` and
//! [`CheckpointOptions`] policy as the other engines' writers.

use std::ops::Bound;

use ed25519_dalek::SigningKey;
use openmvs_audit::{Chains, Checkpoint, Entry, Sealed};
use openmvs_store::{CheckpointOptions, StoreError, StoreResult};

use crate::table::{Counter, Journal, Table};

/// Every sealed record, by its global position (commit order), every checkpoint, and each
/// market's chain head.
#[derive(Debug, Default)]
pub(crate) struct Trail {
    records: Table<u64, Sealed>,
    by_subject: Table<(String, u64), ()>,
    checkpoints: Table<(String, u64), Checkpoint>,
    last_pos: Counter,
    chains: Chains,
    /// The chain heads as the last committed write left them, while a write moves them.
    kept: Option<Chains>,
}

impl Journal for Trail {
    fn keep(&mut self) {
        self.records.keep();
        self.by_subject.keep();
        self.checkpoints.keep();
        self.last_pos.keep();
        self.kept = None;
    }

    fn undo(&mut self) {
        self.records.undo();
        self.by_subject.undo();
        self.checkpoints.undo();
        self.last_pos.undo();
        if let Some(chains) = self.kept.take() {
            self.chains = chains;
        }
    }
}

impl Trail {
    fn moving_chains(&mut self) -> &mut Chains {
        self.kept.get_or_insert_with(|| self.chains.clone());
        &mut self.chains
    }

    /// Seals `entry` as the next record of its market's chain; returns its sequence number.
    pub(crate) fn append(&mut self, entry: &Entry) -> StoreResult<u64> {
        let sealed = self.moving_chains().seal(entry).map_err(|e| StoreError::Corrupt(e.to_string()))?;
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
        let due = self.chains.due(&options.policy(), now, all);
        if due.is_empty() {
            return Vec::new();
        }
        let signed = self.moving_chains().sign(&due, now, key);
        for cp in &signed {
            self.checkpoints.put((cp.market.clone(), cp.seq), cp.clone());
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
