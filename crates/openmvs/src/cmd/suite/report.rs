//! The report: every figure, every ratio, and each target met or missed, as JSON and Markdown.

use serde_json::{Value, json};

use super::Options;
use super::loadgen::Outcome;
use super::scenarios::Run;

/// Everything the suite measured.
pub struct Report {
    pub machine: Value,
    pub options: Options,
    pub hello: Outcome,
    pub runs: Vec<Run>,
}

fn figures(o: &Outcome) -> Value {
    json!({
        "answered_per_s": o.rate(), "ok": o.ok, "shed": o.shed, "errors": o.errors, "seconds": o.seconds,
        "p50_ms": o.ms(0.5), "p99_ms": o.ms(0.99), "p999_ms": o.ms(0.999), "max_ms": o.latency.max() as f64 / 1000.0,
        "shed_p99_ms": o.shed_ms(0.99), "share_under_300ms": o.share_under(300), "first_error": o.first_error,
    })
}

/// One target: what is compared, the value, the bound, and whether it holds.
struct Check {
    name: String,
    value: f64,
    bound: String,
    met: Option<bool>,
}

fn at_least(name: impl Into<String>, value: f64, min: f64) -> Check {
    Check { name: name.into(), value, bound: format!(">= {min}"), met: Some(value >= min) }
}

fn at_most(name: impl Into<String>, value: f64, max: f64) -> Check {
    Check { name: name.into(), value, bound: format!("<= {max}"), met: Some(value <= max) }
}

impl Report {
    fn checks(&self, r: &Run) -> Vec<Check> {
        let hello = self.hello.rate().max(1.0);
        let mut c = vec![
            at_least("verify req/s / hello-world req/s", r.verify_max.rate() / hello, 0.4),
            at_most("verify p99 at 80 % of maximum, ms", r.verify_80.ms(0.99), 3.0),
            at_least(
                "share of verifies under 300 ms at maximum, %",
                100.0 * r.verify_100.share_under(300),
                99.9,
            ),
            at_least(
                "concurrent supply req/s / durable single-commit rate",
                r.supply_max.rate() / r.raw.single_commits.max(1.0),
                10.0,
            ),
            at_most(
                "unknown-serial verify p99 / known-serial verify p99 (same rate)",
                r.unknown_half.ms(0.99) / r.known_half.ms(0.99).max(0.001),
                1.0,
            ),
            at_most("p99 of 503 refusals at 200 % of maximum, ms", r.overload.shed_ms(0.99), 10.0),
            at_least(
                "national-side ingest serials/s / raw batched inserts/s",
                r.ingest_alone / r.raw.batched_inserts.max(1.0),
                0.5,
            ),
            at_most(
                "verify p99 while ingest runs / verify p99 idle (both at 50 %)",
                r.verify_under_ingest.ms(0.99) / r.known_half.ms(0.99).max(0.001),
                2.0,
            ),
        ];
        if r.packs >= 10_000_000 {
            c.push(at_most("resident memory at this size, MiB", r.rss_peak_mib, 1024.0));
        }
        c
    }

    /// The size ratios: p99 at 80 % of each size's maximum, against the smallest size, per engine.
    fn size_checks(&self) -> Vec<Check> {
        let mut out = Vec::new();
        for r in &self.runs {
            let Some(small) = self.runs.iter().filter(|s| s.engine == r.engine).min_by_key(|s| s.packs)
            else {
                continue;
            };
            if small.packs < r.packs {
                out.push(at_most(
                    format!("{}: verify p99 at {} packs / at {} packs", r.engine, r.packs, small.packs),
                    r.verify_80.ms(0.99) / small.verify_80.ms(0.99).max(0.001),
                    2.0,
                ));
            }
        }
        out
    }

    /// The report as JSON.
    pub fn json(&self) -> Value {
        let runs: Vec<Value> = self
            .runs
            .iter()
            .map(|r| {
                json!({
                    "engine": r.engine, "packs": r.packs, "seed_seconds": r.seed_seconds,
                    "raw": {"point_reads_per_s": r.raw.point_reads, "batched_inserts_per_s": r.raw.batched_inserts,
                            "single_commits_per_s": r.raw.single_commits},
                    "verify_max": figures(&r.verify_max), "verify_80": figures(&r.verify_80),
                    "verify_100": figures(&r.verify_100), "overload": figures(&r.overload),
                    "overload_rate_per_s": r.overload_rate,
                    "verify_known_50": figures(&r.known_half), "verify_unknown_50": figures(&r.unknown_half),
                    "supply_max": figures(&r.supply_max), "pharmacy_mix_50": figures(&r.mix),
                    "replay_first_pass": figures(&r.first_pass), "replay_second_pass": figures(&r.replays),
                    "ingest_alone_serials_per_s": r.ingest_alone, "ingest_under_verify_serials_per_s": r.ingest_under_verify,
                    "verify_known_50_under_ingest": figures(&r.verify_under_ingest),
                    "rss_after_seed_mib": r.rss_after_seed_mib, "rss_peak_mib": r.rss_peak_mib,
                    "targets": self.checks(r).iter().map(check_json).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "machine": self.machine,
            "options": {"sizes": self.options.sizes, "seconds": self.options.seconds,
                        "connections": self.options.connections, "max_in_flight": self.options.max_in_flight,
                        "postgres": self.options.database_url.is_some()},
            "hello_world": figures(&self.hello),
            "runs": runs,
            "size_targets": self.size_checks().iter().map(check_json).collect::<Vec<_>>(),
        })
    }

    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let o = &self.options;
        md.push_str(&format!(
            "# OpenMVS benchmark report\n\nMachine: {} CPUs ({}), {} GiB. {} s per measurement, {} connections, \
             HTTPS with keep-alive, bound of {} requests in flight.\n\n",
            self.machine["cpus"],
            self.machine["cpu"].as_str().unwrap_or(""),
            self.machine["memory_gib"],
            o.seconds,
            o.connections,
            o.max_in_flight
        ));
        md.push_str(&format!(
            "Baseline: HTTPS hello-world, closed loop: **{:.0} req/s**, p99 {:.2} ms.\n\n",
            self.hello.rate(),
            self.hello.ms(0.99)
        ));
        for r in &self.runs {
            md.push_str(&format!("## {}, {} packs\n\n", r.engine, r.packs));
            md.push_str(&format!(
                "Seeded in {:.1} s. Raw database: {:.0} point reads/s, {:.0} batched inserts/s, {:.0} durable \
                 single-row commits/s. Resident memory: {:.0} MiB after seeding, {:.0} MiB at peak (server and \
                 load generator in one process).\n\n",
                r.seed_seconds,
                r.raw.point_reads,
                r.raw.batched_inserts,
                r.raw.single_commits,
                r.rss_after_seed_mib,
                r.rss_peak_mib
            ));
            md.push_str("| scenario | load | answered/s | p50 ms | p99 ms | p99.9 ms | shed | errors |\n");
            md.push_str("|---|---|---|---|---|---|---|---|\n");
            let row = |name: &str, load: String, f: &Outcome| {
                format!(
                    "| {name} | {load} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} |\n",
                    f.rate(),
                    f.ms(0.5),
                    f.ms(0.99),
                    f.ms(0.999),
                    f.shed,
                    f.errors
                )
            };
            let x = r.verify_max.rate();
            md.push_str(&row("verify, known", "closed loop (maximum)".into(), &r.verify_max));
            md.push_str(&row("verify, known", format!("open, {:.0}/s (80 %)", 0.8 * x), &r.verify_80));
            md.push_str(&row("verify, known", format!("open, {x:.0}/s (100 %)"), &r.verify_100));
            md.push_str(&row(
                "verify, known",
                format!("open, {:.0}/s (200 %)", r.overload_rate),
                &r.overload,
            ));
            md.push_str(&row("verify, known", format!("open, {:.0}/s (50 %)", 0.5 * x), &r.known_half));
            md.push_str(&row(
                "verify, unknown serial",
                format!("open, {:.0}/s (50 %)", 0.5 * x),
                &r.unknown_half,
            ));
            md.push_str(&row("supply, fresh packs", "closed loop (maximum)".into(), &r.supply_max));
            md.push_str(&row("pharmacy mix", format!("open, {:.0}/s (50 %)", 0.5 * x), &r.mix));
            md.push_str(&row(
                "replay burst, first pass",
                format!("{} supplies", r.first_pass.ok),
                &r.first_pass,
            ));
            md.push_str(&row("replay burst, replays", format!("{} replays", r.replays.ok), &r.replays));
            md.push_str(&row(
                "verify, known, during ingest",
                format!("open, {:.0}/s (50 %)", 0.5 * x),
                &r.verify_under_ingest,
            ));
            md.push_str(&format!(
                "\nAt 200 %: {} refused with 503, refusal p99 {:.2} ms. National-side ingest (deliveries of \
                 10,000 new serials, checked for repeats and written durably): {:.0} serials/s alone, {:.0}/s \
                 while verifies ran at 50 %.\n\n",
                r.overload.shed,
                r.overload.shed_ms(0.99),
                r.ingest_alone,
                r.ingest_under_verify
            ));
            md.push_str(&checks_md(&self.checks(r)));
        }
        let size = self.size_checks();
        if !size.is_empty() {
            md.push_str("## Data size\n\n");
            md.push_str(&checks_md(&size));
        }
        md
    }
}

fn check_json(c: &Check) -> Value {
    json!({"target": c.name, "value": c.value, "bound": c.bound, "met": c.met})
}

fn checks_md(checks: &[Check]) -> String {
    let mut md = String::from("| target | value | bound | met |\n|---|---|---|---|\n");
    for c in checks {
        let met = match c.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "-",
        };
        md.push_str(&format!("| {} | {:.3} | {} | {met} |\n", c.name, c.value, c.bound));
    }
    md.push('\n');
    md
}
