//! When an engine signs checkpoints of the audit trail, who hears of each one, and what wakes a
//! writer to sign the tails due by time while no commit comes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use openmvs_audit::{Checkpoint, CheckpointPolicy};

use crate::BoxFuture;

/// A checkpoint is signed once a market has this many records since its last one ...
pub const CHECKPOINT_EVERY_RECORDS: u64 = 1000;
/// ... or once its oldest unsigned record is this old, even if no further request arrives: the
/// engine's writer wakes up by itself to sign it. Records written after the last checkpoint that
/// left the database (see [`CheckpointOptions::on_checkpoint`]) can be cut off without a trace,
/// so this is also the most recent stretch of the trail that verification cannot vouch for.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(2);

/// Called with each checkpoint once the transaction that stored it has committed.
pub type CheckpointSink = Arc<dyn Fn(&Checkpoint) + Send + Sync>;

/// How an engine's writer signs checkpoints of each market's audit chain: by count and by time,
/// whichever comes first.
#[derive(Clone)]
pub struct CheckpointOptions {
    /// Sign after this many records of a market since its last checkpoint.
    pub every_records: u64,
    /// Sign when a market's last checkpoint (or first record) is this old and records wait
    /// unsigned: checked at every commit, and by a timer while no commit comes.
    pub every: Duration,
    /// Told of every checkpoint once it is durable, on the writer's thread or task: it must
    /// return at once (hand the work to another thread). A national system keeps the latest one
    /// outside its database with it, so that verification can catch a trail cut short.
    pub on_checkpoint: Option<CheckpointSink>,
    /// What wakes the writer, while no commit comes, to sign the tails due by time.
    pub timer: CheckpointTimer,
}

impl Default for CheckpointOptions {
    fn default() -> Self {
        CheckpointOptions {
            every_records: CHECKPOINT_EVERY_RECORDS,
            every: CHECKPOINT_EVERY,
            on_checkpoint: None,
            timer: CheckpointTimer::Monotonic,
        }
    }
}

impl CheckpointOptions {
    /// The interval in milliseconds, as the writers compare clock readings.
    pub fn every_millis(&self) -> i64 {
        i64::try_from(self.every.as_millis()).unwrap_or(i64::MAX)
    }

    /// When to sign, as the pure policy the writers apply.
    pub fn policy(&self) -> CheckpointPolicy {
        CheckpointPolicy { every_records: self.every_records, every_millis: self.every_millis() }
    }

    /// Tells the sink, if any, of checkpoints that are now durable.
    pub fn committed(&self, checkpoints: &[Checkpoint]) {
        if let Some(f) = &self.on_checkpoint {
            for cp in checkpoints {
                f(cp);
            }
        }
    }
}

impl std::fmt::Debug for CheckpointOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointOptions")
            .field("every_records", &self.every_records)
            .field("every", &self.every)
            .field("on_checkpoint", &self.on_checkpoint.is_some())
            .field("timer", &self.timer)
            .finish()
    }
}

/// What wakes an engine's writer, while no commit comes, to sign the tails due by time. The
/// time a tail falls due is read from the engine's `Clock` either way; this decides only when
/// the writer looks.
#[derive(Clone, Debug, Default)]
pub enum CheckpointTimer {
    /// A timer of the monotonic clock: the writer waits for work at most until the first tail it
    /// knows of falls due (an engine whose trail other nodes share, at most
    /// [`CheckpointOptions::every`]). What a running node uses. The in-memory engine has no
    /// timer: its user calls `sign_due`.
    #[default]
    Monotonic,
    /// No timer: the writer waits for work alone, and looks for due tails each time the ticker
    /// ticks, as its timer would when it fires. A test moves its fake clock and ticks, and knows
    /// when the writer has looked.
    Ticked(Ticker),
}

/// Wakes one writer as its timer would: a future that resolves once the writer has signed what
/// was due, or `None` when the writer is gone.
pub type Tick = Box<dyn Fn() -> Option<BoxFuture<'static, ()>> + Send + Sync>;

/// The writers a [`CheckpointTimer::Ticked`] wakes: an engine attaches each writer it starts.
#[derive(Clone, Default)]
pub struct Ticker(Arc<Mutex<Vec<Tick>>>);

impl Ticker {
    /// A ticker no writer is attached to yet.
    pub fn new() -> Ticker {
        Ticker::default()
    }

    /// Attaches a writer (an engine does, when it starts one on options with this ticker).
    pub fn attach(&self, tick: Tick) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(tick);
    }

    /// Wakes every writer attached, as its timer would, and resolves once each has signed what was
    /// due; how many were woken (writers that are gone are let go).
    pub async fn tick(&self) -> usize {
        let woken: Vec<BoxFuture<'static, ()>> = {
            let mut ticks = self.0.lock().unwrap_or_else(|p| p.into_inner());
            let mut woken = Vec::new();
            ticks.retain(|tick| match tick() {
                Some(done) => {
                    woken.push(done);
                    true
                }
                None => false,
            });
            woken
        };
        let n = woken.len();
        for done in woken {
            done.await;
        }
        n
    }
}

impl std::fmt::Debug for Ticker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.lock().unwrap_or_else(|p| p.into_inner()).len();
        f.debug_struct("Ticker").field("writers", &n).finish()
    }
}
