//! Ids the service hands out: time-ordered, so listing by id lists by creation, and random in the
//! rest, so they cannot be guessed.

use openmvs_core::time::Timestamp;

/// 64 random bits, for the random part of an id made elsewhere (an alert thread's entries).
pub fn random_u64() -> u64 {
    openmvs_store::entropy::random_u64()
}

/// A new id such as `ALR-0193a4c2e1f0-9f1c2b7d5e3a4c10`: prefix, 12 hex digits of milliseconds,
/// 16 hex digits of randomness.
pub fn new_id(prefix: &str, now: Timestamp) -> String {
    let ms = now.unix_millis().max(0) as u64 & 0xffff_ffff_ffff;
    format!("{prefix}-{ms:012x}-{:016x}", random_u64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_differ_within_a_millisecond() {
        let a = new_id("ALR", Timestamp::from_unix_millis(1000));
        let b = new_id("ALR", Timestamp::from_unix_millis(1001));
        let c = new_id("ALR", Timestamp::from_unix_millis(1001));
        assert!(a < b && b != c);
        assert_eq!(a.len(), "ALR-".len() + 12 + 1 + 16);
    }
}
