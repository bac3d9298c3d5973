//! The hub's state and ports, on the same tables, outbox and audit trail as the national
//! system's: each read is a plain function of the state, and each write a plain function of the
//! state and the time, applied by the engine all or nothing.

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::Arc;

use openmvs_audit::{Checkpoint, Sealed};
use openmvs_core::ids::{AlertId, Batch, MarketCode, ObpId, ProductCode, UploadId};
use openmvs_core::time::Timestamp;
use openmvs_store::hub::*;
use openmvs_store::*;

use crate::national::heartbeat;
use crate::outbox::Outbox;
use crate::table::{Table, journal};
use crate::trail::Trail;
use crate::{Engine, Options, State, exists};

/// Everything the hub stores; rows are keyed as the SQL engines key them.
#[derive(Debug, Default)]
pub(crate) struct Hub {
    inbox: Table<MessageId, i64>,
    obps: Table<ObpId, ObpRecord>,
    versions: Table<(String, u32), ProductVersionRecord>,
    products: Table<String, HubProductRecord>,
    batches: Table<(String, String), HubBatchRecord>,
    digests: Table<(String, Vec<u8>), ()>,
    /// Uploads without their markets, which have rows of their own.
    uploads: Table<UploadId, UploadRecord>,
    /// Chunks sent and acknowledged per upload and market.
    upload_markets: Table<(UploadId, String), (MarketCode, u64, u64)>,
    rejections: Table<(UploadId, u64), UploadRejection>,
    alerts: Table<AlertId, HubAlertRecord>,
    outbox: Outbox,
    heartbeats: Table<NodeId, i64>,
    trail: Trail,
}

journal!(Hub: inbox, obps, versions, products, batches, digests, uploads, upload_markets, rejections,
    alerts, outbox, heartbeats, trail);

impl State for Hub {
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

/// `a` and `b` merged, in market order, without repeats.
fn union(a: &[MarketCode], b: &[MarketCode]) -> Vec<MarketCode> {
    let mut m: Vec<MarketCode> = a.iter().chain(b).copied().collect();
    m.sort();
    m.dedup();
    m
}

fn pc_key(pc: &ProductCode) -> String {
    pc.as_str().to_owned()
}

impl Hub {
    /// Applies one unit of work, in the order the SQL engines apply it; the first conflict
    /// refuses it (and the engine puts back what it had written).
    fn apply(&mut self, uow: &HubUnitOfWork, now: i64) -> StoreResult<HubCommitted> {
        let mut out = HubCommitted::default();
        if let Some(id) = &uow.inbox
            && !self.inbox.insert_new(id.clone(), now)
        {
            return Err(StoreError::Conflict(Conflict::InboxMessage));
        }
        for o in &uow.new_obps {
            if !self.obps.insert_new(o.id.clone(), o.clone()) {
                return Err(exists(format!("OBP {}", o.id)));
            }
        }
        for change in &uow.obp_changes {
            let (obp, found) = match change {
                ObpChange::Callback { obp, url } => {
                    (obp, self.obps.update(obp, |o| o.callback_url.clone_from(url)))
                }
                ObpChange::Revoke { obp, at } => {
                    (obp, self.obps.update(obp, |o| o.revoked_at = o.revoked_at.or(Some(*at))))
                }
            };
            if !found {
                return Err(StoreError::Corrupt(format!("a change names OBP {obp}, which does not exist")));
            }
        }
        for v in &uow.product_versions {
            let pc = &v.master.product_code;
            if !self.versions.insert_new((pc_key(pc), v.version), v.clone()) {
                return Err(exists(format!("product version {pc}/{}", v.version)));
            }
        }
        for w in &uow.products {
            let p = &w.product;
            let k = pc_key(&p.product_code);
            match w.expected_version {
                None => {
                    let new = HubProductRecord { withdrawn: union(&p.withdrawn, &[]), ..p.clone() };
                    if !self.products.insert_new(k, new) {
                        return Err(exists(format!("product {}", p.product_code)));
                    }
                }
                Some(expected) => {
                    let applied = self.products.update_if(
                        &k,
                        |old| old.current_version == expected,
                        |old| {
                            old.current_version = p.current_version;
                            old.withdrawn = union(&old.withdrawn, &p.withdrawn);
                        },
                    );
                    if !applied {
                        return Err(exists(format!("a newer version of product {}", p.product_code)));
                    }
                }
            }
        }
        for b in &uow.batches {
            let k = (pc_key(&b.product_code), b.batch.as_str().to_owned());
            let recalled = self.batches.get(&k).map(|old| old.recalled.clone()).unwrap_or_default();
            let new = HubBatchRecord {
                markets: union(&b.markets, &[]),
                recalled: union(&recalled, &b.recalled),
                ..b.clone()
            };
            self.batches.put(k, new);
        }
        for group in &uow.serials {
            let mut present = Vec::new();
            for (i, d) in group.digests.iter().enumerate() {
                if !self.digests.insert_new((pc_key(&group.product_code), d.as_bytes().to_vec()), ()) {
                    if group.on_duplicate == OnDuplicate::Refuse {
                        return Err(exists(format!("serial digest {i} of product {}", group.product_code)));
                    }
                    present.push(i);
                }
            }
            out.duplicate_serials.push(present);
        }
        if let Some(u) = &uow.new_upload {
            let record = UploadRecord {
                id: u.id.clone(),
                obp: u.obp.clone(),
                product_code: u.product_code.clone(),
                batch: u.batch.clone(),
                status: UploadStatus::Received,
                received: 0,
                rejected: 0,
                created_at: u.created_at,
                markets: Vec::new(),
            };
            if !self.uploads.insert_new(u.id.clone(), record) {
                return Err(exists(format!("upload {}", u.id)));
            }
            for m in &u.markets {
                self.upload_markets.insert_new((u.id.clone(), m.as_str().to_owned()), (*m, 0, 0));
            }
        }
        if let Some(p) = &uow.upload_progress {
            self.progress(p, now)?;
        }
        for a in &uow.alerts {
            if !self.alerts.insert_new(a.id.clone(), a.clone()) {
                return Err(exists(format!("alert {}", a.id)));
            }
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
                return Err(StoreError::Conflict(Conflict::AlertStatus));
            }
        }
        for m in &uow.outbox {
            self.outbox.insert(m, None, now)?;
        }
        if let Some(h) = &uow.heartbeat {
            heartbeat(&mut self.heartbeats, h);
        }
        for e in &uow.audit {
            out.audit_seqs.push(self.trail.append(e)?);
        }
        Ok(out)
    }

    fn progress(&mut self, p: &UploadProgress, now: i64) -> StoreResult<()> {
        let found = self.uploads.get(&p.id).is_some_and(|u| u.status == UploadStatus::Received);
        if !found {
            return Err(exists(format!("a later state of upload {}", p.id)));
        }
        self.uploads.update(&p.id, |u| {
            u.received += p.received;
            u.rejected += p.rejections.len() as u64;
        });
        for r in &p.rejections {
            if !self.rejections.insert_new((p.id.clone(), r.line), r.clone()) {
                return Err(exists(format!("a rejection of line {} of upload {}", r.line, p.id)));
            }
        }
        for m in &p.chunks {
            let market = MarketCode::new(&m.destination).map_err(|e| {
                StoreError::Corrupt(format!(
                    "chunk {} of upload {} is not for a market: {e}",
                    m.message_id, p.id
                ))
            })?;
            self.outbox.insert(m, Some(&p.id), now)?;
            let k = (p.id.clone(), market.as_str().to_owned());
            let (_, sent, acked) = self.upload_markets.get(&k).copied().unwrap_or((market, 0, 0));
            self.upload_markets.put(k, (market, sent + 1, acked));
        }
        if let Some(outcome) = p.outcome {
            let status = match outcome {
                UploadOutcome::Validated => UploadStatus::Validated,
                UploadOutcome::Failed => UploadStatus::Failed,
            };
            self.uploads.update(&p.id, |u| u.status = status);
            self.mark_distributed(&p.id);
        }
        Ok(())
    }

    fn markets(&self, id: &UploadId) -> impl Iterator<Item = (MarketCode, (u64, u64))> {
        let rows = self.upload_markets.range((id.clone(), String::new())..);
        rows.take_while(move |((u, _), _)| u == id).map(|(_, (m, sent, acked))| (*m, (*sent, *acked)))
    }

    /// A validated upload becomes DISTRIBUTED once every market acknowledged every chunk.
    fn mark_distributed(&mut self, id: &UploadId) {
        let validated = self.uploads.get(id).is_some_and(|u| u.status == UploadStatus::Validated);
        if validated && self.markets(id).all(|(_, (sent, acked))| acked >= sent) {
            self.uploads.update(id, |u| u.status = UploadStatus::Distributed);
        }
    }

    fn delivered(&mut self, seq: u64) {
        let Some(row) = self.outbox.delivered(seq) else { return };
        let Some(upload) = row.upload else { return };
        let k = (upload.clone(), row.message.message.destination);
        self.upload_markets.update(&k, |(_, _, acked)| *acked += 1);
        self.mark_distributed(&upload);
    }

    fn upload(&self, id: &UploadId) -> Option<UploadRecord> {
        let mut u = self.uploads.get(id)?.clone();
        let ended = matches!(u.status, UploadStatus::Validated | UploadStatus::Distributed);
        u.markets = self
            .markets(id)
            .map(|(market, (chunks_sent, chunks_acked))| UploadMarket {
                market,
                chunks_sent,
                chunks_acked,
                status: if ended && chunks_acked >= chunks_sent {
                    MarketDelivery::Distributed
                } else {
                    MarketDelivery::Pending
                },
            })
            .collect();
        Some(u)
    }

    fn alerts(&self, f: &HubAlertFilter) -> Vec<HubAlertRecord> {
        let after = f.after.clone().map_or(Bound::Unbounded, Bound::Excluded);
        self.alerts
            .range((after, Bound::Unbounded))
            .map(|(_, a)| a)
            .filter(|a| f.obp.as_ref().is_none_or(|o| &a.obp == o))
            .filter(|a| f.status.is_none_or(|s| a.status == s))
            .filter(|a| f.product_code.as_ref().is_none_or(|p| &a.product_code == p))
            .take(f.limit)
            .cloned()
            .collect()
    }
}

/// The in-memory engine of the hub.
pub struct MemHubStore {
    engine: Arc<Engine<Hub>>,
    sections: std::sync::Mutex<HashMap<&'static str, Arc<tokio::sync::Mutex<()>>>>,
    console: crate::console::Console,
}

crate::console::delegate_console!(MemHubStore);

impl MemHubStore {
    /// An empty store.
    pub fn new(opts: Options) -> MemHubStore {
        MemHubStore { engine: Engine::new(opts), sections: Default::default(), console: Default::default() }
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

impl HubCommitter for MemHubStore {
    fn commit(&self, uow: HubUnitOfWork) -> BoxFuture<'_, StoreResult<HubCommitted>> {
        self.engine.writing(move |s, now| s.apply(&uow, now))
    }
}

impl HubSections for MemHubStore {
    fn enter(&self, name: &'static str) -> BoxFuture<'_, StoreResult<SectionGuard>> {
        let lock = self.sections.lock().unwrap_or_else(|e| e.into_inner()).entry(name).or_default().clone();
        Box::pin(async move {
            let guard: SectionGuard = Box::new(lock.lock_owned().await);
            Ok(guard)
        })
    }
}

impl ObpStore for MemHubStore {
    fn obp(&self, id: &ObpId) -> BoxFuture<'_, StoreResult<Option<ObpRecord>>> {
        self.engine.reading(|s| Ok(s.obps.get(id).cloned()))
    }

    fn obps(&self) -> BoxFuture<'_, StoreResult<Vec<ObpRecord>>> {
        self.engine.reading(|s| Ok(s.obps.values().cloned().collect()))
    }
}

impl ProductCatalog for MemHubStore {
    fn product(&self, product_code: &ProductCode) -> BoxFuture<'_, StoreResult<Option<HubProductRecord>>> {
        self.engine.reading(|s| Ok(s.products.get(&pc_key(product_code)).cloned()))
    }

    fn product_version(
        &self,
        product_code: &ProductCode,
        version: u32,
    ) -> BoxFuture<'_, StoreResult<Option<ProductVersionRecord>>> {
        self.engine.reading(|s| Ok(s.versions.get(&(pc_key(product_code), version)).cloned()))
    }
}

impl BatchCatalog for MemHubStore {
    fn batch(
        &self,
        product_code: &ProductCode,
        batch: &Batch,
    ) -> BoxFuture<'_, StoreResult<Option<HubBatchRecord>>> {
        self.engine
            .reading(|s| Ok(s.batches.get(&(pc_key(product_code), batch.as_str().to_owned())).cloned()))
    }
}

impl SerialIndex for MemHubStore {
    fn present(
        &self,
        product_code: &ProductCode,
        digests: &[SerialDigest],
    ) -> BoxFuture<'_, StoreResult<Vec<usize>>> {
        self.engine.reading(|s| {
            let pc = pc_key(product_code);
            let found = |d: &SerialDigest| s.digests.contains(&(pc.clone(), d.as_bytes().to_vec()));
            Ok(digests.iter().enumerate().filter(|(_, d)| found(d)).map(|(i, _)| i).collect())
        })
    }

    fn digest_count(&self, product_code: &ProductCode) -> BoxFuture<'_, StoreResult<u64>> {
        self.engine.reading(|s| {
            let pc = pc_key(product_code);
            let n = s.digests.range((pc.clone(), Vec::new())..).take_while(|((p, _), _)| *p == pc).count();
            Ok(n as u64)
        })
    }
}

impl UploadStore for MemHubStore {
    fn upload(&self, id: &UploadId) -> BoxFuture<'_, StoreResult<Option<UploadRecord>>> {
        self.engine.reading(|s| Ok(s.upload(id)))
    }

    fn upload_rejections(
        &self,
        id: &UploadId,
        after_line: u64,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<UploadRejection>>> {
        self.engine.reading(|s| {
            let rows = s
                .rejections
                .range((Bound::Excluded((id.clone(), after_line)), Bound::Included((id.clone(), u64::MAX))));
            Ok(rows.take(limit).map(|(_, r)| r.clone()).collect())
        })
    }

    fn unfinished_uploads(&self, limit: usize) -> BoxFuture<'_, StoreResult<Vec<UploadRecord>>> {
        self.engine.reading(|s| {
            let mut open: Vec<&UploadRecord> =
                s.uploads.values().filter(|u| u.status == UploadStatus::Received).collect();
            open.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
            Ok(open.into_iter().take(limit).filter_map(|u| s.upload(&u.id)).collect())
        })
    }
}

impl EngineOutbox for MemHubStore {
    fn engine_outbox(&self) -> &dyn OutboxQueue {
        &*self.engine
    }
}

impl HubOutboxStore for MemHubStore {
    fn due(
        &self,
        destination: &str,
        now: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredOutboxMessage>>> {
        self.engine.reading(|s| Ok(s.outbox.due(Some(destination), now, limit)))
    }

    fn claim_due(
        &self,
        destination: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredOutboxMessage>>> {
        self.engine.writing(|s, _| Ok(s.outbox.claim(Some(destination), now, lease_until, limit)))
    }

    fn claim_runs(
        &self,
        destination: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredOutboxMessage>>> {
        self.engine.writing(|s, _| Ok(s.outbox.claim_runs(Some(destination), now, lease_until, limit)))
    }

    fn destinations(&self) -> BoxFuture<'_, StoreResult<Vec<String>>> {
        self.engine.reading(|s| Ok(s.outbox.destinations()))
    }

    fn delivered(&self, seq: u64) -> BoxFuture<'_, StoreResult<()>> {
        self.engine.writing(|s, _| {
            s.delivered(seq);
            Ok(())
        })
    }
}

impl HubAlertStore for MemHubStore {
    fn alert(&self, id: &AlertId) -> BoxFuture<'_, StoreResult<Option<HubAlertRecord>>> {
        self.engine.reading(|s| Ok(s.alerts.get(id).cloned()))
    }

    fn alerts(&self, filter: &HubAlertFilter) -> BoxFuture<'_, StoreResult<Vec<HubAlertRecord>>> {
        self.engine.reading(|s| Ok(s.alerts(filter)))
    }

    fn open_alert_counts(&self) -> BoxFuture<'_, StoreResult<Vec<(openmvs_core::alert::AlertStatus, u64)>>> {
        self.engine.reading(|s| Ok(crate::open_alert_counts(s.alerts.values().map(|a| a.status))))
    }
}

impl AuditStore for MemHubStore {
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
