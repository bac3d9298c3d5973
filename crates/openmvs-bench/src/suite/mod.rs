//! `openmvs-bench suite`: OpenMVS measured against the limits of the machine it runs on, in one
//! run: a bare HTTPS hello-world and the raw database on the same data as baselines, then a
//! national system under closed-loop load (to find its maximum) and open-loop load (to measure it
//! at 80 %, 100 % and 200 % of that maximum), for each engine and data size; then, per engine, the
//! hub with national systems (a streamed upload, inter-market verifies). Every figure and every
//! ratio goes into `report.json` and `report.md`.

mod hub;
mod loadgen;
mod report;
mod scenarios;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::out::outln;
use anyhow::Context;
use openmvs_http::{TlsConfig, serve};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub use loadgen::{Outcome, Plan, Request, Target};

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Packs seeded, one run per size.
    pub sizes: Vec<u64>,
    /// Seconds per measurement.
    pub seconds: f64,
    /// Connections of the closed-loop and open-loop phases.
    pub connections: usize,
    /// Also run on this PostgreSQL database.
    pub database_url: Option<String>,
    /// Where the report goes.
    pub out: PathBuf,
    /// The bound on requests in flight of the node under test.
    pub max_in_flight: usize,
    /// Serials of the streamed upload through the hub, one upload per engine.
    pub upload_serials: u64,
    /// A run that checks the harness, not the machine: inter-market requests get seconds instead
    /// of the law's 300 ms, so that a busy machine makes them slow, never refused.
    pub smoke: bool,
}

/// A self-signed certificate for `localhost`, its server configuration and a client trusting it.
pub(crate) struct Tls {
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
    pub(crate) client: Arc<rustls::ClientConfig>,
}

impl Tls {
    fn new() -> anyhow::Result<Tls> {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])?;
        let cert_der = cert.cert.der().to_vec();
        let client = crate::load::tls(&CertificateDer::from(cert_der.clone()))?;
        Ok(Tls { cert_der, key_der: cert.signing_key.serialize_der(), client })
    }

    pub(crate) fn server(&self) -> TlsConfig {
        TlsConfig {
            cert_chain: vec![CertificateDer::from(self.cert_der.clone())],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone())),
            client_ca: None,
            crls: Vec::new(),
        }
    }

    pub(crate) fn target(&self, addr: std::net::SocketAddr) -> Target {
        Target { addr, host: "localhost".into(), tls: self.client.clone() }
    }
}

/// The machine, for the report.
fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|n| n.parse::<u64>().ok())
        })
        .unwrap_or(0);
    serde_json::json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "cpu": cpu,
        "memory_gib": (mem_kib as f64 / 1_048_576.0 * 10.0).round() / 10.0,
        "os": std::env::consts::OS,
    })
}

/// Resident memory of this process now and at its peak, in MiB.
pub(crate) fn memory_mib() -> (f64, f64) {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0)
}

/// The hello-world baseline: the same server code (TLS, HTTP/1.1 keep-alive) answering a constant.
async fn hello_world(load: &tokio::runtime::Handle, tls: &Tls, opts: &Options) -> anyhow::Result<Outcome> {
    let router = axum::Router::new().route("/hello", axum::routing::get(|| async { "hello" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let server = serve(listener, router, Some(tls.server())).map_err(|e| anyhow::anyhow!(e))?;
    let target = tls.target(server.local_addr());
    let plan: Plan = Arc::new(|_| {
        Box::new(|_| Request { method: "GET", path: "/hello".into(), token: None, body: Vec::new() })
    });
    let out =
        loadgen::closed_loop(load, &target, &plan, opts.connections, Duration::from_secs_f64(opts.seconds))
            .await;
    server.shutdown(Duration::from_secs(2)).await;
    Ok(out)
}

/// Runs the suite and writes the report.
pub fn run(opts: Options) -> anyhow::Result<ExitCode> {
    let rt = openmvs_node::server_runtime()?;
    // The load generator has threads of its own, as a separate client process would.
    let load_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("load")
        .enable_all()
        .build()?;
    let load = load_rt.handle().clone();
    let tls = Tls::new()?;
    eprintln!("baseline: HTTPS hello-world ...");
    let hello = rt.block_on(hello_world(&load, &tls, &opts))?;
    eprintln!("  {:.0} req/s, p99 {:.2} ms", hello.rate(), hello.ms(0.99));
    let mut engines = vec![crate::national::Setup::Sqlite];
    match &opts.database_url {
        Some(url) => engines.push(crate::national::Setup::Postgres { url: url.clone(), nodes: 1 }),
        None => eprintln!("PostgreSQL skipped: give --database-url URL (or OPENMVS_DATABASE_URL)"),
    }
    let mut runs = Vec::new();
    for engine in &engines {
        for &size in &opts.sizes {
            eprintln!("== {} with {size} packs", engine.label());
            let r = rt
                .block_on(scenarios::national(&load, &tls, &opts, engine, size))
                .with_context(|| format!("{} with {size} packs", engine.label()))?;
            runs.push(r);
        }
    }
    // After every national run: the upload resets the process's peak memory, which the national
    // runs report.
    let mut systems = Vec::new();
    for engine in &engines {
        eprintln!("== {}: upload through the hub, inter-market verify", engine.label());
        let s = rt
            .block_on(hub::system(&load, &opts, engine))
            .with_context(|| format!("{}: the hub and national systems", engine.label()))?;
        systems.push(s);
    }
    let report = report::Report { machine: machine(), options: opts.clone(), hello, runs, systems };
    std::fs::create_dir_all(&opts.out).with_context(|| format!("creating {}", opts.out.display()))?;
    let json = report.json();
    let md = report.markdown();
    std::fs::write(opts.out.join("report.json"), serde_json::to_string_pretty(&json)?)?;
    std::fs::write(opts.out.join("report.md"), &md)?;
    outln!("{md}");
    outln!("report: {} and {}", opts.out.join("report.json").display(), opts.out.join("report.md").display());
    Ok(ExitCode::SUCCESS)
}
