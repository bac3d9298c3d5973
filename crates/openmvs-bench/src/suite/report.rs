//! The report: every figure, every ratio, and each target met or missed, as JSON and Markdown.

use serde_json::{Value, json};

use super::Options;
use super::hub::System;
use super::loadgen::Outcome;
use super::scenarios::{BulkFigures, Run};
use crate::intermarket::{BUDGET_MS, Leg};

/// Everything the suite measured.
pub struct Report {
    pub machine: Value,
    pub options: Options,
    pub hello: Outcome,
    pub runs: Vec<Run>,
    /// The hub with national systems, per engine.
    pub systems: Vec<System>,
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

/// A ratio the report shows without a bound to hold it to.
fn figure(name: impl Into<String>, value: f64) -> Check {
    Check { name: name.into(), value, bound: "-".into(), met: None }
}

fn bulk_json(b: &BulkFigures) -> Value {
    json!({
        "packs": b.packs, "requests": b.requests, "rows_per_request": b.rows, "seconds": b.seconds,
        "phase_packs": b.phase_packs, "phase_seconds": b.phase_seconds,
        "packs_per_s": b.rate(), "polls": b.polls, "shed": b.shed,
    })
}

fn leg_json(l: &Leg) -> Value {
    json!({
        "answered_per_s": l.rate(), "requests": l.requests, "errors": l.errors, "first_error": l.first_error,
        "intermarket": l.intermarket, "seconds": l.seconds,
        "p50_ms": l.ms(0.5), "p99_ms": l.ms(0.99), "p999_ms": l.ms(0.999), "max_ms": l.max_ms(),
        "share_under_300ms": l.share_in_budget(),
    })
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
            figure(
                "verify p99 while bulk runs / verify p99 idle (both at 50 %)",
                r.verify_under_bulk.ms(0.99) / r.known_half.ms(0.99).max(0.001),
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

    /// The raw batched-insert rate of the engine's national run with the fewest packs (the closest
    /// to the fresh stores of the upload), and that run's size.
    fn raw_inserts(&self, engine: &str) -> Option<(f64, u64)> {
        self.runs
            .iter()
            .filter(|r| r.engine == engine)
            .min_by_key(|r| r.packs)
            .map(|r| (r.raw.batched_inserts, r.packs))
    }

    fn system_checks(&self, s: &System) -> Vec<Check> {
        let mut c = Vec::new();
        if let Some((raw, packs)) = self.raw_inserts(&s.engine) {
            c.push(at_least(
                format!(
                    "upload ingest serials/s (to DISTRIBUTED) / raw batched inserts/s (same engine, {packs} packs)"
                ),
                s.upload.rate(s.upload.distributed_s) / raw.max(1.0),
                0.5,
            ));
        }
        let im = &s.intermarket;
        c.push(figure("inter-market verify p99 / local verify p99", im.p99_ratio()));
        c.push(at_least(
            format!("share of inter-market verifies under {BUDGET_MS:.0} ms, % (the law: 95 %)"),
            100.0 * im.remote.share_in_budget(),
            95.0,
        ));
        c
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
                    "bulk_alone": bulk_json(&r.bulk_alone), "bulk_under_verify": bulk_json(&r.bulk_under_verify),
                    "verify_known_50_under_bulk": figures(&r.verify_under_bulk),
                    "rss_after_seed_mib": r.rss_after_seed_mib, "rss_peak_mib": r.rss_peak_mib,
                    "targets": self.checks(r).iter().map(check_json).collect::<Vec<_>>(),
                })
            })
            .collect();
        let systems: Vec<Value> = self
            .systems
            .iter()
            .map(|s| {
                let mut upload = s.upload.json();
                let raw = self.raw_inserts(&s.engine);
                upload["raw_batched_inserts_per_s"] = json!(raw.map(|r| r.0));
                upload["raw_batched_inserts_packs"] = json!(raw.map(|r| r.1));
                let im = &s.intermarket;
                json!({
                    "engine": s.engine,
                    "upload": upload,
                    "intermarket": {"local": leg_json(&im.local), "intermarket": leg_json(&im.remote),
                                    "p50_ratio": im.p50_ratio(), "p99_ratio": im.p99_ratio()},
                    "targets": self.system_checks(s).iter().map(check_json).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "machine": self.machine,
            "options": {"sizes": self.options.sizes, "seconds": self.options.seconds,
                        "connections": self.options.connections, "max_in_flight": self.options.max_in_flight,
                        "upload_serials": self.options.upload_serials,
                        "postgres": self.options.database_url.is_some()},
            "hello_world": figures(&self.hello),
            "runs": runs,
            "systems": systems,
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
            md.push_str(&row(
                "verify, known, during bulk",
                format!("open, {:.0}/s (50 %)", 0.5 * x),
                &r.verify_under_bulk,
            ));
            md.push_str(&format!(
                "\nAt 200 %: {} refused with 503, refusal p99 {:.2} ms. National-side ingest (deliveries of \
                 10,000 new serials, checked for repeats and written durably): {:.0} serials/s alone, {:.0}/s \
                 while verifies ran at 50 %. Bulk (`POST /v1/bulk` supplies of {} fresh packs each, polled \
                 until `DONE`, every result accepted; counted until the phase ended): {:.0} packs/s alone ({} packs in {:.1} s), {:.0}/s while \
                 verifies ran at 50 % ({} packs in {:.1} s).\n\n",
                r.overload.shed,
                r.overload.shed_ms(0.99),
                r.ingest_alone,
                r.ingest_under_verify,
                r.bulk_alone.rows,
                r.bulk_alone.rate(),
                r.bulk_alone.phase_packs,
                r.bulk_alone.phase_seconds,
                r.bulk_under_verify.rate(),
                r.bulk_under_verify.phase_packs,
                r.bulk_under_verify.phase_seconds
            ));
            md.push_str(&checks_md(&self.checks(r)));
        }
        for s in &self.systems {
            md.push_str(&self.system_markdown(s));
        }
        let size = self.size_checks();
        if !size.is_empty() {
            md.push_str("## Data size\n\n");
            md.push_str(&checks_md(&size));
        }
        md
    }
}

impl Report {
    /// The upload through the hub and the inter-market verifies of one engine.
    fn system_markdown(&self, s: &System) -> String {
        let u = &s.upload;
        let markets = u.markets.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ");
        let mut md = format!("## {}: the hub and national systems\n\n", s.engine);
        md.push_str(&format!(
            "An OBP streams {} serials ({:.1} MiB, `text/plain`) to `POST /v1/products/{{pc}}/batches/{{b}}/packs` \
             at the hub, which checks them, finds repeats, writes them durably (the 202) and delivers them \
             to the national system of {markets} (DISTRIBUTED in every market). Peak resident memory rose by \
             {:.0} MiB during the upload.\n\n",
            u.serials,
            u.body_bytes as f64 / 1_048_576.0,
            u.peak_growth_kib() as f64 / 1024.0,
        ));
        md.push_str(
            "| upload | serials | rejected | to the 202, s | serials/s | to DISTRIBUTED, s | serials/s |\n",
        );
        md.push_str("|---|---|---|---|---|---|---|\n");
        md.push_str(&format!(
            "| streamed, to {markets} | {} | {} | {:.2} | {:.0} | {:.2} | {:.0} |\n\n",
            u.received,
            u.rejected,
            u.accepted_s,
            u.rate(u.accepted_s),
            u.distributed_s,
            u.rate(u.distributed_s),
        ));
        let im = &s.intermarket;
        md.push_str(
            "Verifies of one pharmacy, one after another on one keep-alive connection: of packs its own \
             market holds, and of packs only another market holds, answered through the hub.\n\n",
        );
        md.push_str(&format!(
            "| scenario | load | answered/s | p50 ms | p99 ms | p99.9 ms | max ms | under {BUDGET_MS:.0} ms, % | errors |\n"
        ));
        md.push_str("|---|---|---|---|---|---|---|---|---|\n");
        for l in [&im.local, &im.remote] {
            md.push_str(&format!(
                "| {} | one client, {} in sequence | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.3} | {} |\n",
                l.name,
                l.requests,
                l.rate(),
                l.ms(0.5),
                l.ms(0.99),
                l.ms(0.999),
                l.max_ms(),
                100.0 * l.share_in_budget(),
                l.errors
            ));
        }
        md.push('\n');
        md.push_str(&checks_md(&self.system_checks(s)));
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
