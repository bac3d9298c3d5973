//! The national system under load: one engine, one data size.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use openmvs_core::ids::{Location, MarketCode};
use openmvs_core::roles::Role;
use openmvs_core::time::Clock;
use openmvs_http::limit::{Limiter, RateLimit};
use openmvs_http::{NationalState, Observability, national_router, serve};
use openmvs_national::clock::SystemClock;
use openmvs_national::{National, NationalConfig};
use openmvs_wire::api::{BulkAccepted, BulkStatusResponse};
use openmvs_wire::hub::{Delivery, Envelope, Message, PacksMsg};
use serde_json::json;
use tokio::sync::watch;

use super::loadgen::{self, Outcome, Plan, Request, Target};
use super::{Options, Tls, memory_mib};
use crate::load::{Conn, Reply};
use crate::national::{BATCH, EXPIRY, GTIN, Setup, open_stores, seed, serial};

/// Everything one engine and size measured.
pub struct Run {
    pub engine: String,
    pub packs: u64,
    pub seed_seconds: f64,
    pub raw: crate::baseline::Baseline,
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
    /// Bulk supplies of fresh packs, alone.
    pub bulk_alone: BulkFigures,
    /// The same while verifies ran at 50 %.
    pub bulk_under_verify: BulkFigures,
    /// Verifies at 50 % while bulk supplies ran.
    pub verify_under_bulk: Outcome,
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

/// A delivery from the hub of one message: new packs of the bench's product and batch.
fn packs_delivery(message_id: String, serials: Vec<String>) -> Delivery {
    let body = Message::Packs(PacksMsg {
        scheme: "GTIN".into(),
        product_code: GTIN.into(),
        batch: BATCH.into(),
        serials,
    });
    Delivery {
        messages: vec![Envelope { message_id, origin: "hub".into(), ordering_key: GTIN.into(), body }],
    }
}

/// Delivers chunks of new serials to the national system, one after another, until `stop`;
/// returns how many were created per second.
async fn ingest(national: Arc<National>, stop: Arc<AtomicBool>, from: Arc<AtomicU64>) -> f64 {
    let started = Instant::now();
    let mut created = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let first = from.fetch_add(INGEST_CHUNK, Ordering::Relaxed);
        let serials = (first..first + INGEST_CHUNK).map(|i| format!("I{i:012}")).collect();
        match national.apply_delivery(&packs_delivery(format!("suite-ingest-{first}"), serials)).await {
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

/// Packs per bulk request at most (api.md allows 100,000).
const BULK_ROWS: u64 = 10_000;
/// Bulk requests the client keeps submitted, so that the worker always has the next one queued.
const BULK_WINDOW: usize = 2;
/// How often a bulk's status is asked for, and how long a refused request waits to be sent again.
const BULK_POLL: Duration = Duration::from_millis(20);
/// How long one bulk may take to be DONE before the scenario fails.
const BULK_TIMEOUT: Duration = Duration::from_secs(600);
/// How often one request refused with 503 or 429 is sent again before the scenario fails.
const BULK_RETRIES: u32 = 500;
/// The most packs seeded for one bulk phase.
const MAX_BULK_POOL: u64 = 5_000_000;

/// What one bulk phase measured: every pack's supply was accepted.
pub struct BulkFigures {
    /// Packs supplied.
    pub packs: u64,
    /// Bulk requests sent.
    pub requests: u64,
    /// Packs per request.
    pub rows: u64,
    /// From the first `POST /v1/bulk` to the last `DONE`.
    pub seconds: f64,
    /// Packs supplied, and seconds, until the phase ended: the bulks still submitted then finish
    /// afterwards, without what ran beside them (the `done` of the bulk being polled counts). If
    /// no chunk of a bulk was committed by then (a phase of a fraction of a second), until the
    /// first one was; the whole run if it ended first.
    pub phase_packs: u64,
    pub phase_seconds: f64,
    /// Status requests made.
    pub polls: u64,
    /// Requests refused with 503 or 429 and sent again.
    pub shed: u64,
}

impl BulkFigures {
    /// Packs supplied per second while the phase ran.
    pub fn rate(&self) -> f64 {
        if self.phase_seconds > 0.0 { self.phase_packs as f64 / self.phase_seconds } else { 0.0 }
    }

    /// Notes the progress when the phase ended, once: `done` packs of the bulk being polled.
    fn phase_end(&mut self, stop: &AtomicBool, started: Instant, done: u64) {
        if self.phase_seconds == 0.0 && stop.load(Ordering::Relaxed) && self.packs + done > 0 {
            self.phase_packs = self.packs + done;
            self.phase_seconds = started.elapsed().as_secs_f64();
        }
    }
}

/// The serial of the `i`-th pack seeded for the bulk phases, which no other scenario touches.
fn bulk_serial(i: u64) -> String {
    format!("K{i:012}")
}

/// Enough fresh packs for `factor` times what `rate` supplies in `span`, in whole requests of
/// `rows`, plus a window's worth.
fn bulk_pool(rate: f64, span: Duration, factor: f64, rows: u64) -> u64 {
    let wanted = (rate * span.as_secs_f64() * factor) as u64;
    ((wanted.div_ceil(rows) + BULK_WINDOW as u64) * rows).min(MAX_BULK_POOL)
}

/// Seeds the packs `bulk_serial(first..first + count)` as the hub would deliver them; not measured.
async fn seed_bulk(national: &National, first: u64, count: u64) -> anyhow::Result<()> {
    let mut n = first;
    while n < first + count {
        let take = (first + count - n).min(50_000);
        let serials = (n..n + take).map(bulk_serial).collect();
        let ack = national
            .apply_delivery(&packs_delivery(format!("suite-bulk-packs-{n}"), serials))
            .await
            .map_err(|e| anyhow::anyhow!("seeding packs for bulk: {e}"))?;
        if let Some(a) = ack.results.iter().find(|a| a.status != "APPLIED") {
            bail!("seeding packs for bulk: message {} was {}", a.message_id, a.status);
        }
        n += take;
    }
    Ok(())
}

/// Sends a request, and again after a moment as long as it is refused with 503 or 429 (nothing
/// was changed then), counting the refusals.
async fn send_retrying(
    conn: &mut Conn,
    target: &Target,
    method: &str,
    path: &str,
    token: &str,
    body: Vec<u8>,
    shed: &mut u64,
) -> anyhow::Result<Reply> {
    let mut failure = None;
    for _ in 0..BULK_RETRIES {
        match conn.send(method, path, Some(token), body.clone()).await {
            Ok(r) if r.status != 503 && r.status != 429 => return Ok(r),
            Ok(_) => *shed += 1,
            // A server that refuses a request before reading its body closes the connection
            // after the answer, as HTTP/1.1 allows; a client connects again and resends (the
            // same client_trx_id, so the retry has one effect).
            Err(e) => {
                failure = Some(e);
                if let Ok(c) = Conn::open(target.addr, &target.host, target.tls.clone()).await {
                    *conn = c;
                }
            }
        }
        tokio::time::sleep(BULK_POLL).await;
    }
    match failure {
        Some(e) => Err(e.context(format!("{method} {path}: failed {BULK_RETRIES} times in a row"))),
        None => bail!("{method} {path}: refused {BULK_RETRIES} times in a row"),
    }
}

/// Polls bulk `id` until it is DONE and checks that it supplied `bulk_serial(from..from + n)`, in
/// order, every one accepted. Notes the progress when `stop` is first seen set.
#[allow(clippy::too_many_arguments)]
async fn bulk_done(
    conn: &mut Conn,
    target: &Target,
    token: &str,
    id: &str,
    from: u64,
    n: u64,
    f: &mut BulkFigures,
    stop: &AtomicBool,
    phase_started: Instant,
) -> anyhow::Result<()> {
    let path = format!("/v1/bulk/{id}");
    let started = Instant::now();
    let status = loop {
        let reply = send_retrying(conn, target, "GET", &path, token, Vec::new(), &mut f.shed).await?;
        f.polls += 1;
        if reply.status != 200 {
            bail!("GET {path}: HTTP {}: {}", reply.status, String::from_utf8_lossy(&reply.body));
        }
        let s: BulkStatusResponse =
            serde_json::from_slice(&reply.body).with_context(|| format!("GET {path}: the answer"))?;
        f.phase_end(stop, phase_started, s.done.min(n));
        match s.status.as_str() {
            "DONE" => break s,
            "PENDING" | "RUNNING" if started.elapsed() < BULK_TIMEOUT => tokio::time::sleep(BULK_POLL).await,
            other => bail!(
                "bulk {id} is {other} after {:.0} s, {} of {} rows done",
                started.elapsed().as_secs_f64(),
                s.done,
                s.total
            ),
        }
    };
    if status.results.len() as u64 != n {
        bail!("bulk {id}: {} results for {n} supplies", status.results.len());
    }
    for (k, r) in status.results.iter().enumerate() {
        let want = bulk_serial(from + k as u64);
        if r.serial != want
            || !r.accepted
            || r.return_code != "NMVS_SUCCESS"
            || r.state.as_deref() != Some("SUPPLIED")
        {
            bail!(
                "bulk {id}: row {k}, the supply of {want}, was not accepted: serial {}, accepted {}, {}, state {:?}",
                r.serial,
                r.accepted,
                r.return_code,
                r.state
            );
        }
    }
    Ok(())
}

/// A pharmacy's bulk client: supplies the fresh packs `bulk_serial(first..first + count)` in
/// requests of `rows`, keeping `BULK_WINDOW` submitted, polling each until DONE and checking
/// every result; once `stop` is set it submits no more and waits for those submitted. With
/// `must_last`, using the packs up before `stop` is an error: the verifies beside it would be
/// measured partly without bulk.
#[allow(clippy::too_many_arguments)]
async fn bulk_client(
    target: Target,
    token: Arc<str>,
    tag: &'static str,
    first: u64,
    count: u64,
    rows: u64,
    stop: Arc<AtomicBool>,
    must_last: bool,
) -> anyhow::Result<BulkFigures> {
    let mut conn = Conn::open(target.addr, &target.host, target.tls.clone())
        .await
        .context("the bulk client's connection")?;
    let mut f = BulkFigures {
        packs: 0,
        requests: 0,
        rows,
        seconds: 0.0,
        phase_packs: 0,
        phase_seconds: 0.0,
        polls: 0,
        shed: 0,
    };
    let (end, mut next) = (first + count, first);
    let mut queue: VecDeque<(String, u64, u64)> = VecDeque::new();
    let started = Instant::now();
    loop {
        while queue.len() < BULK_WINDOW && next < end && !stop.load(Ordering::Relaxed) {
            let n = rows.min(end - next);
            let body = json!({"client_trx_id": format!("{tag}-{next}"), "operation": "supply", "scheme": "GTIN",
                              "product_code": GTIN, "batch": BATCH, "expiry": EXPIRY,
                              "serials": (next..next + n).map(bulk_serial).collect::<Vec<_>>()});
            let reply = send_retrying(
                &mut conn,
                &target,
                "POST",
                "/v1/bulk",
                &token,
                body.to_string().into_bytes(),
                &mut f.shed,
            )
            .await?;
            if reply.status != 202 {
                bail!(
                    "POST /v1/bulk ({n} supplies from {}): HTTP {}: {}",
                    bulk_serial(next),
                    reply.status,
                    String::from_utf8_lossy(&reply.body)
                );
            }
            let accepted: BulkAccepted =
                serde_json::from_slice(&reply.body).context("POST /v1/bulk: the answer")?;
            queue.push_back((accepted.bulk_id, next, n));
            next += n;
        }
        let Some((id, from, n)) = queue.pop_front() else { break };
        bulk_done(&mut conn, &target, &token, &id, from, n, &mut f, &stop, started).await?;
        f.packs += n;
        f.requests += 1;
    }
    f.seconds = started.elapsed().as_secs_f64();
    if f.phase_seconds == 0.0 {
        (f.phase_packs, f.phase_seconds) = (f.packs, f.seconds);
    }
    if must_last && !stop.load(Ordering::Relaxed) {
        bail!(
            "bulk ({tag}) used up its {count} fresh packs in {:.1} s, before the verifies beside it ended",
            f.seconds
        );
    }
    Ok(f)
}

/// The bulk phases, on packs seeded for them: supplies in bulk alone for the span (or until the
/// packs run out), then again while verifies run at `rate` (50 %) open loop. The packs of each
/// phase are seeded just before it, sized from what was measured already (three times what the
/// single-supply maximum would do in the span, then twice what bulk alone did), and not measured.
#[allow(clippy::too_many_arguments)]
async fn bulk_phases(
    load: &tokio::runtime::Handle,
    target: &Target,
    national: &National,
    token: Arc<str>,
    verify: Plan,
    packs: u64,
    supply_rate: f64,
    rate: f64,
    connections: usize,
    span: Duration,
) -> anyhow::Result<(BulkFigures, BulkFigures, Outcome)> {
    let rows = (packs / 10).clamp(1_000, BULK_ROWS);
    let alone_count = bulk_pool(supply_rate, span, 3.0, rows);
    seed_bulk(national, 0, alone_count).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut task = load.spawn(bulk_client(
        target.clone(),
        token.clone(),
        "bulk-alone",
        0,
        alone_count,
        rows,
        stop.clone(),
        false,
    ));
    let alone = tokio::select! {
        r = &mut task => r,
        _ = tokio::time::sleep(span) => {
            stop.store(true, Ordering::Relaxed);
            task.await
        }
    }
    .context("the bulk client panicked")??;
    let under_count = bulk_pool(alone.rate(), span, 2.0, rows);
    seed_bulk(national, alone_count, under_count).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let task = load.spawn(bulk_client(
        target.clone(),
        token,
        "bulk-under",
        alone_count,
        under_count,
        rows,
        stop.clone(),
        true,
    ));
    let verifies = loadgen::open_loop(load, target, &verify, rate, connections, span).await;
    stop.store(true, Ordering::Relaxed);
    let under = task.await.context("the bulk client panicked")??;
    Ok((alone, under, verifies))
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

/// Makes a pharmacy at `location` and gets its token over HTTPS.
async fn pharmacy_token(national: &National, target: &Target, location: &str) -> anyhow::Result<Arc<str>> {
    let c = national
        .create_client(Role::Pharmacy, Location::new(location).map_err(|e| anyhow::anyhow!("{e}"))?, "suite")
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut conn = Conn::open(target.addr, &target.host, target.tls.clone()).await?;
    let form =
        format!("grant_type=client_credentials&client_id={}&client_secret={}", c.client_id, c.client_secret);
    let reply = conn.send("POST", "/oauth/token", None, form.into_bytes()).await?;
    let v: serde_json::Value = serde_json::from_slice(&reply.body)?;
    Ok(Arc::<str>::from(v["access_token"].as_str().with_context(|| format!("no token for {location}"))?))
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
    openmvs_node::national::claim_market(&dir, market)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let on_group: Arc<dyn Fn(usize) + Send + Sync> = Arc::new(|_| {});
    let stores = open_stores(engine, &dir, &clock, &on_group)?;
    let store = stores.nodes[0].clone();
    // The unknown-serial scenario measures raising alerts, so no client is contained for it.
    let mut config = NationalConfig::new(market);
    config.guessing = openmvs_core::guessing::GuessingPolicy::never();
    let national = Arc::new(
        National::new(store.store(), clock.clone(), config, None)
            .await
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
        (Setup::Sqlite, _) => crate::baseline::sqlite::measure(
            &openmvs_node::national::db_path(&dir),
            &dir.join("baseline"),
            GTIN,
            packs,
            &serial,
            secs,
        )?,
        (Setup::Postgres { url, .. }, Some((_, schema))) => {
            let (url, schema) = (url.clone(), schema.clone());
            tokio::task::spawn_blocking(move || {
                crate::baseline::pg::measure(&url, &schema, GTIN, packs, &serial, secs)
            })
            .await??
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
        tokens.push(pharmacy_token(&national, &target, &format!("DE-PH-{i:04}")).await?);
    }
    let tokens = Arc::new(tokens);
    // The bulk client is a pharmacy of its own.
    let bulk_token = pharmacy_token(&national, &target, "DE-PH-BULK").await?;
    // As a national system runs it: the bulk worker takes the jobs that `POST /v1/bulk` stores.
    let (bulk_stop, bulk_stop_rx) = watch::channel(false);
    let bulk_worker = tokio::spawn(national.clone().run_bulk_worker(bulk_stop_rx));
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
    let stop = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn(ingest(national.clone(), stop.clone(), next_ingest.clone()));
    tokio::time::sleep(span).await;
    stop.store(true, Ordering::Relaxed);
    let ingest_alone = task.await.unwrap_or(0.0);
    let stop = Arc::new(AtomicBool::new(false));
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
    // Bulk alone, then bulk while verifies run at 50 %. Its failure is reported after the
    // cleanup below, so that a PostgreSQL schema is dropped either way.
    let bulk = bulk_phases(
        load,
        &target,
        &national,
        bulk_token,
        verify_known(tokens.clone(), packs, "vb50"),
        packs,
        supply_max.rate(),
        half,
        open_n,
        span,
    )
    .await;
    if let Ok((alone, under, verifies)) = &bulk {
        eprintln!(
            "  bulk: {:.0} packs/s alone, {:.0}/s under verifies (verify p99 {:.2} ms)",
            alone.rate(),
            under.rate(),
            verifies.ms(0.99)
        );
    }
    let (_, rss_peak_mib) = memory_mib();

    server.shutdown(Duration::from_secs(2)).await;
    let _ = bulk_stop.send(true);
    let _ = bulk_worker.await;
    drop(national);
    for s in &stores.nodes {
        s.close().await;
    }
    if let Some((url, schema)) = &stores.schema
        && let Err(e) = openmvs_store_pg::drop_schema(url, schema)
    {
        eprintln!("could not drop the bench schema {schema}: {e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    let (bulk_alone, bulk_under_verify, verify_under_bulk) = bulk.context("bulk")?;
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
        bulk_alone,
        bulk_under_verify,
        verify_under_bulk,
        rss_after_seed_mib,
        rss_peak_mib,
    })
}
