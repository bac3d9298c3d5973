//! The whole system as separate `openmvs` processes, wired as production wires them: a hub
//! (`openmvs serve hub`) and one national system per market (`openmvs serve national`), each with
//! its own configuration file, data directory and storage (an SQLite file, or its own PostgreSQL
//! schema), over mutual TLS with certificates of one CA made with `openmvs-pki`: the servers'
//! certificate, the hub's client certificate, each market's and an OBP's. Every system keeps its
//! port across restarts, since the others' configurations name it.

// Shared by the crash loop and the failover test, which each use part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use openmvs_pki::{CertificateAuthority, ClientKind};

use crate::common::{Creds, Server, TempDir, WAIT_LIMIT, eventually, free_port};

/// Days the certificates are valid.
const CERT_DAYS: u32 = 30;
/// The OBP's id.
pub const OBP: &str = "crash-obp";

/// Where the systems keep their data.
#[derive(Debug, Clone)]
pub enum Engine {
    /// Files in each data directory.
    Sqlite,
    /// One schema per system in this database.
    Postgres {
        /// The database.
        url: String,
        /// The schemas, one per system (hub first, then the markets in order).
        schemas: Vec<String>,
    },
}

impl Engine {
    /// PostgreSQL: a fresh schema for the hub and each of `markets` markets in the test database
    /// (`None`, saying on stderr that `what` skips, without `OPENMVS_TEST_DATABASE_URL`).
    pub fn fresh_postgres(prefix: &str, what: &str, markets: usize) -> Option<Engine> {
        let mut schemas = Vec::new();
        let mut url = String::new();
        for _ in 0..=markets {
            let (u, s) = openmvs_store_pg::testing::fresh_schema(prefix, what)?;
            url = u;
            schemas.push(s);
        }
        Some(Engine::Postgres { url, schemas })
    }
}

/// Which system a process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The hub.
    Hub,
    /// The national system of the market at this index of [`Cluster::markets`].
    National(usize),
}

/// One system: its configuration and the process that serves it, when one does.
pub struct System {
    /// Which one.
    pub kind: Kind,
    /// Its name in logs and summaries: `hub`, `DE`, ...
    pub name: String,
    /// Its configuration file.
    pub config: PathBuf,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    server: Option<Server>,
    starts: u32,
    logs: PathBuf,
}

impl System {
    fn serve_args(&self) -> [&str; 4] {
        let what = if self.kind == Kind::Hub { "hub" } else { "national" };
        ["serve", what, "--config", self.config.to_str().expect("UTF-8 path")]
    }

    /// Starts it on its port and waits for its ready line. A port just freed by a killed
    /// process is bound again at once (the servers set `SO_REUSEADDR`); one taken meanwhile by
    /// another program is tried again until the deadline.
    pub fn start(&mut self) {
        assert!(self.server.is_none(), "{} is already running", self.name);
        let mut last = String::new();
        let started = eventually(WAIT_LIMIT, || {
            self.starts += 1;
            let log = self.logs.join(format!("{}-{}.log", self.name, self.starts));
            match Server::spawn_command(&self.serve_args(), &log) {
                Ok(s) => Some(s),
                Err(text) if text.contains("binding") => {
                    last = text;
                    None
                }
                Err(text) => panic!("{} did not start:\n{text}", self.name),
            }
        });
        match started {
            Some(s) => self.server = Some(s),
            None => panic!("{} could not bind its port within {WAIT_LIMIT:?}:\n{last}", self.name),
        }
    }

    /// Kills it with SIGKILL, as a power cut would.
    pub fn kill(&mut self) {
        self.server.take().expect("a running process").kill();
    }

    /// Stops it with SIGTERM and insists on a clean exit.
    pub fn stop(&mut self) {
        self.server.take().expect("a running process").stop();
    }

    /// Whether a process serves it.
    pub fn is_running(&self) -> bool {
        self.server.is_some()
    }

    /// Another node of the same system: its configuration `config` (its own listen address and
    /// data directory), reached at `url`, logging beside this one as `name`.
    pub fn sibling(&self, name: &str, config: PathBuf, url: String) -> System {
        System {
            kind: self.kind,
            name: name.to_owned(),
            config,
            url,
            server: None,
            starts: 0,
            logs: self.logs.clone(),
        }
    }

    /// The process's id, while one serves it.
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(Server::pid)
    }
}

/// A hub and its markets, each in its own process.
pub struct Cluster {
    dir: TempDir,
    /// The hub.
    pub hub: System,
    /// The national systems, in market order.
    pub markets: Vec<System>,
    /// The market codes.
    pub codes: Vec<String>,
    /// The CA certificate every process trusts.
    pub ca_pem: Vec<u8>,
    /// The OBP's certificate and key, PEM.
    pub obp_identity: Vec<u8>,
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// The TOML of a path.
fn p(path: &Path) -> String {
    format!("'{}'", path.display())
}

impl Cluster {
    /// The configuration files, certificates and (on PostgreSQL, migrated) storage of a hub and
    /// the national systems of `codes`; nothing runs yet.
    pub fn new(name: &str, codes: &[&str], engine: &Engine) -> Cluster {
        let dir = TempDir::new(name);
        let root = dir.path().to_owned();
        let now = SystemTime::now();
        let mut ca =
            CertificateAuthority::create(&root.join("ca"), "crash loop CA", now).expect("create the CA");
        let certs = root.join("certs");
        std::fs::create_dir_all(&certs).expect("create the certificate directory");
        let pair = |name: &str, cert: &str, key: &str| -> (PathBuf, PathBuf) {
            let (c, k) = (certs.join(format!("{name}.pem")), certs.join(format!("{name}.key")));
            write(&c, cert);
            write(&k, key);
            (c, k)
        };
        let server =
            ca.issue_server(&["localhost", "127.0.0.1"], CERT_DAYS, now).expect("server certificate");
        let (server_cert, server_key) = pair("server", &server.cert_pem, &server.key_pem);
        let hub_id = ca.issue_client(ClientKind::Hub, "hub", CERT_DAYS, now).expect("hub certificate");
        let (hub_cert, hub_key) = pair("hub", &hub_id.cert_pem, &hub_id.key_pem);
        let obp = ca.issue_client(ClientKind::Obp, OBP, CERT_DAYS, now).expect("OBP certificate");
        let obp_identity = format!("{}\n{}", obp.cert_pem.trim_end(), obp.key_pem).into_bytes();
        let ca_cert = ca.ca_cert_path();
        let logs = root.join("logs");
        std::fs::create_dir_all(&logs).expect("create the log directory");

        let hub_port = free_port();
        let ports: Vec<u16> = codes.iter().map(|_| free_port()).collect();
        let storage = |i: usize, section: &str| match engine {
            Engine::Sqlite => (String::new(), String::new()),
            Engine::Postgres { url, schemas } => (
                "storage = \"postgres\"\n".to_owned(),
                format!("[{section}.postgres]\nurl = \"{url}\"\nschema = \"{}\"\n", schemas[i]),
            ),
        };
        let hub_dir = root.join("hub");
        let hub_config = root.join("hub.toml");
        let (kind, pg) = storage(0, "hub");
        let markets_toml: String = codes
            .iter()
            .zip(&ports)
            .map(|(c, port)| format!("{c} = \"https://127.0.0.1:{port}\"\n"))
            .collect();
        write(
            &hub_config,
            &format!(
                "[hub]\nlisten = \"127.0.0.1:{hub_port}\"\ndata_dir = {}\nlog = \"warn\"\nca_dir = {}\n{kind}\n{pg}\n\
                 [hub.tls]\ncert = {}\nkey = {}\n\n[hub.identity]\ncert = {}\nkey = {}\n\n[hub.markets]\n{markets_toml}",
                p(&hub_dir),
                p(&root.join("ca")),
                p(&server_cert),
                p(&server_key),
                p(&hub_cert),
                p(&hub_key),
            ),
        );
        let hub = System {
            kind: Kind::Hub,
            name: "hub".to_owned(),
            config: hub_config,
            url: format!("https://127.0.0.1:{hub_port}"),
            server: None,
            starts: 0,
            logs: logs.clone(),
        };
        let mut markets = Vec::new();
        for (i, (code, port)) in codes.iter().zip(&ports).enumerate() {
            let id = code.to_ascii_lowercase();
            let n = ca
                .issue_client(ClientKind::National((*code).to_owned()), &id, CERT_DAYS, now)
                .expect("market certificate");
            let (cert, key) = pair(&format!("{id}.national"), &n.cert_pem, &n.key_pem);
            let data_dir = root.join(code);
            let config = root.join(format!("{id}.toml"));
            let (kind, pg) = storage(i + 1, "national");
            // Generous rate limits: the loop measures crashes, not the limiter.
            write(
                &config,
                &format!(
                    "[national]\nmarket = \"{code}\"\nlisten = \"127.0.0.1:{port}\"\ndata_dir = {}\nlog = \"warn\"\n{kind}\n{pg}\n\
                     [national.tls]\ncert = {}\nkey = {}\nclient_ca = {}\n\n\
                     [national.hub]\nurl = \"https://127.0.0.1:{hub_port}\"\nca = {}\ncert = {}\nkey = {}\n\n\
                     [national.limits]\nclient_rate_per_second = 1000000\nclient_burst = 1000000\n",
                    p(&data_dir),
                    p(&server_cert),
                    p(&server_key),
                    p(&ca_cert),
                    p(&ca_cert),
                    p(&cert),
                    p(&key),
                ),
            );
            markets.push(System {
                kind: Kind::National(i),
                name: (*code).to_owned(),
                config,
                url: format!("https://127.0.0.1:{port}"),
                server: None,
                starts: 0,
                logs: logs.clone(),
            });
        }
        let ca_pem = std::fs::read(&ca_cert).expect("read the CA certificate");
        let cluster = Cluster {
            dir,
            hub,
            markets,
            codes: codes.iter().map(|c| (*c).to_owned()).collect(),
            ca_pem,
            obp_identity,
        };
        if let Engine::Postgres { .. } = engine {
            for s in cluster.systems() {
                let out = admin(&s.config, &["migrate"]);
                assert!(out.contains("applied") || out.contains("schema"), "migrate {}: {out}", s.name);
            }
        }
        cluster
    }

    /// The hub, then the markets.
    pub fn systems(&self) -> impl Iterator<Item = &System> {
        std::iter::once(&self.hub).chain(&self.markets)
    }

    /// The system of `kind`.
    pub fn system(&mut self, kind: Kind) -> &mut System {
        match kind {
            Kind::Hub => &mut self.hub,
            Kind::National(i) => &mut self.markets[i],
        }
    }

    /// Creates a client of `role` at `location` in market `i` (before its process starts, or
    /// while it runs: the command writes through the store).
    pub fn client(&self, i: usize, role: &str, location: &str) -> Creds {
        let s = &self.markets[i];
        let out = admin(
            &s.config,
            &[
                "admin",
                "client",
                "create",
                "--market",
                &self.codes[i],
                "--role",
                role,
                "--location",
                location,
            ],
        );
        let v: serde_json::Value = serde_json::from_str(&out).expect("client create prints JSON");
        Creds {
            client_id: v["client_id"].as_str().expect("client_id").to_owned(),
            client_secret: v["client_secret"].as_str().expect("client_secret").to_owned(),
        }
    }

    /// Starts every system that is not running: the hub first, so that the markets' relays find it.
    pub fn start_all(&mut self) {
        if !self.hub.is_running() {
            self.hub.start();
        }
        for m in &mut self.markets {
            if !m.is_running() {
                m.start();
            }
        }
    }

    /// Stops every running system with SIGTERM.
    pub fn stop_all(&mut self) {
        for m in &mut self.markets {
            if m.is_running() {
                m.stop();
            }
        }
        if self.hub.is_running() {
            self.hub.stop();
        }
    }

    /// The temporary directory: configurations, certificates, data and every process's log.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}

pub use crate::common::admin;
