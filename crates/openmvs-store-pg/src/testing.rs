//! For tests that need PostgreSQL: the database named by `OPENMVS_TEST_DATABASE_URL`, and a fresh
//! schema in it for each test, so tests run side by side without seeing each other's rows.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::pg_err;

/// The variable that names the test database.
pub const URL_VARIABLE: &str = "OPENMVS_TEST_DATABASE_URL";

/// The test database's URL, or `None` after saying on stderr that `what` is skipped.
pub fn database_url(what: &str) -> Option<String> {
    match std::env::var(URL_VARIABLE) {
        Ok(u) if !u.trim().is_empty() => Some(u),
        _ => {
            eprintln!(
                "skipping {what}: {URL_VARIABLE} is not set (e.g. postgres://postgres@127.0.0.1:5432/test)"
            );
            None
        }
    }
}

/// A new, empty schema named `<prefix>_<pid>_<n>` in the test database (`None`, with a line on
/// stderr, when the variable is not set). Schemas this prefix left from earlier runs are dropped
/// the first time: those of processes that have ended, never those of another run going on at
/// the same time on the same database. Panics if the variable is set but the database cannot be reached: a test run
/// that was asked to use PostgreSQL must not pass without it.
pub fn fresh_schema(prefix: &str, what: &str) -> Option<(String, String)> {
    static N: AtomicU64 = AtomicU64::new(0);
    static CLEANED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let url = database_url(what)?;
    let pid = std::process::id();
    let schema = format!("{prefix}_{pid}_{}", N.fetch_add(1, Ordering::SeqCst));
    let clean = {
        let mut done = CLEANED.lock().unwrap_or_else(|e| e.into_inner());
        let first = !done.iter().any(|p| p == prefix);
        if first {
            done.push(prefix.to_owned());
        }
        first
    };
    let config = crate::connection_config(&url, None).expect("test database URL");
    let (prefix, name) = (prefix.to_owned(), schema.clone());
    let r = crate::pool::once(async move {
        let c = crate::pool::connect(&config).await?;
        if clean {
            let old = c
                .client
                .query(
                    "SELECT nspname FROM pg_namespace WHERE nspname LIKE $1 AND nspname NOT LIKE $2",
                    &[&format!("{prefix}\\_%"), &format!("{prefix}\\_{pid}\\_%")],
                )
                .await
                .map_err(pg_err)?;
            for r in old {
                let s: String = r.get(0);
                if owner_runs(&s, &prefix) {
                    continue;
                }
                // Another run may be dropping it at the same time.
                let _ = c.client.batch_execute(&format!("DROP SCHEMA IF EXISTS {s} CASCADE")).await;
            }
        }
        c.client.batch_execute(&format!("CREATE SCHEMA {name}")).await.map_err(pg_err)
    });
    if let Err(e) = r {
        panic!("{URL_VARIABLE} is set but the test database cannot be used: {e}");
    }
    Some((url, schema))
}

/// Whether the process whose id is in the schema name `<prefix>_<pid>_<n>` still runs. Where that
/// cannot be known (no `/proc`), it is taken to run: a leftover schema is harmless, dropping a
/// running test's schema fails it.
fn owner_runs(schema: &str, prefix: &str) -> bool {
    let pid = schema
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .and_then(|rest| rest.split('_').next())
        .and_then(|pid| pid.parse::<u32>().ok());
    match pid {
        Some(pid) if std::path::Path::new("/proc/self").exists() => {
            std::path::Path::new(&format!("/proc/{pid}")).exists()
        }
        _ => true,
    }
}

/// The statement that reads the due messages of one of the hub's queues (`$1` now, `$2` the
/// most, `$3` the destination), for the tests that look at how PostgreSQL runs it.
pub fn hub_due_statement() -> String {
    format!("SELECT seq {}", crate::outbox::HUB_DUE)
}

#[cfg(test)]
mod tests {
    use super::owner_runs;

    #[test]
    fn a_schema_of_a_running_process_is_kept_and_one_of_an_ended_process_is_not() {
        let me = std::process::id();
        assert!(owner_runs(&format!("napi_{me}_3"), "napi"));
        if std::path::Path::new("/proc/self").exists() {
            // Above the largest process id Linux hands out (2^22).
            assert!(!owner_runs("napi_4194305_0", "napi"));
        }
        assert!(owner_runs("napi_notapid_0", "napi"), "a name it cannot read is left alone");
    }
}
