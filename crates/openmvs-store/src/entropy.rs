//! The random bits in the ids the services hand out (alerts, messages, uploads, thread entries):
//! from the operating system, or, on a thread that runs a deterministic simulation, from the
//! simulation's seed, so that the same seed makes the same ids and the same run.
//!
//! Only the ids' unguessable part comes from here; nothing secret does (keys, salts and token
//! secrets read the operating system's generator directly).

use std::cell::Cell;

thread_local! {
    /// The SplitMix64 state of this thread's seeded ids, if a simulation seeded them.
    static SEEDED: Cell<Option<u64>> = const { Cell::new(None) };
}

/// 64 random bits for the random part of an id.
pub fn random_u64() -> u64 {
    if let Some(state) = SEEDED.get() {
        let state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        SEEDED.set(Some(state));
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        return z ^ (z >> 31);
    }
    let mut r = [0u8; 8];
    getrandom::fill(&mut r).expect("the operating system's random number generator failed");
    u64::from_be_bytes(r)
}

/// Ids made on this thread from now on draw from `seed` (`None`: from the operating system
/// again). A deterministic simulation runs on one thread and seeds it before it starts.
pub fn seed_this_thread(seed: Option<u64>) {
    SEEDED.set(seed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seeded_thread_draws_the_same_ids_again_and_other_threads_do_not_notice() {
        seed_this_thread(Some(7));
        let a: Vec<u64> = (0..3).map(|_| random_u64()).collect();
        seed_this_thread(Some(7));
        let b: Vec<u64> = (0..3).map(|_| random_u64()).collect();
        assert_eq!(a, b);
        let other = std::thread::spawn(|| (random_u64(), random_u64())).join().expect("the thread");
        assert_ne!(other.0, other.1);
        seed_this_thread(None);
        assert_ne!(random_u64(), random_u64());
    }
}
