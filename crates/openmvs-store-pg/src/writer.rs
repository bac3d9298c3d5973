//! PostgreSQL's part of the group commit (`openmvs_store::commit`): one task owns the node's
//! write connection and runs the shared writer on it, one transaction and one WAL flush per group.
//!
//! Across nodes, two things serialise: row locks (two nodes changing one pack: the second waits
//! for the first to commit, then finds the version moved on and conflicts) and the single row of
//! `audit_state`, locked by each group that seals records just before it commits. Holding that
//! lock while sealing makes positions and every market's chain follow commit order with no gaps,
//! on any number of nodes, at the cost of one lock hold (a few inserts and the commit's flush) per
//! group, not per operation. Since other nodes append too, the chain heads are read back (from
//! `audit_heads`) under that lock at every group.
//!
//! Each unit's savepoint is opened in the same round trip as the unit's statements (and the
//! transaction with the first); the previous unit's savepoint is released there too, and COMMIT
//! releases the last one.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use openmvs_audit::{ChainHead, Checkpoint, Sealed, Tail};
use openmvs_core::ids::AlertId;
use openmvs_store::commit::{self, Engine, Refusal};
use openmvs_store::decode::{change_columns, markets_to_text};
use openmvs_store::*;
use tokio_postgres::Config;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use crate::codec::{is_contention, pg_err};
pub use crate::pool::Conn;
use crate::pool::connect;

/// Work for the writer.
pub type Job<U = UnitOfWork> = commit::Job<U>;

/// The writer of one node: the shared writer over this engine.
pub type Writer<U> = commit::Writer<U, Pg>;

/// A kind of unit of work the PostgreSQL writer commits.
pub trait Unit: commit::Unit {
    /// Run once on each new write connection: the session's staging tables for rows that arrive
    /// in bulk and are streamed in with COPY.
    const SESSION: &'static str;
    /// Applies the unit (audit entries excepted) on the open transaction, inside its own
    /// savepoint.
    fn apply<'a>(
        &'a self,
        c: &'a Conn,
        now: i64,
    ) -> impl Future<Output = Result<Self::Done, Fail>> + Send + 'a;
}

impl Unit for UnitOfWork {
    // Serials arriving in bulk are streamed in with COPY into this session's staging table.
    const SESSION: &'static str = "CREATE TEMP TABLE IF NOT EXISTS pack_ingest (product_code TEXT NOT NULL, \
         serial TEXT NOT NULL, batch TEXT NOT NULL) ON COMMIT DELETE ROWS";

    fn apply<'a>(
        &'a self,
        c: &'a Conn,
        now: i64,
    ) -> impl Future<Output = Result<Committed, Fail>> + Send + 'a {
        apply(c, self, now)
    }
}

/// Why a unit stopped: refused (a conflict) or the database failed the statement.
pub enum Fail {
    /// Refused by the store's rules (a conflict), or a record that cannot be stored.
    Store(StoreError),
    /// A statement failed: contention (a lost lock wait) or worse.
    Db(tokio_postgres::Error),
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Fail {
        Fail::Store(e)
    }
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Fail {
        Fail::Db(e)
    }
}

impl From<Fail> for Refusal {
    fn from(f: Fail) -> Refusal {
        match f {
            Fail::Store(e) => Refusal::Error(e),
            Fail::Db(e) if is_contention(&e) => Refusal::Contended,
            Fail::Db(e) => Refusal::Error(pg_err(e)),
        }
    }
}

/// The write connection and the statements waiting to go with the next unit's.
pub struct Pg {
    config: Config,
    conn: Option<Arc<Conn>>,
    /// Statements that open the transaction or the next savepoint, sent with what comes next.
    pending: Vec<&'static str>,
    /// A unit's savepoint is open (released by the next one's, or by COMMIT).
    savepoint_open: bool,
    /// The position before the first record the group appends, as its lock of the trail gave.
    first_pos: i64,
}

impl Pg {
    /// The engine of a node, connecting with `config`.
    pub fn new(config: Config) -> Pg {
        Pg { config, conn: None, pending: Vec::new(), savepoint_open: false, first_pos: 0 }
    }

    /// The write connection, opened (with the session set up for units of kind `U`) if there is
    /// none or it was lost.
    async fn connection<U: Unit>(&mut self) -> StoreResult<Arc<Conn>> {
        if let Some(c) = &self.conn
            && !c.client.is_closed()
        {
            return Ok(c.clone());
        }
        let c = connect(&self.config).await?;
        c.client.batch_execute(U::SESSION).await.map_err(pg_err)?;
        self.conn = Some(c.clone());
        Ok(c)
    }

    /// The open transaction's connection, with what waits to be sent sent.
    async fn open(&mut self) -> StoreResult<Arc<Conn>> {
        let c = self.conn.clone().ok_or_else(|| StoreError::Unavailable("no write connection".into()))?;
        if !self.pending.is_empty() {
            let sql = std::mem::take(&mut self.pending).join("; ");
            c.client.batch_execute(&sql).await.map_err(pg_err)?;
        }
        Ok(c)
    }
}

impl<U: Unit> Engine<U> for Pg {
    type Exec = Infallible;

    async fn begin(&mut self) -> StoreResult<()> {
        self.connection::<U>().await?;
        self.pending = vec!["BEGIN"];
        self.savepoint_open = false;
        Ok(())
    }

    async fn savepoint(&mut self) -> StoreResult<()> {
        if self.savepoint_open {
            self.pending.push("RELEASE SAVEPOINT uow");
        }
        self.pending.push("SAVEPOINT uow");
        self.savepoint_open = true;
        Ok(())
    }

    async fn release(&mut self) -> StoreResult<()> {
        // Released with the next unit's savepoint, or by COMMIT.
        Ok(())
    }

    async fn rollback_to(&mut self) -> StoreResult<()> {
        // Undoes the unit alone; the savepoint stays for the next unit to release.
        let c = self.open().await?;
        c.client.batch_execute("ROLLBACK TO SAVEPOINT uow").await.map_err(pg_err)
    }

    async fn apply(&mut self, unit: &U, now: i64) -> StoreResult<Result<U::Done, Refusal>> {
        let c = self.conn.clone().ok_or_else(|| StoreError::Unavailable("no write connection".into()))?;
        let open = std::mem::take(&mut self.pending).join("; ");
        let opening = async { if open.is_empty() { Ok(()) } else { c.client.batch_execute(&open).await } };
        let (opened, applied) = futures_util::future::join(opening, unit.apply(&c, now)).await;
        opened.map_err(pg_err)?;
        Ok(applied.map_err(Refusal::from))
    }

    async fn exec(&mut self, work: Infallible) -> StoreResult<()> {
        match work {}
    }

    async fn lock_trail(&mut self, records: usize) -> StoreResult<bool> {
        let c = self.open().await?;
        if records == 0 {
            c.client
                .execute("SELECT pos FROM audit_state WHERE id = 1 FOR UPDATE", &[])
                .await
                .map_err(pg_err)?;
        } else {
            let n = records as i64;
            let lock =
                c.stmt("UPDATE audit_state SET pos = pos + $1 WHERE id = 1 RETURNING pos - $1").await?;
            self.first_pos = c.client.query_one(&lock, &[&n]).await.map_err(pg_err)?.get(0);
        }
        // Other nodes append too: the heads are read back under the lock.
        Ok(true)
    }

    async fn load_tails(&mut self, markets: Option<&[String]>) -> StoreResult<Vec<Tail>> {
        self.connection::<U>().await?;
        let c = self.open().await?;
        let rows = match markets {
            Some(m) => {
                let q = c
                    .stmt("SELECT market, seq, hash, signed_seq, signed_at FROM audit_heads WHERE market = ANY($1)")
                    .await?;
                c.client.query(&q, &[&m]).await
            }
            None => {
                let q = c
                    .stmt("SELECT market, seq, hash, signed_seq, signed_at FROM audit_heads WHERE seq > signed_seq")
                    .await?;
                c.client.query(&q, &[]).await
            }
        }
        .map_err(pg_err)?;
        let mut tails = Vec::with_capacity(rows.len());
        for r in rows {
            let (seq, signed_seq): (i64, i64) = (r.get(1), r.get(3));
            tails.push(Tail {
                head: ChainHead { market: r.get(0), seq: seq as u64, hash: decode::hash(r.get(2))? },
                signed_seq: signed_seq as u64,
                signed_at: r.get(4),
            });
        }
        Ok(tails)
    }

    async fn append_audit(&mut self, records: &[Sealed]) -> StoreResult<()> {
        let c = self.open().await?;
        let first = self.first_pos;
        let pos: Vec<i64> = (1..=records.len() as i64).map(|i| first + i).collect();
        let col = |f: &dyn Fn(&Sealed) -> String| records.iter().map(f).collect::<Vec<String>>();
        let (market, actor, role, location) = (
            col(&|s| s.entry.market.clone()),
            col(&|s| s.entry.actor.clone()),
            col(&|s| s.entry.role.clone()),
            col(&|s| s.entry.location.clone()),
        );
        let (operation, subject, return_code, request, result) = (
            col(&|s| s.entry.operation.clone()),
            col(&|s| s.entry.subject.clone()),
            col(&|s| s.entry.return_code.clone()),
            col(&|s| s.entry.request.clone()),
            col(&|s| s.entry.result.clone()),
        );
        let seq: Vec<i64> = records.iter().map(|s| s.seq as i64).collect();
        let at: Vec<i64> = records.iter().map(|s| s.entry.at_millis).collect();
        let prev: Vec<Vec<u8>> = records.iter().map(|s| s.prev_hash.to_vec()).collect();
        let hash: Vec<Vec<u8>> = records.iter().map(|s| s.hash.to_vec()).collect();
        let insert = c
            .stmt(
                "INSERT INTO audit (pos, market, seq, at, actor, role, location, operation, subject, return_code, \
                 request, result, prev_hash, hash) SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], \
                 $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], \
                 $12::text[], $13::bytea[], $14::bytea[])",
            )
            .await?;
        let params: [&(dyn ToSql + Sync); 14] = [
            &pos,
            &market,
            &seq,
            &at,
            &actor,
            &role,
            &location,
            &operation,
            &subject,
            &return_code,
            &request,
            &result,
            &prev,
            &hash,
        ];
        c.client.execute(&insert, &params).await.map_err(pg_err)?;
        Ok(())
    }

    async fn store_checkpoint(&mut self, cp: &Checkpoint) -> StoreResult<()> {
        let c = self.open().await?;
        let q = c
            .stmt(
                "INSERT INTO audit_checkpoints (market, seq, hash, at, key_id, signature) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .await?;
        let seq = cp.seq as i64;
        c.client
            .execute(&q, &[&cp.market, &seq, &&cp.hash[..], &cp.at_millis, &cp.key_id, &&cp.signature[..]])
            .await
            .map_err(pg_err)?;
        Ok(())
    }

    async fn store_tails(&mut self, tails: &[Tail]) -> StoreResult<()> {
        let c = self.open().await?;
        let q = c
            .stmt(
                "INSERT INTO audit_heads (market, seq, hash, signed_seq, signed_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (market) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash, \
                 signed_seq = EXCLUDED.signed_seq, signed_at = EXCLUDED.signed_at",
            )
            .await?;
        for t in tails {
            let (seq, signed_seq) = (t.head.seq as i64, t.signed_seq as i64);
            c.client
                .execute(&q, &[&t.head.market, &seq, &&t.head.hash[..], &signed_seq, &t.signed_at])
                .await
                .map_err(pg_err)?;
        }
        Ok(())
    }

    async fn commit(&mut self) -> StoreResult<()> {
        let c = self.open().await?;
        self.savepoint_open = false;
        c.client.batch_execute("COMMIT").await.map_err(pg_err)
    }

    async fn rollback(&mut self) {
        self.pending.clear();
        self.savepoint_open = false;
        if let Some(c) = &self.conn {
            let _ = c.client.batch_execute("ROLLBACK").await;
        }
    }

    async fn tails_due(&mut self, all: bool, now: i64, cp: &CheckpointOptions) -> StoreResult<bool> {
        if all {
            return Ok(true);
        }
        // A look without the trail's lock, at every node's tails: most of the time nothing is due.
        let c = self.connection::<U>().await?;
        let records = i64::try_from(cp.every_records).unwrap_or(i64::MAX);
        let old = now.saturating_sub(cp.every_millis());
        let due = c
            .client
            .query_opt(
                "SELECT 1 FROM audit_heads WHERE seq > signed_seq \
                 AND (seq - signed_seq >= $1 OR signed_at <= $2) LIMIT 1",
                &[&records, &old],
            )
            .await
            .map_err(pg_err)?;
        Ok(due.is_some())
    }

    /// Every interval at most, to sign the tails other nodes left unsigned (they may have stopped).
    fn idle_wait(&self, known: Option<Duration>, every: Duration) -> Option<Duration> {
        Some(known.map_or(every, |k| k.min(every)))
    }
}

/// A unit refused by a conflict.
pub(crate) fn conflict(c: Conflict) -> Fail {
    Fail::Store(StoreError::Conflict(c))
}

/// An owned statement parameter.
type Param = Box<dyn ToSql + Sync + Send>;

fn p<T: ToSql + Sync + Send + 'static>(v: T) -> Param {
    Box::new(v)
}

/// What a statement's count of changed rows means for its unit.
enum Check {
    /// Nothing: the statement cannot refuse the unit.
    None,
    /// No row changed: the unit is refused with this conflict.
    Refuse(Conflict),
    /// No row changed: the alert with this id was raised before (the unit goes on).
    AlertSkipped(AlertId),
}

/// One statement of a unit with its parameters and what its count means.
struct Step {
    sql: &'static str,
    params: Vec<Param>,
    check: Check,
}

/// Runs `steps` pipelined (every statement sent before the first answer is read; the server runs
/// them in order), then reads their counts in order: the first refusal or error decides.
async fn pipeline(c: &Conn, steps: &[Step], out: &mut Committed) -> Result<(), Fail> {
    let mut statements = Vec::with_capacity(steps.len());
    for st in steps {
        statements.push(c.stmt(st.sql).await?);
    }
    let refs: Vec<Vec<&(dyn ToSql + Sync)>> = steps
        .iter()
        .map(|st| st.params.iter().map(|v| v.as_ref() as &(dyn ToSql + Sync)).collect())
        .collect();
    let runs = statements.iter().zip(&refs).map(|(q, r)| c.client.execute(q, r));
    let counts = futures_util::future::join_all(runs).await;
    // In order, as the server ran them: what a refused statement made the later ones do (a
    // stale bulk progress's results colliding with those stored) is undone with the unit.
    for (st, n) in steps.iter().zip(counts) {
        let n = n?;
        match &st.check {
            Check::Refuse(c) if n == 0 => return Err(conflict(c.clone())),
            Check::AlertSkipped(id) if n == 0 => out.alerts_skipped.push(id.clone()),
            _ => {}
        }
    }
    Ok(())
}

/// Applies one unit of work on the open transaction (audit records excepted: they are sealed after
/// every unit of the group). Its statements are pipelined: one round trip for the unit, however
/// many rows it changes (serials arriving in bulk go through COPY in between).
async fn apply(c: &Conn, uow: &UnitOfWork, now: i64) -> Result<Committed, Fail> {
    let mut out = Committed::default();
    let mut before = Vec::new();
    if let Some(i) = &uow.idempotency {
        before.push(Step {
            sql: "INSERT INTO idempotency (client_id, client_trx_id, request_hash, status, response, created_at) \
                  VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            params: vec![
                p(i.client_id.as_str().to_owned()),
                p(i.client_trx_id.as_str().to_owned()),
                p(i.request_hash.to_vec()),
                p(i32::from(i.status)),
                p(i.response.clone()),
                p(i.created_at.unix_millis()),
            ],
            check: Check::Refuse(Conflict::IdempotencyKey),
        });
    }
    if let Some(id) = &uow.inbox {
        before.push(Step {
            sql: "INSERT INTO inbox (message_id, applied_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            params: vec![p(id.as_str().to_owned()), p(now)],
            check: Check::Refuse(Conflict::InboxMessage),
        });
    }
    for pr in &uow.products {
        before.push(Step {
            sql: "INSERT INTO products (product_code, scheme, name, common_name, form, strength, pack_type, \
                  pack_size, owner, withdrawn, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                  ON CONFLICT (product_code) DO UPDATE SET scheme = EXCLUDED.scheme, name = EXCLUDED.name, \
                  common_name = EXCLUDED.common_name, form = EXCLUDED.form, strength = EXCLUDED.strength, \
                  pack_type = EXCLUDED.pack_type, pack_size = EXCLUDED.pack_size, owner = EXCLUDED.owner, \
                  withdrawn = EXCLUDED.withdrawn, version = EXCLUDED.version",
            params: vec![
                p(pr.product_code.as_str().to_owned()),
                p(pr.product_code.scheme().as_str().to_owned()),
                p(pr.name.clone()),
                p(pr.common_name.clone()),
                p(pr.form.clone()),
                p(pr.strength.clone()),
                p(pr.pack_type.clone()),
                p(pr.pack_size.clone()),
                p(pr.owner.as_str().to_owned()),
                p(pr.withdrawn),
                p(i64::from(pr.version)),
            ],
            check: Check::None,
        });
    }
    for b in &uow.batches {
        before.push(Step {
            sql: "INSERT INTO batches (product_code, batch, expiry, expiry_year, recalled, markets) \
                  VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (product_code, batch) DO UPDATE SET \
                  expiry = EXCLUDED.expiry, expiry_year = EXCLUDED.expiry_year, recalled = EXCLUDED.recalled, \
                  markets = EXCLUDED.markets",
            params: vec![
                p(b.product_code.as_str().to_owned()),
                p(b.batch.as_str().to_owned()),
                p(b.expiry.as_str().to_owned()),
                p(b.expiry.date().year()),
                p(b.recalled),
                p(markets_to_text(&b.markets)),
            ],
            check: Check::None,
        });
    }
    let mut after = Vec::new();
    for w in &uow.packs {
        let (cmd, loc, at, synced) = change_columns(&w.pack);
        let changed =
            Conflict::PackVersion { product_code: w.product_code.clone(), serial: w.serial.clone() };
        let mut params = vec![
            p(w.product_code.as_str().to_owned()),
            p(w.serial.as_str().to_owned()),
            p(w.pack.batch.as_str().to_owned()),
            p(w.pack.state.as_str().to_owned()),
            p(cmd),
            p(loc.map(str::to_owned)),
            p(at),
            p(synced.map(str::to_owned)),
            p(i16::from(w.pack.repeats)),
        ];
        let sql = match w.expected_version {
            Some(v) => {
                params.push(p(v as i64));
                "UPDATE packs SET batch = $3, state = $4, last_command = $5, last_location = $6, last_at = $7, \
                 synced_from = $8, repeats = $9, version = version + 1 \
                 WHERE product_code = $1 AND serial = $2 AND version = $10"
            }
            None => {
                "INSERT INTO packs (product_code, serial, batch, state, last_command, last_location, last_at, \
                 synced_from, repeats, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1) \
                 ON CONFLICT DO NOTHING"
            }
        };
        after.push(Step { sql, params, check: Check::Refuse(changed) });
    }
    for a in &uow.alerts {
        after.push(Step {
            sql: "INSERT INTO alerts (id, code, return_code, market, product_code, serial, batch, location, \
                  client_id, created_at, status, classification, comment, source_key, pack_market, thread, version) \
                  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
                  ON CONFLICT (source_key) DO NOTHING",
            params: vec![
                p(a.id.as_str().to_owned()),
                p(a.code.as_str().to_owned()),
                p(a.return_code.as_str().to_owned()),
                p(a.market.as_str().to_owned()),
                p(a.product_code.clone()),
                p(a.serial.as_str().to_owned()),
                p(a.batch.clone()),
                p(a.location.as_str().to_owned()),
                p(a.client_id.as_str().to_owned()),
                p(a.created_at.unix_millis()),
                p(a.status.as_str().to_owned()),
                p(a.classification.map(|c| c.as_str().to_owned())),
                p(a.comment.clone()),
                p(a.source_key.clone()),
                p(a.pack_market.as_str().to_owned()),
                p(decode::thread_text(&a.thread)),
                p(a.version as i64),
            ],
            check: Check::AlertSkipped(a.id.clone()),
        });
    }
    for u in &uow.alert_updates {
        after.push(Step {
            sql: "UPDATE alerts SET status = $2, classification = $3, comment = COALESCE($4, comment), \
                  thread = $5, version = version + 1 WHERE id = $1 AND version = $6",
            params: vec![
                p(u.id.as_str().to_owned()),
                p(u.status.as_str().to_owned()),
                p(u.classification.map(|c| c.as_str().to_owned())),
                p(u.comment.clone()),
                p(decode::thread_text(&u.thread)),
                p(u.expected_version as i64),
            ],
            check: Check::Refuse(Conflict::AlertStatus),
        });
    }
    for m in &uow.outbox {
        after.push(Step {
            sql: "INSERT INTO outbox (message_id, destination, kind, ordering_key, payload, created_at, \
                  next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (message_id) DO NOTHING",
            params: vec![
                p(m.message_id.as_str().to_owned()),
                p(m.destination.clone()),
                p(m.kind.clone()),
                p(m.ordering_key.clone()),
                p(m.payload.clone()),
                p(now),
            ],
            check: Check::Refuse(Conflict::Exists(format!("outbox message {}", m.message_id))),
        });
    }
    if let Some(b) = &uow.new_bulk {
        after.push(Step {
            sql: "INSERT INTO bulk_jobs (id, client_id, status, request, done_rows, total_rows, created_at) \
                  VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            params: vec![
                p(b.id.as_str().to_owned()),
                p(b.client_id.as_str().to_owned()),
                p(b.status.as_str().to_owned()),
                p(b.request.clone()),
                p(b.done_rows as i64),
                p(b.total_rows as i64),
                p(b.created_at.unix_millis()),
            ],
            check: Check::Refuse(Conflict::Exists(format!("bulk {}", b.id))),
        });
    }
    if let Some(bp) = &uow.bulk_progress {
        let expected = bp.expected_done_rows as i64;
        let done = expected + bp.results.len() as i64;
        // One statement checks the expected progress and moves it on, under the row's lock; the
        // results that follow it are rolled back with the unit when it does not match.
        after.push(Step {
            sql: "UPDATE bulk_jobs SET done_rows = $3, \
                  status = CASE WHEN $3 >= total_rows THEN 'DONE' ELSE 'RUNNING' END \
                  WHERE id = $1 AND done_rows = $2",
            params: vec![p(bp.id.as_str().to_owned()), p(expected), p(done)],
            check: Check::Refuse(Conflict::BulkProgress),
        });
        let rows: Vec<i64> = (0..bp.results.len() as i64).map(|i| expected + i).collect();
        after.push(Step {
            sql: "INSERT INTO bulk_results (bulk_id, row_no, result) \
                  SELECT $1, r, res FROM UNNEST($2::bigint[], $3::text[]) AS t(r, res)",
            params: vec![p(bp.id.as_str().to_owned()), p(rows), p(bp.results.clone())],
            check: Check::None,
        });
    }
    if let Some(cl) = &uow.new_client {
        after.push(Step {
            sql: "INSERT INTO clients (client_id, secret_hash, role, market, location, name, created_at, disabled) \
                  VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            params: vec![
                p(cl.client_id.as_str().to_owned()),
                p(cl.secret_hash.clone()),
                p(cl.role.as_str().to_owned()),
                p(cl.market.as_str().to_owned()),
                p(cl.location.as_str().to_owned()),
                p(cl.name.clone()),
                p(cl.created_at.unix_millis()),
                p(cl.disabled),
            ],
            check: Check::Refuse(Conflict::Exists(format!("client {}", cl.client_id))),
        });
    }
    for ch in &uow.client_changes {
        // A change of a client that does not exist matches no row and refuses the unit.
        after.push(Step {
            sql: "UPDATE clients SET disabled = COALESCE($2, disabled), \
                  last_used_at = CASE WHEN $3::bigint IS NULL THEN last_used_at \
                  ELSE GREATEST(COALESCE(last_used_at, $3), $3) END WHERE client_id = $1",
            params: vec![
                p(ch.client_id.as_str().to_owned()),
                p(ch.disabled),
                p(ch.used_at.map(|t| t.unix_millis())),
            ],
            check: Check::Refuse(Conflict::Missing(format!("client {}", ch.client_id))),
        });
    }
    if let Some(k) = &uow.new_key {
        // One statement retires the active key and stores the new one, or does neither when the
        // key id is taken.
        after.push(Step {
            sql: "WITH fresh AS (SELECT NOT EXISTS (SELECT 1 FROM signing_keys WHERE kid = $1) AS ok), \
                  retired AS (UPDATE signing_keys SET active = FALSE, retired_at = $4 \
                              WHERE active AND (SELECT ok FROM fresh)) \
                  INSERT INTO signing_keys (kid, secret, created_at, active, retired_at) \
                  SELECT $1, $2, $3, TRUE, NULL WHERE (SELECT ok FROM fresh)",
            params: vec![
                p(k.key.kid.as_str().to_owned()),
                p(k.key.secret.to_vec()),
                p(k.key.created_at.unix_millis()),
                p(k.at.unix_millis()),
            ],
            check: Check::Refuse(Conflict::Exists(format!("key {}", k.key.kid))),
        });
    }
    if let Some(k) = &uow.key_revocation {
        after.push(Step {
            sql: "UPDATE signing_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE kid = $1 AND NOT active",
            params: vec![p(k.kid.as_str().to_owned()), p(k.at.unix_millis())],
            check: Check::Refuse(Conflict::Missing(format!("retired token-signing key {}", k.kid))),
        });
    }
    if let Some(h) = &uow.heartbeat {
        after.push(Step {
            // With the build this node runs, which `openmvs migrate` checks before a contract.
            sql: "INSERT INTO heartbeats (node_id, at, build_schema) VALUES ($1, $2, $3) \
                  ON CONFLICT (node_id) DO UPDATE SET at = EXCLUDED.at, build_schema = EXCLUDED.build_schema",
            params: vec![p(h.node_id.as_str().to_owned()), p(h.at.unix_millis()), p(crate::schema::LATEST)],
            check: Check::None,
        });
        // Rows of nodes gone for a day are dropped, so restarts do not accumulate them.
        after.push(Step {
            sql: "DELETE FROM heartbeats WHERE at < $1",
            params: vec![p(h.at.unix_millis() - 86_400_000)],
            check: Check::None,
        });
    }
    if uow.new_packs.is_empty() {
        before.append(&mut after);
        pipeline(c, &before, &mut out).await?;
    } else {
        pipeline(c, &before, &mut out).await?;
        for np in &uow.new_packs {
            out.packs_created += ingest(c, np).await?;
        }
        pipeline(c, &after, &mut out).await?;
    }
    Ok(out)
}

/// Creates the serials of one batch that do not exist yet, streamed in with COPY; returns how many
/// were created.
async fn ingest(c: &Conn, np: &NewPacks) -> Result<u64, Fail> {
    if np.serials.is_empty() {
        return Ok(0);
    }
    let sink = c.client.copy_in("COPY pack_ingest (product_code, serial, batch) FROM STDIN BINARY").await?;
    let writer = BinaryCopyInWriter::new(sink, &[Type::TEXT, Type::TEXT, Type::TEXT]);
    let mut writer = std::pin::pin!(writer);
    let (pc, batch) = (np.product_code.as_str(), np.batch.as_str());
    for s in &np.serials {
        writer.as_mut().write(&[&pc, &s.as_str(), &batch]).await?;
    }
    writer.as_mut().finish().await?;
    let q = c
        .stmt(
            "INSERT INTO packs (product_code, serial, batch, state, repeats, version) \
             SELECT product_code, serial, batch, 'ACTIVE', 0, 1 FROM pack_ingest ON CONFLICT DO NOTHING",
        )
        .await?;
    let n = c.client.execute(&q, &[]).await?;
    c.client.batch_execute("TRUNCATE pack_ingest").await?;
    Ok(n)
}
