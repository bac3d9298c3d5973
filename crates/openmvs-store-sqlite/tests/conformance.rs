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
