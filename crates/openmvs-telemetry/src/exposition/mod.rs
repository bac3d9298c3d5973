//! The Prometheus text exposition format 0.0.4, written in one place.
//!
//! [`Exposition`] is the only code that writes `/metrics` text: it writes a family's `# HELP` and
//! `# TYPE` lines once, before all of the family's samples, escapes help texts and label values,
//! formats numbers (integers in decimal, microseconds as exact decimal seconds) and writes
//! histograms as cumulative `_bucket` lines ending with `+Inf`, then `_sum` and `_count`.
//! [`check_exposition`] reads a whole exposition back, strictly, for the tests.

use std::fmt::Write as _;

use crate::histogram::{Histogram, Unit};

mod check;

pub use check::{Exposed, ExposedSample, ExpositionError, check_exposition};

/// The content type of the text format 0.0.4, for the `/metrics` answer.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// A metric family's type, as its `# TYPE` line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// A count that only goes up; its name ends with `_total`.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Cumulative buckets, a sum and a count.
    Histogram,
}

impl MetricType {
    /// The word on the `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        }
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A number a sample can have: an integer, written in decimal, or a flag, written as 0 or 1.
pub trait SampleValue: sealed::Sealed + Copy {
    /// Appends the value as the exposition writes it.
    fn write_to(self, out: &mut String);
}

macro_rules! integer_sample_values {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl SampleValue for $t {
            fn write_to(self, out: &mut String) {
                let _ = write!(out, "{self}");
            }
        }
    )*};
}
integer_sample_values!(u64, i64, usize);

impl sealed::Sealed for bool {}
impl SampleValue for bool {
    fn write_to(self, out: &mut String) {
        out.push(if self { '1' } else { '0' });
    }
}

/// A histogram's bound or sum, in the histogram's unit.
#[derive(Clone, Copy)]
struct InUnit(Unit, u64);

impl sealed::Sealed for InUnit {}
impl SampleValue for InUnit {
    fn write_to(self, out: &mut String) {
        match self.0 {
            Unit::Micros => write_micros_as_seconds(out, self.1),
            Unit::Count => self.1.write_to(out),
        }
    }
}

/// A `/metrics` answer being written, family by family.
///
/// Each family is declared once (its help text and type), then its samples follow; declaring a
/// family a second time is a programming mistake, caught in debug builds (and by the tests that
/// read a whole `/metrics` answer back with [`check_exposition`]).
///
/// ```
/// use openmvs_telemetry::Exposition;
///
/// let mut e = Exposition::new();
/// e.gauge("openmvs_queue_length", "Messages waiting.", 3_u64);
/// e.counter_family("openmvs_refused_total", "Requests refused, by reason.")
///     .sample(&[("reason", "limit")], 2)
///     .sample(&[("reason", "busy")], 0);
/// let text = e.into_text();
/// assert_eq!(
///     text.lines().collect::<Vec<_>>(),
///     [
///         "# HELP openmvs_queue_length Messages waiting.",
///         "# TYPE openmvs_queue_length gauge",
///         "openmvs_queue_length 3",
///         "# HELP openmvs_refused_total Requests refused, by reason.",
///         "# TYPE openmvs_refused_total counter",
///         r#"openmvs_refused_total{reason="limit"} 2"#,
///         r#"openmvs_refused_total{reason="busy"} 0"#,
///     ]
/// );
/// ```
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
    /// The families declared so far, to catch one declared twice.
    families: Vec<String>,
}

impl Exposition {
    /// Nothing written yet.
    pub fn new() -> Exposition {
        Exposition { text: String::with_capacity(16 * 1024), families: Vec::new() }
    }

    /// A counter family with one sample and no labels.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) -> &mut Exposition {
        self.counter_family(name, help).sample(&[], value);
        self
    }

    /// A gauge family with one sample and no labels.
    pub fn gauge(&mut self, name: &str, help: &str, value: impl SampleValue) -> &mut Exposition {
        self.gauge_family(name, help).sample(&[], value);
        self
    }

    /// Declares a counter family (its name ends with `_total`); its samples follow.
    pub fn counter_family<'a>(&'a mut self, name: &'a str, help: &str) -> CounterFamily<'a> {
        debug_assert!(name.ends_with("_total"), "counter {name}: a counter's name ends with _total");
        CounterFamily(self.family(name, help, MetricType::Counter))
    }

    /// Declares a gauge family; its samples follow.
    pub fn gauge_family<'a>(&'a mut self, name: &'a str, help: &str) -> GaugeFamily<'a> {
        GaugeFamily(self.family(name, help, MetricType::Gauge))
    }

    /// Declares a histogram family; its series follow.
    pub fn histogram_family<'a>(&'a mut self, name: &'a str, help: &str) -> HistogramFamily<'a> {
        HistogramFamily(self.family(name, help, MetricType::Histogram))
    }

    /// The text written.
    pub fn into_text(self) -> String {
        self.text
    }

    /// Writes the `# HELP` and `# TYPE` lines of a family.
    pub(crate) fn family<'a>(&'a mut self, name: &'a str, help: &str, kind: MetricType) -> Family<'a> {
        debug_assert!(is_metric_name(name), "{name:?} is not a metric name");
        debug_assert!(!self.families.iter().any(|f| f == name), "metric family {name} written twice");
        self.families.push(name.to_owned());
        let out = &mut self.text;
        let _ = write!(out, "# HELP {name} ");
        for c in help.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        let _ = writeln!(out, "\n# TYPE {name} {}", kind.as_str());
        Family { out, name }
    }
}

/// A declared family of any type, taking its samples.
#[derive(Debug)]
pub(crate) struct Family<'a> {
    out: &'a mut String,
    name: &'a str,
}

impl Family<'_> {
    /// One sample of a counter or a gauge.
    pub(crate) fn sample(&mut self, labels: &[(&str, &str)], value: impl SampleValue) {
        write_sample(self.out, self.name, "", labels, None, value);
    }

    /// One histogram series: the cumulative buckets, `+Inf` last, then `_sum` and `_count`.
    pub(crate) fn histogram(&mut self, labels: &[(&str, &str)], histogram: &Histogram) {
        let unit = histogram.unit();
        let bounds = histogram.bounds();
        // `_count` is the `+Inf` bucket of the same reading, so the two always agree.
        let mut cumulative = 0u64;
        let mut le = String::with_capacity(16);
        for (i, n) in histogram.counts().into_iter().enumerate() {
            cumulative += n;
            le.clear();
            match bounds.get(i) {
                Some(&bound) => InUnit(unit, bound).write_to(&mut le),
                None => le.push_str("+Inf"),
            }
            write_sample(self.out, self.name, "_bucket", labels, Some(&le), cumulative);
        }
        write_sample(self.out, self.name, "_sum", labels, None, InUnit(unit, histogram.sum()));
        write_sample(self.out, self.name, "_count", labels, None, cumulative);
    }
}

/// A declared counter family, taking its samples.
#[derive(Debug)]
pub struct CounterFamily<'a>(Family<'a>);

impl CounterFamily<'_> {
    /// One sample; `labels` are `(name, value)` pairs, in the same order of names for every
    /// sample of the family.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: u64) -> &mut Self {
        self.0.sample(labels, value);
        self
    }
}

/// A declared gauge family, taking its samples.
#[derive(Debug)]
pub struct GaugeFamily<'a>(Family<'a>);

impl GaugeFamily<'_> {
    /// One sample; labels as for [`CounterFamily::sample`].
    pub fn sample(&mut self, labels: &[(&str, &str)], value: impl SampleValue) -> &mut Self {
        self.0.sample(labels, value);
        self
    }
}

/// A declared histogram family, taking its series.
#[derive(Debug)]
pub struct HistogramFamily<'a>(Family<'a>);

impl HistogramFamily<'_> {
    /// One series: the histogram as it is now, under `labels` (as for [`CounterFamily::sample`],
    /// without `le`, which the buckets add).
    pub fn series(&mut self, labels: &[(&str, &str)], histogram: &Histogram) -> &mut Self {
        self.0.histogram(labels, histogram);
        self
    }
}

/// `name` + `suffix`, the labels (`le` last), a space, the value and a line feed.
fn write_sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[(&str, &str)],
    le: Option<&str>,
    value: impl SampleValue,
) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || le.is_some() {
        out.push('{');
        let le = le.map(|le| ("le", le));
        for (i, (label, value)) in labels.iter().chain(le.as_ref()).enumerate() {
            debug_assert!(is_label_name(label), "{label:?} is not a label name");
            if i > 0 {
                out.push(',');
            }
            out.push_str(label);
            out.push_str("=\"");
            escape_label_value(out, value);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    value.write_to(out);
    out.push('\n');
}

/// A label value as the format quotes it: backslash, double quote and line feed escaped.
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Writes microseconds as decimal seconds with integer arithmetic, so that bucket bounds are
/// exact (`300000` becomes `0.3`, never `0.30000000000000004`) and never in exponent form.
fn write_micros_as_seconds(out: &mut String, micros: u64) {
    let (secs, frac) = (micros / 1_000_000, micros % 1_000_000);
    if frac == 0 {
        let _ = write!(out, "{secs}");
    } else {
        let digits = format!("{frac:06}");
        let _ = write!(out, "{secs}.{}", digits.trim_end_matches('0'));
    }
}

/// Prometheus' metric name rule: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub(crate) fn is_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// Prometheus' label name rule: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub(crate) fn is_label_name(label: &str) -> bool {
    let mut bytes = label.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests;
