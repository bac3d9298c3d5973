//! What every store of this engine starts and stops the same way: its schema checked (or
//! migrated), its pool, and this node's writer.
//!
//! Reads are async queries on the node's runtime. The writer runs on a thread of its own (with a
//! one-thread runtime for its connection), as the SQLite writer does: a group commit is a chain of
//! round trips to the database, and on the node's workers each would wait its turn behind the
//! requests being served, so groups would take longer and throughput would fall as load rises.

use std::sync::Arc;
use std::time::Duration;

use openmvs_core::time::Timestamp;
use openmvs_store::commit::attach_ticks;
use openmvs_store::{BoxFuture, StoreError, StoreResult};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Client;

use crate::pool::{self, Pool};
use crate::writer::{Job, Pg, Unit, Writer};
use crate::{QUEUE_BOUND, connection_config, pg_err};

/// The schema's version, read from the database.
pub(crate) type Current = for<'a> fn(&'a Client) -> BoxFuture<'a, Result<i64, tokio_postgres::Error>>;
/// Applies pending migrations: the versions applied, or why the schema is refused.
pub(crate) type Migrate =
    for<'a> fn(&'a Client, i64) -> BoxFuture<'a, Result<Result<Vec<i64>, String>, tokio_postgres::Error>>;

/// One kind of schema (a national system's, the hub's).
pub(crate) struct SchemaKind {
    /// For thread names and messages.
    pub name: &'static str,
    /// The version this build writes.
    pub latest: i64,
    /// The table that records the migrations applied.
    pub table: &'static str,
    pub current: Current,
    pub migrate: Migrate,
}

/// Applies pending migrations to `schema` (created if needed); returns the versions applied.
pub(crate) fn migrate(
    kind: &SchemaKind,
    url: &str,
    schema: Option<&str>,
    now: Timestamp,
) -> StoreResult<Vec<i64>> {
    let config = connection_config(url, schema)?;
    let apply = kind.migrate;
    pool::once(async move {
        let c = pool::connect(&config).await?;
        if let Some(s) = schema {
            c.client.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {s}")).await.map_err(pg_err)?;
        }
        apply(&c.client, now.unix_millis()).await.map_err(pg_err)?.map_err(StoreError::Unavailable)
    })
}

/// Connects, checks (or first applies) the schema's version, and starts this node's writer on a
/// thread of its own; the pool's connections run on the current runtime (the node's).
pub(crate) fn start<U: Unit>(kind: &SchemaKind, o: crate::PgOptions) -> StoreResult<(Arc<Pool>, Queue<U>)> {
    tokio::runtime::Handle::try_current().map_err(|_| {
        StoreError::Unavailable("a PostgreSQL store is opened inside the runtime it runs on".into())
    })?;
    if o.migrate {
        migrate(kind, &o.url, o.schema.as_deref(), o.clock.now())?;
    }
    let config = connection_config(&o.url, o.schema.as_deref())?;
    let (current, table, latest) = (kind.current, kind.table, kind.latest);
    let c = config.clone();
    let (version, floor) = pool::once(async move {
        let conn = pool::connect(&c).await?;
        let version = current(&conn.client).await.map_err(pg_err)?;
        let floor = crate::migrations::floor_above(&conn.client, table, latest).await.map_err(pg_err)?;
        Ok((version, floor))
    })?;
    // A newer schema is fine while every migration above this build leaves it working (expand).
    openmvs_store::rolling::may_open(latest, version, floor).map_err(|why| {
        StoreError::Unavailable(format!(
            "the {} schema{}: {why}",
            kind.name,
            o.schema.as_deref().map(|s| format!(" '{s}'")).unwrap_or_default(),
        ))
    })?;
    let pool = Pool::new(config.clone(), o.pool_size);
    let (tx, rx) = mpsc::channel(QUEUE_BOUND);
    let queue = tx.downgrade();
    attach_ticks(&o.checkpoints, move |job| {
        // Gone once the store is: its sender closes the queue. A full queue drops the tick, which
        // is then answered at once.
        queue
            .upgrade()
            .is_some_and(|tx| !matches!(tx.try_send(job), Err(mpsc::error::TrySendError::Closed(_))))
    });
    let commit_timeout = o.commit_timeout;
    let writer: Writer<U> = Writer::new(Pg::new(config), o.signing_key, o.clock, o.on_group, o.checkpoints);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StoreError::Unavailable(format!("starting the writer's runtime: {e}")))?;
    let name = format!("openmvs-pg-{}-writer", kind.name);
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || rt.block_on(writer.run(rx)))
        .map_err(|e| StoreError::Unavailable(format!("starting the thread {name}: {e}")))?;
    Ok((pool, Queue { tx, commit_timeout }))
}

/// The queue of this node's writer, and how long a unit waits for its commit to be confirmed.
pub(crate) struct Queue<U: Unit> {
    tx: mpsc::Sender<Job<U>>,
    commit_timeout: Duration,
}

impl<U: Unit> Queue<U> {
    /// Queues `unit` and waits for its commit, at most the commit timeout. A unit not confirmed
    /// by then (no writable primary: the old one is gone and no standby is promoted yet, or the
    /// synchronous standby is missing) is answered unavailable with its outcome unknown; it may
    /// still commit, which a retry with the same `client_trx_id` finds.
    pub(crate) async fn commit(&self, unit: U) -> StoreResult<U::Done> {
        let (tx, rx) = oneshot::channel();
        self.tx.try_send(Job::Commit(Box::new(unit), tx)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                StoreError::Unavailable("the writer's queue is full".into())
            }
            mpsc::error::TrySendError::Closed(_) => StoreError::Unavailable("store is shut down".into()),
        })?;
        match tokio::time::timeout(self.commit_timeout, rx).await {
            Ok(answer) => answer.map_err(|_| StoreError::Unavailable("the writer stopped".into()))?,
            Err(_) => Err(StoreError::unconfirmed(self.commit_timeout)),
        }
    }

    /// Commits everything queued, signs the open audit tails and stops the writer.
    pub(crate) async fn stop(&self) {
        stop(&self.tx).await;
    }
}

/// Commits everything queued, signs the open audit tails and stops the writer; resolves once it
/// has stopped (or after 30 seconds).
pub(crate) async fn stop<U: Unit>(writer: &mpsc::Sender<Job<U>>) {
    let (tx, rx) = oneshot::channel();
    let stopped = Box::new(move || {
        let _ = tx.send(());
    });
    if writer.try_send(Job::Stop(stopped)).is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(30), rx).await;
    }
}
