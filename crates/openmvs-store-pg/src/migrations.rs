//! Applying a schema's numbered migrations, for the national and the hub schema alike: in order,
//! each in its own transaction, each recorded with the oldest build it leaves working; and only
//! when no node that is serving runs a build a pending migration would break
//! (`openmvs_store::rolling`).

use openmvs_store::rolling::{self, Compat, LiveNode};
use tokio_postgres::Client;

/// A schema's migrations.
pub(crate) struct Migrations {
    /// The table that records them.
    pub table: &'static str,
    /// Each migration's version and SQL, in order.
    pub list: &'static [(i64, &'static str)],
    /// What the migrations after the strict era leave working.
    pub compat: &'static [Compat],
    /// "the database", "the hub database": for messages.
    pub what: &'static str,
}

impl Migrations {
    /// The newest version this build knows.
    pub fn latest(&self) -> i64 {
        self.list.last().map_or(0, |m| m.0)
    }
}

/// Whether the current schema has `table` with `column`.
pub(crate) async fn has_column(c: &Client, table: &str, column: &str) -> Result<bool, tokio_postgres::Error> {
    Ok(c.query_one(
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1 AND column_name = $2)",
        &[&table, &column],
    )
    .await?
    .get(0))
}

/// The schema's version: the newest migration recorded in `table` (0 without one).
pub(crate) async fn current(c: &Client, table: &str) -> Result<i64, tokio_postgres::Error> {
    if !has_column(c, table, "version").await? {
        return Ok(0);
    }
    Ok(c.query_one(&format!("SELECT COALESCE(MAX(version), 0) FROM {table}"), &[]).await?.get(0))
}

/// The oldest build that every migration above `build` leaves working (a migration recorded
/// without one needs its own version).
pub(crate) async fn floor_above(c: &Client, table: &str, build: i64) -> Result<i64, tokio_postgres::Error> {
    if !has_column(c, table, "version").await? {
        return Ok(0);
    }
    let oldest = if has_column(c, table, "compatible_from").await? {
        "COALESCE(compatible_from, version)"
    } else {
        "version"
    };
    Ok(c.query_one(&format!("SELECT COALESCE(MAX({oldest}), 0) FROM {table} WHERE version > $1"), &[&build])
        .await?
        .get(0))
}

/// The nodes whose heartbeat is younger than [`rolling::LIVE_WINDOW_MS`] at `now_millis`, with
/// the build each says it runs.
pub(crate) async fn live_nodes(c: &Client, now_millis: i64) -> Result<Vec<LiveNode>, tokio_postgres::Error> {
    if !has_column(c, "heartbeats", "at").await? {
        return Ok(Vec::new());
    }
    let build =
        if has_column(c, "heartbeats", "build_schema").await? { "build_schema" } else { "NULL::BIGINT" };
    let rows = c
        .query(
            &format!("SELECT node_id, at, {build} FROM heartbeats WHERE at > $1 ORDER BY node_id"),
            &[&(now_millis - rolling::LIVE_WINDOW_MS)],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| LiveNode { node_id: r.get(0), age_ms: now_millis - r.get::<_, i64>(1), build: r.get(2) })
        .collect())
}

/// Applies every migration of `m` not yet applied (the caller holds the migration lock), unless
/// the schema is newer than this build or a node serving would be broken by one. Returns the
/// versions applied, or why nothing was.
pub(crate) async fn apply(
    c: &Client,
    m: &Migrations,
    now_millis: i64,
) -> Result<Result<Vec<i64>, String>, tokio_postgres::Error> {
    let current = current(c, m.table).await?;
    let latest = m.latest();
    if current > latest {
        return Ok(Err(format!(
            "{} has schema version {current}, newer than this build's {latest}: upgrade openmvs",
            m.what
        )));
    }
    let pending: Vec<i64> = m.list.iter().map(|x| x.0).filter(|v| *v > current).collect();
    if pending.is_empty() {
        return Ok(Ok(Vec::new()));
    }
    let live = live_nodes(c, now_millis).await?;
    if let Err(why) = rolling::may_apply(current, &pending, m.compat, &live) {
        return Ok(Err(why));
    }
    let mut applied = Vec::new();
    for &(version, sql) in m.list.iter().filter(|(v, _)| *v > current) {
        c.batch_execute("BEGIN").await?;
        let r = async {
            c.batch_execute(sql).await?;
            c.execute(
                &format!("INSERT INTO {} (version, applied_at) VALUES ($1, $2)", m.table),
                &[&version, &now_millis],
            )
            .await?;
            if has_column(c, m.table, "compatible_from").await? {
                let oldest = rolling::runs_builds_from(m.compat, version);
                c.execute(
                    &format!("UPDATE {} SET compatible_from = $2 WHERE version = $1", m.table),
                    &[&version, &oldest],
                )
                .await?;
            }
            c.batch_execute("COMMIT").await
        }
        .await;
        if let Err(e) = r {
            let _ = c.batch_execute("ROLLBACK").await;
            return Err(e);
        }
        applied.push(version);
    }
    Ok(Ok(applied))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A schema of two migrations: an expand, then a contract of what the first build used.
    const LIST: &[(i64, &str)] = &[
        (
            1,
            "CREATE TABLE heartbeats (node_id TEXT PRIMARY KEY, at BIGINT NOT NULL, build_schema BIGINT); \
             CREATE TABLE t (a INT, old INT)",
        ),
        (2, "ALTER TABLE t ADD COLUMN b INT"),
        (3, "ALTER TABLE t DROP COLUMN old"),
    ];
    const COMPAT: &[Compat] = &[
        Compat { version: 2, runs_builds_from: 1, what: "adds t.b" },
        Compat { version: 3, runs_builds_from: 2, what: "drops t.old, which build 1 reads" },
    ];

    fn migrations(upto: usize) -> Migrations {
        // Leaked: a test's schema of `upto` migrations, as a build of that version knows it.
        let list: &'static [(i64, &'static str)] = Box::leak(LIST[..upto].to_vec().into_boxed_slice());
        Migrations { table: "test_migrations", list, compat: COMPAT, what: "the test database" }
    }

    #[tokio::test]
    async fn a_contract_is_refused_while_a_node_of_the_build_it_breaks_serves() {
        let Some((url, schema)) = crate::testing::fresh_schema("mig", "the expand/contract case") else {
            return;
        };
        let config = crate::connection_config(&url, Some(&schema)).expect("config");
        let conn = crate::pool::connect(&config).await.expect("connects");
        let c = &conn.client;
        c.batch_execute(
            "CREATE TABLE test_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL, compatible_from BIGINT)",
        )
        .await
        .expect("the migrations table");
        let now = 1_800_000_000_000;
        assert_eq!(apply(c, &migrations(1), now).await.expect("applies"), Ok(vec![1]));
        // A node of build 1 serves, and one that said no build (of the strict era) stopped long ago.
        c.batch_execute(&format!(
            "INSERT INTO heartbeats VALUES ('node-1', {}, 1), ('gone', {}, NULL)",
            now - 1_000,
            now - 3_600_000
        ))
        .await
        .expect("heartbeats");
        // The expand goes in under it; the contract is refused, naming it and what to do.
        let refused = apply(c, &migrations(3), now).await.expect("answers");
        let why = refused.expect_err("the contract is refused");
        assert!(
            why.contains("migration 3 (drops t.old, which build 1 reads) would break node node-1")
                && why.contains("Upgrade every node"),
            "{why}"
        );
        assert_eq!(current(c, "test_migrations").await.expect("reads"), 1, "nothing applied when refused");
        assert_eq!(apply(c, &migrations(2), now).await.expect("applies"), Ok(vec![2]));
        assert_eq!(floor_above(c, "test_migrations", 1).await.expect("reads"), 1, "build 1 runs on schema 2");
        // Once the node runs build 2, the contract goes in; build 1 could not open it any more.
        c.batch_execute("UPDATE heartbeats SET build_schema = 2 WHERE node_id = 'node-1'")
            .await
            .expect("upgrade");
        assert_eq!(apply(c, &migrations(3), now).await.expect("applies"), Ok(vec![3]));
        assert_eq!(floor_above(c, "test_migrations", 1).await.expect("reads"), 2);
        assert!(rolling::may_open(1, 3, 2).is_err() && rolling::may_open(2, 3, 2).is_ok());
        crate::drop_schema(&url, &schema).expect("drop");
    }
}
