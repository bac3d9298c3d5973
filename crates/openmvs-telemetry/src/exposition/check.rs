//! A strict reader of the text format 0.0.4, for the tests that check a whole exposition: every
//! line parses, `# HELP` then `# TYPE` open each family once, every sample follows the `# TYPE`
//! line of its own family, no series appears twice, and every histogram series has increasing
//! `le` bounds ending with `+Inf`, cumulative counts, a `_sum` and a `_count` equal to `+Inf`.
//!
//! It is stricter than a scraper where the house writes less than the format allows: no comments,
//! blank lines, timestamps or trailing commas, and only the three types the house uses.

use std::collections::{BTreeMap, HashSet};

use super::{MetricType, is_label_name, is_metric_name};

/// One sample read back.
#[derive(Debug, Clone, PartialEq)]
pub struct ExposedSample {
    /// Its line, counted from 1.
    pub line: usize,
    /// Its family: the sample's name, or for a histogram the name before `_bucket`, `_sum` or
    /// `_count`.
    pub family: String,
    /// The family's type.
    pub kind: MetricType,
    /// The sample's own name.
    pub name: String,
    /// Its labels in the order written, values unescaped.
    pub labels: Vec<(String, String)>,
    /// Its value.
    pub value: f64,
}

/// An exposition read back by [`check_exposition`].
#[derive(Debug, Clone, Default)]
pub struct Exposed {
    /// The families in the order declared, with their types.
    pub families: Vec<(String, MetricType)>,
    /// Every sample, in order.
    pub samples: Vec<ExposedSample>,
    /// The number of histogram series (label sets of histogram families).
    pub histogram_series: usize,
}

impl Exposed {
    /// The value of the sample named `name` with exactly `labels`, in order.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.iter().map(|(l, v)| (l.as_str(), v.as_str())).eq(labels.iter().copied())
            })
            .map(|s| s.value)
    }
}

/// Where an exposition breaks the format, and how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct ExpositionError {
    /// The line, counted from 1.
    pub line: usize,
    /// What is wrong with it.
    pub problem: String,
}

/// Reads a whole exposition, refusing it at its first fault.
pub fn check_exposition(text: &str) -> Result<Exposed, ExpositionError> {
    let last = text.lines().count();
    if !text.is_empty() && !text.ends_with('\n') {
        return Err(ExpositionError { line: last, problem: "the exposition ends with a line feed".into() });
    }
    let mut exposed = Exposed::default();
    // The name of a `# HELP` line still waiting for its `# TYPE` line.
    let mut help: Option<&str> = None;
    let mut seen = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let fail = |problem: String| ExpositionError { line: i + 1, problem };
        if let Some(name) = help.filter(|_| !line.starts_with("# TYPE ")) {
            return Err(fail(format!("# HELP {name} is not followed by its # TYPE line")));
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, doc) = rest.split_once(' ').ok_or_else(|| fail("# HELP without a text".into()))?;
            if !is_metric_name(name) {
                return Err(fail(format!("{name:?} is not a metric name")));
            }
            check_help_escapes(doc).map_err(fail)?;
            help = Some(name);
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or_else(|| fail("# TYPE without a type".into()))?;
            if help != Some(name) {
                return Err(fail(format!("# TYPE {name} without its # HELP line just before")));
            }
            help = None;
            let kind = match kind {
                "counter" => MetricType::Counter,
                "gauge" => MetricType::Gauge,
                "histogram" => MetricType::Histogram,
                _ => return Err(fail(format!("unknown type {kind:?}"))),
            };
            if exposed.families.iter().any(|(f, _)| f == name) {
                return Err(fail(format!("family {name} declared twice")));
            }
            exposed.families.push((name.to_owned(), kind));
        } else if line.is_empty() || line.starts_with('#') {
            return Err(fail(format!("unexpected line {line:?}")));
        } else {
            let (name, labels, value) = parse_sample(line).map_err(fail)?;
            let Some((family, kind)) = exposed.families.last() else {
                return Err(fail(format!("{name} before any # TYPE line")));
            };
            let suffix = name.strip_prefix(family.as_str());
            let belongs = match kind {
                MetricType::Histogram => matches!(suffix, Some("_bucket" | "_sum" | "_count")),
                _ => suffix == Some(""),
            };
            if !belongs {
                return Err(fail(format!("{name} is not in the family {family} declared above it")));
            }
            if labels.iter().enumerate().any(|(j, (l, _))| labels[..j].iter().any(|(k, _)| k == l)) {
                return Err(fail(format!("{name} has a label twice")));
            }
            let has_le = labels.iter().any(|(l, _)| l == "le");
            if *kind == MetricType::Histogram && has_le != (suffix == Some("_bucket")) {
                return Err(fail(format!("{name}: a bucket, and only a bucket, has le")));
            }
            if !seen.insert((name.to_owned(), labels.clone())) {
                return Err(fail(format!("{name}{labels:?} written twice")));
            }
            exposed.samples.push(ExposedSample {
                line: i + 1,
                family: family.clone(),
                kind: *kind,
                name: name.to_owned(),
                labels,
                value,
            });
        }
    }
    if let Some(name) = help {
        return Err(ExpositionError { line: last, problem: format!("# HELP {name} has no # TYPE line") });
    }
    exposed.histogram_series = check_histograms(&exposed.samples)?;
    Ok(exposed)
}

/// A help text escapes only backslash (`\\`) and line feed (`\n`).
fn check_help_escapes(doc: &str) -> Result<(), String> {
    let mut chars = doc.chars();
    while let Some(c) = chars.next() {
        if c == '\\' && !matches!(chars.next(), Some('\\' | 'n')) {
            return Err(format!("bad escape in the help text {doc:?}"));
        }
    }
    Ok(())
}

type Labels = Vec<(String, String)>;

/// Parses `name{label="value",...} value` or `name value`.
fn parse_sample(line: &str) -> Result<(&str, Labels, f64), String> {
    let name_end = line.find(['{', ' ']).ok_or("a sample without a value")?;
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err(format!("{name:?} is not a metric name"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(mut inner) = rest.strip_prefix('{') {
        while !inner.starts_with('}') {
            let (label, after) = inner.split_once("=\"").ok_or("a label is name=\"value\"")?;
            if !is_label_name(label) {
                return Err(format!("{label:?} is not a label name"));
            }
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next().ok_or("a label value without its closing quote")? {
                    (i, '"') => break i + 1,
                    (_, '\\') => value.push(match chars.next() {
                        Some((_, '\\')) => '\\',
                        Some((_, '"')) => '"',
                        Some((_, 'n')) => '\n',
                        _ => return Err(format!("bad escape in the value of {label}")),
                    }),
                    (_, c) => value.push(c),
                }
            };
            labels.push((label.to_owned(), value));
            inner = &after[end..];
            if let Some(next) = inner.strip_prefix(',') {
                if next.starts_with('}') {
                    return Err("a comma before }".into());
                }
                inner = next;
            } else if !inner.starts_with('}') {
                return Err(format!("',' or '}}' expected after the value of {label}"));
            }
        }
        rest = &inner[1..];
    }
    let value = rest.strip_prefix(' ').ok_or("one space before the value")?;
    let parsed = match value {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        // Rust would also take "inf" and "nan"; the format does not.
        v if v.bytes().all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) => v.parse().ok(),
        _ => None,
    };
    let value = parsed.ok_or_else(|| format!("bad value {value:?} (a timestamp is not written)"))?;
    Ok((name, labels, value))
}

/// Checks every histogram series; returns how many there are.
fn check_histograms(samples: &[ExposedSample]) -> Result<usize, ExpositionError> {
    type Key<'a> = (&'a str, Vec<&'a (String, String)>);
    let mut buckets: BTreeMap<Key, Vec<(f64, &ExposedSample)>> = BTreeMap::new();
    let mut sums: BTreeMap<Key, &ExposedSample> = BTreeMap::new();
    let mut counts: BTreeMap<Key, &ExposedSample> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.kind == MetricType::Histogram) {
        let fail = |problem: String| ExpositionError { line: s.line, problem };
        let key = (s.family.as_str(), s.labels.iter().filter(|(l, _)| l != "le").collect());
        match &s.name[s.family.len()..] {
            "_bucket" => {
                let le = s.labels.iter().find(|(l, _)| l == "le").map_or("", |(_, v)| v.as_str());
                // A bound is a plain decimal, never in exponent form, or +Inf.
                let bound = match le {
                    "+Inf" => Some(f64::INFINITY),
                    le if le.bytes().all(|b| b.is_ascii_digit() || b == b'.') => le.parse().ok(),
                    _ => None,
                };
                let bound = bound.ok_or_else(|| fail(format!("bad bound le={le:?}")))?;
                buckets.entry(key).or_default().push((bound, s));
            }
            "_sum" => {
                sums.insert(key, s);
            }
            _ => {
                counts.insert(key, s);
            }
        }
    }
    for (key, series) in &buckets {
        let at = |s: &ExposedSample, problem: &str| ExpositionError {
            line: s.line,
            problem: format!("{} {:?}: {problem}", key.0, key.1),
        };
        for w in series.windows(2) {
            if w[0].0 >= w[1].0 {
                return Err(at(w[1].1, "le bounds increase"));
            }
            if w[0].1.value > w[1].1.value {
                return Err(at(w[1].1, "bucket counts are cumulative"));
            }
        }
        let &(bound, last) = series.last().expect("a series has a bucket");
        if bound != f64::INFINITY {
            return Err(at(last, "the last bucket is le=\"+Inf\""));
        }
        match counts.get(key) {
            Some(count) if count.value == last.value => {}
            _ => return Err(at(last, "a _count equal to the +Inf bucket")),
        }
        if !sums.contains_key(key) {
            return Err(at(last, "a _sum"));
        }
    }
    if let Some((key, s)) = sums.iter().chain(&counts).find(|(key, _)| !buckets.contains_key(*key)) {
        return Err(ExpositionError {
            line: s.line,
            problem: format!("{} {:?} has no buckets", key.0, key.1),
        });
    }
    Ok(buckets.len())
}
