//! The national system under load: one engine, one data size.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use openmvs_core::ids::{Location, MarketCode};
use openmvs_core::roles::Role;
use openmvs_core::time::Clock;
use openmvs_http::limit::{Limiter, RateLimit};
use openmvs_http::{NationalState, Observability, national_router, serve};
use openmvs_national::clock::SystemClock;
use openmvs_national::{National, NationalConfig};
use openmvs_wire::hub::{Delivery, Envelope, Message, PacksMsg};
use serde_json::json;

use super::loadgen::{self, Outcome, Plan, Request, Target};
use super::{Options, Tls, memory_mib};
use crate::cmd::bench::{BATCH, EXPIRY, GTIN, Setup, open_stores, seed, serial};
use crate::cmd::load::Conn;

/// Everything one engine and size measured.
pub struct Run {
    pub engine: String,
    pub packs: u64,
    pub seed_seconds: f64,
    pub raw: openmvs_store::Baseline,
    pub verify_max: Outcome,
    pub verify_80: Outcome,
    pub verify_100: Outcome,
    pub overload: Outcome,
    pub overload_rate: f64,
    pub known_half: Outcome,
    pub unknown_half: Outcome,
    pub supply_max: Outcome,
    pub mix: Outcome,
    pub first_pass: Outcome,
    pub replays: Outcome,
    /// Serials per second the national system took in (checked for repeats, written durably) from
    /// deliveries of 10,000 serials, alone.
    pub ingest_alone: f64,
    /// The same while verifies ran at 50 %.
    pub ingest_under_verify: f64,
    /// Verifies at 50 % while ingest ran at full speed.
    pub verify_under_ingest: Outcome,
    pub rss_after_seed_mib: f64,
    pub rss_peak_mib: f64,
}

fn body(trx: String, s: &str) -> Vec<u8> {
    json!({"client_trx_id": trx, "scheme": "GTIN", "product_code": GTIN, "serial": s, "batch": BATCH, "expiry": EXPIRY})
        .to_string()
        .into_bytes()
}

fn post(path: &str, token: &Arc<str>, body: Vec<u8>) -> Request {
    Request { method: "POST", path: path.to_owned(), token: Some(token.clone()), body }
}

/// Verifies of seeded packs spread over the first half of the data (never supplied).
fn verify_known(tokens: Arc<Vec<Arc<str>>>, packs: u64, tag: &'static str) -> Plan {
    Arc::new(move |c| {
        let (token, half) = (tokens[c % tokens.len()].clone(), (packs / 2).max(1));
        Box::new(move |i| {
            let s = serial(i.wrapping_mul(2_654_435_761) % half);
            post("/v1/packs/verify", &token, body(format!("{tag}-{c}-{i}"), &s))
        })
    })
}

/// Verifies of serials nobody uploaded (each raises an alert, as in real life).
fn verify_unknown(tokens: Arc<Vec<Arc<str>>>, tag: &'static str) -> Plan {
    Arc::new(move |c| {
        let token = tokens[c % tokens.len()].clone();
        Box::new(move |i| {
            post("/v1/packs/verify", &token, body(format!("{tag}-{c}-{i}"), &format!("U{i:012}")))
        })
    })
}

/// Supplies of packs never touched before, taken in order from the second half of the data.
fn supplies(tokens: Arc<Vec<Arc<str>>>, next: Arc<AtomicU64>, packs: u64, tag: &'static str) -> Plan {
    Arc::new(move |c| {
        let (token, next) = (tokens[c % tokens.len()].clone(), next.clone());
        Box::new(move |i| {
            let s = serial(packs / 2 + next.fetch_add(1, Ordering::Relaxed) % (packs - packs / 2).max(1));
            post("/v1/packs/supply", &token, body(format!("{tag}-{c}-{i}"), &s))
        })
    })
}

/// A pharmacy's day: 75 % verifies, 20 % supplies of fresh packs, 5 % undos of the
/// connection's own last supply.
fn mix(tokens: Arc<Vec<Arc<str>>>, next: Arc<AtomicU64>, packs: u64) -> Plan {
    Arc::new(move |c| {
        let (token, next) = (tokens[c % tokens.len()].clone(), next.clone());
        let mut supplied: Vec<String> = Vec::new();
        Box::new(move |i| match i % 20 {
            0..=3 => {
                let s = serial(packs / 2 + next.fetch_add(1, Ordering::Relaxed) % (packs - packs / 2).max(1));
                supplied.push(s.clone());
                post("/v1/packs/supply", &token, body(format!("mix-{c}-{i}"), &s))
            }
            4 if !supplied.is_empty() => {
                let s = supplied.remove(0);
                post("/v1/packs/supply/undo", &token, body(format!("mix-{c}-{i}"), &s))
            }
            _ => {
                let s = serial(i.wrapping_mul(2_654_435_761) % (packs / 2).max(1));
                post("/v1/packs/verify", &token, body(format!("mix-{c}-{i}"), &s))
            }
        })
    })
}

/// Serials delivered per message of the ingest scenario.
const INGEST_CHUNK: u64 = 10_000;

/// Delivers chunks of new serials to the national system, one after another, until `stop`;
/// returns how many were created per second.
async fn ingest(
    national: Arc<National>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    from: Arc<AtomicU64>,
) -> f64 {
    let started = Instant::now();
    let mut created = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let first = from.fetch_add(INGEST_CHUNK, Ordering::Relaxed);
        let serials = (first..first + INGEST_CHUNK).map(|i| format!("I{i:012}")).collect();
        let env = Envelope {
            message_id: format!("suite-ingest-{first}"),
            origin: "hub".into(),
            ordering_key: GTIN.into(),
            body: Message::Packs(PacksMsg {
                scheme: "GTIN".into(),
                product_code: GTIN.into(),
                batch: BATCH.into(),
                serials,
            }),
        };
        match national.apply_delivery(&Delivery { messages: vec![env] }).await {
            Ok(ack) if ack.results.iter().all(|a| a.status == "APPLIED") => created += INGEST_CHUNK,
            Ok(ack) => {
                eprintln!("  ingest: {:?}", ack.results.first());
                break;
            }
            Err(e) => {
                eprintln!("  ingest: {e}");
                break;
            }
        }
    }
    created as f64 / started.elapsed().as_secs_f64()
}

/// The same supplies twice over: request `i` of either pass has the same `client_trx_id`, so the
/// second pass is all replays of stored answers.
fn replay_pass(tokens: Arc<Vec<Arc<str>>>, first: u64, count: u64) -> Plan {
    Arc::new(move |_| {
        let tokens = tokens.clone();
        Box::new(move |i| {
            let k = i % count.max(1);
            // One client per request number, whichever connection sends it, so a replay is the
            // same client's same transaction.
            let token = tokens[(k as usize) % tokens.len()].clone();
            post("/v1/packs/supply", &token, body(format!("replay-{k}"), &serial(first + k)))
        })
    })
}

pub async fn national(
    load: &tokio::runtime::Handle,
    tls: &Tls,
    opts: &Options,
    engine: &Setup,
    packs: u64,
) -> anyhow::Result<Run> {
    let span = Duration::from_secs_f64(opts.seconds);
    let dir = std::env::temp_dir().join(format!("openmvs-suite-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let market = MarketCode::new("DE").map_err(|e| anyhow::anyhow!("{e}"))?;
    crate::node::claim_market(&dir, market)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let on_group: Arc<dyn Fn(usize) + Send + Sync> = Arc::new(|_| {});
    let stores = open_stores(engine, &dir, &clock, &on_group)?;
    let store = stores.nodes[0].clone();
    let national = Arc::new(
        National::new(store.store(), clock.clone(), NationalConfig::new(market), None)
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    // The packs the replay burst supplies, past those the other scenarios use.
    let replay_count = (packs / 10).clamp(100, 20_000);
    let seeded = packs + replay_count;
    let started = Instant::now();
    seed(&national, seeded).await?;
    let seed_seconds = started.elapsed().as_secs_f64();
    eprintln!("  seeded {seeded} packs in {seed_seconds:.1} s");
    let rss_after_seed_mib = memory_mib().0;

    let secs = opts.seconds.min(5.0);
    let raw = match (engine, &stores.schema) {
        (Setup::Sqlite, _) => openmvs_store_sqlite::baseline::measure(
            &crate::node::db_path(&dir),
            &dir.join("baseline"),
            GTIN,
            packs,
            &serial,
            secs,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?,
        (Setup::Postgres { url, .. }, Some((_, schema))) => {
            let (url, schema) = (url.clone(), schema.clone());
            tokio::task::spawn_blocking(move || {
                openmvs_store_pg::baseline::measure(&url, &schema, GTIN, packs, &serial, secs)
            })
            .await?
            .map_err(|e| anyhow::anyhow!("{e}"))?
        }
        _ => anyhow::bail!("no schema for the PostgreSQL baseline"),
    };
    eprintln!(
        "  raw: {:.0} point reads/s, {:.0} batched inserts/s, {:.0} single commits/s",
        raw.point_reads, raw.batched_inserts, raw.single_commits
    );

    let obs = Arc::new(Observability::new(clock.clone()));
    obs.load.set_max(opts.max_in_flight);
    obs.set_ready(true);
    let limiter = Arc::new(Limiter::new(RateLimit { per_second: 1e9, burst: 1e9 }));
    let router = national_router(NationalState { national: national.clone(), obs, limiter });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let server = serve(listener, router, Some(tls.server())).map_err(|e| anyhow::anyhow!(e))?;
    let target: Target = tls.target(server.local_addr());

    let clients = opts.connections.clamp(1, 64);
    let mut tokens = Vec::new();
    for i in 0..clients {
        let c = national
            .create_client(
                Role::Pharmacy,
                Location::new(&format!("DE-PH-{i:04}")).map_err(|e| anyhow::anyhow!("{e}"))?,
                "suite",
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut conn = Conn::open(target.addr, "localhost", tls.client.clone()).await?;
        let form = format!(
            "grant_type=client_credentials&client_id={}&client_secret={}",
            c.client_id, c.client_secret
        );
        let reply = conn.send("POST", "/oauth/token", None, form.into_bytes()).await?;
        let v: serde_json::Value = serde_json::from_slice(&reply.body)?;
        tokens.push(Arc::<str>::from(v["access_token"].as_str().context("no token")?));
    }
    let tokens = Arc::new(tokens);
    let n = opts.connections;
    // Open loop needs spare connections: a request due while every connection waits for an answer
    // queues in the generator, which no pharmacy's own terminal would do.
    let open_n = 4 * n;

    let verify_max =
        loadgen::closed_loop(load, &target, &verify_known(tokens.clone(), packs, "vmax"), n, span).await;
    let x = verify_max.rate().max(1.0);
    eprintln!("  verify, closed loop: {x:.0}/s p99 {:.2} ms", verify_max.ms(0.99));
    let verify_80 =
        loadgen::open_loop(load, &target, &verify_known(tokens.clone(), packs, "v80"), 0.8 * x, open_n, span)
            .await;
    eprintln!("  verify at 80 %: p99 {:.2} ms", verify_80.ms(0.99));
    let verify_100 =
        loadgen::open_loop(load, &target, &verify_known(tokens.clone(), packs, "v100"), x, open_n, span)
            .await;
    eprintln!("  verify at 100 %: {:.3} % under 300 ms", 100.0 * verify_100.share_under(300));
    let overload_rate = 2.0 * x;
    let overload = loadgen::open_loop(
        load,
        &target,
        &verify_known(tokens.clone(), packs, "v200"),
        overload_rate,
        (opts.max_in_flight * 2).max(n),
        span,
    )
    .await;
    eprintln!(
        "  verify at 200 %: {:.0}/s answered, {} shed (p99 {:.2} ms)",
        overload.rate(),
        overload.shed,
        overload.shed_ms(0.99)
    );
    let half = 0.5 * x;
    let known_half =
        loadgen::open_loop(load, &target, &verify_known(tokens.clone(), packs, "vk50"), half, open_n, span)
            .await;
    let unknown_half =
        loadgen::open_loop(load, &target, &verify_unknown(tokens.clone(), "vu50"), half, open_n, span).await;
    eprintln!(
        "  at 50 %: known p99 {:.2} ms, unknown p99 {:.2} ms",
        known_half.ms(0.99),
        unknown_half.ms(0.99)
    );
    let next = Arc::new(AtomicU64::new(0));
    let supply_max =
        loadgen::closed_loop(load, &target, &supplies(tokens.clone(), next.clone(), packs, "smax"), n, span)
            .await;
    eprintln!("  supply, closed loop: {:.0}/s p99 {:.2} ms", supply_max.rate(), supply_max.ms(0.99));
    let mix =
        loadgen::open_loop(load, &target, &mix(tokens.clone(), next.clone(), packs), half, open_n, span)
            .await;
    eprintln!("  pharmacy mix at {half:.0}/s: p99 {:.2} ms", mix.ms(0.99));
    // The replay burst: every supply once, then every one again with its transaction id.
    let plan = replay_pass(tokens.clone(), packs, replay_count);
    let first_pass = loadgen::burst(load, &target, &plan, n, replay_count).await;
    let replays = loadgen::burst(load, &target, &plan, n, replay_count).await;
    eprintln!(
        "  replay burst: {replay_count} supplies at {:.0}/s, then replayed at {:.0}/s (p99 {:.2} ms)",
        first_pass.rate(),
        replays.rate(),
        replays.ms(0.99)
    );
    // Ingest alone, then ingest at full speed while verifies run at 50 %.
    let next_ingest = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let task = tokio::spawn(ingest(national.clone(), stop.clone(), next_ingest.clone()));
    tokio::time::sleep(span).await;
    stop.store(true, Ordering::Relaxed);
    let ingest_alone = task.await.unwrap_or(0.0);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let task = tokio::spawn(ingest(national.clone(), stop.clone(), next_ingest.clone()));
    let verify_under_ingest =
        loadgen::open_loop(load, &target, &verify_known(tokens.clone(), packs, "vi50"), half, open_n, span)
            .await;
    stop.store(true, Ordering::Relaxed);
    let ingest_under_verify = task.await.unwrap_or(0.0);
    eprintln!(
        "  ingest: {ingest_alone:.0} serials/s alone, {ingest_under_verify:.0}/s under verifies (verify p99 {:.2} ms)",
        verify_under_ingest.ms(0.99)
    );
    let (_, rss_peak_mib) = memory_mib();

    server.shutdown(Duration::from_secs(2)).await;
    drop(national);
    for s in &stores.nodes {
        s.close();
    }
    if let Some((url, schema)) = &stores.schema
        && let Err(e) = openmvs_store_pg::drop_schema(url, schema)
    {
        eprintln!("could not drop the bench schema {schema}: {e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Run {
        engine: engine.label(),
        packs,
        seed_seconds,
        raw,
        verify_max,
        verify_80,
        verify_100,
        overload,
        overload_rate,
        known_half,
        unknown_half,
        supply_max,
        mix,
        first_pass,
        replays,
        ingest_alone,
        ingest_under_verify,
        verify_under_ingest,
        rss_after_seed_mib,
        rss_peak_mib,
    })
}
