//! SQLite's part of the group commit (`openmvs_store::commit`): one thread owns the only write
//! connection and runs the shared writer on it, one transaction and one fsync per group.
//!
//! Why one thread: SQLite allows one writer at a time anyway; owning it in one thread removes lock
//! waits and lets the thread batch. While one group is being fsynced, new requests queue up, so the
//! group size adapts to the load by itself: one operation per transaction when idle, hundreds under
//! load. The engine's calls block and return ready futures; the thread drives the shared writer
//! with `block_on`.
//!
//! What is SQLite's own: `BEGIN IMMEDIATE` takes the database's write lock for the whole group;
//! the audit trail's lock is that lock, and another process appended to the trail when its
//! newest position moved since this writer's last look (then the chain heads are read again); the
//! write connection is opened again after a failure; the WAL is made to start over when it grows.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use openmvs_audit::{ChainHead, Checkpoint, Sealed, Tail};
use openmvs_core::time::Clock;
use openmvs_store::commit::{self, Engine, Refusal, block_on, changed};
use openmvs_store::*;
use rusqlite::{Connection, OptionalExtension, params};

use crate::codec::{change_columns, markets_to_text, sql_err};

/// The writer looks at the WAL's size after this many groups.
const RESTART_CHECK_EVERY: u32 = 16;

/// A small write run on the writer thread.
pub type ExecFn = Box<dyn FnOnce(&Connection) -> StoreResult<()> + Send>;

/// Work for the writer thread.
pub type Job<U> = commit::Job<U, ExecFn>;

/// A kind of unit of work the SQLite writer commits.
pub trait Unit: commit::Unit {
    /// Applies the unit, its audit entries excepted, on the open transaction, inside its own
    /// savepoint.
    fn apply(&self, c: &Connection, now: i64) -> StoreResult<Self::Done>;
}

impl Unit for UnitOfWork {
    fn apply(&self, c: &Connection, now: i64) -> StoreResult<Committed> {
        apply(c, self, now)
    }
}

/// The key that signs audit checkpoints (its key id is derived from its public key).
pub struct AuditSigner {
    /// The key.
    pub key: SigningKey,
}

/// The write connection and what the writer keeps beside it.
pub struct Sqlite {
    conn: Connection,
    /// The WAL file, whose size decides when the writer restarts it.
    wal: Option<PathBuf>,
    /// The size past which it is restarted.
    wal_restart_bytes: u64,
    /// Groups committed since the WAL's size was last looked at.
    groups_since_check: u32,
    /// The database file (`None` in memory), for opening the write connection again.
    path: Option<PathBuf>,
    /// Grows whenever the writer opens its connection again: readers and the checkpointer then
    /// open theirs again too.
    generation: Arc<AtomicU64>,
    /// The last group failed: the connection is opened again before the next one.
    suspect: bool,
    /// The position of the newest audit record and the row of the newest checkpoint as of this
    /// writer's last look at the trail: another process appended records or signed checkpoints
    /// when the trail has moved on from them.
    known_pos: Option<(i64, i64)>,
    /// The open transaction looked at the trail.
    trail_locked: bool,
    /// The engine's idle readers and its checkpointer's connection, closed when the writer opens
    /// its own connection again.
    others: Option<(crate::engine::Readers, crate::engine::CheckpointConn)>,
}

/// The writer thread's state: the shared writer over the write connection.
pub struct Writer<U: Unit>(commit::Writer<U, Sqlite>);

impl<U: Unit> Writer<U> {
    /// Prepares the writer over an open, migrated connection.
    pub fn new(
        conn: Connection,
        signer: Arc<AuditSigner>,
        clock: Arc<dyn Clock>,
        on_group: Option<Arc<dyn Fn(usize) + Send + Sync>>,
        checkpoints: CheckpointOptions,
    ) -> StoreResult<Writer<U>> {
        let path = conn.path().filter(|p| !p.is_empty()).map(PathBuf::from);
        let wal = path.as_ref().map(|p| PathBuf::from(format!("{}-wal", p.display())));
        let engine = Sqlite {
            conn,
            wal,
            wal_restart_bytes: crate::WAL_RESTART_BYTES,
            groups_since_check: 0,
            path,
            generation: Arc::new(AtomicU64::new(0)),
            suspect: false,
            known_pos: None,
            trail_locked: false,
            others: None,
        };
        let mut w = commit::Writer::new(engine, signer.key.clone(), clock, on_group, checkpoints);
        block_on(w.load())?;
        Ok(Writer(w))
    }

    /// The engine's other connections, which the writer closes when it opens its own again.
    pub(crate) fn share(
        &mut self,
        readers: crate::engine::Readers,
        checkpoint: crate::engine::CheckpointConn,
    ) {
        self.0.engine.others = Some((readers, checkpoint));
    }

    /// The counter the writer grows whenever it opens its connection again.
    pub(crate) fn generation(&self) -> Arc<AtomicU64> {
        self.0.engine.generation.clone()
    }

    /// Runs until the channel closes or a `Stop` arrives.
    pub fn run(self, rx: Receiver<Job<U>>) {
        block_on(self.0.run(rx));
    }
}

impl Sqlite {
    fn run(&self, sql: &str) -> StoreResult<()> {
        self.conn.prepare_cached(sql).and_then(|mut s| s.execute([])).map(|_| ()).map_err(sql_err)
    }

    /// The position of the newest audit record and the row of the newest checkpoint.
    fn last_pos(&self) -> StoreResult<(i64, i64)> {
        self.conn
            .prepare_cached(
                "SELECT (SELECT COALESCE(MAX(pos), 0) FROM audit), \
                 (SELECT COALESCE(MAX(rowid), 0) FROM audit_checkpoints)",
            )
            .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))))
            .map_err(sql_err)
    }

    /// Another process may have appended to the trail since this writer's last look (`openmvs
    /// admin client disable` on the data directory of a running node): then the chain heads kept
    /// in memory are stale. Runs inside the group's write transaction, so no other process can
    /// append between this look and the group's own records. One lookup of the largest key.
    fn follow_other_writers(&mut self) -> StoreResult<bool> {
        let pos = self.last_pos()?;
        self.trail_locked = true;
        let moved = self.known_pos != Some(pos);
        if moved && self.known_pos.is_some() {
            tracing::info!("another process appended to the audit trail: chain heads read again");
        }
        Ok(moved)
    }

    /// Each market's chain head and last checkpoint, from the database.
    fn load_tails(&self) -> StoreResult<Vec<Tail>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT a.market, a.seq, a.hash, \
                 (SELECT COALESCE(MAX(c.seq), 0) FROM audit_checkpoints c WHERE c.market = a.market), \
                 (SELECT COALESCE(MAX(c.at), 0) FROM audit_checkpoints c WHERE c.market = a.market) \
                 FROM audit a WHERE a.pos IN (SELECT MAX(pos) FROM audit GROUP BY market)",
            )
            .map_err(sql_err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })
            .map_err(sql_err)?;
        let mut tails = Vec::new();
        for row in rows {
            let (market, seq, hash, signed_seq, signed_at) = row.map_err(sql_err)?;
            let hash = crate::codec::hash(hash)?;
            let head = ChainHead { market, seq: seq as u64, hash };
            tails.push(Tail { head, signed_seq: signed_seq as u64, signed_at });
        }
        Ok(tails)
    }

    fn append_audit(&self, records: &[Sealed]) -> StoreResult<()> {
        let mut s = self
            .conn
            .prepare_cached(
                "INSERT INTO audit (market, seq, at, actor, role, location, operation, subject, return_code, \
                 request, result, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )
            .map_err(sql_err)?;
        for sealed in records {
            let e = &sealed.entry;
            s.execute(params![
                e.market,
                sealed.seq as i64,
                e.at_millis,
                e.actor,
                e.role,
                e.location,
                e.operation,
                e.subject,
                e.return_code,
                e.request,
                e.result,
                &sealed.prev_hash[..],
                &sealed.hash[..]
            ])
            .map_err(sql_err)?;
        }
        Ok(())
    }

    fn store_checkpoint(&self, cp: &Checkpoint) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO audit_checkpoints (market, seq, hash, at, key_id, signature) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    cp.market,
                    cp.seq as i64,
                    &cp.hash[..],
                    cp.at_millis,
                    cp.key_id,
                    &cp.signature[..]
                ])
            })
            .map(|_| ())
            .map_err(sql_err)
    }

    fn commit(&mut self) -> StoreResult<()> {
        self.run("COMMIT")?;
        if std::mem::take(&mut self.trail_locked) {
            self.known_pos = self.last_pos().ok();
        }
        Ok(())
    }

    /// Makes the WAL start over from its beginning once it is longer than `wal_restart_bytes`
    /// ([`WAL_RESTART_BYTES`](crate::WAL_RESTART_BYTES)), between two groups.
    ///
    /// A RESTART checkpoint copies what the background checkpointer has not copied yet, then waits
    /// until no reader uses the WAL, so that the next commit writes at its start again, on blocks
    /// already allocated. Writes cannot proceed meanwhile; doing it here rather than on another
    /// connection means they wait exactly as long as it takes, instead of a busy handler's sleeps.
    /// Readers are short, so the wait for them is bounded at 50 ms, after which it is tried again
    /// a few groups later.
    fn restart_wal_if_long(&mut self) {
        self.groups_since_check += 1;
        if self.groups_since_check < RESTART_CHECK_EVERY {
            return;
        }
        self.groups_since_check = 0;
        let Some(wal) = &self.wal else { return };
        if std::fs::metadata(wal).map(|m| m.len() <= self.wal_restart_bytes).unwrap_or(true) {
            return;
        }
        let _ = self.conn.busy_timeout(Duration::from_millis(50));
        if let Err(e) = self.conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(())) {
            tracing::debug!(error = %e, "restarting the WAL did not complete; retrying");
        }
        let _ = self.conn.busy_timeout(Duration::from_secs(10));
    }

    /// Opens the write connection again when the last group failed or the connection is
    /// read-only: a connection opened while the database could not be written (the data directory
    /// or its file system read-only when the store opened) stays read-only for good, and SQLite
    /// shares one read-only view of the WAL index among every connection of the process that
    /// opened it then. So the writer first lets go of its connection and makes every reader and the
    /// checkpointer open theirs again (`generation`), then opens a new one. Until the file can be
    /// written again every group is refused as unavailable; after, the store commits again by
    /// itself.
    fn reopen_if_needed(&mut self) {
        let read_only = self.conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(true);
        if !(self.suspect || read_only) {
            return;
        }
        let Some(path) = self.path.clone() else { return };
        // Refuses every write, so that nothing is committed while there is no real connection.
        let Ok(placeholder) =
            Connection::open_in_memory_with_flags(rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        else {
            return;
        };
        // Readers in use when the counter grows close their connection when they are done.
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Some((readers, checkpoint)) = &self.others {
            readers.release();
            checkpoint.lock().unwrap_or_else(|p| p.into_inner()).take();
        }
        drop(std::mem::replace(&mut self.conn, placeholder));
        match crate::engine::open_write_connection(&path) {
            Ok(c) => {
                let writable = !c.is_readonly(rusqlite::MAIN_DB).unwrap_or(true);
                self.conn = c;
                if writable && (read_only || self.suspect) {
                    tracing::info!(path = %path.display(), "write connection opened again");
                }
                // The chain heads are read again at the next look at the trail.
                self.known_pos = None;
            }
            Err(e) => tracing::debug!(error = %e, "the database cannot be opened for writing yet"),
        }
        self.suspect = false;
    }
}

impl<U: Unit> Engine<U> for Sqlite {
    type Exec = ExecFn;

    fn before_group(&mut self) {
        self.reopen_if_needed();
    }

    fn begin(&mut self) -> impl Future<Output = StoreResult<()>> + Send {
        self.trail_locked = false;
        std::future::ready(self.conn.execute_batch("BEGIN IMMEDIATE").map_err(sql_err))
    }

    fn savepoint(&mut self) -> impl Future<Output = StoreResult<()>> + Send {
        std::future::ready(self.run("SAVEPOINT uow"))
    }

    fn release(&mut self) -> impl Future<Output = StoreResult<()>> + Send {
        std::future::ready(self.run("RELEASE uow"))
    }

    fn rollback_to(&mut self) -> impl Future<Output = StoreResult<()>> + Send {
        std::future::ready(self.run("ROLLBACK TO uow").and_then(|()| self.run("RELEASE uow")))
    }

    fn apply(
        &mut self,
        unit: &U,
        now: i64,
    ) -> impl Future<Output = StoreResult<Result<U::Done, Refusal>>> + Send {
        std::future::ready(Ok(unit.apply(&self.conn, now).map_err(Refusal::Error)))
    }

    fn exec(&mut self, work: ExecFn) -> impl Future<Output = StoreResult<()>> + Send {
        std::future::ready(work(&self.conn))
    }

    fn lock_trail(&mut self, _records: usize) -> impl Future<Output = StoreResult<bool>> + Send {
        std::future::ready(self.follow_other_writers())
    }

    fn load_tails(
        &mut self,
        _markets: Option<&[String]>,
    ) -> impl Future<Output = StoreResult<Vec<Tail>>> + Send {
        std::future::ready(Sqlite::load_tails(self))
    }

    fn append_audit(&mut self, records: &[Sealed]) -> impl Future<Output = StoreResult<()>> + Send {
        std::future::ready(Sqlite::append_audit(self, records))
    }

    fn store_checkpoint(&mut self, cp: &Checkpoint) -> impl Future<Output = StoreResult<()>> + Send {
        std::future::ready(Sqlite::store_checkpoint(self, cp))
    }

    fn commit(&mut self) -> impl Future<Output = StoreResult<()>> + Send {
        std::future::ready(Sqlite::commit(self))
    }

    fn rollback(&mut self) -> impl Future<Output = ()> + Send {
        let _ = self.conn.execute_batch("ROLLBACK");
        std::future::ready(())
    }

    fn failed(&mut self) {
        self.suspect = true;
    }

    fn after_group(&mut self) {
        self.restart_wal_if_long();
    }

    fn finish(&mut self) {
        // A cleanly stopped store is one self-contained file: the WAL is copied back and emptied.
        if let Err(e) = self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "final checkpoint failed; the WAL is kept and replayed at the next start");
        }
    }
}

/// Writes a node's heartbeat (national and hub stores alike); rows of nodes gone for a day are
/// dropped, so restarts do not accumulate them.
pub(crate) fn write_heartbeat(c: &Connection, h: &Heartbeat) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO heartbeats (node_id, at) VALUES (?1, ?2) \
         ON CONFLICT (node_id) DO UPDATE SET at = excluded.at",
    )
    .and_then(|mut s| s.execute(params![h.node_id.as_str(), h.at.unix_millis()]))
    .map_err(sql_err)?;
    c.prepare_cached("DELETE FROM heartbeats WHERE at < ?1")
        .and_then(|mut s| s.execute(params![h.at.unix_millis() - 86_400_000]))
        .map_err(sql_err)?;
    Ok(())
}

fn conflict(c: Conflict) -> StoreError {
    StoreError::Conflict(c)
}

/// Applies one unit of work on the open transaction.
fn apply(c: &Connection, uow: &UnitOfWork, now: i64) -> StoreResult<Committed> {
    let mut out = Committed::default();
    if let Some(i) = &uow.idempotency {
        let n = c
            .prepare_cached(
                "INSERT INTO idempotency (client_id, client_trx_id, request_hash, status, response, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
            )
            .and_then(|mut s| {
                s.execute(params![
                    i.client_id.as_str(),
                    i.client_trx_id.as_str(),
                    &i.request_hash[..],
                    i.status,
                    i.response,
                    i.created_at.unix_millis()
                ])
            })
            .map_err(sql_err)?;
        changed(n as u64, || Conflict::IdempotencyKey)?;
    }
    if let Some(id) = &uow.inbox {
        let n = c
            .prepare_cached(
                "INSERT INTO inbox (message_id, applied_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            )
            .and_then(|mut s| s.execute(params![id.as_str(), now]))
            .map_err(sql_err)?;
        changed(n as u64, || Conflict::InboxMessage)?;
    }
    for p in &uow.products {
        c.prepare_cached(
            "INSERT OR REPLACE INTO products (product_code, scheme, name, common_name, form, strength, pack_type, \
             pack_size, owner, withdrawn, version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )
        .and_then(|mut s| {
            s.execute(params![
                p.product_code.as_str(),
                p.product_code.scheme().as_str(),
                p.name,
                p.common_name,
                p.form,
                p.strength,
                p.pack_type,
                p.pack_size,
                p.owner.as_str(),
                p.withdrawn,
                p.version
            ])
        })
        .map_err(sql_err)?;
    }
    for b in &uow.batches {
        c.prepare_cached(
            "INSERT OR REPLACE INTO batches (product_code, batch, expiry, expiry_year, recalled, markets) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .and_then(|mut s| {
            s.execute(params![
                b.product_code.as_str(),
                b.batch.as_str(),
                b.expiry.as_str(),
                b.expiry.date().year(),
                b.recalled,
                markets_to_text(&b.markets)
            ])
        })
        .map_err(sql_err)?;
    }
    for np in &uow.new_packs {
        let mut s = c
            .prepare_cached(
                "INSERT INTO packs (product_code, serial, batch, state, repeats, version) \
                 VALUES (?1, ?2, ?3, 'ACTIVE', 0, 1) ON CONFLICT DO NOTHING",
            )
            .map_err(sql_err)?;
        for serial in &np.serials {
            out.packs_created += s
                .execute(params![np.product_code.as_str(), serial.as_str(), np.batch.as_str()])
                .map_err(sql_err)? as u64;
        }
    }
    for w in &uow.packs {
        let (cmd, loc, at, synced) = change_columns(&w.pack);
        let n = match w.expected_version {
            Some(v) => c
                .prepare_cached(
                    "UPDATE packs SET batch = ?3, state = ?4, last_command = ?5, last_location = ?6, last_at = ?7, \
                     synced_from = ?8, repeats = ?9, version = version + 1 \
                     WHERE product_code = ?1 AND serial = ?2 AND version = ?10",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        w.product_code.as_str(),
                        w.serial.as_str(),
                        w.pack.batch.as_str(),
                        w.pack.state.as_str(),
                        cmd,
                        loc,
                        at,
                        synced,
                        w.pack.repeats,
                        v as i64
                    ])
                }),
            None => c
                .prepare_cached(
                    "INSERT INTO packs (product_code, serial, batch, state, last_command, last_location, last_at, \
                     synced_from, repeats, version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 1) ON CONFLICT DO NOTHING",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        w.product_code.as_str(),
                        w.serial.as_str(),
                        w.pack.batch.as_str(),
                        w.pack.state.as_str(),
                        cmd,
                        loc,
                        at,
                        synced,
                        w.pack.repeats
                    ])
                }),
        }
        .map_err(sql_err)?;
        changed(n as u64, || Conflict::PackVersion {
            product_code: w.product_code.clone(),
            serial: w.serial.clone(),
        })?;
    }
    for a in &uow.alerts {
        let n = c
            .prepare_cached(
                "INSERT INTO alerts (id, code, return_code, market, product_code, serial, batch, location, client_id, \
                 created_at, status, classification, comment, source_key, pack_market, thread, version) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17) \
                 ON CONFLICT (source_key) DO NOTHING",
            )
            .and_then(|mut s| {
                s.execute(params![
                    a.id.as_str(),
                    a.code.as_str(),
                    a.return_code.as_str(),
                    a.market.as_str(),
                    a.product_code,
                    a.serial.as_str(),
                    a.batch,
                    a.location.as_str(),
                    a.client_id.as_str(),
                    a.created_at.unix_millis(),
                    a.status.as_str(),
                    a.classification.map(|c| c.as_str()),
                    a.comment,
                    a.source_key,
                    a.pack_market.as_str(),
                    decode::thread_text(&a.thread),
                    a.version as i64
                ])
            })
            .map_err(sql_err)?;
        if n == 0 {
            out.alerts_skipped.push(a.id.clone());
        }
    }
    for u in &uow.alert_updates {
        let n = c
            .prepare_cached(
                "UPDATE alerts SET status = ?2, classification = ?3, comment = COALESCE(?4, comment), \
                 thread = ?5, version = version + 1 WHERE id = ?1 AND version = ?6",
            )
            .and_then(|mut s| {
                s.execute(params![
                    u.id.as_str(),
                    u.status.as_str(),
                    u.classification.map(|c| c.as_str()),
                    u.comment,
                    decode::thread_text(&u.thread),
                    u.expected_version as i64
                ])
            })
            .map_err(sql_err)?;
        changed(n as u64, || Conflict::AlertStatus)?;
    }
    for m in &uow.outbox {
        let n = c
            .prepare_cached(
                "INSERT INTO outbox (message_id, destination, kind, ordering_key, payload, created_at, next_attempt_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) ON CONFLICT (message_id) DO NOTHING",
            )
            .and_then(|mut s| s.execute(params![m.message_id.as_str(), m.destination, m.kind, m.ordering_key, m.payload, now]))
            .map_err(sql_err)?;
        changed(n as u64, || Conflict::Exists(format!("outbox message {}", m.message_id)))?;
    }
    if let Some(b) = &uow.new_bulk {
        let n = c
            .prepare_cached(
                "INSERT INTO bulk_jobs (id, client_id, status, request, done_rows, total_rows, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
            )
            .and_then(|mut s| {
                s.execute(params![
                    b.id.as_str(),
                    b.client_id.as_str(),
                    b.status.as_str(),
                    b.request,
                    b.done_rows as i64,
                    b.total_rows as i64,
                    b.created_at.unix_millis()
                ])
            })
            .map_err(sql_err)?;
        changed(n as u64, || Conflict::Exists(format!("bulk {}", b.id)))?;
    }
    if let Some(p) = &uow.bulk_progress {
        let total: Option<i64> = c
            .query_row(
                "SELECT total_rows FROM bulk_jobs WHERE id = ?1 AND done_rows = ?2",
                params![p.id.as_str(), p.expected_done_rows as i64],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql_err)?;
        let Some(total) = total else { return Err(conflict(Conflict::BulkProgress)) };
        let done = p.expected_done_rows + p.results.len() as u64;
        let status = if done as i64 >= total { BulkStatus::Done } else { BulkStatus::Running };
        c.prepare_cached("UPDATE bulk_jobs SET done_rows = ?2, status = ?3 WHERE id = ?1")
            .and_then(|mut s| s.execute(params![p.id.as_str(), done as i64, status.as_str()]))
            .map_err(sql_err)?;
        let mut s = c
            .prepare_cached("INSERT INTO bulk_results (bulk_id, row, result) VALUES (?1, ?2, ?3)")
            .map_err(sql_err)?;
        for (i, r) in p.results.iter().enumerate() {
            s.execute(params![p.id.as_str(), (p.expected_done_rows + i as u64) as i64, r])
                .map_err(sql_err)?;
        }
    }
    if let Some(cl) = &uow.new_client {
        let n = c
            .prepare_cached(
                "INSERT INTO clients (client_id, secret_hash, role, market, location, name, created_at, disabled) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
            )
            .and_then(|mut s| {
                s.execute(params![
                    cl.client_id.as_str(),
                    cl.secret_hash,
                    cl.role.as_str(),
                    cl.market.as_str(),
                    cl.location.as_str(),
                    cl.name,
                    cl.created_at.unix_millis(),
                    cl.disabled
                ])
            })
            .map_err(sql_err)?;
        changed(n as u64, || Conflict::Exists(format!("client {}", cl.client_id)))?;
    }
    for ch in &uow.client_changes {
        let n = c
            .prepare_cached(
                "UPDATE clients SET disabled = COALESCE(?2, disabled), \
                 last_used_at = CASE WHEN ?3 IS NULL THEN last_used_at \
                 ELSE MAX(COALESCE(last_used_at, ?3), ?3) END WHERE client_id = ?1",
            )
            .and_then(|mut s| {
                s.execute(params![ch.client_id.as_str(), ch.disabled, ch.used_at.map(|t| t.unix_millis())])
            })
            .map_err(sql_err)?;
        changed(n as u64, || Conflict::Missing(format!("client {}", ch.client_id)))?;
    }
    if let Some(k) = &uow.new_key {
        c.prepare_cached("UPDATE signing_keys SET active = 0, retired_at = ?1 WHERE active = 1")
            .and_then(|mut s| s.execute(params![k.at.unix_millis()]))
            .map_err(sql_err)?;
        let n = c
            .prepare_cached(
                "INSERT INTO signing_keys (kid, secret, created_at, active, retired_at) VALUES (?1, ?2, ?3, 1, NULL) \
                 ON CONFLICT DO NOTHING",
            )
            .and_then(|mut s| s.execute(params![k.key.kid.as_str(), &k.key.secret[..], k.key.created_at.unix_millis()]))
            .map_err(sql_err)?;
        changed(n as u64, || Conflict::Exists(format!("key {}", k.key.kid)))?;
    }
    if let Some(k) = &uow.key_revocation {
        let n = c
            .prepare_cached(
                "UPDATE signing_keys SET revoked_at = COALESCE(revoked_at, ?2) WHERE kid = ?1 AND active = 0",
            )
            .and_then(|mut s| s.execute(params![k.kid.as_str(), k.at.unix_millis()]))
            .map_err(sql_err)?;
        changed(n as u64, || Conflict::Missing(format!("retired token-signing key {}", k.kid)))?;
    }
    if let Some(h) = &uow.heartbeat {
        write_heartbeat(c, h)?;
    }
    Ok(out)
}

#[cfg(test)]
mod wal_tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use openmvs_audit::Entry;
    use openmvs_core::time::{Clock, Timestamp};
    use tokio::sync::oneshot;

    use super::*;

    struct Fixed;
    impl Clock for Fixed {
        fn now(&self) -> Timestamp {
            Timestamp::from_unix_millis(1_800_000_000_000)
        }
    }

    fn entry(i: usize) -> Entry {
        Entry {
            market: "DE".into(),
            at_millis: 1_800_000_000_000,
            actor: "client".into(),
            role: "pharmacy".into(),
            location: "DE-PH-1".into(),
            operation: "verify".into(),
            subject: format!("GTIN/09501101530003/S{i:012}"),
            return_code: "NMVS_SUCCESS".into(),
            request: "r".repeat(2000),
            result: "{}".into(),
        }
    }

    /// Under writes that never pause, with a reader reading all the time, the writer makes the WAL
    /// start over instead of letting it grow: after about 30 MB written, the WAL is still about
    /// the size it was allowed, and every record is there.
    #[test]
    fn the_wal_starts_over_under_constant_writes_and_reads() {
        let dir = std::env::temp_dir().join(format!("openmvs-wal-restart-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("national.db");
        let mut conn = crate::engine::open_write_connection(&path).unwrap();
        crate::schema::migrate(&mut conn, 0).unwrap().unwrap();
        let signer = Arc::new(AuditSigner { key: SigningKey::from_bytes(&[7; 32]) });
        let Writer(mut w): Writer<UnitOfWork> =
            Writer::new(conn, signer, Arc::new(Fixed), None, CheckpointOptions::default()).unwrap();
        let limit = 1 << 20;
        w.engine.wal_restart_bytes = limit;
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (stop, path) = (stop.clone(), path.clone());
            std::thread::spawn(move || {
                let c = Connection::open(&path).unwrap();
                let mut reads = 0u64;
                // Point reads one after another, as request handlers make them.
                while !stop.load(Ordering::Relaxed) {
                    let n: i64 = c
                        .query_row("SELECT COUNT(*) FROM audit WHERE pos = ?1", [reads as i64 % 1000], |r| {
                            r.get(0)
                        })
                        .unwrap();
                    assert!(n <= 1);
                    reads += 1;
                }
                reads
            })
        };
        let wal = PathBuf::from(format!("{}-wal", path.display()));
        let (groups, per_group) = (16 * 40, 24);
        let mut largest = 0;
        for g in 0..groups {
            let mut replies = Vec::new();
            let commits = (0..per_group)
                .map(|i| {
                    let (tx, rx) = oneshot::channel();
                    replies.push(rx);
                    let uow = UnitOfWork { audit: vec![entry(g * per_group + i)], ..UnitOfWork::default() };
                    (Box::new(uow), tx)
                })
                .collect();
            // The WAL's size is looked at after every 16th group.
            block_on(w.commit_group(commits, Vec::new()));
            for mut r in replies {
                r.try_recv().unwrap().unwrap();
            }
            largest = largest.max(std::fs::metadata(&wal).unwrap().len());
        }
        stop.store(true, Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
        // Written: 640 groups of 24 records of about 2 KB, some 30 MB. Between two looks at its
        // size the WAL grows by 16 groups, under 1 MB; a restart that finds the reader in the
        // middle of a read (descheduled on a busy machine) is tried again 16 groups later.
        assert!(largest < 8 * limit, "the WAL reached {largest} bytes");
        let n: i64 = w.engine.conn.query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0)).unwrap();
        assert_eq!(n, (groups * per_group) as i64);
        drop(w);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
