//! Minute bits for availability: which minutes were observed, and in which the service was not ready.

/// Minutes in a UTC day.
pub(crate) const MINUTES_PER_DAY: i64 = 1_440;

/// 64-bit words holding one bit per minute of a day (the last word is half used).
pub const MINUTE_WORDS: usize = 23;

/// Days of minute bits kept. The 30-day window touches at most 31 calendar days; one more slot
/// keeps the oldest of them from being reused while it is still read.
const DAYS_KEPT: usize = 32;

/// The window of [`Availability::share`]: 30 days of minutes.
const WINDOW_MINUTES: i64 = 30 * MINUTES_PER_DAY;

/// The minute bits of one UTC day, as kept and as persisted.
///
/// Minute `m` of the day (0 = 00:00-00:01 UTC) is bit `m % 64` of word `m / 64`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvailabilityDay {
    /// Days since 1970-01-01.
    pub day: i64,
    /// Minutes in which at least one readiness sample was taken.
    pub observed: [u64; MINUTE_WORDS],
    /// Minutes in which at least one sample said the service was not ready.
    pub down: [u64; MINUTE_WORDS],
}

impl AvailabilityDay {
    fn empty(day: i64) -> AvailabilityDay {
        AvailabilityDay { day, observed: [0; MINUTE_WORDS], down: [0; MINUTE_WORDS] }
    }
}

/// A ring of [`DAYS_KEPT`] days of minute bits, 5.9 KB in all. Samples arrive a few times a
/// minute at most, so this lives behind a mutex in the tracker, off the request path.
#[derive(Debug)]
pub(crate) struct Availability {
    days: Vec<Option<AvailabilityDay>>,
}

impl Availability {
    pub(crate) fn new() -> Availability {
        Availability { days: vec![None; DAYS_KEPT] }
    }

    /// The slot for `day`, emptied for it first when it held an older day; `None` when the slot
    /// already holds a later day (the sample is too old to keep).
    fn slot_mut(&mut self, day: i64) -> Option<&mut AvailabilityDay> {
        let slot = &mut self.days[day.rem_euclid(DAYS_KEPT as i64) as usize];
        match slot {
            Some(kept) if kept.day > day => return None,
            Some(kept) if kept.day == day => {}
            _ => *slot = Some(AvailabilityDay::empty(day)),
        }
        slot.as_mut()
    }

    /// Marks the minute holding `at_unix_millis` as observed, and as down unless `ready`.
    pub(crate) fn record(&mut self, at_unix_millis: i64, ready: bool) {
        let minute = at_unix_millis.div_euclid(60_000);
        let (day, m) = (minute.div_euclid(MINUTES_PER_DAY), minute.rem_euclid(MINUTES_PER_DAY) as usize);
        if let Some(kept) = self.slot_mut(day) {
            kept.observed[m / 64] |= 1 << (m % 64);
            if !ready {
                kept.down[m / 64] |= 1 << (m % 64);
            }
        }
    }

    /// Ready minutes over observed minutes in the 30 days (43 200 minutes) ending with the minute
    /// holding `now_unix_millis`; 1.0 when no minute was observed.
    pub(crate) fn share(&self, now_unix_millis: i64) -> f64 {
        let last = now_unix_millis.div_euclid(60_000);
        let first = last - WINDOW_MINUTES + 1;
        let (mut observed, mut down) = (0u64, 0u64);
        for day in first.div_euclid(MINUTES_PER_DAY)..=last.div_euclid(MINUTES_PER_DAY) {
            let Some(kept) = &self.days[day.rem_euclid(DAYS_KEPT as i64) as usize] else {
                continue;
            };
            if kept.day != day {
                continue;
            }
            let lo = (first - day * MINUTES_PER_DAY).max(0) as usize;
            let hi = (last - day * MINUTES_PER_DAY).min(MINUTES_PER_DAY - 1) as usize;
            observed += count_bits(&kept.observed, lo, hi);
            down += count_bits(&kept.down, lo, hi);
        }
        if observed == 0 { 1.0 } else { (observed - down) as f64 / observed as f64 }
    }

    /// The observed minutes of `day` and how many of them were ready; zeros when the day is not
    /// kept.
    pub(crate) fn minutes(&self, day: i64) -> (u32, u32) {
        match &self.days[day.rem_euclid(DAYS_KEPT as i64) as usize] {
            Some(kept) if kept.day == day => {
                let observed = count_bits(&kept.observed, 0, MINUTES_PER_DAY as usize - 1);
                let down = count_bits(&kept.down, 0, MINUTES_PER_DAY as usize - 1);
                (observed as u32, (observed - down) as u32)
            }
            _ => (0, 0),
        }
    }

    /// Every day kept, oldest first, for a snapshot.
    pub(crate) fn days(&self) -> Vec<AvailabilityDay> {
        let mut days: Vec<AvailabilityDay> = self.days.iter().flatten().cloned().collect();
        days.sort_by_key(|d| d.day);
        days
    }

    /// Adds the minutes of a restored day to what is kept.
    pub(crate) fn merge(&mut self, restored: &AvailabilityDay) {
        if let Some(kept) = self.slot_mut(restored.day) {
            for i in 0..MINUTE_WORDS {
                kept.observed[i] |= restored.observed[i];
                // A down minute is an observed minute; a hand-made snapshot saying otherwise
                // must not make the share exceed 1.
                kept.down[i] = (kept.down[i] | restored.down[i]) & kept.observed[i];
            }
        }
    }
}

/// The number of set bits among bits `lo..=hi` of a minute bitmap.
fn count_bits(words: &[u64; MINUTE_WORDS], lo: usize, hi: usize) -> u64 {
    (lo / 64..=hi / 64)
        .map(|w| {
            let from = if w == lo / 64 { lo % 64 } else { 0 };
            let to = if w == hi / 64 { hi % 64 } else { 63 };
            // Bits from..=to; a shift by 64 would overflow, so build the mask from the top.
            let mask = (u64::MAX >> (63 - to)) & (u64::MAX << from);
            u64::from((words[w] & mask).count_ones())
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: i64 = 86_400_000;

    #[test]
    fn counting_bits_respects_both_ends_of_the_range() {
        let mut words = [u64::MAX; MINUTE_WORDS];
        assert_eq!(count_bits(&words, 0, 1_439), 1_440);
        assert_eq!(count_bits(&words, 63, 64), 2);
        assert_eq!(count_bits(&words, 5, 5), 1);
        words[1] = 0;
        assert_eq!(count_bits(&words, 60, 130), 4 + 3);
    }

    #[test]
    fn a_minute_with_any_failed_sample_is_down() {
        let mut a = Availability::new();
        let t = 20_000 * DAY_MS;
        a.record(t, true);
        a.record(t + 10_000, false);
        a.record(t + 20_000, true);
        a.record(t + 60_000, true);
        assert_eq!(a.share(t + 60_000), 0.5);
    }

    #[test]
    fn minutes_older_than_30_days_leave_the_window() {
        let mut a = Availability::new();
        let now = 20_000 * DAY_MS + 12 * 3_600_000;
        // Exactly 30 days before `now` is one minute outside the 43 200-minute window.
        a.record(now - 30 * DAY_MS, false);
        a.record(now - 30 * DAY_MS + 60_000, true);
        a.record(now, true);
        assert_eq!(a.share(now), 1.0);
        a.record(now - 30 * DAY_MS + 60_000, false);
        assert_eq!(a.share(now), 0.5);
    }

    #[test]
    fn a_slot_reused_for_a_later_day_forgets_the_earlier_one() {
        let mut a = Availability::new();
        a.record(0, false);
        a.record(DAYS_KEPT as i64 * DAY_MS, true);
        assert_eq!(a.days().len(), 1);
        // A late sample for the forgotten day is dropped rather than clearing the newer day.
        a.record(60_000, false);
        assert_eq!(a.days()[0].day, DAYS_KEPT as i64);
    }
}
