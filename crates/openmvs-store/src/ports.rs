//! The storage traits. Each is small and object-safe; an engine implements all of them and the
//! service holds it as `Arc<dyn Store>`.
//!
//! Every method, reads included, answers with a future: no call blocks the caller's thread. An
//! engine copies what it needs of the arguments before it returns, so the future borrows only the
//! store.

use std::future::Future;
use std::pin::Pin;

use openmvs_audit::{Checkpoint, Sealed};
use openmvs_core::alert::AlertStatus;
use openmvs_core::ids::{AlertId, Batch, BulkId, ClientId, ClientTrxId, ProductCode, Serial};
use openmvs_core::time::Timestamp;

use crate::model::*;

/// Why a storage call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The unit of work lost a race: a pack's version moved on, or a key it creates exists.
    /// Nothing of it was written; the caller reads again and decides again.
    #[error("conflict: {0}")]
    Conflict(Conflict),
    /// The store cannot answer now (IO error, disk full, shutting down). Nothing was written.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Stored data does not decode: a bug or tampering. Nothing was written.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// How the answer to a commit the database did not confirm in time begins.
const UNCONFIRMED: &str = "the database did not confirm the commit within";

impl StoreError {
    /// A commit the database did not confirm within `bound` (no writable primary, no synchronous
    /// standby): its outcome is unknown until it does. Unavailable, so answered 503.
    pub fn unconfirmed(bound: std::time::Duration) -> StoreError {
        StoreError::Unavailable(format!(
            "{UNCONFIRMED} {} ms (no writable primary?); its outcome is unknown until it does: send the \
             request again with the same client_trx_id",
            bound.as_millis()
        ))
    }

    /// Whether this is [`StoreError::unconfirmed`]: the caller has waited its whole bound
    /// already, so the store counts as not committing without a probe write to wait for too.
    pub fn is_unconfirmed(&self) -> bool {
        matches!(self, StoreError::Unavailable(m) if m.starts_with(UNCONFIRMED))
    }
}

/// Which part of a unit of work conflicted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conflict {
    /// A pack's version is not the expected one.
    PackVersion {
        /// Product code.
        product_code: ProductCode,
        /// Serial.
        serial: Serial,
    },
    /// The idempotency key exists: the same request was committed meanwhile.
    IdempotencyKey,
    /// The inbound message was applied before.
    InboxMessage,
    /// The alert's status moved on.
    AlertStatus,
    /// The bulk job moved on.
    BulkProgress,
    /// A record that must be new exists already.
    Exists(String),
    /// A record the unit changes does not exist (or is not in the state the change needs).
    Missing(String),
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Conflict::PackVersion { product_code, serial } => {
                write!(f, "pack {product_code}/{serial} changed meanwhile")
            }
            Conflict::IdempotencyKey => f.write_str("client_trx_id committed meanwhile"),
            Conflict::InboxMessage => f.write_str("message applied before"),
            Conflict::AlertStatus => f.write_str("alert status changed meanwhile"),
            Conflict::BulkProgress => f.write_str("bulk job changed meanwhile"),
            Conflict::Exists(what) => write!(f, "{what} exists already"),
            Conflict::Missing(what) => write!(f, "{what} does not exist"),
        }
    }
}

/// Shorthand for storage results.
pub type StoreResult<T> = Result<T, StoreError>;

/// A boxed future, so that the ports stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The one way to change state: commit a unit of work.
pub trait Committer: Send + Sync {
    /// Commits `uow` atomically. Resolves only when the commit is durable (or has failed and
    /// nothing of it was written). Concurrent commits may share one transaction and one fsync.
    fn commit(&self, uow: UnitOfWork) -> BoxFuture<'_, StoreResult<Committed>>;
}

/// Packs.
pub trait PackStore: Send + Sync {
    /// The pack with this serial, with its version.
    fn pack(
        &self,
        product_code: &ProductCode,
        serial: &Serial,
    ) -> BoxFuture<'_, StoreResult<Option<StoredPack>>>;
    /// How many packs there are (for status and tests).
    fn pack_count(&self) -> BoxFuture<'_, StoreResult<u64>>;
}

/// The reads of one single-pack request, in one snapshot and one round trip: the hot path of
/// every verification and state change.
pub trait ContextStore: Send + Sync {
    /// The stored answer of `(client_id, client_trx_id)` when given, the product, the pack with
    /// its batch, and whether `batch` exists for the product. A pack whose batch is missing is
    /// corrupt data.
    fn pack_context(
        &self,
        idempotency_key: Option<(&ClientId, &ClientTrxId)>,
        product_code: &ProductCode,
        serial: &Serial,
        batch: &Batch,
    ) -> BoxFuture<'_, StoreResult<PackContext>>;
}

/// Products.
pub trait ProductStore: Send + Sync {
    /// The product's master data in this market.
    fn product(&self, product_code: &ProductCode) -> BoxFuture<'_, StoreResult<Option<ProductRecord>>>;
}

/// Batches.
pub trait BatchStore: Send + Sync {
    /// The batch of a product.
    fn batch(
        &self,
        product_code: &ProductCode,
        batch: &Batch,
    ) -> BoxFuture<'_, StoreResult<Option<BatchRecord>>>;
}

/// Alerts.
pub trait AlertStore: Send + Sync {
    /// One alert.
    fn alert(&self, id: &AlertId) -> BoxFuture<'_, StoreResult<Option<AlertRecord>>>;
    /// Alerts matching the filter, in id order.
    fn alerts(&self, filter: &AlertFilter) -> BoxFuture<'_, StoreResult<Vec<AlertRecord>>>;
    /// How many alerts are not closed, per status ([`crate::decode::OPEN_ALERT_STATUSES`], each
    /// listed, 0 when none), for `/metrics`: a count over the status index that stays cheap
    /// however many closed alerts accumulate.
    fn open_alert_counts(&self) -> BoxFuture<'_, StoreResult<Vec<(AlertStatus, u64)>>>;
}

/// The audit trail.
pub trait AuditStore: Send + Sync {
    /// The records about one subject (e.g. `GTIN/<product code>/<serial>`), in sequence order.
    fn audit_by_subject(&self, subject: &str) -> BoxFuture<'_, StoreResult<Vec<Sealed>>>;
    /// Up to `limit` records of every market with a global position after `after`, in commit
    /// order, with the position of each; for verifying the whole trail page by page.
    fn audit_page(&self, after: u64, limit: usize) -> BoxFuture<'_, StoreResult<Vec<(u64, Sealed)>>>;
    /// Every signed checkpoint, in order.
    fn checkpoints(&self) -> BoxFuture<'_, StoreResult<Vec<Checkpoint>>>;
    /// Up to `q.limit` records meeting the query, in commit order, with the position of each.
    /// This default reads [`AuditStore::audit_page`] and filters; the SQL engines ask their
    /// database, using its index on the subject when the query names subjects or a prefix.
    fn audit_search(&self, q: &crate::AuditQuery) -> BoxFuture<'_, StoreResult<Vec<(u64, Sealed)>>> {
        let q = q.clone();
        Box::pin(async move {
            let mut out = Vec::new();
            let mut after = q.after_pos;
            loop {
                let page = self.audit_page(after, 1000).await?;
                let done = page.len() < 1000;
                for (pos, r) in page {
                    if q.until_pos.is_some_and(|u| pos > u) {
                        return Ok(out);
                    }
                    after = pos;
                    if q.matches(&r) {
                        out.push((pos, r));
                        if out.len() == q.limit {
                            return Ok(out);
                        }
                    }
                }
                if done {
                    return Ok(out);
                }
            }
        })
    }
    /// The position of the newest record (0 with none).
    fn audit_last_pos(&self) -> BoxFuture<'_, StoreResult<u64>> {
        Box::pin(async move {
            let mut after = 0;
            loop {
                let page = self.audit_page(after, 10_000).await?;
                match page.last() {
                    Some((pos, _)) if page.len() == 10_000 => after = *pos,
                    Some((pos, _)) => return Ok(*pos),
                    None => return Ok(after),
                }
            }
        })
    }
}

/// The bookkeeping every outbox shares, a national system's ([`OutboxStore`]) and the hub's
/// ([`crate::hub::HubOutboxStore`]): failed attempts, dead letters and the backlog. An engine
/// writes it once for both its stores (see [`EngineOutbox`]).
pub trait OutboxQueue: Send + Sync {
    /// Records a failed attempt: retry at `next_attempt_at`, or move to the dead-letter list.
    fn failed(
        &self,
        seq: u64,
        error: &str,
        next_attempt_at: Timestamp,
        dead: bool,
    ) -> BoxFuture<'_, StoreResult<()>>;
    /// The dead-letter list, every destination.
    fn dead_letters(&self) -> BoxFuture<'_, StoreResult<Vec<StoredOutboxMessage>>>;
    /// Puts a dead letter back in its queue, due now; false when there is no such dead letter.
    fn replay(&self, seq: u64, now: Timestamp) -> BoxFuture<'_, StoreResult<bool>>;
    /// Makes every live message of every destination whose next attempt is later than `now`
    /// due at `now`, keeping its attempts; answers how many. A lease is stored as the next
    /// attempt, like a retry's backoff, and names no holder: a relay calls this when it starts,
    /// so that the claims a process left when it died, and the waits of destinations that were
    /// down, end at once instead of after a lease or a backoff (a live relay's claim taken over
    /// this way is sent twice at most, and a receiver answers the second `DUPLICATE`).
    fn resume(&self, now: Timestamp) -> BoxFuture<'_, StoreResult<u64>>;
    /// How many live (not dead) messages wait, every destination.
    fn pending(&self) -> BoxFuture<'_, StoreResult<u64>>;
    /// Per destination with any message, in destination order: the backlog, the messages whose
    /// last attempt failed and the dead letters, for `/metrics`.
    fn queue_counts(&self) -> BoxFuture<'_, StoreResult<Vec<QueueCounts>>>;
}

/// A store whose [`OutboxQueue`] is its engine's outbox table, the one the engine's national and
/// hub stores both run on: the store is an [`OutboxQueue`] through it.
pub trait EngineOutbox: Send + Sync {
    /// The engine's outbox table under this store.
    fn engine_outbox(&self) -> &dyn OutboxQueue;
}

impl<T: EngineOutbox> OutboxQueue for T {
    fn failed(
        &self,
        seq: u64,
        error: &str,
        next_attempt_at: Timestamp,
        dead: bool,
    ) -> BoxFuture<'_, StoreResult<()>> {
        self.engine_outbox().failed(seq, error, next_attempt_at, dead)
    }

    fn dead_letters(&self) -> BoxFuture<'_, StoreResult<Vec<StoredOutboxMessage>>> {
        self.engine_outbox().dead_letters()
    }

    fn replay(&self, seq: u64, now: Timestamp) -> BoxFuture<'_, StoreResult<bool>> {
        self.engine_outbox().replay(seq, now)
    }

    fn resume(&self, now: Timestamp) -> BoxFuture<'_, StoreResult<u64>> {
        self.engine_outbox().resume(now)
    }

    fn pending(&self) -> BoxFuture<'_, StoreResult<u64>> {
        self.engine_outbox().pending()
    }

    fn queue_counts(&self) -> BoxFuture<'_, StoreResult<Vec<QueueCounts>>> {
        self.engine_outbox().queue_counts()
    }
}

/// A national system's outbox, drained by a relay: one queue, to the hub.
pub trait OutboxStore: OutboxQueue {
    /// Up to `limit` live messages due at `now`, oldest first, at most one per ordering key
    /// (the oldest undelivered one), so that messages about one product stay in order.
    fn due(&self, now: Timestamp, limit: usize) -> BoxFuture<'_, StoreResult<Vec<StoredOutboxMessage>>>;
    /// Takes what [`OutboxStore::due`] would give, for this relay alone: the messages taken are not
    /// due again until `lease_until` (unless marked failed), so relays on several nodes never send
    /// one message at once, and a message whose relay died is sent again once its lease is over.
    fn claim_due(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredOutboxMessage>>>;
    /// Takes for this relay alone, as [`OutboxStore::claim_due`] does, up to `limit` due
    /// messages as runs: first the oldest live message of every ordering key whose oldest is due,
    /// then, oldest first, the messages that follow them in their key, each key's up to its first
    /// message that is not due. Sent in order in one batch, and applied in order by the hub, they
    /// keep each key's order; a key with an older message that is not due (waiting for its retry,
    /// or taken by another relay) gives none.
    fn claim_runs(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredOutboxMessage>>>;
    /// Removes a delivered message.
    fn delivered(&self, seq: u64) -> BoxFuture<'_, StoreResult<()>>;
}

/// Stored answers by client transaction id.
pub trait IdempotencyStore: Send + Sync {
    /// The stored answer for this client's transaction id.
    fn idempotency(
        &self,
        client_id: &ClientId,
        client_trx_id: &ClientTrxId,
    ) -> BoxFuture<'_, StoreResult<Option<IdempotencyRecord>>>;
}

/// Bulk jobs.
pub trait BulkStore: Send + Sync {
    /// One job.
    fn bulk(&self, id: &BulkId) -> BoxFuture<'_, StoreResult<Option<BulkJob>>>;
    /// The results of a job so far, in request order.
    fn bulk_results(&self, id: &BulkId) -> BoxFuture<'_, StoreResult<Vec<String>>>;
    /// Jobs not yet done, oldest first.
    fn unfinished_bulks(&self, limit: usize) -> BoxFuture<'_, StoreResult<Vec<BulkJob>>>;
    /// Takes or renews the lease on an unfinished job for `worker` until `lease_until`: true when
    /// the job is free, already this worker's, or its lease ended before `now`; false when another
    /// worker holds it or it is done. One worker processes a job at a time, and a job whose worker
    /// died is taken over once its lease ends.
    fn claim_bulk(
        &self,
        id: &BulkId,
        worker: &NodeId,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> BoxFuture<'_, StoreResult<bool>>;
    /// Gives up this worker's lease on a job, so another may take it at once.
    fn release_bulk(&self, id: &BulkId, worker: &NodeId) -> BoxFuture<'_, StoreResult<()>>;
}

/// Clients and token-signing keys, read; they change through units of work
/// ([`UnitOfWork::new_client`], [`UnitOfWork::new_key`], ...).
pub trait ClientStore: Send + Sync {
    /// One client.
    fn client(&self, client_id: &ClientId) -> BoxFuture<'_, StoreResult<Option<ClientRecord>>>;
    /// Every client, in id order.
    fn clients(&self) -> BoxFuture<'_, StoreResult<Vec<ClientRecord>>>;
    /// The ids of the clients that are cut off, in id order: one small indexed read, which every
    /// node repeats every second or so to refuse their tokens.
    fn disabled_clients(&self) -> BoxFuture<'_, StoreResult<Vec<ClientId>>>;
    /// Every token-signing key.
    fn keys(&self) -> BoxFuture<'_, StoreResult<Vec<KeyRecord>>>;
}

/// Everything a national system stores.
pub trait Store:
    Committer
    + ContextStore
    + PackStore
    + ProductStore
    + BatchStore
    + AlertStore
    + AuditStore
    + OutboxStore
    + IdempotencyStore
    + BulkStore
    + ClientStore
    + crate::ConsoleStore
{
}

impl<T> Store for T where
    T: Committer
        + ContextStore
        + PackStore
        + ProductStore
        + BatchStore
        + AlertStore
        + AuditStore
        + OutboxStore
        + IdempotencyStore
        + BulkStore
        + ClientStore
        + crate::ConsoleStore
{
}
