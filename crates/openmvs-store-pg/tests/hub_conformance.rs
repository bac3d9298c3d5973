//! The hub's storage conformance suite on the PostgreSQL engine, each case in a fresh schema of the
//! database named by `OPENMVS_TEST_DATABASE_URL` (skipped, saying so, when it is not set), and the
//! checks only this engine can make: several nodes on one schema, digests streamed in with COPY,
//! and the schema refusing to change what is irreversible.

use std::sync::Arc;

use openmvs_audit::{Entry, Verifier};
use openmvs_core::ids::{Batch, Expiry, MarketCode, ProductCode};
use openmvs_core::master_data::ProductMaster;
use openmvs_core::time::{Clock, Date, Timestamp};
use openmvs_store::hub::*;
use openmvs_store::{AuditStore, Conflict, OutboxMessage, StoreError, hub_conformance_tests};
use openmvs_store_pg::hub::{COPY_FROM, PgHubOptions, PgHubStore};
use openmvs_store_pg::testing::fresh_schema;
use openmvs_store_pg::{PgOptions, PgStore, connection_config};

struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_millis(1_800_000_000_000)
    }
}

fn key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[43; 32])
}

fn options(url: &str, schema: &str) -> PgHubOptions {
    PgHubOptions {
        url: url.to_owned(),
        schema: Some(schema.to_owned()),
        signing_key: key(),
        clock: Arc::new(FixedClock),
        on_group: None,
        migrate: true,
        pool_size: 4,
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

fn hub_entry(op: &str, subject: &str) -> Entry {
    Entry {
        market: HUB_AUDIT_MARKET.into(),
        at_millis: 1_800_000_000_000,
        actor: "obp-1".into(),
        role: "OBP".into(),
        operation: op.into(),
        subject: subject.into(),
        return_code: "OK".into(),
        request: "{}".into(),
        result: "{}".into(),
        ..Entry::default()
    }
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
                inbox: Some(format!("DE-msg-{i}")),
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
        let id = format!("up-{round}");
        let mut chunks = Vec::new();
        for k in 0..6 {
            chunks.push(chunk(&format!("{id}-de-{k}"), "DE", &["S"]));
            chunks.push(chunk(&format!("{id}-fr-{k}"), "FR", &["S"]));
        }
        let uow = HubUnitOfWork {
            new_upload: Some(NewUpload { id: id.clone(), ..new_upload(&["DE", "FR"]) }),
            upload_progress: Some(UploadProgress {
                id: id.clone(),
                received: 6,
                chunks,
                ..UploadProgress::default()
            }),
            ..HubUnitOfWork::default()
        };
        a.commit(uow).await.expect("chunks");
        // Node A validates while nodes A and B acknowledge the chunks.
        let validate = HubUnitOfWork {
            upload_progress: Some(UploadProgress {
                id: id.clone(),
                outcome: Some(UploadOutcome::Validated),
                ..UploadProgress::default()
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

/// Only the outbox row of an undelivered chunk holds its serials; once delivered, no row of any
/// table does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_row_holds_a_serial_after_delivery() {
    let Some((url, schema)) = fresh_schema("hubconf", "the serial retention case") else { return };
    let store = open_at(&url, &schema);
    let serials = ["ZQ9DELIVERED1", "ZQ9DELIVERED2"];
    let uow = HubUnitOfWork {
        new_upload: Some(new_upload(&["DE"])),
        upload_progress: Some(UploadProgress {
            id: "up-1".into(),
            received: 2,
            chunks: vec![chunk("c-1", "DE", &serials)],
            outcome: Some(UploadOutcome::Validated),
            ..UploadProgress::default()
        }),
        audit: vec![hub_entry("upload", "GTIN/09501101530003/LOT1")],
        ..HubUnitOfWork::default()
    };
    store.commit(uow).await.expect("commits");
    let c = sql(&url, &schema).await;
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
    let holding = |needle: &'static str| {
        let (c, tables) = (&c, &tables);
        async move {
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
                    found.push(t.clone());
                }
            }
            found
        }
    };
    assert_eq!(holding(serials[0]).await, ["outbox"]);
    let seq = store.due("DE", far(), 1).await.expect("due")[0].seq;
    store.delivered(seq).await.expect("delivered");
    for s in serials {
        assert_eq!(holding(s).await, Vec::<String>::new(), "{s}");
    }
    assert_eq!(store.upload("up-1").await.expect("read").expect("upload").status, UploadStatus::Distributed);
}

/// Audit records, product versions, withdrawals and recalls cannot be changed or removed, even by
/// SQL that goes around the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_refuses_to_change_what_is_irreversible() {
    let Some((url, schema)) = fresh_schema("hubconf", "the irreversible schema case") else { return };
    let store = open_at(&url, &schema);
    let de = market("DE");
    let uow = HubUnitOfWork {
        product_versions: vec![ProductVersionRecord {
            version: 1,
            master: ProductMaster {
                product_code: gtin(),
                name: "Examplomab".into(),
                common_name: "examplomab".into(),
                form: "TABLET".into(),
                strength: "10 mg".into(),
                pack_type: "BLISTER".into(),
                pack_size: "30".into(),
                markets: Vec::new(),
            },
            created_at: Timestamp::from_unix_millis(0),
        }],
        products: vec![ProductWrite {
            product: HubProductRecord {
                product_code: gtin(),
                owner: "obp-1".into(),
                current_version: 1,
                withdrawn: vec![de],
                created_at: Timestamp::from_unix_millis(0),
            },
            expected_version: None,
        }],
        batches: vec![HubBatchRecord {
            product_code: gtin(),
            batch: Batch::new("LOT1").expect("batch"),
            product_version: 1,
            expiry: Expiry::parse("271231", Date::new(2026, 1, 1).expect("date")).expect("expiry"),
            markets: vec![de],
            recalled: vec![de],
        }],
        audit: vec![hub_entry("product", "GTIN/09501101530003")],
        ..HubUnitOfWork::default()
    };
    store.commit(uow).await.expect("commits");
    let c = sql(&url, &schema).await;
    for stmt in [
        "UPDATE audit SET result = '{\"forged\":true}'",
        "DELETE FROM audit",
        "TRUNCATE audit",
        "UPDATE product_versions SET name = 'Forged'",
        "DELETE FROM product_versions",
        "TRUNCATE product_versions",
        "UPDATE product_withdrawals SET market = 'FR'",
        "DELETE FROM product_withdrawals",
        "UPDATE batch_recalls SET market = 'FR'",
        "DELETE FROM batch_recalls",
    ] {
        assert!(c.batch_execute(stmt).await.is_err(), "{stmt} was allowed");
    }
    assert_eq!(verify_audit(&store).await, 1);
}

/// A closed hub store reopens on its schema, where the audit chain continues and still verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_hub_store_reopens_and_its_audit_chain_continues() {
    let Some((url, schema)) = fresh_schema("hubconf", "the reopen case") else { return };
    let store = open_at(&url, &schema);
    for op in ["a", "b"] {
        store
            .commit(HubUnitOfWork { audit: vec![hub_entry(op, "")], ..HubUnitOfWork::default() })
            .await
            .expect("commits");
    }
    store.close().await;
    let err = store.commit(HubUnitOfWork::default()).await.expect_err("closed");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    drop(store);
    let store = PgHubStore::open(PgHubOptions { migrate: false, ..options(&url, &schema) }).expect("reopens");
    let done = store
        .commit(HubUnitOfWork { audit: vec![hub_entry("c", "")], ..HubUnitOfWork::default() })
        .await
        .expect("commits");
    assert_eq!(done.audit_seqs, [3]);
    assert_eq!(verify_audit(&store).await, 3);
    assert_eq!(PgHubStore::schema_version(), openmvs_store_pg::hub::schema::LATEST);
}

/// A national system's schema is refused as the hub's and left as it was; a schema the hub never
/// migrated is refused at open when migrating is not asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_national_schema_is_not_taken_for_the_hub() {
    let Some((url, schema)) = fresh_schema("hubconf", "the wrong schema case") else { return };
    let national = PgStore::open(PgOptions {
        url: url.clone(),
        schema: Some(schema.clone()),
        signing_key: key(),
        clock: Arc::new(FixedClock),
        on_group: None,
        migrate: true,
        pool_size: 1,
        checkpoints: openmvs_store::CheckpointOptions::default(),
    })
    .expect("national store opens");
    national.close().await;
    drop(national);
    let err = openmvs_store_pg::hub::migrate(&url, Some(&schema), FixedClock.now()).expect_err("refused");
    assert!(matches!(err, StoreError::Unavailable(ref m) if m.contains("national")), "{err}");
    assert!(PgHubStore::open(options(&url, &schema)).is_err());
    let c = sql(&url, &schema).await;
    let hub_tables: i64 = c
        .query_one(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() \
             AND table_name IN ('hub_schema_migrations', 'obps', 'serial_digests')",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(hub_tables, 0, "nothing of the hub was created");

    let Some((url, empty)) = fresh_schema("hubconf", "the unmigrated schema case") else { return };
    let err =
        PgHubStore::open(PgHubOptions { migrate: false, ..options(&url, &empty) }).err().expect("refused");
    assert!(matches!(err, StoreError::Unavailable(ref m) if m.contains("migrate")), "{err}");
    assert_eq!(
        openmvs_store_pg::hub::migrate(&url, Some(&empty), FixedClock.now()).expect("migrates"),
        [1, 2]
    );
    assert!(
        openmvs_store_pg::hub::migrate(&url, Some(&empty), FixedClock.now()).expect("migrates").is_empty()
    );
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
            tokio::time::sleep(std::time::Duration::from_millis(15)).await;
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
