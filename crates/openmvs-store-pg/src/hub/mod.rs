//! The European Hub's storage on PostgreSQL, shared by several stateless hub nodes: the national
//! engine's design and its group-committing writer ([`crate::writer`], a task of the node's
//! runtime), over a schema of the hub's own ([`schema`], e.g. `openmvs_hub`).
//!
//! Each node group-commits its own [`HubUnitOfWork`]s on one write connection, each in its own
//! savepoint, and seals the audit records of those that applied into the hub's one chain under
//! the `audit_state` row lock, so that the chain follows commit order across nodes. An upload
//! chunk's serial digests are streamed in with COPY. Reads and the relays' bookkeeping go over a
//! few shared, pipelined connections, each a single statement: a chunk's acknowledgement, which
//! must also count it and may end the upload, is one call of the schema's `hub_delivered`
//! function, ordered with the upload's progress by the upload's row lock.

mod codec;
pub mod schema;
mod writer;

use std::collections::HashMap;
use std::sync::Arc;

use openmvs_audit::{Checkpoint, Sealed};
use openmvs_core::ids::{AlertId, Batch, ObpId, ProductCode, UploadId};
use openmvs_core::time::Timestamp;
use openmvs_store::decode::{self, Columns};
use openmvs_store::decode_hub;
use openmvs_store::hub::*;
use openmvs_store::*;
use tokio_postgres::Row;

use crate::codec::{R, pg_err};
use crate::outbox::Outbox;
use crate::pool::{Conn, Pool};
use crate::{Params, engine, p};

pub use writer::COPY_FROM;

/// The schema the hub's tables live in unless told otherwise.
pub const DEFAULT_SCHEMA: &str = "openmvs_hub";

/// Options for opening the hub's store: those of a national system's. Its schema is typically
/// [`DEFAULT_SCHEMA`]; a national system's schema is refused.
pub type PgHubOptions = crate::PgOptions;

/// The hub's PostgreSQL engine.
pub struct PgHubStore {
    pool: Arc<Pool>,
    writer: engine::Queue<HubUnitOfWork>,
    outbox: Outbox,
    /// Per critical section: the in-process turn, and the connection of its own that holds the
    /// section's advisory lock (PostgreSQL releases it if this process dies).
    sections: std::sync::Mutex<HashMap<&'static str, Section>>,
}

crate::console::pg_console!(PgHubStore);

/// One critical section's in-process turn, with the connection that holds its advisory lock.
type Section = Arc<tokio::sync::Mutex<Option<Arc<Conn>>>>;

/// Inside a critical section: the in-process turn and the advisory lock, both given up on drop.
struct PgSection {
    turn: Option<tokio::sync::OwnedMutexGuard<Option<Arc<Conn>>>>,
    conn: Arc<Conn>,
    key: i64,
    handle: tokio::runtime::Handle,
}

impl Drop for PgSection {
    fn drop(&mut self) {
        let (mut turn, conn, key) = (self.turn.take(), self.conn.clone(), self.key);
        // The unlock is sent before the in-process turn passes on, on the runtime the section was
        // entered on.
        self.handle.spawn(async move {
            if let Err(e) = conn.client.execute("SELECT pg_advisory_unlock($1)", &[&key]).await {
                // Dropping the connection's last handle closes it, and the lock with it.
                tracing::warn!(error = %e, "leaving a critical section failed; closing its connection");
                if let Some(t) = turn.as_mut() {
                    **t = None;
                }
            }
            drop(conn);
            drop(turn);
        });
    }
}

/// The advisory lock key of a section: its name hashed into the key space OpenMVS uses.
fn section_key(name: &str) -> i64 {
    // FNV-1a, stable across builds and platforms.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (h >> 1) as i64
}

impl HubSections for PgHubStore {
    fn enter(&self, name: &'static str) -> BoxFuture<'_, StoreResult<SectionGuard>> {
        let slot = self.sections.lock().unwrap_or_else(|e| e.into_inner()).entry(name).or_default().clone();
        let pool = self.pool.clone();
        Box::pin(async move {
            let mut turn = slot.lock_owned().await;
            let handle = tokio::runtime::Handle::current();
            let held = turn.clone().filter(|c| !c.client.is_closed());
            let key = section_key(name);
            let conn = handle
                .spawn(async move {
                    let conn = match held {
                        Some(c) => c,
                        None => pool.dedicated().await?,
                    };
                    conn.client.execute("SELECT pg_advisory_lock($1)", &[&key]).await.map_err(pg_err)?;
                    Ok::<_, StoreError>(conn)
                })
                .await
                .map_err(|e| StoreError::Unavailable(format!("entering a critical section: {e}")))??;
            *turn = Some(conn.clone());
            let guard: SectionGuard = Box::new(PgSection { turn: Some(turn), conn, key, handle });
            Ok(guard)
        })
    }
}

/// The hub's schema.
const HUB: engine::SchemaKind = engine::SchemaKind {
    name: "hub",
    latest: schema::LATEST,
    table: "hub_schema_migrations",
    current: |c| Box::pin(schema::current(c)),
    migrate: |c, now| Box::pin(schema::migrate(c, now)),
};

/// Applies pending hub migrations to the schema (creating it if needed); returns the versions
/// applied. Refuses a national system's schema, leaving it as it was.
pub fn migrate(url: &str, schema: Option<&str>, now: Timestamp) -> StoreResult<Vec<i64>> {
    engine::migrate(&HUB, url, schema, now)
}

impl PgHubStore {
    /// Connects, checks (or applies) the hub schema's version, and starts this node's writer.
    pub fn open(opts: PgHubOptions) -> StoreResult<PgHubStore> {
        let (pool, writer) = engine::start(&HUB, opts)?;
        Ok(PgHubStore { outbox: Outbox::new(pool.clone()), pool, writer, sections: Default::default() })
    }

    /// The hub schema version this build writes.
    pub fn schema_version() -> i64 {
        schema::LATEST
    }

    /// Commits everything queued, signs the open audit tail and stops the writer. Later commits
    /// are refused as unavailable.
    pub async fn close(&self) {
        self.writer.stop().await;
    }

    async fn count(&self, sql: &'static str, params: Params) -> StoreResult<u64> {
        let n = self.pool.row(sql, params, |r| R(r).int(0)).await?.unwrap_or(0);
        u64::try_from(n).map_err(|_| decode::corrupt(format!("count {n}")))
    }
}

impl HubCommitter for PgHubStore {
    fn commit(&self, uow: HubUnitOfWork) -> BoxFuture<'_, StoreResult<HubCommitted>> {
        Box::pin(async move { self.writer.commit(uow).await })
    }
}

fn obp_row(r: &Row) -> StoreResult<ObpRecord> {
    decode_hub::obp(&R(r))
}

impl ObpStore for PgHubStore {
    fn obp(&self, id: &ObpId) -> BoxFuture<'_, StoreResult<Option<ObpRecord>>> {
        let id = id.as_str().to_owned();
        Box::pin(async move {
            self.pool
                .row(
                    "SELECT id, name, created_at, revoked_at, callback_url FROM obps WHERE id = $1",
                    vec![p(id.to_owned())],
                    obp_row,
                )
                .await
        })
    }

    fn obps(&self) -> BoxFuture<'_, StoreResult<Vec<ObpRecord>>> {
        Box::pin(async move {
            self.pool
                .rows(
                    "SELECT id, name, created_at, revoked_at, callback_url FROM obps ORDER BY id",
                    vec![],
                    obp_row,
                )
                .await
        })
    }
}

impl ProductCatalog for PgHubStore {
    fn product(&self, product_code: &ProductCode) -> BoxFuture<'_, StoreResult<Option<HubProductRecord>>> {
        let product_code = product_code.clone();
        Box::pin(async move {
            self.pool
                .row(
                    "SELECT product_code, scheme, owner, current_version, created_at, \
                 (SELECT string_agg(market, ',' ORDER BY market) FROM product_withdrawals w \
                  WHERE w.product_code = p.product_code) \
                 FROM products p WHERE product_code = $1",
                    vec![p(product_code.as_str().to_owned())],
                    |r| decode_hub::product(&R(r)),
                )
                .await
        })
    }

    fn product_version(
        &self,
        product_code: &ProductCode,
        version: u32,
    ) -> BoxFuture<'_, StoreResult<Option<ProductVersionRecord>>> {
        let product_code = product_code.clone();
        Box::pin(async move {
            let rows = self.pool.rows(
                "SELECT version, name, common_name, form, strength, pack_type, pack_size, market_data, created_at \
                 FROM product_versions WHERE product_code = $1 AND version = $2",
                vec![p(product_code.as_str().to_owned()), p(i64::from(version))],
                |r| Ok(r.clone()),
            ).await?;
            rows.first()
                .map(|r| decode_hub::product_version(&product_code, &R(r), codec::market_data))
                .transpose()
        })
    }
}

impl BatchCatalog for PgHubStore {
    fn batch(
        &self,
        product_code: &ProductCode,
        batch: &Batch,
    ) -> BoxFuture<'_, StoreResult<Option<HubBatchRecord>>> {
        let product_code = product_code.clone();
        let batch = batch.clone();
        Box::pin(async move {
            let rows = self
                .pool
                .rows(
                    "SELECT batch, product_version, expiry, expiry_year, markets, \
                 (SELECT string_agg(market, ',' ORDER BY market) FROM batch_recalls r \
                  WHERE r.product_code = b.product_code AND r.batch = b.batch) \
                 FROM batches b WHERE product_code = $1 AND batch = $2",
                    vec![p(product_code.as_str().to_owned()), p(batch.as_str().to_owned())],
                    |r| Ok(r.clone()),
                )
                .await?;
            rows.first().map(|r| decode_hub::batch_record(&product_code, &R(r))).transpose()
        })
    }
}

impl SerialIndex for PgHubStore {
    fn present(
        &self,
        product_code: &ProductCode,
        digests: &[SerialDigest],
    ) -> BoxFuture<'_, StoreResult<Vec<usize>>> {
        let product_code = product_code.clone();
        let digests = digests.to_vec();
        Box::pin(async move {
            if digests.is_empty() {
                return Ok(Vec::new());
            }
            let list: Vec<Vec<u8>> = digests.iter().map(|d| d.as_bytes().to_vec()).collect();
            let found = self
                .pool
                .rows(
                    "SELECT i FROM UNNEST($2::bytea[]) WITH ORDINALITY AS t(d, i) WHERE EXISTS \
                 (SELECT 1 FROM serial_digests s WHERE s.product_code = $1 AND s.digest = t.d) ORDER BY i",
                    vec![p(product_code.as_str().to_owned()), p(list)],
                    |r| R(r).int(0),
                )
                .await?;
            found
                .into_iter()
                .map(|i| usize::try_from(i - 1).map_err(|_| decode::corrupt(format!("position {i}"))))
                .collect()
        })
    }

    fn digest_count(&self, product_code: &ProductCode) -> BoxFuture<'_, StoreResult<u64>> {
        let product_code = product_code.clone();
        Box::pin(async move {
            self.count(
                "SELECT COUNT(*) FROM serial_digests WHERE product_code = $1",
                vec![p(product_code.as_str().to_owned())],
            )
            .await
        })
    }
}

/// Uploads with their markets, from rows of the upload's columns followed by market, sent and
/// acked (NULL for an upload without markets), each upload's rows together in market order.
fn uploads(rows: &[Row]) -> StoreResult<Vec<UploadRecord>> {
    let mut out: Vec<UploadRecord> = Vec::new();
    for row in rows {
        let r = R(row);
        let id = r.text(0)?;
        let u = match out.last_mut() {
            Some(u) if u.id == id.as_str() => u,
            _ => {
                out.push(decode_hub::upload(&r)?);
                out.last_mut().ok_or_else(|| decode::corrupt("upload"))?
            }
        };
        if r.opt_text(9)?.is_some() {
            u.markets.push(decode_hub::upload_market(u.status, &r, 9)?);
        }
    }
    Ok(out)
}

impl UploadStore for PgHubStore {
    fn upload(&self, id: &UploadId) -> BoxFuture<'_, StoreResult<Option<UploadRecord>>> {
        let id = id.as_str().to_owned();
        Box::pin(async move {
            // One statement, so that the counts and the status agree.
            let rows = self.pool.rows(
                "SELECT u.id, u.obp, u.scheme, u.product_code, u.batch, u.status, u.received, u.rejected, \
                 u.created_at, m.market, m.sent, m.acked \
                 FROM uploads u LEFT JOIN upload_markets m ON m.upload_id = u.id WHERE u.id = $1 ORDER BY m.market",
                vec![p(id.to_owned())],
                |r| Ok(r.clone()),
            ).await?;
            Ok(uploads(&rows)?.into_iter().next())
        })
    }

    fn upload_rejections(
        &self,
        id: &UploadId,
        after_line: u64,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<UploadRejection>>> {
        let id = id.as_str().to_owned();
        Box::pin(async move {
            self.pool
                .rows(
                    "SELECT line, serial, reason FROM upload_rejections WHERE upload_id = $1 AND line > $2 \
                 ORDER BY line LIMIT $3",
                    vec![p(id.to_owned()), p(after_line as i64), p(limit as i64)],
                    |r| decode_hub::rejection(&R(r)),
                )
                .await
        })
    }

    fn unfinished_uploads(&self, limit: usize) -> BoxFuture<'_, StoreResult<Vec<UploadRecord>>> {
        Box::pin(async move {
            let rows = self.pool.rows(
                "SELECT u.id, u.obp, u.scheme, u.product_code, u.batch, u.status, u.received, u.rejected, \
                 u.created_at, m.market, m.sent, m.acked \
                 FROM (SELECT * FROM uploads WHERE status = 'RECEIVED' ORDER BY created_at, id LIMIT $1) u \
                 LEFT JOIN upload_markets m ON m.upload_id = u.id ORDER BY u.created_at, u.id, m.market",
                vec![p(limit as i64)],
                |r| Ok(r.clone()),
            ).await?;
            uploads(&rows)
        })
    }
}

impl EngineOutbox for PgHubStore {
    fn engine_outbox(&self) -> &dyn OutboxQueue {
        &self.outbox
    }
}

impl HubOutboxStore for PgHubStore {
    fn due(
        &self,
        destination: &str,
        now: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredOutboxMessage>>> {
        self.outbox.due(Some(destination), now, limit, None)
    }

    fn claim_due(
        &self,
        destination: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredOutboxMessage>>> {
        self.outbox.due(Some(destination), now, limit, Some(lease_until))
    }

    fn claim_runs(
        &self,
        destination: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredOutboxMessage>>> {
        self.outbox.claim_runs(Some(destination), now, limit, lease_until)
    }

    fn destinations(&self) -> BoxFuture<'_, StoreResult<Vec<String>>> {
        Box::pin(async move {
            self.pool
                .rows(
                    "SELECT DISTINCT destination FROM outbox WHERE NOT dead ORDER BY destination",
                    vec![],
                    |r| R(r).text(0),
                )
                .await
        })
    }

    fn delivered(&self, seq: u64) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            self.pool.rows("SELECT hub_delivered($1)", vec![p(seq as i64)], |_| Ok(())).await.map(|_| ())
        })
    }
}

fn alert_row(r: &Row) -> StoreResult<HubAlertRecord> {
    decode_hub::alert(&R(r))
}

impl HubAlertStore for PgHubStore {
    fn alert(&self, id: &AlertId) -> BoxFuture<'_, StoreResult<Option<HubAlertRecord>>> {
        let id = id.as_str().to_owned();
        Box::pin(async move {
            self.pool
                .row(
                    "SELECT id, obp, market, product_code, alert, created_at, status, classification, \
                 comment, thread, version FROM alerts WHERE id = $1",
                    vec![p(id.to_owned())],
                    alert_row,
                )
                .await
        })
    }

    fn alerts(&self, f: &HubAlertFilter) -> BoxFuture<'_, StoreResult<Vec<HubAlertRecord>>> {
        let f = f.clone();
        Box::pin(async move {
            self.pool.rows(
                "SELECT id, obp, market, product_code, alert, created_at, status, classification, \
                 comment, thread, version FROM alerts WHERE ($1::text IS NULL OR obp = $1) AND ($2::text IS NULL OR status = $2) \
                 AND ($3::text IS NULL OR product_code = $3) AND ($4::text IS NULL OR id > $4) ORDER BY id LIMIT $5",
                vec![
                    p(f.obp.as_ref().map(|o| o.as_str().to_owned())),
                    p(f.status.map(|s| s.as_str().to_owned())),
                    p(f.product_code.clone()),
                    p(f.after.as_ref().map(|a| a.as_str().to_owned())),
                    p(f.limit as i64),
                ],
                alert_row,
            ).await
        })
    }

    fn open_alert_counts(&self) -> BoxFuture<'_, StoreResult<Vec<(openmvs_core::alert::AlertStatus, u64)>>> {
        Box::pin(crate::open_alert_counts(&self.pool))
    }
}

impl AuditStore for PgHubStore {
    fn audit_by_subject(&self, subject: &str) -> BoxFuture<'_, StoreResult<Vec<Sealed>>> {
        let subject = subject.to_owned();
        Box::pin(async move {
            self.pool.rows(
                "SELECT pos, market, seq, at, actor, role, location, operation, subject, return_code, request, result, \
                 prev_hash, hash FROM audit WHERE subject = $1 ORDER BY pos",
                vec![p(subject.to_owned())],
                |r| Ok(decode::audit(&R(r))?.1),
            ).await
        })
    }

    fn audit_search(&self, q: &AuditQuery) -> BoxFuture<'_, StoreResult<Vec<(u64, Sealed)>>> {
        Box::pin(crate::console::audit_search(&self.pool, q.clone()))
    }

    fn audit_last_pos(&self) -> BoxFuture<'_, StoreResult<u64>> {
        Box::pin(crate::console::audit_last_pos(&self.pool))
    }

    fn audit_page(&self, after: u64, limit: usize) -> BoxFuture<'_, StoreResult<Vec<(u64, Sealed)>>> {
        Box::pin(async move {
            self.pool.rows(
                "SELECT pos, market, seq, at, actor, role, location, operation, subject, return_code, request, result, \
                 prev_hash, hash FROM audit WHERE pos > $1 ORDER BY pos LIMIT $2",
                vec![p(after as i64), p(limit as i64)],
                |r| decode::audit(&R(r)),
            ).await
        })
    }

    fn checkpoints(&self) -> BoxFuture<'_, StoreResult<Vec<Checkpoint>>> {
        Box::pin(async move {
            self.pool.rows(
                "SELECT market, seq, hash, at, key_id, signature FROM audit_checkpoints ORDER BY market, seq",
                vec![],
                |r| decode::checkpoint(&R(r)),
            ).await
        })
    }
}
