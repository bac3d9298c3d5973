//! The storage conformance suite on the SQLite engine, each case on a fresh database file.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openmvs_core::time::{Clock, Timestamp};
use openmvs_store::{CheckpointOptions, Store, checkpoint_conformance_tests, conformance_tests};
use openmvs_store_sqlite::{AuditSigner, Options, SqliteStore};

struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_millis(1_800_000_000_000)
    }
}

fn key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[42; 32])
}

fn open() -> Arc<SqliteStore> {
    open_with(Arc::new(FixedClock), CheckpointOptions::default())
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
