//! What PostgreSQL itself does from this machine, measured next to OpenMVS on the same data: point
//! reads of packs, batched inserts (COPY), and durable single-row commits, each over one
//! connection. These are the limits the benchmark compares the engine's figures with.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio_postgres::NoTls;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

use super::{BATCH, Baseline};

/// Measures for about `seconds` each: point reads of `serial(i)` (`i` spread over `0..packs`) of
/// `product_code` in `schema`, and writes into scratch tables of that schema (dropped after).
pub fn measure(
    url: &str,
    schema: &str,
    product_code: &str,
    packs: u64,
    serial: &(dyn Fn(u64) -> String + Sync),
    seconds: f64,
) -> anyhow::Result<Baseline> {
    let config =
        openmvs_store_pg::connection_config(url, Some(schema)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting a runtime")?;
    let span = Duration::from_secs_f64(seconds);
    let pc = product_code.to_owned();
    let serials: Vec<String> =
        (0..4096u64).map(|k| serial(k.wrapping_mul(2_654_435_761) % packs.max(1))).collect();
    let fresh: Vec<String> = (0..BATCH as u64 * 64).map(|k| serial(packs + k)).collect();
    rt.block_on(async move {
        let (client, connection) = config.connect(NoTls).await.context("connecting to the database")?;
        let connection = tokio::spawn(connection);
        let read = client
            .prepare("SELECT batch, state, version FROM packs WHERE product_code = $1 AND serial = $2")
            .await
            ?;
        let started = Instant::now();
        let (mut reads, mut found) = (0u64, 0u64);
        while started.elapsed() < span {
            let s = &serials[(reads % serials.len() as u64) as usize];
            found += client.query_opt(&read, &[&pc, s]).await?.is_some() as u64;
            reads += 1;
        }
        let point_reads = reads as f64 / started.elapsed().as_secs_f64();
        if found == 0 {
            bail!("the point reads found no pack: wrong data");
        }
        client
            .batch_execute(
                "DROP TABLE IF EXISTS baseline_packs; DROP TABLE IF EXISTS baseline_commits; \
                 CREATE TABLE baseline_packs (product_code TEXT NOT NULL, serial TEXT NOT NULL, batch TEXT NOT NULL, \
                 state TEXT NOT NULL, repeats SMALLINT NOT NULL, version BIGINT NOT NULL, \
                 PRIMARY KEY (product_code, serial)); \
                 CREATE TABLE baseline_commits (n BIGINT PRIMARY KEY, at BIGINT NOT NULL);",
            )
            .await
            ?;
        let started = Instant::now();
        let mut inserted = 0usize;
        while started.elapsed() < span && inserted + BATCH <= fresh.len() {
            client.batch_execute("BEGIN").await?;
            let sink = client
                .copy_in("COPY baseline_packs (product_code, serial, batch, state, repeats, version) FROM STDIN BINARY")
                .await
                ?;
            let w = BinaryCopyInWriter::new(sink, &[Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT, Type::INT2, Type::INT8]);
            let mut w = std::pin::pin!(w);
            for s in &fresh[inserted..inserted + BATCH] {
                w.as_mut().write(&[&pc, s, &"BASE1", &"ACTIVE", &0i16, &1i64]).await?;
            }
            w.as_mut().finish().await?;
            client.batch_execute("COMMIT").await?;
            inserted += BATCH;
        }
        let batched_inserts = inserted as f64 / started.elapsed().as_secs_f64();
        let insert = client.prepare("INSERT INTO baseline_commits (n, at) VALUES ($1, $2)").await?;
        let started = Instant::now();
        let mut commits = 0i64;
        while started.elapsed() < span {
            client.execute(&insert, &[&commits, &commits]).await?;
            commits += 1;
        }
        let single_commits = commits as f64 / started.elapsed().as_secs_f64();
        client
            .batch_execute("DROP TABLE baseline_packs; DROP TABLE baseline_commits")
            .await
            ?;
        drop(client);
        let _ = connection.await;
        Ok(Baseline { point_reads, batched_inserts, single_commits })
    })
}
