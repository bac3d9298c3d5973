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
use openmvs_audit::{ChainHead, Entry, Sealed, sign_checkpoint};
use openmvs_core::time::Clock;
use openmvs_store::decode::{change_columns, markets_to_text};
use openmvs_store::*;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Config;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use crate::codec::{is_contention, pg_err};
pub use crate::pool::Conn;
use crate::pool::connect;

/// The most units of work committed in one transaction.
pub const MAX_GROUP: usize = 1024;
/// A checkpoint is signed after this many records of a market since the last one ...
pub const CHECKPOINT_EVERY_RECORDS: i64 = 1000;
/// ... or when this much time has passed with unsigned records.
pub const CHECKPOINT_EVERY_MILLIS: i64 = 60_000;

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
    Stop(std::sync::mpsc::Sender<()>),
}

/// The writer's state.
pub struct Writer {
    pub(crate) config: Config,
    pub(crate) handle: Handle,
    pub(crate) conn: Option<Arc<Conn>>,
    pub(crate) key: SigningKey,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) on_group: Option<Arc<dyn Fn(usize) + Send + Sync>>,
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
            let Some(first) = rx.recv().await else { break };
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
        if let Err(e) = self.sign_all().await {
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
        let c = connect(&self.config, &self.handle).await?;
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
        c.client.batch_execute("BEGIN").await.map_err(pg_err)?;
        let mut results = Vec::with_capacity(group.len());
        for (u, _) in group {
            c.client.batch_execute("SAVEPOINT uow").await.map_err(pg_err)?;
            let r = match u.apply(c, now).await {
                Ok(done) => {
                    c.client.batch_execute("RELEASE SAVEPOINT uow").await.map_err(pg_err)?;
                    Ok(done)
                }
                Err(fail) => {
                    c.client
                        .batch_execute("ROLLBACK TO SAVEPOINT uow; RELEASE SAVEPOINT uow")
                        .await
                        .map_err(pg_err)?;
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
        if !entries.is_empty() {
            let seqs = self.seal(c, &entries, now).await?;
            for ((i, _), seq) in entries.iter().zip(seqs) {
                if let Ok(done) = &mut results[*i] {
                    U::sealed(done, seq);
                }
            }
        }
        c.client.batch_execute("COMMIT").await.map_err(pg_err)?;
        Ok(results)
    }

    /// Appends `entries` to their chains; returns the sequence number each got. Takes the trail's
    /// lock, held until the transaction ends.
    async fn seal(&self, c: &Conn, entries: &[(usize, &Entry)], now: i64) -> StoreResult<Vec<u64>> {
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
                self.sign_if_due(c, h, now, false).await?;
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
    /// unsigned tail when `all`).
    async fn sign_if_due(&self, c: &Conn, h: &mut Head, now: i64, all: bool) -> StoreResult<()> {
        let unsigned = h.head.seq as i64 - h.signed_seq;
        let due = unsigned >= CHECKPOINT_EVERY_RECORDS || now - h.signed_at >= CHECKPOINT_EVERY_MILLIS;
        if unsigned == 0 || !(all || due) {
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
        Ok(())
    }

    /// Signs a checkpoint for every unsigned tail, in a transaction of its own (on the write
    /// connection, or on a connection of its own if there is none).
    pub async fn sign_all(&mut self) -> StoreResult<()> {
        let c = match &self.conn {
            Some(c) if !c.client.is_closed() => c.clone(),
            _ => connect(&self.config, &self.handle).await?,
        };
        let now = self.clock.now().unix_millis();
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
                self.sign_if_due(&c, h, now, true).await?;
            }
            self.store_heads(&c, heads.values()).await?;
            c.client.batch_execute("COMMIT").await.map_err(pg_err)
        }
        .await;
        if r.is_err() {
            let _ = c.client.batch_execute("ROLLBACK").await;
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

/// Applies one unit of work on the open transaction (audit records excepted: they are sealed after
/// every unit of the group).
async fn apply(c: &Conn, uow: &UnitOfWork, now: i64) -> Result<Committed, Fail> {
    let mut out = Committed::default();
    if let Some(i) = &uow.idempotency {
        let q = c
            .stmt(
                "INSERT INTO idempotency (client_id, client_trx_id, request_hash, status, response, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            )
            .await?;
        let status = i32::from(i.status);
        let n = c
            .client
            .execute(
                &q,
                &[
                    &i.client_id,
                    &i.client_trx_id,
                    &&i.request_hash[..],
                    &status,
                    &i.response,
                    &i.created_at.unix_millis(),
                ],
            )
            .await?;
        if n == 0 {
            return Err(conflict(Conflict::IdempotencyKey));
        }
    }
    if let Some(id) = &uow.inbox {
        let q = c
            .stmt("INSERT INTO inbox (message_id, applied_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .await?;
        if c.client.execute(&q, &[id, &now]).await? == 0 {
            return Err(conflict(Conflict::InboxMessage));
        }
    }
    for p in &uow.products {
        let q = c
            .stmt(
                "INSERT INTO products (product_code, scheme, name, common_name, form, strength, pack_type, \
                 pack_size, owner, withdrawn, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (product_code) DO UPDATE SET scheme = EXCLUDED.scheme, name = EXCLUDED.name, \
                 common_name = EXCLUDED.common_name, form = EXCLUDED.form, strength = EXCLUDED.strength, \
                 pack_type = EXCLUDED.pack_type, pack_size = EXCLUDED.pack_size, owner = EXCLUDED.owner, \
                 withdrawn = EXCLUDED.withdrawn, version = EXCLUDED.version",
            )
            .await?;
        let version = i64::from(p.version);
        c.client
            .execute(
                &q,
                &[
                    &p.product_code.as_str(),
                    &p.product_code.scheme().as_str(),
                    &p.name,
                    &p.common_name,
                    &p.form,
                    &p.strength,
                    &p.pack_type,
                    &p.pack_size,
                    &p.owner,
                    &p.withdrawn,
                    &version,
                ],
            )
            .await?;
    }
    for b in &uow.batches {
        let q = c
            .stmt(
                "INSERT INTO batches (product_code, batch, expiry, expiry_year, recalled, markets) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (product_code, batch) DO UPDATE SET \
                 expiry = EXCLUDED.expiry, expiry_year = EXCLUDED.expiry_year, recalled = EXCLUDED.recalled, \
                 markets = EXCLUDED.markets",
            )
            .await?;
        let year: i32 = b.expiry.date().year();
        c.client
            .execute(
                &q,
                &[
                    &b.product_code.as_str(),
                    &b.batch.as_str(),
                    &b.expiry.as_str(),
                    &year,
                    &b.recalled,
                    &markets_to_text(&b.markets),
                ],
            )
            .await?;
    }
    for np in &uow.new_packs {
        out.packs_created += ingest(c, np).await?;
    }
    for w in &uow.packs {
        let (cmd, loc, at, synced) = change_columns(&w.pack);
        let repeats = i16::from(w.pack.repeats);
        let n = match w.expected_version {
            Some(v) => {
                let q = c
                    .stmt(
                        "UPDATE packs SET batch = $3, state = $4, last_command = $5, last_location = $6, last_at = $7, \
                         synced_from = $8, repeats = $9, version = version + 1 \
                         WHERE product_code = $1 AND serial = $2 AND version = $10",
                    )
                    .await?;
                let v = v as i64;
                c.client
                    .execute(
                        &q,
                        &[
                            &w.product_code.as_str(),
                            &w.serial.as_str(),
                            &w.pack.batch.as_str(),
                            &w.pack.state.as_str(),
                            &cmd,
                            &loc,
                            &at,
                            &synced,
                            &repeats,
                            &v,
                        ],
                    )
                    .await?
            }
            None => {
                let q = c
                    .stmt(
                        "INSERT INTO packs (product_code, serial, batch, state, last_command, last_location, last_at, \
                         synced_from, repeats, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1) \
                         ON CONFLICT DO NOTHING",
                    )
                    .await?;
                c.client
                    .execute(
                        &q,
                        &[
                            &w.product_code.as_str(),
                            &w.serial.as_str(),
                            &w.pack.batch.as_str(),
                            &w.pack.state.as_str(),
                            &cmd,
                            &loc,
                            &at,
                            &synced,
                            &repeats,
                        ],
                    )
                    .await?
            }
        };
        if n == 0 {
            return Err(conflict(Conflict::PackVersion {
                product_code: w.product_code.as_str().to_owned(),
                serial: w.serial.as_str().to_owned(),
            }));
        }
    }
    for a in &uow.alerts {
        let q = c
            .stmt(
                "INSERT INTO alerts (id, code, return_code, market, product_code, serial, batch, location, client_id, \
                 created_at, status, classification, comment, source_key) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT (source_key) DO NOTHING",
            )
            .await?;
        let n = c
            .client
            .execute(
                &q,
                &[
                    &a.id,
                    &a.code.as_str(),
                    &a.return_code.as_str(),
                    &a.market.as_str(),
                    &a.product_code,
                    &a.serial,
                    &a.batch,
                    &a.location,
                    &a.client_id,
                    &a.created_at.unix_millis(),
                    &a.status.as_str(),
                    &a.classification.map(|c| c.as_str()),
                    &a.comment,
                    &a.source_key,
                ],
            )
            .await?;
        if n == 0 {
            out.alerts_skipped.push(a.id.clone());
        }
    }
    for u in &uow.alert_updates {
        let q = c
            .stmt(
                "UPDATE alerts SET status = $2, classification = COALESCE($3, classification), \
                 comment = COALESCE($4, comment) WHERE id = $1 AND status = $5",
            )
            .await?;
        let n = c
            .client
            .execute(
                &q,
                &[
                    &u.id,
                    &u.status.as_str(),
                    &u.classification.map(|c| c.as_str()),
                    &u.comment,
                    &u.expected_status.as_str(),
                ],
            )
            .await?;
        if n == 0 {
            return Err(conflict(Conflict::AlertStatus));
        }
    }
    for m in &uow.outbox {
        let q = c
            .stmt(
                "INSERT INTO outbox (message_id, destination, kind, ordering_key, payload, created_at, next_attempt_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (message_id) DO NOTHING",
            )
            .await?;
        let n = c
            .client
            .execute(&q, &[&m.message_id, &m.destination, &m.kind, &m.ordering_key, &m.payload, &now])
            .await?;
        if n == 0 {
            return Err(conflict(Conflict::Exists(format!("outbox message {}", m.message_id))));
        }
    }
    if let Some(b) = &uow.new_bulk {
        let q = c
            .stmt(
                "INSERT INTO bulk_jobs (id, client_id, status, request, done_rows, total_rows, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            )
            .await?;
        let (done, total) = (b.done_rows as i64, b.total_rows as i64);
        let n = c
            .client
            .execute(
                &q,
                &[
                    &b.id,
                    &b.client_id,
                    &b.status.as_str(),
                    &b.request,
                    &done,
                    &total,
                    &b.created_at.unix_millis(),
                ],
            )
            .await?;
        if n == 0 {
            return Err(conflict(Conflict::Exists(format!("bulk {}", b.id))));
        }
    }
    if let Some(p) = &uow.bulk_progress {
        let expected = p.expected_done_rows as i64;
        let done = expected + p.results.len() as i64;
        // One statement checks the expected progress and moves it on, under the row's lock.
        let q = c
            .stmt(
                "UPDATE bulk_jobs SET done_rows = $3, \
                 status = CASE WHEN $3 >= total_rows THEN 'DONE' ELSE 'RUNNING' END \
                 WHERE id = $1 AND done_rows = $2",
            )
            .await?;
        if c.client.execute(&q, &[&p.id, &expected, &done]).await? == 0 {
            return Err(conflict(Conflict::BulkProgress));
        }
        let rows: Vec<i64> = (0..p.results.len() as i64).map(|i| expected + i).collect();
        let q = c
            .stmt(
                "INSERT INTO bulk_results (bulk_id, row_no, result) \
                 SELECT $1, r, res FROM UNNEST($2::bigint[], $3::text[]) AS t(r, res)",
            )
            .await?;
        c.client.execute(&q, &[&p.id, &rows, &p.results]).await?;
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
