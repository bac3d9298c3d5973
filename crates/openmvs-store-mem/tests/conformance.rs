//! The storage conformance suites, national and hub, on the in-memory engine, each case on a
//! fresh store; and the checkpoint case, with the test stepping the engine's signing by time as a
//! timer would.

use std::sync::{Arc, Weak};

use openmvs_core::time::Clock;
use openmvs_store::conformance::fixed_clock;
use openmvs_store::{CheckpointOptions, Store, checkpoint_conformance_tests, conformance_tests};
use openmvs_store_mem::{MemStore, Options};

fn key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[42; 32])
}

fn options(clock: Arc<dyn Clock>, checkpoints: CheckpointOptions) -> Options {
    Options { signing_key: key(), clock, checkpoints }
}

fn open() -> Arc<MemStore> {
    Arc::new(MemStore::new(options(fixed_clock(), CheckpointOptions::default())))
}

/// A store whose due checkpoints a task signs every few milliseconds while the store lives: the
/// timer the engine leaves to its user.
fn open_ticking(clock: Arc<dyn Clock>, checkpoints: CheckpointOptions) -> Arc<MemStore> {
    let store = Arc::new(MemStore::new(options(clock, checkpoints)));
    let weak: Weak<MemStore> = Arc::downgrade(&store);
    tokio::spawn(async move {
        while let Some(store) = weak.upgrade() {
            store.sign_due();
            drop(store);
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    });
    store
}

conformance_tests!(open(), key().verifying_key());
checkpoint_conformance_tests!(
    |clock, checkpoints| Some(open_ticking(clock, checkpoints) as Arc<dyn Store>),
    key().verifying_key()
);

/// The hub's suite, in a module of its own: some cases share their names with the national ones.
mod hub {
    use std::sync::Arc;

    use openmvs_store::conformance::fixed_clock;
    use openmvs_store::{CheckpointOptions, hub_conformance_tests};
    use openmvs_store_mem::MemHubStore;

    use super::{key, options};

    fn open() -> Arc<MemHubStore> {
        Arc::new(MemHubStore::new(options(fixed_clock(), CheckpointOptions::default())))
    }

    hub_conformance_tests!(open(), key().verifying_key());
}
