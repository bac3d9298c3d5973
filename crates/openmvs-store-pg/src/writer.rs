//! The group-committing writer of one node.
//!
//! One task owns the node's write connection. It takes every queued unit of work, runs each in its
//! own savepoint (a unit that conflicts rolls back alone), then seals the audit records of the
//! units that applied, and commits once: one transaction and one WAL flush for the whole group.
//!
//! Across nodes, two things serialise: row locks (two nodes changing one pack: the second waits
//! for the first to commit, then finds the version moved on and conflicts) and the single row of
//! `audit_state`, locked by each group just before it commits. Holding that lock while sealing
//! makes positions and every market's chain follow commit order with no gaps, on any number of
//! nodes, at the cost of one lock hold (a few inserts and the commit's flush) per group, not per
//! operation.
//!
//! The loop is generic over the kind of unit it commits ([`Unit`]): the national system's
//! [`UnitOfWork`] and the hub's `HubUnitOfWork` share it, and with it the group commit, the
//! savepoints and the sealing and signing of the audit trail.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use openmvs_audit::{ChainHead, Checkpoint, Entry, Sealed, sign_checkpoint};
use openmvs_core::time::Clock;
use openmvs_store::decode::{change_columns, markets_to_text};
use openmvs_store::*;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Config;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use crate::codec::{is_contention, pg_err};
pub use crate::pool::Conn;
use crate::pool::connect;

/// The most units of work committed in one transaction.
pub const MAX_GROUP: usize = 1024;

/// A kind of unit of work the writer commits: what it changes, and what committing it reports.
pub trait Unit: Send + Sync + 'static {
    /// What a commit of the unit reports back.
    type Done: Send + 'static;
    /// Run once on each new write connection: the session's staging tables for rows that arrive
    /// in bulk and are streamed in with COPY.
    const SESSION: &'static str;
    /// The audit entries the unit appends, sealed after every unit of its group has run.
    fn audit(&self) -> &[Entry];
    /// Applies the unit (audit entries excepted) on the open transaction, inside its own
    /// savepoint.
    fn apply<'a>(
        &'a self,
        c: &'a Conn,
        now: i64,
    ) -> impl Future<Output = Result<Self::Done, Fail>> + Send + 'a;
    /// Records the sequence number the unit's next audit entry got.
    fn sealed(done: &mut Self::Done, seq: u64);
    /// How a unit whose statement lost a lock wait is answered, so that the caller reads and
    /// decides again where it can.
    fn contended(&self) -> StoreError;
}

impl Unit for UnitOfWork {
    type Done = Committed;
    // Serials arriving in bulk are streamed in with COPY into this session's staging table.
    const SESSION: &'static str = "CREATE TEMP TABLE IF NOT EXISTS pack_ingest (product_code TEXT NOT NULL, \
         serial TEXT NOT NULL, batch TEXT NOT NULL) ON COMMIT DELETE ROWS";

    fn audit(&self) -> &[Entry] {
        &self.audit
    }

    fn apply<'a>(
        &'a self,
        c: &'a Conn,
        now: i64,
    ) -> impl Future<Output = Result<Committed, Fail>> + Send + 'a {
        apply(c, self, now)
    }

    fn sealed(done: &mut Committed, seq: u64) {
        done.audit_seqs.push(seq);
    }

    fn contended(&self) -> StoreError {
        contended(self)
    }
}

/// Work for the writer.
pub enum Job<U: Unit = UnitOfWork> {
    /// Commit a unit of work and answer when durable.
    Commit(Box<U>, oneshot::Sender<StoreResult<U::Done>>),
    /// Sign checkpoints for every unsigned record and stop.
    Stop(oneshot::Sender<()>),
}

/// The writer's state.
pub struct Writer {
    pub(crate) config: Config,
    pub(crate) conn: Option<Arc<Conn>>,
    pub(crate) key: SigningKey,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) on_group: Option<Arc<dyn Fn(usize) + Send + Sync>>,
    /// When checkpoints are signed, and who hears of them.
    pub(crate) checkpoints: CheckpointOptions,
}

/// Why a unit stopped: refused (a conflict) or the database failed the statement.
pub enum Fail {
    /// Refused by the store's rules (a conflict), or a record that cannot be stored.
    Store(StoreError),
    /// A statement failed: contention (the unit is answered as [`Unit::contended`]) or worse.
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

type Reply<U> = oneshot::Sender<StoreResult<<U as Unit>::Done>>;

impl Writer {
    /// Runs until the channel closes or a `Stop` arrives.
    pub async fn run<U: Unit>(mut self, mut rx: mpsc::Receiver<Job<U>>) {
        let mut stop = None;
        while stop.is_none() {
            // While no work comes, the writer looks every interval for tails due by time, its own
            // or those another node left unsigned (it may have stopped since).
            let first = match tokio::time::timeout(self.checkpoints.every, rx.recv()).await {
                Ok(Some(job)) => job,
                Ok(None) => break,
                Err(_) => {
                    // On the write connection, kept for the next group, not one opened each time.
                    let signed = match self.connection::<U>().await {
                        Ok(_) => self.sign_tails(false).await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = signed {
                        tracing::debug!(error = %e, "signing due audit checkpoints failed; trying again later");
                    }
                    continue;
                }
            };
            let mut jobs = vec![first];
            while jobs.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            let mut group = Vec::with_capacity(jobs.len());
            for job in jobs {
                match job {
                    Job::Commit(u, reply) if stop.is_none() => group.push((u, reply)),
                    Job::Commit(_, reply) => {
                        let _ = reply.send(Err(StoreError::Unavailable("store is shutting down".into())));
                    }
                    Job::Stop(tx) => stop = Some(tx),
                }
            }
            if !group.is_empty() {
                self.commit_group(group).await;
            }
        }
        if let Err(e) = self.sign_tails(true).await {
            tracing::error!(error = %e, "signing the final audit checkpoints failed");
        }
        if let Some(tx) = stop {
            let _ = tx.send(());
        }
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

    async fn commit_group<U: Unit>(&mut self, group: Vec<(Box<U>, Reply<U>)>) {
        if let Some(f) = &self.on_group {
            f(group.len());
        }
        let outcome = match self.connection::<U>().await {
            Ok(c) => {
                let r = self.transaction(&c, &group).await;
                if r.is_err() {
                    let _ = c.client.batch_execute("ROLLBACK").await;
                }
                r
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(results) => {
                for ((_, reply), r) in group.into_iter().zip(results) {
                    let _ = reply.send(r);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "group commit failed; nothing of it was written");
                let e = match e {
                    StoreError::Conflict(_) => StoreError::Unavailable("group commit failed".into()),
                    e => e,
                };
                for (_, reply) in group {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }

    async fn transaction<U: Unit>(
        &self,
        c: &Conn,
        group: &[(Box<U>, Reply<U>)],
    ) -> StoreResult<Vec<StoreResult<U::Done>>> {
        let now = self.clock.now().unix_millis();
        let mut results = Vec::with_capacity(group.len());
        for (i, (u, _)) in group.iter().enumerate() {
            // Each unit runs in its own savepoint, opened in the same round trip as the unit's
            // statements (and the transaction with the first); the previous unit's savepoint is
            // released there too. COMMIT releases the last one.
            let open = if i == 0 { "BEGIN; SAVEPOINT uow" } else { "RELEASE SAVEPOINT uow; SAVEPOINT uow" };
            let (opened, applied) =
                futures_util::future::join(c.client.batch_execute(open), u.apply(c, now)).await;
            opened.map_err(pg_err)?;
            let r = match applied {
                Ok(done) => Ok(done),
                Err(fail) => {
                    // Undoes the unit alone; the savepoint stays for the next unit to release.
                    c.client.batch_execute("ROLLBACK TO SAVEPOINT uow").await.map_err(pg_err)?;
                    Err(match fail {
                        Fail::Store(e) => e,
                        Fail::Db(e) if is_contention(&e) => u.contended(),
                        Fail::Db(e) => pg_err(e),
                    })
                }
            };
            results.push(r);
        }
        // The audit records of the units that applied, sealed in order under the trail's lock.
        let entries: Vec<(usize, &Entry)> = group
            .iter()
            .enumerate()
            .filter(|(i, _)| results[*i].is_ok())
            .flat_map(|(i, (u, _))| u.audit().iter().map(move |e| (i, e)))
            .collect();
        let mut signed = Vec::new();
        if !entries.is_empty() {
            let seqs = self.seal(c, &entries, now, &mut signed).await?;
            for ((i, _), seq) in entries.iter().zip(seqs) {
                if let Ok(done) = &mut results[*i] {
                    U::sealed(done, seq);
                }
            }
        }
        c.client.batch_execute("COMMIT").await.map_err(pg_err)?;
        self.checkpoints.committed(&signed);
        Ok(results)
    }

    /// Appends `entries` to their chains; returns the sequence number each got. Takes the trail's
    /// lock, held until the transaction ends.
    async fn seal(
        &self,
        c: &Conn,
        entries: &[(usize, &Entry)],
        now: i64,
        signed: &mut Vec<Checkpoint>,
    ) -> StoreResult<Vec<u64>> {
        let n = entries.len() as i64;
        let lock = c.stmt("UPDATE audit_state SET pos = pos + $1 WHERE id = 1 RETURNING pos - $1").await?;
        let first: i64 = c.client.query_one(&lock, &[&n]).await.map_err(pg_err)?.get(0);
        let mut markets: Vec<String> = entries.iter().map(|(_, e)| e.market.clone()).collect();
        markets.sort();
        markets.dedup();
        let mut heads = self.heads(c, &markets).await?;
        let mut sealed: Vec<Sealed> = Vec::with_capacity(entries.len());
        for (_, e) in entries {
            let h = heads.entry(e.market.clone()).or_insert_with(|| Head {
                head: ChainHead::genesis(&e.market),
                signed_seq: 0,
                signed_at: e.at_millis,
            });
            sealed.push(h.head.seal((*e).clone()).map_err(|e| StoreError::Corrupt(e.to_string()))?);
        }
        let pos: Vec<i64> = (1..=n).map(|i| first + i).collect();
        let col = |f: &dyn Fn(&Sealed) -> String| sealed.iter().map(f).collect::<Vec<String>>();
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
        let seq: Vec<i64> = sealed.iter().map(|s| s.seq as i64).collect();
        let at: Vec<i64> = sealed.iter().map(|s| s.entry.at_millis).collect();
        let prev: Vec<Vec<u8>> = sealed.iter().map(|s| s.prev_hash.to_vec()).collect();
        let hash: Vec<Vec<u8>> = sealed.iter().map(|s| s.hash.to_vec()).collect();
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
        for h in heads.values_mut() {
            if markets.contains(&h.head.market) {
                self.sign_if_due(c, h, now, false, signed).await?;
            }
        }
        self.store_heads(c, heads.values().filter(|h| markets.contains(&h.head.market))).await?;
        Ok(sealed.iter().map(|s| s.seq).collect())
    }

    async fn heads(&self, c: &Conn, markets: &[String]) -> StoreResult<HashMap<String, Head>> {
        let q = c
            .stmt("SELECT market, seq, hash, signed_seq, signed_at FROM audit_heads WHERE market = ANY($1)")
            .await?;
        let rows = c.client.query(&q, &[&markets]).await.map_err(pg_err)?;
        let mut out = HashMap::new();
        for r in rows {
            let market: String = r.get(0);
            let hash = decode::hash(r.get(2))?;
            let seq: i64 = r.get(1);
            out.insert(
                market.clone(),
                Head {
                    head: ChainHead { market, seq: seq as u64, hash },
                    signed_seq: r.get(3),
                    signed_at: r.get(4),
                },
            );
        }
        Ok(out)
    }

    async fn store_heads(&self, c: &Conn, heads: impl Iterator<Item = &Head>) -> StoreResult<()> {
        let q = c
            .stmt(
                "INSERT INTO audit_heads (market, seq, hash, signed_seq, signed_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (market) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash, \
                 signed_seq = EXCLUDED.signed_seq, signed_at = EXCLUDED.signed_at",
            )
            .await?;
        for h in heads {
            let seq = h.head.seq as i64;
            c.client
                .execute(&q, &[&h.head.market, &seq, &&h.head.hash[..], &h.signed_seq, &h.signed_at])
                .await
                .map_err(pg_err)?;
        }
        Ok(())
    }

    /// Signs a checkpoint of the chain when its unsigned tail is long or old enough (any
    /// unsigned tail when `all`), and adds it to `signed`.
    async fn sign_if_due(
        &self,
        c: &Conn,
        h: &mut Head,
        now: i64,
        all: bool,
        signed: &mut Vec<Checkpoint>,
    ) -> StoreResult<()> {
        let unsigned = u64::try_from(h.head.seq as i64 - h.signed_seq).unwrap_or(0);
        if unsigned == 0 || !(all || self.checkpoints.due(unsigned, h.signed_at, now)) {
            return Ok(());
        }
        let cp = sign_checkpoint(&h.head, now, &self.key);
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
        h.signed_seq = seq;
        h.signed_at = now;
        signed.push(cp);
        Ok(())
    }

    /// Signs a checkpoint for every unsigned tail that is due (every one when `all`), in a
    /// transaction of its own (on the write connection, or on a connection of its own if there
    /// is none), then tells the sink.
    pub async fn sign_tails(&mut self, all: bool) -> StoreResult<()> {
        let c = match &self.conn {
            Some(c) if !c.client.is_closed() => c.clone(),
            _ => connect(&self.config).await?,
        };
        let now = self.clock.now().unix_millis();
        if !all {
            // A look without the trail's lock first: most of the time nothing is due.
            let records = i64::try_from(self.checkpoints.every_records).unwrap_or(i64::MAX);
            let old = now.saturating_sub(self.checkpoints.every_millis());
            let due = c
                .client
                .query_opt(
                    "SELECT 1 FROM audit_heads WHERE seq > signed_seq \
                     AND (seq - signed_seq >= $1 OR signed_at <= $2) LIMIT 1",
                    &[&records, &old],
                )
                .await
                .map_err(pg_err)?;
            if due.is_none() {
                return Ok(());
            }
        }
        let mut signed = Vec::new();
        c.client.batch_execute("BEGIN").await.map_err(pg_err)?;
        let r = async {
            c.client
                .execute("SELECT pos FROM audit_state WHERE id = 1 FOR UPDATE", &[])
                .await
                .map_err(pg_err)?;
            let markets: Vec<String> = c
                .client
                .query("SELECT market FROM audit_heads WHERE seq > signed_seq", &[])
                .await
                .map_err(pg_err)?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let mut heads = self.heads(&c, &markets).await?;
            for h in heads.values_mut() {
                self.sign_if_due(&c, h, now, all, &mut signed).await?;
            }
            self.store_heads(&c, heads.values()).await?;
            c.client.batch_execute("COMMIT").await.map_err(pg_err)
        }
        .await;
        match r {
            Ok(()) => self.checkpoints.committed(&signed),
            Err(_) => {
                let _ = c.client.batch_execute("ROLLBACK").await;
            }
        }
        r
    }
}

struct Head {
    head: ChainHead,
    signed_seq: i64,
    signed_at: i64,
}

/// A unit that lost a lock wait is answered as a conflict on its pack, so the caller reads and
/// decides again, as after any other race.
fn contended(u: &UnitOfWork) -> StoreError {
    match u.packs.first() {
        Some(p) => StoreError::Conflict(Conflict::PackVersion {
            product_code: p.product_code.as_str().to_owned(),
            serial: p.serial.as_str().to_owned(),
        }),
        None => StoreError::Unavailable("the unit of work waited too long for a lock; try again".into()),
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
    AlertSkipped(String),
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
                p(i.client_id.clone()),
                p(i.client_trx_id.clone()),
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
            params: vec![p(id.clone()), p(now)],
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
                p(pr.owner.clone()),
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
        let changed = Conflict::PackVersion {
            product_code: w.product_code.as_str().to_owned(),
            serial: w.serial.as_str().to_owned(),
        };
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
                  client_id, created_at, status, classification, comment, source_key) \
                  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
                  ON CONFLICT (source_key) DO NOTHING",
            params: vec![
                p(a.id.clone()),
                p(a.code.as_str().to_owned()),
                p(a.return_code.as_str().to_owned()),
                p(a.market.as_str().to_owned()),
                p(a.product_code.clone()),
                p(a.serial.clone()),
                p(a.batch.clone()),
                p(a.location.clone()),
                p(a.client_id.clone()),
                p(a.created_at.unix_millis()),
                p(a.status.as_str().to_owned()),
                p(a.classification.map(|c| c.as_str().to_owned())),
                p(a.comment.clone()),
                p(a.source_key.clone()),
            ],
            check: Check::AlertSkipped(a.id.clone()),
        });
    }
    for u in &uow.alert_updates {
        after.push(Step {
            sql: "UPDATE alerts SET status = $2, classification = COALESCE($3, classification), \
                  comment = COALESCE($4, comment) WHERE id = $1 AND status = $5",
            params: vec![
                p(u.id.clone()),
                p(u.status.as_str().to_owned()),
                p(u.classification.map(|c| c.as_str().to_owned())),
                p(u.comment.clone()),
                p(u.expected_status.as_str().to_owned()),
            ],
            check: Check::Refuse(Conflict::AlertStatus),
        });
    }
    for m in &uow.outbox {
        after.push(Step {
            sql: "INSERT INTO outbox (message_id, destination, kind, ordering_key, payload, created_at, \
                  next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (message_id) DO NOTHING",
            params: vec![
                p(m.message_id.clone()),
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
                p(b.id.clone()),
                p(b.client_id.clone()),
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
            params: vec![p(bp.id.clone()), p(expected), p(done)],
            check: Check::Refuse(Conflict::BulkProgress),
        });
        let rows: Vec<i64> = (0..bp.results.len() as i64).map(|i| expected + i).collect();
        after.push(Step {
            sql: "INSERT INTO bulk_results (bulk_id, row_no, result) \
                  SELECT $1, r, res FROM UNNEST($2::bigint[], $3::text[]) AS t(r, res)",
            params: vec![p(bp.id.clone()), p(rows), p(bp.results.clone())],
            check: Check::None,
        });
    }
    for ch in &uow.client_changes {
        // A change of a client that does not exist matches no row and refuses the unit.
        after.push(Step {
            sql: "UPDATE clients SET disabled = COALESCE($2, disabled), \
                  last_used_at = CASE WHEN $3::bigint IS NULL THEN last_used_at \
                  ELSE GREATEST(COALESCE(last_used_at, $3), $3) END WHERE client_id = $1",
            params: vec![p(ch.client_id.clone()), p(ch.disabled), p(ch.used_at.map(|t| t.unix_millis()))],
            check: Check::Refuse(Conflict::Missing(format!("client {}", ch.client_id))),
        });
    }
    if let Some(k) = &uow.key_revocation {
        after.push(Step {
            sql: "UPDATE signing_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE kid = $1 AND NOT active",
            params: vec![p(k.kid.clone()), p(k.at.unix_millis())],
            check: Check::Refuse(Conflict::Missing(format!("retired token-signing key {}", k.kid))),
        });
    }
    if let Some(h) = &uow.heartbeat {
        after.push(Step {
            sql: "INSERT INTO heartbeats (node_id, at) VALUES ($1, $2) \
                  ON CONFLICT (node_id) DO UPDATE SET at = EXCLUDED.at",
            params: vec![p(h.node_id.clone()), p(h.at.unix_millis())],
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
