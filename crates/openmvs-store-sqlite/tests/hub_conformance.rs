//! The hub's storage conformance suite on the SQLite engine, each case on a fresh database file,
//! and the checks only SQL can make: no column and no byte of the file keeps a delivered serial,
//! and the schema refuses to change what is irreversible.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openmvs_audit::{Entry, Verifier};
use openmvs_core::ids::{Batch, Expiry, MarketCode, ProductCode};
use openmvs_core::master_data::ProductMaster;
use openmvs_core::time::{Clock, Date, Timestamp};
use openmvs_store::hub::*;
use openmvs_store::{AuditStore, OutboxMessage, StoreError, hub_conformance_tests};
use openmvs_store_sqlite::hub::{HubOptions, SqliteHubStore};
use openmvs_store_sqlite::{AuditSigner, Options, SqliteStore};

struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_millis(1_800_000_000_000)
    }
}

fn key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[43; 32])
}

fn fresh_path() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "openmvs-hub-conformance-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("hub.db")
}

fn open_at(path: PathBuf) -> Arc<SqliteHubStore> {
    Arc::new(
        SqliteHubStore::open(HubOptions {
            path,
            signer: Arc::new(AuditSigner { key: key() }),
            clock: Arc::new(FixedClock),
            on_group: None,
            checkpoints: openmvs_store::CheckpointOptions::default(),
        })
        .expect("hub store opens"),
    )
}

fn open() -> Arc<SqliteHubStore> {
    open_at(fresh_path())
}

hub_conformance_tests!(open(), key().verifying_key());

/// Everything the SQL checks need: serials sent in one chunk to DE, delivered or not.
async fn upload_one_chunk(store: &SqliteHubStore, serials: &[&str]) {
    let gtin = ProductCode::gtin("09501101530003").expect("gtin");
    let uow = HubUnitOfWork {
        new_upload: Some(NewUpload {
            id: "up-1".into(),
            obp: "obp-1".into(),
            product_code: gtin.clone(),
            batch: Batch::new("LOT1").expect("batch"),
            markets: vec![MarketCode::new("DE").expect("market")],
            created_at: Timestamp::from_unix_millis(0),
        }),
        upload_progress: Some(UploadProgress {
            id: "up-1".into(),
            received: serials.len() as u64,
            chunks: vec![OutboxMessage {
                message_id: "c-1".into(),
                destination: "DE".into(),
                kind: "packs".into(),
                ordering_key: gtin.as_str().into(),
                payload: format!("{{\"serials\":{serials:?}}}"),
            }],
            outcome: Some(UploadOutcome::Validated),
            ..UploadProgress::default()
        }),
        audit: vec![hub_entry("upload")],
        ..HubUnitOfWork::default()
    };
    store.commit(uow).await.expect("commits");
}

fn hub_entry(op: &str) -> Entry {
    Entry {
        market: HUB_AUDIT_MARKET.into(),
        at_millis: 1_800_000_000_000,
        actor: "obp-1".into(),
        role: "OBP".into(),
        operation: op.into(),
        return_code: "OK".into(),
        request: "{}".into(),
        result: "{}".into(),
        ..Entry::default()
    }
}

/// The `(table, column)` pairs of every table whose value contains `needle`.
fn columns_holding(path: &Path, needle: &str) -> Vec<(String, String)> {
    let c = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open");
    let tables: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("tables");
    let mut found = Vec::new();
    for t in tables {
        let cols: Vec<String> = c
            .prepare(&format!("SELECT name FROM pragma_table_info('{t}')"))
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .expect("columns");
        for col in cols {
            let n: i64 = c
                .query_row(
                    &format!("SELECT COUNT(*) FROM \"{t}\" WHERE instr(CAST(\"{col}\" AS BLOB), CAST(?1 AS BLOB)) > 0"),
                    [needle],
                    |r| r.get(0),
                )
                .expect("scan");
            if n > 0 {
                found.push((t.clone(), col));
            }
        }
    }
    found
}

fn file_holds(path: &Path, needle: &str) -> bool {
    let bytes = std::fs::read(path).unwrap_or_default();
    bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Only the outbox row of an undelivered chunk holds its serials; once delivered, no column of any
/// table does, and once the store is closed, no byte of its files does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_column_holds_a_serial_after_delivery() {
    let path = fresh_path();
    let store = open_at(path.clone());
    let serials = ["ZQ9DELIVERED1", "ZQ9DELIVERED2"];
    upload_one_chunk(&store, &serials).await;
    assert_eq!(columns_holding(&path, serials[0]), [("outbox".to_owned(), "payload".to_owned())]);
    let seq = store.due("DE", Timestamp::from_unix_millis(i64::MAX / 2), 1).await.expect("due")[0].seq;
    store.delivered(seq).await.expect("delivered");
    for s in serials {
        assert_eq!(columns_holding(&path, s), Vec::<(String, String)>::new(), "{s}");
    }
    store.close();
    let wal = path.with_extension("db-wal");
    for s in serials {
        assert!(!file_holds(&path, s), "{s} is still in the database file");
        assert!(!file_holds(&wal, s), "{s} is still in the WAL");
    }
}

/// Audit records, product versions, withdrawals and recalls cannot be changed or removed, even by
/// SQL that goes around the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_refuses_to_change_what_is_irreversible() {
    let path = fresh_path();
    let store = open_at(path.clone());
    let gtin = ProductCode::gtin("09501101530003").expect("gtin");
    let de = MarketCode::new("DE").expect("market");
    let uow = HubUnitOfWork {
        product_versions: vec![ProductVersionRecord {
            version: 1,
            master: ProductMaster {
                product_code: gtin.clone(),
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
                product_code: gtin.clone(),
                owner: "obp-1".into(),
                current_version: 1,
                withdrawn: vec![de],
                created_at: Timestamp::from_unix_millis(0),
            },
            expected_version: None,
        }],
        batches: vec![HubBatchRecord {
            product_code: gtin.clone(),
            batch: Batch::new("LOT1").expect("batch"),
            product_version: 1,
            expiry: Expiry::parse("271231", Date::new(2026, 1, 1).expect("date")).expect("expiry"),
            markets: vec![de],
            recalled: vec![de],
        }],
        audit: vec![hub_entry("product")],
        ..HubUnitOfWork::default()
    };
    store.commit(uow).await.expect("commits");
    let c = rusqlite::Connection::open(&path).expect("open");
    c.busy_timeout(std::time::Duration::from_secs(10)).expect("timeout");
    for sql in [
        "UPDATE audit SET result = '{\"forged\":true}'",
        "DELETE FROM audit",
        "UPDATE product_versions SET name = 'Forged'",
        "DELETE FROM product_versions",
        "UPDATE product_withdrawals SET market = 'FR'",
        "DELETE FROM product_withdrawals",
        "UPDATE batch_recalls SET market = 'FR'",
        "DELETE FROM batch_recalls",
    ] {
        assert!(c.execute(sql, []).is_err(), "{sql} was allowed");
    }
}

/// A closed hub database reopens read-only (reads work, writes are refused) and read-write, where
/// its audit chain continues and still verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_hub_store_reopens_and_its_audit_chain_continues() {
    let path = fresh_path();
    let store = open_at(path.clone());
    for op in ["a", "b"] {
        store
            .commit(HubUnitOfWork { audit: vec![hub_entry(op)], ..HubUnitOfWork::default() })
            .await
            .expect("commits");
    }
    store.close();
    drop(store);
    let ro = SqliteHubStore::open_read_only(&path).expect("opens read-only");
    assert_eq!(ro.audit_page(0, 10).await.expect("read").len(), 2);
    let err = ro.commit(HubUnitOfWork::default()).await.expect_err("read-only");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    drop(ro);
    let store = open_at(path.clone());
    let done = store
        .commit(HubUnitOfWork { audit: vec![hub_entry("c")], ..HubUnitOfWork::default() })
        .await
        .expect("commits");
    assert_eq!(done.audit_seqs, [3]);
    let mut v = Verifier::new([key().verifying_key()]);
    for cp in store.checkpoints().await.expect("checkpoints") {
        v.checkpoint(&cp).expect("checkpoint verifies");
    }
    for (_, r) in store.audit_page(0, 10).await.expect("read") {
        v.record(&r).expect("record verifies");
    }
    v.finish().expect("chain verifies");
}

/// A national system's database is refused as the hub's, and left as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_national_database_is_not_opened_as_the_hub() {
    let path = fresh_path();
    let national = SqliteStore::open(Options {
        path: path.clone(),
        signer: Arc::new(AuditSigner { key: key() }),
        clock: Arc::new(FixedClock),
        on_group: None,
        checkpoints: openmvs_store::CheckpointOptions::default(),
    })
    .expect("national store opens");
    national.close();
    drop(national);
    let err = SqliteHubStore::open(HubOptions {
        path: path.clone(),
        signer: Arc::new(AuditSigner { key: key() }),
        clock: Arc::new(FixedClock),
        on_group: None,
        checkpoints: openmvs_store::CheckpointOptions::default(),
    })
    .err()
    .expect("refused");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(SqliteHubStore::open_read_only(&path).is_err());
    assert!(SqliteStore::open_read_only(&path).is_ok(), "the national database is intact");
}
