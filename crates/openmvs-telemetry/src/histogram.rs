//! A fixed-bucket histogram with atomic counts, cheap enough to sit on every request's path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in microseconds: roughly log-spaced from 50 µs to 30 s,
/// with 300 ms as a boundary of its own because it is the DR Art 35 threshold, so that
/// `le="0.3"` answers "how many requests took at most 300 ms" exactly rather than by interpolation.
pub const LATENCY_BOUNDS_MICROS: [u64; 19] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 300_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000,
];

/// Upper bounds of the size buckets (group-commit batch sizes, packs per bulk request): powers of
/// two from 1 to 65 536.
pub const SIZE_BOUNDS: [u64; 17] =
    [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1_024, 2_048, 4_096, 8_192, 16_384, 32_768, 65_536];

/// What a histogram's values measure, which decides how they are written in an exposition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Durations in microseconds, rendered in seconds as Prometheus expects.
    Micros,
    /// Plain counts (sizes), rendered as they are.
    Count,
}

/// A histogram over fixed buckets.
///
/// Recording is two relaxed atomic additions and no allocation: one on the bucket, one on the sum.
/// The total count is not a third counter but the sum of the buckets, so a rendering always has
/// `+Inf` equal to `_count`, even while other threads observe. The sum may run a few observations
/// ahead of or behind the buckets during a concurrent read, which Prometheus tolerates.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    unit: Unit,
    /// One counter per bound (values `<=` that bound and above the previous one), then one for
    /// values above the last bound (`+Inf`).
    buckets: Box<[AtomicU64]>,
    /// The sum of observed values, wrapping; in microseconds it lasts 584 000 years.
    sum: AtomicU64,
}

impl Histogram {
    /// An empty latency histogram over [`LATENCY_BOUNDS_MICROS`]; observe microseconds.
    pub fn latency() -> Histogram {
        Histogram::new(&LATENCY_BOUNDS_MICROS, Unit::Micros)
    }

    /// An empty size histogram over [`SIZE_BOUNDS`]; observe counts.
    pub fn sizes() -> Histogram {
        Histogram::new(&SIZE_BOUNDS, Unit::Count)
    }

    fn new(bounds: &'static [u64], unit: Unit) -> Histogram {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bounds must increase");
        Histogram {
            bounds,
            unit,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    /// Records one value: microseconds for a latency histogram, a count for a size histogram.
    ///
    /// A value equal to a bound falls in that bound's bucket (Prometheus `le`, "less or equal").
    #[inline]
    pub fn observe(&self, value: u64) {
        // A binary search over at most 19 bounds: about five well-predicted comparisons.
        let i = self.bounds.partition_point(|&bound| bound < value);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    /// The bucket upper bounds, without the final `+Inf`.
    pub fn bounds(&self) -> &'static [u64] {
        self.bounds
    }

    /// What the values measure.
    pub fn unit(&self) -> Unit {
        self.unit
    }

    /// The number of observations in each bucket (not cumulative), the last being above every
    /// bound; one longer than [`Histogram::bounds`].
    pub fn counts(&self) -> Vec<u64> {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect()
    }

    /// The number of observations.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The sum of observed values (microseconds for a latency histogram).
    pub fn sum(&self) -> u64 {
        self.sum.load(Ordering::Relaxed)
    }

    /// An estimate of the `q`-quantile (`0.0..=1.0`), interpolating linearly inside the bucket
    /// that holds it, as Prometheus' `histogram_quantile` does; `None` when nothing was observed.
    ///
    /// The first bucket is taken to start at 0, and a quantile landing above the last bound is
    /// reported as the last bound, since nothing is known about how far above it lies.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        quantile_of(self.bounds, &self.counts(), q)
    }
}

/// Converts a duration to whole microseconds for [`Histogram::observe`], saturating at `u64::MAX`.
///
/// This is the convenience for callers holding two `Instant`s; the crate itself never reads a clock.
pub fn duration_micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

fn quantile_of(bounds: &[u64], counts: &[u64], q: f64) -> Option<u64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut below = 0u64;
    for (i, &n) in counts.iter().enumerate() {
        if n > 0 && (below + n) as f64 >= rank {
            let Some(&upper) = bounds.get(i) else {
                return bounds.last().copied();
            };
            let lower = if i == 0 { 0 } else { bounds[i - 1] };
            let fraction = (rank - below as f64) / n as f64;
            return Some(lower + ((upper - lower) as f64 * fraction).round() as u64);
        }
        below += n;
    }
    bounds.last().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket_of(h: &Histogram) -> usize {
        let counts = h.counts();
        assert_eq!(counts.iter().sum::<u64>(), 1, "expected exactly one observation");
        counts.iter().position(|&n| n == 1).unwrap()
    }

    /// Observes `value` into a fresh latency histogram and returns the index of its bucket.
    fn latency_bucket(value: u64) -> usize {
        let h = Histogram::latency();
        h.observe(value);
        bucket_of(&h)
    }

    #[test]
    fn bounds_strictly_increase_and_include_the_300_ms_threshold() {
        for bounds in [&LATENCY_BOUNDS_MICROS[..], &SIZE_BOUNDS[..]] {
            assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        }
        assert!(LATENCY_BOUNDS_MICROS.contains(&300_000));
        assert_eq!(LATENCY_BOUNDS_MICROS[0], 50);
        assert_eq!(LATENCY_BOUNDS_MICROS[18], 30_000_000);
    }

    #[test]
    fn a_value_equal_to_a_bound_falls_in_that_bounds_bucket() {
        let at_300 = LATENCY_BOUNDS_MICROS.iter().position(|&b| b == 300_000).unwrap();
        assert_eq!(latency_bucket(300_000), at_300);
        assert_eq!(latency_bucket(299_999), at_300);
        assert_eq!(latency_bucket(300_001), at_300 + 1);
        assert_eq!(latency_bucket(250_001), at_300);
        assert_eq!(latency_bucket(250_000), at_300 - 1);
    }

    #[test]
    fn zero_falls_in_the_first_bucket_and_anything_above_30_s_in_inf() {
        assert_eq!(latency_bucket(0), 0);
        assert_eq!(latency_bucket(50), 0);
        assert_eq!(latency_bucket(51), 1);
        assert_eq!(latency_bucket(30_000_000), 18);
        assert_eq!(latency_bucket(30_000_001), 19);
        assert_eq!(latency_bucket(u64::MAX), 19);
    }

    #[test]
    fn size_histograms_count_batch_sizes_in_powers_of_two() {
        let h = Histogram::sizes();
        for size in [1, 2, 3, 64, 65, 100_000] {
            h.observe(size);
        }
        let counts = h.counts();
        assert_eq!(counts.len(), SIZE_BOUNDS.len() + 1);
        assert_eq!(counts[0], 1); // 1
        assert_eq!(counts[1], 1); // 2
        assert_eq!(counts[2], 1); // 3 <= 4
        assert_eq!(counts[6], 1); // 64
        assert_eq!(counts[7], 1); // 65 <= 128
        assert_eq!(counts[17], 1); // above 65 536
        assert_eq!(h.sum(), 1 + 2 + 3 + 64 + 65 + 100_000);
        assert_eq!(h.count(), 6);
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        let h = Histogram::latency();
        assert_eq!(h.quantile(0.5), None);
        // 100 observations spread in the (250 ms, 300 ms] bucket: the median interpolates to the middle.
        for _ in 0..100 {
            h.observe(280_000);
        }
        assert_eq!(h.quantile(0.5), Some(275_000));
        assert_eq!(h.quantile(1.0), Some(300_000));
        // Above the last bound, the last bound is the best statement.
        let slow = Histogram::latency();
        slow.observe(60_000_000);
        assert_eq!(slow.quantile(0.99), Some(30_000_000));
    }

    #[test]
    fn quantiles_pick_the_bucket_holding_the_rank() {
        let h = Histogram::latency();
        for _ in 0..95 {
            h.observe(1_000);
        }
        for _ in 0..5 {
            h.observe(400_000);
        }
        assert!(h.quantile(0.95).unwrap() <= 1_000);
        assert!(h.quantile(0.99).unwrap() > 300_000);
    }

    #[test]
    fn durations_convert_to_whole_microseconds_and_saturate() {
        assert_eq!(duration_micros(Duration::from_nanos(1_999)), 1);
        assert_eq!(duration_micros(Duration::from_millis(300)), 300_000);
        assert_eq!(duration_micros(Duration::MAX), u64::MAX);
    }
}
