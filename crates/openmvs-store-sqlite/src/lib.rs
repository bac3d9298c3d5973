//! The embedded storage engine: SQLite (bundled) in WAL mode with `synchronous=FULL`.
//!
//! One writer thread owns the write connection and group-commits (see [`writer`]); reads use a
//! small pool of read-only connections on tokio's blocking pool (never on an async worker) and
//! never wait for the writer, because WAL readers see the last committed state while a write is
//! in progress.

pub mod backup;
mod codec;
mod console;
mod engine;
pub mod hub;
mod outbox;
mod schema;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use openmvs_audit::{Checkpoint, Sealed};
use openmvs_core::ids::{AlertId, Batch, BulkId, ClientId, ClientTrxId, ProductCode, Serial};
use openmvs_core::time::{Clock, Timestamp};
use openmvs_store::*;
use rusqlite::{Connection, OptionalExtension, params};

use engine::{Engine, Start};
pub use writer::AuditSigner;

use crate::codec::*;

/// How many units of work may wait for the writer before new ones are refused as overload.
pub const QUEUE_BOUND: usize = 16_384;
/// The most idle read connections kept open for reads on the calling thread (while a store opens).
const MAX_IDLE_READERS: usize = 4;

/// How many reader threads (each with a read connection) an open store runs: twice the cores the
/// process may use, at least 4 (a read may wait for the disk) and at most 16.
fn reader_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    (2 * cores).clamp(4, 16)
}

/// Options for opening a store.
pub struct Options {
    /// The database file.
    pub path: PathBuf,
    /// The key that signs audit checkpoints.
    pub signer: Arc<AuditSigner>,
    /// The clock for checkpoint times and outbox scheduling.
    pub clock: Arc<dyn Clock>,
    /// Called with the size of every committed group (for metrics).
    pub on_group: Option<Arc<dyn Fn(usize) + Send + Sync>>,
    /// When audit checkpoints are signed, and who hears of each.
    pub checkpoints: CheckpointOptions,
}

/// The SQLite engine.
pub struct SqliteStore {
    engine: Engine<UnitOfWork>,
}

console::sqlite_console!(SqliteStore);

/// Memory-mapped reads: pages are read from the mapping instead of being copied in by `pread`.
const MMAP_BYTES: i64 = 1 << 30;
/// How often the checkpointer copies the WAL back into the database file.
const WAL_CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    // The writer's page cache is small on purpose: SQLite walks all of it at the end of every
    // write transaction, so a large one costs more per commit than it saves; reads of pages not
    // in it come from the memory map.
    // The writer does not checkpoint inline (wal_autocheckpoint = 0): a checkpoint copies pages and
    // fsyncs the database file, and doing it on the commit path would stall every waiting request.
    // A checkpointer thread does it in the background instead.
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000; \
         PRAGMA foreign_keys = OFF; PRAGMA cache_size = -4096; PRAGMA mmap_size = {MMAP_BYTES}; \
         PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = {WAL_RESTART_BYTES};"
    ))
}

/// Past this size the writer makes the WAL start over from its beginning.
pub(crate) const WAL_RESTART_BYTES: u64 = 256 << 20;

/// Copies the WAL into the database file in the background, without blocking the writer or readers
/// (PASSIVE), until `stop` is set.
///
/// Under constant load a passive checkpoint never lets the WAL start over (some reader always
/// uses it, and the writer always appends), so the file would grow without end, and every frame
/// appended to new blocks makes the file system zero them first. The writer therefore restarts
/// the WAL itself once it passes [`WAL_RESTART_BYTES`] (see `Writer::restart_wal`); this thread
/// keeps what that has left to copy small.
fn checkpointer(path: PathBuf, stop: Arc<std::sync::atomic::AtomicBool>, slot: engine::CheckpointConn) {
    use std::sync::atomic::Ordering;
    let mut warned = false;
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(WAL_CHECKPOINT_EVERY);
        let mut conn = slot.lock().unwrap_or_else(|p| p.into_inner());
        // Emptied by the writer when it opens its own connection again (`Writer::reopen_if_needed`).
        if conn.is_none() {
            match Connection::open(&path) {
                Ok(c) => {
                    let _ = c.execute_batch("PRAGMA busy_timeout = 50; PRAGMA wal_autocheckpoint = 0;");
                    *conn = Some(c);
                    warned = false;
                }
                Err(e) => {
                    if !warned {
                        tracing::error!(error = %e, "the checkpointer cannot open the database; the WAL will grow");
                        warned = true;
                    }
                    continue;
                }
            }
        }
        let Some(c) = conn.as_ref() else { continue };
        if let Err(e) = c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::debug!(error = %e, "background checkpoint did not complete; retrying");
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database, and starts the writer thread.
    pub fn open(opts: Options) -> StoreResult<SqliteStore> {
        let mut conn = engine::open_write_connection(&opts.path)?;
        schema::migrate(&mut conn, opts.clock.now().unix_millis())
            .map_err(sql_err)?
            .map_err(StoreError::Unavailable)?;
        let start = Start {
            path: opts.path,
            signer: opts.signer,
            clock: opts.clock,
            on_group: opts.on_group,
            checkpoints: opts.checkpoints,
            name: "openmvs-sqlite",
        };
        Ok(SqliteStore { engine: Engine::start(conn, start)? })
    }

    /// The schema version this build writes.
    pub fn schema_version() -> i64 {
        schema::LATEST
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        self.engine.path()
    }

    /// Opens an existing database for reading only: no migration, no writer. Every write is
    /// refused as unavailable. For inspection and `openmvs audit verify`.
    pub fn open_read_only(path: &Path) -> StoreResult<SqliteStore> {
        let store = SqliteStore { engine: Engine::read_only(path)? };
        // Fail now, not at the first read, if the file is not a database of this build.
        let version: i64 = store.engine.read_now(|c| {
            c.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0))
                .map_err(sql_err)
        })?;
        if version != schema::LATEST {
            return Err(StoreError::Unavailable(format!(
                "{}: schema version {version}, this build reads {}",
                path.display(),
                schema::LATEST
            )));
        }
        Ok(store)
    }

    /// Commits everything queued, signs the open audit tails and stops the writer. Later commits
    /// are refused as unavailable.
    pub fn close(&self) {
        self.engine.close();
    }
}

impl Committer for SqliteStore {
    fn commit(&self, uow: UnitOfWork) -> BoxFuture<'_, StoreResult<Committed>> {
        self.engine.commit(uow)
    }
}

impl ContextStore for SqliteStore {
    fn pack_context(
        &self,
        idempotency_key: Option<(&ClientId, &ClientTrxId)>,
        product_code: &ProductCode,
        serial: &Serial,
        batch: &Batch,
    ) -> BoxFuture<'_, StoreResult<PackContext>> {
        let key = idempotency_key.map(|(c, t)| (c.clone(), t.clone()));
        let (product_code, serial, batch) = (product_code.clone(), serial.clone(), batch.clone());
        // One snapshot: the pack and its batch are read together.
        self.engine.snapshot(move |c| {
            read_context(c, key.as_ref().map(|(c, t)| (c, t)), &product_code, &serial, &batch)
        })
    }
}

fn read_context(
    c: &Connection,
    idempotency_key: Option<(&ClientId, &ClientTrxId)>,
    product_code: &ProductCode,
    serial: &Serial,
    batch: &Batch,
) -> StoreResult<PackContext> {
    let mut ctx = PackContext::default();
    if let Some((client_id, trx)) = idempotency_key {
        ctx.idempotency = read_idempotency(c, client_id, trx)?;
        if ctx.idempotency.is_some() {
            return Ok(ctx);
        }
    }
    ctx.product = read_product(c, product_code)?;
    if ctx.product.is_none() {
        return Ok(ctx);
    }
    ctx.pack = match read_pack(c, product_code, serial)? {
        Some(p) => {
            let b = read_batch(c, product_code, &p.pack.batch)?.ok_or_else(|| {
                corrupt(format!("pack {product_code}/{serial} has no batch {}", p.pack.batch))
            })?;
            Some((p, b))
        }
        None => None,
    };
    ctx.requested_batch_known = match &ctx.pack {
        Some((_, b)) if &b.batch == batch => true,
        _ => read_batch(c, product_code, batch)?.is_some(),
    };
    Ok(ctx)
}

fn read_pack(c: &Connection, product_code: &ProductCode, serial: &Serial) -> StoreResult<Option<StoredPack>> {
    let mut s = c
        .prepare_cached(
            "SELECT batch, state, last_command, last_location, last_at, synced_from, repeats, version \
             FROM packs WHERE product_code = ?1 AND serial = ?2",
        )
        .map_err(sql_err)?;
    let mut rows = s.query(params![product_code.as_str(), serial.as_str()]).map_err(sql_err)?;
    match rows.next().map_err(sql_err)? {
        Some(r) => Ok(Some(stored_pack(r)?)),
        None => Ok(None),
    }
}

fn read_product(c: &Connection, product_code: &ProductCode) -> StoreResult<Option<ProductRecord>> {
    let mut s = c
        .prepare_cached(
            "SELECT product_code, scheme, name, common_name, form, strength, pack_type, pack_size, owner, \
             withdrawn, version FROM products WHERE product_code = ?1",
        )
        .map_err(sql_err)?;
    let mut rows = s.query(params![product_code.as_str()]).map_err(sql_err)?;
    match rows.next().map_err(sql_err)? {
        Some(r) => Ok(Some(product(r)?)),
        None => Ok(None),
    }
}

fn read_batch(c: &Connection, product_code: &ProductCode, batch: &Batch) -> StoreResult<Option<BatchRecord>> {
    let mut s = c
        .prepare_cached(
            "SELECT batch, expiry, expiry_year, recalled, markets FROM batches \
             WHERE product_code = ?1 AND batch = ?2",
        )
        .map_err(sql_err)?;
    let mut rows = s.query(params![product_code.as_str(), batch.as_str()]).map_err(sql_err)?;
    match rows.next().map_err(sql_err)? {
        Some(r) => Ok(Some(batch_record(product_code, r)?)),
        None => Ok(None),
    }
}

fn read_idempotency(
    c: &Connection,
    client_id: &ClientId,
    client_trx_id: &ClientTrxId,
) -> StoreResult<Option<IdempotencyRecord>> {
    c.prepare_cached(
        "SELECT request_hash, status, response, created_at FROM idempotency \
         WHERE client_id = ?1 AND client_trx_id = ?2",
    )
    .and_then(|mut s| {
        s.query_row(params![client_id.as_str(), client_trx_id.as_str()], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, u16>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(3)?))
        })
        .optional()
    })
    .map_err(sql_err)?
    .map(|(h, status, response, at)| {
        Ok(IdempotencyRecord {
            client_id: client_id.clone(),
            client_trx_id: client_trx_id.clone(),
            request_hash: hash(h)?,
            status,
            response,
            created_at: Timestamp::from_unix_millis(at),
        })
    })
    .transpose()
}

impl PackStore for SqliteStore {
    fn pack(
        &self,
        product_code: &ProductCode,
        serial: &Serial,
    ) -> BoxFuture<'_, StoreResult<Option<StoredPack>>> {
        let (product_code, serial) = (product_code.clone(), serial.clone());
        self.engine.read(move |c| read_pack(c, &product_code, &serial))
    }

    fn pack_count(&self) -> BoxFuture<'_, StoreResult<u64>> {
        self.engine.read(move |c| {
            let n: i64 = c.query_row("SELECT COUNT(*) FROM packs", [], |r| r.get(0)).map_err(sql_err)?;
            Ok(n as u64)
        })
    }
}

impl ProductStore for SqliteStore {
    fn product(&self, product_code: &ProductCode) -> BoxFuture<'_, StoreResult<Option<ProductRecord>>> {
        let product_code = product_code.clone();
        self.engine.read(move |c| read_product(c, &product_code))
    }
}

impl BatchStore for SqliteStore {
    fn batch(
        &self,
        product_code: &ProductCode,
        batch: &Batch,
    ) -> BoxFuture<'_, StoreResult<Option<BatchRecord>>> {
        let (product_code, batch) = (product_code.clone(), batch.clone());
        self.engine.read(move |c| read_batch(c, &product_code, &batch))
    }
}

impl AlertStore for SqliteStore {
    fn alert(&self, id: &AlertId) -> BoxFuture<'_, StoreResult<Option<AlertRecord>>> {
        let id = id.clone();
        self.engine.read(move |c| {
            let mut s = c
                .prepare_cached(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?1"))
                .map_err(sql_err)?;
            let mut rows = s.query(params![id.as_str()]).map_err(sql_err)?;
            match rows.next().map_err(sql_err)? {
                Some(r) => Ok(Some(alert(r)?)),
                None => Ok(None),
            }
        })
    }

    fn alerts(&self, f: &AlertFilter) -> BoxFuture<'_, StoreResult<Vec<AlertRecord>>> {
        let f = f.clone();
        self.engine.read(move |c| {
            let mut s = c
                .prepare_cached(&format!(
                    "SELECT {ALERT_COLUMNS} FROM alerts WHERE (?1 IS NULL OR status = ?1) \
                     AND (?2 IS NULL OR client_id = ?2) AND (?3 IS NULL OR product_code = ?3) \
                     AND (?4 IS NULL OR id > ?4) ORDER BY id LIMIT ?5"
                ))
                .map_err(sql_err)?;
            let mut rows = s
                .query(params![
                    f.status.map(|s| s.as_str()),
                    f.client_id.as_ref().map(ClientId::as_str),
                    f.product_code,
                    f.after.as_ref().map(AlertId::as_str),
                    f.limit as i64
                ])
                .map_err(sql_err)?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().map_err(sql_err)? {
                out.push(alert(r)?);
            }
            Ok(out)
        })
    }

    fn open_alert_counts(&self) -> BoxFuture<'_, StoreResult<Vec<(openmvs_core::alert::AlertStatus, u64)>>> {
        self.engine.read(open_alert_counts)
    }
}

impl AuditStore for SqliteStore {
    fn audit_by_subject(&self, subject: &str) -> BoxFuture<'_, StoreResult<Vec<Sealed>>> {
        let subject = subject.to_owned();
        self.engine.read(move |c| {
            let mut s = c
                .prepare_cached(&format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE subject = ?1 ORDER BY pos"))
                .map_err(sql_err)?;
            let mut rows = s.query(params![subject]).map_err(sql_err)?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().map_err(sql_err)? {
                out.push(audit(r)?.1);
            }
            Ok(out)
        })
    }

    fn audit_search(&self, q: &AuditQuery) -> BoxFuture<'_, StoreResult<Vec<(u64, Sealed)>>> {
        let q = q.clone();
        self.engine.read(move |c| console::audit_search(c, &q))
    }

    fn audit_last_pos(&self) -> BoxFuture<'_, StoreResult<u64>> {
        self.engine.read(console::audit_last_pos)
    }

    fn audit_page(&self, after: u64, limit: usize) -> BoxFuture<'_, StoreResult<Vec<(u64, Sealed)>>> {
        self.engine.read(move |c| {
            let mut s = c
                .prepare_cached(&format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit WHERE pos > ?1 ORDER BY pos LIMIT ?2"
                ))
                .map_err(sql_err)?;
            let mut rows = s.query(params![after as i64, limit as i64]).map_err(sql_err)?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().map_err(sql_err)? {
                out.push(audit(r)?);
            }
            Ok(out)
        })
    }

    fn checkpoints(&self) -> BoxFuture<'_, StoreResult<Vec<Checkpoint>>> {
        self.engine.read(move |c| {
            let mut s = c
                .prepare_cached(
                    "SELECT market, seq, hash, at, key_id, signature FROM audit_checkpoints ORDER BY market, seq",
                )
                .map_err(sql_err)?;
            let mut rows = s.query([]).map_err(sql_err)?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().map_err(sql_err)? {
                out.push(checkpoint(r)?);
            }
            Ok(out)
        })
    }
}

impl EngineOutbox for SqliteStore {
    fn engine_outbox(&self) -> &dyn OutboxQueue {
        &self.engine
    }
}

impl OutboxStore for SqliteStore {
    fn due(&self, now: Timestamp, limit: usize) -> BoxFuture<'_, StoreResult<Vec<StoredOutboxMessage>>> {
        self.engine.outbox_due(None, now, limit, None)
    }

    fn claim_due(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredOutboxMessage>>> {
        self.engine.outbox_due(None, now, limit, Some(lease_until))
    }

    fn claim_runs(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredOutboxMessage>>> {
        self.engine.outbox_claim_runs(None, now, limit, lease_until)
    }

    fn delivered(&self, seq: u64) -> BoxFuture<'_, StoreResult<()>> {
        self.engine.exec(move |c| {
            c.execute("DELETE FROM outbox WHERE seq = ?1", params![seq as i64]).map_err(sql_err)?;
            Ok(())
        })
    }
}

impl IdempotencyStore for SqliteStore {
    fn idempotency(
        &self,
        client_id: &ClientId,
        client_trx_id: &ClientTrxId,
    ) -> BoxFuture<'_, StoreResult<Option<IdempotencyRecord>>> {
        let (client_id, client_trx_id) = (client_id.clone(), client_trx_id.clone());
        self.engine.read(move |c| read_idempotency(c, &client_id, &client_trx_id))
    }
}

impl BulkStore for SqliteStore {
    fn bulk(&self, id: &BulkId) -> BoxFuture<'_, StoreResult<Option<BulkJob>>> {
        let id = id.clone();
        self.engine.read(move |c| {
            let mut s = c
                .prepare_cached(
                    "SELECT id, client_id, status, request, done_rows, total_rows, created_at FROM bulk_jobs WHERE id = ?1",
                )
                .map_err(sql_err)?;
            let mut rows = s.query(params![id.as_str()]).map_err(sql_err)?;
            match rows.next().map_err(sql_err)? {
                Some(r) => Ok(Some(bulk(r)?)),
                None => Ok(None),
            }
        })
    }

    fn bulk_results(&self, id: &BulkId) -> BoxFuture<'_, StoreResult<Vec<String>>> {
        let id = id.clone();
        self.engine.read(move |c| {
            let mut s = c
                .prepare_cached("SELECT result FROM bulk_results WHERE bulk_id = ?1 ORDER BY row")
                .map_err(sql_err)?;
            let rows = s.query_map(params![id.as_str()], |r| r.get::<_, String>(0)).map_err(sql_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sql_err)
        })
    }

    fn unfinished_bulks(&self, limit: usize) -> BoxFuture<'_, StoreResult<Vec<BulkJob>>> {
        self.engine.read(move |c| {
            let mut s = c
                .prepare_cached(
                    "SELECT id, client_id, status, request, done_rows, total_rows, created_at FROM bulk_jobs \
                     WHERE status != 'DONE' ORDER BY created_at, id LIMIT ?1",
                )
                .map_err(sql_err)?;
            let mut rows = s.query(params![limit as i64]).map_err(sql_err)?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().map_err(sql_err)? {
                out.push(bulk(r)?);
            }
            Ok(out)
        })
    }

    fn claim_bulk(
        &self,
        id: &BulkId,
        worker: &NodeId,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let (id, worker) = (id.clone(), worker.clone());
        self.engine.exec(move |c| {
            let n = c
                .execute(
                    "UPDATE bulk_jobs SET owner = ?2, lease_until = ?3 WHERE id = ?1 AND status != 'DONE' \
                     AND (owner IS NULL OR owner = ?2 OR lease_until < ?4)",
                    params![id.as_str(), worker.as_str(), lease_until.unix_millis(), now.unix_millis()],
                )
                .map_err(sql_err)?;
            Ok(n > 0)
        })
    }

    fn release_bulk(&self, id: &BulkId, worker: &NodeId) -> BoxFuture<'_, StoreResult<()>> {
        let (id, worker) = (id.clone(), worker.clone());
        self.engine.exec(move |c| {
            c.execute(
                "UPDATE bulk_jobs SET owner = NULL, lease_until = NULL WHERE id = ?1 AND owner = ?2",
                params![id.as_str(), worker.as_str()],
            )
            .map_err(sql_err)?;
            Ok(())
        })
    }
}

impl ClientStore for SqliteStore {
    fn client(&self, client_id: &ClientId) -> BoxFuture<'_, StoreResult<Option<ClientRecord>>> {
        let client_id = client_id.clone();
        self.engine.read(move |c| {
            let mut s = c
                .prepare_cached(
                    "SELECT client_id, secret_hash, role, market, location, name, created_at, disabled, \
                     last_used_at FROM clients WHERE client_id = ?1",
                )
                .map_err(sql_err)?;
            let mut rows = s.query(params![client_id.as_str()]).map_err(sql_err)?;
            match rows.next().map_err(sql_err)? {
                Some(r) => Ok(Some(client(r)?)),
                None => Ok(None),
            }
        })
    }

    fn clients(&self) -> BoxFuture<'_, StoreResult<Vec<ClientRecord>>> {
        self.engine.read(move |c| {
            let mut s = c
                .prepare_cached(
                    "SELECT client_id, secret_hash, role, market, location, name, created_at, disabled, \
                     last_used_at FROM clients ORDER BY client_id",
                )
                .map_err(sql_err)?;
            let mut rows = s.query([]).map_err(sql_err)?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().map_err(sql_err)? {
                out.push(client(r)?);
            }
            Ok(out)
        })
    }

    fn disabled_clients(&self) -> BoxFuture<'_, StoreResult<Vec<ClientId>>> {
        self.engine.read(move |c| {
            let mut s = c
                .prepare_cached("SELECT client_id FROM clients WHERE disabled = 1 ORDER BY client_id")
                .map_err(sql_err)?;
            let rows = s.query_map([], |r| r.get::<_, String>(0).map(ClientId::from)).map_err(sql_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sql_err)
        })
    }

    fn keys(&self) -> BoxFuture<'_, StoreResult<Vec<KeyRecord>>> {
        self.engine.read(move |c| {
            let mut s = c
                .prepare_cached(
                    "SELECT kid, secret, created_at, active, retired_at, revoked_at FROM signing_keys \
                     ORDER BY created_at, kid",
                )
                .map_err(sql_err)?;
            let mut rows = s.query([]).map_err(sql_err)?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().map_err(sql_err)? {
                out.push(key(r)?);
            }
            Ok(out)
        })
    }
}
