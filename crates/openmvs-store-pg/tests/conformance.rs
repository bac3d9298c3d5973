//! The storage conformance suite on the PostgreSQL engine, each case in a fresh schema of the
//! database named by `OPENMVS_TEST_DATABASE_URL` (skipped, saying so, when it is not set).

use std::sync::Arc;

use openmvs_core::time::Clock;
use openmvs_store::conformance::fixed_clock;
use openmvs_store::{CheckpointOptions, Store, checkpoint_conformance_tests, conformance_tests};
use openmvs_store_pg::testing::fresh_schema;
use openmvs_store_pg::{PgOptions, PgStore};

fn key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[42; 32])
}

/// The options of a store on `schema` at `url`, one read connection, commits bounded at 10 s.
fn options(url: &str, schema: &str, migrate: bool) -> PgOptions {
    PgOptions {
        url: url.to_owned(),
        schema: Some(schema.to_owned()),
        signing_key: key(),
        clock: fixed_clock(),
        on_group: None,
        migrate,
        pool_size: 1,
        commit_timeout: std::time::Duration::from_secs(10),
        checkpoints: CheckpointOptions::default(),
    }
}

fn open() -> Option<Arc<dyn Store>> {
    open_with(fixed_clock(), CheckpointOptions::default())
}

fn open_with(clock: Arc<dyn Clock>, checkpoints: CheckpointOptions) -> Option<Arc<dyn Store>> {
    let (url, schema) = fresh_schema("conf", "the PostgreSQL conformance case")?;
    let store = PgStore::open(PgOptions {
        url,
        schema: Some(schema),
        signing_key: key(),
        clock,
        on_group: None,
        migrate: true,
        pool_size: 4,
        commit_timeout: std::time::Duration::from_secs(10),
        checkpoints,
    })
    .expect("store opens");
    Some(Arc::new(store))
}

conformance_tests!(optional open(), key().verifying_key());
checkpoint_conformance_tests!(open_with, key().verifying_key());

/// A schema that refuses writes, as a standby does ("cannot execute INSERT in a read-only
/// transaction"): the heartbeat, the probe that readiness follows, is answered as unavailable with
/// nothing written, and commits again as soon as writes are accepted, with the same writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_is_unavailable_while_the_database_refuses_writes_and_commits_again_after() {
    use openmvs_store::{Committer, Heartbeat, StoreError, UnitOfWork};
    let Some((url, schema)) = fresh_schema("conf", "the read-only database case") else { return };
    let store = PgStore::open(options(&url, &schema, true)).expect("store opens");
    let beat = || UnitOfWork {
        heartbeat: Some(Heartbeat { node_id: "node-a".into(), at: fixed_clock().now() }),
        ..UnitOfWork::default()
    };
    store.commit(beat()).await.expect("a heartbeat commits");
    let config = openmvs_store_pg::connection_config(&url, Some(&schema)).expect("config");
    let (admin, connection) = config.connect(tokio_postgres::NoTls).await.expect("connects");
    tokio::spawn(connection);
    admin
        .batch_execute(
            "CREATE FUNCTION refuse_writes() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             RAISE EXCEPTION 'cannot execute INSERT in a read-only transaction' USING ERRCODE = '25006'; END; $$; \
             CREATE TRIGGER refuse_writes BEFORE INSERT OR UPDATE ON heartbeats \
             FOR EACH ROW EXECUTE FUNCTION refuse_writes();",
        )
        .await
        .expect("make the table refuse writes");
    let refused = store.commit(beat()).await;
    assert!(matches!(refused, Err(StoreError::Unavailable(ref m)) if m.contains("read-only")), "{refused:?}");
    admin.batch_execute("DROP TRIGGER refuse_writes ON heartbeats").await.expect("accept writes again");
    store.commit(beat()).await.expect("the heartbeat commits again");
    store.close().await;
}

/// A store opened inside a test's runtime of one thread runs there: its reads, its writer and its
/// connections share that thread, a second store on the same schema follows the first's commits,
/// and closing waits for the writer without holding up the thread it needs.
#[tokio::test]
async fn a_store_runs_on_the_runtime_of_one_thread_it_is_opened_in_and_closes() {
    use openmvs_store::{AuditStore, Committer, PackStore, UnitOfWork};
    let Some((url, schema)) = fresh_schema("conf", "the one-thread runtime case") else { return };
    let open = |migrate| {
        PgStore::open(PgOptions { pool_size: 2, ..options(&url, &schema, migrate) }).expect("store opens")
    };
    let (first, second) = (open(true), open(false));
    let entry = openmvs_audit::Entry {
        market: "DE".into(),
        at_millis: 1_800_000_000_000,
        actor: "test".into(),
        role: "NMVO".into(),
        location: "office".into(),
        operation: "probe".into(),
        subject: "probe".into(),
        return_code: "NMVS_SUCCESS".into(),
        request: "{}".into(),
        result: "{}".into(),
    };
    first.commit(UnitOfWork { audit: vec![entry], ..UnitOfWork::default() }).await.expect("commits");
    assert_eq!(second.audit_page(0, 10).await.expect("reads").len(), 1);
    assert_eq!(first.pack_count().await.expect("reads"), 0);
    first.close().await;
    second.close().await;
    assert!(first.commit(UnitOfWork::default()).await.is_err(), "a closed store takes no more units");
}

/// A commit the database does not confirm within the store's bound (here a row another session
/// holds; in production no writable primary, or no synchronous standby) is answered unavailable
/// with its outcome unknown, on time, and still commits once the database lets it: a retry with
/// the same `client_trx_id` finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_not_confirmed_within_the_bound_is_answered_unavailable_and_may_still_commit() {
    use openmvs_store::{Committer, Heartbeat, StoreError, UnitOfWork};
    let Some((url, schema)) = fresh_schema("conf", "the commit bound case") else { return };
    let store = PgStore::open(PgOptions {
        commit_timeout: std::time::Duration::from_millis(300),
        ..options(&url, &schema, true)
    })
    .expect("store opens");
    let beat = |at: i64| UnitOfWork {
        heartbeat: Some(Heartbeat {
            node_id: "node-a".into(),
            at: openmvs_core::time::Timestamp::from_unix_millis(at),
        }),
        ..UnitOfWork::default()
    };
    store.commit(beat(1_000)).await.expect("a heartbeat commits");
    let config = openmvs_store_pg::connection_config(&url, Some(&schema)).expect("config");
    let (admin, connection) = config.connect(tokio_postgres::NoTls).await.expect("connects");
    tokio::spawn(connection);
    admin
        .batch_execute("BEGIN; SELECT * FROM heartbeats WHERE node_id = 'node-a' FOR UPDATE")
        .await
        .expect("hold the row");
    let refused = store.commit(beat(2_000)).await;
    assert!(
        matches!(refused, Err(StoreError::Unavailable(ref m)) if m.contains("within 300 ms") && m.contains("outcome is unknown")),
        "{refused:?}"
    );
    admin.batch_execute("COMMIT").await.expect("let the row go");
    // The unit was not withdrawn: it commits once the row is free, before the next one.
    store.commit(beat(3_000)).await.expect("the next heartbeat commits");
    let rows = admin.query("SELECT at FROM heartbeats WHERE node_id = 'node-a'", &[]).await.expect("read");
    assert_eq!(rows[0].get::<_, i64>(0), 3_000);
    store.close().await;
}

/// A build opens a newer schema only if every migration above it leaves it working: one that
/// says it does (an expand) is opened, one that needs a newer build (a contract) is refused with
/// what to do. Each node's heartbeat says which build it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_opens_a_newer_schema_only_if_what_is_above_its_build_leaves_it_working() {
    use openmvs_store::{Committer, Heartbeat, UnitOfWork};
    let Some((url, schema)) = fresh_schema("conf", "the newer schema case") else { return };
    let open = |migrate| PgStore::open(options(&url, &schema, migrate));
    let store = open(true).expect("store opens");
    let beat = UnitOfWork {
        heartbeat: Some(Heartbeat { node_id: "node-a".into(), at: fixed_clock().now() }),
        ..UnitOfWork::default()
    };
    store.commit(beat).await.expect("a heartbeat commits");
    store.close().await;
    let config = openmvs_store_pg::connection_config(&url, Some(&schema)).expect("config");
    let (admin, connection) = config.connect(tokio_postgres::NoTls).await.expect("connects");
    tokio::spawn(connection);
    let latest = PgStore::schema_version();
    let build: i64 = admin
        .query_one("SELECT build_schema FROM heartbeats WHERE node_id = 'node-a'", &[])
        .await
        .expect("read the heartbeat")
        .get(0);
    assert_eq!(build, latest, "the heartbeat says which build wrote it");
    let next = latest + 1;
    admin
        .execute(
            "INSERT INTO schema_migrations (version, applied_at, compatible_from) VALUES ($1, 0, $2)",
            &[&next, &latest],
        )
        .await
        .expect("a newer expand");
    open(false).expect("a build opens a newer schema that leaves it working").close().await;
    admin
        .execute("UPDATE schema_migrations SET compatible_from = $1 WHERE version = $1", &[&next])
        .await
        .expect("a newer contract");
    let refused = open(false).err().expect("refused");
    assert!(refused.to_string().contains(&format!("needs builds of schema {next}")), "{refused}");
    assert!(refused.to_string().contains("upgrade openmvs"), "{refused}");
}
