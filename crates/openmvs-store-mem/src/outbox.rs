//! The outbox of either system: messages in commit order, handed out one per ordering key (per
//! destination at the hub; or as runs of a key, for a relay that sends them in one batch), oldest
//! first, with leases, retries and dead letters. The engine keeps
//! the bookkeeping both stores share ([`OutboxQueue`]) on its state's outbox.

use std::collections::BTreeSet;

use openmvs_core::ids::UploadId;
use openmvs_core::time::Timestamp;
use openmvs_store::{
    BoxFuture, Conflict, MessageId, OutboxMessage, OutboxQueue, QueueCounts, StoreError, StoreResult,
    StoredOutboxMessage,
};

use crate::table::{Counter, Table, journal};
use crate::{Engine, State};

/// A stored message, and the upload whose serial chunk it is (at the hub).
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) message: StoredOutboxMessage,
    pub(crate) upload: Option<UploadId>,
}

/// The queue.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    rows: Table<u64, Row>,
    /// The seq of each stored message id: an id is unique while its message waits.
    ids: Table<MessageId, u64>,
    last_seq: Counter,
}

journal!(Outbox: rows, ids, last_seq);

impl Outbox {
    /// Stores a message, due at `now`; an id that waits already conflicts.
    pub(crate) fn insert(
        &mut self,
        m: &OutboxMessage,
        upload: Option<&UploadId>,
        now: i64,
    ) -> StoreResult<()> {
        if self.ids.contains(&m.message_id) {
            return Err(StoreError::Conflict(Conflict::Exists(format!("outbox message {}", m.message_id))));
        }
        let seq = self.last_seq.next();
        self.ids.put(m.message_id.clone(), seq);
        let at = Timestamp::from_unix_millis(now);
        let message = StoredOutboxMessage {
            seq,
            message: m.clone(),
            created_at: at,
            attempts: 0,
            next_attempt_at: at,
            last_error: None,
            dead: false,
        };
        self.rows.put(seq, Row { message, upload: upload.cloned() });
        Ok(())
    }

    /// The seqs of up to `limit` live messages (for `destination` if given) due at `now`, each the
    /// oldest live one of its ordering key.
    fn due_seqs(&self, destination: Option<&str>, now: Timestamp, limit: usize) -> Vec<u64> {
        let mut heads = BTreeSet::new();
        let mut out = Vec::new();
        for (seq, row) in self.rows.iter() {
            let m = &row.message;
            if out.len() >= limit {
                break;
            }
            if m.dead || destination.is_some_and(|d| d != m.message.destination) {
                continue;
            }
            // At the hub each destination is its own queue, so its keys are counted apart.
            let first_of_key = heads.insert(m.message.ordering_key.as_str());
            if first_of_key && m.next_attempt_at <= now {
                out.push(*seq);
            }
        }
        out
    }

    pub(crate) fn due(
        &self,
        destination: Option<&str>,
        now: Timestamp,
        limit: usize,
    ) -> Vec<StoredOutboxMessage> {
        let seqs = self.due_seqs(destination, now, limit);
        seqs.iter().filter_map(|s| self.rows.get(s)).map(|r| r.message.clone()).collect()
    }

    /// Takes what [`Outbox::due`] gives until `lease_until`.
    pub(crate) fn claim(
        &mut self,
        destination: Option<&str>,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> Vec<StoredOutboxMessage> {
        let seqs = self.due_seqs(destination, now, limit);
        for s in &seqs {
            self.rows.update(s, |r| r.message.next_attempt_at = lease_until);
        }
        seqs.iter().filter_map(|s| self.rows.get(s)).map(|r| r.message.clone()).collect()
    }

    /// The seqs of up to `limit` live messages of `destination` due at `now`, as runs: first the
    /// head of every key whose head is due ([`Outbox::due_seqs`]), then, oldest first, the
    /// messages that follow a taken head in its key, each key's up to its first one not due.
    fn run_seqs(&self, destination: Option<&str>, now: Timestamp, limit: usize) -> Vec<u64> {
        let heads = self.due_seqs(destination, now, limit);
        let Some(&first) = heads.first() else { return heads };
        let head_set: BTreeSet<u64> = heads.iter().copied().collect();
        // The keys whose run is still open: their head is taken and no message since waits.
        let mut open: BTreeSet<&str> = BTreeSet::new();
        let mut followers = Vec::new();
        for (seq, row) in self.rows.range(first..) {
            if followers.len() + heads.len() >= limit {
                break;
            }
            let m = &row.message;
            if m.dead || destination.is_some_and(|d| d != m.message.destination) {
                continue;
            }
            let key = m.message.ordering_key.as_str();
            if head_set.contains(seq) {
                open.insert(key);
            } else if open.contains(key) {
                if m.next_attempt_at <= now {
                    followers.push(*seq);
                } else {
                    open.remove(key);
                }
            }
        }
        let mut out = heads;
        out.extend(followers);
        out.sort_unstable();
        out
    }

    /// Takes what [`Outbox::run_seqs`] gives until `lease_until`.
    pub(crate) fn claim_runs(
        &mut self,
        destination: Option<&str>,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> Vec<StoredOutboxMessage> {
        let seqs = self.run_seqs(destination, now, limit);
        for s in &seqs {
            self.rows.update(s, |r| r.message.next_attempt_at = lease_until);
        }
        seqs.iter().filter_map(|s| self.rows.get(s)).map(|r| r.message.clone()).collect()
    }

    /// Removes a delivered message; returns it.
    pub(crate) fn delivered(&mut self, seq: u64) -> Option<Row> {
        let row = self.rows.remove(&seq)?;
        self.ids.remove(&row.message.message.message_id);
        Some(row)
    }

    pub(crate) fn failed(&mut self, seq: u64, error: &str, next_attempt_at: Timestamp, dead: bool) {
        self.rows.update(&seq, |r| {
            let m = &mut r.message;
            m.attempts += 1;
            m.last_error = Some(error.to_owned());
            m.next_attempt_at = next_attempt_at;
            m.dead = dead;
        });
    }

    pub(crate) fn dead_letters(&self) -> Vec<StoredOutboxMessage> {
        self.rows.values().filter(|r| r.message.dead).map(|r| r.message.clone()).collect()
    }

    pub(crate) fn replay(&mut self, seq: u64, now: Timestamp) -> bool {
        self.rows.update_if(
            &seq,
            |r| r.message.dead,
            |r| {
                let m = &mut r.message;
                (m.dead, m.attempts, m.next_attempt_at) = (false, 0, now);
            },
        )
    }

    /// Makes the live messages waiting past `now` due at `now` ([`OutboxQueue::resume`]).
    pub(crate) fn resume(&mut self, now: Timestamp) -> u64 {
        let waiting: Vec<u64> = self
            .rows
            .iter()
            .filter(|(_, r)| !r.message.dead && r.message.next_attempt_at > now)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in &waiting {
            self.rows.update(seq, |r| r.message.next_attempt_at = now);
        }
        waiting.len() as u64
    }

    pub(crate) fn pending(&self) -> u64 {
        self.rows.values().filter(|r| !r.message.dead).count() as u64
    }

    /// Per destination with any message, in order: live, failing and dead messages.
    pub(crate) fn counts(&self) -> Vec<QueueCounts> {
        let mut by: std::collections::BTreeMap<&str, QueueCounts> = std::collections::BTreeMap::new();
        for r in self.rows.values() {
            let m = &r.message;
            let d = m.message.destination.as_str();
            let c = by.entry(d).or_insert_with(|| QueueCounts {
                destination: d.to_owned(),
                pending: 0,
                failing: 0,
                dead: 0,
                oldest_at: None,
            });
            if m.dead {
                c.dead += 1;
            } else {
                c.pending += 1;
                c.failing += u64::from(m.attempts > 0);
                c.oldest_at = Some(c.oldest_at.map_or(m.created_at, |t| t.min(m.created_at)));
            }
        }
        by.into_values().collect()
    }

    /// The destinations with live messages, in order.
    pub(crate) fn destinations(&self) -> Vec<String> {
        let set: BTreeSet<&str> = self
            .rows
            .values()
            .filter(|r| !r.message.dead)
            .map(|r| r.message.message.destination.as_str())
            .collect();
        set.into_iter().map(str::to_owned).collect()
    }
}

impl<S: State + 'static> OutboxQueue for Engine<S> {
    fn failed(
        &self,
        seq: u64,
        error: &str,
        next_attempt_at: Timestamp,
        dead: bool,
    ) -> BoxFuture<'_, StoreResult<()>> {
        self.writing(|s, _| {
            s.outbox_mut().failed(seq, error, next_attempt_at, dead);
            Ok(())
        })
    }

    fn dead_letters(&self) -> BoxFuture<'_, StoreResult<Vec<StoredOutboxMessage>>> {
        self.reading(|s| Ok(s.outbox().dead_letters()))
    }

    fn replay(&self, seq: u64, now: Timestamp) -> BoxFuture<'_, StoreResult<bool>> {
        self.writing(|s, _| Ok(s.outbox_mut().replay(seq, now)))
    }

    fn resume(&self, now: Timestamp) -> BoxFuture<'_, StoreResult<u64>> {
        self.writing(move |s, _| Ok(s.outbox_mut().resume(now)))
    }

    fn pending(&self) -> BoxFuture<'_, StoreResult<u64>> {
        self.reading(|s| Ok(s.outbox().pending()))
    }

    fn queue_counts(&self) -> BoxFuture<'_, StoreResult<Vec<QueueCounts>>> {
        self.reading(|s| Ok(s.outbox().counts()))
    }
}
