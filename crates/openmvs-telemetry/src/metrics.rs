//! The metrics registry: request latency per operation class and status class, plus the counters,
//! gauges and histograms that other parts of a server register up front, written as Prometheus text
//! by [`Exposition`].

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::exposition::{Exposition, MetricType};
use crate::histogram::{Histogram, Unit};
use crate::op_class::OpClass;

/// The name of the built-in request latency histogram.
pub const REQUEST_DURATION: &str = "openmvs_request_duration_seconds";

/// At most this many label combinations per registered metric. A label value taken from a request
/// by mistake would otherwise grow the registry (and every scrape) without bound.
pub const MAX_SERIES_PER_METRIC: usize = 1_000;

/// The status label values, indexed by [`status_class`].
const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

/// Index into [`STATUS_CLASSES`]: the hundreds digit for a valid HTTP status, `other` otherwise.
#[inline]
fn status_class(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status / 100) - 1,
        _ => STATUS_CLASSES.len() - 1,
    }
}

/// A registration the registry refuses. These are programming mistakes, found at start-up
/// because every metric is registered before the server takes traffic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    /// The metric name breaks the house naming rule.
    #[error("metric name '{name}': {rule}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// A label name breaks the Prometheus label rule.
    #[error("metric '{name}' label '{label}': {rule}")]
    InvalidLabel {
        /// The metric name.
        name: String,
        /// The label name as given.
        label: String,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// The name is already registered with another type, help text or set of label names.
    #[error("metric '{name}' is already registered with a different {what}")]
    Conflict {
        /// The metric name.
        name: String,
        /// What differs: "type", "help text" or "label names".
        what: &'static str,
    },
    /// The metric already has [`MAX_SERIES_PER_METRIC`] label combinations.
    #[error("metric '{name}' already has {MAX_SERIES_PER_METRIC} label combinations")]
    TooManySeries {
        /// The metric name.
        name: String,
    },
}

/// A monotonically increasing count. Cloning gives another handle on the same count.
#[derive(Debug, Clone)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down, such as a queue length. Cloning gives another handle on the
/// same value.
#[derive(Debug, Clone)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    /// Sets the value.
    #[inline]
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// Adds `delta` (which may be negative).
    #[inline]
    pub fn add(&self, delta: i64) {
        self.0.fetch_add(delta, Ordering::Relaxed);
    }

    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Subtracts one.
    #[inline]
    pub fn dec(&self) {
        self.add(-1);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Clone)]
enum Value {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Arc<Histogram>),
}

#[derive(Debug)]
struct Series {
    /// The label values, in the family's label-name order.
    values: Vec<String>,
    value: Value,
}

#[derive(Debug)]
struct Family {
    name: String,
    help: String,
    kind: MetricType,
    label_names: Vec<String>,
    series: Vec<Series>,
}

/// The registry of one server's metrics.
///
/// Request latency has a fixed table of histograms (one per [`OpClass`] and status class), so
/// [`Metrics::request`] is an index computation and two atomic additions: no lock, no hashing, no
/// allocation. Other metrics are registered once (taking a mutex, allocating) and then updated
/// through their handles, which never touch the registry again. Only writing it out
/// ([`Metrics::render`], [`Metrics::write_to`]) and registration take the lock.
#[derive(Debug)]
pub struct Metrics {
    /// `OpClass::ALL.len() * STATUS_CLASSES.len()` histograms, class-major.
    requests: Box<[Histogram]>,
    families: Mutex<Vec<Family>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// An empty registry with the request latency histograms.
    pub fn new() -> Metrics {
        Metrics {
            requests: (0..OpClass::ALL.len() * STATUS_CLASSES.len()).map(|_| Histogram::latency()).collect(),
            families: Mutex::new(Vec::new()),
        }
    }

    /// Records one answered request: its class, the HTTP status sent and the time from receiving
    /// the request to sending the answer, in microseconds.
    #[inline]
    pub fn request(&self, class: OpClass, status: u16, micros: u64) {
        self.request_histogram(class, status).observe(micros);
    }

    /// The latency histogram behind [`Metrics::request`] for a class and a status (any status of
    /// the same class, e.g. 404 for `4xx`).
    pub fn request_histogram(&self, class: OpClass, status: u16) -> &Histogram {
        &self.requests[class.index() * STATUS_CLASSES.len() + status_class(status)]
    }

    /// Registers (or finds again) a counter. `name` must start with `openmvs_` and end with
    /// `_total`; `labels` are `(name, value)` pairs, in the same order of names for every
    /// combination of one metric. Registering the same name and label values again returns a
    /// handle on the same count.
    pub fn counter(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Result<Counter, MetricsError> {
        if !name.ends_with("_total") {
            return Err(invalid_name(name, "a counter's name ends with _total"));
        }
        let value = self.register(name, help, labels, MetricType::Counter, || {
            Value::Counter(Counter(Arc::new(AtomicU64::new(0))))
        })?;
        match value {
            Value::Counter(c) => Ok(c),
            _ => unreachable!("the family kind was checked"),
        }
    }

    /// Registers (or finds again) a gauge, starting at 0. Names and labels as for
    /// [`Metrics::counter`], without the `_total` suffix.
    pub fn gauge(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Result<Gauge, MetricsError> {
        let value = self.register(name, help, labels, MetricType::Gauge, || {
            Value::Gauge(Gauge(Arc::new(AtomicI64::new(0))))
        })?;
        match value {
            Value::Gauge(g) => Ok(g),
            _ => unreachable!("the family kind was checked"),
        }
    }

    /// Registers (or finds again) a latency histogram; observe microseconds. The name ends with
    /// `_seconds`, the unit it renders in.
    pub fn latency_histogram(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
    ) -> Result<Arc<Histogram>, MetricsError> {
        if !name.ends_with("_seconds") {
            return Err(invalid_name(name, "a latency histogram's name ends with _seconds"));
        }
        self.histogram(name, help, labels, Unit::Micros)
    }

    /// Registers (or finds again) a histogram of sizes, such as `openmvs_group_commit_batch_size`;
    /// observe counts.
    pub fn size_histogram(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
    ) -> Result<Arc<Histogram>, MetricsError> {
        self.histogram(name, help, labels, Unit::Count)
    }

    fn histogram(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        unit: Unit,
    ) -> Result<Arc<Histogram>, MetricsError> {
        let value = self.register(name, help, labels, MetricType::Histogram, || {
            Value::Histogram(Arc::new(match unit {
                Unit::Micros => Histogram::latency(),
                Unit::Count => Histogram::sizes(),
            }))
        })?;
        match value {
            Value::Histogram(h) => {
                // A latency and a size histogram under one name would render incompatible buckets.
                if h.unit() != unit {
                    return Err(MetricsError::Conflict { name: name.to_owned(), what: "unit" });
                }
                Ok(h)
            }
            _ => unreachable!("the family kind was checked"),
        }
    }

    fn register(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        kind: MetricType,
        make: impl FnOnce() -> Value,
    ) -> Result<Value, MetricsError> {
        check_name(name)?;
        for (label, _) in labels {
            check_label(name, label)?;
        }
        let mut families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        let index = match families.iter().position(|f| f.name == name) {
            Some(i) => i,
            None => {
                families.push(Family {
                    name: name.to_owned(),
                    help: help.to_owned(),
                    kind,
                    label_names: labels.iter().map(|(l, _)| (*l).to_owned()).collect(),
                    series: Vec::new(),
                });
                families.len() - 1
            }
        };
        let family = &mut families[index];
        let conflict = |what| MetricsError::Conflict { name: name.to_owned(), what };
        if family.kind != kind {
            return Err(conflict("type"));
        }
        if family.help != help {
            return Err(conflict("help text"));
        }
        if !family.label_names.iter().map(String::as_str).eq(labels.iter().map(|(l, _)| *l)) {
            return Err(conflict("label names"));
        }
        if let Some(series) = family
            .series
            .iter()
            .find(|s| s.values.iter().map(String::as_str).eq(labels.iter().map(|(_, v)| *v)))
        {
            return Ok(series.value.clone());
        }
        if family.series.len() >= MAX_SERIES_PER_METRIC {
            return Err(MetricsError::TooManySeries { name: name.to_owned() });
        }
        let value = make();
        family.series.push(Series {
            values: labels.iter().map(|(_, v)| (*v).to_owned()).collect(),
            value: value.clone(),
        });
        Ok(value)
    }

    /// The whole registry in the Prometheus text exposition format 0.0.4 (content type
    /// [`crate::CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = Exposition::new();
        self.write_to(&mut out);
        out.into_text()
    }

    /// Writes the whole registry into `out`, for an exposition with more families after it.
    ///
    /// Request latency series appear once a request of that class and status class was answered:
    /// writing all 36 combinations from the start would add some 800 mostly-zero lines to every
    /// scrape. Registered metrics appear from registration on, in registration order.
    pub fn write_to(&self, out: &mut Exposition) {
        let mut requests = out.histogram_family(
            REQUEST_DURATION,
            "Time from receiving a request to sending its answer, by operation class and HTTP status class.",
        );
        for class in OpClass::ALL {
            for (s, status) in STATUS_CLASSES.iter().enumerate() {
                let h = &self.requests[class.index() * STATUS_CLASSES.len() + s];
                if h.count() > 0 {
                    requests.series(&[("class", class.as_str()), ("status", status)], h);
                }
            }
        }
        let families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        for family in families.iter() {
            let mut samples = out.family(&family.name, &family.help, family.kind);
            for series in &family.series {
                let labels: Vec<(&str, &str)> = family
                    .label_names
                    .iter()
                    .map(String::as_str)
                    .zip(series.values.iter().map(String::as_str))
                    .collect();
                match &series.value {
                    Value::Counter(c) => samples.sample(&labels, c.get()),
                    Value::Gauge(g) => samples.sample(&labels, g.get()),
                    Value::Histogram(h) => samples.histogram(&labels, h),
                }
            }
        }
    }
}

fn invalid_name(name: &str, rule: &'static str) -> MetricsError {
    MetricsError::InvalidName { name: name.to_owned(), rule }
}

/// House rule, stricter than Prometheus': `openmvs_` then lower-case letters, digits and `_`.
fn check_name(name: &str) -> Result<(), MetricsError> {
    let Some(rest) = name.strip_prefix("openmvs_") else {
        return Err(invalid_name(name, "names start with openmvs_"));
    };
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        return Err(invalid_name(name, "after openmvs_, only a-z, 0-9 and _ (at least one)"));
    }
    if name == REQUEST_DURATION {
        return Err(invalid_name(name, "this name is built in"));
    }
    Ok(())
}

/// Prometheus' label rule (`[a-zA-Z_][a-zA-Z0-9_]*`, `__` reserved), and `le` kept for buckets.
fn check_label(name: &str, label: &str) -> Result<(), MetricsError> {
    let invalid = |rule| MetricsError::InvalidLabel { name: name.to_owned(), label: label.to_owned(), rule };
    let mut bytes = label.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' => {}
        _ => return Err(invalid("label names start with a letter or _")),
    }
    if !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(invalid("label names hold only a-z, A-Z, 0-9 and _"));
    }
    if label.starts_with("__") {
        return Err(invalid("label names starting with __ are reserved to Prometheus"));
    }
    if label == "le" {
        return Err(invalid("le is the histogram bucket label"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_fall_in_their_hundreds_and_nonsense_in_other() {
        assert_eq!(STATUS_CLASSES[status_class(200)], "2xx");
        assert_eq!(STATUS_CLASSES[status_class(299)], "2xx");
        assert_eq!(STATUS_CLASSES[status_class(404)], "4xx");
        assert_eq!(STATUS_CLASSES[status_class(503)], "5xx");
        assert_eq!(STATUS_CLASSES[status_class(101)], "1xx");
        assert_eq!(STATUS_CLASSES[status_class(99)], "other");
        assert_eq!(STATUS_CLASSES[status_class(600)], "other");
        assert_eq!(STATUS_CLASSES[status_class(0)], "other");
    }
}
