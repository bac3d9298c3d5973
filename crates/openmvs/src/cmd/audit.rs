//! `openmvs audit verify`: checks the whole trail and names the first bad record.

use std::process::ExitCode;

use openmvs_store_sqlite::SqliteStore;

use crate::cli::AuditCommand;
use crate::node;

/// Exit status when the trail does not verify.
const BROKEN: u8 = 3;

pub fn run(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Verify { data_dir, public_keys } => {
            let keys = node::audit_public_keys(&data_dir, &public_keys)?;
            let store =
                SqliteStore::open_read_only(&node::db_path(&data_dir)).map_err(|e| anyhow::anyhow!("{e}"))?;
            match openmvs_national::verify_audit(&store, keys) {
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
