//! The Prometheus text rendering and the registry's rules, checked by parsing what is rendered.

use openmvs_telemetry::{Exposed, MAX_SERIES_PER_METRIC, Metrics, MetricsError, OpClass, check_exposition};

/// The rendering read back strictly: every line valid, every family declared once, every
/// histogram series consistent.
fn parse(text: &str) -> Exposed {
    check_exposition(text).unwrap_or_else(|e| panic!("{e}:\n{text}"))
}

fn value_of(exposed: &Exposed, name: &str, labels: &[(&str, &str)]) -> f64 {
    exposed.value(name, labels).unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
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
    assert_eq!(samples.histogram_series, 4 + 2, "four request series and two registered");

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
    assert_eq!(parse(&text).samples.len(), 0, "{text}");
    assert!(text.starts_with("# HELP openmvs_request_duration_seconds "), "{text}");
    metrics.request(OpClass::Auth, 401, 10);
    let samples = parse(&metrics.render());
    assert_eq!(samples.histogram_series, 1);
    assert_eq!(samples.samples.len(), 19 + 1 + 2, "19 bounds, +Inf, _sum and _count");
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
    assert_eq!(samples.samples.iter().filter(|s| s.family == "openmvs_delivered_total").count(), 2);
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
