//! `openmvs-bench intermarket`: the hub and the national systems DE and FR in this process, wired
//! over mutual TLS exactly as `openmvs demo` wires them (each national system reaches the hub with
//! its own `<market>.national.openmvs` certificate; the hub asks the national systems), a product
//! sold only in FR uploaded through the OBP API until DISTRIBUTED, then the verify latency of one
//! FR pharmacy verifying FR packs locally against one DE pharmacy verifying the same packs, which
//! DE does not hold and asks the hub for (fmd-rules §4.10: 300 ms per repository involved).
//! Each leg is one client, sequential (closed loop), on one keep-alive connection. On SQLite by
//! default; given a PostgreSQL database, every system gets a schema of its own for the run.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use openmvs_core::ids::{Location, MarketCode};
use openmvs_core::roles::Role;
use serde_json::json;

use crate::hub::{self as bench_hub, BATCH, Deadlines, EXPIRY, GTIN, Wiring};
use crate::load::{self, Conn};
use crate::out::outln;

/// Requests before each leg that are not measured: connections, pools and caches warm up.
pub(crate) const WARMUP: u64 = 100;
/// Serials uploaded for the product; the requests cycle over them (a verify changes nothing).
const SERIALS: u64 = 1000;
/// The law's budget for one repository (fmd-rules §4.10, DR Art 35).
pub(crate) const BUDGET_MS: f64 = 300.0;
/// The market that holds the product, and the one that asks for it.
const HOLDER: &str = "FR";
const ASKER: &str = "DE";

/// One measured leg.
pub(crate) struct Leg {
    pub name: &'static str,
    /// The market the client is in.
    pub market: MarketCode,
    /// Measured requests sent.
    pub requests: u64,
    /// Requests that failed, were refused, or whose `intermarket` was not the expected one.
    pub errors: u64,
    /// The first of those, for the report.
    pub first_error: Option<String>,
    /// Answers that said `intermarket: true`.
    pub intermarket: u64,
    /// Requests answered as expected within `BUDGET_MS`.
    pub ok_in_budget: u64,
    pub seconds: f64,
    /// Latency of every measured request (µs), answered or not.
    pub latency: Histogram<u64>,
}

impl Leg {
    pub fn ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.latency.max() as f64 / 1000.0
    }

    /// Requests answered within `budget_ms`.
    pub fn within(&self, budget_ms: f64) -> u64 {
        self.latency.count_between(0, (budget_ms * 1000.0) as u64)
    }

    /// Measured requests per second.
    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 { self.requests as f64 / self.seconds } else { 0.0 }
    }

    /// The share of measured requests answered as expected within `BUDGET_MS` (an error counts
    /// as over it).
    pub fn share_in_budget(&self) -> f64 {
        self.ok_in_budget as f64 / self.requests.max(1) as f64
    }

    fn print(&self, budget_ms: f64) {
        outln!(
            "{:<40} p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  {:>6.0} req/s  ({} requests, {} errors, {} intermarket, {:.1}% within {budget_ms:.0} ms)",
            self.name,
            self.ms(0.5),
            self.ms(0.99),
            self.max_ms(),
            self.requests as f64 / self.seconds,
            self.requests,
            self.errors,
            self.intermarket,
            100.0 * self.within(budget_ms) as f64 / self.requests.max(1) as f64,
        );
    }

    pub fn json(&self, budget_ms: f64) -> serde_json::Value {
        json!({
            "scenario": self.name, "market": self.market.as_str(), "requests": self.requests,
            "errors": self.errors, "first_error": self.first_error, "intermarket": self.intermarket,
            "seconds": self.seconds, "rate_per_s": self.rate(),
            "p50_ms": self.ms(0.5), "p99_ms": self.ms(0.99), "p999_ms": self.ms(0.999), "max_ms": self.max_ms(),
            "budget_ms": budget_ms, "within_budget": self.within(budget_ms),
            "share_under_300ms": self.share_in_budget(),
        })
    }
}

/// What one run measured.
pub(crate) struct Figures {
    pub requests: u64,
    pub local: Leg,
    pub remote: Leg,
}

impl Figures {
    pub fn p50_ratio(&self) -> f64 {
        self.remote.ms(0.5) / self.local.ms(0.5)
    }

    pub fn p99_ratio(&self) -> f64 {
        self.remote.ms(0.99) / self.local.ms(0.99)
    }

    fn print(&self) {
        outln!(
            "verify latency, one client each, sequential, keep-alive: {} requests per leg after {WARMUP} warm-up, over {SERIALS} packs of a product sold only in {HOLDER}",
            self.requests
        );
        // fmd-rules §4.10: 300 ms per repository involved.
        self.local.print(300.0);
        self.remote.print(600.0);
        outln!(
            "inter-market / local: p50 {:.1}x, p99 {:.1}x  (inter-market adds {:.2} ms at p50)",
            self.p50_ratio(),
            self.p99_ratio(),
            self.remote.ms(0.5) - self.local.ms(0.5)
        );
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "requests": self.requests, "warmup": WARMUP, "serials": SERIALS,
            "local": self.local.json(300.0), "intermarket": self.remote.json(600.0),
            "p50_ratio": self.p50_ratio(), "p99_ratio": self.p99_ratio(),
        })
    }
}

/// `openmvs-bench intermarket`.
pub fn intermarket(requests: u64, database_url: Option<&str>) -> anyhow::Result<ExitCode> {
    openmvs_node::init_tracing("warn");
    let f = measure(requests, database_url, Deadlines::law())?;
    f.print();
    outln!("{}", f.json());
    Ok(ExitCode::SUCCESS)
}

/// Runs the whole bench in a fresh temp dir (removed afterwards) and returns its figures: on
/// SQLite, or on the PostgreSQL database given.
pub(crate) fn measure(
    requests: u64,
    database_url: Option<&str>,
    deadlines: Deadlines,
) -> anyhow::Result<Figures> {
    // The clients get a thread of their own, as a separate process would have.
    bench_hub::in_a_world("intermarket", "terminal", |dir, client| async move {
        run(&dir, requests, None, client, database_url, deadlines).await
    })
}

fn market(code: &str) -> anyhow::Result<MarketCode> {
    MarketCode::new(code).map_err(|e| anyhow::anyhow!("{code}: {e}"))
}

/// The bench on the current runtime: the systems serve on it, the clients run on `client_rt`
/// (threads of their own). Each leg sends `requests` measured verifies, or fewer if `seconds` is
/// given and over first.
pub(crate) async fn run(
    dir: &std::path::Path,
    requests: u64,
    seconds: Option<f64>,
    client_rt: tokio::runtime::Handle,
    database_url: Option<&str>,
    deadlines: Deadlines,
) -> anyhow::Result<Figures> {
    if requests == 0 {
        bail!("--requests: must be at least 1");
    }
    let (holder, asker) = (market(HOLDER)?, market(ASKER)?);
    let markets = [asker, holder];
    let pki = bench_hub::pki(dir, &markets)?;
    let (hub_addr, running) =
        bench_hub::start(dir, &markets, &pki, Wiring::Demo(deadlines), database_url).await?;
    let limit = seconds.map(Duration::from_secs_f64);
    let outcome = async {
        // The product, its batch and the serials, through the OBP API, until DISTRIBUTED in FR.
        let obp_tls = bench_hub::client_tls(&pki)?;
        let uploaded = client_rt
            .spawn(async move { bench_hub::obp_session(hub_addr, obp_tls, SERIALS, &[holder]).await })
            .await
            .context("the OBP client panicked")??;
        if (uploaded.received, uploaded.rejected) != (SERIALS, 0) {
            bail!("the hub received {} serials and rejected {}", uploaded.received, uploaded.rejected);
        }
        let tls = load::tls(&pki.ca_der)?;
        let mut terminals = Vec::new();
        for m in [holder, asker] {
            let (national, addr) =
                running.nationals.get(&m).with_context(|| format!("no national system {m}"))?;
            let location = format!("{m}-PH-0001");
            let c = national
                .create_client(
                    Role::Pharmacy,
                    Location::new(&location).map_err(|e| anyhow::anyhow!("{e}"))?,
                    "bench",
                )
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            terminals.push((m, *addr, c.client_id, c.client_secret));
        }
        let mut legs = Vec::new();
        for ((m, addr, id, secret), (name, remote)) in terminals
            .into_iter()
            .zip([("verify local (FR pack in FR)", false), ("verify inter-market (FR pack from DE)", true)])
        {
            let tls = tls.clone();
            let leg = client_rt
                .spawn(async move { leg(name, m, addr, tls, &id, &secret, requests, limit, remote).await })
                .await
                .context("the client panicked")??;
            legs.push(leg);
        }
        let remote = legs.pop().context("no inter-market leg")?;
        let local = legs.pop().context("no local leg")?;
        Ok(Figures { requests, local, remote })
    }
    .await;
    running.stop().await;
    outcome
}

/// One client's leg: a token, WARMUP unmeasured verifies, then `requests` measured ones, or as
/// many as `limit` leaves time for.
#[allow(clippy::too_many_arguments)]
async fn leg(
    name: &'static str,
    market: MarketCode,
    addr: std::net::SocketAddr,
    tls: std::sync::Arc<rustls::ClientConfig>,
    client_id: &str,
    client_secret: &str,
    requests: u64,
    limit: Option<Duration>,
    remote: bool,
) -> anyhow::Result<Leg> {
    let mut conn = Conn::open(addr, "localhost", tls).await?;
    let form = format!("grant_type=client_credentials&client_id={client_id}&client_secret={client_secret}");
    let reply = conn.send("POST", "/oauth/token", None, form.into_bytes()).await?;
    if reply.status != 200 {
        bail!("{market}: token: HTTP {}: {}", reply.status, String::from_utf8_lossy(&reply.body));
    }
    let token: serde_json::Value = serde_json::from_slice(&reply.body)?;
    let token = token["access_token"].as_str().context("no access_token")?.to_owned();
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut errors, mut intermarket, mut measured, mut ok_in_budget) = (0u64, 0u64, 0u64, 0u64);
    let mut first_error = None;
    let tag = if remote { "im" } else { "local" };
    let mut started = Instant::now();
    for i in 0..WARMUP + requests {
        if i == WARMUP {
            started = Instant::now();
        }
        if i > WARMUP && limit.is_some_and(|l| started.elapsed() >= l) {
            break;
        }
        let serial = format!("S{:012}", i.wrapping_mul(2_654_435_761) % SERIALS);
        let body = json!({"client_trx_id": format!("bench-{tag}-{i}"), "scheme": "GTIN", "product_code": GTIN,
                          "serial": serial, "batch": BATCH, "expiry": EXPIRY});
        let sent = Instant::now();
        let reply = conn.send("POST", "/v1/packs/verify", Some(&token), body.to_string().into_bytes()).await;
        let took = sent.elapsed().as_micros() as u64;
        // What the answer was, or why it is an error.
        let verdict = match reply {
            Ok(r) if r.status == 200 => match serde_json::from_slice::<serde_json::Value>(&r.body) {
                Ok(v) => {
                    let im = v["intermarket"].as_bool() == Some(true);
                    if im == remote && v["accepted"] == true { Ok(im) } else { Err((im, v.to_string())) }
                }
                Err(e) => Err((false, format!("not JSON: {e}"))),
            },
            Ok(r) => Err((false, format!("HTTP {}: {}", r.status, String::from_utf8_lossy(&r.body)))),
            Err(e) => bail!("{market}: verify {i}: {e}"),
        };
        if i < WARMUP {
            continue;
        }
        measured += 1;
        let _ = latency.record(took.max(1));
        match verdict {
            Ok(im) => {
                intermarket += u64::from(im);
                ok_in_budget += u64::from(took as f64 <= BUDGET_MS * 1000.0);
            }
            Err((im, what)) => {
                if errors == 0 {
                    eprintln!("{name}: unexpected answer: {what}");
                    first_error = Some(what);
                }
                intermarket += u64::from(im);
                errors += 1;
            }
        }
    }
    Ok(Leg {
        name,
        market,
        requests: measured,
        errors,
        first_error,
        intermarket,
        ok_in_budget,
        seconds: started.elapsed().as_secs_f64(),
        latency,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole harness on a few requests per leg, so that it cannot rot unnoticed. With
    /// generous deadlines: a busy machine makes the answers slow, not refused.
    #[test]
    fn bench_intermarket_smoke_every_remote_answer_is_intermarket() {
        let n = 50;
        let f = measure(n, None, Deadlines::generous()).unwrap();
        let j = f.json();
        assert_eq!((f.local.requests, f.remote.requests), (n, n), "{j}");
        assert!(f.local.ms(0.5) > 0.0 && f.remote.ms(0.5) > 0.0, "{j}");
        assert!(f.local.ms(0.99) > 0.0 && f.remote.ms(0.99) > 0.0, "{j}");
        assert_eq!((f.local.errors, f.local.intermarket), (0, 0), "{j}");
        assert_eq!((f.remote.errors, f.remote.intermarket), (0, n), "{j}");
        assert!(f.p50_ratio() > 0.0 && j["intermarket"]["p50_ms"].as_f64().unwrap() > 0.0);
    }
}
