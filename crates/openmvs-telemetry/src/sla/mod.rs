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
            availability: Mutex::new(Availability::new()),
            incidents: Mutex::new(Incidents::new()),
        }
    }

    fn ring(&self, class: OpClass) -> Option<&DayRing> {
        match class {
            OpClass::Verification => Some(&self.verification),
            OpClass::StatusUpdate => Some(&self.status_update),
            _ => None,
        }
    }

    /// Counts one request of `class` answered at `at_unix_millis` in `micros`. Only verifications
    /// and status updates are counted; other classes are ignored. A request more than 63 days
    /// older than the newest one counted on the same slot is dropped.
    #[inline]
    pub fn record(&self, class: OpClass, at_unix_millis: i64, micros: u64) {
        if let Some(ring) = self.ring(class) {
            ring.record(at_unix_millis.div_euclid(DAY_MS), micros);
        }
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
