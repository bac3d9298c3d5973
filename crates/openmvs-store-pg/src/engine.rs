//! What every store of this engine starts and stops the same way: its schema checked (or
//! migrated), its pool, and this node's writer.

use std::sync::Arc;

use openmvs_core::time::Timestamp;
use openmvs_store::{BoxFuture, StoreError, StoreResult};
use tokio::sync::mpsc;
use tokio_postgres::Client;

use crate::pool::Pool;
use crate::writer::{Job, Unit, Writer};
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
    let pool = Pool::new(connection_config(url, schema)?, 1, &format!("openmvs-pg-{}-migrate", kind.name))?;
    let p = pool.clone();
    let (schema, apply) = (schema.map(str::to_owned), kind.migrate);
    let r = pool.block(async move {
        let c = p.conn().await?;
        if let Some(s) = &schema {
            c.client.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {s}")).await.map_err(pg_err)?;
        }
        apply(&c.client, now.unix_millis()).await.map_err(pg_err)?.map_err(StoreError::Unavailable)
    });
    pool.shutdown();
    r
}

/// Connects, checks (or first applies) the schema's version, and starts this node's writer.
pub(crate) fn start<U: Unit>(
    kind: &SchemaKind,
    o: crate::PgOptions,
) -> StoreResult<(Arc<Pool>, mpsc::Sender<Job<U>>)> {
    if o.migrate {
        migrate(kind, &o.url, o.schema.as_deref(), o.clock.now())?;
    }
    let config = connection_config(&o.url, o.schema.as_deref())?;
    let pool = Pool::new(config.clone(), o.pool_size, &format!("openmvs-pg-{}", kind.name))?;
    let (p, current) = (pool.clone(), kind.current);
    let version = pool.block(async move { current(&p.conn().await?.client).await.map_err(pg_err) })?;
    if version != kind.latest {
        pool.shutdown();
        return Err(StoreError::Unavailable(format!(
            "the {} schema{} has version {version}, this build needs {}: run `openmvs migrate`",
            kind.name,
            o.schema.as_deref().map(|s| format!(" '{s}'")).unwrap_or_default(),
            kind.latest
        )));
    }
    let (tx, rx) = mpsc::channel(QUEUE_BOUND);
    let writer = Writer {
        config,
        handle: pool.handle().clone(),
        conn: None,
        key: o.signing_key,
        clock: o.clock,
        on_group: o.on_group,
        checkpoints: o.checkpoints,
    };
    pool.handle().spawn(writer.run(rx));
    Ok((pool, tx))
}

/// Commits everything queued, signs the open audit tails and stops the writer.
pub(crate) fn stop<U: Unit>(writer: &mpsc::Sender<Job<U>>) {
    let (tx, rx) = std::sync::mpsc::channel();
    if writer.try_send(Job::Stop(tx)).is_ok() {
        let _ = rx.recv_timeout(std::time::Duration::from_secs(30));
    }
}
