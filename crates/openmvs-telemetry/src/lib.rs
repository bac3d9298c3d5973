//! OpenMVS observability: Prometheus metrics for the HTTP servers and the DR Art 35 latency
//! figures for `/status`.
//!
//! - [`Metrics`] is the registry behind `GET /metrics`: a latency histogram per [`OpClass`] and
//!   HTTP status class (`openmvs_request_duration_seconds`), plus counters, gauges and histograms
//!   registered up front by the rest of the server.
//! - [`Exposition`] writes the Prometheus text format 0.0.4, and is the only code that does: the
//!   registry and every other figure on `/metrics` go through it, which writes each family's
//!   `# HELP` and `# TYPE` once, escapes label values and formats numbers.
//!   [`check_exposition`] reads a whole exposition back, strictly, for the tests.
//! - [`AlertTally`] counts alerts per alert code, lock-free, for the business figures the
//!   services show (alerts raised at a national system, received at the hub).
//! - [`SlaTracker`] keeps, per UTC day, how many verifications and status updates were answered
//!   and how many in under 300 ms, and gives the month's share, the 30-day mean, availability and
//!   incidents as an [`SlaReport`].
//!
//! Architecture invariant: this crate reads no clock and does no IO. Times come in as numbers
//! (Unix milliseconds for instants, microseconds for durations) so every figure is testable;
//! [`duration_micros`] converts what the caller measured. Recording is lock-free and
//! allocation-free; locks are taken only to register a metric, render, report or persist.

mod alert_tally;
mod exposition;
mod histogram;
mod metrics;
mod op_class;
mod sla;

pub use alert_tally::AlertTally;
pub use exposition::{
    CONTENT_TYPE, CounterFamily, Exposed, ExposedSample, Exposition, ExpositionError, GaugeFamily,
    HistogramFamily, MetricType, SampleValue, check_exposition,
};
pub use histogram::{Histogram, LATENCY_BOUNDS_MICROS, SIZE_BOUNDS, Unit, duration_micros};
pub use metrics::{Counter, Gauge, MAX_SERIES_PER_METRIC, Metrics, MetricsError, REQUEST_DURATION};
pub use op_class::OpClass;
pub use sla::{
    AvailabilityDay, ClassDay, DAY_BUCKETS, DAY_LATENCY_BOUNDS_MICROS, DayFigures, Incident, MAX_INCIDENTS,
    MINUTE_WORDS, MonthFigures, NodeDay, OpSla, SlaReport, SlaSnapshot, SlaTracker, SnapshotError, TRACKED,
    percentile_ms,
};
