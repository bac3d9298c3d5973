//! Calendar dates and instants, computed without a clock: the caller always says what "now" is.

use std::fmt;
use std::time::Duration;

/// A day in the proleptic Gregorian calendar, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    year: i32,
    month: u8,
    day: u8,
}

impl Date {
    /// Builds a date, or `None` when the month or day does not exist (including 29 February of a common year).
    pub fn new(year: i32, month: u8, day: u8) -> Option<Date> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        Some(Date { year, month, day })
    }

    /// The last day of the given month; `None` when the month is not 1-12.
    pub fn last_of_month(year: i32, month: u8) -> Option<Date> {
        if !(1..=12).contains(&month) {
            return None;
        }
        Some(Date { year, month, day: days_in_month(year, month) })
    }

    /// The calendar year, e.g. 2027.
    pub fn year(self) -> i32 {
        self.year
    }

    /// The month, 1-12.
    pub fn month(self) -> u8 {
        self.month
    }

    /// The day of the month, 1-31.
    pub fn day(self) -> u8 {
        self.day
    }

    /// Days since 1970-01-01 (negative before it).
    pub fn days_since_epoch(self) -> i64 {
        // Howard Hinnant's days_from_civil: exact for every proleptic Gregorian date.
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The date that is `days` days after 1970-01-01.
    pub fn from_days_since_epoch(days: i64) -> Date {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        Date { year, month, day }
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// Whether `year` has a 29 February.
pub fn is_leap_year(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// The number of days in a month (1-12) of a year.
pub fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// An instant, in milliseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

const MILLIS_PER_DAY: i64 = 86_400_000;

impl Timestamp {
    /// The instant `millis` milliseconds after the Unix epoch.
    pub const fn from_unix_millis(millis: i64) -> Timestamp {
        Timestamp(millis)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn unix_millis(self) -> i64 {
        self.0
    }

    /// The UTC calendar day this instant falls on.
    pub fn date(self) -> Date {
        Date::from_days_since_epoch(self.0.div_euclid(MILLIS_PER_DAY))
    }

    /// Midnight UTC at the start of `date`.
    pub fn start_of(date: Date) -> Timestamp {
        Timestamp(date.days_since_epoch() * MILLIS_PER_DAY)
    }

    /// This instant moved forward by `d` (saturating).
    pub fn plus(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
    }

    /// RFC 3339 in UTC with milliseconds, e.g. `2026-11-29T14:34:29.123Z`.
    pub fn to_rfc3339(self) -> String {
        let date = self.date();
        let ms = self.0.rem_euclid(MILLIS_PER_DAY);
        let (h, m, s, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
        format!("{date}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
    }

    /// Parses the form [`Timestamp::to_rfc3339`] writes (`2026-11-29T14:34:29.123Z`), and no
    /// other: `None` for anything else.
    pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
        let b = s.as_bytes();
        if b.len() != 24
            || b[4] != b'-'
            || b[7] != b'-'
            || b[10] != b'T'
            || b[13] != b':'
            || b[16] != b':'
            || b[19] != b'.'
            || b[23] != b'Z'
        {
            return None;
        }
        let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
        let date = Date::new(n(0..4)? as i32, n(5..7)? as u8, n(8..10)? as u8)?;
        let (h, m, sec, ms) = (n(11..13)?, n(14..16)?, n(17..19)?, n(20..23)?);
        if h > 23 || m > 59 || sec > 59 {
            return None;
        }
        Some(Timestamp(Timestamp::start_of(date).0 + ((h * 60 + m) * 60 + sec) * 1000 + ms))
    }

    /// The time from `earlier` to `self`, or zero when `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }
}

/// A source of the current time. The core never reads a clock; the shells hold one of these,
/// the system clock in production and a settable one in tests and in `openmvs demo --fake-clock`.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_day_conversion_round_trips_over_four_centuries() {
        for days in (-200_000..200_000).step_by(7) {
            let d = Date::from_days_since_epoch(days);
            assert_eq!(d.days_since_epoch(), days, "{d}");
            assert!(Date::new(d.year(), d.month(), d.day()).is_some());
        }
    }

    #[test]
    fn leap_years_follow_the_gregorian_rule() {
        assert!(is_leap_year(2028));
        assert!(!is_leap_year(2027));
        assert!(!is_leap_year(2100));
        assert!(is_leap_year(2000));
        assert!(Date::new(2027, 2, 29).is_none());
        assert_eq!(Date::last_of_month(2028, 2), Date::new(2028, 2, 29));
    }

    #[test]
    fn timestamps_know_their_utc_day() {
        let t = Timestamp::from_unix_millis(1_800_000_000_000);
        assert_eq!(t.date().to_string(), "2027-01-15");
        assert_eq!(Timestamp::start_of(t.date()).date(), t.date());
        assert_eq!(Timestamp::from_unix_millis(-1).date().to_string(), "1969-12-31");
        assert_eq!(Timestamp::from_unix_millis(1_800_000_000_123).to_rfc3339(), "2027-01-15T08:00:00.123Z");
    }

    #[test]
    fn rfc3339_round_trips_and_refuses_other_forms() {
        let t = Timestamp::from_unix_millis(1_800_000_000_123);
        assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()), Some(t));
        assert_eq!(Timestamp::parse_rfc3339("2026-11-29T24:00:00.000Z"), None);
        assert_eq!(Timestamp::parse_rfc3339("2026-11-29T14:34:29Z"), None);
        assert_eq!(Timestamp::parse_rfc3339("nonsense"), None);
    }
}
