//! `openmvs demo`: the hub and one national system per market in one process, all over HTTPS
//! with certificates of a demo CA, with sample products, packs, clients and OBP certificates
//! listed in `DIR/demo.json` (api.md §1). A restart on the same directory reuses everything.
//!
//! Every national system is linked to the hub with its own client certificate
//! (`<market>.national.openmvs`), so a multi-market pack's state change reaches the other markets,
//! alerts reach the owning OBP (and its callback, if it set one), and a product unknown in one
//! market is looked up in the others through the hub.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use openmvs_core::ids::{Location, MarketCode};
use openmvs_core::master_data::{RawMarket, RawProduct, RawWholesaler};
use openmvs_core::roles::Role;
use openmvs_core::time::Clock;
use openmvs_http::admin::with_admin;
use openmvs_http::incidents::RuleConfig;
use openmvs_http::limit::{Limiter, RateLimit};
use openmvs_http::upkeep::{Upkeep, node_label};
use openmvs_http::{
    HubState, NationalState, Observability, ServeOptions, ServerHandle, TlsConfig, hub_router,
    national_router, serve_with,
};
use openmvs_hub::{Hub, HubConfig, IterLines};
use openmvs_national::clock::{FakeClock, SystemClock};
use openmvs_national::{National, NationalConfig, SecretLogin};
use openmvs_pki::{CertificateAuthority, ClientKind};
use openmvs_store::hub::{HubStore, UploadStatus};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio::sync::watch;

use openmvs_node::{init_tracing, server_runtime};
use openmvs_testkit::{INTERMARKET_TIMEOUT, System, hub_link, hub_links, schema_storage};

use super::serve::wait_for_signal;
use crate::config::Storage;
use crate::out::outln;
use crate::{hub_node, node};

/// Days the demo's certificates are valid.
const CERT_DAYS: u32 = 825;
/// How long the relay may take to distribute the sample packs before the demo gives up.
const DISTRIBUTION_TIMEOUT: Duration = Duration::from_secs(120);
/// Serials listed per sample in demo.json (every pack exists; these are enough to try things).
const LISTED_SERIALS: usize = 100;

/// The profiles of the demo's clients for the pack commands (`openmvs verify --profile NAME`).
const PROFILES_FILE: &str = "profiles.toml";

/// The OBPs of the demo: id and name.
const OBPS: [(&str, &str); 2] =
    [("acme-pharma", "Acme Pharma GmbH"), ("nordic-generics", "Nordic Generics AB")];

/// Where the demo keeps its data.
pub enum DemoStorage {
    /// Files in the data directory.
    Sqlite,
    /// One schema per system, `<prefix>_<system>`, in one PostgreSQL database.
    Postgres {
        /// The database.
        url: String,
        /// The schemas' prefix.
        prefix: String,
    },
}

impl DemoStorage {
    /// From the command line (`--database-url` falls back to `OPENMVS_DATABASE_URL`).
    pub fn parse(storage: &str, database_url: Option<&str>, prefix: &str) -> anyhow::Result<DemoStorage> {
        let from_env = std::env::var("OPENMVS_DATABASE_URL").ok().filter(|u| !u.is_empty());
        match (storage, database_url.map(str::to_owned).or(from_env)) {
            ("sqlite", _) => Ok(DemoStorage::Sqlite),
            ("postgres", Some(url)) => {
                if !openmvs_store_pg::valid_schema(&format!("{prefix}_hub")) {
                    bail!("--schema-prefix: '{prefix}' must be lower-case letters, digits and _ (not first)");
                }
                Ok(DemoStorage::Postgres { url, prefix: prefix.to_owned() })
            }
            ("postgres", None) => {
                bail!("--storage postgres needs --database-url URL (or OPENMVS_DATABASE_URL)")
            }
            (other, _) => bail!("--storage: '{other}' is not an engine of this build (sqlite, postgres)"),
        }
    }
}

pub fn run(
    data_dir: &Path,
    port_base: u16,
    markets: &str,
    fake_clock: bool,
    storage: DemoStorage,
) -> anyhow::Result<ExitCode> {
    let mut list: Vec<MarketCode> = Vec::new();
    for m in markets.split(',').map(str::trim) {
        let code = MarketCode::new(m).map_err(|e| {
            anyhow::anyhow!("--markets: {e}; give market codes separated by commas, e.g. DE,FR,SE")
        })?;
        if list.contains(&code) {
            bail!("--markets: {code} is named twice");
        }
        list.push(code);
    }
    if u32::from(port_base) + list.len() as u32 > u32::from(u16::MAX) || port_base == 0 {
        bail!("--port-base: {port_base} leaves no room for {} national systems", list.len());
    }
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let dir = std::fs::canonicalize(data_dir).with_context(|| format!("resolving {}", data_dir.display()))?;
    init_tracing("warn");
    let rt = server_runtime()?;
    rt.block_on(demo(&dir, port_base, &list, fake_clock, &storage))?;
    Ok(ExitCode::SUCCESS)
}

/// The demo's certificates and keys, created once.
struct Pki {
    ca_cert: PathBuf,
    ca_der: CertificateDer<'static>,
    crl_file: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    hub_identity: Vec<u8>,
    /// Each market's client certificate then key (`<market>.national.openmvs`), PEM.
    national_identities: BTreeMap<MarketCode, Vec<u8>>,
    obps: Vec<(String, String, PathBuf, PathBuf)>,
}

fn write_once(path: &Path, text: &str, private: bool) -> anyhow::Result<()> {
    if private {
        node::write_private(path, text)
    } else {
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }
}

fn pki(dir: &Path, markets: &[MarketCode]) -> anyhow::Result<Pki> {
    let ca_dir = dir.join("ca");
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).with_context(|| format!("creating {}", certs.display()))?;
    let now = SystemClock.system_time();
    let mut ca = if ca_dir.join(openmvs_pki::CA_CERT_FILE).exists() {
        CertificateAuthority::open(&ca_dir).context("opening the demo CA")?
    } else {
        CertificateAuthority::create(&ca_dir, "OpenMVS demo CA", now).context("creating the demo CA")?
    };
    let server_cert = certs.join("server.pem");
    let server_key = certs.join("server.key");
    if !server_key.exists() {
        let s = ca.issue_server(&["localhost", "127.0.0.1"], CERT_DAYS, now)?;
        write_once(&server_cert, &s.cert_pem, false)?;
        write_once(&server_key, &s.key_pem, true)?;
    }
    let (hub_cert, hub_key) = (certs.join("hub.pem"), certs.join("hub.key"));
    if !hub_key.exists() {
        let h = ca.issue_client(ClientKind::Hub, "hub", CERT_DAYS, now)?;
        write_once(&hub_cert, &h.cert_pem, false)?;
        write_once(&hub_key, &h.key_pem, true)?;
    }
    let mut hub_identity = std::fs::read(&hub_cert)?;
    hub_identity.extend(std::fs::read(&hub_key)?);
    let mut national_identities = BTreeMap::new();
    for m in markets {
        let id = m.as_str().to_ascii_lowercase();
        let (cert, key) =
            (certs.join(format!("{id}.national.pem")), certs.join(format!("{id}.national.key")));
        if !key.exists() {
            let n = ca.issue_client(ClientKind::National(m.to_string()), &id, CERT_DAYS, now)?;
            write_once(&cert, &n.cert_pem, false)?;
            write_once(&key, &n.key_pem, true)?;
        }
        let mut identity = std::fs::read(&cert).with_context(|| format!("reading {}", cert.display()))?;
        identity.extend(std::fs::read(&key).with_context(|| format!("reading {}", key.display()))?);
        national_identities.insert(*m, identity);
    }
    let mut obps = Vec::new();
    for (id, name) in OBPS {
        let (cert, key) = (certs.join(format!("{id}.pem")), certs.join(format!("{id}.key")));
        if !key.exists() {
            let o = ca.issue_client(ClientKind::Obp, id, CERT_DAYS, now)?;
            write_once(&cert, &o.cert_pem, false)?;
            write_once(&key, &o.key_pem, true)?;
        }
        obps.push((id.to_owned(), name.to_owned(), cert, key));
    }
    Ok(Pki {
        ca_cert: ca.ca_cert_path(),
        ca_der: ca.ca_der(),
        crl_file: ca_dir.join(openmvs_pki::CRL_FILE),
        server_cert,
        server_key,
        hub_identity,
        national_identities,
        obps,
    })
}

fn tls(p: &Pki) -> anyhow::Result<TlsConfig> {
    Ok(TlsConfig {
        cert_chain: CertificateDer::pem_file_iter(&p.server_cert)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.server_cert.display()))?,
        key: PrivateKeyDer::from_pem_file(&p.server_key)
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.server_key.display()))?,
        client_ca: Some(vec![p.ca_der.clone()]),
        crls: hub_node::read_crls(&p.crl_file)?,
    })
}

/// The admin token of the demo: `admin.token`, created once.
fn admin_token(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("admin.token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        return Ok(t.trim().to_owned());
    }
    let mut r = [0u8; 24];
    getrandom::fill(&mut r).map_err(|e| anyhow::anyhow!("random number generator: {e}"))?;
    let t = node::hex(&r);
    node::write_private(&path, &t)?;
    Ok(t)
}

/// A GTIN-14 from its first 13 digits, with the GS1 mod-10 check digit.
fn gtin(first13: &str) -> String {
    let sum: u32 = first13
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| u32::from(b - b'0') * if i % 2 == 0 { 3 } else { 1 })
        .sum();
    format!("{first13}{}", (10 - sum % 10) % 10)
}

/// One sample product of the seed.
struct Sample {
    owner: &'static str,
    product_code: String,
    name: &'static str,
    common_name: &'static str,
    strength: &'static str,
    batch: &'static str,
    expiry: &'static str,
    markets: Vec<MarketCode>,
    serials: Vec<String>,
}

fn samples(markets: &[MarketCode]) -> Vec<Sample> {
    let first_two = markets[..markets.len().min(2)].to_vec();
    let serials = |prefix: &str, n: usize| (1..=n).map(|i| format!("{prefix}{i:08}")).collect::<Vec<_>>();
    vec![
        Sample {
            owner: OBPS[0].0,
            product_code: gtin("0950110153000"),
            name: "Examplomab 10 mg tablets",
            common_name: "examplomab",
            strength: "10 mg",
            batch: "EXA2401",
            expiry: "281231",
            markets: first_two,
            serials: serials("EXA", 400),
        },
        Sample {
            owner: OBPS[0].0,
            product_code: gtin("0950110153001"),
            name: "Demoprofen 400 mg film-coated tablets",
            common_name: "demoprofen",
            strength: "400 mg",
            batch: "DPF2402",
            expiry: "290630",
            markets: vec![markets[markets.len() - 1]],
            serials: serials("DPF", 300),
        },
        Sample {
            owner: OBPS[1].0,
            product_code: gtin("0950110153002"),
            name: "Sampletin 5 mg/ml solution for injection",
            common_name: "sampletin",
            strength: "5 mg/ml",
            batch: "SMP2403",
            expiry: "291130",
            markets: markets.to_vec(),
            serials: serials("SMP", 300),
        },
    ]
}

/// Seeds through the hub service itself, waits until the relay has distributed every pack, and
/// returns the `samples` of demo.json.
async fn seed(hub: &Hub, markets: &[MarketCode]) -> anyhow::Result<Value> {
    for (id, name) in OBPS {
        hub.register_obp(id, name).await.map_err(|e| anyhow::anyhow!("registering {id}: {e}"))?;
    }
    let mut uploads = Vec::new();
    let mut listed = Vec::new();
    for s in samples(markets) {
        let raw = RawProduct {
            scheme: Some("GTIN".into()),
            name: Some(s.name.into()),
            common_name: Some(s.common_name.into()),
            form: Some("TABLET".into()),
            strength: Some(s.strength.into()),
            pack_type: Some("BOX".into()),
            pack_size: Some("30".into()),
            markets: Some(
                s.markets
                    .iter()
                    .map(|m| RawMarket {
                        market: Some(m.to_string()),
                        national_code: Some(format!("{m}-{}", &s.product_code[8..])),
                        mah_name: Some(OBPS.iter().find(|o| o.0 == s.owner).map_or("", |o| o.1).to_owned()),
                        mah_address: Some("1 Example Street, Brussels".into()),
                        wholesalers: vec![RawWholesaler {
                            id: Some(format!("{m}-WH-0001")),
                            name: Some("Demo Wholesale".into()),
                        }],
                    })
                    .collect(),
            ),
        };
        let ctx = |what: &str| format!("seeding {what} of {}", s.product_code);
        hub.put_product(s.owner, &s.product_code, &raw)
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e}", ctx("the product")))?;
        hub.put_batch(s.owner, &s.product_code, s.batch, s.expiry, None)
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e}", ctx("the batch")))?;
        let up = hub
            .upload_serials(s.owner, &s.product_code, s.batch, IterLines(s.serials.clone().into_iter()))
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e}", ctx("the packs")))?;
        uploads.push((s.owner, up.upload_id));
        for m in &s.markets {
            listed.push(json!({
                "market": m.as_str(), "product_code": s.product_code, "scheme": "GTIN",
                "batch": s.batch, "expiry": s.expiry,
                "serials": s.serials.iter().take(LISTED_SERIALS).collect::<Vec<_>>(),
            }));
        }
    }
    let started = Instant::now();
    for (owner, id) in uploads {
        loop {
            let v = hub.upload(owner, id.as_str()).await.map_err(|e| anyhow::anyhow!("upload {id}: {e}"))?;
            match v.status {
                UploadStatus::Distributed => break,
                UploadStatus::Failed => bail!("upload {id} failed"),
                _ if started.elapsed() > DISTRIBUTION_TIMEOUT => {
                    bail!("the sample packs were not distributed within {DISTRIBUTION_TIMEOUT:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    Ok(Value::Array(listed))
}

/// The `UserId` of every demo client's NMVS SOAP login.
const DEMO_SOAP_USER: &str = "till1";

/// The NMVS SOAP logins `demo.json` lists for a market's clients.
fn soap_logins(doc: &Value, m: MarketCode) -> Vec<SecretLogin> {
    let clients = doc["markets"][m.as_str()]["clients"].as_array().cloned().unwrap_or_default();
    clients
        .iter()
        .filter_map(|c| {
            Some(SecretLogin {
                client_login_id: c["soap"]["client_login_id"].as_str()?.to_owned(),
                user_id: c["soap"]["user_id"].as_str()?.to_owned(),
                client_id: c["client_id"].as_str()?.into(),
                certificate: None,
            })
        })
        .collect()
}

/// A national system's configuration with the NMVS SOAP services on, as the demo runs them.
fn soap_on(mut c: NationalConfig) -> NationalConfig {
    c.secret_logins.enabled = true;
    c
}

/// The clients of api.md §1 for one market.
async fn clients(national: &National, m: MarketCode) -> anyhow::Result<Value> {
    let wanted = [
        (Role::Pharmacy, format!("{m}-PH-0001"), "Demo pharmacy, market square"),
        (Role::Pharmacy, format!("{m}-PH-0002"), "Demo pharmacy, station road"),
        (Role::Hospital, format!("{m}-HO-0001"), "Demo hospital pharmacy"),
        (Role::Wholesaler, format!("{m}-WH-0001"), "Demo Wholesale"),
        (Role::Nmvo, format!("{m}-NMVO"), "Demo NMVO"),
        (Role::Nca, format!("{m}-NCA"), "Demo authority"),
    ];
    let mut out = Vec::new();
    for (role, location, name) in wanted {
        let loc = Location::new(&location).map_err(|e| anyhow::anyhow!("{location}: {e}"))?;
        let c = national.create_client(role, loc, name).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut client = json!({"client_id": c.client_id, "client_secret": c.client_secret, "role": role.as_str(), "location": location});
        // End users also log in to the NMVS SOAP services with a login shaped as NMVS software
        // takes it (at most 20 letters, digits and hyphens); the password is the secret.
        if role.is_end_user() {
            client["soap"] = json!({"client_login_id": location, "user_id": DEMO_SOAP_USER});
        }
        out.push(client);
    }
    Ok(Value::Array(out))
}

struct Running {
    obs: Vec<Arc<Observability>>,
    servers: Vec<ServerHandle>,
}

/// The storage of one system of the demo: on PostgreSQL its own schema, `<prefix>_<system>`. A
/// new demo (no `demo.json` yet) starts from an empty schema: the demo's schemas belong to the
/// demo.
fn demo_storage(
    storage: &DemoStorage,
    system: &str,
    kind: System,
    fresh: bool,
    now: openmvs_core::time::Timestamp,
) -> anyhow::Result<Storage> {
    let DemoStorage::Postgres { url, prefix } = storage else { return Ok(Storage::Sqlite) };
    schema_storage(url, &format!("{prefix}_{}", system.to_ascii_lowercase()), kind, fresh, now)
}

async fn demo(
    dir: &Path,
    port_base: u16,
    markets: &[MarketCode],
    fake_clock: bool,
    storage: &DemoStorage,
) -> anyhow::Result<()> {
    let fresh = !dir.join("demo.json").exists();
    let pki = pki(dir, markets)?;
    let ca_pem = std::fs::read(&pki.ca_cert)?;
    let hub_url = format!("https://127.0.0.1:{port_base}");
    let token = admin_token(dir)?;
    let fake = fake_clock.then(|| Arc::new(FakeClock::at(SystemClock.now())));
    let clock: Arc<dyn Clock> = match &fake {
        Some(f) => f.clone(),
        None => Arc::new(SystemClock),
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    // The latency `POST /admin/v1/latency` injects (with --fake-clock), at every national system.
    let latency = Arc::new(openmvs_http::observe::InjectedLatency::default());
    let mut running = Running { obs: Vec::new(), servers: Vec::new() };
    let mut workers = Vec::new();
    let mut nationals = Vec::new();
    let mut national_stores = Vec::new();
    let mut urls = BTreeMap::new();
    for (i, m) in markets.iter().enumerate() {
        let port = port_base + 1 + i as u16;
        let data = dir.join(m.as_str());
        node::claim_market(&data, *m)?;
        let engine = demo_storage(storage, m.as_str(), System::National, fresh, clock.now())?;
        let store = node::open(&data, &engine, clock.clone(), None)?;
        let link = hub_link(&hub_url, &ca_pem, &pki.national_identities[m], INTERMARKET_TIMEOUT)
            .with_context(|| format!("the hub link of {m}"))?;
        let national = Arc::new(
            National::new(store.store(), clock.clone(), soap_on(NationalConfig::new(*m)), Some(link))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        );
        let mut o = Observability::new(clock.clone());
        o.injected = latency.clone();
        let obs = Arc::new(o);
        let limiter = Arc::new(Limiter::new(RateLimit { per_second: 100.0, burst: 200.0 }));
        let router = national_router(NationalState { national: national.clone(), obs: obs.clone(), limiter });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| format!("binding 127.0.0.1:{port} for {m}"))?;
        let opts = ServeOptions { stats: obs.connections.clone(), ..ServeOptions::default() };
        let server = serve_with(
            listener,
            with_admin(router, fake.as_ref(), &token, latency.clone()),
            Some(tls(&pki)?),
            opts,
        )
        .map_err(|e| anyhow::anyhow!(e))?;
        if let Some(r) = server.tls_reloader() {
            workers.push(tokio::spawn(hub_node::watch_crl(
                pki.crl_file.clone(),
                r,
                Duration::from_secs(5),
                stop_rx.clone(),
            )));
        }
        workers.push(tokio::spawn(national.clone().run_bulk_worker(stop_rx.clone())));
        workers.push(tokio::spawn(
            national.clone().run_security_refresh(openmvs_national::SECURITY_REFRESH, stop_rx.clone()),
        ));
        crate::health::probe(national.as_ref(), &obs, &data).await;
        workers.push(tokio::spawn(crate::health::run_probe(
            national.clone(),
            obs.clone(),
            data.clone(),
            Duration::from_secs(1),
            stop_rx.clone(),
        )));
        workers.push(tokio::spawn(
            Upkeep::national(obs.clone(), national.clone(), &node_label(port), RuleConfig::default())
                .run(stop_rx.clone()),
        ));
        urls.insert(*m, format!("https://127.0.0.1:{port}"));
        running.obs.push(obs);
        running.servers.push(server);
        nationals.push((*m, national));
        national_stores.push(store);
    }
    let hub_dir = dir.join("hub");
    let key = hub_node::serial_key(&hub_dir)?;
    let hub_store = hub_node::open(
        &hub_dir,
        &demo_storage(storage, "hub", System::Hub, fresh, clock.now())?,
        clock.clone(),
        None,
    )?;
    let hub_config = HubConfig::new(key);
    // The OBPs' endpoints of the demo are served with certificates of the demo CA.
    let links = hub_links(urls.clone(), &ca_pem, &pki.hub_identity, hub_config.intermarket_budget)?;
    let dyn_hub_store: Arc<dyn HubStore> = hub_store.store();
    let hub = Arc::new(
        Hub::new(dyn_hub_store, clock.clone(), hub_config, Some(links.delivery))
            .with_queries(links.queries)
            .with_callbacks(links.callbacks),
    );
    let hub_obs = Arc::new(Observability::new(clock.clone()));
    let router = hub_router(HubState { hub: hub.clone(), obs: hub_obs.clone() });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port_base))
        .await
        .with_context(|| format!("binding 127.0.0.1:{port_base} for the hub"))?;
    let opts = ServeOptions { stats: hub_obs.connections.clone(), ..ServeOptions::default() };
    let hub_server = serve_with(
        listener,
        with_admin(router, fake.as_ref(), &token, latency.clone()),
        Some(tls(&pki)?),
        opts,
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    if let Some(r) = hub_server.tls_reloader() {
        workers.push(tokio::spawn(hub_node::watch_crl(
            pki.crl_file.clone(),
            r,
            Duration::from_secs(5),
            stop_rx.clone(),
        )));
    }
    workers.push(tokio::spawn(hub.clone().run_relay(stop_rx.clone())));
    workers.push(tokio::spawn(
        Upkeep::hub(hub_obs.clone(), hub.clone(), &node_label(port_base), RuleConfig::default())
            .run(stop_rx.clone()),
    ));
    crate::health::probe(hub.as_ref(), &hub_obs, &hub_dir).await;
    workers.push(tokio::spawn(crate::health::run_probe(
        hub.clone(),
        hub_obs.clone(),
        hub_dir.clone(),
        Duration::from_secs(1),
        stop_rx.clone(),
    )));
    // The national relays start once the hub listens: a first delivery then finds it (with
    // --fake-clock a retry's backoff would only end when the clock is moved).
    for ((_, national), store) in nationals.iter().zip(&national_stores) {
        workers.push(tokio::spawn(national.clone().run_relay(stop_rx.clone())));
        if let Some(heads) = store.heads() {
            let forward = super::serve::forward_heads(national.clone(), heads.subscribe(), stop_rx.clone());
            workers.push(tokio::spawn(forward));
        }
    }
    running.obs.push(hub_obs);
    running.servers.push(hub_server);
    for o in &running.obs {
        o.set_ready(true);
    }

    let demo_json = dir.join("demo.json");
    let doc: Value = if demo_json.exists() {
        let text = std::fs::read_to_string(&demo_json)?;
        serde_json::from_str(&text).with_context(|| format!("{} is damaged", demo_json.display()))?
    } else {
        let samples = seed(&hub, markets).await?;
        let mut ms = serde_json::Map::new();
        for (m, national) in &nationals {
            ms.insert(m.to_string(), json!({"url": urls[m], "clients": clients(national, *m).await?}));
        }
        let doc = json!({
            "ca_cert": pki.ca_cert.display().to_string(),
            "admin_token": token,
            "fake_clock": fake_clock,
            "hub": {"url": hub_url},
            "obps": pki.obps.iter().map(|(id, name, cert, key)| json!({
                "id": id, "name": name, "cert": cert.display().to_string(), "key": key.display().to_string(),
            })).collect::<Vec<_>>(),
            "markets": ms,
            "samples": samples,
        });
        let tmp = dir.join("demo.json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(&doc)?)?;
        std::fs::rename(&tmp, &demo_json)?;
        doc
    };
    let profiles = dir.join(PROFILES_FILE);
    write_profiles(&profiles, &doc)?;
    for (m, national) in &nationals {
        national.set_logins(&soap_logins(&doc, *m));
    }
    outln!("{}", guide(&doc, &demo_json, &profiles, fake_clock));

    wait_for_signal().await;
    for o in &running.obs {
        o.set_ready(false);
    }
    for s in running.servers {
        s.shutdown(Duration::from_secs(5)).await;
    }
    let _ = stop_tx.send(true);
    super::serve::stop_workers(workers, super::serve::WORKERS_STOP_LIMIT).await;
    hub_store.close().await;
    for s in national_stores {
        s.close().await;
    }
    outln!("openmvs demo: stopped");
    Ok(())
}

/// Writes the profile of every client of demo.json to `path` (readable by its owner alone: it
/// holds the secrets), unless the file is there: like demo.json, it is written once, so that a
/// profile added to it stays.
fn write_profiles(path: &Path, doc: &Value) -> anyhow::Result<()> {
    if path.exists() {
        return Ok(());
    }
    let text = super::pack::render_profiles(
        "The clients of demo.json, for the pack commands: openmvs verify --profiles THIS_FILE --profile NAME ...\n\
         (or OPENMVS_PROFILES=THIS_FILE and OPENMVS_PROFILE=NAME). Written once; delete it to have it written again.",
        &super::pack::demo_profiles(doc),
    )?;
    let tmp = path.with_extension("toml.tmp");
    // A file left by an interrupted start.
    let _ = std::fs::remove_file(&tmp);
    node::write_private(&tmp, &text)?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// The guide printed at start: commands that work as printed.
/// The console's pages and a sign-in for each role, for the guide's head (no line of it is a
/// command).
fn console_guide(doc: &Value) -> String {
    let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
    let mut out =
        String::from("The web console (trust the demo CA, or accept its certificate, in the browser):\n");
    if let Some(markets) = doc["markets"].as_object() {
        for (m, v) in markets {
            let signs: Vec<String> = ["NMVO", "NCA", "PHARMACY"]
                .iter()
                .filter_map(|role| {
                    let c = v["clients"].as_array()?.iter().find(|c| c["role"] == *role)?;
                    Some(format!("{role} {} / {}", s(&c["client_id"]), s(&c["client_secret"])))
                })
                .collect();
            out.push_str(&format!("  {m}: {}/ui  sign in as {}\n", s(&v["url"]), signs.join(", ")));
        }
    }
    let obp = &doc["obps"][0];
    out.push_str(&format!(
        "  the hub, for the OBP {}: {}/ui  with its certificate in the browser (openssl pkcs12 -export -in {} -inkey {} -out obp.p12)\n  \
         status pages, public: {}/status and each national system's /status",
        s(&obp["id"]),
        s(&doc["hub"]["url"]),
        s(&obp["cert"]),
        s(&obp["key"]),
        s(&doc["hub"]["url"]),
    ));
    out
}

fn guide(doc: &Value, file: &Path, profiles: &Path, fake_clock: bool) -> String {
    let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
    let ca = s(&doc["ca_cert"]);
    let first_sample = &doc["samples"][0];
    let market = s(&first_sample["market"]);
    let url = s(&doc["markets"][&market]["url"]);
    let pharmacy = doc["markets"][&market]["clients"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["role"] == "PHARMACY"))
        .cloned()
        .unwrap_or(Value::Null);
    let (pc, batch, expiry) =
        (s(&first_sample["product_code"]), s(&first_sample["batch"]), s(&first_sample["expiry"]));
    let serial = s(&first_sample["serials"][0]);
    let obp = &doc["obps"][0];
    let hub = s(&doc["hub"]["url"]);
    let stamp = SystemClock.now().unix_millis() / 1000;
    let pack = format!(
        r#""scheme":"GTIN","product_code":"{pc}","batch":"{batch}","expiry":"{expiry}","serial":"{serial}""#
    );
    let mut g = format!(
        "openmvs demo: hub on {hub}, national systems on {markets}\n\
         Everything (URLs, clients and secrets, OBP certificates, sample packs) is in {file}\n\
         A profile per client for `openmvs verify|supply|undo ... --profile {market_lc}-pharmacy` ({market_lc}-pharmacy-2, {market_lc}-hospital, ...) is in {profiles}\n\
         {console}\n\n\
         # An access token for a pharmacy in {market}:\n\
         TOKEN=$(curl -s --cacert {ca} -d 'grant_type=client_credentials&client_id={cid}&client_secret={secret}' {url}/oauth/token | sed 's/.*\"access_token\":\"\\([^\"]*\\)\".*/\\1/')\n\n\
         # Verify a pack, supply it, undo the supply:\n\
         curl -s --cacert {ca} -H \"Authorization: Bearer $TOKEN\" -d '{{\"client_trx_id\":\"guide-{stamp}-1\",{pack}}}' {url}/v1/packs/verify\n\
         curl -s --cacert {ca} -H \"Authorization: Bearer $TOKEN\" -d '{{\"client_trx_id\":\"guide-{stamp}-2\",{pack}}}' {url}/v1/packs/supply\n\
         curl -s --cacert {ca} -H \"Authorization: Bearer $TOKEN\" -d '{{\"client_trx_id\":\"guide-{stamp}-3\",{pack}}}' {url}/v1/packs/supply/undo\n\n\
         # Upload two new serials as the OBP {obp_id} (its client certificate is its identity), keep the upload's id, then ask how the upload is doing:\n\
         UPLOAD=$(printf 'G{stamp}A\\nG{stamp}B\\n' | curl -s --cacert {ca} --cert {obp_cert} --key {obp_key} -H 'content-type: text/plain' --data-binary @- {hub}/v1/products/{pc}/batches/{batch}/packs | sed 's/.*\"upload_id\":\"\\([^\"]*\\)\".*/\\1/')\n\
         curl -s --cacert {ca} --cert {obp_cert} --key {obp_key} {hub}/v1/uploads/$UPLOAD\n",
        markets = doc["markets"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| format!("{k} {}", s(&v["url"]))).collect::<Vec<_>>().join(", "))
            .unwrap_or_default(),
        file = file.display(),
        profiles = profiles.display(),
        market_lc = market.to_ascii_lowercase(),
        cid = s(&pharmacy["client_id"]),
        secret = s(&pharmacy["client_secret"]),
        obp_id = s(&obp["id"]),
        obp_cert = s(&obp["cert"]),
        obp_key = s(&obp["key"]),
        console = console_guide(doc),
    );
    // The verify as software built for NMVS sends it: SOAP 1.2, the login inside the envelope.
    if let (Some(login), Some(user)) =
        (pharmacy["soap"]["client_login_id"].as_str(), pharmacy["soap"]["user_id"].as_str())
    {
        g.push_str(&format!(
            "\n# The same verify as NMVS software sends it (SOAP 1.2 at the NMVS path; each client's login is in demo.json under \"soap\", the password is its secret):\n\
             curl -s --cacert {ca} -H 'content-type: text/xml' --data-binary '<soap:Envelope xmlns:soap=\"http://www.w3.org/2003/05/soap-envelope\" xmlns:urn=\"urn:wsdltypes.nmvs.eu:v4.0\" xmlns:urn1=\"urn:types.nmvs.eu:v4.0\"><soap:Body><urn:G110Request><urn1:Header><urn1:Auth><urn1:ClientLoginId>{login}</urn1:ClientLoginId><urn1:UserId>{user}</urn1:UserId><urn1:Password>{secret}</urn1:Password></urn1:Auth><urn1:Transaction><urn1:ClientTrxId>guide-{stamp}-5</urn1:ClientTrxId><urn1:Language>eng</urn1:Language></urn1:Transaction></urn1:Header><urn1:Body><urn1:Product><urn1:ProductCode urn1:scheme=\"GTIN\">{pc}</urn1:ProductCode><urn1:Batch><urn1:Id>{batch}</urn1:Id><urn1:ExpDate>{expiry}</urn1:ExpDate></urn1:Batch></urn1:Product><urn1:Pack urn1:sn=\"{serial}\"/></urn1:Body></urn:G110Request></soap:Body></soap:Envelope>' {url}/WS_SINGLE_TRANSACTIONS_V1/SinglePackServiceV40\n",
            secret = s(&pharmacy["client_secret"]),
        ));
    }
    // A product sold only in another market: the national system asks the hub, which has a
    // market that holds it answer (fmd-rules §4.10).
    let samples = doc["samples"].as_array().cloned().unwrap_or_default();
    let elsewhere = samples.iter().find(|x| {
        x["market"] != first_sample["market"]
            && !samples
                .iter()
                .any(|y| y["market"] == first_sample["market"] && y["product_code"] == x["product_code"])
    });
    if let Some(other) = elsewhere {
        let pack = format!(
            r#""scheme":"GTIN","product_code":"{}","batch":"{}","expiry":"{}","serial":"{}""#,
            s(&other["product_code"]),
            s(&other["batch"]),
            s(&other["expiry"]),
            s(&other["serials"][0]),
        );
        g.push_str(&format!(
            "\n# Verify in {market} a pack sold only in {other_market}: the answer comes from {other_market} through the hub (\"intermarket\": true):\n\
             curl -s --cacert {ca} -H \"Authorization: Bearer $TOKEN\" -d '{{\"client_trx_id\":\"guide-{stamp}-4\",{pack}}}' {url}/v1/packs/verify\n",
            other_market = s(&other["market"]),
        ));
    }
    if fake_clock {
        g.push_str(&format!(
            "\n# Move the shared clock forward by eleven days (past the undo window):\n\
             curl -s --cacert {ca} -H 'Authorization: Bearer {token}' -d '{{\"advance_seconds\":950400}}' {hub}/admin/v1/clock\n",
            token = s(&doc["admin_token"]),
        ));
    }
    g.push_str(&format!(
        "\n# The status pages, public: the hub's (every market's link and backlog) and {market}'s (the 300 ms figures); open them in a browser for the page, or ask for JSON:\n\
         curl -s --cacert {ca} {hub}/status\n\
         curl -s --cacert {ca} {url}/status\n"
    ));
    g.push_str("\nopenmvs demo: ready (Ctrl-C stops it; a restart on the same directory keeps everything)");
    g
}
