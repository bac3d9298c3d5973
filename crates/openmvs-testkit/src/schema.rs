//! A PostgreSQL schema of its own for each system run in the process, migrated for a national
//! system or for the hub.

use anyhow::Context;
use openmvs_core::time::Timestamp;
use openmvs_node::{Storage, redact_url};

/// Which system a schema is for: its migrations differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    /// A national system.
    National,
    /// The European Hub.
    Hub,
}

/// The storage of a system in `schema` at `url`: emptied first when `fresh`, then migrated, with
/// a pool of 4 read connections.
pub fn schema_storage(
    url: &str,
    schema: &str,
    system: System,
    fresh: bool,
    now: Timestamp,
) -> anyhow::Result<Storage> {
    if fresh {
        openmvs_store_pg::reset_schema(url, schema)
            .with_context(|| format!("emptying schema {schema} at {}", redact_url(url)))?;
    }
    let migrated = match system {
        System::National => openmvs_store_pg::migrate(url, Some(schema), now),
        System::Hub => openmvs_store_pg::hub::migrate(url, Some(schema), now),
    };
    migrated.with_context(|| format!("migrating schema {schema} at {}", redact_url(url)))?;
    Ok(Storage::Postgres {
        url: url.to_owned(),
        schema: schema.to_owned(),
        pool: 4,
        commit_timeout: std::time::Duration::from_secs(10),
    })
}
