//! What PostgreSQL itself does from this machine, measured next to OpenMVS on the same data: point
//! reads of packs, batched inserts (COPY), and durable single-row commits, each over one
//! connection. These are the limits the benchmark compares the engine's figures with.

use std::time::{Duration, Instant};

use openmvs_store::{StoreError, StoreResult};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

use crate::{connection_config, pg_err};

pub use openmvs_store::Baseline;

/// Rows per transaction of the batched inserts.
pub const BATCH: usize = 10_000;

/// Measures for about `seconds` each: point reads of `serial(i)` (`i` spread over `0..packs`) of
/// `product_code` in `schema`, and writes into scratch tables of that schema (dropped after).
pub fn measure(
    url: &str,
    schema: &str,
    product_code: &str,
    packs: u64,
    serial: &(dyn Fn(u64) -> String + Sync),
    seconds: f64,
) -> StoreResult<Baseline> {
    let config = connection_config(url, Some(schema))?;
    let span = Duration::from_secs_f64(seconds);
    let pc = product_code.to_owned();
    let serials: Vec<String> =
        (0..4096u64).map(|k| serial(k.wrapping_mul(2_654_435_761) % packs.max(1))).collect();
    let fresh: Vec<String> = (0..BATCH as u64 * 64).map(|k| serial(packs + k)).collect();
    crate::pool::once(async move {
        let c = crate::pool::connect(&config).await?;
        let read = c
            .client
            .prepare("SELECT batch, state, version FROM packs WHERE product_code = $1 AND serial = $2")
            .await
            .map_err(pg_err)?;
        let started = Instant::now();
        let (mut reads, mut found) = (0u64, 0u64);
        while started.elapsed() < span {
            let s = &serials[(reads % serials.len() as u64) as usize];
            found += c.client.query_opt(&read, &[&pc, s]).await.map_err(pg_err)?.is_some() as u64;
            reads += 1;
        }
        let point_reads = reads as f64 / started.elapsed().as_secs_f64();
        if found == 0 {
            return Err(StoreError::Unavailable("the point reads found no pack: wrong data".into()));
        }
        c.client
            .batch_execute(
                "DROP TABLE IF EXISTS baseline_packs; DROP TABLE IF EXISTS baseline_commits; \
                 CREATE TABLE baseline_packs (product_code TEXT NOT NULL, serial TEXT NOT NULL, batch TEXT NOT NULL, \
                 state TEXT NOT NULL, repeats SMALLINT NOT NULL, version BIGINT NOT NULL, \
                 PRIMARY KEY (product_code, serial)); \
                 CREATE TABLE baseline_commits (n BIGINT PRIMARY KEY, at BIGINT NOT NULL);",
            )
            .await
            .map_err(pg_err)?;
        let started = Instant::now();
        let mut inserted = 0usize;
        while started.elapsed() < span && inserted + BATCH <= fresh.len() {
            c.client.batch_execute("BEGIN").await.map_err(pg_err)?;
            let sink = c
                .client
                .copy_in("COPY baseline_packs (product_code, serial, batch, state, repeats, version) FROM STDIN BINARY")
                .await
                .map_err(pg_err)?;
            let w = BinaryCopyInWriter::new(
                sink,
                &[Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT, Type::INT2, Type::INT8],
            );
            let mut w = std::pin::pin!(w);
            for s in &fresh[inserted..inserted + BATCH] {
                w.as_mut().write(&[&pc, s, &"BASE1", &"ACTIVE", &0i16, &1i64]).await.map_err(pg_err)?;
            }
            w.as_mut().finish().await.map_err(pg_err)?;
            c.client.batch_execute("COMMIT").await.map_err(pg_err)?;
            inserted += BATCH;
        }
        let batched_inserts = inserted as f64 / started.elapsed().as_secs_f64();
        let insert =
            c.client.prepare("INSERT INTO baseline_commits (n, at) VALUES ($1, $2)").await.map_err(pg_err)?;
        let started = Instant::now();
        let mut commits = 0i64;
        while started.elapsed() < span {
            c.client.execute(&insert, &[&commits, &commits]).await.map_err(pg_err)?;
            commits += 1;
        }
        let single_commits = commits as f64 / started.elapsed().as_secs_f64();
        c.client
            .batch_execute("DROP TABLE baseline_packs; DROP TABLE baseline_commits")
            .await
            .map_err(pg_err)?;
        Ok(Baseline { point_reads, batched_inserts, single_commits })
    })
}
