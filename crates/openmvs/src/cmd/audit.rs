//! `openmvs audit verify`: checks the whole trail and names the first bad record.

use std::process::ExitCode;

use std::sync::Arc;

use openmvs_core::time::Clock;
use openmvs_national::clock::SystemClock;
use openmvs_store::Store;
use openmvs_store_sqlite::SqliteStore;

use crate::cli::AuditCommand;
use crate::config::Storage;
use crate::node;
use crate::out::outln;

/// Exit status when the trail does not verify.
const BROKEN: u8 = 3;

pub fn run(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Verify { target, public_keys } => {
            let (data_dir, storage) = super::admin::target(&target)?;
            let keys = node::audit_public_keys(&data_dir, &public_keys)?;
            let store: Arc<dyn Store> = match storage {
                // The embedded file is opened read-only: verifying never writes.
                Storage::Sqlite => Arc::new(
                    SqliteStore::open_read_only(&node::db_path(&data_dir))
                        .map_err(|e| anyhow::anyhow!("{e}"))?,
                ),
                storage => {
                    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
                    node::open(&data_dir, &storage, clock, None)?.store()
                }
            };
            match openmvs_national::verify_audit(store.as_ref(), keys) {
                Ok(r) => {
                    let mut markets: Vec<_> = r.records.iter().collect();
                    markets.sort();
                    for (m, n) in markets {
                        let tail = r.unsigned_tail.get(m).copied().unwrap_or(0);
                        outln!("audit {m}: {n} records verified, {tail} after the last signed checkpoint");
                    }
                    outln!("audit: OK, {} checkpoints verified", r.checkpoints);
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("audit: BROKEN: {e}");
                    Ok(ExitCode::from(BROKEN))
                }
            }
        }
    }
}

/// `openmvs migrate`: brings the storage schema of every system the configuration file describes
/// (`[national]`, `[hub]`), or of `--data-dir`, to this build's version and says what it did.
pub fn migrate(target: &crate::cli::Target) -> anyhow::Result<ExitCode> {
    match (&target.config, &target.data_dir) {
        (Some(path), _) => {
            let raw = crate::config::load_raw(Some(path), std::env::vars())?;
            let base =
                path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
            if raw.national.is_none() && raw.hub.is_none() {
                anyhow::bail!("{} has neither a [national] nor a [hub] section", path.display());
            }
            if raw.national.is_some() {
                let s = crate::config::national(&raw, base)?;
                node::claim_market(&s.data_dir, s.market)?;
                migrate_one("national", &s.data_dir, &s.storage, false)?;
            }
            if raw.hub.is_some() {
                let s = crate::hub_config::hub(&raw, base)?;
                migrate_one("hub", &s.data_dir, &s.storage, true)?;
            }
        }
        (None, Some(dir)) => migrate_one("national", dir, &Storage::Sqlite, false)?,
        (None, None) => anyhow::bail!("give --config FILE or --data-dir DIR"),
    }
    Ok(ExitCode::SUCCESS)
}

fn migrate_one(what: &str, data_dir: &std::path::Path, storage: &Storage, hub: bool) -> anyhow::Result<()> {
    let now = SystemClock.now();
    match storage {
        Storage::Sqlite => {
            // The embedded store migrates itself when it opens.
            if hub {
                crate::hub_node::open_store(data_dir, Arc::new(SystemClock), None)?.close();
            } else {
                node::open_store(data_dir, Arc::new(SystemClock), None)?.close();
            }
            outln!("migrate: {what}: the embedded store in {} is at this build's schema", data_dir.display());
        }
        Storage::Postgres { url, schema, .. } => {
            let (applied, latest) = if hub {
                (
                    openmvs_store_pg::hub::migrate(url, Some(schema), now),
                    openmvs_store_pg::hub::PgHubStore::schema_version(),
                )
            } else {
                (
                    openmvs_store_pg::migrate(url, Some(schema), now),
                    openmvs_store_pg::PgStore::schema_version(),
                )
            };
            let applied = applied.map_err(|e| {
                anyhow::anyhow!("migrating {what} schema {schema} at {}: {e}", crate::config::redact_url(url))
            })?;
            if applied.is_empty() {
                outln!("migrate: {what}: schema {schema} is at version {latest}, nothing to do");
            } else {
                let list: Vec<String> = applied.iter().map(|v| v.to_string()).collect();
                outln!(
                    "migrate: {what}: schema {schema}: applied {}; now at version {latest}",
                    list.join(", ")
                );
            }
        }
    }
    Ok(())
}
