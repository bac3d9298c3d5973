//! The engine's connections.
//!
//! Reads are plain async queries on the caller's runtime: each connection's driver task is
//! spawned on the runtime that opens it, and a connection that has closed (its runtime stopped,
//! or the server went away) is opened again on next use. Each connection pipelines the queries of
//! concurrent callers.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use openmvs_store::{StoreError, StoreResult};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Row, Statement};

use crate::Params;
use crate::codec::pg_err;

/// A connection with its prepared statements.
pub struct Conn {
    /// The client.
    pub client: Client,
    /// Held only to look up or insert, never across a round trip.
    statements: std::sync::Mutex<HashMap<&'static str, Statement>>,
}

impl Conn {
    /// The prepared statement for `sql`, prepared on first use.
    pub async fn stmt(&self, sql: &'static str) -> StoreResult<Statement> {
        if let Some(s) = self.statements.lock().unwrap_or_else(|p| p.into_inner()).get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql).await.map_err(pg_err)?;
        self.statements.lock().unwrap_or_else(|p| p.into_inner()).insert(sql, s.clone());
        Ok(s)
    }
}

/// Opens one connection, driven on the current runtime, with the session settings every
/// connection uses.
pub async fn connect(config: &Config) -> StoreResult<Arc<Conn>> {
    Ok(connect_driven(config).await?.0)
}

/// Opens one connection; also answers its driver task, whose end closes the connection.
async fn connect_driven(config: &Config) -> StoreResult<(Arc<Conn>, tokio::task::AbortHandle)> {
    let (client, connection) = config.connect(NoTls).await.map_err(pg_err)?;
    let driver = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "a database connection ended");
        }
    });
    // A unit of work never waits forever on a row another node holds: it gives up and is retried.
    client
        .batch_execute("SET lock_timeout = '5s'; SET idle_in_transaction_session_timeout = '60s'")
        .await
        .map_err(pg_err)?;
    Ok((Arc::new(Conn { client, statements: std::sync::Mutex::new(HashMap::new()) }), driver.abort_handle()))
}

/// A few shared connections for reads and small writes.
pub struct Pool {
    config: Config,
    conns: Vec<tokio::sync::Mutex<Option<Arc<Conn>>>>,
    next: AtomicUsize,
    /// The driver tasks of the connections it opened: dropping the pool ends them, so that a
    /// store dropped is a store gone (with the session locks of its connections).
    drivers: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Pool {
    /// A pool of `size` connections, each opened on first use.
    pub fn new(config: Config, size: usize) -> Arc<Pool> {
        Arc::new(Pool {
            config,
            conns: (0..size.max(1)).map(|_| tokio::sync::Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
            drivers: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// A connection of its own, not shared (for session-level advisory locks).
    pub async fn dedicated(&self) -> StoreResult<Arc<Conn>> {
        let (c, driver) = connect_driven(&self.config).await?;
        let mut drivers = self.drivers.lock().unwrap_or_else(|e| e.into_inner());
        drivers.retain(|d| !d.is_finished());
        drivers.push(driver);
        Ok(c)
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
        let c = self.dedicated().await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Rows of one statement (one snapshot) on a shared connection, decoded.
    pub async fn rows<T>(
        &self,
        sql: &'static str,
        params: Params,
        decode: impl Fn(&Row) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        let c = self.conn().await?;
        let s = c.stmt(sql).await?;
        let rows = c.client.query(&s, &param_refs(&params)).await.map_err(pg_err)?;
        rows.iter().map(decode).collect()
    }

    /// The first row of one statement, decoded.
    pub async fn row<T>(
        &self,
        sql: &'static str,
        params: Params,
        decode: impl Fn(&Row) -> StoreResult<T>,
    ) -> StoreResult<Option<T>> {
        Ok(self.rows(sql, params, decode).await?.into_iter().next())
    }

    /// One statement in a transaction of its own; returns the rows it changed.
    pub async fn exec(&self, sql: &'static str, params: Params) -> StoreResult<u64> {
        let c = self.conn().await?;
        let s = c.stmt(sql).await?;
        c.client.execute(&s, &param_refs(&params)).await.map_err(pg_err)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for d in self.drivers.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            d.abort();
        }
    }
}

/// Runs `fut` to its end on a small runtime of its own, on a thread of its own: for the one-shot
/// administrative calls (migrations, schemas made and dropped), which may come from synchronous
/// code inside or outside a runtime. Never on a request's path.
pub fn once<T: Send>(fut: impl Future<Output = StoreResult<T>> + Send) -> StoreResult<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| StoreError::Unavailable(format!("starting a runtime: {e}")))?
                    .block_on(fut)
            })
            .join()
            .unwrap_or_else(|_| Err(StoreError::Unavailable("a database call panicked".into())))
    })
}

/// A statement's parameters as the client takes them.
fn param_refs(params: &Params) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect()
}
