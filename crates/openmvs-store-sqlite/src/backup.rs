//! Online backup and restore of an embedded store's database file.
//!
//! A backup is taken while the node serves: `VACUUM INTO` reads the whole database inside one
//! read transaction, which in WAL mode never holds up the writer, so the copy is the database as
//! of one commit, whatever commits meanwhile. It is written beside the destination, synced, and
//! renamed into place: the destination is either absent or a whole backup.
//!
//! A restore puts a backup in place of a system's database while no node serves it: a database
//! whose latest heartbeat is recent is refused, since a node is writing it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use openmvs_store::{StoreError, StoreResult};
use rusqlite::{Connection, OpenFlags};

use crate::schema;

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupInfo {
    /// Which kind of database it is: `national` or `hub`.
    pub kind: &'static str,
    /// Its schema version.
    pub schema_version: i64,
    /// The audit records it holds (the last position of the trail).
    pub audit_records: u64,
    /// Its size in bytes.
    pub bytes: u64,
}

fn unavailable(what: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(what.to_string())
}

fn sql(path: &Path, e: rusqlite::Error) -> StoreError {
    unavailable(format!("{}: {e}", path.display()))
}

fn sync_file(path: &Path) -> StoreResult<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| unavailable(format!("syncing {}: {e}", path.display())))
}

fn sync_dir(path: &Path) -> StoreResult<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    sync_file(dir)
}

/// `path` with `suffix` added to its file name.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(suffix);
    path.with_file_name(name)
}

/// Copies the database at `db` into `out`, as of one commit, while nodes write it. Refuses to
/// overwrite `out`.
///
/// # Errors
///
/// Unavailable, saying why, when `db` cannot be read, `out` exists, or the copy fails.
pub fn backup(db: &Path, out: &Path) -> StoreResult<BackupInfo> {
    if out.exists() {
        return Err(unavailable(format!("{} exists: give a new file", out.display())));
    }
    if !db.exists() {
        return Err(unavailable(format!("{}: no database here", db.display())));
    }
    let partial = beside(out, ".partial");
    let _ = std::fs::remove_file(&partial);
    let c =
        Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(|e| sql(db, e))?;
    c.busy_timeout(Duration::from_secs(30)).map_err(|e| sql(db, e))?;
    let target = partial.to_str().ok_or_else(|| unavailable("the backup's path is not UTF-8"))?;
    c.execute("VACUUM INTO ?1", [target]).map_err(|e| sql(db, e))?;
    drop(c);
    sync_file(&partial)?;
    let info = inspect(&partial)?;
    std::fs::rename(&partial, out)
        .map_err(|e| unavailable(format!("renaming {} to {}: {e}", partial.display(), out.display())))?;
    sync_dir(out)?;
    Ok(info)
}

/// Checks a backup file: a whole SQLite database (`PRAGMA integrity_check`) of a national
/// system or a hub, at a schema version this build knows.
///
/// # Errors
///
/// Unavailable, saying what is wrong.
pub fn inspect(file: &Path) -> StoreResult<BackupInfo> {
    let c = Connection::open_with_flags(file, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|e| sql(file, e))?;
    let check: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).map_err(|e| sql(file, e))?;
    if check != "ok" {
        return Err(unavailable(format!("{}: integrity check failed: {check}", file.display())));
    }
    let has = |table: &str| -> StoreResult<bool> {
        c.query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1", [table], |r| {
            r.get::<_, i64>(0)
        })
        .map(|n| n > 0)
        .map_err(|e| sql(file, e))
    };
    let (kind, latest) = if has("packs")? {
        ("national", schema::LATEST)
    } else if has("serial_digests")? {
        ("hub", crate::hub::SqliteHubStore::schema_version())
    } else {
        return Err(unavailable(format!("{}: not a database of a national system or a hub", file.display())));
    };
    let version: i64 = c
        .query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0))
        .map_err(|e| sql(file, e))?;
    if version > latest {
        return Err(unavailable(format!(
            "{}: schema version {version} is newer than this build's {latest}: restore with the build that wrote it",
            file.display()
        )));
    }
    let audit_records: i64 =
        c.query_row("SELECT COALESCE(MAX(pos), 0) FROM audit", [], |r| r.get(0)).map_err(|e| sql(file, e))?;
    let bytes = std::fs::metadata(file).map_err(|e| unavailable(format!("{}: {e}", file.display())))?.len();
    Ok(BackupInfo { kind, schema_version: version, audit_records: audit_records.max(0) as u64, bytes })
}

/// The latest heartbeat a node wrote into the database at `db`, in Unix milliseconds.
fn latest_heartbeat(db: &Path) -> StoreResult<Option<i64>> {
    let c = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|e| sql(db, e))?;
    c.busy_timeout(Duration::from_secs(5)).map_err(|e| sql(db, e))?;
    c.query_row("SELECT MAX(at) FROM heartbeats", [], |r| r.get(0)).map_err(|e| sql(db, e))
}

/// Puts the backup `file` in place as the database at `db`, whose kind must be `kind`
/// (`national` or `hub`). An existing database is replaced only with `replace`, and never while
/// a node's latest heartbeat in it is less than `live` old at `now_millis`: a node serves it.
///
/// # Errors
///
/// Unavailable, saying why, with the database at `db` as it was.
pub fn restore(
    file: &Path,
    db: &Path,
    kind: &str,
    replace: bool,
    now_millis: i64,
    live: Duration,
) -> StoreResult<BackupInfo> {
    let info = inspect(file)?;
    if info.kind != kind {
        return Err(unavailable(format!("{} is a {} database, not a {kind} one", file.display(), info.kind)));
    }
    if db.exists() {
        if !replace {
            return Err(unavailable(format!(
                "{} exists: stop every node of the system, then restore with --replace",
                db.display()
            )));
        }
        if let Some(at) = latest_heartbeat(db)? {
            let age = now_millis.saturating_sub(at);
            if age < live.as_millis() as i64 {
                return Err(unavailable(format!(
                    "a node wrote its heartbeat into {} {age} ms ago: stop every node of the system first (a stopped node's heartbeat is old after {} s)",
                    db.display(),
                    live.as_secs()
                )));
            }
        }
    }
    let partial = beside(db, ".restoring");
    std::fs::copy(file, &partial)
        .map_err(|e| unavailable(format!("copying {} to {}: {e}", file.display(), partial.display())))?;
    sync_file(&partial)?;
    // The old database's log must not be applied to the restored file.
    for suffix in ["-wal", "-shm"] {
        let p = beside(db, suffix);
        if p.exists() {
            std::fs::remove_file(&p).map_err(|e| unavailable(format!("removing {}: {e}", p.display())))?;
        }
    }
    std::fs::rename(&partial, db)
        .map_err(|e| unavailable(format!("renaming {} to {}: {e}", partial.display(), db.display())))?;
    sync_dir(db)?;
    Ok(info)
}
