//! Alerts counted per alert code, lock-free: what a service raised (a national system) or
//! received (the hub) since the process started, for the `_total` counters on `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

use openmvs_core::return_code::AlertCode;

/// One count per [`AlertCode`], each only ever going up.
#[derive(Debug)]
pub struct AlertTally([AtomicU64; AlertCode::ALL.len()]);

impl Default for AlertTally {
    fn default() -> Self {
        AlertTally::new()
    }
}

impl AlertTally {
    /// Every count at 0.
    pub fn new() -> AlertTally {
        AlertTally(std::array::from_fn(|_| AtomicU64::new(0)))
    }

    /// Counts one alert of `code`.
    pub fn add(&self, code: AlertCode) {
        if let Some(i) = AlertCode::ALL.iter().position(|c| *c == code) {
            self.0[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Every code with its count, in [`AlertCode::ALL`] order, 0 included.
    pub fn counts(&self) -> Vec<(AlertCode, u64)> {
        AlertCode::ALL.iter().zip(&self.0).map(|(c, n)| (*c, n.load(Ordering::Relaxed))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_code_counts_apart_and_every_code_is_listed() {
        let t = AlertTally::new();
        t.add(AlertCode::A3);
        t.add(AlertCode::A3);
        t.add(AlertCode::A24);
        let counts = t.counts();
        assert_eq!(counts.len(), AlertCode::ALL.len());
        let of = |code| counts.iter().find(|(c, _)| *c == code).map(|(_, n)| *n);
        assert_eq!((of(AlertCode::A3), of(AlertCode::A24), of(AlertCode::A2)), (Some(2), Some(1), Some(0)));
    }
}
