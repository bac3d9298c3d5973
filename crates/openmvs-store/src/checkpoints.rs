//! When an engine signs checkpoints of the audit trail, and who hears of each one.

use std::sync::Arc;
use std::time::Duration;

use openmvs_audit::{Checkpoint, CheckpointPolicy};

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
}

impl Default for CheckpointOptions {
    fn default() -> Self {
        CheckpointOptions {
            every_records: CHECKPOINT_EVERY_RECORDS,
            every: CHECKPOINT_EVERY,
            on_checkpoint: None,
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
            .finish()
    }
}
