//! The storage conformance suites, national and hub, on the in-memory engine, each case on a
//! fresh store; the checkpoint case wakes the engine's signing with its ticker, as the other
//! engines' writers are woken.

use std::sync::Arc;

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
    open_with(fixed_clock(), CheckpointOptions::default())
}

fn open_with(clock: Arc<dyn Clock>, checkpoints: CheckpointOptions) -> Arc<MemStore> {
    Arc::new(MemStore::new(options(clock, checkpoints)))
}

conformance_tests!(open(), key().verifying_key());
checkpoint_conformance_tests!(
    |clock, checkpoints| Some(open_with(clock, checkpoints) as Arc<dyn Store>),
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
