//! `openmvs admin backup` and `openmvs admin restore`: the embedded store's database copied out
//! while the system serves, and put back with every node stopped. A system on PostgreSQL is
//! backed up with the database's own tools: a base backup and archived WAL, restored to any
//! moment (`ops/pg-backup.sh`, README "Backups and restore").

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;
use openmvs_core::time::Clock;
use openmvs_national::clock::SystemClock;
use openmvs_store_sqlite::backup;

use crate::cli::Target;
use crate::config::Storage;
use crate::node;
use crate::out::outln;

/// A database whose latest heartbeat is younger than this has a node serving it.
const LIVE: Duration = Duration::from_secs(10);

/// The system `target` names: whether it is a hub, its data directory and its storage.
fn system(target: &Target) -> anyhow::Result<(&'static str, PathBuf, Storage)> {
    match (&target.config, &target.data_dir) {
        (Some(path), _) => {
            let raw = crate::config::load_raw(Some(path), std::env::vars())?;
            if raw.national.is_none() && raw.hub.is_some() {
                let base = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
                let s = crate::hub_config::hub(&raw, base)?;
                return Ok(("hub", s.data_dir, s.storage));
            }
            let (dir, storage) = super::admin::target(target)?;
            Ok(("national", dir, storage))
        }
        (None, Some(dir)) => {
            let hub = crate::hub_node::db_path(dir).exists() && !node::db_path(dir).exists();
            Ok((if hub { "hub" } else { "national" }, dir.clone(), Storage::Sqlite))
        }
        (None, None) => bail!("give --config FILE or --data-dir DIR"),
    }
}

fn db_path(kind: &str, dir: &Path) -> PathBuf {
    if kind == "hub" { crate::hub_node::db_path(dir) } else { node::db_path(dir) }
}

fn embedded_only(storage: &Storage, what: &str) -> anyhow::Result<()> {
    if let Storage::Postgres { .. } = storage {
        bail!(
            "this system is on PostgreSQL: {what} it with the database's tools, a base backup and \
             archived WAL (ops/pg-backup.sh; README, \"Backups and restore\")"
        );
    }
    Ok(())
}

/// `openmvs admin backup --out FILE`.
pub fn run_backup(target: &Target, out: &Path) -> anyhow::Result<ExitCode> {
    let (kind, dir, storage) = system(target)?;
    embedded_only(&storage, "back up")?;
    let started = Instant::now();
    let info = backup::backup(&db_path(kind, &dir), out).map_err(|e| anyhow::anyhow!("backup: {e}"))?;
    outln!(
        "backup: {kind} database of {} written to {} ({} bytes, schema {}, {} audit records) in {:.1} s",
        dir.display(),
        out.display(),
        info.bytes,
        info.schema_version,
        info.audit_records,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// `openmvs admin restore --from FILE [--replace]`.
pub fn run_restore(target: &Target, from: &Path, replace: bool) -> anyhow::Result<ExitCode> {
    let (kind, dir, storage) = system(target)?;
    embedded_only(&storage, "restore")?;
    std::fs::create_dir_all(&dir)?;
    let started = Instant::now();
    let now = SystemClock.now().unix_millis();
    let info = backup::restore(from, &db_path(kind, &dir), kind, replace, now, LIVE)
        .map_err(|e| anyhow::anyhow!("restore: {e}"))?;
    outln!(
        "restore: {} put in place as the {kind} database of {} (schema {}, {} audit records) in {:.1} s; \
         check it with `openmvs audit verify`",
        from.display(),
        dir.display(),
        info.schema_version,
        info.audit_records,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
