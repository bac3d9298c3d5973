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
                        println!("audit {m}: {n} records verified, {tail} after the last signed checkpoint");
                    }
                    println!("audit: OK, {} checkpoints verified", r.checkpoints);
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

/// `openmvs migrate`: brings the storage schema to this build's version and says what it did.
pub fn migrate(target: &crate::cli::Target) -> anyhow::Result<ExitCode> {
    let (data_dir, storage) = super::admin::target(target)?;
    let now = SystemClock.now();
    match storage {
        Storage::Sqlite => {
            let store = node::open_store(&data_dir, Arc::new(SystemClock), None)?;
            store.close();
            println!(
                "migrate: {} is at schema version {}",
                node::db_path(&data_dir).display(),
                SqliteStore::schema_version()
            );
        }
        Storage::Postgres { url, schema, .. } => {
            let applied = openmvs_store_pg::migrate(&url, Some(&schema), now).map_err(|e| {
                anyhow::anyhow!("migrating schema {schema} at {}: {e}", crate::config::redact_url(&url))
            })?;
            if applied.is_empty() {
                println!(
                    "migrate: schema {schema} is at version {}, nothing to do",
                    openmvs_store_pg::PgStore::schema_version()
                );
            } else {
                let list: Vec<String> = applied.iter().map(|v| v.to_string()).collect();
                println!(
                    "migrate: schema {schema}: applied {}; now at version {}",
                    list.join(", "),
                    openmvs_store_pg::PgStore::schema_version()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
