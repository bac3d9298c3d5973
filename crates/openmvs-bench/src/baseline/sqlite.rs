//! What SQLite itself does on this machine, measured next to OpenMVS on the same data: point reads
//! of packs, batched inserts, and durable single-row commits. These are the physical limits the
//! benchmark compares the engine's figures with.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rusqlite::{Connection, OpenFlags, params};

use super::{BATCH, Baseline};

/// Measures for about `seconds` each: point reads of `serial(i)` (`i` spread over `0..packs`) of
/// `product_code` in the database at `db`, and writes in a scratch database in `scratch_dir`
/// with the engine's own settings (WAL, `synchronous=FULL`).
pub fn measure(
    db: &Path,
    scratch_dir: &Path,
    product_code: &str,
    packs: u64,
    serial: &dyn Fn(u64) -> String,
    seconds: f64,
) -> anyhow::Result<Baseline> {
    let span = Duration::from_secs_f64(seconds);
    let read =
        Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .with_context(|| format!("opening {}", db.display()))?;
    read.execute_batch("PRAGMA mmap_size = 1073741824; PRAGMA cache_size = -1024;")?;
    let mut stmt =
        read.prepare("SELECT batch, state, version FROM packs WHERE product_code = ?1 AND serial = ?2")?;
    let started = Instant::now();
    let mut reads = 0u64;
    let mut found = 0u64;
    while started.elapsed() < span {
        for _ in 0..256 {
            let i = reads.wrapping_mul(2_654_435_761) % packs.max(1);
            let mut rows = stmt.query(params![product_code, serial(i)])?;
            found += u64::from(rows.next()?.is_some());
            reads += 1;
        }
    }
    let point_reads = reads as f64 / started.elapsed().as_secs_f64();
    if found == 0 {
        bail!("the point reads found no pack: wrong data");
    }

    std::fs::create_dir_all(scratch_dir).with_context(|| format!("creating {}", scratch_dir.display()))?;
    let path = scratch_dir.join("baseline.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let mut w = Connection::open(&path)?;
    w.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
         CREATE TABLE packs (product_code TEXT NOT NULL, serial TEXT NOT NULL, batch TEXT NOT NULL, \
         state TEXT NOT NULL, repeats INTEGER NOT NULL, version INTEGER NOT NULL, \
         PRIMARY KEY (product_code, serial)) WITHOUT ROWID; \
         CREATE TABLE commits (n INTEGER PRIMARY KEY, at INTEGER NOT NULL);",
    )?;
    let started = Instant::now();
    let mut inserted = 0u64;
    while started.elapsed() < span {
        let tx = w.transaction()?;
        {
            let mut s = tx.prepare_cached(
                "INSERT INTO packs (product_code, serial, batch, state, repeats, version) \
                     VALUES (?1, ?2, 'BASE1', 'ACTIVE', 0, 1)",
            )?;
            for _ in 0..BATCH {
                s.execute(params![product_code, serial(inserted)])?;
                inserted += 1;
            }
        }
        tx.commit()?;
    }
    let batched_inserts = inserted as f64 / started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut commits = 0i64;
    let mut s = w.prepare("INSERT INTO commits (n, at) VALUES (?1, ?2)")?;
    while started.elapsed() < span {
        s.execute(params![commits, commits])?;
        commits += 1;
    }
    let single_commits = commits as f64 / started.elapsed().as_secs_f64();
    drop(s);
    drop(w);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Ok(Baseline { point_reads, batched_inserts, single_commits })
}
