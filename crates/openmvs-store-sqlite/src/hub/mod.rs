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
pub(crate) mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use openmvs_audit::{Checkpoint, Sealed};
use openmvs_core::ids::{AlertId, Batch, ObpId, ProductCode, UploadId};
use openmvs_core::time::{Clock, Timestamp};
use openmvs_store::hub::*;
use openmvs_store::*;
use rusqlite::{Connection, Row, params};

use crate::codec::{AUDIT_COLUMNS, audit, checkpoint, sql_err};
use crate::engine::{Engine, Start, open_write_connection};
use crate::writer::AuditSigner;
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
    /// When the hub's audit checkpoints are signed, and who hears of each.
    pub checkpoints: CheckpointOptions,
}

/// The hub's SQLite engine.
pub struct SqliteHubStore {
    engine: Engine<HubUnitOfWork>,
    /// One process owns the database file, so its critical sections are in-process locks.
    sections: std::sync::Mutex<std::collections::HashMap<&'static str, Arc<tokio::sync::Mutex<()>>>>,
}

crate::console::sqlite_console!(SqliteHubStore);

impl SqliteHubStore {
    /// Opens (creating if needed) and migrates the hub database, and starts the writer thread.
    pub fn open(opts: HubOptions) -> StoreResult<SqliteHubStore> {
        let mut conn = open_write_connection(&opts.path)?;
        conn.execute_batch("PRAGMA secure_delete = ON;").map_err(sql_err)?;
        schema::migrate(&mut conn, opts.clock.now().unix_millis())
            .map_err(sql_err)?
            .map_err(StoreError::Unavailable)?;
        let start = Start {
            path: opts.path,
            signer: opts.signer,
            clock: opts.clock,
            on_group: opts.on_group,
            checkpoints: opts.checkpoints,
            name: "openmvs-hub",
        };
        Ok(SqliteHubStore { engine: Engine::start(conn, start)?, sections: Default::default() })
    }

    /// The schema version this build writes.
    pub fn schema_version() -> i64 {
        schema::LATEST
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        self.engine.path()
    }

    /// Opens an existing hub database for reading only: no migration, no writer. Every write is
    /// refused as unavailable. For inspection and audit verification.
    pub fn open_read_only(path: &Path) -> StoreResult<SqliteHubStore> {
        let store = SqliteHubStore { engine: Engine::read_only(path)?, sections: Default::default() };
        // Fail now, not at the first read, if the file is not a hub database of this build.
        let version = store.engine.read_now(|c| schema::version(c).map_err(sql_err))?;
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
        self.engine.close();
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
        self.engine.commit(uow)
    }
}

impl HubSections for SqliteHubStore {
    fn enter(&self, name: &'static str) -> BoxFuture<'_, StoreResult<SectionGuard>> {
        let lock = self.sections.lock().unwrap_or_else(|e| e.into_inner()).entry(name).or_default().clone();
        Box::pin(async move {
            let guard: SectionGuard = Box::new(lock.lock_owned().await);
            Ok(guard)
        })
    }
}

impl ObpStore for SqliteHubStore {
    fn obp(&self, id: &ObpId) -> BoxFuture<'_, StoreResult<Option<ObpRecord>>> {
        let id = id.clone();
        self.engine.read(move |c| {
            row(c, &format!("SELECT {OBP_COLUMNS} FROM obps WHERE id = ?1"), params![id.as_str()], codec::obp)
        })
    }

    fn obps(&self) -> BoxFuture<'_, StoreResult<Vec<ObpRecord>>> {
        self.engine
            .read(move |c| rows(c, &format!("SELECT {OBP_COLUMNS} FROM obps ORDER BY id"), [], codec::obp))
    }
}

impl ProductCatalog for SqliteHubStore {
    fn product(&self, product_code: &ProductCode) -> BoxFuture<'_, StoreResult<Option<HubProductRecord>>> {
        let product_code = product_code.clone();
        self.engine.read(move |c| {
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
    ) -> BoxFuture<'_, StoreResult<Option<ProductVersionRecord>>> {
        let product_code = product_code.clone();
        self.engine.read(move |c| {
            row(
                c,
                "SELECT version, name, common_name, form, strength, pack_type, pack_size, market_data, created_at \
                 FROM product_versions WHERE product_code = ?1 AND version = ?2",
                params![product_code.as_str(), version],
                |r| codec::product_version(&product_code, r),
            )
        })
    }
}

impl BatchCatalog for SqliteHubStore {
    fn batch(
        &self,
        product_code: &ProductCode,
        batch: &Batch,
    ) -> BoxFuture<'_, StoreResult<Option<HubBatchRecord>>> {
        let (product_code, batch) = (product_code.clone(), batch.clone());
        self.engine.read(move |c| {
            row(
                c,
                "SELECT batch, product_version, expiry, expiry_year, markets, \
                 (SELECT group_concat(market) FROM batch_recalls r \
                  WHERE r.product_code = b.product_code AND r.batch = b.batch) \
                 FROM batches b WHERE product_code = ?1 AND batch = ?2",
                params![product_code.as_str(), batch.as_str()],
                |r| codec::batch_record(&product_code, r),
            )
        })
    }
}

impl SerialIndex for SqliteHubStore {
    fn present(
        &self,
        product_code: &ProductCode,
        digests: &[SerialDigest],
    ) -> BoxFuture<'_, StoreResult<Vec<usize>>> {
        let (product_code, digests) = (product_code.clone(), digests.to_vec());
        self.engine.snapshot(move |c| {
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

    fn digest_count(&self, product_code: &ProductCode) -> BoxFuture<'_, StoreResult<u64>> {
        let product_code = product_code.clone();
        self.engine.read(move |c| {
            number(
                c,
                "SELECT COUNT(*) FROM serial_digests WHERE product_code = ?1",
                params![product_code.as_str()],
            )
        })
    }
}

impl UploadStore for SqliteHubStore {
    fn upload(&self, id: &UploadId) -> BoxFuture<'_, StoreResult<Option<UploadRecord>>> {
        let id = id.clone();
        self.engine.snapshot(move |c| read_upload(c, id.as_str()))
    }

    fn upload_rejections(
        &self,
        id: &UploadId,
        after_line: u64,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<UploadRejection>>> {
        let id = id.clone();
        self.engine.read(move |c| {
            rows(
                c,
                "SELECT line, serial, reason FROM upload_rejections WHERE upload_id = ?1 AND line > ?2 \
                 ORDER BY line LIMIT ?3",
                params![id.as_str(), after_line as i64, limit as i64],
                codec::rejection,
            )
        })
    }

    fn unfinished_uploads(&self, limit: usize) -> BoxFuture<'_, StoreResult<Vec<UploadRecord>>> {
        self.engine.snapshot(move |c| {
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

impl EngineOutbox for SqliteHubStore {
    fn engine_outbox(&self) -> &dyn OutboxQueue {
        &self.engine
    }
}

impl HubOutboxStore for SqliteHubStore {
    fn due(
        &self,
        destination: &str,
        now: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredOutboxMessage>>> {
        self.engine.outbox_due(Some(destination), now, limit, None)
    }

    fn claim_due(
        &self,
        destination: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredOutboxMessage>>> {
        self.engine.outbox_due(Some(destination), now, limit, Some(lease_until))
    }

    fn claim_runs(
        &self,
        destination: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredOutboxMessage>>> {
        self.engine.outbox_claim_runs(Some(destination), now, limit, lease_until)
    }

    fn destinations(&self) -> BoxFuture<'_, StoreResult<Vec<String>>> {
        self.engine.read(move |c| {
            rows(c, "SELECT DISTINCT destination FROM outbox WHERE dead = 0 ORDER BY destination", [], |r| {
                r.get::<_, String>(0).map_err(sql_err)
            })
        })
    }

    fn delivered(&self, seq: u64) -> BoxFuture<'_, StoreResult<()>> {
        self.engine.exec(move |c| writer::delivered(c, seq))
    }
}

impl HubAlertStore for SqliteHubStore {
    fn alert(&self, id: &AlertId) -> BoxFuture<'_, StoreResult<Option<HubAlertRecord>>> {
        let id = id.clone();
        self.engine.read(move |c| {
            row(
                c,
                &format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?1"),
                params![id.as_str()],
                codec::alert,
            )
        })
    }

    fn alerts(&self, f: &HubAlertFilter) -> BoxFuture<'_, StoreResult<Vec<HubAlertRecord>>> {
        let f = f.clone();
        self.engine.read(move |c| {
            rows(
                c,
                &format!(
                    "SELECT {ALERT_COLUMNS} FROM alerts WHERE (?1 IS NULL OR obp = ?1) \
                     AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR product_code = ?3) \
                     AND (?4 IS NULL OR id > ?4) ORDER BY id LIMIT ?5"
                ),
                params![
                    f.obp.as_ref().map(ObpId::as_str),
                    f.status.map(|s| s.as_str()),
                    f.product_code,
                    f.after.as_ref().map(AlertId::as_str),
                    f.limit as i64
                ],
                codec::alert,
            )
        })
    }

    fn open_alert_counts(&self) -> BoxFuture<'_, StoreResult<Vec<(openmvs_core::alert::AlertStatus, u64)>>> {
        self.engine.read(crate::codec::open_alert_counts)
    }
}

impl AuditStore for SqliteHubStore {
    fn audit_by_subject(&self, subject: &str) -> BoxFuture<'_, StoreResult<Vec<Sealed>>> {
        let subject = subject.to_owned();
        self.engine.read(move |c| {
            rows(
                c,
                &format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE subject = ?1 ORDER BY pos"),
                params![subject],
                |r| Ok(audit(r)?.1),
            )
        })
    }

    fn audit_search(&self, q: &AuditQuery) -> BoxFuture<'_, StoreResult<Vec<(u64, Sealed)>>> {
        let q = q.clone();
        self.engine.read(move |c| crate::console::audit_search(c, &q))
    }

    fn audit_last_pos(&self) -> BoxFuture<'_, StoreResult<u64>> {
        self.engine.read(crate::console::audit_last_pos)
    }

    fn audit_page(&self, after: u64, limit: usize) -> BoxFuture<'_, StoreResult<Vec<(u64, Sealed)>>> {
        self.engine.read(move |c| {
            rows(
                c,
                &format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE pos > ?1 ORDER BY pos LIMIT ?2"),
                params![after as i64, limit as i64],
                audit,
            )
        })
    }

    fn checkpoints(&self) -> BoxFuture<'_, StoreResult<Vec<Checkpoint>>> {
        self.engine.read(move |c| {
            rows(
                c,
                "SELECT market, seq, hash, at, key_id, signature FROM audit_checkpoints ORDER BY market, seq",
                [],
                checkpoint,
            )
        })
    }
}
