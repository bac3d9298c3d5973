//! The service-level history of a system, as `/status` and `GET /v1/status` give it: per
//! operation class, per UTC day and per calendar month, requests, the share under 300 ms, the
//! mean, p95 and p99, and availability; summed over every node of the system.
//!
//! Each node counts in memory ([`openmvs_telemetry::SlaTracker`]) and [`SlaHistory::flush`]
//! writes its figures of today and yesterday to the store now and then and at shutdown, under
//! the node's id (see [`openmvs_store::SlaStore`]). A read takes every node's rows from the
//! store, with this node's own replaced by what it counts now, so the page is current on the node
//! that answers and every node answers the same once they have written.

use std::collections::BTreeMap;
use std::sync::Arc;

use openmvs_core::time::{Date, Timestamp};
use openmvs_store::{ConsoleStore, SlaClassDay, SlaNodeDay, StoreResult};
use openmvs_telemetry::{DAY_BUCKETS, NodeDay, OpClass, percentile_ms};
use serde::Serialize;

use crate::observe::Observability;

/// Months the history reports: the current one and the five before it.
pub const MONTHS: usize = 6;
/// Days of daily figures reported (today and the 29 before).
pub const DAYS: i64 = 30;
/// How often a node writes its figures to the store.
pub const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Writes this node's figures and reads the system's.
pub struct SlaHistory {
    store: Arc<dyn ConsoleStore>,
    scope: String,
    node: String,
}

/// Sums of one class over some days.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Sums {
    requests: u64,
    under_300ms: u64,
    sum_micros: u64,
    buckets: Vec<u64>,
}

impl Sums {
    fn add(&mut self, c: &SlaClassDay) {
        self.requests += c.requests;
        self.under_300ms += c.under_300ms.min(c.requests);
        self.sum_micros += c.sum_micros;
        // Rows written with another bucket layout are counted but not used for percentiles.
        if c.buckets.len() == DAY_BUCKETS {
            self.buckets.resize(DAY_BUCKETS, 0);
            for (b, n) in self.buckets.iter_mut().zip(&c.buckets) {
                *b += n;
            }
        }
    }

    fn merge(&mut self, o: &Sums) {
        self.add(&SlaClassDay {
            class: String::new(),
            requests: o.requests,
            under_300ms: o.under_300ms,
            sum_micros: o.sum_micros,
            buckets: o.buckets.clone(),
        });
    }

    fn figures(&self) -> Figures {
        Figures {
            requests: self.requests,
            share_under_300ms: if self.requests == 0 {
                1.0
            } else {
                self.under_300ms as f64 / self.requests as f64
            },
            mean_ms: (self.requests > 0).then(|| self.sum_micros as f64 / self.requests as f64 / 1000.0),
            p95_ms: percentile_ms(&self.buckets, 0.95),
            p99_ms: percentile_ms(&self.buckets, 0.99),
        }
    }
}

/// The figures of one class over a day or a month.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Figures {
    /// Requests answered.
    pub requests: u64,
    /// Share answered in under 300 ms (1.0 with no requests).
    #[schema(minimum = 0, maximum = 1)]
    pub share_under_300ms: f64,
    /// Mean response time in milliseconds; null with no requests.
    #[schema(required = true)]
    pub mean_ms: Option<f64>,
    /// 95 % of requests were answered in less than this, in milliseconds (the upper bound of the
    /// latency bucket holding the 95th percentile); null with no requests.
    #[schema(required = true)]
    pub p95_ms: Option<f64>,
    /// The same for 99 %.
    #[schema(required = true)]
    pub p99_ms: Option<f64>,
}

/// One UTC day of the history.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DayHistory {
    /// `YYYY-MM-DD`.
    #[schema(format = Date)]
    pub date: String,
    /// Ready minutes over observed minutes, every node; null when no node observed that day.
    #[schema(required = true, minimum = 0, maximum = 1)]
    pub availability: Option<f64>,
    /// Figures per operation class (`verification`, `status_update`, `bulk`, `auth`, `admin`),
    /// the classes with requests only.
    pub classes: BTreeMap<String, Figures>,
}

/// One calendar month of the history.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MonthHistory {
    /// `YYYY-MM` (UTC).
    #[schema(pattern = "^[0-9]{4}-[0-9]{2}$")]
    pub month: String,
    /// Ready minutes over observed minutes, every node; null when nothing was observed.
    #[schema(required = true, minimum = 0, maximum = 1)]
    pub availability: Option<f64>,
    /// Figures per operation class; verifications and status updates always, other classes
    /// when they had requests.
    pub classes: BTreeMap<String, Figures>,
}

/// The history as read.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    /// The last [`DAYS`] days, oldest first, days with nothing observed left out.
    pub days: Vec<DayHistory>,
    /// The last [`MONTHS`] months, oldest first, every month present.
    pub months: Vec<MonthHistory>,
    /// Availability over the last 30 days; 1.0 when nothing was observed.
    pub availability_30d: f64,
    /// The mean over the last 30 days per class (null with no requests).
    pub mean_ms_30d: BTreeMap<String, Option<f64>>,
}

impl History {
    /// The current month's figures of `class` (all-default when it had none).
    pub fn this_month(&self, class: OpClass) -> Figures {
        self.months
            .last()
            .and_then(|m| m.classes.get(class.as_str()).cloned())
            .unwrap_or_else(|| Sums::default().figures())
    }
}

fn months_before(d: Date, n: usize) -> Date {
    let index = d.year() * 12 + i32::from(d.month()) - 1 - n as i32;
    Date::new(index.div_euclid(12), (index.rem_euclid(12) + 1) as u8, 1).expect("day 1 exists")
}

fn share(ready: u64, observed: u64) -> Option<f64> {
    (observed > 0).then(|| ready as f64 / observed as f64)
}

impl SlaHistory {
    /// The history of `scope` (a market code, or `HUB`), this node writing as `node`.
    pub fn new(
        store: Arc<dyn ConsoleStore>,
        scope: impl Into<String>,
        node: impl Into<String>,
    ) -> SlaHistory {
        SlaHistory { store, scope: scope.into(), node: node.into() }
    }

    fn row(&self, d: NodeDay) -> SlaNodeDay {
        SlaNodeDay {
            scope: self.scope.clone(),
            day: d.day,
            node: self.node.clone(),
            observed_minutes: d.observed_minutes,
            ready_minutes: d.ready_minutes,
            classes: d
                .classes
                .into_iter()
                .map(|c| SlaClassDay {
                    class: c.class.as_str().to_owned(),
                    requests: c.count,
                    under_300ms: c.under_300ms,
                    sum_micros: c.sum_micros,
                    buckets: c.buckets,
                })
                .collect(),
        }
    }

    /// This node's rows of today and yesterday (yesterday's last requests may not be written
    /// yet at midnight), leaving out days it saw nothing of.
    fn live(&self, obs: &Observability) -> Vec<SlaNodeDay> {
        let today = obs.clock.now().unix_millis().div_euclid(86_400_000);
        [today - 1, today]
            .into_iter()
            .map(|day| obs.sla.node_day(day))
            .filter(|d| !d.classes.is_empty() || d.observed_minutes > 0)
            .map(|d| self.row(d))
            .collect()
    }

    /// Writes this node's figures of today and yesterday.
    pub async fn flush(&self, obs: &Observability) -> StoreResult<()> {
        let rows = self.live(obs);
        if rows.is_empty() {
            return Ok(());
        }
        self.store.put_sla(rows).await
    }

    /// The system's history as of now: every node's stored rows, this node's replaced by its
    /// live figures.
    pub async fn read(&self, obs: &Observability) -> StoreResult<History> {
        let now = obs.clock.now();
        let today = now.date();
        let first = months_before(today, MONTHS - 1);
        let mut rows = self.store.sla_days(first.days_since_epoch(), today.days_since_epoch()).await?;
        let live = self.live(obs);
        rows.retain(|r| {
            r.scope == self.scope && !(r.node == self.node && live.iter().any(|l| l.day == r.day))
        });
        rows.extend(live);
        Ok(summarise(&rows, now))
    }
}

/// The figures of `rows` (one scope's) as of `now`.
fn summarise(rows: &[SlaNodeDay], now: Timestamp) -> History {
    let today = now.date();
    let today_n = today.days_since_epoch();
    // Per day: minutes and sums per class.
    let mut days: BTreeMap<i64, (u64, u64, BTreeMap<String, Sums>)> = BTreeMap::new();
    for r in rows {
        let d = days.entry(r.day).or_default();
        d.0 += u64::from(r.observed_minutes);
        d.1 += u64::from(r.ready_minutes.min(r.observed_minutes));
        for c in &r.classes {
            d.2.entry(c.class.clone()).or_default().add(c);
        }
    }
    let figures = |sums: &BTreeMap<String, Sums>| -> BTreeMap<String, Figures> {
        sums.iter().filter(|(_, s)| s.requests > 0).map(|(k, s)| (k.clone(), s.figures())).collect()
    };
    let day_list = days
        .range(today_n - (DAYS - 1)..=today_n)
        .map(|(day, (observed, ready, sums))| DayHistory {
            date: Date::from_days_since_epoch(*day).to_string(),
            availability: share(*ready, *observed),
            classes: figures(sums),
        })
        .collect();
    let months = (0..MONTHS)
        .rev()
        .map(|back| {
            let start = months_before(today, back);
            let end = if back == 0 { today_n } else { months_before(today, back - 1).days_since_epoch() - 1 };
            let (mut observed, mut ready, mut sums) = (0, 0, BTreeMap::<String, Sums>::new());
            for (_, (o, r, s)) in days.range(start.days_since_epoch()..=end) {
                observed += o;
                ready += r;
                for (k, v) in s {
                    sums.entry(k.clone()).or_default().merge(v);
                }
            }
            for class in [OpClass::Verification, OpClass::StatusUpdate] {
                sums.entry(class.as_str().to_owned()).or_default();
            }
            MonthHistory {
                month: format!("{:04}-{:02}", start.year(), start.month()),
                availability: share(ready, observed),
                classes: sums
                    .iter()
                    .filter(|(k, s)| s.requests > 0 || *k == "verification" || *k == "status_update")
                    .map(|(k, s)| (k.clone(), s.figures()))
                    .collect(),
            }
        })
        .collect();
    let (mut observed, mut ready, mut last30) = (0, 0, BTreeMap::<String, Sums>::new());
    for (_, (o, r, s)) in days.range(today_n - 29..=today_n) {
        observed += o;
        ready += r;
        for (k, v) in s {
            last30.entry(k.clone()).or_default().merge(v);
        }
    }
    History {
        days: day_list,
        months,
        availability_30d: share(ready, observed).unwrap_or(1.0),
        mean_ms_30d: last30.iter().map(|(k, s)| (k.clone(), s.figures().mean_ms)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(name: &str, requests: u64, slow: u64) -> SlaClassDay {
        let mut buckets = vec![0; DAY_BUCKETS];
        buckets[3] = requests - slow; // 1.5 to 2 ms
        buckets[DAY_BUCKETS - 2] = slow; // 10 to 30 s
        SlaClassDay {
            class: name.into(),
            requests,
            under_300ms: requests - slow,
            sum_micros: (requests - slow) * 2_000 + slow * 20_000_000,
            buckets,
        }
    }

    fn row(day: i64, node: &str, requests: u64, slow: u64) -> SlaNodeDay {
        SlaNodeDay {
            scope: "DE".into(),
            day,
            node: node.into(),
            observed_minutes: 1000,
            ready_minutes: 990,
            classes: vec![class("verification", requests, slow)],
        }
    }

    #[test]
    fn nodes_are_summed_per_day_and_month_with_percentiles_from_the_summed_buckets() {
        let now = Timestamp::start_of(Date::new(2027, 3, 15).unwrap());
        let today = now.date().days_since_epoch();
        let feb = Date::new(2027, 2, 10).unwrap().days_since_epoch();
        let rows = vec![
            row(today, "a", 100, 0),
            row(today, "b", 100, 10),
            row(feb, "a", 1000, 0),
            row(today - 40, "gone", 50, 50), // 2027-02-03: in February, not in the last 30 days
        ];
        let h = summarise(&rows, now);
        assert_eq!(h.days.len(), 1);
        let d = &h.days[0].classes["verification"];
        assert_eq!((d.requests, d.share_under_300ms), (200, 0.95));
        assert_eq!((d.p95_ms, d.p99_ms), (Some(2.0), Some(30_000.0)));
        assert_eq!(h.days[0].availability, Some(0.99));
        let months: Vec<&str> = h.months.iter().map(|m| m.month.as_str()).collect();
        assert_eq!(months, vec!["2026-10", "2026-11", "2026-12", "2027-01", "2027-02", "2027-03"]);
        assert_eq!(h.months[4].classes["verification"].requests, 1050);
        assert_eq!(h.months[0].classes["verification"].requests, 0);
        assert_eq!(h.months[0].availability, None);
        assert!(h.months[0].classes.contains_key("status_update"));
        assert_eq!(h.this_month(OpClass::Verification).requests, 200);
        assert_eq!(h.availability_30d, 0.99);
    }

    #[test]
    fn a_month_back_crosses_the_year() {
        let d = Date::new(2027, 2, 20).unwrap();
        assert_eq!(months_before(d, 0), Date::new(2027, 2, 1).unwrap());
        assert_eq!(months_before(d, 2), Date::new(2026, 12, 1).unwrap());
        assert_eq!(months_before(d, 14), Date::new(2025, 12, 1).unwrap());
    }
}
