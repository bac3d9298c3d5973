//! The Prometheus text rendering and the registry's rules, checked by parsing what is rendered.

use std::collections::{BTreeMap, HashSet};

use openmvs_telemetry::{MAX_SERIES_PER_METRIC, Metrics, MetricsError, OpClass};

/// One sample line: metric name, labels in order, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// A deliberately small parser of the text format 0.0.4, strict where a real scraper is strict.
/// Returns the samples, each with the family declared by the `# TYPE` line it follows.
fn parse(text: &str) -> Vec<(String, String, Sample)> {
    assert!(text.ends_with('\n'), "the exposition ends with a line feed");
    let mut samples = Vec::new();
    let mut family: Option<(String, String)> = None;
    let mut seen = HashSet::new();
    let mut help_for = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _) = rest.split_once(' ').expect("HELP has a name and a text");
            assert!(valid_name(name), "{line}");
            help_for = Some(name.to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE has a name and a type");
            assert_eq!(help_for.as_deref(), Some(name), "HELP precedes TYPE: {line}");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(seen.insert(name.to_owned()), "family {name} declared twice");
            family = Some((name.to_owned(), kind.to_owned()));
        } else {
            assert!(!line.starts_with('#') && !line.is_empty(), "unexpected line {line:?}");
            let sample = parse_sample(line);
            let (fam, kind) = family.clone().expect("a sample follows a TYPE line");
            let expected: Vec<String> = if kind == "histogram" {
                ["_bucket", "_sum", "_count"].iter().map(|s| format!("{fam}{s}")).collect()
            } else {
                vec![fam.clone()]
            };
            assert!(expected.contains(&sample.name), "{} outside its family {fam}", sample.name);
            samples.push((fam, kind, sample));
        }
    }
    samples
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parses `name{label="value",...} value` or `name value`.
fn parse_sample(line: &str) -> Sample {
    let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("no value: {line}"));
    let name = &line[..name_end];
    assert!(valid_name(name), "{line}");
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        loop {
            let start = chars.peek().expect("label or }").0;
            if inner[start..].starts_with('}') {
                rest = &inner[start + 1..];
                break;
            }
            let eq = inner[start..].find('=').expect("label=") + start;
            let label = &inner[start..eq];
            assert!(valid_name(label) && !label.contains(':'), "label {label:?} in {line}");
            while chars.peek().expect("label").0 <= eq {
                chars.next();
            }
            assert_eq!(chars.next().map(|c| c.1), Some('"'), "{line}");
            let mut value = String::new();
            loop {
                match chars.next().expect("closing quote").1 {
                    '"' => break,
                    '\\' => value.push(match chars.next().expect("escape").1 {
                        '\\' => '\\',
                        '"' => '"',
                        'n' => '\n',
                        c => panic!("bad escape \\{c} in {line}"),
                    }),
                    '\n' => panic!("raw line feed in {line}"),
                    c => value.push(c),
                }
            }
            labels.push((label.to_owned(), value));
            match chars.peek().expect("',' or '}'").1 {
                ',' => {
                    chars.next();
                }
                '}' => {}
                c => panic!("unexpected {c:?} after a label value in {line}"),
            }
        }
    }
    let value = rest.strip_prefix(' ').unwrap_or_else(|| panic!("one space before the value: {line}"));
    assert!(!value.contains(' '), "no timestamps: {line}");
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().unwrap_or_else(|_| panic!("bad value {v:?} in {line}")),
    };
    Sample { name: name.to_owned(), labels, value }
}

/// Checks every histogram series: `le` increasing and ending with `+Inf`, counts cumulative, the
/// `+Inf` bucket equal to `_count`, and a `_sum`. Returns the number of series checked.
fn check_histograms(samples: &[(String, String, Sample)]) -> usize {
    type Key = (String, Vec<(String, String)>);
    let mut buckets: BTreeMap<Key, Vec<(f64, f64)>> = BTreeMap::new();
    let mut sums: BTreeMap<Key, f64> = BTreeMap::new();
    let mut counts: BTreeMap<Key, f64> = BTreeMap::new();
    for (family, _, s) in samples.iter().filter(|(_, kind, _)| kind == "histogram") {
        let mut labels = s.labels.clone();
        let le = labels.iter().position(|(l, _)| l == "le");
        let key = |labels: Vec<(String, String)>| (family.clone(), labels);
        if s.name.ends_with("_bucket") {
            let (_, le) = labels.remove(le.expect("a bucket has le"));
            // A bound is written as a plain decimal, never in exponent form.
            assert!(le == "+Inf" || le.chars().all(|c| c.is_ascii_digit() || c == '.'), "le {le:?}");
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap() };
            buckets.entry(key(labels)).or_default().push((le, s.value));
        } else if s.name.ends_with("_sum") {
            assert!(le.is_none());
            sums.insert(key(labels), s.value);
        } else {
            assert!(le.is_none());
            counts.insert(key(labels), s.value);
        }
    }
    for (key, series) in &buckets {
        assert!(series.windows(2).all(|w| w[0].0 < w[1].0), "le increases: {key:?}");
        assert!(series.windows(2).all(|w| w[0].1 <= w[1].1), "counts are cumulative: {key:?}");
        let last = series.last().unwrap();
        assert_eq!(last.0, f64::INFINITY, "ends with +Inf: {key:?}");
        assert_eq!(Some(&last.1), counts.get(key), "+Inf equals _count: {key:?}");
        assert!(sums.contains_key(key), "has _sum: {key:?}");
    }
    assert_eq!(buckets.len(), counts.len());
    assert_eq!(buckets.len(), sums.len());
    buckets.len()
}

fn value_of(samples: &[(String, String, Sample)], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .map(|(_, _, s)| s)
        .find(|s| {
            s.name == name
                && s.labels.iter().map(|(l, v)| (l.as_str(), v.as_str())).eq(labels.iter().copied())
        })
        .unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
        .value
}

#[test]
fn the_rendering_parses_line_by_line_as_prometheus_text() {
    let metrics = Metrics::new();
    metrics.request(OpClass::Verification, 200, 1_200);
    metrics.request(OpClass::Verification, 200, 300_000);
    metrics.request(OpClass::Verification, 404, 900);
    metrics.request(OpClass::StatusUpdate, 503, 45_000_000);
    metrics.request(OpClass::Bulk, 0, 7);
    let alerts = metrics
        .counter("openmvs_alerts_raised_total", "Alerts raised, by alert code.", &[("code", "A2")])
        .unwrap();
    alerts.add(3);
    metrics
        .counter(
            "openmvs_alerts_raised_total",
            "Alerts raised, by alert code.",
            &[("code", "odd \"code\"\\\n")],
        )
        .unwrap()
        .inc();
    metrics
        .gauge("openmvs_outbox_pending", "Messages waiting in the outbox.\nSecond line \\ too.", &[])
        .unwrap()
        .set(-4);
    metrics.gauge("openmvs_dead_letters", "Messages given up on.", &[]).unwrap().set(2);
    let batches = metrics
        .size_histogram("openmvs_group_commit_batch_size", "Units of work per group commit.", &[])
        .unwrap();
    batches.observe(1);
    batches.observe(37);
    let commits = metrics
        .latency_histogram(
            "openmvs_store_commit_duration_seconds",
            "Time to commit.",
            &[("engine", "sqlite")],
        )
        .unwrap();
    commits.observe(2_500);

    let text = metrics.render();
    let samples = parse(&text);
    assert_eq!(check_histograms(&samples), 4 + 2, "four request series and two registered");

    let verification_2xx = [("class", "verification"), ("status", "2xx")];
    let le = |le| [("class", "verification"), ("status", "2xx"), ("le", le)];
    // Cumulative: 1.2 ms is in every bucket from 2.5 ms on; exactly 300 ms joins at le="0.3".
    assert_eq!(value_of(&samples, "openmvs_request_duration_seconds_bucket", &le("0.001")), 0.0);
    assert_eq!(value_of(&samples, "openmvs_request_duration_seconds_bucket", &le("0.25")), 1.0);
    assert_eq!(value_of(&samples, "openmvs_request_duration_seconds_bucket", &le("0.3")), 2.0);
    assert_eq!(value_of(&samples, "openmvs_request_duration_seconds_bucket", &le("0.0025")), 1.0);
    assert_eq!(value_of(&samples, "openmvs_request_duration_seconds_sum", &verification_2xx), 0.3012);
    assert_eq!(value_of(&samples, "openmvs_request_duration_seconds_count", &verification_2xx), 2.0);
    let over_30_s = [("class", "status_update"), ("status", "5xx"), ("le", "30")];
    assert_eq!(value_of(&samples, "openmvs_request_duration_seconds_bucket", &over_30_s), 0.0);
    let bulk = [("class", "bulk"), ("status", "other")];
    assert_eq!(value_of(&samples, "openmvs_request_duration_seconds_count", &bulk), 1.0);

    assert_eq!(value_of(&samples, "openmvs_alerts_raised_total", &[("code", "A2")]), 3.0);
    assert_eq!(value_of(&samples, "openmvs_alerts_raised_total", &[("code", "odd \"code\"\\\n")]), 1.0);
    assert_eq!(value_of(&samples, "openmvs_outbox_pending", &[]), -4.0);
    assert_eq!(value_of(&samples, "openmvs_group_commit_batch_size_bucket", &[("le", "64")]), 2.0);
    assert_eq!(value_of(&samples, "openmvs_group_commit_batch_size_sum", &[]), 38.0);
    let engine = [("engine", "sqlite"), ("le", "0.0025")];
    assert_eq!(value_of(&samples, "openmvs_store_commit_duration_seconds_bucket", &engine), 1.0);

    assert!(
        text.contains(
            "# HELP openmvs_outbox_pending Messages waiting in the outbox.\\nSecond line \\\\ too.\n"
        ),
        "{text}"
    );
    assert!(text.contains("# TYPE openmvs_group_commit_batch_size histogram\n"), "{text}");
}

#[test]
fn request_series_appear_only_once_a_request_of_their_kind_was_answered() {
    let metrics = Metrics::new();
    let text = metrics.render();
    assert_eq!(parse(&text).len(), 0, "{text}");
    assert!(text.starts_with("# HELP openmvs_request_duration_seconds "), "{text}");
    metrics.request(OpClass::Auth, 401, 10);
    let samples = parse(&metrics.render());
    assert_eq!(check_histograms(&samples), 1);
    assert_eq!(samples.len(), 19 + 1 + 2, "19 bounds, +Inf, _sum and _count");
}

#[test]
fn registering_the_same_series_again_returns_a_handle_on_the_same_value() {
    let metrics = Metrics::new();
    let help = "Messages delivered.";
    let a = metrics.counter("openmvs_delivered_total", help, &[("market", "DE")]).unwrap();
    let b = metrics.counter("openmvs_delivered_total", help, &[("market", "DE")]).unwrap();
    let other = metrics.counter("openmvs_delivered_total", help, &[("market", "FR")]).unwrap();
    a.inc();
    b.add(2);
    assert_eq!(a.get(), 3);
    assert_eq!(other.get(), 0);
    let g1 = metrics.gauge("openmvs_connections", "Open connections.", &[]).unwrap();
    let g2 = metrics.gauge("openmvs_connections", "Open connections.", &[]).unwrap();
    g1.inc();
    g1.inc();
    g2.dec();
    g2.add(10);
    assert_eq!(g1.get(), 11);
    let samples = parse(&metrics.render());
    assert_eq!(samples.iter().filter(|(f, _, _)| f == "openmvs_delivered_total").count(), 2);
}

#[test]
fn registration_mistakes_are_refused_with_the_rule_they_break() {
    let metrics = Metrics::new();
    let name_rule = |result: Result<_, MetricsError>| match result {
        Err(MetricsError::InvalidName { rule, .. }) => rule,
        other => panic!("expected an invalid name, got {other:?}"),
    };
    assert_eq!(name_rule(metrics.gauge("outbox_pending", "h", &[]).map(drop)), "names start with openmvs_");
    assert!(name_rule(metrics.gauge("openmvs_Outbox", "h", &[]).map(drop)).contains("only a-z"));
    assert!(name_rule(metrics.gauge("openmvs_", "h", &[]).map(drop)).contains("at least one"));
    assert!(name_rule(metrics.counter("openmvs_alerts", "h", &[]).map(drop)).contains("_total"));
    assert!(name_rule(metrics.latency_histogram("openmvs_commit", "h", &[]).map(drop)).contains("_seconds"));
    assert!(
        name_rule(metrics.latency_histogram("openmvs_request_duration_seconds", "h", &[]).map(drop))
            .contains("built in")
    );

    for label in ["le", "__name", "1x", "a-b", ""] {
        let err = metrics.gauge("openmvs_g", "h", &[(label, "v")]).unwrap_err();
        assert!(matches!(err, MetricsError::InvalidLabel { .. }), "{label:?}: {err}");
    }

    metrics.gauge("openmvs_queue", "Queue length.", &[("queue", "a")]).unwrap();
    let conflict = |result: Result<(), MetricsError>| match result {
        Err(MetricsError::Conflict { what, .. }) => what,
        other => panic!("expected a conflict, got {other:?}"),
    };
    assert_eq!(conflict(metrics.size_histogram("openmvs_queue", "Queue length.", &[]).map(drop)), "type");
    assert_eq!(
        conflict(metrics.gauge("openmvs_queue", "Other help.", &[("queue", "a")]).map(drop)),
        "help text"
    );
    assert_eq!(
        conflict(metrics.gauge("openmvs_queue", "Queue length.", &[("name", "a")]).map(drop)),
        "label names"
    );
    assert_eq!(conflict(metrics.gauge("openmvs_queue", "Queue length.", &[]).map(drop)), "label names");

    metrics.size_histogram("openmvs_x_seconds", "h", &[]).unwrap();
    assert_eq!(conflict(metrics.latency_histogram("openmvs_x_seconds", "h", &[]).map(drop)), "unit");

    let err =
        metrics.gauge("openmvs_queue", "Queue length.", &[("queue", "a")]).and(metrics.gauge("Bad", "", &[]));
    assert_eq!(err.unwrap_err().to_string(), "metric name 'Bad': names start with openmvs_");
}

#[test]
fn label_combinations_per_metric_are_bounded() {
    let metrics = Metrics::new();
    for i in 0..MAX_SERIES_PER_METRIC {
        metrics.counter("openmvs_c_total", "h", &[("k", &i.to_string())]).unwrap();
    }
    // An existing combination is still found; a new one is refused.
    metrics.counter("openmvs_c_total", "h", &[("k", "0")]).unwrap();
    let err = metrics.counter("openmvs_c_total", "h", &[("k", "one too many")]).unwrap_err();
    assert_eq!(err, MetricsError::TooManySeries { name: "openmvs_c_total".into() });
}
