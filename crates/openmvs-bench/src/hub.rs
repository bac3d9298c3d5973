//! `openmvs-bench hub`: starts the European Hub and one national system per market in this
//! process on fresh stores, wired over HTTPS with mutual TLS as `openmvs demo` wires them (a
//! throwaway CA in the temp dir), registers a product and a batch through the OBP API with an OBP
//! client certificate, streams N generated serials as `text/plain` to `POST .../packs`, and
//! measures the time to the 202 (durable at the hub) and to DISTRIBUTED in every market, with the
//! process's peak resident memory to show that the upload is streamed. On SQLite by default; given
//! a PostgreSQL database, every system gets a schema of its own, made for the run and dropped
//! after it.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Frame;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use openmvs_core::ids::MarketCode;
use openmvs_core::time::Clock;
use openmvs_http::limit::{Limiter, RateLimit};
use openmvs_http::{
    HubState, NationalState, Observability, ServerHandle, TlsConfig, hub_router, national_router, serve,
};
use openmvs_hub::{Hub, HubConfig, MAX_UPLOAD_LINES};
use openmvs_national::clock::SystemClock;
use openmvs_national::{National, NationalConfig};
use openmvs_node::{Storage, hub as hub_node, national as node, redact_url};
use openmvs_pki::{CertificateAuthority, ClientKind, Issued};
use openmvs_testkit::{INTERMARKET_TIMEOUT, System, hub_link, hub_links, schema_storage};
use openmvs_wire::obp::{
    BatchRequest, Mah, ProductMarket, ProductRequest, UploadAcceptedBody, UploadStatusBody, WholesalerEntry,
};
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::json;
use tokio::sync::watch;

use crate::out::outln;

pub(crate) const GTIN: &str = "09501101530003";
pub(crate) const BATCH: &str = "BENCHHUB1";
pub(crate) const EXPIRY: &str = "301231";
/// The OBP the bench uploads as (its client certificate names `bench-obp.obp.openmvs`).
const OBP: &str = "bench-obp";
/// Digits of the serial number after the `S`: enough for the largest upload the hub takes.
const SERIAL_DIGITS: usize = 12;
/// Bytes per line: `S`, the digits, LF.
const LINE_BYTES: u64 = SERIAL_DIGITS as u64 + 2;
/// Lines per body chunk: about 56 KiB, in the range a client socket writes at once.
const LINES_PER_CHUNK: u64 = 4096;
/// How often the upload's status is asked for.
const POLL_EVERY: Duration = Duration::from_millis(50);
/// Days the throwaway certificates are valid.
const CERT_DAYS: u32 = 2;

/// How the national systems and the hub are wired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wiring {
    /// The hub delivers to the national systems; they have no link back (`openmvs-bench hub`).
    DeliveryOnly,
    /// As `openmvs demo`: each national system also has an `HttpHubLink` to the hub with its own
    /// `<market>.national.openmvs` certificate and runs its relay and bulk worker; the hub asks
    /// the national systems inter-market requests (`HttpNationalQueries`) and sends callbacks.
    Demo(Deadlines),
}

/// How long an inter-market request may take: the national system waits `national` for the
/// hub's answer, the hub gives the market it asks `hub`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Deadlines {
    pub national: Duration,
    pub hub: Duration,
}

impl Deadlines {
    /// The law's (fmd-rules §4.10), as the demo and a node run: what a measurement uses, so that
    /// an answer later than that counts against the run.
    pub(crate) fn law() -> Deadlines {
        Deadlines { national: INTERMARKET_TIMEOUT, hub: HubConfig::new([0; 32]).intermarket_budget }
    }

    /// Seconds, for a run that checks that the harness works and not how fast the machine is: a
    /// busy machine then makes answers slow, never wrong.
    pub(crate) fn generous() -> Deadlines {
        Deadlines { national: Duration::from_secs(20), hub: Duration::from_secs(15) }
    }
}

/// What one run measured.
pub(crate) struct HubFigures {
    /// Serials uploaded.
    pub serials: u64,
    /// The markets of the batch.
    pub markets: Vec<MarketCode>,
    /// Bytes of the upload body.
    pub body_bytes: u64,
    /// Lines the hub said it received, and rejected.
    pub received: u64,
    pub rejected: u64,
    /// Seconds from the first byte of the upload to its 202.
    pub accepted_s: f64,
    /// Seconds from the first byte of the upload to DISTRIBUTED in every market.
    pub distributed_s: f64,
    /// Status requests until DISTRIBUTED.
    pub polls: u64,
    /// Resident memory (KiB) just before the upload, and the peak before it.
    pub rss_before_kib: u64,
    pub hwm_before_kib: u64,
    /// Whether the peak was reset to the current RSS before the upload (`/proc/self/clear_refs`),
    /// so that the later peaks belong to the upload alone and not to the setup.
    pub hwm_reset: bool,
    /// The peak (KiB) at the 202, and at DISTRIBUTED.
    pub hwm_accepted_kib: u64,
    pub hwm_distributed_kib: u64,
    /// Anonymous resident memory (KiB, the heap) before the upload, and its peak sampled every
    /// 10 ms until DISTRIBUTED.
    pub anon_before_kib: u64,
    pub anon_peak_kib: u64,
    /// Packs each national system holds at the end.
    pub packs: Vec<(MarketCode, u64)>,
}

impl HubFigures {
    pub(crate) fn rate(&self, seconds: f64) -> f64 {
        self.serials as f64 / seconds
    }

    /// How much the peak rose over the resident memory at the start of the upload.
    pub(crate) fn peak_growth_kib(&self) -> u64 {
        let base = if self.hwm_reset { self.rss_before_kib } else { self.hwm_before_kib };
        self.hwm_distributed_kib.saturating_sub(base)
    }

    fn print(&self) {
        let markets = self.markets.iter().map(MarketCode::as_str).collect::<Vec<_>>().join(",");
        outln!(
            "hub upload: {} serials ({:.1} MiB text/plain, streamed) to {} market(s) {markets}",
            self.serials,
            self.body_bytes as f64 / 1048576.0,
            self.markets.len()
        );
        outln!(
            "{:<36} {:>8.2} s  {:>9.0} serials/s",
            "received and durable (202)",
            self.accepted_s,
            self.rate(self.accepted_s)
        );
        outln!(
            "{:<36} {:>8.2} s  {:>9.0} serials/s  ({} status polls)",
            "DISTRIBUTED in every market",
            self.distributed_s,
            self.rate(self.distributed_s),
            self.polls
        );
        outln!(
            "{:<36} {:>8.1} MiB before, peak {:.1} MiB at the 202, {:.1} MiB at DISTRIBUTED (+{:.1} MiB{})",
            "process resident memory",
            self.rss_before_kib as f64 / 1024.0,
            self.hwm_accepted_kib as f64 / 1024.0,
            self.hwm_distributed_kib as f64 / 1024.0,
            self.peak_growth_kib() as f64 / 1024.0,
            if self.hwm_reset { "" } else { "; the peak could not be reset, so it may be the setup's" }
        );
        outln!(
            "{:<36} {:>8.1} MiB before, peak {:.1} MiB (+{:.1} MiB; the rest of the peak above is mapped database pages)",
            "  of which anonymous (heap)",
            self.anon_before_kib as f64 / 1024.0,
            self.anon_peak_kib as f64 / 1024.0,
            self.anon_peak_kib.saturating_sub(self.anon_before_kib) as f64 / 1024.0,
        );
        for (m, n) in &self.packs {
            outln!("{:<36} {n} packs", format!("national system {m}"));
        }
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        json!({
            "serials": self.serials,
            "markets": self.markets.iter().map(MarketCode::as_str).collect::<Vec<_>>(),
            "body_bytes": self.body_bytes, "received": self.received, "rejected": self.rejected,
            "accepted_s": self.accepted_s, "accepted_per_s": self.rate(self.accepted_s),
            "distributed_s": self.distributed_s, "distributed_per_s": self.rate(self.distributed_s),
            "polls": self.polls,
            "rss_before_kib": self.rss_before_kib, "hwm_before_kib": self.hwm_before_kib,
            "hwm_reset": self.hwm_reset, "hwm_accepted_kib": self.hwm_accepted_kib,
            "hwm_distributed_kib": self.hwm_distributed_kib, "peak_growth_kib": self.peak_growth_kib(),
            "anon_before_kib": self.anon_before_kib, "anon_peak_kib": self.anon_peak_kib,
            "packs": self.packs.iter().map(|(m, n)| (m.as_str().to_owned(), *n)).collect::<BTreeMap<_, _>>(),
        })
    }
}

/// `openmvs-bench hub`.
pub fn hub(serials: u64, markets: &str, database_url: Option<&str>) -> anyhow::Result<ExitCode> {
    let markets = parse_markets(markets)?;
    openmvs_node::init_tracing("warn");
    let f = measure(serials, &markets, database_url)?;
    f.print();
    outln!("{}", f.json());
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn parse_markets(markets: &str) -> anyhow::Result<Vec<MarketCode>> {
    let mut list: Vec<MarketCode> = Vec::new();
    for m in markets.split(',').map(str::trim) {
        let code = MarketCode::new(m).map_err(|e| anyhow::anyhow!("--markets: '{m}' {e}"))?;
        if list.contains(&code) {
            bail!("--markets: {code} is named twice");
        }
        list.push(code);
    }
    Ok(list)
}

/// Runs the whole bench in a fresh temp dir (removed afterwards) and returns its figures: on
/// SQLite, or on the PostgreSQL database given.
pub(crate) fn measure(
    serials: u64,
    markets: &[MarketCode],
    database_url: Option<&str>,
) -> anyhow::Result<HubFigures> {
    // The OBP client gets threads of its own, as a separate process would have: on the servers'
    // runtime its body generation would sit in their queues and be measured as theirs.
    in_a_world(
        "hub",
        "obp",
        |dir, client| async move { run(&dir, serials, markets, client, database_url).await },
    )
}

/// Runs `f` on a node's runtime in a fresh temp dir (`openmvs-bench-<name>-…`, unique per run so
/// that tests running at once do not share one, removed afterwards), with a one-thread runtime
/// named `client` for the load, as a separate process would have.
pub(crate) fn in_a_world<T, F>(
    name: &str,
    client: &str,
    f: impl FnOnce(PathBuf, tokio::runtime::Handle) -> F,
) -> anyhow::Result<T>
where
    F: Future<Output = anyhow::Result<T>>,
{
    static RUN: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "openmvs-bench-{name}-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let rt = openmvs_node::server_runtime()?;
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(client)
        .enable_all()
        .build()?;
    let result = rt.block_on(f(dir.clone(), client_rt.handle().clone()));
    drop(client_rt);
    drop(rt);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The throwaway PKI: server certificate, the hub's client identity, the OBP's, and one per
/// national system (`<market>.national.openmvs`, as the demo's).
pub(crate) struct Pki {
    pub(crate) ca_der: CertificateDer<'static>,
    ca_pem: String,
    crl: rustls_pki_types::CertificateRevocationListDer<'static>,
    server: Issued,
    hub: Issued,
    obp: Issued,
    nationals: BTreeMap<MarketCode, Issued>,
}

pub(crate) fn pki(dir: &Path, markets: &[MarketCode]) -> anyhow::Result<Pki> {
    let now = SystemClock.system_time();
    let mut ca = CertificateAuthority::create(&dir.join("ca"), "OpenMVS bench CA", now)
        .context("creating the bench CA")?;
    let server = ca.issue_server(&["localhost", "127.0.0.1"], CERT_DAYS, now)?;
    let hub = ca.issue_client(ClientKind::Hub, "hub", CERT_DAYS, now)?;
    let obp = ca.issue_client(ClientKind::Obp, OBP, CERT_DAYS, now)?;
    let mut nationals = BTreeMap::new();
    for m in markets {
        let id = m.as_str().to_ascii_lowercase();
        nationals.insert(*m, ca.issue_client(ClientKind::National(m.to_string()), &id, CERT_DAYS, now)?);
    }
    Ok(Pki {
        ca_der: ca.ca_der(),
        ca_pem: ca.ca_pem().to_owned(),
        crl: ca.crl_der(),
        server,
        hub,
        obp,
        nationals,
    })
}

impl Pki {
    /// As the demo: every server asks for a client certificate of this CA and checks its CRL.
    fn tls(&self) -> TlsConfig {
        TlsConfig {
            cert_chain: vec![self.server.cert_der()],
            key: self.server.key_der(),
            client_ca: Some(vec![self.ca_der.clone()]),
            crls: vec![self.crl.clone()],
        }
    }
}

/// PostgreSQL schemas made for one run: a fresh one per national system and one for the hub, as
/// `openmvs demo --storage postgres` makes them. Each is dropped when the run ends, whatever
/// happened (`drop_all`, and on drop if that was never reached).
pub(crate) struct Schemas {
    url: String,
    /// `openmvs_bench_<pid>_<run>`: unique per process and run, so that runs at once do not meet.
    prefix: String,
    made: Vec<String>,
}

impl Schemas {
    fn new(url: &str) -> Schemas {
        static RUN: AtomicU64 = AtomicU64::new(0);
        let prefix = format!("openmvs_bench_{}_{}", std::process::id(), RUN.fetch_add(1, Ordering::Relaxed));
        Schemas { url: url.to_owned(), prefix, made: Vec::new() }
    }

    /// Makes the empty schema `<prefix>_<system>` and applies the national system's migrations,
    /// or the hub's.
    fn make(&mut self, system: &str, hub: bool, clock: &dyn Clock) -> anyhow::Result<Storage> {
        let schema = format!("{}_{}", self.prefix, system.to_ascii_lowercase());
        self.made.push(schema.clone());
        let kind = if hub { System::Hub } else { System::National };
        schema_storage(&self.url, &schema, kind, true, clock.now())
    }

    /// Drops every schema made; one that cannot be dropped is named on stderr.
    fn drop_all(&mut self) {
        for schema in self.made.drain(..) {
            if let Err(e) = openmvs_store_pg::drop_schema(&self.url, &schema) {
                eprintln!("could not drop the bench schema {schema} at {}: {e}", redact_url(&self.url));
            }
        }
    }
}

impl Drop for Schemas {
    fn drop(&mut self) {
        self.drop_all();
    }
}

/// Everything started, for shutting down in order; also what a start that failed half-way had
/// started, so that it is shut down as well.
pub(crate) struct Running {
    servers: Vec<ServerHandle>,
    stop: watch::Sender<bool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    hub_store: Option<hub_node::HubNodeStore>,
    national_stores: Vec<(MarketCode, node::NodeStore)>,
    /// The hub, once started.
    pub(crate) hub: Option<Arc<Hub>>,
    /// Each national system and the address it serves on.
    pub(crate) nationals: BTreeMap<MarketCode, (Arc<National>, std::net::SocketAddr)>,
    /// The PostgreSQL schemas of the run, if it runs on PostgreSQL.
    schemas: Option<Schemas>,
}

impl Running {
    /// Stops the servers and workers, closes the stores, and drops the schemas the run made.
    pub(crate) async fn stop(mut self) {
        for s in std::mem::take(&mut self.servers) {
            s.shutdown(Duration::from_secs(2)).await;
        }
        let _ = self.stop.send(true);
        for w in std::mem::take(&mut self.workers) {
            let _ = w.await;
        }
        if let Some(s) = self.hub_store.take() {
            s.close().await;
        }
        for (_, s) in std::mem::take(&mut self.national_stores) {
            s.close().await;
        }
        // The stores let go of their connections when the last holder is gone; only then are
        // their schemas dropped.
        self.nationals.clear();
        self.hub = None;
        if let Some(mut schemas) = self.schemas.take() {
            tokio::task::spawn_blocking(move || schemas.drop_all()).await.unwrap_or_else(|e| {
                eprintln!("dropping the bench schemas failed: {e}");
            });
        }
    }

    /// Packs each national system holds.
    pub(crate) async fn pack_counts(&self) -> anyhow::Result<Vec<(MarketCode, u64)>> {
        let mut packs = Vec::new();
        for (m, s) in &self.national_stores {
            packs.push((
                *m,
                s.pack_count().await.map_err(|e| anyhow::anyhow!("counting the packs of {m}: {e}"))?,
            ));
        }
        Ok(packs)
    }
}

/// Starts the national systems, then the hub linked to them, wired as `wiring` says, on SQLite in
/// `dir` or, given `database_url`, each in a fresh PostgreSQL schema of its own; returns the hub's
/// address. What was started before a failure is stopped again (and its schemas dropped).
pub(crate) async fn start(
    dir: &Path,
    markets: &[MarketCode],
    pki: &Pki,
    wiring: Wiring,
    database_url: Option<&str>,
) -> anyhow::Result<(std::net::SocketAddr, Running)> {
    let (stop, _) = watch::channel(false);
    let mut running = Running {
        servers: Vec::new(),
        stop,
        workers: Vec::new(),
        hub_store: None,
        national_stores: Vec::new(),
        hub: None,
        nationals: BTreeMap::new(),
        schemas: database_url.map(Schemas::new),
    };
    match start_into(&mut running, dir, markets, pki, wiring).await {
        Ok(addr) => Ok((addr, running)),
        Err(e) => {
            running.stop().await;
            Err(e)
        }
    }
}

/// The storage of one system of the run: SQLite in its data directory, or a fresh schema.
fn storage(running: &mut Running, system: &str, hub: bool, clock: &dyn Clock) -> anyhow::Result<Storage> {
    match &mut running.schemas {
        None => Ok(Storage::Sqlite),
        Some(schemas) => schemas.make(system, hub, clock),
    }
}

async fn start_into(
    running: &mut Running,
    dir: &Path,
    markets: &[MarketCode],
    pki: &Pki,
    wiring: Wiring,
) -> anyhow::Result<std::net::SocketAddr> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // The hub's port is taken first, so that the national systems can be given its URL.
    let hub_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hub_url = format!("https://127.0.0.1:{}", hub_listener.local_addr()?.port());
    let mut urls = BTreeMap::new();
    for m in markets {
        let data = dir.join(m.as_str());
        node::claim_market(&data, *m)?;
        let engine = storage(running, m.as_str(), false, clock.as_ref())?;
        let store = node::open(&data, &engine, clock.clone(), None)
            .with_context(|| format!("opening the store of the national system {m}"))?;
        running.national_stores.push((*m, store.clone()));
        let dyn_store = store.store();
        let hub_link = match wiring {
            Wiring::DeliveryOnly => None,
            Wiring::Demo(deadlines) => {
                let identity = pki.nationals.get(m).with_context(|| format!("no certificate for {m}"))?;
                let link = hub_link(
                    &hub_url,
                    pki.ca_pem.as_bytes(),
                    identity.identity_pem().as_bytes(),
                    deadlines.national,
                )
                .with_context(|| format!("the hub link of {m}"))?;
                Some(link)
            }
        };
        let national = Arc::new(
            National::new(dyn_store, clock.clone(), NationalConfig::new(*m), hub_link)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        );
        let obs = Arc::new(Observability::new(clock.clone()));
        obs.set_ready(true);
        // The bench measures the servers, not the per-client rate limit.
        let limiter = Arc::new(Limiter::new(RateLimit { per_second: 1e9, burst: 1e9 }));
        let router = national_router(NationalState { national: national.clone(), obs, limiter });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let server = serve(listener, router, Some(pki.tls())).map_err(|e| anyhow::anyhow!(e))?;
        let addr = server.local_addr();
        urls.insert(*m, format!("https://127.0.0.1:{}", addr.port()));
        running.servers.push(server);
        running.nationals.insert(*m, (national, addr));
    }
    let hub_dir = dir.join("hub");
    let key = hub_node::serial_key(&hub_dir)?;
    let engine = storage(running, "hub", true, clock.as_ref())?;
    let hub_store =
        hub_node::open(&hub_dir, &engine, clock.clone(), None).context("opening the hub's store")?;
    running.hub_store = Some(hub_store.clone());
    let hub_identity = pki.hub.identity_pem();
    let dyn_hub_store = hub_store.store();
    let mut hub_config = HubConfig::new(key);
    if let Wiring::Demo(deadlines) = wiring {
        hub_config.intermarket_budget = deadlines.hub;
    }
    let links =
        hub_links(urls, pki.ca_pem.as_bytes(), hub_identity.as_bytes(), hub_config.intermarket_budget)?;
    let hub = Hub::new(dyn_hub_store, clock.clone(), hub_config, Some(links.delivery));
    let hub = match wiring {
        Wiring::DeliveryOnly => hub,
        Wiring::Demo(_) => hub.with_queries(links.queries).with_callbacks(links.callbacks),
    };
    let hub = Arc::new(hub);
    running.hub = Some(hub.clone());
    let obs = Arc::new(Observability::new(clock));
    obs.set_ready(true);
    let server = serve(hub_listener, hub_router(HubState { hub: hub.clone(), obs }), Some(pki.tls()))
        .map_err(|e| anyhow::anyhow!(e))?;
    let addr = server.local_addr();
    running.servers.push(server);
    let stop_rx = running.stop.subscribe();
    running.workers.push(tokio::spawn(hub.run_relay(stop_rx.clone())));
    if matches!(wiring, Wiring::Demo(_)) {
        // As the demo: the national relays start once the hub listens.
        for (national, _) in running.nationals.values() {
            running.workers.push(tokio::spawn(national.clone().run_bulk_worker(stop_rx.clone())));
            running.workers.push(tokio::spawn(national.clone().run_relay(stop_rx.clone())));
        }
    }
    Ok(addr)
}

/// The bench on the current runtime: the systems serve on it, the OBP client runs on `client_rt`
/// (threads of its own, as a separate process would have). Fails unless every serial was received,
/// none rejected, and every national system holds them all.
pub(crate) async fn run(
    dir: &Path,
    serials: u64,
    markets: &[MarketCode],
    client_rt: tokio::runtime::Handle,
    database_url: Option<&str>,
) -> anyhow::Result<HubFigures> {
    if serials == 0 || serials > MAX_UPLOAD_LINES {
        bail!("--serials: {serials} is not between 1 and {MAX_UPLOAD_LINES} (the most one upload carries)");
    }
    if markets.is_empty() {
        bail!("--markets: no market");
    }
    let pki = pki(dir, &[])?;
    let (addr, running) = start(dir, markets, &pki, Wiring::DeliveryOnly, database_url).await?;
    let outcome: anyhow::Result<HubFigures> = async {
        let tls = client_tls(&pki)?;
        let markets_owned = markets.to_vec();
        let mut f = client_rt
            .spawn(async move { obp_session(addr, tls, serials, &markets_owned).await })
            .await
            .context("the OBP client panicked")??;
        f.packs = running.pack_counts().await?;
        Ok(f)
    }
    .await;
    running.stop().await;
    let f = outcome?;
    if (f.received, f.rejected) != (serials, 0) {
        bail!("the hub received {} serials of {serials} and rejected {}", f.received, f.rejected);
    }
    for (m, n) in &f.packs {
        if *n != serials {
            bail!("the national system of {m} holds {n} packs, not {serials}");
        }
    }
    Ok(f)
}

/// The OBP's TLS: trusts the bench CA, presents the OBP certificate.
pub(crate) fn client_tls(pki: &Pki) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca_der.clone())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![pki.obp.cert_der()], pki.obp.key_der())?;
    Ok(Arc::new(config))
}

/// A request body: small JSON, or the generated serials.
pub(crate) type ReqBody = Either<Full<Bytes>, SerialBody>;

/// One keep-alive HTTP/1.1 connection of the OBP to the hub.
pub(crate) struct ObpConn {
    sender: SendRequest<ReqBody>,
    authority: String,
}

impl ObpConn {
    pub(crate) async fn open(
        addr: std::net::SocketAddr,
        tls: Arc<rustls::ClientConfig>,
    ) -> anyhow::Result<ObpConn> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let stream =
            tokio_rustls::TlsConnector::from(tls).connect(ServerName::try_from("localhost")?, tcp).await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(ObpConn { sender, authority: format!("localhost:{}", addr.port()) })
    }

    /// Sends one request and reads the whole answer; anything but `expect` is an error.
    pub(crate) async fn send(
        &mut self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: ReqBody,
        expect: u16,
    ) -> anyhow::Result<Bytes> {
        self.sender.ready().await?;
        let mut req = hyper::Request::builder().method(method).uri(path).header("host", &self.authority);
        if let Some(t) = content_type {
            req = req.header("content-type", t);
        }
        let resp = self.sender.send_request(req.body(body)?).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        if status != expect {
            bail!("{method} {path}: HTTP {status}: {}", String::from_utf8_lossy(&body));
        }
        Ok(body)
    }

    pub(crate) async fn json(
        &mut self,
        method: &str,
        path: &str,
        body: &impl serde::Serialize,
    ) -> anyhow::Result<Bytes> {
        let body = Either::Left(Full::new(Bytes::from(serde_json::to_vec(body)?)));
        self.send(method, path, Some("application/json"), body, 200).await
    }
}

/// The generated upload: `S` and a zero-padded number per line, made a chunk at a time when the
/// connection asks for the next one, so the client never holds more than one chunk and the
/// connection's write buffer (hyper polls the body only when it can write).
pub(crate) struct SerialBody {
    next: u64,
    end: u64,
}

impl hyper::body::Body for SerialBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.next >= self.end {
            return Poll::Ready(None);
        }
        let stop = (self.next + LINES_PER_CHUNK).min(self.end);
        let mut buf = BytesMut::with_capacity(((stop - self.next) * LINE_BYTES) as usize);
        for i in self.next..stop {
            write_serial(&mut buf, i);
        }
        self.next = stop;
        Poll::Ready(Some(Ok(Frame::data(buf.freeze()))))
    }

    fn is_end_stream(&self) -> bool {
        self.next >= self.end
    }
}

/// Appends `S<i, zero-padded>\n`; by hand, because formatting a million numbers with `write!`
/// would make the client a visible share of a two-core bench.
fn write_serial(buf: &mut BytesMut, mut i: u64) {
    let mut digits = [b'0'; SERIAL_DIGITS];
    for d in digits.iter_mut().rev() {
        *d = b'0' + (i % 10) as u8;
        i /= 10;
    }
    buf.put_u8(b'S');
    buf.put_slice(&digits);
    buf.put_u8(b'\n');
}

/// The OBP's side: master data, the upload, the polls until DISTRIBUTED.
pub(crate) async fn obp_session(
    addr: std::net::SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    serials: u64,
    markets: &[MarketCode],
) -> anyhow::Result<HubFigures> {
    let mut conn = ObpConn::open(addr, tls).await?;
    let product = ProductRequest {
        scheme: Some("GTIN".into()),
        name: Some("Benchomab 10 mg tablets".into()),
        common_name: Some("benchomab".into()),
        form: Some("TABLET".into()),
        strength: Some("10 mg".into()),
        pack_type: Some("BOX".into()),
        pack_size: Some("30".into()),
        markets: Some(
            markets
                .iter()
                .map(|m| ProductMarket {
                    market: Some(m.as_str().to_owned()),
                    national_code: Some(format!("{m}-BENCH1")),
                    mah: Some(Mah {
                        name: Some("Bench Pharma".into()),
                        address: Some("1 Bench Street".into()),
                    }),
                    wholesalers: vec![WholesalerEntry {
                        id: Some(format!("{m}-WH-0001")),
                        name: Some("Bench Wholesale".into()),
                    }],
                })
                .collect(),
        ),
    };
    conn.json("PUT", &format!("/v1/products/{GTIN}"), &product).await?;
    let batch = BatchRequest { expiry: EXPIRY.into(), markets: None };
    conn.json("PUT", &format!("/v1/products/{GTIN}/batches/{BATCH}"), &batch).await?;

    let (rss_before_kib, hwm_before_kib) = (proc_status("VmRSS")?, proc_status("VmHWM")?);
    let hwm_reset = reset_peak();
    // VmHWM counts the stores' memory-mapped database pages too; anonymous memory (the heap) is
    // what a buffered upload would grow, and the kernel keeps no peak of it, so it is sampled.
    let sampling = Arc::new(AtomicU64::new(proc_status("RssAnon").unwrap_or(0)));
    let sampler = {
        let peak = sampling.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(kib) = proc_status("RssAnon") {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let anon_before_kib = sampling.load(Ordering::Relaxed);
    let started = Instant::now();
    let body = Either::Right(SerialBody { next: 0, end: serials });
    let answer = conn
        .send("POST", &format!("/v1/products/{GTIN}/batches/{BATCH}/packs"), Some("text/plain"), body, 202)
        .await?;
    let accepted_s = started.elapsed().as_secs_f64();
    let hwm_accepted_kib = proc_status("VmHWM")?;
    let accepted: UploadAcceptedBody = serde_json::from_slice(&answer)?;

    // Generous: the bench is meant to find slowness, not to fail on it.
    let deadline = started + Duration::from_secs(120) + Duration::from_millis(serials / 2);
    let mut polls = 0u64;
    let status = loop {
        let path = format!("/v1/uploads/{}", accepted.upload_id);
        let body = conn.send("GET", &path, None, Either::Left(Full::new(Bytes::new())), 200).await?;
        polls += 1;
        let s: UploadStatusBody = serde_json::from_slice(&body)?;
        if s.status == "FAILED" {
            bail!("upload {} failed", s.upload_id);
        }
        let everywhere =
            markets.iter().all(|m| s.markets.get(m.as_str()).is_some_and(|d| d == "DISTRIBUTED"));
        if s.status == "DISTRIBUTED" && everywhere {
            break s;
        }
        if Instant::now() > deadline {
            bail!(
                "upload {} is still {} after {:.0} s: {:?}",
                s.upload_id,
                s.status,
                started.elapsed().as_secs_f64(),
                s.markets
            );
        }
        tokio::time::sleep(POLL_EVERY).await;
    };
    let distributed_s = started.elapsed().as_secs_f64();
    sampler.abort();
    Ok(HubFigures {
        serials,
        markets: markets.to_vec(),
        body_bytes: serials * LINE_BYTES,
        received: status.received,
        rejected: status.rejected_count,
        accepted_s,
        distributed_s,
        polls,
        rss_before_kib,
        hwm_before_kib,
        hwm_reset,
        hwm_accepted_kib,
        hwm_distributed_kib: proc_status("VmHWM")?,
        anon_before_kib,
        anon_peak_kib: sampling.load(Ordering::Relaxed).max(proc_status("RssAnon").unwrap_or(0)),
        packs: Vec::new(),
    })
}

/// A `kB` field of `/proc/self/status` (`VmRSS`, `VmHWM`), in KiB.
fn proc_status(field: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse().ok()
        })
        .with_context(|| format!("no {field} in /proc/self/status"))
}

/// Resets the process's peak resident memory to its current one (Linux 4.0 and later), so that
/// the peak read later is the upload's rather than the setup's; `false` where that is refused.
fn reset_peak() -> bool {
    std::fs::write(PathBuf::from("/proc/self/clear_refs"), "5").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_body_yields_every_line_in_order_a_chunk_at_a_time() {
        let mut body = SerialBody { next: 0, end: LINES_PER_CHUNK + 3 };
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let bytes = rt.block_on(async {
            let mut out = Vec::new();
            let mut frames = 0;
            while let Some(f) = body.frame().await {
                out.extend_from_slice(&f.unwrap().into_data().unwrap());
                frames += 1;
            }
            assert_eq!(frames, 2);
            out
        });
        let text = String::from_utf8(bytes).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len() as u64, LINES_PER_CHUNK + 3);
        assert_eq!(lines[0], "S000000000000");
        assert_eq!(lines[4098], "S000000004098");
    }

    /// The whole harness on a few thousand serials, so that it cannot rot unnoticed.
    #[test]
    fn bench_hub_smoke_uploads_and_distributes_a_few_thousand_serials() {
        let n = 3000;
        let f = measure(n, &parse_markets("DE").unwrap(), None).unwrap();
        assert_eq!((f.received, f.rejected), (n, 0));
        assert!(f.accepted_s > 0.0 && f.distributed_s >= f.accepted_s, "{:?}", f.json());
        assert!(f.rate(f.accepted_s) > 0.0 && f.rate(f.distributed_s) > 0.0);
        assert!(f.rss_before_kib > 0 && f.hwm_distributed_kib > 0 && f.anon_peak_kib > 0);
        assert_eq!(f.packs, vec![(MarketCode::new("DE").unwrap(), n)]);
        assert!(f.json()["distributed_per_s"].as_f64().unwrap() > 0.0);
    }
}
