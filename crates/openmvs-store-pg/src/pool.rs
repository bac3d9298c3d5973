//! The engine's own runtime and its connections.
//!
//! The storage ports' reads are synchronous (the SQLite engine answers them from memory-mapped
//! pages in microseconds). Here they are network round trips, so the engine runs its connections
//! on a small runtime of its own and a synchronous read hands its query to that runtime and waits
//! for the answer: it never needs, and never blocks, the caller's runtime, whatever its flavour.
//! Each connection pipelines the queries of concurrent callers.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use openmvs_store::{StoreError, StoreResult};
use tokio::runtime::{Handle, Runtime};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Row, Statement};

use crate::Params;
use crate::codec::pg_err;

/// A connection with its prepared statements.
pub struct Conn {
    /// The client.
    pub client: Client,
    statements: tokio::sync::Mutex<HashMap<&'static str, Statement>>,
}

impl Conn {
    /// The prepared statement for `sql`, prepared on first use.
    pub async fn stmt(&self, sql: &'static str) -> StoreResult<Statement> {
        if let Some(s) = self.statements.lock().await.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql).await.map_err(pg_err)?;
        self.statements.lock().await.insert(sql, s.clone());
        Ok(s)
    }
}

/// Opens one connection, driven on `handle`, with the session settings every connection uses.
pub async fn connect(config: &Config, handle: &Handle) -> StoreResult<Arc<Conn>> {
    let (client, connection) = config.connect(NoTls).await.map_err(pg_err)?;
    handle.spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "a database connection ended");
        }
    });
    // A unit of work never waits forever on a row another node holds: it gives up and is retried.
    client
        .batch_execute("SET lock_timeout = '5s'; SET idle_in_transaction_session_timeout = '60s'")
        .await
        .map_err(pg_err)?;
    Ok(Arc::new(Conn { client, statements: tokio::sync::Mutex::new(HashMap::new()) }))
}

/// The runtime, and a few shared connections for reads and small writes.
pub struct Pool {
    runtime: std::sync::Mutex<Option<Runtime>>,
    handle: Handle,
    config: Config,
    conns: Vec<tokio::sync::Mutex<Option<Arc<Conn>>>>,
    next: AtomicUsize,
}

impl Pool {
    /// Starts the runtime; connections open on first use.
    pub fn new(config: Config, size: usize, name: &str) -> StoreResult<Arc<Pool>> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(name)
            .enable_all()
            .build()
            .map_err(|e| StoreError::Unavailable(format!("starting the database runtime: {e}")))?;
        let handle = runtime.handle().clone();
        Ok(Arc::new(Pool {
            runtime: std::sync::Mutex::new(Some(runtime)),
            handle,
            config,
            conns: (0..size.max(1)).map(|_| tokio::sync::Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        }))
    }

    /// The runtime's handle.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// A connection of its own, not shared (for session-level advisory locks).
    pub async fn dedicated(&self) -> StoreResult<Arc<Conn>> {
        connect(&self.config, &self.handle).await
    }

    /// A shared connection (round robin), reconnecting one that was lost.
    pub async fn conn(&self) -> StoreResult<Arc<Conn>> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        let mut slot = self.conns[i].lock().await;
        if let Some(c) = slot.as_ref()
            && !c.client.is_closed()
        {
            return Ok(c.clone());
        }
        let c = connect(&self.config, &self.handle).await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Runs `fut` on the engine's runtime and waits for its answer. Callable from any thread,
    /// inside or outside any other runtime, but never from the engine's own runtime.
    pub fn block<T: Send + 'static>(
        &self,
        fut: impl Future<Output = StoreResult<T>> + Send + 'static,
    ) -> StoreResult<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        let wait =
            || rx.recv().map_err(|_| StoreError::Unavailable("the database runtime has stopped".into()));
        // Called from a worker of a multi-threaded runtime (a request handler), the wait for the
        // database's round trip must not hold the worker: its other tasks move to another thread
        // meanwhile. Otherwise a runtime of two workers serves two reads at a time, and one long
        // read (a bulk chunk's) stalls every request queued behind it.
        match Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)?
            }
            _ => wait()?,
        }
    }

    /// Rows of one statement (one snapshot) on a shared connection, decoded.
    pub fn rows<T: Send + 'static>(
        self: &Arc<Pool>,
        sql: &'static str,
        params: Params,
        decode: fn(&Row) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        let pool = self.clone();
        self.block(async move {
            let c = pool.conn().await?;
            let s = c.stmt(sql).await?;
            let refs = param_refs(&params);
            let rows = c.client.query(&s, &refs).await.map_err(pg_err)?;
            rows.iter().map(decode).collect()
        })
    }

    /// The first row of one statement, decoded.
    pub fn row<T: Send + 'static>(
        self: &Arc<Pool>,
        sql: &'static str,
        params: Params,
        decode: fn(&Row) -> StoreResult<T>,
    ) -> StoreResult<Option<T>> {
        Ok(self.rows(sql, params, decode)?.into_iter().next())
    }

    /// One statement in a transaction of its own; returns the rows it changed.
    pub fn exec(self: &Arc<Pool>, sql: &'static str, params: Params) -> StoreResult<u64> {
        let pool = self.clone();
        self.block(async move {
            let c = pool.conn().await?;
            let s = c.stmt(sql).await?;
            let refs = param_refs(&params);
            c.client.execute(&s, &refs).await.map_err(pg_err)
        })
    }

    /// Stops the runtime without waiting for its tasks (safe inside an async context).
    pub fn shutdown(&self) {
        if let Some(rt) = self.runtime.lock().ok().and_then(|mut r| r.take()) {
            rt.shutdown_background();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A statement's parameters as the client takes them.
fn param_refs(params: &Params) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect()
}
