//! `openmvs-bench national`: starts a national system in this process on a fresh embedded store,
//! over HTTPS with keep-alive, and measures durable supply rates (one client, many clients) and
//! verify latency; then, given a PostgreSQL database, the same on PostgreSQL with one node and
//! with two nodes sharing the schema, and prints them side by side. Every figure is printed with
//! the parameters that produced it.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use openmvs_core::ids::{Location, MarketCode};
use openmvs_core::roles::Role;
use openmvs_core::time::Clock;
use openmvs_http::limit::{Limiter, RateLimit};
use openmvs_http::{NationalState, Observability, ServerHandle, TlsConfig, national_router, serve};
use openmvs_national::clock::SystemClock;
use openmvs_national::{National, NationalConfig};
use openmvs_node::Storage;
use openmvs_node::national as node;
use openmvs_wire::hub::{BatchMsg, Delivery, Envelope, Message, PacksMsg, ProductMsg};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;

use crate::load::{self, Conn};
use crate::out::outln;

pub(crate) const GTIN: &str = "09501101530003";
pub(crate) const BATCH: &str = "BENCH1";
pub(crate) const EXPIRY: &str = "301231";

/// What one scenario measured.
struct Figures {
    name: String,
    clients: usize,
    requests: u64,
    errors: u64,
    seconds: f64,
    latency: Histogram<u64>,
}

impl Figures {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    fn ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }

    fn print(&self) {
        outln!(
            "{:<34} clients {:>3}  {:>9.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  ({} requests, {} errors, {:.1} s)",
            self.name,
            self.clients,
            self.rate(),
            self.ms(0.5),
            self.ms(0.99),
            self.latency.max() as f64 / 1000.0,
            self.requests,
            self.errors,
            self.seconds
        );
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "scenario": self.name, "clients": self.clients, "requests": self.requests, "errors": self.errors,
            "seconds": self.seconds, "rate_per_s": self.rate(), "p50_ms": self.ms(0.5), "p99_ms": self.ms(0.99),
            "max_ms": self.latency.max() as f64 / 1000.0,
        })
    }
}

/// One way of running the national system: an engine and a number of nodes on it.
#[derive(Debug, Clone)]
pub(crate) enum Setup {
    Sqlite,
    Postgres { url: String, nodes: usize },
}

impl Setup {
    pub(crate) fn label(&self) -> String {
        match self {
            Setup::Sqlite => "sqlite, 1 node".into(),
            Setup::Postgres { nodes, .. } => {
                format!("postgres, {nodes} node{}", if *nodes > 1 { "s" } else { "" })
            }
        }
    }
}

pub fn national(
    packs: u64,
    seconds: u64,
    clients: usize,
    database_url: Option<&str>,
    pg_nodes: &[usize],
) -> anyhow::Result<ExitCode> {
    if let Some(bad) = pg_nodes.iter().find(|n| **n == 0 || **n > 16) {
        anyhow::bail!("--nodes: {bad} must be 1-16");
    }
    let rt = openmvs_node::server_runtime()?;
    // The load generator has threads of its own, as a separate client process would: sharing the
    // server's runtime would put its work in the server's queues and measure both as one.
    let load_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("load")
        .enable_all()
        .build()?;
    let from_env = std::env::var("OPENMVS_DATABASE_URL").ok().filter(|u| !u.is_empty());
    let mut setups = vec![Setup::Sqlite];
    match database_url.map(str::to_owned).or(from_env) {
        Some(url) => {
            for &nodes in pg_nodes {
                setups.push(Setup::Postgres { url: url.clone(), nodes });
            }
        }
        None => eprintln!("PostgreSQL skipped: give --database-url URL (or OPENMVS_DATABASE_URL) to compare"),
    }
    let mut summary = Vec::new();
    for setup in &setups {
        outln!("== {}", setup.label());
        let figures = rt.block_on(run(setup, packs, seconds, clients, load_rt.handle().clone()))?;
        summary.push((setup.label(), figures));
    }
    outln!("== summary ({packs} packs, {seconds} s per scenario, {clients} concurrent clients)");
    outln!(
        "{:<18} {:>14} {:>12} {:>14} {:>12} {:>13} {:>13}",
        "setup",
        "supply 1 /s",
        "supply N /s",
        "supply N p99",
        "verify N /s",
        "verify 1 p99",
        "verify N p99"
    );
    let mut rows = Vec::new();
    for (label, f) in &summary {
        let find = |n: &str| f.iter().find(|x| x.name == n);
        let (s1, sn, v1, vn) = (
            find("supply, one client"),
            find("supply, concurrent clients"),
            find("verify, one client"),
            find("verify, concurrent clients"),
        );
        let rate = |x: Option<&Figures>| x.map_or(0.0, Figures::rate);
        let p99 = |x: Option<&Figures>| x.map_or(0.0, |x| x.ms(0.99));
        outln!(
            "{label:<18} {:>14.0} {:>12.0} {:>11.2} ms {:>12.0} {:>10.2} ms {:>10.2} ms",
            rate(s1),
            rate(sn),
            p99(sn),
            rate(vn),
            p99(v1),
            p99(vn)
        );
        rows.push(json!({"setup": label, "scenarios": f.iter().map(Figures::json).collect::<Vec<_>>()}));
    }
    outln!("{}", json!({"packs": packs, "seconds": seconds, "clients": clients, "setups": rows}));
    Ok(ExitCode::SUCCESS)
}

/// The stores of one setup: the nodes' stores, and how to remove what the bench made.
pub(crate) struct Stores {
    pub(crate) nodes: Vec<node::NodeStore>,
    pub(crate) schema: Option<(String, String)>,
}

pub(crate) fn open_stores(
    setup: &Setup,
    dir: &std::path::Path,
    clock: &Arc<dyn Clock>,
    on_group: &Arc<dyn Fn(usize) + Send + Sync>,
) -> anyhow::Result<Stores> {
    match setup {
        Setup::Sqlite => Ok(Stores {
            nodes: vec![node::open(dir, &Storage::Sqlite, clock.clone(), Some(on_group.clone()))?],
            schema: None,
        }),
        Setup::Postgres { url, nodes } => {
            let schema = format!("openmvs_bench_{}", std::process::id());
            openmvs_store_pg::reset_schema(url, &schema).map_err(|e| anyhow::anyhow!("{e}"))?;
            openmvs_store_pg::migrate(url, Some(&schema), clock.now()).map_err(|e| anyhow::anyhow!("{e}"))?;
            let storage = Storage::Postgres {
                url: url.clone(),
                schema: schema.clone(),
                pool: 4,
                commit_timeout: Duration::from_secs(10),
            };
            let mut stores = Vec::new();
            for _ in 0..*nodes {
                stores.push(node::open(dir, &storage, clock.clone(), Some(on_group.clone()))?);
            }
            Ok(Stores { nodes: stores, schema: Some((url.clone(), schema)) })
        }
    }
}

async fn run(
    setup: &Setup,
    packs: u64,
    seconds: u64,
    clients: usize,
    load: tokio::runtime::Handle,
) -> anyhow::Result<Vec<Figures>> {
    let dir = std::env::temp_dir().join(format!("openmvs-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let market = MarketCode::new("DE").map_err(|e| anyhow::anyhow!("{e}"))?;
    node::claim_market(&dir, market)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let groups = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let g = groups.clone();
    let on_group: Arc<dyn Fn(usize) + Send + Sync> = Arc::new(move |n| {
        g.0.fetch_add(1, Ordering::Relaxed);
        g.1.fetch_add(n as u64, Ordering::Relaxed);
    });
    let stores = open_stores(setup, &dir, &clock, &on_group)?;
    let mut nationals = Vec::new();
    for store in &stores.nodes {
        nationals.push(Arc::new(
            National::new(store.store(), clock.clone(), NationalConfig::new(market), None)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        ));
    }

    eprintln!("seeding {packs} packs ...");
    let started = Instant::now();
    seed(&nationals[0], packs).await?;
    eprintln!("seeded in {:.1} s", started.elapsed().as_secs_f64());

    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])?;
    let mut servers = Vec::new();
    for national in &nationals {
        servers.push(serve_national(national, &cert, &clock).await?);
    }
    let tls = load::tls(&CertificateDer::from(cert.cert.der().to_vec()))?;

    eprintln!("creating {clients} clients ...");
    let mut terminals = Vec::new();
    for i in 0..clients.max(1) {
        // Terminals are spread over the nodes, as a load balancer would.
        let (national, addr) = (&nationals[i % nationals.len()], servers[i % servers.len()].local_addr());
        let c = national
            .create_client(
                Role::Pharmacy,
                Location::new(&format!("DE-PH-{i:04}")).map_err(|e| anyhow::anyhow!("{e}"))?,
                "bench",
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut conn = Conn::open(addr, "localhost", tls.clone()).await?;
        let form = format!(
            "grant_type=client_credentials&client_id={}&client_secret={}",
            c.client_id, c.client_secret
        );
        let reply = conn.send("POST", "/oauth/token", None, form.into_bytes()).await?;
        let token: serde_json::Value = serde_json::from_slice(&reply.body)?;
        let token = token["access_token"].as_str().context("no token")?.to_owned();
        terminals.push(Terminal { tls: tls.clone(), addr, token });
    }

    let next_serial = Arc::new(AtomicU64::new(0));
    let duration = Duration::from_secs(seconds);
    let mut all = Vec::new();
    let mut scenarios: Vec<(&str, &str, usize)> = vec![
        ("supply, one client", "supply", 1),
        ("supply, concurrent clients", "supply", clients),
        ("verify, one client", "verify", 1),
        ("verify, concurrent clients", "verify", clients),
    ];
    if matches!(setup, Setup::Sqlite) {
        scenarios.insert(0, ("baseline: GET /health/live", "live", clients));
    }
    for (name, op, n) in scenarios {
        let (g0, s0) = (groups.0.load(Ordering::Relaxed), groups.1.load(Ordering::Relaxed));
        let f = scenario(&load, name, op, &terminals[..n], duration, &next_serial, packs).await;
        let (g1, s1) = (groups.0.load(Ordering::Relaxed), groups.1.load(Ordering::Relaxed));
        f.print();
        if g1 > g0 {
            outln!(
                "{:<34} {:.1} units of work per committed transaction",
                "",
                (s1 - s0) as f64 / (g1 - g0) as f64
            );
        }
        all.push(f);
    }
    let rate = |n: &str| all.iter().find(|f| f.name == n).map_or(0.0, Figures::rate);
    let ratio = rate("supply, concurrent clients") / rate("supply, one client");
    outln!("concurrent / single-client durable supply rate: {ratio:.1}x");
    for server in servers {
        server.shutdown(Duration::from_secs(2)).await;
    }
    for store in &stores.nodes {
        store.close().await;
    }
    drop(nationals);
    if let Some((url, schema)) = &stores.schema {
        drop(stores.nodes);
        if let Err(e) = openmvs_store_pg::drop_schema(url, schema) {
            eprintln!("could not drop the bench schema {schema}: {e}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(all)
}

/// Serves `national` on 127.0.0.1 over TLS with `cert`, ready, with no per-client rate limit:
/// the bench measures the server, not the limit.
pub(crate) async fn serve_national(
    national: &Arc<National>,
    cert: &rcgen::CertifiedKey<rcgen::KeyPair>,
    clock: &Arc<dyn Clock>,
) -> anyhow::Result<ServerHandle> {
    let tls = TlsConfig {
        cert_chain: vec![CertificateDer::from(cert.cert.der().to_vec())],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der())),
        client_ca: None,
        crls: Vec::new(),
    };
    let obs = Arc::new(Observability::new(clock.clone()));
    obs.set_ready(true);
    let limiter = Arc::new(Limiter::new(RateLimit { per_second: 1e9, burst: 1e9 }));
    let router = national_router(NationalState { national: national.clone(), obs, limiter });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    serve(listener, router, Some(tls)).map_err(|e| anyhow::anyhow!(e))
}

pub(crate) async fn seed(national: &National, packs: u64) -> anyhow::Result<()> {
    let env = |id: String, body| Envelope {
        message_id: id,
        origin: "bench".into(),
        ordering_key: GTIN.into(),
        body,
    };
    let mut messages = vec![
        env(
            "bench-product".into(),
            Message::Product(ProductMsg {
                scheme: "GTIN".into(),
                product_code: GTIN.into(),
                name: "Benchomab 10 mg".into(),
                common_name: "benchomab".into(),
                form: "TABLET".into(),
                strength: "10 mg".into(),
                pack_type: "BOX".into(),
                pack_size: "30".into(),
                owner: "bench-obp".into(),
                version: 1,
            }),
        ),
        env(
            "bench-batch".into(),
            Message::Batch(BatchMsg {
                scheme: "GTIN".into(),
                product_code: GTIN.into(),
                batch: BATCH.into(),
                expiry: EXPIRY.into(),
                markets: vec!["DE".into()],
            }),
        ),
    ];
    let mut n = 0;
    while n < packs {
        let take = (packs - n).min(50_000);
        messages.push(env(
            format!("bench-packs-{n}"),
            Message::Packs(PacksMsg {
                scheme: "GTIN".into(),
                product_code: GTIN.into(),
                batch: BATCH.into(),
                serials: (n..n + take).map(serial).collect(),
            }),
        ));
        national
            .apply_delivery(&Delivery { messages: std::mem::take(&mut messages) })
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        n += take;
    }
    Ok(())
}

pub(crate) fn serial(i: u64) -> String {
    format!("B{i:012}")
}

/// A simulated terminal: its own keep-alive connection and token.
struct Terminal {
    tls: Arc<rustls::ClientConfig>,
    addr: std::net::SocketAddr,
    token: String,
}

async fn scenario(
    load: &tokio::runtime::Handle,
    name: &str,
    op: &str,
    terminals: &[Terminal],
    duration: Duration,
    next_serial: &Arc<AtomicU64>,
    packs: u64,
) -> Figures {
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (t, term) in terminals.iter().enumerate() {
        let (tls, addr, token) = (term.tls.clone(), term.addr, term.token.clone());
        let path = if op == "live" { "/health/live".to_owned() } else { format!("/v1/packs/{op}") };
        let next = next_serial.clone();
        let op = op.to_owned();
        let run = name.replace(' ', "").replace(',', "-");
        tasks.push(load.spawn(async move {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(|_| unreachable!());
            let (mut ok, mut errors, mut i) = (0u64, 0u64, 0u64);
            let mut conn = match Conn::open(addr, "localhost", tls).await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{op}: connecting: {e}");
                    return (h, 0, 1);
                }
            };
            while Instant::now() < deadline {
                // Supplies take fresh packs; verifies spread over the whole data set.
                let s = if op == "supply" {
                    next.fetch_add(1, Ordering::Relaxed) % packs
                } else {
                    (i.wrapping_mul(2_654_435_761) + t as u64 * 7919) % packs
                };
                let sent = Instant::now();
                let reply = if op == "live" {
                    conn.send("GET", &path, None, Vec::new()).await
                } else {
                    let body = json!({"client_trx_id": format!("{run}-{op}-{t}-{i}"), "scheme": "GTIN", "product_code": GTIN,
                                      "serial": serial(s), "batch": BATCH, "expiry": EXPIRY});
                    conn.send("POST", &path, Some(&token), body.to_string().into_bytes()).await
                };
                let _ = h.record(sent.elapsed().as_micros() as u64);
                match reply {
                    Ok(r) if r.status == 200 => ok += 1,
                    Ok(r) => {
                        if errors == 0 {
                            eprintln!("{op}: HTTP {}: {}", r.status, String::from_utf8_lossy(&r.body));
                        }
                        errors += 1;
                    }
                    Err(e) => {
                        if errors == 0 {
                            eprintln!("{op}: {e}");
                        }
                        errors += 1;
                        break;
                    }
                }
                i += 1;
            }
            (h, ok, errors)
        }));
    }
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(|_| unreachable!());
    let (mut requests, mut errors) = (0, 0);
    for t in tasks {
        if let Ok((h, ok, e)) = t.await {
            let _ = latency.add(&h);
            requests += ok;
            errors += e;
        }
    }
    Figures {
        name: name.to_owned(),
        clients: terminals.len(),
        requests,
        errors,
        seconds: started.elapsed().as_secs_f64(),
        latency,
    }
}
