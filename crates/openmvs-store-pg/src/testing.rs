//! For tests that need PostgreSQL: the database named by `OPENMVS_TEST_DATABASE_URL`, and a fresh
//! schema in it for each test, so tests run side by side without seeing each other's rows.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Pool, pg_err};

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
/// the first time. Panics if the variable is set but the database cannot be reached: a test run
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
    let pool = Pool::new(config, 1, "openmvs-pg-test").expect("runtime");
    let p = pool.clone();
    let (prefix, name) = (prefix.to_owned(), schema.clone());
    let r = pool.block(async move {
        let c = p.conn().await?;
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
                // Another run may be dropping it at the same time.
                let _ = c.client.batch_execute(&format!("DROP SCHEMA IF EXISTS {s} CASCADE")).await;
            }
        }
        c.client.batch_execute(&format!("CREATE SCHEMA {name}")).await.map_err(pg_err)
    });
    pool.shutdown();
    if let Err(e) = r {
        panic!("{URL_VARIABLE} is set but the test database cannot be used: {e}");
    }
    Some((url, schema))
}
