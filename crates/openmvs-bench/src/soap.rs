//! `openmvs-bench soap`: the NMVS SOAP verify (G110) against the JSON verify on the same national
//! system, in this process, on a fresh embedded store, over HTTPS with keep-alive. Each terminal
//! is a pharmacy with its own connection; JSON terminals send a bearer token, SOAP terminals the
//! login inside each envelope, as NMVS software does (remembered after the first request, which
//! the warm-up sends). Each API is run alone (its throughput), then both at once with every
//! terminal alternating a JSON and a SOAP verify (their latencies under the very same conditions:
//! the store's background work, a WAL that grew, the machine's other load), one client then many.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use openmvs_core::ids::{Location, MarketCode};
use openmvs_core::roles::Role;
use openmvs_core::time::Clock;
use openmvs_national::clock::SystemClock;
use openmvs_national::{National, NationalConfig};
use openmvs_node::Storage;
use openmvs_node::national as node;
use rustls_pki_types::CertificateDer;
use serde_json::json;

use crate::load::{self, Conn};
use crate::national::{BATCH, EXPIRY, GTIN, seed, serial, serve_national};
use crate::out::outln;

/// Requests per terminal before each scenario that are not measured (the SOAP login's first
/// check with argon2 among them).
const WARMUP: u64 = 20;

const SOAP_PATH: &str = "/WS_SINGLE_TRANSACTIONS_V1/SinglePackServiceV40";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    Json,
    Soap,
    /// Every terminal alternates a JSON and a SOAP verify, measured apart.
    Both,
}

/// A pharmacy terminal: its token, and its login for SOAP.
#[derive(Clone)]
struct Terminal {
    token: String,
    client_id: String,
    secret: String,
}

struct Figures {
    name: String,
    clients: usize,
    requests: u64,
    errors: u64,
    seconds: f64,
    latency: Histogram<u64>,
}

impl Figures {
    fn ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }

    fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    fn print(&self) {
        outln!(
            "{:<34} clients {:>3}  {:>8.0} req/s  p50 {:>6.2} ms  p95 {:>6.2} ms  p99 {:>6.2} ms  ({} requests, {} errors, {:.1} s)",
            self.name,
            self.clients,
            self.rate(),
            self.ms(0.5),
            self.ms(0.95),
            self.ms(0.99),
            self.requests,
            self.errors,
            self.seconds
        );
    }

    fn json(&self) -> serde_json::Value {
        json!({"scenario": self.name, "clients": self.clients, "requests": self.requests, "errors": self.errors,
               "seconds": self.seconds, "rate_per_s": self.rate(), "p50_ms": self.ms(0.5), "p95_ms": self.ms(0.95),
               "p99_ms": self.ms(0.99)})
    }
}

/// The G110 envelope a terminal sends, as NMVS software writes it.
fn envelope(t: &Terminal, trx: &str, sn: &str) -> String {
    format!(
        "<soap:Envelope xmlns:soap=\"http://www.w3.org/2003/05/soap-envelope\" xmlns:urn=\"urn:wsdltypes.nmvs.eu:v4.0\" \
         xmlns:urn1=\"urn:types.nmvs.eu:v4.0\"><soap:Header/><soap:Body><urn:G110Request><urn1:Header><urn1:Auth>\
         <urn1:ClientLoginId>{id}</urn1:ClientLoginId><urn1:UserId>{id}</urn1:UserId><urn1:Password>{pw}</urn1:Password>\
         </urn1:Auth><urn1:UserSoftware urn1:supplier=\"bench\" urn1:name=\"openmvs-bench\" urn1:version=\"1\"/>\
         <urn1:Transaction><urn1:ClientTrxId>{trx}</urn1:ClientTrxId><urn1:Language>eng</urn1:Language>\
         </urn1:Transaction></urn1:Header><urn1:Body><urn1:Product><urn1:ProductCode urn1:scheme=\"GTIN\">{GTIN}\
         </urn1:ProductCode><urn1:Batch><urn1:Id>{BATCH}</urn1:Id><urn1:ExpDate>{EXPIRY}</urn1:ExpDate></urn1:Batch>\
         </urn1:Product><urn1:Pack urn1:sn=\"{sn}\"/></urn1:Body></urn:G110Request></soap:Body></soap:Envelope>",
        id = t.client_id,
        pw = t.secret,
    )
}

pub fn soap(packs: u64, seconds: u64, clients: usize) -> anyhow::Result<ExitCode> {
    let rt = openmvs_node::server_runtime()?;
    // The load generator has threads of its own, as a separate client process would.
    let load_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("load")
        .enable_all()
        .build()?;
    let figures = rt.block_on(run(packs, seconds, clients.max(1), load_rt.handle().clone()))?;
    let find = |n: &str| figures.iter().find(|f| f.name == n);
    outln!("== SOAP against JSON (same node, same run; {packs} packs, {seconds} s per scenario)");
    for (soap, json) in [
        ("SOAP verify, one client", "JSON verify, one client"),
        ("SOAP verify, concurrent", "JSON verify, concurrent"),
        ("alternating, one client: SOAP", "alternating, one client: JSON"),
        ("alternating, concurrent: SOAP", "alternating, concurrent: JSON"),
    ] {
        if let (Some(s), Some(j)) = (find(soap), find(json)) {
            outln!(
                "{:<34} SOAP/JSON  p50 x{:.2}  p95 x{:.2}  p99 x{:.2}  throughput x{:.2}",
                soap.trim_end_matches(": SOAP").replace("SOAP verify", "alone"),
                s.ms(0.5) / j.ms(0.5),
                s.ms(0.95) / j.ms(0.95),
                s.ms(0.99) / j.ms(0.99),
                s.rate() / j.rate()
            );
        }
    }
    outln!(
        "{}",
        json!({"packs": packs, "seconds": seconds, "clients": clients, "scenarios": figures.iter().map(Figures::json).collect::<Vec<_>>()})
    );
    Ok(ExitCode::SUCCESS)
}

async fn run(
    packs: u64,
    seconds: u64,
    clients: usize,
    load: tokio::runtime::Handle,
) -> anyhow::Result<Vec<Figures>> {
    let dir = std::env::temp_dir().join(format!("openmvs-bench-soap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let market = MarketCode::new("DE").map_err(|e| anyhow::anyhow!("{e}"))?;
    node::claim_market(&dir, market)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = node::open(&dir, &Storage::Sqlite, clock.clone(), None)?;
    let mut config = NationalConfig::new(market);
    config.secret_logins.enabled = true;
    let national = Arc::new(
        National::new(store.store(), clock.clone(), config, None)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    eprintln!("seeding {packs} packs ...");
    seed(&national, packs).await?;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])?;
    let server = serve_national(&national, &cert, &clock).await?;
    let addr = server.local_addr();
    let tls = load::tls(&CertificateDer::from(cert.cert.der().to_vec()))?;

    eprintln!("creating {clients} clients ...");
    let mut terminals = Vec::new();
    for i in 0..clients {
        let location = Location::new(&format!("DE-PH-{i:04}")).map_err(|e| anyhow::anyhow!("{e}"))?;
        let c = national
            .create_client(Role::Pharmacy, location, "bench")
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
        terminals.push(Terminal { token, client_id: c.client_id, secret: c.client_secret });
    }
    let duration = Duration::from_secs(seconds);
    let mut all = Vec::new();
    for (name, api, n) in [
        ("JSON verify, one client", Api::Json, 1),
        ("SOAP verify, one client", Api::Soap, 1),
        ("JSON verify, concurrent", Api::Json, clients),
        ("SOAP verify, concurrent", Api::Soap, clients),
        ("alternating, one client", Api::Both, 1),
        ("alternating, concurrent", Api::Both, clients),
    ] {
        for f in scenario(&load, name, api, &terminals[..n], addr, &tls, duration, packs).await {
            f.print();
            all.push(f);
        }
    }
    server.shutdown(Duration::from_secs(2)).await;
    store.close().await;
    drop(national);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(all)
}

#[allow(clippy::too_many_arguments)]
async fn scenario(
    load: &tokio::runtime::Handle,
    name: &str,
    api: Api,
    terminals: &[Terminal],
    addr: std::net::SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    duration: Duration,
    packs: u64,
) -> Vec<Figures> {
    let run = match api {
        Api::Json => "j",
        Api::Soap => "s",
        Api::Both => "b",
    };
    let new_histogram =
        || Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(|_| unreachable!());
    let mut tasks = Vec::new();
    let start = Arc::new(tokio::sync::Barrier::new(terminals.len()));
    for (t, term) in terminals.iter().enumerate() {
        let (tls, term, start) = (tls.clone(), term.clone(), start.clone());
        let tag = format!("{run}{}-{t}", terminals.len());
        tasks.push(load.spawn(async move {
            // [JSON, SOAP]: latencies, answers, errors.
            let mut h = [new_histogram(), new_histogram()];
            let (mut ok, mut errors) = ([0u64; 2], [0u64; 2]);
            let Ok(mut conn) = Conn::open(addr, "localhost", tls).await else { return (h, ok, [1, 1], 0.0) };
            let which = |i: u64| match api {
                Api::Json => Api::Json,
                Api::Soap => Api::Soap,
                Api::Both if i.is_multiple_of(2) => Api::Json,
                Api::Both => Api::Soap,
            };
            let mut i = 0u64;
            let one = async |i: u64, conn: &mut Conn| -> Result<(), String> {
                let sn = serial((i.wrapping_mul(2_654_435_761) + t as u64 * 7919) % packs);
                // A fresh ClientTrxId each time: NMVS software's are up to 32 characters.
                let trx = format!("{tag}-{i}");
                let soap = which(i) == Api::Soap;
                let reply = if soap {
                    conn.send_as("POST", SOAP_PATH, None, "text/xml", envelope(&term, &trx, &sn).into_bytes()).await
                } else {
                    let body = json!({"client_trx_id": trx, "scheme": "GTIN", "product_code": GTIN, "serial": sn,
                                      "batch": BATCH, "expiry": EXPIRY});
                    conn.send("POST", "/v1/packs/verify", Some(&term.token), body.to_string().into_bytes()).await
                };
                match reply {
                    Ok(r) if r.status == 200 => {
                        let body = String::from_utf8_lossy(&r.body);
                        let done = if soap {
                            body.contains("ns1:code=\"NMVS_SUCCESS\"")
                        } else {
                            body.contains("\"NMVS_SUCCESS\"")
                        };
                        if done { Ok(()) } else { Err(body.into_owned()) }
                    }
                    Ok(r) => Err(format!("HTTP {}: {}", r.status, String::from_utf8_lossy(&r.body))),
                    Err(e) => Err(e.to_string()),
                }
            };
            for _ in 0..WARMUP {
                let _ = one(i, &mut conn).await;
                i += 1;
            }
            start.wait().await;
            let began = Instant::now();
            let deadline = began + duration;
            while Instant::now() < deadline {
                let k = usize::from(which(i) == Api::Soap);
                let sent = Instant::now();
                let r = one(i, &mut conn).await;
                let _ = h[k].record(sent.elapsed().as_micros() as u64);
                match r {
                    Ok(()) => ok[k] += 1,
                    Err(e) => {
                        if errors[k] == 0 {
                            eprintln!("{tag}: {e}");
                        }
                        errors[k] += 1;
                    }
                }
                i += 1;
            }
            (h, ok, errors, began.elapsed().as_secs_f64())
        }));
    }
    let mut latency = [new_histogram(), new_histogram()];
    let (mut requests, mut errors, mut seconds) = ([0u64; 2], [0u64; 2], 0.0f64);
    for t in tasks {
        if let Ok((h, ok, e, s)) = t.await {
            for k in 0..2 {
                let _ = latency[k].add(&h[k]);
                requests[k] += ok[k];
                errors[k] += e[k];
            }
            seconds = seconds.max(s);
        }
    }
    let [json_latency, soap_latency] = latency;
    let figures = |name: String, k: usize, latency| Figures {
        name,
        clients: terminals.len(),
        requests: requests[k],
        errors: errors[k],
        seconds,
        latency,
    };
    match api {
        Api::Json => vec![figures(name.to_owned(), 0, json_latency)],
        Api::Soap => vec![figures(name.to_owned(), 1, soap_latency)],
        Api::Both => vec![
            figures(format!("{name}: JSON"), 0, json_latency),
            figures(format!("{name}: SOAP"), 1, soap_latency),
        ],
    }
}
