//! Recording from many threads at once: nothing is lost, and what one record costs.

use std::hint::black_box;
use std::thread;
use std::time::Instant;

use openmvs_telemetry::{Metrics, OpClass, SlaTracker, duration_micros};

const THREADS: u64 = 8;
const PER_THREAD: u64 = 100_000;

#[test]
fn eight_threads_recording_100k_observations_each_lose_none() {
    let metrics = Metrics::new();
    let sla = SlaTracker::new();
    let counter = metrics.counter("openmvs_test_total", "Test counter.", &[]).unwrap();
    let sizes = metrics.size_histogram("openmvs_test_batch_size", "Test sizes.", &[]).unwrap();
    // Two UTC days, so that threads also race on the first observation of a new day.
    let midnight = 20_000 * 86_400_000;
    thread::scope(|s| {
        for t in 0..THREADS {
            let (metrics, sla, counter, sizes) = (&metrics, &sla, &counter, &sizes);
            s.spawn(move || {
                for i in 0..PER_THREAD {
                    let micros = (t * PER_THREAD + i) % 600_000;
                    metrics.request(OpClass::Verification, 200, micros);
                    sla.record(OpClass::Verification, midnight - 1 + (i % 2) as i64, micros);
                    counter.inc();
                    sizes.observe(i % 100);
                }
            });
        }
    });
    let total = THREADS * PER_THREAD;
    let expected_sum: u64 = (0..total).map(|n| n % 600_000).sum();
    let h = metrics.request_histogram(OpClass::Verification, 200);
    assert_eq!(h.count(), total);
    assert_eq!(h.sum(), expected_sum);
    assert_eq!(counter.get(), total);
    assert_eq!(sizes.count(), total);
    assert_eq!(sizes.sum(), THREADS * (0..PER_THREAD).map(|i| i % 100).sum::<u64>());

    let report = sla.report(midnight);
    assert_eq!(report.verification.count_month, total, "both days are in the same month");
    let under: u64 = (0..total).filter(|n| n % 600_000 < 300_000).count() as u64;
    let snapshot = sla.snapshot(midnight);
    assert_eq!(snapshot.days.iter().map(|d| d.count).sum::<u64>(), total);
    assert_eq!(snapshot.days.iter().map(|d| d.under_300ms).sum::<u64>(), under);
    assert_eq!(snapshot.days.iter().map(|d| d.sum_micros).sum::<u64>(), expected_sum);
    assert_eq!(report.verification.mean_ms_30d, Some(expected_sum as f64 / total as f64 / 1_000.0));
}

#[test]
fn the_cost_of_recording_one_request_is_reported_not_asserted() {
    // Speed is measured, never asserted (ARCHITECTURE.md); a debug build is several times slower
    // than `cargo test --release`, which gives the figure that matters.
    let metrics = Metrics::new();
    let sla = SlaTracker::new();
    let n: u64 = 1_000_000;
    let start = Instant::now();
    for i in 0..n {
        metrics.request(black_box(OpClass::Verification), black_box(200), black_box(i % 400_000));
    }
    let request_ns = duration_micros(start.elapsed()) as f64 * 1_000.0 / n as f64;
    let start = Instant::now();
    for i in 0..n {
        sla.record(black_box(OpClass::Verification), black_box(1_800_000_000_000), black_box(i % 400_000));
    }
    let sla_ns = duration_micros(start.elapsed()) as f64 * 1_000.0 / n as f64;
    eprintln!("Metrics::request: {request_ns:.1} ns per call; SlaTracker::record: {sla_ns:.1} ns per call");
    assert_eq!(metrics.request_histogram(OpClass::Verification, 200).count(), n);
}
