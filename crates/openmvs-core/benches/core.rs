//! Micro-benchmarks of the domain core: the median time of one scan parse and one lifecycle decision.
//!
//! Run with `cargo bench -p openmvs-core`. Each figure is the median over 101 samples of the mean
//! time per call within a sample, so one slow sample (a context switch) does not move it.

use std::hint::black_box;
use std::time::Instant;

use openmvs_core::ids::{Batch, Expiry, Location};
use openmvs_core::pack::{BatchFacts, Command, Context, Facts, Operation, Pack, Policy, Request, decide};
use openmvs_core::scan;
use openmvs_core::time::{Date, Timestamp};

const SAMPLES: usize = 101;

/// Median nanoseconds per call of `f`, calibrating the calls per sample to about 2 ms.
fn median_ns(mut f: impl FnMut()) -> f64 {
    let mut per_sample = 1u64;
    loop {
        let t = Instant::now();
        for _ in 0..per_sample {
            f();
        }
        if t.elapsed().as_micros() > 2_000 {
            break;
        }
        per_sample *= 2;
    }
    let mut samples: Vec<f64> = (0..SAMPLES)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..per_sample {
                f();
            }
            t.elapsed().as_nanos() as f64 / per_sample as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[SAMPLES / 2]
}

fn report(name: &str, ns: f64) {
    println!("{name:<40} median {ns:>9.1} ns/op  ({:>12.0} ops/s)", 1e9 / ns);
}

fn main() {
    // `cargo test --benches` runs this with `--bench` absent; keep that run short.
    let quick = !std::env::args().any(|a| a == "--bench");
    let today = Date::new(2026, 11, 29).unwrap_or_else(|| unreachable!());

    let inputs: [(&str, &[u8]); 4] = [
        ("parse GS1 element string (V1)", b"]d201095011015300031727123110ABC123\x1d21X4K9P7Q2M8R5"),
        (
            "parse ISO 15434 format 06 (V5)",
            b"[)>\x1e06\x1d9N110375286414\x1d1TABC-123\x1dD271231\x1dSK2L8M4N6P\x1e\x04",
        ),
        ("parse bracket form (V6)", b"(01)09501101530003(17)271231(10)ABC123(21)X4K9P7Q2M8R5"),
        (
            "parse GS1 Digital Link (V7)",
            b"https://id.example.org/01/09501101530003/10/LOT%2F42/21/X4K9P7Q2M8R5?17=271231",
        ),
    ];
    for (name, input) in inputs {
        assert!(scan::parse(input, today).is_ok(), "{name}");
        if quick {
            continue;
        }
        report(
            name,
            median_ns(|| {
                black_box(scan::parse(black_box(input), today).ok());
            }),
        );
    }

    let batch = Batch::new("ABC123").unwrap_or_else(|_| unreachable!());
    let expiry = Expiry::parse("271231", today).unwrap_or_else(|_| unreachable!());
    let location = Location::new("DE-PH-0001").unwrap_or_else(|_| unreachable!());
    let policy = Policy::default();
    let pack = Pack::new(batch.clone());
    let facts = BatchFacts { expiry, recalled: false };
    let ctx = Context { location: &location, now: Timestamp::start_of(today), policy: &policy };
    let f =
        Facts { product_withdrawn: Some(false), pack: Some((&pack, &facts)), requested_batch_known: true };
    for (name, command) in
        [("decide verify", Command::Verify), ("decide supply", Command::Set(Operation::Supply))]
    {
        let req = Request { command, batch: &batch, expiry: Some(&expiry) };
        assert!(decide(&req, &f, &ctx).accepted, "{name}");
        if quick {
            continue;
        }
        report(
            name,
            median_ns(|| {
                black_box(decide(black_box(&req), black_box(&f), &ctx));
            }),
        );
    }
}
