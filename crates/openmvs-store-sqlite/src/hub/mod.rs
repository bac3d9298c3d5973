//! The hub's embedded storage engine: its own SQLite file (e.g. `hub.db`), with the national
//! engine's design and its writer. WAL mode with `synchronous=FULL`; one writer thread
//! group-commits each [`HubUnitOfWork`] in its own savepoint ([`crate::writer`], shared with the
//! national engine); pooled read-only connections never wait for it; a checkpointer thread copies
//! the WAL back in the background; the hub's audit trail is sealed into one chain and signed.
//!
//! The write connection runs with `secure_delete`: a delivered serial chunk is overwritten with
//! zeros when its row is deleted, instead of lingering in a free page of the database file
//! (DR Art 33(1)). Until the WAL is checkpointed and restarted, an old copy of the page may remain
//! there; a cleanly closed store truncates the WAL.

mod codec;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use openmvs_audit::{Checkpoint, Sealed};
use openmvs_core::ids::{Batch, ProductCode};
use openmvs_core::time::{Clock, Timestamp};
use openmvs_store::hub::*;
use openmvs_store::*;
use rusqlite::{Connection, OpenFlags, Row, params};
use tokio::sync::oneshot;

use crate::codec::{AUDIT_COLUMNS, OUTBOX_COLUMNS, audit, checkpoint, outbox, sql_err};
use crate::writer::{AuditSigner, Job, Writer};
use crate::{MAX_IDLE_READERS, MMAP_BYTES, QUEUE_BOUND};
use codec::{ALERT_COLUMNS, OBP_COLUMNS, UPLOAD_COLUMNS};

/// Options for opening the hub's store.
pub struct HubOptions {
    /// The database file, e.g. `<data dir>/hub.db`.
    pub path: PathBuf,
    /// The key that signs audit checkpoints.
    pub signer: Arc<AuditSigner>,
    /// The clock for checkpoint times and outbox scheduling.
    pub clock: Arc<dyn Clock>,
    /// Called with the size of every committed group (for metrics).
    pub on_group: Option<Arc<dyn Fn(usize) + Send + Sync>>,
}

/// The hub's SQLite engine.
pub struct SqliteHubStore {
    path: PathBuf,
    tx: Mutex<Option<SyncSender<Job<HubUnitOfWork>>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    checkpointer: Mutex<Option<(Arc<AtomicBool>, JoinHandle<()>)>>,
    readers: Mutex<Vec<Connection>>,
}

impl SqliteHubStore {
    /// Opens (creating if needed) and migrates the hub database, and starts the writer thread.
    pub fn open(opts: HubOptions) -> StoreResult<SqliteHubStore> {
        if let Some(dir) = opts.path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Unavailable(format!("{}: {e}", dir.display())))?;
        }
        let mut conn = Connection::open(&opts.path).map_err(sql_err)?;
        crate::configure(&conn).map_err(sql_err)?;
        conn.execute_batch("PRAGMA secure_delete = ON;").map_err(sql_err)?;
        schema::migrate(&mut conn, opts.clock.now().unix_millis())
            .map_err(sql_err)?
            .map_err(StoreError::Unavailable)?;
        let writer: Writer<HubUnitOfWork> = Writer::new(conn, opts.signer, opts.clock, opts.on_group)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE_BOUND);
        let handle = std::thread::Builder::new()
            .name("openmvs-hub-writer".into())
            .spawn(move || writer.run(&rx))
            .map_err(|e| StoreError::Unavailable(format!("starting the hub writer thread: {e}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (opts.path.clone(), stop.clone());
        let cp = std::thread::Builder::new()
            .name("openmvs-hub-checkpointer".into())
            .spawn(move || crate::checkpointer(p, s))
            .map_err(|e| StoreError::Unavailable(format!("starting the hub checkpointer thread: {e}")))?;
        Ok(SqliteHubStore {
            path: opts.path,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            checkpointer: Mutex::new(Some((stop, cp))),
            readers: Mutex::new(Vec::new()),
        })
    }

    /// The schema version this build writes.
    pub fn schema_version() -> i64 {
        schema::LATEST
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens an existing hub database for reading only: no migration, no writer. Every write is
    /// refused as unavailable. For inspection and audit verification.
    pub fn open_read_only(path: &Path) -> StoreResult<SqliteHubStore> {
        if !path.exists() {
            return Err(StoreError::Unavailable(format!("{}: no such database", path.display())));
        }
        let store = SqliteHubStore {
            path: path.to_owned(),
            tx: Mutex::new(None),
            writer: Mutex::new(None),
            checkpointer: Mutex::new(None),
            readers: Mutex::new(Vec::new()),
        };
        // Fail now, not at the first read, if the file is not a hub database of this build.
        let version = store.read(|c| schema::version(c).map_err(sql_err))?;
        if version != schema::LATEST {
            return Err(StoreError::Unavailable(format!(
                "{}: hub schema version {version}, this build reads {}",
                path.display(),
                schema::LATEST
            )));
        }
        Ok(store)
    }

    /// Commits everything queued, signs the open audit tail and stops the writer. Later commits
    /// are refused as unavailable.
    pub fn close(&self) {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(tx) = tx {
            let (done_tx, done_rx) = std::sync::mpsc::channel();
            if tx.send(Job::Stop(done_tx)).is_ok() {
                let _ = done_rx.recv();
            }
        }
        if let Some(h) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = h.join();
        }
        if let Some((stop, h)) = self.checkpointer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            stop.store(true, Ordering::SeqCst);
            let _ = h.join();
        }
        self.readers.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn send(&self, job: Job<HubUnitOfWork>) -> StoreResult<()> {
        let guard = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let Some(tx) = guard.as_ref() else {
            return Err(StoreError::Unavailable("store is closed".into()));
        };
        match tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(StoreError::Unavailable("write queue is full".into())),
            Err(TrySendError::Disconnected(_)) => Err(StoreError::Unavailable("writer has stopped".into())),
        }
    }

    /// Runs a small write on the writer thread, in its next group, and waits for its answer.
    fn exec<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let (tx, rx) = std::sync::mpsc::channel();
        let (answer_tx, answer_rx) = std::sync::mpsc::channel();
        self.send(Job::Exec(
            Box::new(move |c| {
                let v = f(c)?;
                let _ = answer_tx.send(v);
                Ok(())
            }),
            tx,
        ))?;
        rx.recv().map_err(|_| StoreError::Unavailable("writer has stopped".into()))??;
        answer_rx.recv().map_err(|_| StoreError::Unavailable("writer has stopped".into()))
    }

    /// Runs `f` on a pooled read-only connection.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        let conn = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match conn {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(sql_err)?;
                // A small page cache, as in the national engine: a WAL reader drops it after
                // every commit, and the memory map serves the pages anyway.
                c.execute_batch(&format!(
                    "PRAGMA busy_timeout = 10000; PRAGMA cache_size = -1024; PRAGMA mmap_size = {MMAP_BYTES};"
                ))
                .map_err(sql_err)?;
                c
            }
        };
        let r = f(&conn);
        let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < MAX_IDLE_READERS {
            pool.push(conn);
        }
        r
    }

    /// Runs `f` in one read transaction, so that everything it reads comes from one snapshot.
    fn snapshot<T>(&self, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        self.read(|c| {
            c.prepare_cached("BEGIN").and_then(|mut s| s.execute([])).map_err(sql_err)?;
            let r = f(c);
            let end = c.prepare_cached("COMMIT").and_then(|mut s| s.execute([])).map_err(sql_err);
            let v = r?;
            end?;
            Ok(v)
        })
    }
}

impl Drop for SqliteHubStore {
    fn drop(&mut self) {
        self.close();
    }
}

/// Every row of a cached query, decoded.
fn rows<T>(
    c: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
    f: impl Fn(&Row<'_>) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    let mut s = c.prepare_cached(sql).map_err(sql_err)?;
    let mut rows = s.query(p).map_err(sql_err)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(sql_err)? {
        out.push(f(r)?);
    }
    Ok(out)
}

/// The first row of a cached query, decoded.
fn row<T>(
    c: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
    f: impl Fn(&Row<'_>) -> StoreResult<T>,
) -> StoreResult<Option<T>> {
    let mut s = c.prepare_cached(sql).map_err(sql_err)?;
    let mut rows = s.query(p).map_err(sql_err)?;
    rows.next().map_err(sql_err)?.map(f).transpose()
}

fn number(c: &Connection, sql: &str, p: impl rusqlite::Params) -> StoreResult<u64> {
    let n: i64 = c.prepare_cached(sql).and_then(|mut s| s.query_row(p, |r| r.get(0))).map_err(sql_err)?;
    u64::try_from(n).map_err(|_| crate::codec::corrupt(format!("count {n}")))
}

/// An upload with its markets; run inside a snapshot so that counts and status agree.
fn read_upload(c: &Connection, id: &str) -> StoreResult<Option<UploadRecord>> {
    let Some(mut u) =
        row(c, &format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = ?1"), params![id], codec::upload)?
    else {
        return Ok(None);
    };
    let status = u.status;
    u.markets = rows(
        c,
        "SELECT market, sent, acked FROM upload_markets WHERE upload_id = ?1 ORDER BY market",
        params![id],
        |r| codec::upload_market(status, r),
    )?;
    Ok(Some(u))
}

impl HubCommitter for SqliteHubStore {
    fn commit(&self, uow: HubUnitOfWork) -> BoxFuture<'_, StoreResult<HubCommitted>> {
        let (tx, rx) = oneshot::channel();
        let sent = self.send(Job::Commit(Box::new(uow), tx));
        Box::pin(async move {
            sent?;
            rx.await.map_err(|_| StoreError::Unavailable("writer has stopped".into()))?
        })
    }
}

impl ObpStore for SqliteHubStore {
    fn obp(&self, id: &str) -> StoreResult<Option<ObpRecord>> {
        self.read(|c| {
            row(c, &format!("SELECT {OBP_COLUMNS} FROM obps WHERE id = ?1"), params![id], codec::obp)
        })
    }

    fn obps(&self) -> StoreResult<Vec<ObpRecord>> {
        self.read(|c| rows(c, &format!("SELECT {OBP_COLUMNS} FROM obps ORDER BY id"), [], codec::obp))
    }
}

impl ProductCatalog for SqliteHubStore {
    fn product(&self, product_code: &ProductCode) -> StoreResult<Option<HubProductRecord>> {
        self.read(|c| {
            row(
                c,
                "SELECT product_code, scheme, owner, current_version, created_at, \
                 (SELECT group_concat(market) FROM product_withdrawals w WHERE w.product_code = p.product_code) \
                 FROM products p WHERE product_code = ?1",
                params![product_code.as_str()],
                codec::product,
            )
        })
    }

    fn product_version(
        &self,
        product_code: &ProductCode,
        version: u32,
    ) -> StoreResult<Option<ProductVersionRecord>> {
        self.read(|c| {
            row(
                c,
                "SELECT version, name, common_name, form, strength, pack_type, pack_size, market_data, created_at \
                 FROM product_versions WHERE product_code = ?1 AND version = ?2",
                params![product_code.as_str(), version],
                |r| codec::product_version(product_code, r),
            )
        })
    }
}

impl BatchCatalog for SqliteHubStore {
    fn batch(&self, product_code: &ProductCode, batch: &Batch) -> StoreResult<Option<HubBatchRecord>> {
        self.read(|c| {
            row(
                c,
                "SELECT batch, product_version, expiry, expiry_year, markets, \
                 (SELECT group_concat(market) FROM batch_recalls r \
                  WHERE r.product_code = b.product_code AND r.batch = b.batch) \
                 FROM batches b WHERE product_code = ?1 AND batch = ?2",
                params![product_code.as_str(), batch.as_str()],
                |r| codec::batch_record(product_code, r),
            )
        })
    }
}

impl SerialIndex for SqliteHubStore {
    fn present(&self, product_code: &ProductCode, digests: &[SerialDigest]) -> StoreResult<Vec<usize>> {
        self.snapshot(|c| {
            let mut s = c
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM serial_digests WHERE product_code = ?1 AND digest = ?2)",
                )
                .map_err(sql_err)?;
            let mut out = Vec::new();
            for (i, d) in digests.iter().enumerate() {
                let found: bool = s
                    .query_row(params![product_code.as_str(), d.as_bytes()], |r| r.get(0))
                    .map_err(sql_err)?;
                if found {
                    out.push(i);
                }
            }
            Ok(out)
        })
    }

    fn digest_count(&self, product_code: &ProductCode) -> StoreResult<u64> {
        self.read(|c| {
            number(
                c,
                "SELECT COUNT(*) FROM serial_digests WHERE product_code = ?1",
                params![product_code.as_str()],
            )
        })
    }
}

impl UploadStore for SqliteHubStore {
    fn upload(&self, id: &str) -> StoreResult<Option<UploadRecord>> {
        self.snapshot(|c| read_upload(c, id))
    }

    fn upload_rejections(
        &self,
        id: &str,
        after_line: u64,
        limit: usize,
    ) -> StoreResult<Vec<UploadRejection>> {
        self.read(|c| {
            rows(
                c,
                "SELECT line, serial, reason FROM upload_rejections WHERE upload_id = ?1 AND line > ?2 \
                 ORDER BY line LIMIT ?3",
                params![id, after_line as i64, limit as i64],
                codec::rejection,
            )
        })
    }

    fn unfinished_uploads(&self, limit: usize) -> StoreResult<Vec<UploadRecord>> {
        self.snapshot(|c| {
            let ids = rows(
                c,
                "SELECT id FROM uploads WHERE status = 'RECEIVED' ORDER BY created_at, id LIMIT ?1",
                params![limit as i64],
                |r| r.get::<_, String>(0).map_err(sql_err),
            )?;
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                out.extend(read_upload(c, &id)?);
            }
            Ok(out)
        })
    }
}

impl HubOutboxStore for SqliteHubStore {
    fn due(&self, destination: &str, now: Timestamp, limit: usize) -> StoreResult<Vec<StoredOutboxMessage>> {
        self.read(|c| {
            rows(
                c,
                &format!(
                    "SELECT {OUTBOX_COLUMNS} FROM outbox o WHERE destination = ?1 AND dead = 0 \
                     AND next_attempt_at <= ?2 AND seq = (SELECT MIN(seq) FROM outbox i \
                     WHERE i.destination = o.destination AND i.ordering_key = o.ordering_key AND i.dead = 0) \
                     ORDER BY seq LIMIT ?3"
                ),
                params![destination, now.unix_millis(), limit as i64],
                outbox,
            )
        })
    }

    fn destinations(&self) -> StoreResult<Vec<String>> {
        self.read(|c| {
            rows(c, "SELECT DISTINCT destination FROM outbox WHERE dead = 0 ORDER BY destination", [], |r| {
                r.get::<_, String>(0).map_err(sql_err)
            })
        })
    }

    fn delivered(&self, seq: u64) -> StoreResult<()> {
        self.exec(move |c| writer::delivered(c, seq))
    }

    fn failed(&self, seq: u64, error: &str, next_attempt_at: Timestamp, dead: bool) -> StoreResult<()> {
        let error = error.to_owned();
        self.exec(move |c| writer::failed(c, seq, &error, next_attempt_at.unix_millis(), dead))
    }

    fn dead_letters(&self) -> StoreResult<Vec<StoredOutboxMessage>> {
        self.read(|c| {
            rows(c, &format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE dead = 1 ORDER BY seq"), [], outbox)
        })
    }

    fn replay(&self, seq: u64, now: Timestamp) -> StoreResult<bool> {
        self.exec(move |c| writer::replay(c, seq, now.unix_millis()))
    }

    fn pending(&self) -> StoreResult<u64> {
        self.read(|c| number(c, "SELECT COUNT(*) FROM outbox WHERE dead = 0", []))
    }
}

impl HubAlertStore for SqliteHubStore {
    fn alert(&self, id: &str) -> StoreResult<Option<HubAlertRecord>> {
        self.read(|c| {
            row(c, &format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?1"), params![id], codec::alert)
        })
    }

    fn alerts(&self, f: &HubAlertFilter) -> StoreResult<Vec<HubAlertRecord>> {
        self.read(|c| {
            rows(
                c,
                &format!(
                    "SELECT {ALERT_COLUMNS} FROM alerts WHERE (?1 IS NULL OR obp = ?1) \
                     AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR product_code = ?3) \
                     AND (?4 IS NULL OR id > ?4) ORDER BY id LIMIT ?5"
                ),
                params![f.obp, f.status.map(|s| s.as_str()), f.product_code, f.after, f.limit as i64],
                codec::alert,
            )
        })
    }
}

impl AuditStore for SqliteHubStore {
    fn audit_by_subject(&self, subject: &str) -> StoreResult<Vec<Sealed>> {
        self.read(|c| {
            rows(
                c,
                &format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE subject = ?1 ORDER BY pos"),
                params![subject],
                |r| Ok(audit(r)?.1),
            )
        })
    }

    fn audit_page(&self, after: u64, limit: usize) -> StoreResult<Vec<(u64, Sealed)>> {
        self.read(|c| {
            rows(
                c,
                &format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE pos > ?1 ORDER BY pos LIMIT ?2"),
                params![after as i64, limit as i64],
                audit,
            )
        })
    }

    fn checkpoints(&self) -> StoreResult<Vec<Checkpoint>> {
        self.read(|c| {
            rows(
                c,
                "SELECT market, seq, hash, at, key_id, signature FROM audit_checkpoints ORDER BY market, seq",
                [],
                checkpoint,
            )
        })
    }
}
