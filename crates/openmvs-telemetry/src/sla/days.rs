//! A lock-free ring of per-day counters: the storage behind the monthly and 30-day latency figures.

use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};

/// Days kept. 64 covers the longest span ever read: the whole previous month (up to 31 days)
/// plus the current month up to today (up to 31 days).
pub(crate) const DAY_SLOTS: usize = 64;

const TAG_SHIFT: u32 = 48;
const TAG_MASK: u64 = 0xFFFF;
const VALUE_MASK: u64 = (1 << TAG_SHIFT) - 1;

/// The day's tag: its number modulo 2^16, so a word can tell which of the days sharing its slot
/// it counts (they are 64 days apart, while tags repeat every 179 years).
fn tag_of(day: i64) -> u64 {
    (day as u64) & TAG_MASK
}

/// A count for one day, with the day's tag in the top 16 bits and the value in the low 48.
///
/// Keeping the tag in the same word as the value is what makes a day roll over without a lock:
/// the first observation of a new day swaps the whole word (new tag, fresh value) in one
/// compare-exchange, and every later observation of that day is a plain `fetch_add`. 48 bits hold
/// 2.8 * 10^14: requests per day, or microseconds of latency per day once each observation is
/// capped at an hour (see [`MAX_OBSERVED_MICROS`]).
#[derive(Debug, Default)]
struct DayWord(AtomicU64);

impl DayWord {
    fn add(&self, day: i64, n: u64) {
        if n == 0 {
            return;
        }
        let tag = tag_of(day);
        let mut current = self.0.load(Ordering::Relaxed);
        loop {
            let current_tag = current >> TAG_SHIFT;
            if current_tag == tag {
                // If the slot rolls over to a day 64 days later between the load and this add,
                // the observation lands in that day; that needs requests stamped 64 days apart
                // arriving together, i.e. a clock jump, and costs one misplaced observation.
                self.0.fetch_add(n, Ordering::Relaxed);
                return;
            }
            // The signed distance from the word's day to ours, modulo 2^16.
            let ahead = tag.wrapping_sub(current_tag) as u16 as i16;
            if ahead < 0 && current & VALUE_MASK != 0 {
                // The slot already counts a later day: this day has left the ring.
                return;
            }
            match self.0.compare_exchange_weak(
                current,
                (tag << TAG_SHIFT) | n,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    fn get(&self, day: i64) -> u64 {
        let word = self.0.load(Ordering::Relaxed);
        if word >> TAG_SHIFT == tag_of(day) { word & VALUE_MASK } else { 0 }
    }
}

/// Longest latency added to the daily sum: one hour. A request cannot take that long behind any
/// HTTP timeout, and the cap keeps one absurd value (a clock jump) from overflowing a day's sum.
pub(crate) const MAX_OBSERVED_MICROS: u64 = 3_600_000_000;

/// The DR Art 35 threshold: a request counts as fast when answered in strictly less than this.
pub(crate) const THRESHOLD_MICROS: u64 = 300_000;

/// What one operation class did on one day.
#[derive(Debug, Default)]
struct DaySlot {
    count: DayWord,
    under: DayWord,
    sum_micros: DayWord,
    buckets: [DayWord; BUCKETS],
}

/// The upper bounds (exclusive) of the latency buckets each day counts requests in, in
/// microseconds; a last bucket counts everything slower. 300 ms is a bound, so the buckets below
/// it hold exactly the requests under 300 ms.
pub const DAY_LATENCY_BOUNDS_MICROS: [u64; 27] = [
    500, 1_000, 1_500, 2_000, 3_000, 4_000, 5_000, 7_500, 10_000, 15_000, 20_000, 30_000, 50_000, 75_000,
    100_000, 150_000, 200_000, 250_000, 300_000, 400_000, 500_000, 750_000, 1_000_000, 2_000_000, 5_000_000,
    10_000_000, 30_000_000,
];

/// Latency buckets per day: one per bound and one for slower requests.
pub const BUCKETS: usize = DAY_LATENCY_BOUNDS_MICROS.len() + 1;

/// The bucket of a latency.
fn bucket_of(micros: u64) -> usize {
    DAY_LATENCY_BOUNDS_MICROS.partition_point(|&b| b <= micros)
}

/// Totals over a range of days.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) count: u64,
    pub(crate) under_300ms: u64,
    pub(crate) sum_micros: u64,
}

/// The last [`DAY_SLOTS`] days of one operation class.
#[derive(Debug)]
pub(crate) struct DayRing {
    slots: Box<[DaySlot]>,
}

impl DayRing {
    pub(crate) fn new() -> DayRing {
        DayRing { slots: (0..DAY_SLOTS).map(|_| DaySlot::default()).collect() }
    }

    fn slot(&self, day: i64) -> &DaySlot {
        &self.slots[day.rem_euclid(DAY_SLOTS as i64) as usize]
    }

    /// Counts one request answered on `day` (days since the epoch) in `micros`.
    #[inline]
    pub(crate) fn record(&self, day: i64, micros: u64) {
        let slot = self.slot(day);
        slot.count.add(day, 1);
        slot.under.add(day, u64::from(micros < THRESHOLD_MICROS));
        slot.sum_micros.add(day, micros.min(MAX_OBSERVED_MICROS));
        slot.buckets[bucket_of(micros)].add(day, 1);
    }

    /// The requests of one day per latency bucket (all zero when the day is not in the ring).
    pub(crate) fn buckets(&self, day: i64) -> Vec<u64> {
        self.slot(day).buckets.iter().map(|b| b.get(day)).collect()
    }

    /// Adds restored figures for `day`.
    pub(crate) fn merge(&self, day: i64, totals: Totals) {
        let slot = self.slot(day);
        slot.count.add(day, totals.count);
        slot.under.add(day, totals.under_300ms);
        slot.sum_micros.add(day, totals.sum_micros);
    }

    /// The figures of one day, zero when the day is not (or no longer) in the ring.
    pub(crate) fn day(&self, day: i64) -> Totals {
        let slot = self.slot(day);
        Totals {
            count: slot.count.get(day),
            under_300ms: slot.under.get(day),
            sum_micros: slot.sum_micros.get(day),
        }
    }

    /// The figures summed over `days`, which must span at most [`DAY_SLOTS`] days.
    pub(crate) fn totals(&self, days: RangeInclusive<i64>) -> Totals {
        debug_assert!(days.end() - days.start() < DAY_SLOTS as i64, "{days:?}");
        days.fold(Totals::default(), |acc, day| {
            let t = self.day(day);
            Totals {
                count: acc.count + t.count,
                under_300ms: acc.under_300ms + t.under_300ms,
                sum_micros: acc.sum_micros + t.sum_micros,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_day_replaces_the_day_64_days_earlier_in_its_slot() {
        let ring = DayRing::new();
        ring.record(20_000, 1_000);
        ring.record(20_000 + 64, 2_000);
        assert_eq!(ring.day(20_000).count, 0);
        assert_eq!(ring.day(20_064), Totals { count: 1, under_300ms: 1, sum_micros: 2_000 });
    }

    #[test]
    fn an_observation_older_than_its_slots_day_is_dropped() {
        let ring = DayRing::new();
        ring.record(20_064, 2_000);
        ring.record(20_000, 1_000);
        assert_eq!(ring.day(20_064).count, 1);
        assert_eq!(ring.day(20_000).count, 0);
    }

    #[test]
    fn days_after_2059_roll_over_too() {
        // Tags wrap at 2^16 days; the signed comparison must still see a fresh slot as free and
        // an older day as older after the 2^15th day (2059-09-18).
        let ring = DayRing::new();
        let late = 40_000;
        ring.record(late, 5);
        assert_eq!(ring.day(late).count, 1);
        ring.record(late + 64, 5);
        assert_eq!(ring.day(late + 64).count, 1);
        assert_eq!(ring.day(late).count, 0);
    }

    #[test]
    fn each_request_lands_in_one_bucket_and_the_buckets_under_300_ms_hold_the_fast_ones() {
        let ring = DayRing::new();
        for micros in [0, 499, 500, 2_500, 299_999, 300_000, 31_000_000, u64::MAX] {
            ring.record(7, micros);
        }
        let b = ring.buckets(7);
        assert_eq!(b.len(), BUCKETS);
        assert_eq!(b.iter().sum::<u64>(), 8);
        assert_eq!((b[0], b[1], b[BUCKETS - 1]), (2, 1, 2));
        let fast = DAY_LATENCY_BOUNDS_MICROS.iter().position(|&x| x == THRESHOLD_MICROS).unwrap() + 1;
        assert_eq!(b[..fast].iter().sum::<u64>(), ring.day(7).under_300ms);
    }

    #[test]
    fn exactly_300_ms_is_not_under_300_ms() {
        let ring = DayRing::new();
        ring.record(1, 299_999);
        ring.record(1, 300_000);
        assert_eq!(ring.day(1).under_300ms, 1);
    }

    #[test]
    fn an_absurd_latency_is_capped_in_the_sum() {
        let ring = DayRing::new();
        ring.record(1, u64::MAX);
        ring.record(1, u64::MAX);
        assert_eq!(ring.day(1).sum_micros, 2 * MAX_OBSERVED_MICROS);
        assert_eq!(ring.day(1).count, 2);
    }
}
