//! The storage conformance suite on the SQLite engine, each case on a fresh database file.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openmvs_core::time::Clock;
use openmvs_store::conformance::fixed_clock;
use openmvs_store::{CheckpointOptions, Store, checkpoint_conformance_tests, conformance_tests};
use openmvs_store_sqlite::{AuditSigner, Options, SqliteStore};

fn key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[42; 32])
}

fn open() -> Arc<SqliteStore> {
    open_with(fixed_clock(), CheckpointOptions::default())
}

fn open_with(clock: Arc<dyn Clock>, checkpoints: CheckpointOptions) -> Arc<SqliteStore> {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "openmvs-conformance-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    Arc::new(
        SqliteStore::open(Options {
            path: dir.join("national.db"),
            signer: Arc::new(AuditSigner { key: key() }),
            clock,
            on_group: None,
            checkpoints,
        })
        .expect("store opens"),
    )
}

conformance_tests!(open(), key().verifying_key());
checkpoint_conformance_tests!(
    |clock, checkpoints| Some(open_with(clock, checkpoints) as Arc<dyn Store>),
    key().verifying_key()
);

fn entry(actor: &str, n: usize) -> openmvs_audit::Entry {
    openmvs_audit::Entry {
        market: "DE".into(),
        at_millis: 1_800_000_000_000,
        actor: actor.into(),
        role: "NMVO".into(),
        location: "office".into(),
        operation: "client-disable".into(),
        subject: format!("client/cl_{n}"),
        return_code: "NMVS_SUCCESS".into(),
        request: "{}".into(),
        result: "{}".into(),
    }
}

/// Two stores on one file, as a running node and an `openmvs admin` command on its data
/// directory: each appends to the trail in turn, and each follows what the other appended, so
/// every record is accepted and the whole trail verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_appending_to_one_trail_in_turn_keep_one_chain() {
    use openmvs_store::{AuditStore, Committer, UnitOfWork};
    let node = open();
    let admin = Arc::new(
        SqliteStore::open(Options {
            path: node.path().to_owned(),
            signer: Arc::new(AuditSigner { key: key() }),
            clock: fixed_clock(),
            on_group: None,
            checkpoints: CheckpointOptions::default(),
        })
        .expect("a second store opens"),
    );
    for n in 0..6 {
        let (store, actor) = if n % 2 == 0 { (&node, "node") } else { (&admin, "admin") };
        let uow = UnitOfWork { audit: vec![entry(actor, n)], ..UnitOfWork::default() };
        store.commit(uow).await.unwrap_or_else(|e| panic!("record {n} of {actor}: {e}"));
    }
    admin.close();
    node.close();
    let mut v = openmvs_audit::Verifier::new([key().verifying_key()]);
    for cp in node.checkpoints().await.expect("checkpoints") {
        v.checkpoint(&cp).expect("a checkpoint verifies");
    }
    let page = node.audit_page(0, 100).await.expect("the trail");
    assert_eq!(page.len(), 6);
    for (_, r) in &page {
        v.record(r).expect("every record chains to the one before");
    }
    v.finish().expect("the trail verifies");
}

/// A backup taken while the store commits holds what was committed before it; a restore checks
/// the file first (a file that is no database, or a hub's database for a national system, is
/// refused with the database there untouched) and refuses a database a node is serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_holds_what_was_committed_and_a_restore_refuses_what_it_should() {
    use openmvs_store::{AuditStore, Committer, Heartbeat, UnitOfWork};
    use openmvs_store_sqlite::backup;
    let store = open();
    let db = store.path().to_owned();
    let dir = db.parent().expect("a directory").to_owned();
    store.commit(UnitOfWork { audit: vec![entry("a", 1)], ..UnitOfWork::default() }).await.expect("commits");
    let beat = Heartbeat { node_id: "node-a".into(), at: fixed_clock().now() };
    store.commit(UnitOfWork { heartbeat: Some(beat), ..UnitOfWork::default() }).await.expect("commits");
    let file = dir.join("copy.db");
    let info = backup::backup(&db, &file).expect("a backup");
    assert_eq!((info.kind, info.audit_records), ("national", 1));
    store.commit(UnitOfWork { audit: vec![entry("a", 2)], ..UnitOfWork::default() }).await.expect("commits");
    assert!(backup::backup(&db, &file).is_err(), "an existing file is not overwritten");

    let now = fixed_clock().now().unix_millis();
    let live = std::time::Duration::from_secs(10);
    // Over the served database: refused, it keeps its two records.
    let e = backup::restore(&file, &db, "national", true, now + 1_000, live).expect_err("refused");
    assert!(e.to_string().contains("heartbeat"), "{e}");
    assert!(backup::restore(&file, &db, "national", false, now + 60_000, live).is_err(), "needs --replace");
    assert!(
        backup::restore(&file, &db, "hub", true, now + 60_000, live)
            .unwrap_err()
            .to_string()
            .contains("not a hub")
    );
    let junk = dir.join("junk.db");
    std::fs::write(&junk, b"not a database at all, not even close to one").expect("write");
    assert!(backup::restore(&junk, &db, "national", true, now + 60_000, live).is_err());
    assert_eq!(store.audit_page(0, 10).await.expect("reads").len(), 2, "nothing changed");
    store.close();
    // Into a new place: the backup's one record.
    let restored = dir.join("restored").join("national.db");
    std::fs::create_dir_all(restored.parent().expect("dir")).expect("dir");
    backup::restore(&file, &restored, "national", false, now, live).expect("restores");
    let back = SqliteStore::open_read_only(&restored).expect("opens");
    assert_eq!(back.audit_page(0, 10).await.expect("reads").len(), 1);
}
