//! A rolling restart behind a real load balancer with zero failed requests: a hub and national
//! systems DE and FR, two `openmvs` nodes each on one PostgreSQL schema per system, behind
//! HAProxy (TCP mode, so that client certificates reach the nodes; each node's `/health/ready`
//! checked every 100 ms). The systems reach each other through HAProxy too. While pharmacies
//! verify and supply packs in both markets and the OBP uploads batches at the hub, every node is
//! stopped with SIGTERM and started again, one after the other, each once HAProxy sees the one
//! before back up.
//!
//! Every request is sent once; a 503 or 429 with `Retry-After` is sent again after the wait it
//! names (the same `client_trx_id`), and counts as a success only if that succeeds. Anything else
//! (no answer, a reset, another error) is a failed request: there must be none. Afterwards every
//! acknowledged supply holds, in its market, and every upload reached both markets.
//!
//! Needs `OPENMVS_TEST_DATABASE_URL` and HAProxy (`haproxy` on the PATH, Debian's package);
//! without either it says on stderr that it skips, unless `OPENMVS_HA_TESTS=1` (set by `.ci/run`,
//! which installs HAProxy), when a missing HAProxy fails it.

#[path = "../common/mod.rs"]
mod common;

#[path = "../crash_loop/cluster.rs"]
mod cluster;
#[path = "../crash_loop/load.rs"]
mod load;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cluster::{Cluster, Engine, System};
use common::{WAIT_LIMIT, Watched, eventually, free_port};
use load::{BATCH, EXPIRY, PRODUCT, pool_serial, product};
use openmvs_client::wire::obp::BatchRequest;
use openmvs_client::{
    ClientError, EndUserClient, EndUserConfig, ObpClient, ObpConfig, PackInput, PollOptions, RetryPolicy,
};

/// Packs in the pool the pharmacies work through: more than the load takes.
const PACKS: u64 = 20_000;
/// Serials of one OBP upload.
const UPLOAD_SERIALS: usize = 3;
/// Readiness is false this long before a stopping node's listener closes: HAProxy, checking
/// every 100 ms, has long taken it out by then, and clients have left its connections.
const READY_GRACE_MS: u64 = 1500;
/// Requests the load has answered before the first restart and after the last.
const SETTLE: u64 = 100;
/// The OBP uploads a batch every this many answered requests of the pharmacies.
const UPLOAD_EVERY: u64 = 20;
/// How long a node may take to come back up in HAProxy's eyes.
const UP_LIMIT: Duration = Duration::from_secs(60);

/// HAProxy in front of every system, as a child process.
struct Balancer {
    child: Child,
    stats: String,
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Balancer {
    /// The status HAProxy gives node `node` (`a` or `b`) of backend `backend`: `UP`, `DOWN`, ...
    fn status(&self, http: &reqwest::blocking::Client, backend: &str, node: &str) -> Option<String> {
        let csv = http.get(format!("{};csv", self.stats)).send().ok()?.text().ok()?;
        csv.lines().find_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f.first() == Some(&backend) && f.get(1) == Some(&node))
                .then(|| f.get(17).unwrap_or(&"").to_string())
        })
    }

    /// The sessions HAProxy has sent to node `node` of backend `backend`.
    fn sessions(&self, backend: &str, node: &str) -> u64 {
        let http = reqwest::blocking::Client::new();
        let csv =
            http.get(format!("{};csv", self.stats)).send().expect("HAProxy stats").text().expect("stats");
        csv.lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (f.first() == Some(&backend) && f.get(1) == Some(&node)).then(|| f.get(7)?.parse().ok())?
            })
            .unwrap_or(0)
    }

    fn wait_up(&self, backend: &str, node: &str) {
        let http = reqwest::blocking::Client::new();
        let up = eventually(UP_LIMIT, || {
            self.status(&http, backend, node).filter(|s| s.starts_with("UP")).map(|_| ())
        });
        assert!(up.is_some(), "{backend}/{node} not up in HAProxy within {UP_LIMIT:?}");
    }
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port in the URL")
}

fn set_listen(text: &str, port: u16) -> String {
    text.lines()
        .map(
            |l| {
                if l.starts_with("listen = ") {
                    format!("listen = \"127.0.0.1:{port}\"")
                } else {
                    l.to_owned()
                }
            },
        )
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// Copies the files of a data directory (keys, market, heads) for a second node of its system.
fn copy_data_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the data directory");
    for e in std::fs::read_dir(from).expect("read the data directory") {
        let e = e.expect("an entry");
        if e.file_type().expect("file type").is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy a file");
        }
    }
}

fn data_dir_of(config: &Path) -> PathBuf {
    let text = std::fs::read_to_string(config).expect("read a configuration");
    let line = text.lines().find(|l| l.starts_with("data_dir = ")).expect("data_dir");
    PathBuf::from(line.trim_start_matches("data_dir = ").trim_matches('\''))
}

/// Puts every system behind HAProxy: the port the other systems' configurations name becomes the
/// balancer's, node `a` (the cluster's own configuration) and a new node `b` listen on ports of
/// their own. Node `b`'s data directory is made from `a`'s when it first starts.
fn balance(cluster: &mut Cluster) -> (Balancer, Vec<System>) {
    let mut siblings = Vec::new();
    let mut backends = String::new();
    let names: Vec<String> = cluster.systems().map(|s| s.name.to_lowercase()).collect();
    for (s, name) in std::iter::once(&mut cluster.hub).chain(cluster.markets.iter_mut()).zip(&names) {
        let front = port_of(&s.url);
        let (pa, pb) = (free_port(), free_port());
        let mut text = std::fs::read_to_string(&s.config).expect("read a configuration");
        text = if text.contains("[national.limits]") {
            text.replace(
                "[national.limits]\n",
                &format!("[national.limits]\nready_grace_ms = {READY_GRACE_MS}\n"),
            )
        } else {
            format!("{text}\n[hub.limits]\nready_grace_ms = {READY_GRACE_MS}\n")
        };
        std::fs::write(&s.config, set_listen(&text, pa)).expect("write a configuration");
        let dir_a = data_dir_of(&s.config);
        let dir_b = dir_a.with_file_name(format!("{}-b", dir_a.file_name().expect("name").to_string_lossy()));
        let b_text =
            set_listen(&text, pb).replace(&dir_a.display().to_string(), &dir_b.display().to_string());
        let b_config = s.config.with_file_name(format!("{name}-b.toml"));
        std::fs::write(&b_config, b_text).expect("write a configuration");
        siblings.push(s.sibling(&format!("{}-b", s.name), b_config, s.url.clone()));
        backends.push_str(&format!(
            "frontend {name}\n  bind 127.0.0.1:{front}\n  default_backend {name}\n\
             backend {name}\n  option httpchk\n  http-check send meth GET uri /health/ready\n  http-check expect status 200\n\
             \x20 default-server inter 100ms fastinter 100ms downinter 100ms fall 1 rise 2 check check-ssl verify none\n\
             \x20 server a 127.0.0.1:{pa}\n  server b 127.0.0.1:{pb}\n\n"
        ));
    }
    let stats_port = free_port();
    let cfg = format!(
        "global\n  maxconn 4096\n\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 120s\n  timeout server 120s\n\
         \x20 retries 3\n  option redispatch\n\n\
         listen stats\n  bind 127.0.0.1:{stats_port}\n  mode http\n  stats enable\n  stats uri /stats\n\n{backends}"
    );
    let file = cluster.root().join("haproxy.cfg");
    std::fs::write(&file, cfg).expect("write haproxy.cfg");
    let log = std::fs::File::create(cluster.root().join("haproxy.log")).expect("haproxy log");
    let child = Command::new("haproxy")
        .args(["-db", "-f"])
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().expect("log")))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start haproxy");
    (Balancer { child, stats: format!("http://127.0.0.1:{stats_port}/stats") }, siblings)
}

/// What the load saw.
#[derive(Default)]
struct Tally {
    /// Requests answered as asked.
    ok: u64,
    /// Refusals with `Retry-After` that were sent again (and then succeeded, or are counted in
    /// `failed`).
    retried: u64,
    /// Requests that failed: what went wrong.
    failed: Vec<String>,
    /// Packs supplied, by market.
    supplied: Vec<(usize, String)>,
    /// Uploads acknowledged.
    uploads: Vec<String>,
}

/// Sends a request until it is answered, following `Retry-After`; every other error fails it.
/// `Some(answer)`, or `None` once it failed.
macro_rules! send {
    ($tally:expr, $what:expr, $call:expr) => {{
        loop {
            match $call.await {
                Ok(v) => {
                    $tally.update(|t| t.ok += 1);
                    break Some(v);
                }
                Err(ClientError::Refused { status: 429 | 503, retry_after: Some(wait), .. }) => {
                    $tally.update(|t| t.retried += 1);
                    tokio::time::sleep(wait).await;
                }
                Err(e) => {
                    let what = $what;
                    $tally.update(|t| t.failed.push(format!("{what}: {e}")));
                    break None;
                }
            }
        }
    }};
}

/// A pharmacy of market `m` working through its share of the pool: verify, then supply.
async fn pharmacy(
    client: Arc<EndUserClient>,
    m: usize,
    next: Arc<AtomicU64>,
    tally: Arc<Watched<Tally>>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::SeqCst) {
        let i = next.fetch_add(1, Ordering::SeqCst);
        if i >= PACKS {
            break;
        }
        let serial = pool_serial(i);
        let input = |op: &str| {
            PackInput::gtin(PRODUCT, &serial, BATCH, EXPIRY).with_client_trx_id(format!("ru-{op}-{i}"))
        };
        let Some(v) = send!(tally, format!("verify {serial}"), client.verify(&input("v"))) else { continue };
        if v.return_code != "NMVS_SUCCESS" {
            tally.update(|t| t.failed.push(format!("verify {serial}: {v:?}")));
            continue;
        }
        let Some(s) = send!(tally, format!("supply {serial}"), client.supply(&input("s"))) else { continue };
        let state = s.pack.as_ref().map(|p| p.state.as_str());
        if s.return_code != "NMVS_SUCCESS" || state != Some("SUPPLIED") {
            tally.update(|t| t.failed.push(format!("supply {serial}: {s:?}")));
            continue;
        }
        tally.update(|t| t.supplied.push((m, serial.clone())));
    }
}

/// The OBP uploading small batches at the hub, one every [`UPLOAD_EVERY`] answers of the load.
/// On a thread of its own, since it waits on the tally.
fn uploader(
    rt: tokio::runtime::Handle,
    obp: Arc<ObpClient>,
    tally: Arc<Watched<Tally>>,
    stop: Arc<AtomicBool>,
) {
    rt.block_on(upload_all(obp, tally, stop));
}

async fn upload_all(obp: Arc<ObpClient>, tally: Arc<Watched<Tally>>, stop: Arc<AtomicBool>) {
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        let seen = tally.read(|t| t.ok);
        // This thread's own: waiting here holds up no runtime worker.
        tally.wait_for(WAIT_LIMIT, |t| t.ok >= seen + UPLOAD_EVERY || stop.load(Ordering::SeqCst));
        let batch = format!("RU{n}");
        let serials: Vec<String> = (0..UPLOAD_SERIALS).map(|k| format!("RU{n}S{k}")).collect();
        let request = BatchRequest { expiry: EXPIRY.into(), markets: None };
        n += 1;
        if send!(tally, format!("batch {batch}"), obp.put_batch(PRODUCT, &batch, &request)).is_none() {
            continue;
        }
        if let Some(up) =
            send!(tally, format!("upload {batch}"), obp.upload_serials(PRODUCT, &batch, &serials))
        {
            tally.update(|t| t.uploads.push(up.upload_id));
        }
    }
}

fn haproxy_available() -> bool {
    Command::new("haproxy").arg("-v").output().is_ok_and(|o| o.status.success())
}

#[test]
fn every_node_restarts_in_turn_behind_haproxy_with_no_failed_request() {
    if !haproxy_available() {
        assert!(
            std::env::var("OPENMVS_HA_TESTS").as_deref() != Ok("1"),
            "haproxy is not installed (apt-get install haproxy)"
        );
        eprintln!("skipping the rolling upgrade test: haproxy is not installed (apt-get install haproxy)");
        return;
    }
    let Some(engine) = Engine::fresh_postgres("rolling", "the rolling upgrade test", 2) else { return };
    let mut cluster = Cluster::new("rolling-upgrade", &["DE", "FR"], &engine);
    let (balancer, mut siblings) = balance(&mut cluster);
    let creds: Vec<_> =
        (0..2).map(|i| cluster.client(i, "PHARMACY", &format!("{}-PH-1", cluster.codes[i]))).collect();
    cluster.start_all();
    for (s, b) in cluster.systems().zip(&siblings) {
        copy_data_dir(&data_dir_of(&s.config), &data_dir_of(&b.config));
    }
    for b in &mut siblings {
        b.start();
    }
    let backends: Vec<String> = cluster.systems().map(|s| s.name.to_lowercase()).collect();
    for name in &backends {
        balancer.wait_up(name, "a");
        balancer.wait_up(name, "b");
    }

    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let _guard = rt.enter();
    let once = RetryPolicy::never();
    let pharmacies: Vec<Arc<EndUserClient>> = cluster
        .markets
        .iter()
        .zip(&creds)
        .map(|(m, c)| {
            let config = EndUserConfig::new(&m.url, &c.client_id, &c.client_secret)
                .with_ca_pem(cluster.ca_pem.clone())
                .with_retry(once);
            Arc::new(EndUserClient::new(config).expect("pharmacy client"))
        })
        .collect();
    let obp_config = ObpConfig::new(&cluster.hub.url, cluster.obp_identity.clone(), cluster.ca_pem.clone());
    let setup = ObpClient::new(obp_config.clone()).expect("OBP client");
    let obp = Arc::new(ObpClient::new(obp_config.with_retry(once)).expect("OBP client"));
    rt.block_on(async {
        setup.put_product(PRODUCT, &product()).await.expect("the product");
        setup
            .put_batch(PRODUCT, BATCH, &BatchRequest { expiry: EXPIRY.into(), markets: None })
            .await
            .expect("the batch");
        let text: String = (0..PACKS).map(|i| format!("{}\n", pool_serial(i))).collect();
        let up = setup
            .upload_reader(PRODUCT, BATCH, std::io::Cursor::new(text.into_bytes()))
            .await
            .expect("the pool");
        let poll = PollOptions { interval: Duration::from_millis(100), deadline: Duration::from_secs(300) };
        setup.wait_for_upload(&up.upload_id, "DISTRIBUTED", poll).await.expect("the pool distributed");
    });

    let tally = Arc::new(Watched::<Tally>::default());
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (m, p) in pharmacies.iter().enumerate() {
        for _ in 0..2 {
            tasks.push(rt.spawn(pharmacy(p.clone(), m, next.clone(), tally.clone(), stop.clone())));
        }
    }
    let uploading = {
        let (handle, tally, stop) = (rt.handle().clone(), tally.clone(), stop.clone());
        std::thread::spawn(move || uploader(handle, obp, tally, stop))
    };

    let settled = |tally: &Watched<Tally>| {
        let from = tally.read(|t| t.ok);
        assert!(tally.wait_for(WAIT_LIMIT, |t| t.ok >= from + SETTLE), "the load does not run");
    };
    settled(&tally);
    let started = Instant::now();
    let mut restarts = 0;
    for (i, name) in backends.iter().enumerate() {
        for node in ["a", "b"] {
            let system = match (i, node) {
                (0, "a") => &mut cluster.hub,
                (_, "a") => &mut cluster.markets[i - 1],
                _ => &mut siblings[i],
            };
            let before = tally.read(|t| t.ok);
            system.stop();
            system.start();
            balancer.wait_up(name, node);
            restarts += 1;
            let during = tally.read(|t| t.ok) - before;
            eprintln!("rolling upgrade: {name}/{node} restarted; {during} requests answered meanwhile");
        }
    }
    let rolled = started.elapsed();
    settled(&tally);
    stop.store(true, Ordering::SeqCst);
    // Wakes the uploader's wait.
    tally.update(|_| ());
    uploading.join().expect("the uploader");
    rt.block_on(async {
        for t in tasks {
            t.await.expect("a load task");
        }
    });

    let (ok, retried, failed) = tally.read(|t| (t.ok, t.retried, t.failed.clone()));
    eprintln!(
        "rolling upgrade: {restarts} restarts in {:.1} s; {ok} requests answered, {retried} refusals sent again \
         after Retry-After, {} failed",
        rolled.as_secs_f64(),
        failed.len()
    );
    assert!(failed.is_empty(), "failed requests during the rolling restart: {failed:#?}");
    for name in &backends {
        for node in ["a", "b"] {
            assert!(balancer.sessions(name, node) > 0, "HAProxy sent nothing to {name}/{node}");
        }
    }
    assert!(tally.read(|t| t.supplied.len()) > 0 && tally.read(|t| t.uploads.len()) > 0, "no load ran");

    // What was acknowledged holds: every supply in its market, every upload in both markets.
    let checkers: Vec<EndUserClient> = cluster
        .markets
        .iter()
        .zip(&creds)
        .map(|(m, c)| {
            let config = EndUserConfig::new(&m.url, &c.client_id, &c.client_secret)
                .with_ca_pem(cluster.ca_pem.clone());
            EndUserClient::new(config).expect("checking client")
        })
        .collect();
    let (supplied, uploads) = tally.read(|t| (t.supplied.clone(), t.uploads.clone()));
    rt.block_on(async {
        for (m, serial) in &supplied {
            let r = checkers[*m]
                .verify(&PackInput::gtin(PRODUCT, serial, BATCH, EXPIRY))
                .await
                .expect("a verify after the restarts");
            assert_eq!(r.pack.map(|p| p.state), Some("SUPPLIED".to_owned()), "{serial} in market {m}");
        }
        let poll = PollOptions { interval: Duration::from_millis(100), deadline: WAIT_LIMIT * 4 };
        for id in &uploads {
            setup.wait_for_upload(id, "DISTRIBUTED", poll).await.expect("an upload distributed");
        }
    });
    for b in &mut siblings {
        b.stop();
    }
    cluster.stop_all();
    drop(balancer);
}
