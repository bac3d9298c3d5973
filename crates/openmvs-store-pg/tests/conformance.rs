//! The storage conformance suite on the PostgreSQL engine, each case in a fresh schema of the
//! database named by `OPENMVS_TEST_DATABASE_URL` (skipped, saying so, when it is not set).

use std::sync::Arc;

use openmvs_core::time::{Clock, Timestamp};
use openmvs_store::{CheckpointOptions, Store, checkpoint_conformance_tests, conformance_tests};
use openmvs_store_pg::testing::fresh_schema;
use openmvs_store_pg::{PgOptions, PgStore};

struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_millis(1_800_000_000_000)
    }
}

fn key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[42; 32])
}

fn open() -> Option<Arc<dyn Store>> {
    open_with(Arc::new(FixedClock), CheckpointOptions::default())
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
        checkpoints,
    })
    .expect("store opens");
    Some(Arc::new(store))
}

conformance_tests!(optional open(), key().verifying_key());
checkpoint_conformance_tests!(open_with, key().verifying_key());
