//! The in-memory storage engine: every port of a national system ([`MemStore`]) and of the hub
//! ([`MemHubStore`]) over `BTreeMap`s under one lock, for fast tests and the simulation.
//!
//! It keeps the engines' contract, not their durability: a commit applies its unit of work
//! atomically (each table keeps an undo log, and a refused unit is put back row by row), refuses
//! it with exactly the conflicts the ports document, seals its audit entries into per-market hash
//! chains and signs due tails with `openmvs_audit::Chains` under the same [`CheckpointOptions`]
//! policy as the other engines' group commit, and resolves at once. It is deterministic: it starts no thread and no timer,
//! draws no random number and reads the time only from the [`Clock`] it is given, so a test's
//! fake clock decides everything time decides. Because there is no timer, a market's unsigned
//! tail that is due by time is signed at the next write, when [`MemStore::sign_due`] is called,
//! or, given a `CheckpointTimer::Ticked`, when its ticker ticks (as the other engines' writers
//! are woken by it); [`MemStore::close`] signs every tail, as the other engines do when they stop.

mod console;
mod hub;
mod national;
mod outbox;
mod table;
mod trail;

use std::sync::{Arc, Mutex, MutexGuard, Weak};

use ed25519_dalek::SigningKey;
use openmvs_core::time::Clock;
use openmvs_store::{BoxFuture, CheckpointOptions, CheckpointTimer, StoreError, StoreResult};

pub use hub::MemHubStore;
pub use national::MemStore;

use crate::outbox::Outbox;
use crate::table::Journal;
use crate::trail::Trail;

/// What an in-memory store needs.
pub struct Options {
    /// The key that signs audit checkpoints.
    pub signing_key: SigningKey,
    /// The clock for checkpoint times, outbox scheduling and inbox records.
    pub clock: Arc<dyn Clock>,
    /// When audit checkpoints are signed, and who hears of each.
    pub checkpoints: CheckpointOptions,
}

/// The state of one system: tables with their undo logs, the outbox and the audit trail.
trait State: Journal + Default + Send {
    fn trail(&mut self) -> &mut Trail;
    fn outbox(&self) -> &Outbox;
    fn outbox_mut(&mut self) -> &mut Outbox;
}

struct Inner<S> {
    state: S,
    closed: bool,
}

/// The lock, the clock and the signing policy around a state: every read and write goes through
/// it, so each sees and leaves a whole state.
struct Engine<S> {
    inner: Mutex<Inner<S>>,
    key: SigningKey,
    clock: Arc<dyn Clock>,
    checkpoints: CheckpointOptions,
}

impl<S: State + 'static> Engine<S> {
    /// An empty engine; with a [`CheckpointTimer::Ticked`], each tick signs what is due as
    /// [`Engine::sign`] does, on the ticking task.
    fn new(opts: Options) -> Arc<Engine<S>> {
        let engine = Arc::new(Engine {
            inner: Mutex::new(Inner { state: S::default(), closed: false }),
            key: opts.signing_key,
            clock: opts.clock,
            checkpoints: opts.checkpoints,
        });
        if let CheckpointTimer::Ticked(ticker) = &engine.checkpoints.timer {
            let weak: Weak<Engine<S>> = Arc::downgrade(&engine);
            ticker.attach(Box::new(move || {
                weak.upgrade().map(|e| -> BoxFuture<'static, ()> {
                    e.sign(false, false);
                    Box::pin(std::future::ready(()))
                })
            }));
        }
        engine
    }

    fn lock(&self) -> MutexGuard<'_, Inner<S>> {
        self.inner.lock().unwrap_or_else(|poisoned| {
            // A write panicked half-way: what it wrote is put back before anyone reads.
            let mut g = poisoned.into_inner();
            g.state.undo();
            self.inner.clear_poison();
            g
        })
    }

    /// Reads from the current state.
    fn read<T>(&self, f: impl FnOnce(&S) -> StoreResult<T>) -> StoreResult<T> {
        f(&self.lock().state)
    }

    /// Applies `f` at the clock's time, all or nothing, and signs the checkpoints then due; the
    /// sink hears of them before this returns. Refused once the store is closed.
    fn write<T>(&self, f: impl FnOnce(&mut S, i64) -> StoreResult<T>) -> StoreResult<T> {
        let (r, signed) = {
            let mut g = self.lock();
            if g.closed {
                return Err(StoreError::Unavailable("the store is closed".into()));
            }
            let now = self.clock.now().unix_millis();
            match f(&mut g.state, now) {
                Ok(v) => {
                    let signed = g.state.trail().sign(&self.checkpoints, &self.key, now, false);
                    g.state.keep();
                    (Ok(v), signed)
                }
                Err(e) => {
                    g.state.undo();
                    (Err(e), Vec::new())
                }
            }
        };
        self.checkpoints.committed(&signed);
        r
    }

    /// [`Engine::read`] as a future that is ready at once.
    fn reading<T: Send + 'static>(
        &self,
        f: impl FnOnce(&S) -> StoreResult<T>,
    ) -> BoxFuture<'_, StoreResult<T>> {
        Box::pin(std::future::ready(self.read(f)))
    }

    /// [`Engine::write`] as a future that is ready at once.
    fn writing<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut S, i64) -> StoreResult<T>,
    ) -> BoxFuture<'_, StoreResult<T>> {
        Box::pin(std::future::ready(self.write(f)))
    }

    /// Signs the checkpoints due at the clock's time (every unsigned tail when `all`), and
    /// closes the store when `close`.
    fn sign(&self, all: bool, close: bool) {
        let signed = {
            let mut g = self.lock();
            let now = self.clock.now().unix_millis();
            let signed = g.state.trail().sign(&self.checkpoints, &self.key, now, all);
            g.state.keep();
            g.closed |= close;
            signed
        };
        self.checkpoints.committed(&signed);
    }
}

/// The conflict of a record that must be new.
fn exists(what: impl Into<String>) -> StoreError {
    StoreError::Conflict(openmvs_store::Conflict::Exists(what.into()))
}

/// The alerts not closed among `statuses` (one per alert), per status, as the SQL engines count
/// them ([`openmvs_store::decode::OPEN_ALERT_STATUSES`], each listed).
pub(crate) fn open_alert_counts(
    statuses: impl Iterator<Item = openmvs_core::alert::AlertStatus>,
) -> Vec<(openmvs_core::alert::AlertStatus, u64)> {
    let mut out: Vec<(openmvs_core::alert::AlertStatus, u64)> =
        openmvs_store::decode::OPEN_ALERT_STATUSES.iter().map(|s| (*s, 0)).collect();
    for status in statuses {
        if let Some(slot) = out.iter_mut().find(|(s, _)| *s == status) {
            slot.1 += 1;
        }
    }
    out
}
