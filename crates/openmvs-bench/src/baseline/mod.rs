//! What a database engine itself does on this machine, measured next to OpenMVS on the same data
//! over the engine's own client library: the physical limits the suite compares OpenMVS with.

pub mod pg;
pub mod sqlite;

/// Rows per transaction of the batched inserts.
pub const BATCH: usize = 10_000;

/// What a database itself does on a machine, per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Baseline {
    /// Point reads of a pack by primary key, one at a time.
    pub point_reads: f64,
    /// Rows inserted in transactions of 10,000 rows, durably.
    pub batched_inserts: f64,
    /// Transactions of one row each, each durable before the next.
    pub single_commits: f64,
}
