//! The scale-out storage engine: PostgreSQL, shared by several stateless nodes.
//!
//! Each node group-commits its own units of work on one write connection (see [`writer`]); reads
//! and small single-statement writes go over a few shared, pipelined connections. Everything a
//! node must agree on with the others lives in the database: row versions and row locks decide
//! races on a pack, the `audit_state` row lock orders the audit trail, and leases stored with the
//! outbox messages and bulk jobs share that work out.

mod codec;
mod console;
mod engine;
pub mod hub;
mod migrations;
mod outbox;
mod pool;
pub mod schema;
pub mod testing;
pub mod writer;

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use openmvs_audit::{Checkpoint, Sealed};
use openmvs_core::ids::{AlertId, Batch, BulkId, ClientId, ClientTrxId, ProductCode, Serial};
use openmvs_core::time::{Clock, Timestamp};
use openmvs_store::decode::{self, Columns};
use openmvs_store::*;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use codec::{R, pg_err};
use outbox::Outbox;
use pool::Pool;

/// How many units of work may wait for the writer before new ones are refused as overload.
pub const QUEUE_BOUND: usize = 16_384;

/// Options for opening a store: a national system's, or the hub's ([`hub::PgHubOptions`]).
pub struct PgOptions {
    /// The database, as a `postgres://` URL or a `key=value` string.
    pub url: String,
    /// The schema holding this system's tables (created by the migration if missing); `None`
    /// for the connection's default search path.
    pub schema: Option<String>,
    /// The key that signs audit checkpoints (the same on every node of one system).
    pub signing_key: SigningKey,
    /// The clock for checkpoint times and outbox scheduling.
    pub clock: Arc<dyn Clock>,
    /// Called with the size of every committed group (for metrics).
    pub on_group: Option<Arc<dyn Fn(usize) + Send + Sync>>,
    /// Apply pending migrations at open. When false, a schema that is not this build's version
    /// is refused with a message that says to run `openmvs migrate`.
    pub migrate: bool,
    /// Shared connections for reads and small writes.
    pub pool_size: usize,
    /// How long a commit may wait for the database to confirm it: then it is answered
    /// unavailable, its outcome unknown (it may still commit; a retry with the same
    /// `client_trx_id` is answered once). Bounds the wait while there is no writable primary.
    pub commit_timeout: std::time::Duration,
    /// When this node signs audit checkpoints, and who hears of each one it signs.
    pub checkpoints: CheckpointOptions,
}

/// A parameter list owned by the query, so that its future borrows nothing of the caller's.
type Params = Vec<Box<dyn ToSql + Sync + Send>>;

/// The PostgreSQL engine.
pub struct PgStore {
    pool: Arc<Pool>,
    writer: engine::Queue<UnitOfWork>,
    outbox: Outbox,
}

console::pg_console!(PgStore);

/// Checks a schema name: lower-case letters, digits and `_`, not starting with a digit.
pub fn valid_schema(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
}

/// The connection settings of `url` with `schema` as the search path.
pub fn connection_config(url: &str, schema: Option<&str>) -> StoreResult<tokio_postgres::Config> {
    let mut config: tokio_postgres::Config =
        url.parse().map_err(|e| StoreError::Unavailable(format!("database URL: {e}")))?;
    if let Some(s) = schema {
        if !valid_schema(s) {
            return Err(StoreError::Unavailable(format!(
                "schema '{s}': use lower-case letters, digits and _ (not first), at most 63"
            )));
        }
        config.options(format!("-c search_path={s}"));
    }
    config.application_name("openmvs");
    // A server that stops answering (its machine lost, a partition) is given up on within
    // seconds, not after the kernel's defaults (minutes to hours), so that the node moves to the
    // new primary; settings in the URL win.
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(5));
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(std::time::Duration::from_secs(10));
    }
    if config.get_keepalives_idle() == std::time::Duration::from_secs(2 * 60 * 60) {
        config.keepalives_idle(std::time::Duration::from_secs(10));
    }
    Ok(config)
}

/// The national system's schema.
pub(crate) const NATIONAL: engine::SchemaKind = engine::SchemaKind {
    name: "national",
    latest: schema::LATEST,
    table: "schema_migrations",
    current: |c| Box::pin(schema::current(c)),
    migrate: |c, now| Box::pin(schema::migrate(c, now)),
};

/// Applies pending migrations to the schema (creating it if needed); returns the versions applied.
pub fn migrate(url: &str, schema: Option<&str>, now: Timestamp) -> StoreResult<Vec<i64>> {
    engine::migrate(&NATIONAL, url, schema, now)
}

/// Drops the schema with everything in it and creates it empty, for sandboxes that start over
/// (`openmvs demo --storage postgres` on a new data directory). Never used on a production path.
pub fn reset_schema(url: &str, schema: &str) -> StoreResult<()> {
    if !valid_schema(schema) {
        return Err(StoreError::Unavailable(format!("schema '{schema}' is not a valid name")));
    }
    run_once(url, format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"))
}

/// Runs `sql` once on a connection of its own to the database (no schema).
fn run_once(url: &str, sql: String) -> StoreResult<()> {
    let config = connection_config(url, None)?;
    pool::once(async move { pool::connect(&config).await?.client.batch_execute(&sql).await.map_err(pg_err) })
}

/// Drops the schema with everything in it (what a benchmark or a test made).
pub fn drop_schema(url: &str, schema: &str) -> StoreResult<()> {
    if !valid_schema(schema) {
        return Err(StoreError::Unavailable(format!("schema '{schema}' is not a valid name")));
    }
    run_once(url, format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
}

impl PgStore {
    /// Connects, checks (or applies) the schema version, and starts this node's writer. Called
    /// inside the runtime the store runs on (the node's): its writer is a task of that runtime,
    /// and its connections are driven by it.
    pub fn open(opts: PgOptions) -> StoreResult<PgStore> {
        let (pool, writer) = engine::start(&NATIONAL, opts)?;
        Ok(PgStore { outbox: Outbox::new(pool.clone()), pool, writer })
    }

    /// The schema version this build writes.
    pub fn schema_version() -> i64 {
        schema::LATEST
    }

    /// Commits everything queued, signs the open audit tails and stops the writer. Later commits
    /// are refused as unavailable.
    pub async fn close(&self) {
        self.writer.stop().await;
    }
}

fn p<T: ToSql + Sync + Send + 'static>(v: T) -> Box<dyn ToSql + Sync + Send> {
    Box::new(v)
}

fn ms(t: Timestamp) -> Box<dyn ToSql + Sync + Send> {
    p(t.unix_millis())
}

impl Committer for PgStore {
    fn commit(&self, uow: UnitOfWork) -> BoxFuture<'_, StoreResult<Committed>> {
        Box::pin(async move { self.writer.commit(uow).await })
    }
}

/// The context of one request in one statement (one snapshot, one round trip).
const CONTEXT_SQL: &str = "SELECT i.request_hash, i.status, i.response, i.created_at, \
     pr.product_code, pr.scheme, pr.name, pr.common_name, pr.form, pr.strength, pr.pack_type, pr.pack_size, \
     pr.owner, pr.withdrawn, pr.version, \
     p.batch, p.state, p.last_command, p.last_location, p.last_at, p.synced_from, p.repeats, p.version, \
     b.batch, b.expiry, b.expiry_year, b.recalled, b.markets, \
     EXISTS (SELECT 1 FROM batches rb WHERE rb.product_code = q.pc AND rb.batch = q.rb) \
     FROM (SELECT $1::text AS cid, $2::text AS trx, $3::text AS pc, $4::text AS sn, $5::text AS rb) q \
     LEFT JOIN idempotency i ON i.client_id = q.cid AND i.client_trx_id = q.trx \
     LEFT JOIN products pr ON pr.product_code = q.pc \
     LEFT JOIN packs p ON p.product_code = q.pc AND p.serial = q.sn \
     LEFT JOIN batches b ON b.product_code = p.product_code AND b.batch = p.batch";

impl ContextStore for PgStore {
    fn pack_context(
        &self,
        idempotency_key: Option<(&ClientId, &ClientTrxId)>,
        product_code: &ProductCode,
        serial: &Serial,
        batch: &Batch,
    ) -> BoxFuture<'_, StoreResult<PackContext>> {
        let product_code = product_code.clone();
        let serial = serial.clone();
        let batch = batch.clone();
        let (cid, trx) = match idempotency_key {
            Some((c, t)) => (Some(c.clone()), Some(t.clone())),
            None => (None, None),
        };
        Box::pin(async move {
            let params = vec![
                p(cid.as_ref().map(|c| c.as_str().to_owned())),
                p(trx.as_ref().map(|t| t.as_str().to_owned())),
                p(product_code.as_str().to_owned()),
                p(serial.as_str().to_owned()),
                p(batch.as_str().to_owned()),
            ];
            let row = self
                .pool
                .rows(CONTEXT_SQL, params, |r| Ok(r.clone()))
                .await?
                .pop()
                .ok_or_else(|| StoreError::Corrupt("the context query returned no row".into()))?;
            let r = R(&row);
            let mut ctx = PackContext::default();
            if let (Some(cid), Some(trx), Some(status)) = (cid, trx, r.opt_int(1)?) {
                let status = u16::try_from(status).map_err(|_| decode::corrupt("idempotency status"))?;
                ctx.idempotency = Some(IdempotencyRecord {
                    client_id: cid,
                    client_trx_id: trx,
                    request_hash: decode::hash(r.bytes(0)?)?,
                    status,
                    response: r.text(2)?,
                    created_at: Timestamp::from_unix_millis(r.int(3)?),
                });
                return Ok(ctx);
            }
            if r.opt_text(4)?.is_none() {
                return Ok(ctx);
            }
            ctx.product = Some(decode::product(&r, 4)?);
            ctx.pack = match r.opt_text(15)? {
                Some(_) => {
                    let pack = decode::stored_pack(&r, 15)?;
                    if r.opt_text(23)?.is_none() {
                        return Err(decode::corrupt(format!(
                            "pack {product_code}/{serial} has no batch {}",
                            pack.pack.batch
                        )));
                    }
                    Some((pack, decode::batch_record(&product_code, &r, 23)?))
                }
                None => None,
            };
            ctx.requested_batch_known = r.boolean(28)?;
            Ok(ctx)
        })
    }
}

fn pack_row(r: &Row) -> StoreResult<StoredPack> {
    decode::stored_pack(&R(r), 0)
}

impl PackStore for PgStore {
    fn pack(
        &self,
        product_code: &ProductCode,
        serial: &Serial,
    ) -> BoxFuture<'_, StoreResult<Option<StoredPack>>> {
        let product_code = product_code.clone();
        let serial = serial.clone();
        Box::pin(async move {
            self.pool.row(
                "SELECT batch, state, last_command, last_location, last_at, synced_from, repeats, version \
                 FROM packs WHERE product_code = $1 AND serial = $2",
                vec![p(product_code.as_str().to_owned()), p(serial.as_str().to_owned())],
                pack_row,
            ).await
        })
    }

    fn pack_count(&self) -> BoxFuture<'_, StoreResult<u64>> {
        Box::pin(async move {
            let n = self.pool.row("SELECT COUNT(*) FROM packs", vec![], |r| R(r).int(0)).await?.unwrap_or(0);
            Ok(n as u64)
        })
    }
}

impl ProductStore for PgStore {
    fn product(&self, product_code: &ProductCode) -> BoxFuture<'_, StoreResult<Option<ProductRecord>>> {
        let product_code = product_code.clone();
        Box::pin(async move {
            self.pool.row(
                "SELECT product_code, scheme, name, common_name, form, strength, pack_type, pack_size, owner, \
                 withdrawn, version FROM products WHERE product_code = $1",
                vec![p(product_code.as_str().to_owned())],
                |r| decode::product(&R(r), 0),
            ).await
        })
    }
}

impl BatchStore for PgStore {
    fn batch(
        &self,
        product_code: &ProductCode,
        batch: &Batch,
    ) -> BoxFuture<'_, StoreResult<Option<BatchRecord>>> {
        let product_code = product_code.clone();
        let batch = batch.clone();
        Box::pin(async move {
            let rows = self
                .pool
                .rows(
                    "SELECT product_code, batch, expiry, expiry_year, recalled, markets FROM batches \
                 WHERE product_code = $1 AND batch = $2",
                    vec![p(product_code.as_str().to_owned()), p(batch.as_str().to_owned())],
                    |r| Ok(r.clone()),
                )
                .await?;
            rows.first().map(|r| decode::batch_record(&product_code, &R(r), 1)).transpose()
        })
    }
}

impl AlertStore for PgStore {
    fn alert(&self, id: &AlertId) -> BoxFuture<'_, StoreResult<Option<AlertRecord>>> {
        let id = id.as_str().to_owned();
        Box::pin(async move {
            self.pool
                .row(
                    "SELECT id, code, return_code, market, product_code, serial, batch, location, client_id, \
                 created_at, status, classification, comment, source_key, pack_market, thread, version \
                 FROM alerts WHERE id = $1",
                    vec![p(id.to_owned())],
                    |r| decode::alert(&R(r)),
                )
                .await
        })
    }

    fn alerts(&self, f: &AlertFilter) -> BoxFuture<'_, StoreResult<Vec<AlertRecord>>> {
        let f = f.clone();
        Box::pin(async move {
            self.pool.rows(
                "SELECT id, code, return_code, market, product_code, serial, batch, location, client_id, \
                 created_at, status, classification, comment, source_key, pack_market, thread, version FROM alerts \
                 WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR client_id = $2) \
                 AND ($3::text IS NULL OR product_code = $3) AND ($4::text IS NULL OR id > $4) ORDER BY id LIMIT $5",
                vec![
                    p(f.status.map(|s| s.as_str().to_owned())),
                    p(f.client_id.as_ref().map(|c| c.as_str().to_owned())),
                    p(f.product_code.clone()),
                    p(f.after.as_ref().map(|a| a.as_str().to_owned())),
                    p(f.limit as i64),
                ],
                |r| decode::alert(&R(r)),
            ).await
        })
    }

    fn open_alert_counts(&self) -> BoxFuture<'_, StoreResult<Vec<(openmvs_core::alert::AlertStatus, u64)>>> {
        Box::pin(open_alert_counts(&self.pool))
    }
}

impl AuditStore for PgStore {
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
        Box::pin(console::audit_search(&self.pool, q.clone()))
    }

    fn audit_last_pos(&self) -> BoxFuture<'_, StoreResult<u64>> {
        Box::pin(console::audit_last_pos(&self.pool))
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

impl EngineOutbox for PgStore {
    fn engine_outbox(&self) -> &dyn OutboxQueue {
        &self.outbox
    }
}

impl OutboxStore for PgStore {
    fn due(&self, now: Timestamp, limit: usize) -> BoxFuture<'_, StoreResult<Vec<StoredOutboxMessage>>> {
        self.outbox.due(None, now, limit, None)
    }

    fn claim_due(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredOutboxMessage>>> {
        self.outbox.due(None, now, limit, Some(lease_until))
    }

    fn claim_runs(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredOutboxMessage>>> {
        self.outbox.claim_runs(None, now, limit, lease_until)
    }

    fn delivered(&self, seq: u64) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            self.pool.exec("DELETE FROM outbox WHERE seq = $1", vec![p(seq as i64)]).await.map(|_| ())
        })
    }
}

impl IdempotencyStore for PgStore {
    fn idempotency(
        &self,
        client_id: &ClientId,
        client_trx_id: &ClientTrxId,
    ) -> BoxFuture<'_, StoreResult<Option<IdempotencyRecord>>> {
        let client_id = client_id.as_str().to_owned();
        let client_trx_id = client_trx_id.as_str().to_owned();
        Box::pin(async move {
            let rows = self.pool.rows(
                "SELECT client_id, client_trx_id, request_hash, status, response, created_at FROM idempotency \
                 WHERE client_id = $1 AND client_trx_id = $2",
                vec![p(client_id.to_owned()), p(client_trx_id.to_owned())],
                |r| {
                    let c = R(r);
                    Ok(IdempotencyRecord {
                        client_id: c.text(0)?.into(),
                        client_trx_id: c.text(1)?.into(),
                        request_hash: decode::hash(c.bytes(2)?)?,
                        status: u16::try_from(c.int(3)?).map_err(|_| decode::corrupt("idempotency status"))?,
                        response: c.text(4)?,
                        created_at: Timestamp::from_unix_millis(c.int(5)?),
                    })
                },
            ).await?;
            Ok(rows.into_iter().next())
        })
    }
}

fn bulk_row(r: &Row) -> StoreResult<BulkJob> {
    decode::bulk(&R(r))
}

impl BulkStore for PgStore {
    fn bulk(&self, id: &BulkId) -> BoxFuture<'_, StoreResult<Option<BulkJob>>> {
        let id = id.as_str().to_owned();
        Box::pin(async move {
            self.pool.row(
                "SELECT id, client_id, status, request, done_rows, total_rows, created_at FROM bulk_jobs WHERE id = $1",
                vec![p(id.to_owned())],
                bulk_row,
            ).await
        })
    }

    fn bulk_results(&self, id: &BulkId) -> BoxFuture<'_, StoreResult<Vec<String>>> {
        let id = id.as_str().to_owned();
        Box::pin(async move {
            self.pool
                .rows(
                    "SELECT result FROM bulk_results WHERE bulk_id = $1 ORDER BY row_no",
                    vec![p(id.to_owned())],
                    |r| R(r).text(0),
                )
                .await
        })
    }

    fn unfinished_bulks(&self, limit: usize) -> BoxFuture<'_, StoreResult<Vec<BulkJob>>> {
        Box::pin(async move {
            self.pool
                .rows(
                    "SELECT id, client_id, status, request, done_rows, total_rows, created_at FROM bulk_jobs \
                 WHERE status <> 'DONE' ORDER BY created_at, id LIMIT $1",
                    vec![p(limit as i64)],
                    bulk_row,
                )
                .await
        })
    }

    fn claim_bulk(
        &self,
        id: &BulkId,
        worker: &NodeId,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let id = id.as_str().to_owned();
        let worker = worker.as_str().to_owned();
        Box::pin(async move {
            // The row lock makes concurrent claims take turns; each re-checks the lease it finds.
            let n = self
                .pool
                .exec(
                    "UPDATE bulk_jobs SET owner = $2, lease_until = $3 WHERE id = $1 AND status <> 'DONE' \
                 AND (owner IS NULL OR owner = $2 OR lease_until < $4)",
                    vec![p(id.to_owned()), p(worker.to_owned()), ms(lease_until), ms(now)],
                )
                .await?;
            Ok(n > 0)
        })
    }

    fn release_bulk(&self, id: &BulkId, worker: &NodeId) -> BoxFuture<'_, StoreResult<()>> {
        let id = id.as_str().to_owned();
        let worker = worker.as_str().to_owned();
        Box::pin(async move {
            self.pool
                .exec(
                    "UPDATE bulk_jobs SET owner = NULL, lease_until = NULL WHERE id = $1 AND owner = $2",
                    vec![p(id.to_owned()), p(worker.to_owned())],
                )
                .await
                .map(|_| ())
        })
    }
}

impl ClientStore for PgStore {
    fn client(&self, client_id: &ClientId) -> BoxFuture<'_, StoreResult<Option<ClientRecord>>> {
        let client_id = client_id.as_str().to_owned();
        Box::pin(async move {
            self.pool.row(
                "SELECT client_id, secret_hash, role, market, location, name, created_at, disabled, last_used_at \
                 FROM clients WHERE client_id = $1",
                vec![p(client_id.to_owned())],
                |r| decode::client(&R(r)),
            ).await
        })
    }

    fn clients(&self) -> BoxFuture<'_, StoreResult<Vec<ClientRecord>>> {
        Box::pin(async move {
            self.pool.rows(
                "SELECT client_id, secret_hash, role, market, location, name, created_at, disabled, last_used_at \
                 FROM clients ORDER BY client_id",
                vec![],
                |r| decode::client(&R(r)),
            ).await
        })
    }

    fn disabled_clients(&self) -> BoxFuture<'_, StoreResult<Vec<ClientId>>> {
        Box::pin(async move {
            self.pool
                .rows("SELECT client_id FROM clients WHERE disabled ORDER BY client_id", vec![], |r| {
                    R(r).text(0).map(ClientId::from)
                })
                .await
        })
    }

    fn keys(&self) -> BoxFuture<'_, StoreResult<Vec<KeyRecord>>> {
        Box::pin(async move {
            self.pool.rows(
                "SELECT kid, secret, created_at, active, retired_at, revoked_at FROM signing_keys ORDER BY created_at, kid",
                vec![],
                |r| decode::key(&R(r)),
            ).await
        })
    }
}

/// The alerts not closed, per status, in the `alerts` table of either store
/// ([`decode::OPEN_ALERT_COUNTS`]).
pub(crate) async fn open_alert_counts(
    pool: &Pool,
) -> StoreResult<Vec<(openmvs_core::alert::AlertStatus, u64)>> {
    let rows = pool.rows(decode::OPEN_ALERT_COUNTS, vec![], |r| Ok((R(r).text(0)?, R(r).int(1)?))).await?;
    decode::open_alert_counts(&rows)
}
