//! The hub's storage conformance suite on the PostgreSQL engine, each case in a fresh schema of the
//! database named by `OPENMVS_TEST_DATABASE_URL` (skipped, saying so, when it is not set), and the
//! checks only this engine can make: several nodes on one schema, digests streamed in with COPY,
//! a critical section across nodes.

use std::sync::Arc;

use openmvs_audit::Verifier;
use openmvs_core::ids::{Batch, MarketCode, ProductCode, UploadId};
use openmvs_core::time::{Clock, Timestamp};
use openmvs_store::conformance::fixed_clock;
use openmvs_store::conformance_hub::{HubPlace, hub_entry};
use openmvs_store::hub::*;
use openmvs_store::{
    AuditStore, BoxFuture, Conflict, OutboxMessage, StoreError, StoreResult, hub_conformance_tests,
    hub_place_tests,
};
use openmvs_store_pg::hub::{COPY_FROM, PgHubOptions, PgHubStore};
use openmvs_store_pg::testing::fresh_schema;
use openmvs_store_pg::{PgOptions, PgStore, connection_config};

fn key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[43; 32])
}

fn options(url: &str, schema: &str) -> PgHubOptions {
    PgHubOptions {
        url: url.to_owned(),
        schema: Some(schema.to_owned()),
        signing_key: key(),
        clock: fixed_clock(),
        on_group: None,
        migrate: true,
        pool_size: 4,
        commit_timeout: std::time::Duration::from_secs(10),
        checkpoints: openmvs_store::CheckpointOptions::default(),
    }
}

fn open_at(url: &str, schema: &str) -> Arc<PgHubStore> {
    Arc::new(PgHubStore::open(options(url, schema)).expect("hub store opens"))
}

fn open() -> Option<Arc<PgHubStore>> {
    let (url, schema) = fresh_schema("hubconf", "the PostgreSQL hub conformance case")?;
    Some(open_at(&url, &schema))
}

hub_conformance_tests!(optional open(), key().verifying_key());

fn gtin() -> ProductCode {
    ProductCode::gtin("09501101530003").expect("gtin")
}

fn market(s: &str) -> MarketCode {
    MarketCode::new(s).expect("market")
}

fn far() -> Timestamp {
    Timestamp::from_unix_millis(i64::MAX / 2)
}

fn digest(n: u64) -> SerialDigest {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&n.to_be_bytes());
    b[8..].copy_from_slice(b"digest!!");
    SerialDigest::new(&b).expect("16 bytes")
}

fn chunk(id: &str, destination: &str, serials: &[&str]) -> OutboxMessage {
    OutboxMessage {
        message_id: id.into(),
        destination: destination.into(),
        kind: "packs".into(),
        ordering_key: gtin().as_str().into(),
        payload: format!("{{\"serials\":{serials:?}}}"),
    }
}

fn new_upload(markets: &[&str]) -> NewUpload {
    NewUpload {
        id: "up-1".into(),
        obp: "obp-1".into(),
        product_code: gtin(),
        batch: Batch::new("LOT1").expect("batch"),
        markets: markets.iter().map(|m| market(m)).collect(),
        created_at: Timestamp::from_unix_millis(0),
    }
}

/// A plain connection to the test schema, for the checks that go around the store.
async fn sql(url: &str, schema: &str) -> tokio_postgres::Client {
    let config = connection_config(url, Some(schema)).expect("config");
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.expect("connects");
    tokio::spawn(connection);
    client
}

async fn verify_audit(store: &PgHubStore) -> u64 {
    let mut v = Verifier::new([key().verifying_key()]);
    for cp in store.checkpoints().await.expect("checkpoints") {
        v.checkpoint(&cp).expect("checkpoint verifies");
    }
    let mut after = 0;
    let mut n = 0;
    loop {
        let page = store.audit_page(after, 1000).await.expect("audit page");
        if page.is_empty() {
            break;
        }
        for (pos, r) in &page {
            v.record(r).expect("record verifies");
            after = *pos;
            n += 1;
        }
    }
    v.finish().expect("chain verifies");
    n
}

/// Delivers every due message for `destination` until none is left.
async fn drain(store: &PgHubStore, destination: &str) {
    loop {
        let due = store.due(destination, far(), 1).await.expect("due");
        let Some(next) = due.first() else { return };
        store.delivered(next.seq).await.expect("delivered");
    }
}

/// The rows a plan node of `EXPLAIN (ANALYZE, FORMAT JSON)` handled, filtered out ones included,
/// and the most any node below it handled.
fn most_rows_of_a_node(plan: &serde_json::Value) -> f64 {
    let n = |k: &str| plan[k].as_f64().unwrap_or(0.0);
    let loops = n("Actual Loops").max(1.0);
    let own = (n("Actual Rows") + n("Rows Removed by Filter") + n("Rows Removed by Index Recheck")) * loops;
    plan["Plans"].as_array().into_iter().flatten().map(most_rows_of_a_node).fold(own, f64::max)
}

/// The due messages of a long backlog of one product are the head of each ordering key, found
/// with a few index lookups and no pass over the backlog: draining n messages of one key is n
/// rounds of constant work, not of work that grows with what is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_due_messages_of_a_long_backlog_of_one_key_are_found_without_reading_the_backlog() {
    let Some((url, schema)) = fresh_schema("hubconf", "the outbox backlog case") else { return };
    let store = open_at(&url, &schema);
    let c = sql(&url, &schema).await;
    c.batch_execute(
        "INSERT INTO outbox (message_id, destination, kind, ordering_key, payload, created_at, next_attempt_at) \
         SELECT 'backlog-' || g, 'DE', 'pack-state', 'P1', '{}', 0, 0 FROM generate_series(1, 2000) g; \
         INSERT INTO outbox (message_id, destination, kind, ordering_key, payload, created_at, next_attempt_at) \
         VALUES ('other-product', 'DE', 'batch', 'P2', '{}', 0, 0), ('other-market', 'FR', 'batch', 'P1', '{}', 0, 0); \
         ANALYZE outbox",
    )
    .await
    .expect("a backlog");
    let due = store.due("DE", far(), 64).await.expect("due");
    let ids: Vec<&str> = due.iter().map(|m| m.message.message_id.as_str()).collect();
    assert_eq!(ids, ["backlog-1", "other-product"], "the head of each key, oldest first");

    c.batch_execute(&format!(
        "PREPARE due(bigint, bigint, text) AS {}",
        openmvs_store_pg::testing::hub_due_statement()
    ))
    .await
    .expect("prepare");
    let explained = c
        .simple_query("EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE due(9000000000000, 64, 'DE')")
        .await
        .expect("explain");
    let text = explained
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .expect("a plan");
    let plan: serde_json::Value = serde_json::from_str(&text).expect("JSON plan");
    let most = most_rows_of_a_node(&plan[0]["Plan"]);
    assert!(most <= 10.0, "a plan node handles {most} rows of a backlog of 2,000 (two keys): {plan:#}");
}

/// Groups large enough to be streamed in with COPY report repeats within the group and across
/// units exactly as small ones do, and a refused one leaves nothing staged or inserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_digest_groups_are_streamed_in_and_report_like_small_ones() {
    let Some(store) = open() else { return };
    let n = (COPY_FROM * 40) as u64;
    // Every digest of 0..n, then 0..10 again: the last ten are repeats within the group.
    let mut list: Vec<SerialDigest> = (0..n).map(digest).collect();
    list.extend((0..10).map(digest));
    let uow = HubUnitOfWork {
        serials: vec![SerialDigests {
            product_code: gtin(),
            digests: list,
            on_duplicate: OnDuplicate::Report,
        }],
        ..HubUnitOfWork::default()
    };
    let done = store.commit(uow).await.expect("commits");
    assert_eq!(done.duplicate_serials, [(n as usize..n as usize + 10).collect::<Vec<_>>()]);
    assert_eq!(store.digest_count(&gtin()).await.expect("count"), n);

    // Half old, half new, reported by position.
    let list: Vec<SerialDigest> = (n - 100..n + 100).map(digest).collect();
    let report = HubUnitOfWork {
        serials: vec![SerialDigests {
            product_code: gtin(),
            digests: list.clone(),
            on_duplicate: OnDuplicate::Report,
        }],
        ..HubUnitOfWork::default()
    };
    let done = store.commit(report).await.expect("commits");
    assert_eq!(done.duplicate_serials, [(0..100).collect::<Vec<_>>()]);
    assert_eq!(store.digest_count(&gtin()).await.expect("count"), n + 100);

    // New digests and one present: refused, none of them inserted.
    let mut list: Vec<SerialDigest> = (n + 1000..n + 1000 + COPY_FROM as u64 * 3).map(digest).collect();
    list.push(digest(5));
    let refused = HubUnitOfWork {
        serials: vec![SerialDigests {
            product_code: gtin(),
            digests: list,
            on_duplicate: OnDuplicate::Refuse,
        }],
        audit: vec![hub_entry("upload", "refused")],
        ..HubUnitOfWork::default()
    };
    let err = store.commit(refused).await.expect_err("one digest is present");
    assert!(matches!(err, StoreError::Conflict(Conflict::Exists(_))), "{err}");
    assert_eq!(store.digest_count(&gtin()).await.expect("count"), n + 100);
    assert!(store.present(&gtin(), &[digest(n + 1000)]).await.expect("read").is_empty());

    // The next streamed group of the same writer finds nothing left over in the staging table.
    let fresh: Vec<SerialDigest> = (n + 5000..n + 5000 + COPY_FROM as u64).map(digest).collect();
    let ok = HubUnitOfWork {
        serials: vec![SerialDigests {
            product_code: gtin(),
            digests: fresh,
            on_duplicate: OnDuplicate::Refuse,
        }],
        audit: vec![hub_entry("upload", "accepted")],
        ..HubUnitOfWork::default()
    };
    assert_eq!(store.commit(ok).await.expect("commits").audit_seqs, [1]);
    assert_eq!(store.digest_count(&gtin()).await.expect("count"), n + 100 + COPY_FROM as u64);
    let probe = [digest(0), digest(n + 1000), digest(n + 5000)];
    assert_eq!(store.present(&gtin(), &probe).await.expect("read"), [0, 2]);
}

/// Two nodes on one schema: their commits form one audit chain in commit order, and chunk
/// acknowledgements from either node, racing the upload's validation on the other, end with the
/// upload DISTRIBUTED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_hub_schema() {
    let Some((url, schema)) = fresh_schema("hubconf", "the two-node hub case") else { return };
    let a = open_at(&url, &schema);
    let b = open_at(&url, &schema);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let uow = HubUnitOfWork {
                inbox: Some(format!("DE-msg-{i}").into()),
                serials: vec![SerialDigests {
                    product_code: gtin(),
                    digests: vec![digest(i)],
                    on_duplicate: OnDuplicate::Refuse,
                }],
                audit: vec![hub_entry("upload", &format!("node/{i}"))],
                ..HubUnitOfWork::default()
            };
            store.commit(uow).await
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("commits");
    }
    assert_eq!(verify_audit(&a).await, 200);
    assert_eq!(verify_audit(&b).await, 200);
    let err = b
        .commit(HubUnitOfWork { inbox: Some("DE-msg-0".into()), ..HubUnitOfWork::default() })
        .await
        .expect_err("applied on the other node");
    assert_eq!(err, StoreError::Conflict(Conflict::InboxMessage));

    for round in 0..5 {
        let id = UploadId::new(format!("up-{round}"));
        let mut chunks = Vec::new();
        for k in 0..6 {
            chunks.push(chunk(&format!("{id}-de-{k}"), "DE", &["S"]));
            chunks.push(chunk(&format!("{id}-fr-{k}"), "FR", &["S"]));
        }
        let uow = HubUnitOfWork {
            new_upload: Some(NewUpload { id: id.clone(), ..new_upload(&["DE", "FR"]) }),
            upload_progress: Some(UploadProgress { received: 6, chunks, ..UploadProgress::new(id.clone()) }),
            ..HubUnitOfWork::default()
        };
        a.commit(uow).await.expect("chunks");
        // Node A validates while nodes A and B acknowledge the chunks.
        let validate = HubUnitOfWork {
            upload_progress: Some(UploadProgress {
                outcome: Some(UploadOutcome::Validated),
                ..UploadProgress::new(id.clone())
            }),
            ..HubUnitOfWork::default()
        };
        let (sa, sb) = (a.clone(), b.clone());
        let de = tokio::spawn(async move { drain(&sa, "DE").await });
        let fr = tokio::spawn(async move { drain(&sb, "FR").await });
        a.commit(validate).await.expect("validated");
        de.await.expect("task");
        fr.await.expect("task");
        let u = b.upload(&id).await.expect("read").expect("upload");
        assert_eq!(u.status, UploadStatus::Distributed, "{u:?}");
        assert!(u.markets.iter().all(|m| (m.chunks_sent, m.chunks_acked) == (6, 6)), "{u:?}");
    }
    a.close().await;
    b.close().await;
}

/// A fresh schema.
struct Place {
    url: String,
    schema: String,
}

fn place(why: &str) -> Option<Place> {
    let (url, schema) = fresh_schema("hubconf", why)?;
    Some(Place { url, schema })
}

impl HubPlace for Place {
    type Store = PgHubStore;

    fn open(&self) -> StoreResult<Arc<PgHubStore>> {
        PgHubStore::open(options(&self.url, &self.schema)).map(Arc::new)
    }

    fn close(store: &PgHubStore) -> BoxFuture<'_, ()> {
        Box::pin(store.close())
    }

    fn open_national(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {
            let national = PgStore::open(PgOptions {
                url: self.url.clone(),
                schema: Some(self.schema.clone()),
                signing_key: key(),
                clock: fixed_clock(),
                on_group: None,
                migrate: true,
                pool_size: 1,
                commit_timeout: std::time::Duration::from_secs(10),
                checkpoints: openmvs_store::CheckpointOptions::default(),
            })
            .expect("national store opens");
            national.close().await;
        })
    }

    fn national_intact(&self) -> BoxFuture<'_, bool> {
        Box::pin(async {
            let c = sql(&self.url, &self.schema).await;
            let hub_tables: i64 = c
                .query_one(
                    "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() \
                     AND table_name IN ('hub_schema_migrations', 'obps', 'serial_digests')",
                    &[],
                )
                .await
                .expect("count")
                .get(0);
            let national: i64 = c
                .query_one(
                    "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() \
                     AND table_name = 'packs'",
                    &[],
                )
                .await
                .expect("count")
                .get(0);
            hub_tables == 0 && national == 1
        })
    }

    fn tables_holding<'a>(&'a self, needle: &'a str) -> BoxFuture<'a, Vec<String>> {
        Box::pin(async move {
            let c = sql(&self.url, &self.schema).await;
            let tables: Vec<String> = c
                .query(
                    "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() \
                     AND table_type = 'BASE TABLE' ORDER BY 1",
                    &[],
                )
                .await
                .expect("tables")
                .iter()
                .map(|r| r.get(0))
                .collect();
            assert!(tables.contains(&"outbox".to_owned()) && tables.len() > 10, "{tables:?}");
            let mut found = Vec::new();
            for t in tables {
                let n: i64 = c
                    .query_one(
                        &format!("SELECT COUNT(*) FROM {t} x WHERE strpos(x::text, $1) > 0"),
                        &[&needle],
                    )
                    .await
                    .expect("scan")
                    .get(0);
                if n > 0 {
                    found.push(t);
                }
            }
            found
        })
    }

    fn refused<'a>(&'a self, stmt: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async move { sql(&self.url, &self.schema).await.batch_execute(stmt).await.is_err() })
    }

    fn more_irreversible(&self) -> &'static [&'static str] {
        &["TRUNCATE audit", "TRUNCATE product_versions"]
    }
}

hub_place_tests!(place("a hub place case"), key().verifying_key());

/// A national system's schema is refused by the hub's migrations, saying why; a schema the hub
/// never migrated is refused at open when migrating is not asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_schema_is_made_only_by_the_hub_migrations() {
    let Some(national) = place("the wrong schema case") else { return };
    national.open_national().await;
    let err = openmvs_store_pg::hub::migrate(&national.url, Some(&national.schema), fixed_clock().now())
        .expect_err("refused");
    assert!(matches!(err, StoreError::Unavailable(ref m) if m.contains("national")), "{err}");

    let Some((url, empty)) = fresh_schema("hubconf", "the unmigrated schema case") else { return };
    let err =
        PgHubStore::open(PgHubOptions { migrate: false, ..options(&url, &empty) }).err().expect("refused");
    assert!(matches!(err, StoreError::Unavailable(ref m) if m.contains("migrate")), "{err}");
    assert_eq!(
        openmvs_store_pg::hub::migrate(&url, Some(&empty), fixed_clock().now()).expect("migrates"),
        [1, 2, 3, 4, 5]
    );
    assert!(
        openmvs_store_pg::hub::migrate(&url, Some(&empty), fixed_clock().now()).expect("migrates").is_empty()
    );
    assert_eq!(PgHubStore::schema_version(), openmvs_store_pg::hub::schema::LATEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_critical_section_admits_one_task_of_all_nodes_at_a_time() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let Some((url, schema)) = fresh_schema("hubconf", "the critical section case") else { return };
    let nodes = [open_at(&url, &schema), open_at(&url, &schema)];
    let inside = Arc::new(AtomicBool::new(false));
    let entries = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..12 {
        let (store, inside, entries) = (nodes[i % 2].clone(), inside.clone(), entries.clone());
        tasks.push(tokio::spawn(async move {
            let guard = store.enter("test-section").await.expect("enter");
            assert!(!inside.swap(true, Ordering::SeqCst), "two tasks inside the section at once");
            // Stays inside while every other task gets to run (and tries to enter) a few times.
            for _ in 0..50 {
                tokio::task::yield_now().await;
            }
            inside.store(false, Ordering::SeqCst);
            entries.fetch_add(1, Ordering::SeqCst);
            drop(guard);
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(entries.load(Ordering::SeqCst), 12);
    // Another section is independent of this one.
    let held = nodes[0].enter("test-section").await.expect("enter");
    // Held sections never end by themselves here: a generous bound tells "waits" from "does not"
    // whatever the machine's load.
    let other = tokio::time::timeout(std::time::Duration::from_secs(30), nodes[1].enter("other-section"))
        .await
        .expect("another section does not wait")
        .expect("enter");
    drop((held, other));
    // A node that dies inside a section leaves it: the database ends its session's lock.
    let held = nodes[0].enter("test-section").await.expect("enter");
    std::mem::forget(held);
    nodes[0].close().await;
    drop(nodes);
    let survivor = open_at(&url, &schema);
    tokio::time::timeout(std::time::Duration::from_secs(30), survivor.enter("test-section"))
        .await
        .expect("the section is free once its holder is gone")
        .expect("enter");
}
