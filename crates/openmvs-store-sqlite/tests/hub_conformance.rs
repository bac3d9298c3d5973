//! The hub's storage conformance suite on the SQLite engine, each case on a fresh database file,
//! and the one check only this engine can make: no byte of the files keeps a delivered serial.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openmvs_core::ids::{Batch, MarketCode, ProductCode};
use openmvs_core::time::Timestamp;
use openmvs_store::conformance::fixed_clock;
use openmvs_store::conformance_hub::{HubPlace, hub_entry};
use openmvs_store::hub::*;
use openmvs_store::{
    AuditStore, BoxFuture, OutboxMessage, StoreError, StoreResult, hub_conformance_tests, hub_place_tests,
};
use openmvs_store_sqlite::hub::{HubOptions, SqliteHubStore};
use openmvs_store_sqlite::{AuditSigner, Options, SqliteStore};

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

fn hub_options(path: PathBuf) -> HubOptions {
    HubOptions {
        path,
        signer: Arc::new(AuditSigner { key: key() }),
        clock: fixed_clock(),
        on_group: None,
        checkpoints: openmvs_store::CheckpointOptions::default(),
    }
}

fn open_at(path: PathBuf) -> Arc<SqliteHubStore> {
    Arc::new(SqliteHubStore::open(hub_options(path)).expect("hub store opens"))
}

fn open() -> Arc<SqliteHubStore> {
    open_at(fresh_path())
}

hub_conformance_tests!(open(), key().verifying_key());

/// A fresh database file.
struct Place(PathBuf);

impl HubPlace for Place {
    type Store = SqliteHubStore;

    fn open(&self) -> StoreResult<Arc<SqliteHubStore>> {
        SqliteHubStore::open(hub_options(self.0.clone())).map(Arc::new)
    }

    fn close(store: &SqliteHubStore) -> BoxFuture<'_, ()> {
        Box::pin(async move { store.close() })
    }

    fn open_national(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {
            let national = SqliteStore::open(Options {
                path: self.0.clone(),
                signer: Arc::new(AuditSigner { key: key() }),
                clock: fixed_clock(),
                on_group: None,
                checkpoints: openmvs_store::CheckpointOptions::default(),
            })
            .expect("national store opens");
            national.close();
        })
    }

    fn national_intact(&self) -> BoxFuture<'_, bool> {
        Box::pin(async {
            SqliteHubStore::open_read_only(&self.0).is_err() && SqliteStore::open_read_only(&self.0).is_ok()
        })
    }

    fn tables_holding<'a>(&'a self, needle: &'a str) -> BoxFuture<'a, Vec<String>> {
        Box::pin(async move {
            let mut tables: Vec<String> =
                columns_holding(&self.0, needle).into_iter().map(|(t, _)| t).collect();
            tables.dedup();
            tables
        })
    }

    fn refused<'a>(&'a self, sql: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let c = rusqlite::Connection::open(&self.0).expect("open");
            c.busy_timeout(std::time::Duration::from_secs(10)).expect("timeout");
            c.execute(sql, []).is_err()
        })
    }

    /// A closed hub database reopens read-only: reads work, writes are refused.
    fn after_close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {
            let ro = SqliteHubStore::open_read_only(&self.0).expect("opens read-only");
            assert!(!ro.audit_page(0, 10).await.expect("read").is_empty());
            let err = ro.commit(HubUnitOfWork::default()).await.expect_err("read-only");
            assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
        })
    }
}

hub_place_tests!(Some(Place(fresh_path())), key().verifying_key());

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
            received: serials.len() as u64,
            chunks: vec![OutboxMessage {
                message_id: "c-1".into(),
                destination: "DE".into(),
                kind: "packs".into(),
                ordering_key: gtin.as_str().into(),
                payload: format!("{{\"serials\":{serials:?}}}"),
            }],
            outcome: Some(UploadOutcome::Validated),
            ..UploadProgress::new("up-1".into())
        }),
        audit: vec![hub_entry("upload", "")],
        ..HubUnitOfWork::default()
    };
    store.commit(uow).await.expect("commits");
}

/// The `(table, column)` pairs of every table whose value contains `needle`, in table order.
fn columns_holding(path: &Path, needle: &str) -> Vec<(String, String)> {
    let c = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open");
    let tables: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
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

/// Once a delivered chunk's store is closed, no byte of its files holds the chunk's serials (the
/// rows are checked by the shared suite).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_byte_of_the_files_holds_a_serial_after_delivery() {
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
