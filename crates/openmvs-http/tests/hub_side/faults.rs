//! A store wrapper with named failure points: it passes every call to the store it wraps, except
//! that reads of products, batches and packs, reads of the token-signing keys, or commits, can be
//! made to fail as unavailable.
//! Shared by the `hub_side` and `national_api` suites.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use openmvs_audit::{Checkpoint, Sealed};
use openmvs_core::ids::{AlertId, Batch, BulkId, ClientId, ClientTrxId, ProductCode, Serial};
use openmvs_core::time::Timestamp;
use openmvs_store::*;

/// A store with failure points.
pub struct Faulty {
    inner: Arc<dyn Store>,
    /// While set, `product`, `batch` and `pack` fail as unavailable.
    pub fail_reads: AtomicBool,
    /// The next this-many commits fail as unavailable (nothing written); `u32::MAX` is as good
    /// as every commit until it is set back to 0.
    pub fail_commits: AtomicU32,
    /// While set, `keys` (the token-signing keys) fails as unavailable: the key table cannot be
    /// read, whatever the rest of the store does.
    pub fail_keys: AtomicBool,
    /// While set, the failing commits are answered as not confirmed in time (their outcome
    /// unknown), as a database without a writable primary leaves them.
    pub unconfirmed: AtomicBool,
}

impl Faulty {
    /// Wraps a store, with no failure armed.
    pub fn new(inner: Arc<dyn Store>) -> Faulty {
        Faulty {
            inner,
            fail_reads: AtomicBool::new(false),
            fail_commits: AtomicU32::new(0),
            fail_keys: AtomicBool::new(false),
            unconfirmed: AtomicBool::new(false),
        }
    }

    fn read_fault(&self) -> StoreResult<()> {
        if self.fail_reads.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("injected read failure".into()));
        }
        Ok(())
    }
}

impl Committer for Faulty {
    fn commit(&self, uow: UnitOfWork) -> BoxFuture<'_, StoreResult<Committed>> {
        let armed =
            self.fail_commits.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if armed {
            if self.unconfirmed.load(Ordering::SeqCst) {
                return Box::pin(async { Err(StoreError::unconfirmed(std::time::Duration::from_secs(10))) });
            }
            return Box::pin(async { Err(StoreError::Unavailable("injected commit failure".into())) });
        }
        self.inner.commit(uow)
    }
}

impl ContextStore for Faulty {
    fn pack_context(
        &self,
        idempotency_key: Option<(&ClientId, &ClientTrxId)>,
        product_code: &ProductCode,
        serial: &Serial,
        batch: &Batch,
    ) -> BoxFuture<'_, StoreResult<PackContext>> {
        if let Err(e) = self.read_fault() {
            return Box::pin(async move { Err(e) });
        }
        self.inner.pack_context(idempotency_key, product_code, serial, batch)
    }
}

impl PackStore for Faulty {
    fn pack(
        &self,
        product_code: &ProductCode,
        serial: &Serial,
    ) -> BoxFuture<'_, StoreResult<Option<StoredPack>>> {
        if let Err(e) = self.read_fault() {
            return Box::pin(async move { Err(e) });
        }
        self.inner.pack(product_code, serial)
    }
    fn pack_count(&self) -> BoxFuture<'_, StoreResult<u64>> {
        self.inner.pack_count()
    }
}

impl ProductStore for Faulty {
    fn product(&self, product_code: &ProductCode) -> BoxFuture<'_, StoreResult<Option<ProductRecord>>> {
        if let Err(e) = self.read_fault() {
            return Box::pin(async move { Err(e) });
        }
        self.inner.product(product_code)
    }
}

impl BatchStore for Faulty {
    fn batch(
        &self,
        product_code: &ProductCode,
        batch: &Batch,
    ) -> BoxFuture<'_, StoreResult<Option<BatchRecord>>> {
        if let Err(e) = self.read_fault() {
            return Box::pin(async move { Err(e) });
        }
        self.inner.batch(product_code, batch)
    }
}

impl AlertStore for Faulty {
    fn alert(&self, id: &AlertId) -> BoxFuture<'_, StoreResult<Option<AlertRecord>>> {
        self.inner.alert(id)
    }
    fn alerts(&self, filter: &AlertFilter) -> BoxFuture<'_, StoreResult<Vec<AlertRecord>>> {
        self.inner.alerts(filter)
    }
    fn open_alert_counts(&self) -> BoxFuture<'_, StoreResult<Vec<(openmvs_core::alert::AlertStatus, u64)>>> {
        self.inner.open_alert_counts()
    }
}

impl AuditStore for Faulty {
    fn audit_by_subject(&self, subject: &str) -> BoxFuture<'_, StoreResult<Vec<Sealed>>> {
        self.inner.audit_by_subject(subject)
    }
    fn audit_page(&self, after: u64, limit: usize) -> BoxFuture<'_, StoreResult<Vec<(u64, Sealed)>>> {
        self.inner.audit_page(after, limit)
    }
    fn checkpoints(&self) -> BoxFuture<'_, StoreResult<Vec<Checkpoint>>> {
        self.inner.checkpoints()
    }
}

impl OutboxStore for Faulty {
    fn due(&self, now: Timestamp, limit: usize) -> BoxFuture<'_, StoreResult<Vec<StoredOutboxMessage>>> {
        self.inner.due(now, limit)
    }
    fn claim_due(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredOutboxMessage>>> {
        self.inner.claim_due(now, lease_until, limit)
    }
    fn claim_runs(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredOutboxMessage>>> {
        self.inner.claim_runs(now, lease_until, limit)
    }
    fn delivered(&self, seq: u64) -> BoxFuture<'_, StoreResult<()>> {
        self.inner.delivered(seq)
    }
}

impl OutboxQueue for Faulty {
    fn failed(
        &self,
        seq: u64,
        error: &str,
        next_attempt_at: Timestamp,
        dead: bool,
    ) -> BoxFuture<'_, StoreResult<()>> {
        self.inner.failed(seq, error, next_attempt_at, dead)
    }
    fn dead_letters(&self) -> BoxFuture<'_, StoreResult<Vec<StoredOutboxMessage>>> {
        self.inner.dead_letters()
    }
    fn replay(&self, seq: u64, now: Timestamp) -> BoxFuture<'_, StoreResult<bool>> {
        self.inner.replay(seq, now)
    }
    fn resume(&self, now: Timestamp) -> BoxFuture<'_, StoreResult<u64>> {
        self.inner.resume(now)
    }
    fn pending(&self) -> BoxFuture<'_, StoreResult<u64>> {
        self.inner.pending()
    }
    fn queue_counts(&self) -> BoxFuture<'_, StoreResult<Vec<QueueCounts>>> {
        self.inner.queue_counts()
    }
}

impl IdempotencyStore for Faulty {
    fn idempotency(
        &self,
        client_id: &ClientId,
        client_trx_id: &ClientTrxId,
    ) -> BoxFuture<'_, StoreResult<Option<IdempotencyRecord>>> {
        self.inner.idempotency(client_id, client_trx_id)
    }
}

impl BulkStore for Faulty {
    fn bulk(&self, id: &BulkId) -> BoxFuture<'_, StoreResult<Option<BulkJob>>> {
        self.inner.bulk(id)
    }
    fn bulk_results(&self, id: &BulkId) -> BoxFuture<'_, StoreResult<Vec<String>>> {
        self.inner.bulk_results(id)
    }
    fn unfinished_bulks(&self, limit: usize) -> BoxFuture<'_, StoreResult<Vec<BulkJob>>> {
        self.inner.unfinished_bulks(limit)
    }
    fn claim_bulk(
        &self,
        id: &BulkId,
        worker: &NodeId,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        self.inner.claim_bulk(id, worker, now, lease_until)
    }
    fn release_bulk(&self, id: &BulkId, worker: &NodeId) -> BoxFuture<'_, StoreResult<()>> {
        self.inner.release_bulk(id, worker)
    }
}

impl ClientStore for Faulty {
    fn client(&self, client_id: &ClientId) -> BoxFuture<'_, StoreResult<Option<ClientRecord>>> {
        self.inner.client(client_id)
    }
    fn clients(&self) -> BoxFuture<'_, StoreResult<Vec<ClientRecord>>> {
        self.inner.clients()
    }
    fn disabled_clients(&self) -> BoxFuture<'_, StoreResult<Vec<ClientId>>> {
        self.inner.disabled_clients()
    }
    fn keys(&self) -> BoxFuture<'_, StoreResult<Vec<KeyRecord>>> {
        if self.fail_keys.load(Ordering::SeqCst) {
            return Box::pin(async {
                Err(StoreError::Unavailable("injected failure of the key table".into()))
            });
        }
        self.inner.keys()
    }
}

impl SlaStore for Faulty {
    fn put_sla(&self, rows: Vec<SlaNodeDay>) -> BoxFuture<'_, StoreResult<()>> {
        self.inner.put_sla(rows)
    }
    fn sla_days(&self, from_day: i64, to_day: i64) -> BoxFuture<'_, StoreResult<Vec<SlaNodeDay>>> {
        self.inner.sla_days(from_day, to_day)
    }
}

impl IncidentStore for Faulty {
    fn open_incident(&self, new: NewIncident) -> BoxFuture<'_, StoreResult<(IncidentRecord, bool)>> {
        self.inner.open_incident(new)
    }
    fn note_incident(
        &self,
        id: u64,
        note: IncidentNote,
        impact: Option<Impact>,
    ) -> BoxFuture<'_, StoreResult<Option<IncidentRecord>>> {
        self.inner.note_incident(id, note, impact)
    }
    fn incident(&self, id: u64) -> BoxFuture<'_, StoreResult<Option<IncidentRecord>>> {
        self.inner.incident(id)
    }
    fn incidents(&self, filter: IncidentFilter) -> BoxFuture<'_, StoreResult<Vec<IncidentRecord>>> {
        self.inner.incidents(filter)
    }
}
