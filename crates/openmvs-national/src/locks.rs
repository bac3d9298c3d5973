//! Requests on one pack take turns inside a node.
//!
//! Every change of a pack is optimistic: read, decide, commit with the version read, and read
//! again if the version moved on. Many concurrent requests on one pack would then mostly conflict
//! with each other (only one per group commit can win) and could run out of attempts. So inside a
//! node they queue on a lock striped by pack; across nodes the versions still decide, and at most
//! one request per node races for a pack at a time.

use std::hash::{DefaultHasher, Hash, Hasher};

use openmvs_core::ids::{ProductCode, Serial};
use tokio::sync::{Mutex, MutexGuard};

/// Stripes: two packs share one with this small a chance, and then only take turns.
const STRIPES: usize = 4096;

/// The striped locks.
pub(crate) struct PackLocks(Vec<Mutex<()>>);

impl PackLocks {
    pub(crate) fn new() -> PackLocks {
        PackLocks((0..STRIPES).map(|_| Mutex::new(())).collect())
    }

    /// Waits for the turn of this pack.
    pub(crate) async fn lock(&self, product_code: &ProductCode, serial: &Serial) -> MutexGuard<'_, ()> {
        let mut h = DefaultHasher::new();
        product_code.as_str().hash(&mut h);
        serial.as_str().hash(&mut h);
        self.0[(h.finish() as usize) % STRIPES].lock().await
    }
}
