//! The national system's state and ports: each read is a plain function of the state, and each
//! write a plain function of the state and the time, applied by the engine all or nothing.

use std::sync::Arc;

use openmvs_audit::{Checkpoint, Sealed};
use openmvs_core::ids::{AlertId, Batch, BulkId, ClientId, ClientTrxId, KeyId, ProductCode, Serial};
use openmvs_core::pack::Pack;
use openmvs_core::time::Timestamp;
use openmvs_store::*;

use crate::outbox::Outbox;
use crate::table::{Table, journal};
use crate::trail::Trail;
use crate::{Engine, Options, State, exists};

/// A bulk job with its lease.
#[derive(Debug, Clone)]
struct Bulk {
    job: BulkJob,
    owner: Option<NodeId>,
    lease_until: i64,
}

/// Everything a national system stores; rows are keyed as the SQL engines key them.
#[derive(Debug, Default)]
pub(crate) struct National {
    idempotency: Table<(ClientId, ClientTrxId), IdempotencyRecord>,
    inbox: Table<MessageId, i64>,
    products: Table<String, ProductRecord>,
    batches: Table<(String, String), BatchRecord>,
    packs: Table<(String, String), StoredPack>,
    alerts: Table<AlertId, AlertRecord>,
    /// The alert raised by each source event.
    alert_sources: Table<String, AlertId>,
    outbox: Outbox,
    bulks: Table<BulkId, Bulk>,
    bulk_results: Table<(BulkId, u64), String>,
    clients: Table<ClientId, ClientRecord>,
    keys: Table<KeyId, KeyRecord>,
    heartbeats: Table<NodeId, i64>,
    trail: Trail,
}

journal!(National: idempotency, inbox, products, batches, packs, alerts, alert_sources, outbox, bulks,
    bulk_results, clients, keys, heartbeats, trail);

impl State for National {
    fn trail(&mut self) -> &mut Trail {
        &mut self.trail
    }

    fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    fn outbox_mut(&mut self) -> &mut Outbox {
        &mut self.outbox
    }
}

fn conflict(c: Conflict) -> StoreError {
    StoreError::Conflict(c)
}

fn key2(a: &impl AsRef<str>, b: &impl AsRef<str>) -> (String, String) {
    (a.as_ref().to_owned(), b.as_ref().to_owned())
}

impl National {
    /// Applies one unit of work, in the order the SQL engines apply it; the first conflict
    /// refuses it (and the engine puts back what it had written).
    fn apply(&mut self, uow: &UnitOfWork, now: i64) -> StoreResult<Committed> {
        let mut out = Committed::default();
        if let Some(i) = &uow.idempotency
            && !self.idempotency.insert_new((i.client_id.clone(), i.client_trx_id.clone()), i.clone())
        {
            return Err(conflict(Conflict::IdempotencyKey));
        }
        if let Some(id) = &uow.inbox
            && !self.inbox.insert_new(id.clone(), now)
        {
            return Err(conflict(Conflict::InboxMessage));
        }
        for p in &uow.products {
            self.products.put(p.product_code.as_str().to_owned(), p.clone());
        }
        for b in &uow.batches {
            self.batches.put(key2(&b.product_code.as_str(), &b.batch.as_str()), b.clone());
        }
        for np in &uow.new_packs {
            for serial in &np.serials {
                let pack = StoredPack { pack: Pack::new(np.batch.clone()), version: 1 };
                if self.packs.insert_new(key2(&np.product_code.as_str(), &serial.as_str()), pack) {
                    out.packs_created += 1;
                }
            }
        }
        for w in &uow.packs {
            let k = key2(&w.product_code.as_str(), &w.serial.as_str());
            let applied = match w.expected_version {
                Some(v) => match self.packs.get(&k) {
                    Some(p) if p.version == v => {
                        self.packs.put(k, StoredPack { pack: w.pack.clone(), version: v + 1 });
                        true
                    }
                    _ => false,
                },
                None => self.packs.insert_new(k, StoredPack { pack: w.pack.clone(), version: 1 }),
            };
            if !applied {
                return Err(conflict(Conflict::PackVersion {
                    product_code: w.product_code.clone(),
                    serial: w.serial.clone(),
                }));
            }
        }
        for a in &uow.alerts {
            if self.alert_sources.contains(&a.source_key) {
                out.alerts_skipped.push(a.id.clone());
                continue;
            }
            if !self.alerts.insert_new(a.id.clone(), a.clone()) {
                return Err(exists(format!("alert {}", a.id)));
            }
            self.alert_sources.put(a.source_key.clone(), a.id.clone());
        }
        for u in &uow.alert_updates {
            let applied = self.alerts.update_if(
                &u.id,
                |a| a.version == u.expected_version,
                |a| {
                    a.status = u.status;
                    a.classification = u.classification;
                    a.comment = u.comment.clone().or(a.comment.take());
                    a.thread = u.thread.clone();
                    a.version += 1;
                },
            );
            if !applied {
                return Err(conflict(Conflict::AlertStatus));
            }
        }
        for m in &uow.outbox {
            self.outbox.insert(m, None, now)?;
        }
        if let Some(b) = &uow.new_bulk
            && !self.bulks.insert_new(b.id.clone(), Bulk { job: b.clone(), owner: None, lease_until: 0 })
        {
            return Err(exists(format!("bulk {}", b.id)));
        }
        if let Some(p) = &uow.bulk_progress {
            let Some(bulk) = self.bulks.get(&p.id).filter(|b| b.job.done_rows == p.expected_done_rows) else {
                return Err(conflict(Conflict::BulkProgress));
            };
            let done = p.expected_done_rows + p.results.len() as u64;
            let status = if done >= bulk.job.total_rows { BulkStatus::Done } else { BulkStatus::Running };
            self.bulks.update(&p.id, |b| (b.job.done_rows, b.job.status) = (done, status));
            for (i, r) in p.results.iter().enumerate() {
                self.bulk_results.put((p.id.clone(), p.expected_done_rows + i as u64), r.clone());
            }
        }
        if let Some(cl) = &uow.new_client {
            // As in the SQL engines, a new client has not been seen yet.
            let new = ClientRecord { last_used_at: None, ..cl.clone() };
            if !self.clients.insert_new(cl.client_id.clone(), new) {
                return Err(exists(format!("client {}", cl.client_id)));
            }
        }
        for ch in &uow.client_changes {
            let found = self.clients.update(&ch.client_id, |c| {
                c.disabled = ch.disabled.unwrap_or(c.disabled);
                c.last_used_at = c.last_used_at.max(ch.used_at);
            });
            if !found {
                return Err(conflict(Conflict::Missing(format!("client {}", ch.client_id))));
            }
        }
        if let Some(k) = &uow.new_key {
            self.rotate_key(&k.key, k.at)?;
        }
        if let Some(k) = &uow.key_revocation {
            let revoked = self.keys.update_if(
                &k.kid,
                |key| !key.active,
                |key| key.revoked_at = key.revoked_at.or(Some(k.at)),
            );
            if !revoked {
                return Err(conflict(Conflict::Missing(format!("retired token-signing key {}", k.kid))));
            }
        }
        if let Some(h) = &uow.heartbeat {
            heartbeat(&mut self.heartbeats, h);
        }
        for e in &uow.audit {
            out.audit_seqs.push(self.trail.append(e)?);
        }
        Ok(out)
    }

    fn pack(&self, pc: &ProductCode, serial: &Serial) -> Option<StoredPack> {
        self.packs.get(&key2(&pc.as_str(), &serial.as_str())).cloned()
    }

    fn batch(&self, pc: &ProductCode, batch: &Batch) -> Option<BatchRecord> {
        self.batches.get(&key2(&pc.as_str(), &batch.as_str())).cloned()
    }

    fn idempotency(&self, client_id: &ClientId, trx: &ClientTrxId) -> Option<IdempotencyRecord> {
        self.idempotency.get(&(client_id.clone(), trx.clone())).cloned()
    }

    fn context(
        &self,
        key: Option<(&ClientId, &ClientTrxId)>,
        pc: &ProductCode,
        serial: &Serial,
        batch: &Batch,
    ) -> StoreResult<PackContext> {
        let mut ctx = PackContext::default();
        if let Some((client_id, trx)) = key {
            ctx.idempotency = self.idempotency(client_id, trx);
            if ctx.idempotency.is_some() {
                return Ok(ctx);
            }
        }
        ctx.product = self.products.get(&pc.as_str().to_owned()).cloned();
        if ctx.product.is_none() {
            return Ok(ctx);
        }
        ctx.pack = match self.pack(pc, serial) {
            Some(p) => {
                let b = self.batch(pc, &p.pack.batch).ok_or_else(|| {
                    StoreError::Corrupt(format!("pack {pc}/{serial} has no batch {}", p.pack.batch))
                })?;
                Some((p, b))
            }
            None => None,
        };
        ctx.requested_batch_known = match &ctx.pack {
            Some((_, b)) if &b.batch == batch => true,
            _ => self.batch(pc, batch).is_some(),
        };
        Ok(ctx)
    }

    fn alerts(&self, f: &AlertFilter) -> Vec<AlertRecord> {
        let after = f.after.clone().map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        self.alerts
            .range((after, std::ops::Bound::Unbounded))
            .map(|(_, a)| a)
            .filter(|a| f.status.is_none_or(|s| a.status == s))
            .filter(|a| f.client_id.as_ref().is_none_or(|c| &a.client_id == c))
            .filter(|a| f.product_code.as_ref().is_none_or(|p| &a.product_code == p))
            .take(f.limit)
            .cloned()
            .collect()
    }

    fn claim_bulk(&mut self, id: &BulkId, worker: &NodeId, now: i64, lease_until: i64) -> bool {
        let free = |b: &Bulk| {
            b.job.status != BulkStatus::Done
                && (b.owner.is_none() || b.owner.as_ref() == Some(worker) || b.lease_until < now)
        };
        let lease = |b: &mut Bulk| (b.owner, b.lease_until) = (Some(worker.clone()), lease_until);
        self.bulks.update_if(id, free, lease)
    }

    fn rotate_key(&mut self, key: &KeyRecord, now: Timestamp) -> StoreResult<()> {
        let active: Vec<KeyId> = self.keys.values().filter(|k| k.active).map(|k| k.kid.clone()).collect();
        for kid in active {
            self.keys.update(&kid, |k| (k.active, k.retired_at) = (false, Some(now)));
        }
        let new = KeyRecord { active: true, retired_at: None, revoked_at: None, ..key.clone() };
        if !self.keys.insert_new(key.kid.clone(), new) {
            return Err(exists(format!("key {}", key.kid)));
        }
        Ok(())
    }
}

/// Writes a node's heartbeat; rows of nodes gone for a day are dropped.
pub(crate) fn heartbeat(rows: &mut Table<NodeId, i64>, h: &Heartbeat) {
    let at = h.at.unix_millis();
    rows.put(h.node_id.clone(), at);
    let gone: Vec<NodeId> =
        rows.iter().filter(|(_, t)| **t < at - 86_400_000).map(|(n, _)| n.clone()).collect();
    for n in gone {
        rows.remove(&n);
    }
}

/// The in-memory engine of a national system.
pub struct MemStore {
    engine: Arc<Engine<National>>,
    console: crate::console::Console,
}

crate::console::delegate_console!(MemStore);

impl MemStore {
    /// An empty store.
    pub fn new(opts: Options) -> MemStore {
        MemStore { engine: Engine::new(opts), console: Default::default() }
    }

    /// Signs the checkpoints due by time at the clock's time, as the other engines' timers do
    /// while no commit comes.
    pub fn sign_due(&self) {
        self.engine.sign(false, false);
    }

    /// Signs every unsigned tail and refuses every later write as unavailable; reads go on.
    pub fn close(&self) {
        self.engine.sign(true, true);
    }
}

impl Committer for MemStore {
    fn commit(&self, uow: UnitOfWork) -> BoxFuture<'_, StoreResult<Committed>> {
        self.engine.writing(move |s, now| s.apply(&uow, now))
    }
}

impl ContextStore for MemStore {
    fn pack_context(
        &self,
        idempotency_key: Option<(&ClientId, &ClientTrxId)>,
        product_code: &ProductCode,
        serial: &Serial,
        batch: &Batch,
    ) -> BoxFuture<'_, StoreResult<PackContext>> {
        self.engine.reading(|s| s.context(idempotency_key, product_code, serial, batch))
    }
}

impl PackStore for MemStore {
    fn pack(
        &self,
        product_code: &ProductCode,
        serial: &Serial,
    ) -> BoxFuture<'_, StoreResult<Option<StoredPack>>> {
        self.engine.reading(|s| Ok(s.pack(product_code, serial)))
    }

    fn pack_count(&self) -> BoxFuture<'_, StoreResult<u64>> {
        self.engine.reading(|s| Ok(s.packs.len() as u64))
    }
}

impl ProductStore for MemStore {
    fn product(&self, product_code: &ProductCode) -> BoxFuture<'_, StoreResult<Option<ProductRecord>>> {
        self.engine.reading(|s| Ok(s.products.get(&product_code.as_str().to_owned()).cloned()))
    }
}

impl BatchStore for MemStore {
    fn batch(
        &self,
        product_code: &ProductCode,
        batch: &Batch,
    ) -> BoxFuture<'_, StoreResult<Option<BatchRecord>>> {
        self.engine.reading(|s| Ok(s.batch(product_code, batch)))
    }
}

impl AlertStore for MemStore {
    fn alert(&self, id: &AlertId) -> BoxFuture<'_, StoreResult<Option<AlertRecord>>> {
        self.engine.reading(|s| Ok(s.alerts.get(id).cloned()))
    }

    fn alerts(&self, filter: &AlertFilter) -> BoxFuture<'_, StoreResult<Vec<AlertRecord>>> {
        self.engine.reading(|s| Ok(s.alerts(filter)))
    }

    fn open_alert_counts(&self) -> BoxFuture<'_, StoreResult<Vec<(openmvs_core::alert::AlertStatus, u64)>>> {
        self.engine.reading(|s| Ok(crate::open_alert_counts(s.alerts.values().map(|a| a.status))))
    }
}

impl AuditStore for MemStore {
    fn audit_by_subject(&self, subject: &str) -> BoxFuture<'_, StoreResult<Vec<Sealed>>> {
        self.engine.reading(|s| Ok(s.trail.by_subject(subject)))
    }

    fn audit_page(&self, after: u64, limit: usize) -> BoxFuture<'_, StoreResult<Vec<(u64, Sealed)>>> {
        self.engine.reading(|s| Ok(s.trail.page(after, limit)))
    }

    fn checkpoints(&self) -> BoxFuture<'_, StoreResult<Vec<Checkpoint>>> {
        self.engine.reading(|s| Ok(s.trail.checkpoints()))
    }
}

impl EngineOutbox for MemStore {
    fn engine_outbox(&self) -> &dyn OutboxQueue {
        &*self.engine
    }
}

impl OutboxStore for MemStore {
    fn due(&self, now: Timestamp, limit: usize) -> BoxFuture<'_, StoreResult<Vec<StoredOutboxMessage>>> {
        self.engine.reading(|s| Ok(s.outbox.due(None, now, limit)))
    }

    fn claim_due(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredOutboxMessage>>> {
        self.engine.writing(|s, _| Ok(s.outbox.claim(None, now, lease_until, limit)))
    }

    fn claim_runs(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredOutboxMessage>>> {
        self.engine.writing(|s, _| Ok(s.outbox.claim_runs(None, now, lease_until, limit)))
    }

    fn delivered(&self, seq: u64) -> BoxFuture<'_, StoreResult<()>> {
        self.engine.writing(|s, _| {
            s.outbox.delivered(seq);
            Ok(())
        })
    }
}

impl IdempotencyStore for MemStore {
    fn idempotency(
        &self,
        client_id: &ClientId,
        client_trx_id: &ClientTrxId,
    ) -> BoxFuture<'_, StoreResult<Option<IdempotencyRecord>>> {
        self.engine.reading(|s| Ok(s.idempotency(client_id, client_trx_id)))
    }
}

impl BulkStore for MemStore {
    fn bulk(&self, id: &BulkId) -> BoxFuture<'_, StoreResult<Option<BulkJob>>> {
        self.engine.reading(|s| Ok(s.bulks.get(id).map(|b| b.job.clone())))
    }

    fn bulk_results(&self, id: &BulkId) -> BoxFuture<'_, StoreResult<Vec<String>>> {
        self.engine.reading(|s| {
            let rows = s.bulk_results.range((id.clone(), 0)..=(id.clone(), u64::MAX));
            Ok(rows.map(|(_, r)| r.clone()).collect())
        })
    }

    fn unfinished_bulks(&self, limit: usize) -> BoxFuture<'_, StoreResult<Vec<BulkJob>>> {
        self.engine.reading(|s| {
            let mut jobs: Vec<BulkJob> = s
                .bulks
                .values()
                .filter(|b| b.job.status != BulkStatus::Done)
                .map(|b| b.job.clone())
                .collect();
            jobs.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
            jobs.truncate(limit);
            Ok(jobs)
        })
    }

    fn claim_bulk(
        &self,
        id: &BulkId,
        worker: &NodeId,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        self.engine.writing(|s, _| Ok(s.claim_bulk(id, worker, now.unix_millis(), lease_until.unix_millis())))
    }

    fn release_bulk(&self, id: &BulkId, worker: &NodeId) -> BoxFuture<'_, StoreResult<()>> {
        self.engine.writing(|s, _| {
            let held = |b: &Bulk| b.owner.as_ref() == Some(worker);
            s.bulks.update_if(id, held, |b| (b.owner, b.lease_until) = (None, 0));
            Ok(())
        })
    }
}

impl ClientStore for MemStore {
    fn client(&self, client_id: &ClientId) -> BoxFuture<'_, StoreResult<Option<ClientRecord>>> {
        self.engine.reading(|s| Ok(s.clients.get(client_id).cloned()))
    }

    fn clients(&self) -> BoxFuture<'_, StoreResult<Vec<ClientRecord>>> {
        self.engine.reading(|s| Ok(s.clients.values().cloned().collect()))
    }

    fn disabled_clients(&self) -> BoxFuture<'_, StoreResult<Vec<ClientId>>> {
        self.engine
            .reading(|s| Ok(s.clients.values().filter(|c| c.disabled).map(|c| c.client_id.clone()).collect()))
    }

    fn keys(&self) -> BoxFuture<'_, StoreResult<Vec<KeyRecord>>> {
        self.engine.reading(|s| {
            let mut keys: Vec<KeyRecord> = s.keys.values().cloned().collect();
            keys.sort_by(|a, b| (a.created_at, &a.kid).cmp(&(b.created_at, &b.kid)));
            Ok(keys)
        })
    }
}
