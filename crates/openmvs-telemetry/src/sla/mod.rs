//! The DR Art 35 figures for `/status`: the monthly share of requests answered in under 300 ms
//! and the mean response time, for verifications and for status updates, with availability and
//! incidents.
//!
//! # Model
//!
//! - **Latency.** Each verification and status update is counted on its UTC day (from the
//!   `at_unix_millis` the caller passes): requests, requests answered in strictly less than
//!   300 ms, and the latency sum. The month's share is read from the days of the current UTC
//!   calendar month up to today; the mean from the 30 UTC days ending today (today and the 29
//!   before). Other operation classes are not DR Art 35 figures and are not tracked here (the
//!   Prometheus histograms have them).
//! - **Under 300 ms is strict.** DR Art 35 says "under 300 ms", so 300 000 µs exactly is not
//!   under. The Prometheus bucket `le="0.3"` follows Prometheus' "less or equal" and does count
//!   it; the two differ only by requests of exactly 300 000 µs.
//! - **Availability.** The HTTP layer samples its own readiness (what `/health/ready` answers)
//!   every few seconds and calls [`SlaTracker::record_availability`]. A minute with at least one
//!   sample is observed; an observed minute with any not-ready sample is down. Availability over
//!   30 days is ready minutes over observed minutes in the last 43 200 minutes, and 1.0 when
//!   nothing was observed. Minutes in which the process was not running are not observed at all,
//!   so the figure says how available the service was while it could tell; an outage of the
//!   whole process is for external probing and the incident list to report.
//! - **Memory is bounded.** 64 days of day counters (the whole previous month and the current
//!   month), 32 days of minute bits, 50 incidents: about 10 KB whatever the traffic.
//!
//! # Persistence
//!
//! The figures live in memory. To keep the month's figures across a restart, the server calls
//! [`SlaTracker::snapshot`] now and then and at shutdown, stores [`SlaSnapshot::encode`]'s text
//! (a file or a database row), and at start-up calls [`SlaTracker::restore`] with
//! [`SlaSnapshot::decode`]'s result before taking traffic. Restoring adds to what the tracker
//! holds, so restoring into a tracker that already counted some requests loses nothing.

mod availability;
mod days;
mod incidents;
mod snapshot;

use std::sync::{Mutex, MutexGuard, PoisonError};

use openmvs_core::time::{Date, Timestamp};

pub use availability::{AvailabilityDay, MINUTE_WORDS};
pub use incidents::{Incident, MAX_INCIDENTS};
pub use snapshot::{DayFigures, SlaSnapshot, SnapshotError};

use crate::op_class::OpClass;
use availability::Availability;
pub use days::{BUCKETS as DAY_BUCKETS, DAY_LATENCY_BOUNDS_MICROS};
use days::{DAY_SLOTS, DayRing, Totals};
use incidents::Incidents;

const DAY_MS: i64 = 86_400_000;

/// Latency totals of one calendar month for one operation class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonthFigures {
    /// The year, e.g. 2027.
    pub year: i32,
    /// The month, 1-12.
    pub month: u8,
    /// Requests answered.
    pub count: u64,
    /// Requests answered in strictly less than 300 ms.
    pub under_300ms: u64,
    /// The sum of their latencies, in microseconds (each capped at one hour).
    pub sum_micros: u64,
}

impl MonthFigures {
    /// `under_300ms / count`, and 1.0 when there were no requests: nothing was answered slowly.
    pub fn share_under_300ms(&self) -> f64 {
        share(self.under_300ms, self.count)
    }

    /// The mean latency in milliseconds; `None` when there were no requests.
    pub fn mean_ms(&self) -> Option<f64> {
        mean_ms(self.sum_micros, self.count)
    }
}

/// The DR Art 35 figures of one operation class.
#[derive(Debug, Clone, PartialEq)]
pub struct OpSla {
    /// The share of this month's requests answered in under 300 ms; 1.0 when there were none.
    pub share_under_300ms_month: f64,
    /// The mean latency over the last 30 days, in milliseconds; `None` when there were no
    /// requests, because 0 ms would claim an impossibly fast service on a public page.
    pub mean_ms_30d: Option<f64>,
    /// Requests answered this month.
    pub count_month: u64,
    /// The complete figures of the month before, for the monthly report.
    pub previous_month: MonthFigures,
}

/// What `/status` shows.
#[derive(Debug, Clone, PartialEq)]
pub struct SlaReport {
    /// Verification figures.
    pub verification: OpSla,
    /// Status update figures (state changes and undos).
    pub status_update: OpSla,
    /// Ready minutes over observed minutes in the last 30 days; 1.0 when nothing was observed.
    pub availability_30d: f64,
    /// The recent incidents, newest first.
    pub incidents: Vec<Incident>,
}

/// The running DR Art 35 figures of one server. Share it between threads (it is `Sync`).
///
/// [`SlaTracker::record`] is lock-free: a handful of relaxed atomic operations on per-day words
/// and no allocation. Availability samples and incidents, which arrive a few times a minute at
/// most, go through a mutex each.
#[derive(Debug)]
pub struct SlaTracker {
    verification: DayRing,
    status_update: DayRing,
    bulk: DayRing,
    auth: DayRing,
    admin: DayRing,
    /// The same counters per minute (the ring's "days" are minutes here), for the last hour of
    /// verifications and status updates: what the incident rules look at.
    recent_verification: DayRing,
    recent_status_update: DayRing,
    availability: Mutex<Availability>,
    incidents: Mutex<Incidents>,
}

impl Default for SlaTracker {
    fn default() -> Self {
        SlaTracker::new()
    }
}

impl SlaTracker {
    /// A tracker with no figures.
    pub fn new() -> SlaTracker {
        SlaTracker {
            verification: DayRing::new(),
            status_update: DayRing::new(),
            bulk: DayRing::new(),
            auth: DayRing::new(),
            admin: DayRing::new(),
            recent_verification: DayRing::new(),
            recent_status_update: DayRing::new(),
            availability: Mutex::new(Availability::new()),
            incidents: Mutex::new(Incidents::new()),
        }
    }

    fn ring(&self, class: OpClass) -> Option<&DayRing> {
        match class {
            OpClass::Verification => Some(&self.verification),
            OpClass::StatusUpdate => Some(&self.status_update),
            OpClass::Bulk => Some(&self.bulk),
            OpClass::Auth => Some(&self.auth),
            OpClass::Admin => Some(&self.admin),
            OpClass::Other => None,
        }
    }

    /// Counts one request of `class` answered at `at_unix_millis` in `micros`. Every class but
    /// [`OpClass::Other`] is counted; the report's monthly figures are of verifications and status
    /// updates, the stored history ([`SlaTracker::node_day`]) has them all. A request more than 63 days
    /// older than the newest one counted on the same slot is dropped.
    #[inline]
    pub fn record(&self, class: OpClass, at_unix_millis: i64, micros: u64) {
        if let Some(ring) = self.ring(class) {
            ring.record(at_unix_millis.div_euclid(DAY_MS), micros);
        }
        match class {
            OpClass::Verification => {
                self.recent_verification.record(at_unix_millis.div_euclid(60_000), micros);
            }
            OpClass::StatusUpdate => {
                self.recent_status_update.record(at_unix_millis.div_euclid(60_000), micros);
            }
            _ => {}
        }
    }

    /// Requests of `class` (verifications and status updates only) answered in the `minutes`
    /// whole and partial UTC minutes ending with the one holding `now_unix_millis` (at most 60),
    /// and how many of them in under 300 ms.
    pub fn window(&self, class: OpClass, now_unix_millis: i64, minutes: u32) -> (u64, u64) {
        let ring = match class {
            OpClass::Verification => &self.recent_verification,
            OpClass::StatusUpdate => &self.recent_status_update,
            _ => return (0, 0),
        };
        let last = now_unix_millis.div_euclid(60_000);
        let t = ring.totals(last - i64::from(minutes.clamp(1, 60)) + 1..=last);
        (t.count, t.under_300ms)
    }

    /// Records one readiness sample taken at `at_unix_millis`: `ready` is what `/health/ready`
    /// would answer.
    pub fn record_availability(&self, at_unix_millis: i64, ready: bool) {
        lock(&self.availability).record(at_unix_millis, ready);
    }

    /// Opens an incident and returns its id, for [`SlaTracker::close_incident`].
    pub fn open_incident(
        &self,
        at_unix_millis: i64,
        title: impl Into<String>,
        detail: impl Into<String>,
    ) -> u64 {
        lock(&self.incidents).open(at_unix_millis, title.into(), detail.into())
    }

    /// Closes an open incident; `false` when there is no open incident with this id.
    pub fn close_incident(&self, id: u64, at_unix_millis: i64) -> bool {
        lock(&self.incidents).close(id, at_unix_millis)
    }

    /// The figures as of `now_unix_millis`.
    pub fn report(&self, now_unix_millis: i64) -> SlaReport {
        let today = Timestamp::from_unix_millis(now_unix_millis).date();
        SlaReport {
            verification: op_sla(&self.verification, today),
            status_update: op_sla(&self.status_update, today),
            availability_30d: lock(&self.availability).share(now_unix_millis),
            incidents: lock(&self.incidents).newest_first(),
        }
    }

    /// What this tracker counted on `day` (days since the epoch), for the stored history: every
    /// tracked class with requests that day, with its latency buckets, and the day's observed and
    /// ready minutes.
    pub fn node_day(&self, day: i64) -> NodeDay {
        let classes = TRACKED
            .into_iter()
            .filter_map(|class| {
                let ring = self.ring(class)?;
                let t = ring.day(day);
                (t.count > 0).then(|| ClassDay {
                    class,
                    count: t.count,
                    under_300ms: t.under_300ms,
                    sum_micros: t.sum_micros,
                    buckets: ring.buckets(day),
                })
            })
            .collect();
        let (observed_minutes, ready_minutes) = lock(&self.availability).minutes(day);
        NodeDay { day, classes, observed_minutes, ready_minutes }
    }

    /// Everything the tracker holds, for persisting: the day figures of the 64 days ending on
    /// the day of `now_unix_millis` (days without requests left out), the minute bits and the
    /// incidents.
    pub fn snapshot(&self, now_unix_millis: i64) -> SlaSnapshot {
        let today = now_unix_millis.div_euclid(DAY_MS);
        let mut days = Vec::new();
        for class in [OpClass::Verification, OpClass::StatusUpdate] {
            let ring = self.ring(class).expect("tracked class");
            for day in today - (DAY_SLOTS as i64 - 1)..=today {
                let t = ring.day(day);
                if t.count > 0 {
                    days.push(DayFigures {
                        class,
                        day,
                        count: t.count,
                        under_300ms: t.under_300ms,
                        sum_micros: t.sum_micros,
                    });
                }
            }
        }
        // One lock at a time, so no order between the two mutexes can deadlock.
        let availability = lock(&self.availability).days();
        let (incidents, next_incident_id) = {
            let incidents = lock(&self.incidents);
            (incidents.oldest_first(), incidents.next_id())
        };
        SlaSnapshot { days, availability, incidents, next_incident_id }
    }

    /// Adds a snapshot's figures to the tracker's own (see the module documentation). Day figures
    /// of untracked classes, or too old for the ring, are ignored; `under_300ms` is capped at
    /// `count` and every figure at 2^47, so a damaged snapshot cannot corrupt the counters.
    pub fn restore(&self, snapshot: &SlaSnapshot) {
        // Far above any real day (1.4 * 10^14 requests or 4.4 years of summed latency), and far
        // enough below the 48-bit counters that adding live traffic cannot overflow them.
        const CAP: u64 = (1 << 47) - 1;
        for d in &snapshot.days {
            if let Some(ring) = self.ring(d.class) {
                let count = d.count.min(CAP);
                ring.merge(
                    d.day,
                    Totals {
                        count,
                        under_300ms: d.under_300ms.min(count),
                        sum_micros: d.sum_micros.min(CAP),
                    },
                );
            }
        }
        {
            let mut availability = lock(&self.availability);
            for day in &snapshot.availability {
                availability.merge(day);
            }
        }
        lock(&self.incidents).merge(&snapshot.incidents, snapshot.next_incident_id);
    }
}

/// The classes a tracker counts per day.
pub const TRACKED: [OpClass; 5] =
    [OpClass::Verification, OpClass::StatusUpdate, OpClass::Bulk, OpClass::Auth, OpClass::Admin];

/// One class's figures of one day on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassDay {
    /// The class.
    pub class: OpClass,
    /// Requests answered.
    pub count: u64,
    /// Requests answered in strictly less than 300 ms.
    pub under_300ms: u64,
    /// The sum of their latencies, in microseconds.
    pub sum_micros: u64,
    /// Requests per latency bucket ([`DAY_LATENCY_BOUNDS_MICROS`], then one for slower ones).
    pub buckets: Vec<u64>,
}

/// What one node counted on one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDay {
    /// Days since 1970-01-01.
    pub day: i64,
    /// The classes with requests that day.
    pub classes: Vec<ClassDay>,
    /// Minutes of the day in which readiness was sampled.
    pub observed_minutes: u32,
    /// Observed minutes in which every sample was ready.
    pub ready_minutes: u32,
}

/// The latency under which a share `q` (e.g. 0.95) of the requests counted in `buckets` were
/// answered, in milliseconds, as the upper bound of the bucket holding that request: a figure the
/// percentile does not exceed. Requests slower than the last bound count as one hour.
/// `None` with no requests.
pub fn percentile_ms(buckets: &[u64], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (i, n) in buckets.iter().enumerate() {
        seen += n;
        if seen >= rank {
            let bound = DAY_LATENCY_BOUNDS_MICROS.get(i).copied().unwrap_or(days::MAX_OBSERVED_MICROS);
            return Some(bound as f64 / 1_000.0);
        }
    }
    Some(days::MAX_OBSERVED_MICROS as f64 / 1_000.0)
}

/// Locks a mutex that no code path can leave inconsistent (every update under it is a few field
/// writes that cannot panic half-way), so a poisoned lock is still safe to use.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn op_sla(ring: &DayRing, today: Date) -> OpSla {
    let today_n = today.days_since_epoch();
    let month_start = Date::new(today.year(), today.month(), 1).expect("day 1 exists");
    let month = ring.totals(month_start.days_since_epoch()..=today_n);
    let previous_start = if today.month() == 1 {
        Date::new(today.year() - 1, 12, 1)
    } else {
        Date::new(today.year(), today.month() - 1, 1)
    }
    .expect("day 1 exists");
    let previous = ring.totals(previous_start.days_since_epoch()..=month_start.days_since_epoch() - 1);
    let last_30 = ring.totals(today_n - 29..=today_n);
    OpSla {
        share_under_300ms_month: share(month.under_300ms, month.count),
        mean_ms_30d: mean_ms(last_30.sum_micros, last_30.count),
        count_month: month.count,
        previous_month: MonthFigures {
            year: previous_start.year(),
            month: previous_start.month(),
            count: previous.count,
            under_300ms: previous.under_300ms,
            sum_micros: previous.sum_micros,
        },
    }
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 { 1.0 } else { part as f64 / whole as f64 }
}

fn mean_ms(sum_micros: u64, count: u64) -> Option<f64> {
    (count > 0).then(|| sum_micros as f64 / count as f64 / 1_000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_percentile_is_the_bound_of_the_bucket_holding_its_request() {
        let mut b = vec![0u64; DAY_BUCKETS];
        assert_eq!(percentile_ms(&b, 0.95), None);
        b[0] = 94; // under 0.5 ms
        b[6] = 5; // 4 to 5 ms
        b[DAY_BUCKETS - 1] = 1; // over 30 s
        assert_eq!(percentile_ms(&b, 0.5), Some(0.5));
        assert_eq!(percentile_ms(&b, 0.95), Some(5.0));
        assert_eq!(percentile_ms(&b, 0.99), Some(5.0));
        assert_eq!(percentile_ms(&b, 1.0), Some(3_600_000.0));
    }

    #[test]
    fn the_window_counts_the_last_minutes_only() {
        let t = SlaTracker::new();
        let now = 30_000 * 60_000 + 30_000;
        t.record(OpClass::Verification, now - 10 * 60_000, 1_000);
        t.record(OpClass::Verification, now - 4 * 60_000, 1_000);
        t.record(OpClass::Verification, now, 400_000);
        t.record(OpClass::Bulk, now, 400_000);
        assert_eq!(t.window(OpClass::Verification, now, 5), (2, 1));
        assert_eq!(t.window(OpClass::Verification, now, 60), (3, 2));
        assert_eq!(t.window(OpClass::StatusUpdate, now, 5), (0, 0));
        assert_eq!(t.window(OpClass::Bulk, now, 5), (0, 0));
    }

    #[test]
    fn a_node_day_has_every_class_with_requests_and_the_days_minutes() {
        let t = SlaTracker::new();
        let day = 20_000;
        let at = day * DAY_MS + 5 * 60_000;
        t.record(OpClass::Verification, at, 1_200);
        t.record(OpClass::Verification, at, 450_000);
        t.record(OpClass::Auth, at, 80_000);
        t.record(OpClass::Other, at, 10);
        t.record_availability(at, true);
        t.record_availability(at + 60_000, false);
        let d = t.node_day(day);
        assert_eq!((d.observed_minutes, d.ready_minutes), (2, 1));
        let classes: Vec<(OpClass, u64, u64)> =
            d.classes.iter().map(|c| (c.class, c.count, c.under_300ms)).collect();
        assert_eq!(classes, vec![(OpClass::Verification, 2, 1), (OpClass::Auth, 1, 1)]);
        assert_eq!(d.classes[0].buckets.iter().sum::<u64>(), 2);
        assert_eq!(t.node_day(day + 1).classes, vec![]);
    }
}
