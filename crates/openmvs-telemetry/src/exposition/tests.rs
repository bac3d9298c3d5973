//! The writer's output, line by line, and the reader refusing what the format forbids.

use super::*;
use crate::histogram::{LATENCY_BOUNDS_MICROS, SIZE_BOUNDS};

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[test]
fn label_values_escape_backslash_double_quote_and_line_feed_and_help_texts_backslash_and_line_feed() {
    let mut e = Exposition::new();
    e.counter_family("openmvs_odd_total", "Odd \"values\" \\ and\nlines.")
        .sample(&[("code", "a\\b\"c\nd"), ("plain", "x y,z=}")], 1);
    let text = e.into_text();
    assert_eq!(
        lines(&text),
        [
            "# HELP openmvs_odd_total Odd \"values\" \\\\ and\\nlines.",
            "# TYPE openmvs_odd_total counter",
            r#"openmvs_odd_total{code="a\\b\"c\nd",plain="x y,z=}"} 1"#,
        ]
    );
    let back = check_exposition(&text).unwrap();
    let labels = [("code", "a\\b\"c\nd"), ("plain", "x y,z=}")];
    assert_eq!(back.value("openmvs_odd_total", &labels), Some(1.0));
}

#[test]
fn help_and_type_come_once_per_family_before_all_its_samples() {
    let mut e = Exposition::new();
    e.counter_family("openmvs_refused_total", "Refused, by reason.")
        .sample(&[("reason", "limit")], 3)
        .sample(&[("reason", "busy")], 0);
    e.gauge("openmvs_open", "Open now.", 7_usize).gauge("openmvs_signed", "Below zero.", -4_i64);
    e.gauge_family("openmvs_flag", "A flag.")
        .sample(&[("which", "on")], true)
        .sample(&[("which", "off")], false);
    e.counter("openmvs_plain_total", "No labels.", u64::MAX);
    let text = e.into_text();
    assert_eq!(
        lines(&text),
        [
            "# HELP openmvs_refused_total Refused, by reason.",
            "# TYPE openmvs_refused_total counter",
            "openmvs_refused_total{reason=\"limit\"} 3",
            "openmvs_refused_total{reason=\"busy\"} 0",
            "# HELP openmvs_open Open now.",
            "# TYPE openmvs_open gauge",
            "openmvs_open 7",
            "# HELP openmvs_signed Below zero.",
            "# TYPE openmvs_signed gauge",
            "openmvs_signed -4",
            "# HELP openmvs_flag A flag.",
            "# TYPE openmvs_flag gauge",
            "openmvs_flag{which=\"on\"} 1",
            "openmvs_flag{which=\"off\"} 0",
            "# HELP openmvs_plain_total No labels.",
            "# TYPE openmvs_plain_total counter",
            "openmvs_plain_total 18446744073709551615",
        ]
    );
    let back = check_exposition(&text).unwrap();
    assert_eq!(back.families.len(), 5);
    assert_eq!(back.samples.len(), 7);
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "metric family openmvs_open written twice")]
fn a_family_declared_twice_is_a_mistake() {
    let mut e = Exposition::new();
    e.gauge("openmvs_open", "Open now.", 1_u64);
    e.gauge("openmvs_open", "Open now.", 2_u64);
}

#[test]
fn histogram_buckets_are_cumulative_and_end_with_inf_then_sum_and_count() {
    let latency = Histogram::latency();
    for micros in [40, 300_000, 60_000_000] {
        latency.observe(micros);
    }
    let sizes = Histogram::sizes();
    sizes.observe(1);
    sizes.observe(37);
    let mut e = Exposition::new();
    e.histogram_family("openmvs_op_seconds", "Time per operation.").series(&[("op", "x")], &latency);
    e.histogram_family("openmvs_batch_size", "Units per batch.").series(&[], &sizes);
    let text = e.into_text();
    let lines = lines(&text);

    let latency_lines = &lines[2..2 + LATENCY_BOUNDS_MICROS.len() + 3];
    assert_eq!(latency_lines[0], "openmvs_op_seconds_bucket{op=\"x\",le=\"0.00005\"} 1");
    assert!(latency_lines.contains(&"openmvs_op_seconds_bucket{op=\"x\",le=\"0.25\"} 1"));
    assert!(latency_lines.contains(&"openmvs_op_seconds_bucket{op=\"x\",le=\"0.3\"} 2"));
    assert!(latency_lines.contains(&"openmvs_op_seconds_bucket{op=\"x\",le=\"30\"} 2"));
    assert_eq!(
        latency_lines[LATENCY_BOUNDS_MICROS.len()..],
        [
            "openmvs_op_seconds_bucket{op=\"x\",le=\"+Inf\"} 3",
            "openmvs_op_seconds_sum{op=\"x\"} 60.30004",
            "openmvs_op_seconds_count{op=\"x\"} 3",
        ]
    );
    let size_lines = &lines[latency_lines.len() + 4..];
    assert_eq!(size_lines.len(), SIZE_BOUNDS.len() + 3);
    assert_eq!(size_lines[0], "openmvs_batch_size_bucket{le=\"1\"} 1");
    assert_eq!(size_lines[6], "openmvs_batch_size_bucket{le=\"64\"} 2");
    assert_eq!(
        size_lines[SIZE_BOUNDS.len()..],
        [
            "openmvs_batch_size_bucket{le=\"+Inf\"} 2",
            "openmvs_batch_size_sum 38",
            "openmvs_batch_size_count 2"
        ]
    );

    let back = check_exposition(&text).unwrap();
    assert_eq!(back.histogram_series, 2);
}

#[test]
fn microseconds_render_as_exact_decimal_seconds() {
    let render = |micros| {
        let mut s = String::new();
        write_micros_as_seconds(&mut s, micros);
        s
    };
    assert_eq!(render(50), "0.00005");
    assert_eq!(render(300_000), "0.3");
    assert_eq!(render(2_500_000), "2.5");
    assert_eq!(render(30_000_000), "30");
    assert_eq!(render(0), "0");
    assert_eq!(render(1_000_001), "1.000001");
}

#[test]
fn the_reader_refuses_what_the_format_forbids() {
    let problem = |text: &str| check_exposition(text).unwrap_err().to_string();
    let header = "# HELP openmvs_a_total A.\n# TYPE openmvs_a_total counter\n";
    assert!(problem(&format!("{header}openmvs_a_total 1")).contains("ends with a line feed"));
    assert!(problem("openmvs_a_total 1\n").contains("before any # TYPE"));
    assert!(problem("# TYPE openmvs_a_total counter\nopenmvs_a_total 1\n").contains("without its # HELP"));
    assert!(problem("# HELP openmvs_a_total A.\nopenmvs_a_total 1\n").contains("not followed by its # TYPE"));
    assert!(
        problem(&format!("{header}{header}")).starts_with("line 4: family openmvs_a_total declared twice")
    );
    assert!(problem(&format!("{header}openmvs_b_total 1\n")).contains("not in the family openmvs_a_total"));
    assert!(problem(&format!("{header}openmvs_a_total 1\nopenmvs_a_total 2\n")).contains("written twice"));
    assert!(problem(&format!("{header}openmvs_a_total{{a=\"\\x\"}} 1\n")).contains("bad escape"));
    assert!(problem(&format!("{header}openmvs_a_total{{a=\"x\",}} 1\n")).contains("comma"));
    assert!(problem(&format!("{header}openmvs_a_total 1 1700000000\n")).contains("bad value"));
    assert!(problem(&format!("{header}openmvs_a_total inf\n")).contains("bad value"));
    assert!(problem(&format!("{header}\n")).contains("unexpected line"));
    assert!(problem("# HELP openmvs_g G.\n# TYPE openmvs_g summary\n").contains("unknown type"));

    let hist = "# HELP openmvs_h H.\n# TYPE openmvs_h histogram\n";
    let ok =
        "openmvs_h_bucket{le=\"1\"} 1\nopenmvs_h_bucket{le=\"+Inf\"} 2\nopenmvs_h_sum 3\nopenmvs_h_count 2\n";
    assert_eq!(check_exposition(&format!("{hist}{ok}")).unwrap().histogram_series, 1);
    let broken = |from: &str, to: &str| problem(&format!("{hist}{}", ok.replace(from, to)));
    assert!(broken("le=\"1\"} 1", "le=\"1\"} 3").contains("cumulative"));
    assert!(broken("le=\"+Inf\"", "le=\"2\"").contains("+Inf"));
    assert!(broken("le=\"1\"", "le=\"1e0\"").contains("bad bound"));
    assert!(broken("openmvs_h_count 2", "openmvs_h_count 5").contains("_count equal"));
    assert!(broken("openmvs_h_sum 3\n", "").contains("a _sum"));
    assert!(broken("openmvs_h_sum 3", "openmvs_h_sum{le=\"1\"} 3").contains("only a bucket"));
}
