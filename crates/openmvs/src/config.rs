//! The configuration file of `openmvs serve national`, read in two phases: a raw serde shape
//! (the TOML file, then `OPENMVS__SECTION__KEY` environment variables on top), validated into
//! typed settings with every default filled in.
//!
//! ```toml
//! [national]
//! market = "DE"                    # required: the market served
//! listen = "127.0.0.1:8401"        # default 127.0.0.1:8401
//! data_dir = "openmvs-data/DE"     # default ./openmvs-data/<market>; relative to this file
//! storage = "sqlite"               # the embedded store (default), or "postgres"
//! log = "info"                     # tracing filter, default "info"
//!
//! [national.postgres]              # with storage = "postgres": nodes sharing one database
//! url = "postgres://openmvs@db.example:5432/openmvs"
//! schema = "openmvs_de"            # default openmvs_<market>; apply with `openmvs migrate`
//! pool = 4                         # shared read connections per node
//! commit_timeout_ms = 10000        # a commit not confirmed by then (no writable primary): 503, outcome unknown
//!
//! [national.tls]                   # without it the server speaks plain HTTP (local testing only)
//! cert = "national.pem"            # certificate chain, PEM
//! key = "national.key"             # PKCS#8 key, PEM
//! client_ca = "ca.pem"             # CA whose client certificates are taken: the hub's (for the
//!                                  # hub routes), and end users' for SOAP logins that need one
//!
//! [national.policy]
//! undo_window_hours = 240          # DR Art 13: 10 days
//! wholesaler_supply = false        # DR Art 23: off unless national law enables it
//! tolerated_repeats = 2            # double scans answered without an alert
//!
//! [national.hub]                   # without it the national system runs alone
//! url = "https://127.0.0.1:8400"
//! ca = "ca.pem"                    # CA of the hub's server certificate
//! cert = "national-DE.pem"         # this system's client certificate and key for the hub
//! key = "national-DE.key"
//! intermarket_timeout_ms = 250     # inside the 300 ms budget
//!
//! [national.limits]
//! max_bulk_rows = 100000
//! bulk_chunk = 256                 # rows per unit of work
//! drain_seconds = 10               # how long in-flight requests may finish at shutdown
//! ready_grace_ms = 500             # readiness is false this long before the listener stops
//! client_rate_per_second = 100     # per client, sustained; over it: 429 with Retry-After
//! client_burst = 200               # per client, at once
//! max_in_flight = 128              # requests in flight on this node (lower while its cores are saturated); over it: 503 at once
//! max_connections = 10000          # open connections; at the cap new ones are closed at once (lowered to fit `ulimit -n`)
//! max_connections_per_address = 1000 # open connections from one address (a NAT'd chain has far fewer terminals); at most half of max_connections
//! header_read_timeout_ms = 10000   # a TLS handshake, and a request head from its first byte
//! idle_timeout_seconds = 60        # a connection with no request in flight is closed
//! body_min_bytes_per_second = 1024 # a body slower than this on average (0: no rule) fails ...
//! body_grace_ms = 10000            # ... once this long has passed
//! login_concurrency = 1            # client secrets checked at once (argon2id: a core and MiBs each)
//! login_queue = 32                 # logins waiting for a turn; over it: 503
//! login_failures_per_client = 20   # failed logins of a client id per window; over it: 429
//! login_failures_per_address = 10  # failed logins from one address per window; over it: 429
//! login_failure_window_seconds = 300
//!
//! [national.guessing]             # serial guessing and alert storms, per client and per premises
//! window_seconds = 600             # sliding window over which answers are counted
//! min_failures = 20                # unknown-serial and mismatch answers (A2, A3, A52, A68) in the
//! min_share_percent = 20           # window that are at least this share of the requests ...
//! max_failures = 200               # ... or this many whatever the share: the client is slowed and
//!                                  # the NMVO gets one SERIAL_GUESSING alert
//! slow_interval_seconds = 10       # while slowed: one request answered per interval, others
//!                                  # 429 NMVS_FI_SE_CLI_01 with Retry-After
//! refuse_after = 20                # this many more failures while slowed, and every request is
//! refuse_seconds = 3600            # refused this long: 429 NMVS_FI_SE_CLI_02 with Retry-After
//!
//! [national.soap]                 # the NMVS SOAP services (README, "NMVS SOAP"), at the NMVS paths
//! enabled = false                  # off unless turned on (`openmvs demo` turns it on)
//! login_cache_seconds = 300        # a login whose secret was checked is remembered this long, so
//!                                  # that a till's next request needs no argon2 (a changed secret is
//!                                  # seen within 5 s, a client cut off at once)
//! login_cache_entries = 10000      # logins remembered at once; beyond, the oldest is forgotten
//! require_certificate = false      # true: every SOAP login also needs a TLS client certificate
//!                                  # from national.tls.client_ca, of any name unless its login
//!                                  # below names one (needs client_ca)
//!
//! [[national.soap.logins]]         # a login that names a client other than by its id (NMVS
//! client_login_id = "DE-PH-0001"   # software takes at most 20 letters, digits and hyphens for
//! user_id = "till1"                # ClientLoginId and UserId); without one, both are the client
//! client_id = "cl_9502d35169718f7dbe9cf7b17e344cec"  # id. The password is the client's secret.
//! certificate = "till1.de-ph-0001.example"  # optional: the login also needs a TLS client
//!                                  # certificate from national.tls.client_ca with this DNS name
//!                                  # (subjectAltName, ASCII case aside; 1-253 printable ASCII
//!                                  # characters; needs client_ca): both factors on every request
//!
//! [national.health]
//! probe_ms = 1000                  # a probe write through the store this often: /health/ready is
//!                                  # false while the store cannot commit, true again once it can
//! disk_free_warn_mb = 1024         # below this much free space in data_dir: a warning in the log
//!                                  # (once per crossing) and openmvs_disk_low 1 in /metrics
//! ```
//!
//! The connection limits guard against clients that hold connections without using them: the
//! defaults let a pharmacy terminal keep its connection between scans and send the largest body
//! over a slow link, while a connection that sends nothing, a head one byte at a time or a body
//! that never comes is closed within seconds. The login limits keep password hashing, the one
//! expensive thing an unauthenticated client can ask for, on one core: a node answers verifies
//! with tokens at full speed whatever the number of bad logins.
//!
//! The guessing limits are set from what pharmacies do. A busy pharmacy dispenses a few hundred
//! packs a day, about one a minute; a hospital or wholesaler at a counter a few thousand, a few a
//! minute. Genuine alerts are 0.05-0.2 % of transactions (EU 2021: 0.21 %), so a pharmacy sees
//! one every few days and even a wholesaler at 10,000 scans a day expects under one in ten
//! minutes: 20 in 10 minutes is beyond any honest rate by orders of magnitude, while 313 random
//! serials cross it at the twentieth. The share (20 %) keeps a high-volume client with a bad
//! carton among hundreds of good packs answered; `max_failures` (200, an honest 0.2 % would need
//! 100,000 requests in the window, the largest bulk) keeps verifies of one genuine pack mixed in
//! from buying unlimited guesses. One request every 10 s is a person scanning by hand, and a
//! script gets six guesses a minute instead of hundreds; 20 more failures while slowed are
//! refused for an hour, so a script that waits out every `Retry-After` raises about 40 alerts an
//! hour and one SERIAL_GUESSING alert per episode, and a pharmacy hit by an un-uploaded batch is
//! answered again within the hour (the NMVO, alerted, can cut a client off for good with
//! `openmvs admin client disable`). The slowed and refused requests are not processed: they raise
//! no alert. Each node counts what it answers.
//!
//! Any key can be overridden from the environment: `OPENMVS__NATIONAL__LISTEN=0.0.0.0:8401`,
//! `OPENMVS__NATIONAL__POLICY__WHOLESALER_SUPPLY=true`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use openmvs_core::guessing::GuessingPolicy;
use openmvs_core::ids::MarketCode;
use openmvs_core::pack::Policy;
use openmvs_national::{SecretLogin, SecretLogins};
use serde::{Deserialize, Serialize};

pub use openmvs_node::{Storage, redact_url};

/// The file, as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    /// The national system.
    pub national: Option<RawNational>,
    /// The European Hub (see [`crate::hub_config`]).
    pub hub: Option<crate::hub_config::RawHubSection>,
    /// A pharmacy's offline agent (see [`crate::agent_config`]).
    pub agent: Option<crate::agent_config::RawAgentSection>,
}

/// `[national]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawNational {
    pub market: Option<String>,
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub storage: Option<String>,
    pub postgres: Option<RawPostgres>,
    pub log: Option<String>,
    pub tls: Option<RawTls>,
    pub policy: Option<RawPolicy>,
    pub hub: Option<RawHub>,
    pub limits: Option<RawLimits>,
    pub guessing: Option<RawGuessing>,
    pub health: Option<RawHealth>,
    pub soap: Option<RawSoap>,
}

/// `[national.soap]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSoap {
    pub enabled: Option<bool>,
    pub login_cache_seconds: Option<u64>,
    pub login_cache_entries: Option<usize>,
    pub require_certificate: Option<bool>,
    pub logins: Option<Vec<RawSoapLogin>>,
}

/// `[[national.soap.logins]]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSoapLogin {
    pub client_login_id: Option<String>,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    pub certificate: Option<String>,
}

/// Validates `[national.soap]`; `client_ca`: whether `[national.tls]` names a CA of client
/// certificates, without which no login can come with one.
fn soap(raw: Option<RawSoap>, client_ca: bool) -> anyhow::Result<SecretLogins> {
    let r = raw.unwrap_or_default();
    let d = SecretLogins::default();
    let secs = r.login_cache_seconds.unwrap_or(d.ttl.as_secs());
    if !(1..=3600).contains(&secs) {
        bail!("national.soap.login_cache_seconds: {secs} must be 1-3600");
    }
    let entries = r.login_cache_entries.unwrap_or(d.max_entries);
    if !(1..=1_000_000).contains(&entries) {
        bail!("national.soap.login_cache_entries: {entries} must be 1-1000000");
    }
    let mut logins: Vec<SecretLogin> = Vec::new();
    for (i, l) in r.logins.unwrap_or_default().into_iter().enumerate() {
        let key = |k: &str, v: Option<String>| -> anyhow::Result<String> {
            match v {
                Some(v) if !v.is_empty() && v.len() <= 100 && v.bytes().all(|b| b.is_ascii_graphic()) => {
                    Ok(v)
                }
                Some(v) => {
                    bail!("national.soap.logins[{i}].{k}: '{v}' must be 1-100 printable ASCII characters")
                }
                None => bail!("national.soap.logins[{i}].{k} is required"),
            }
        };
        let certificate = match l.certificate {
            Some(c) if !c.is_empty() && c.len() <= 253 && c.bytes().all(|b| b.is_ascii_graphic()) => {
                if !client_ca {
                    bail!(
                        "national.soap.logins[{i}].certificate: needs national.tls.client_ca, the CA \
                         that issues the client certificates"
                    );
                }
                Some(c)
            }
            Some(c) => bail!(
                "national.soap.logins[{i}].certificate: '{c}' must be a DNS name of 1-253 printable ASCII \
                 characters"
            ),
            None => None,
        };
        let login = SecretLogin {
            client_login_id: key("client_login_id", l.client_login_id)?,
            user_id: key("user_id", l.user_id)?,
            client_id: key("client_id", l.client_id)?.into(),
            certificate,
        };
        if logins.iter().any(|o| o.client_login_id == login.client_login_id && o.user_id == login.user_id) {
            bail!(
                "national.soap.logins[{i}]: ClientLoginId '{}' with UserId '{}' is listed twice",
                login.client_login_id,
                login.user_id
            );
        }
        logins.push(login);
    }
    let require_certificate = r.require_certificate.unwrap_or(false);
    if require_certificate && !client_ca {
        bail!(
            "national.soap.require_certificate: needs national.tls.client_ca, the CA that issues the client \
             certificates"
        );
    }
    Ok(SecretLogins {
        enabled: r.enabled.unwrap_or(false),
        ttl: Duration::from_secs(secs),
        max_entries: entries,
        logins,
        require_certificate,
    })
}

/// Writes `[national.soap]` into its rendered table.
fn render_soap(table: &mut toml::Table, s: &SecretLogins) {
    let mut x = toml::Table::new();
    x.insert("enabled".into(), s.enabled.into());
    x.insert("login_cache_seconds".into(), (s.ttl.as_secs() as i64).into());
    x.insert("login_cache_entries".into(), (s.max_entries as i64).into());
    x.insert("require_certificate".into(), s.require_certificate.into());
    let logins: Vec<toml::Value> = s
        .logins
        .iter()
        .map(|l| {
            let mut t = toml::Table::new();
            t.insert("client_login_id".into(), l.client_login_id.clone().into());
            t.insert("user_id".into(), l.user_id.clone().into());
            t.insert("client_id".into(), l.client_id.to_string().into());
            if let Some(c) = &l.certificate {
                t.insert("certificate".into(), c.clone().into());
            }
            t.into()
        })
        .collect();
    if !logins.is_empty() {
        x.insert("logins".into(), logins.into());
    }
    table.insert("soap".into(), x.into());
}

/// How long a request waits for PostgreSQL to confirm its commit, unless configured.
pub const DEFAULT_COMMIT_TIMEOUT_MS: u64 = 10_000;

/// `[national.postgres]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPostgres {
    pub url: Option<String>,
    pub schema: Option<String>,
    pub pool: Option<usize>,
    pub commit_timeout_ms: Option<u64>,
}

/// `[national.tls]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
}

/// `[national.policy]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub undo_window_hours: Option<u64>,
    pub wholesaler_supply: Option<bool>,
    pub tolerated_repeats: Option<u8>,
}

/// `[national.hub]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawHub {
    pub url: Option<String>,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub intermarket_timeout_ms: Option<u64>,
}

/// `[national.limits]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_bulk_rows: Option<usize>,
    pub bulk_chunk: Option<usize>,
    pub drain_seconds: Option<u64>,
    pub ready_grace_ms: Option<u64>,
    pub client_rate_per_second: Option<u32>,
    pub client_burst: Option<u32>,
    pub max_in_flight: Option<usize>,
    pub max_connections: Option<usize>,
    pub max_connections_per_address: Option<usize>,
    pub header_read_timeout_ms: Option<u64>,
    pub idle_timeout_seconds: Option<u64>,
    pub body_min_bytes_per_second: Option<u64>,
    pub body_grace_ms: Option<u64>,
    pub login_concurrency: Option<usize>,
    pub login_queue: Option<usize>,
    pub login_failures_per_client: Option<u32>,
    pub login_failures_per_address: Option<u32>,
    pub login_failure_window_seconds: Option<u64>,
}

/// `[national.guessing]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawGuessing {
    pub window_seconds: Option<u64>,
    pub min_failures: Option<u32>,
    pub min_share_percent: Option<u8>,
    pub max_failures: Option<u32>,
    pub slow_interval_seconds: Option<u64>,
    pub refuse_after: Option<u32>,
    pub refuse_seconds: Option<u64>,
}

/// Validates `[national.guessing]`.
fn guessing(raw: Option<RawGuessing>) -> anyhow::Result<GuessingPolicy> {
    let g = raw.unwrap_or_default();
    let d = GuessingPolicy::default();
    let secs = |v: Option<u64>, d: Duration| v.map_or(d, Duration::from_secs);
    let policy = GuessingPolicy {
        window: secs(g.window_seconds, d.window),
        min_failures: g.min_failures.unwrap_or(d.min_failures),
        min_share_percent: g.min_share_percent.unwrap_or(d.min_share_percent),
        max_failures: g.max_failures.unwrap_or(d.max_failures),
        slow_interval: secs(g.slow_interval_seconds, d.slow_interval),
        refuse_after: g.refuse_after.unwrap_or(d.refuse_after),
        refusal: secs(g.refuse_seconds, d.refusal),
    };
    policy.check().map_err(|e| anyhow::anyhow!("national.guessing.{e}"))?;
    Ok(policy)
}

/// Writes `[national.guessing]` into its rendered table.
fn render_guessing(table: &mut toml::Table, g: &GuessingPolicy) {
    let mut x = toml::Table::new();
    x.insert("window_seconds".into(), (g.window.as_secs() as i64).into());
    x.insert("min_failures".into(), i64::from(g.min_failures).into());
    x.insert("min_share_percent".into(), i64::from(g.min_share_percent).into());
    x.insert("max_failures".into(), i64::from(g.max_failures).into());
    x.insert("slow_interval_seconds".into(), (g.slow_interval.as_secs() as i64).into());
    x.insert("refuse_after".into(), i64::from(g.refuse_after).into());
    x.insert("refuse_seconds".into(), (g.refusal.as_secs() as i64).into());
    table.insert("guessing".into(), x.into());
}

/// The limits of a server's connections, in `[national.limits]` and `[hub.limits]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnSettings {
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_min_rate: u64,
    pub body_grace: Duration,
}

impl ConnSettings {
    /// Validates the keys of `section` (such as `national.limits`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        section: &str,
        max_connections: Option<usize>,
        max_connections_per_address: Option<usize>,
        header_read_timeout_ms: Option<u64>,
        idle_timeout_seconds: Option<u64>,
        body_min_bytes_per_second: Option<u64>,
        body_grace_ms: Option<u64>,
    ) -> anyhow::Result<ConnSettings> {
        let d = openmvs_http::ServeOptions::default();
        let max_connections = max_connections.unwrap_or(d.max_connections);
        if max_connections == 0 || max_connections > 1_000_000 {
            bail!("{section}.max_connections: {max_connections} must be 1-1000000");
        }
        let per_address = max_connections_per_address.unwrap_or(d.max_connections_per_address);
        if per_address == 0 || per_address > 1_000_000 {
            bail!("{section}.max_connections_per_address: {per_address} must be 1-1000000");
        }
        let header = header_read_timeout_ms.unwrap_or(d.header_read_timeout.as_millis() as u64);
        if !(100..=300_000).contains(&header) {
            bail!("{section}.header_read_timeout_ms: {header} must be 100-300000");
        }
        let idle = idle_timeout_seconds.unwrap_or(d.idle_timeout.as_secs());
        if !(1..=3600).contains(&idle) {
            bail!("{section}.idle_timeout_seconds: {idle} must be 1-3600");
        }
        let grace = body_grace_ms.unwrap_or(d.body_grace.as_millis() as u64);
        if grace > 600_000 {
            bail!("{section}.body_grace_ms: {grace} must be 0-600000");
        }
        Ok(ConnSettings {
            max_connections,
            max_connections_per_address: per_address,
            header_read_timeout: Duration::from_millis(header),
            idle_timeout: Duration::from_secs(idle),
            body_min_rate: body_min_bytes_per_second.unwrap_or(d.body_min_rate),
            body_grace: Duration::from_millis(grace),
        })
    }

    /// The server's options, counting into `stats`.
    pub fn serve_options(
        &self,
        stats: std::sync::Arc<openmvs_http::server::ConnectionStats>,
    ) -> openmvs_http::ServeOptions {
        openmvs_http::ServeOptions {
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            body_min_rate: self.body_min_rate,
            body_grace: self.body_grace,
            max_connections: self.max_connections,
            max_connections_per_address: self.max_connections_per_address,
            stats,
        }
    }

    /// Adds the keys to a rendered `limits` table.
    pub fn render(&self, l: &mut toml::Table) {
        l.insert("max_connections".into(), (self.max_connections as i64).into());
        l.insert("max_connections_per_address".into(), (self.max_connections_per_address as i64).into());
        l.insert("header_read_timeout_ms".into(), (self.header_read_timeout.as_millis() as i64).into());
        l.insert("idle_timeout_seconds".into(), (self.idle_timeout.as_secs() as i64).into());
        l.insert("body_min_bytes_per_second".into(), (self.body_min_rate as i64).into());
        l.insert("body_grace_ms".into(), (self.body_grace.as_millis() as i64).into());
    }
}

/// `[national.health]` and `[hub.health]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub probe_ms: Option<u64>,
    pub disk_free_warn_mb: Option<u64>,
}

/// How a node finds out whether it can take traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthSettings {
    /// How often the store is probed with a write (and the free space measured).
    pub probe_every: Duration,
    /// Below this many free bytes in the data directory the node warns.
    pub disk_free_warn: u64,
}

/// Validates `[<section>.health]`.
pub fn health(section: &str, raw: Option<RawHealth>) -> anyhow::Result<HealthSettings> {
    let h = raw.unwrap_or_default();
    let probe_ms = h.probe_ms.unwrap_or(1000);
    if !(100..=60_000).contains(&probe_ms) {
        bail!("{section}.health.probe_ms: {probe_ms} must be 100-60000");
    }
    let warn_mb = h.disk_free_warn_mb.unwrap_or(openmvs_http::observe::DEFAULT_DISK_FREE_WARN >> 20);
    Ok(HealthSettings {
        probe_every: Duration::from_millis(probe_ms),
        disk_free_warn: warn_mb
            .checked_mul(1 << 20)
            .with_context(|| format!("{section}.health.disk_free_warn_mb: {warn_mb} is too large"))?,
    })
}

/// Writes `[<section>.health]` into its rendered table.
pub fn render_health(table: &mut toml::Table, h: &HealthSettings) {
    let mut x = toml::Table::new();
    x.insert("probe_ms".into(), (h.probe_every.as_millis() as i64).into());
    x.insert("disk_free_warn_mb".into(), ((h.disk_free_warn >> 20) as i64).into());
    table.insert("health".into(), x.into());
}

/// TLS files of the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// The hub link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HubSettings {
    pub url: String,
    pub ca: PathBuf,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub intermarket_timeout: Duration,
}

/// The validated settings of a national system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NationalSettings {
    pub market: MarketCode,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub storage: Storage,
    pub log: String,
    pub tls: Option<TlsFiles>,
    pub policy: Policy,
    pub hub: Option<HubSettings>,
    pub max_bulk_rows: usize,
    pub bulk_chunk: usize,
    pub drain: Duration,
    pub ready_grace: Duration,
    pub client_rate: u32,
    pub client_burst: u32,
    pub max_in_flight: usize,
    pub connections: ConnSettings,
    pub login: openmvs_http::login::LoginSettings,
    pub guessing: GuessingPolicy,
    pub health: HealthSettings,
    pub soap: SecretLogins,
}

/// Reads the file at `path` (if any), applies the environment, and returns the raw shape.
pub fn load_raw(path: Option<&Path>, env: impl Iterator<Item = (String, String)>) -> anyhow::Result<RawFile> {
    let mut table: toml::Table = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            text.parse().with_context(|| format!("parsing {}", p.display()))?
        }
        None => toml::Table::new(),
    };
    for (k, v) in env {
        let Some(rest) = k.strip_prefix("OPENMVS__") else { continue };
        let keys: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        set_path(&mut table, &keys, env_value(&v)).with_context(|| format!("environment variable {k}"))?;
    }
    let raw: RawFile = toml::Value::Table(table).try_into().context("invalid configuration")?;
    Ok(raw)
}

fn env_value(v: &str) -> toml::Value {
    if let Ok(i) = v.parse::<i64>() {
        toml::Value::Integer(i)
    } else if let Ok(b) = v.parse::<bool>() {
        toml::Value::Boolean(b)
    } else {
        toml::Value::String(v.to_owned())
    }
}

fn set_path(table: &mut toml::Table, keys: &[String], value: toml::Value) -> anyhow::Result<()> {
    match keys {
        [] => bail!("empty key"),
        [last] => {
            table.insert(last.clone(), value);
            Ok(())
        }
        [first, rest @ ..] => {
            let entry = table.entry(first.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let toml::Value::Table(t) = entry else { bail!("{first} is not a section") };
            set_path(t, rest, value)
        }
    }
}

pub(crate) fn resolve(base: &Path, p: PathBuf) -> PathBuf {
    if p.is_absolute() { p } else { base.join(p) }
}

/// Validates `<section>.storage` and `[<section>.postgres]`.
pub fn storage(
    section: &str,
    engine: Option<&str>,
    postgres: Option<RawPostgres>,
    default_schema: &str,
) -> anyhow::Result<Storage> {
    match engine {
        None | Some("sqlite") => {
            if postgres.is_some() {
                bail!("{section}.postgres: only used with storage = \"postgres\"");
            }
            Ok(Storage::Sqlite)
        }
        Some("postgres") => {
            let pg = postgres.unwrap_or_default();
            let url = pg
                .url
                .with_context(|| format!("{section}.postgres.url is required with storage = \"postgres\""))?;
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                bail!("{section}.postgres.url: '{}' must be a postgres:// URL", redact_url(&url));
            }
            let schema = pg.schema.unwrap_or_else(|| default_schema.to_owned());
            if !openmvs_store_pg::valid_schema(&schema) {
                bail!(
                    "{section}.postgres.schema: '{schema}' must be lower-case letters, digits and _ (not first)"
                );
            }
            let pool = pg.pool.unwrap_or(4);
            if pool == 0 || pool > 64 {
                bail!("{section}.postgres.pool: {pool} must be 1-64");
            }
            let commit_ms = pg.commit_timeout_ms.unwrap_or(DEFAULT_COMMIT_TIMEOUT_MS);
            if !(100..=600_000).contains(&commit_ms) {
                bail!("{section}.postgres.commit_timeout_ms: {commit_ms} must be 100-600000");
            }
            let commit_timeout = Duration::from_millis(commit_ms);
            Ok(Storage::Postgres { url, schema, pool, commit_timeout })
        }
        Some(other) => {
            bail!("{section}.storage: '{other}' is not an engine of this build (sqlite, postgres)")
        }
    }
}

/// Writes the storage of a section into its rendered table.
pub fn render_storage(table: &mut toml::Table, storage: &Storage) {
    match storage {
        Storage::Sqlite => {
            table.insert("storage".into(), "sqlite".into());
        }
        Storage::Postgres { url, schema, pool, commit_timeout } => {
            table.insert("storage".into(), "postgres".into());
            let mut x = toml::Table::new();
            x.insert("url".into(), redact_url(url).into());
            x.insert("schema".into(), schema.clone().into());
            x.insert("pool".into(), (*pool as i64).into());
            x.insert("commit_timeout_ms".into(), (commit_timeout.as_millis() as i64).into());
            table.insert("postgres".into(), x.into());
        }
    }
}

/// Validates `[national]`; relative paths are taken from `base` (the file's directory).
pub fn national(raw: &RawFile, base: &Path) -> anyhow::Result<NationalSettings> {
    let n = raw.national.clone().context("the configuration has no [national] section")?;
    let market = n.market.context("national.market is required (e.g. \"DE\")")?;
    let market = MarketCode::new(&market).map_err(|e| anyhow::anyhow!("national.market: {e}"))?;
    let listen = n.listen.unwrap_or_else(|| "127.0.0.1:8401".into());
    let listen: SocketAddr =
        listen.parse().with_context(|| format!("national.listen: '{listen}' is not host:port"))?;
    let data_dir =
        resolve(base, n.data_dir.unwrap_or_else(|| PathBuf::from("openmvs-data").join(market.as_str())));
    let default_schema = format!("openmvs_{}", market.as_str().to_ascii_lowercase());
    let storage = storage("national", n.storage.as_deref(), n.postgres.clone(), &default_schema)?;
    let tls = n
        .tls
        .map(|t| -> anyhow::Result<TlsFiles> {
            Ok(TlsFiles {
                cert: resolve(base, t.cert.context("national.tls.cert is required with [national.tls]")?),
                key: resolve(base, t.key.context("national.tls.key is required with [national.tls]")?),
                client_ca: t.client_ca.map(|p| resolve(base, p)),
            })
        })
        .transpose()?;
    let p = n.policy.unwrap_or_default();
    let defaults = Policy::default();
    let policy = Policy {
        undo_window: p.undo_window_hours.map_or(defaults.undo_window, |h| Duration::from_secs(h * 3600)),
        tolerated_repeats: p.tolerated_repeats.unwrap_or(defaults.tolerated_repeats),
        wholesaler_supply: p.wholesaler_supply.unwrap_or(defaults.wholesaler_supply),
    };
    let hub = n
        .hub
        .map(|h| -> anyhow::Result<HubSettings> {
            let url = h.url.context("national.hub.url is required with [national.hub]")?;
            if !url.starts_with("https://") {
                bail!("national.hub.url: '{url}' must be https://");
            }
            let timeout = h.intermarket_timeout_ms.unwrap_or(250);
            if timeout == 0 || timeout > 300 {
                bail!("national.hub.intermarket_timeout_ms: {timeout} must be 1-300 (the response budget)");
            }
            Ok(HubSettings {
                url,
                ca: resolve(base, h.ca.context("national.hub.ca is required with [national.hub]")?),
                cert: h.cert.map(|p| resolve(base, p)),
                key: h.key.map(|p| resolve(base, p)),
                intermarket_timeout: Duration::from_millis(timeout),
            })
        })
        .transpose()?;
    let l = n.limits.unwrap_or_default();
    let max_bulk_rows = l.max_bulk_rows.unwrap_or(openmvs_national::MAX_BULK_ROWS);
    if max_bulk_rows == 0 || max_bulk_rows > 1_000_000 {
        bail!("national.limits.max_bulk_rows: {max_bulk_rows} must be 1-1000000");
    }
    let bulk_chunk = l.bulk_chunk.unwrap_or(256);
    if bulk_chunk == 0 || bulk_chunk > 10_000 {
        bail!("national.limits.bulk_chunk: {bulk_chunk} must be 1-10000");
    }
    let soap = soap(n.soap, tls.as_ref().is_some_and(|t| t.client_ca.is_some()))?;
    Ok(NationalSettings {
        market,
        listen,
        data_dir,
        storage,
        log: n.log.unwrap_or_else(|| "info".into()),
        tls,
        policy,
        hub,
        max_bulk_rows,
        bulk_chunk,
        drain: Duration::from_secs(l.drain_seconds.unwrap_or(10)),
        ready_grace: Duration::from_millis(l.ready_grace_ms.unwrap_or(500)),
        client_rate: positive("national.limits.client_rate_per_second", l.client_rate_per_second, 100)?,
        client_burst: positive("national.limits.client_burst", l.client_burst, 200)?,
        max_in_flight: match l.max_in_flight.unwrap_or(openmvs_http::shed::DEFAULT_MAX_IN_FLIGHT) {
            0 => bail!("national.limits.max_in_flight: must be at least 1"),
            n => n,
        },
        connections: ConnSettings::new(
            "national.limits",
            l.max_connections,
            l.max_connections_per_address,
            l.header_read_timeout_ms,
            l.idle_timeout_seconds,
            l.body_min_bytes_per_second,
            l.body_grace_ms,
        )?,
        login: login_settings(&l)?,
        guessing: guessing(n.guessing)?,
        health: health("national", n.health)?,
        soap,
    })
}

fn login_settings(l: &RawLimits) -> anyhow::Result<openmvs_http::login::LoginSettings> {
    let d = openmvs_http::login::LoginSettings::default();
    let concurrency = l.login_concurrency.unwrap_or(d.concurrency);
    if concurrency == 0 || concurrency > 256 {
        bail!("national.limits.login_concurrency: {concurrency} must be 1-256");
    }
    let queue = l.login_queue.unwrap_or(d.queue);
    if queue > 100_000 {
        bail!("national.limits.login_queue: {queue} must be 0-100000");
    }
    let window = l.login_failure_window_seconds.unwrap_or(d.failure_window.as_secs());
    if !(1..=86_400).contains(&window) {
        bail!("national.limits.login_failure_window_seconds: {window} must be 1-86400");
    }
    Ok(openmvs_http::login::LoginSettings {
        concurrency,
        queue,
        failures_per_client: positive(
            "national.limits.login_failures_per_client",
            l.login_failures_per_client,
            d.failures_per_client,
        )?,
        failures_per_address: positive(
            "national.limits.login_failures_per_address",
            l.login_failures_per_address,
            d.failures_per_address,
        )?,
        failure_window: Duration::from_secs(window),
    })
}

fn positive(key: &str, v: Option<u32>, default: u32) -> anyhow::Result<u32> {
    match v.unwrap_or(default) {
        0 => bail!("{key}: must be at least 1"),
        n => Ok(n),
    }
}

/// The effective settings as TOML, for `openmvs config check` (the files hold no secrets
/// themselves: keys are named by path, never inlined).
pub fn render(s: &NationalSettings) -> String {
    let mut t = toml::Table::new();
    let mut n = toml::Table::new();
    n.insert("market".into(), s.market.to_string().into());
    n.insert("listen".into(), s.listen.to_string().into());
    n.insert("data_dir".into(), s.data_dir.display().to_string().into());
    render_storage(&mut n, &s.storage);
    n.insert("log".into(), s.log.clone().into());
    if let Some(tls) = &s.tls {
        let mut x = toml::Table::new();
        x.insert("cert".into(), tls.cert.display().to_string().into());
        x.insert("key".into(), tls.key.display().to_string().into());
        if let Some(ca) = &tls.client_ca {
            x.insert("client_ca".into(), ca.display().to_string().into());
        }
        n.insert("tls".into(), x.into());
    }
    let mut p = toml::Table::new();
    p.insert("undo_window_hours".into(), ((s.policy.undo_window.as_secs() / 3600) as i64).into());
    p.insert("wholesaler_supply".into(), s.policy.wholesaler_supply.into());
    p.insert("tolerated_repeats".into(), i64::from(s.policy.tolerated_repeats).into());
    n.insert("policy".into(), p.into());
    if let Some(h) = &s.hub {
        let mut x = toml::Table::new();
        x.insert("url".into(), h.url.clone().into());
        x.insert("ca".into(), h.ca.display().to_string().into());
        if let Some(c) = &h.cert {
            x.insert("cert".into(), c.display().to_string().into());
        }
        if let Some(k) = &h.key {
            x.insert("key".into(), k.display().to_string().into());
        }
        x.insert("intermarket_timeout_ms".into(), (h.intermarket_timeout.as_millis() as i64).into());
        n.insert("hub".into(), x.into());
    }
    let mut l = toml::Table::new();
    l.insert("max_bulk_rows".into(), (s.max_bulk_rows as i64).into());
    l.insert("bulk_chunk".into(), (s.bulk_chunk as i64).into());
    l.insert("drain_seconds".into(), (s.drain.as_secs() as i64).into());
    l.insert("ready_grace_ms".into(), (s.ready_grace.as_millis() as i64).into());
    l.insert("client_rate_per_second".into(), i64::from(s.client_rate).into());
    l.insert("client_burst".into(), i64::from(s.client_burst).into());
    l.insert("max_in_flight".into(), (s.max_in_flight as i64).into());
    s.connections.render(&mut l);
    l.insert("login_concurrency".into(), (s.login.concurrency as i64).into());
    l.insert("login_queue".into(), (s.login.queue as i64).into());
    l.insert("login_failures_per_client".into(), i64::from(s.login.failures_per_client).into());
    l.insert("login_failures_per_address".into(), i64::from(s.login.failures_per_address).into());
    l.insert("login_failure_window_seconds".into(), (s.login.failure_window.as_secs() as i64).into());
    n.insert("limits".into(), l.into());
    render_guessing(&mut n, &s.guessing);
    render_health(&mut n, &s.health);
    render_soap(&mut n, &s.soap);
    t.insert("national".into(), n.into());
    toml::to_string(&t).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, env: &[(&str, &str)]) -> anyhow::Result<NationalSettings> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("openmvs-config-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let file = dir.join("national.toml");
        std::fs::write(&file, text)?;
        let raw = load_raw(Some(&file), env.iter().map(|(k, v)| (k.to_string(), v.to_string())))?;
        national(&raw, &dir)
    }

    #[test]
    fn a_minimal_file_gets_every_default() {
        let s = load("[national]\nmarket = \"DE\"\n", &[]).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8401");
        assert!(s.data_dir.ends_with("openmvs-data/DE"));
        assert_eq!(s.policy, Policy::default());
        assert!(s.tls.is_none() && s.hub.is_none());
        assert_eq!(s.health, HealthSettings { probe_every: Duration::from_secs(1), disk_free_warn: 1 << 30 });
        assert_eq!(s.guessing, GuessingPolicy::default());
    }

    #[test]
    fn the_guessing_limits_are_read_and_checked() {
        let s = load(
            "[national]\nmarket = \"DE\"\n[national.guessing]\nmin_failures = 5\nrefuse_seconds = 600\n",
            &[("OPENMVS__NATIONAL__GUESSING__WINDOW_SECONDS", "300")],
        )
        .unwrap();
        let d = GuessingPolicy::default();
        assert_eq!(
            s.guessing,
            GuessingPolicy {
                window: Duration::from_secs(300),
                min_failures: 5,
                refusal: Duration::from_secs(600),
                ..d
            }
        );
    }

    #[test]
    fn the_soap_services_are_off_unless_turned_on_and_take_configured_logins() {
        let s = load("[national]\nmarket = \"DE\"\n", &[]).unwrap();
        assert_eq!(s.soap, SecretLogins::default());
        assert!(!s.soap.enabled);
        let s = load(
            "[national]\nmarket = \"DE\"\n[national.soap]\nlogin_cache_seconds = 60\n\
             [[national.soap.logins]]\nclient_login_id = \"DE-PH-0001\"\nuser_id = \"till1\"\nclient_id = \"cl_1\"\n",
            &[("OPENMVS__NATIONAL__SOAP__ENABLED", "true")],
        )
        .unwrap();
        assert!(s.soap.enabled);
        assert_eq!(s.soap.ttl, Duration::from_secs(60));
        assert_eq!(
            s.soap.logins,
            [SecretLogin {
                client_login_id: "DE-PH-0001".into(),
                user_id: "till1".into(),
                client_id: "cl_1".into(),
                certificate: None,
            }]
        );
        let twice = "[national]\nmarket = \"DE\"\n[[national.soap.logins]]\nclient_login_id = \"A\"\nuser_id = \"u\"\n\
                     client_id = \"c1\"\n[[national.soap.logins]]\nclient_login_id = \"A\"\nuser_id = \"u\"\nclient_id = \"c2\"\n";
        let e = format!("{:#}", load(twice, &[]).unwrap_err());
        assert!(e.contains("national.soap.logins[1]") && e.contains("twice"), "{e}");
        let e = format!(
            "{:#}",
            load("[national]\nmarket = \"DE\"\n[national.soap]\nlogin_cache_seconds = 0\n", &[]).unwrap_err()
        );
        assert!(e.contains("national.soap.login_cache_seconds: 0 must be 1-3600"), "{e}");
        let e = format!(
            "{:#}",
            load(
                "[national]\nmarket = \"DE\"\n[[national.soap.logins]]\nuser_id = \"u\"\nclient_id = \"c\"\n",
                &[]
            )
            .unwrap_err()
        );
        assert!(e.contains("national.soap.logins[0].client_login_id is required"), "{e}");
    }

    #[test]
    fn a_soap_login_may_need_a_client_certificate_of_the_ca_the_tls_section_names() {
        const TLS: &str = "[national.tls]\ncert = \"n.pem\"\nkey = \"n.key\"\nclient_ca = \"ca.pem\"\n";
        let login = |certificate: &str| {
            format!(
                "[[national.soap.logins]]\nclient_login_id = \"DE-PH-0001\"\nuser_id = \"till1\"\n\
                 client_id = \"cl_1\"\ncertificate = \"{certificate}\"\n"
            )
        };
        let text = format!("[national]\nmarket = \"DE\"\n{TLS}{}", login("till1.de-ph-0001.example"));
        let s = load(&text, &[]).unwrap();
        assert_eq!(s.soap.logins[0].certificate.as_deref(), Some("till1.de-ph-0001.example"));
        assert!(!s.soap.require_certificate);
        let shown = render(&s);
        assert!(shown.contains("certificate = \"till1.de-ph-0001.example\""), "{shown}");
        assert!(shown.contains("require_certificate = false"), "{shown}");
        let longest = "a".repeat(253);
        let s = load(&format!("[national]\nmarket = \"DE\"\n{TLS}{}", login(&longest)), &[]).unwrap();
        assert_eq!(s.soap.logins[0].certificate.as_deref(), Some(longest.as_str()));
        let s = load(
            &format!("[national]\nmarket = \"DE\"\n[national.soap]\nrequire_certificate = true\n{TLS}"),
            &[],
        )
        .unwrap();
        assert!(s.soap.require_certificate);
        assert!(render(&s).contains("require_certificate = true"));

        let bad_name = "must be a DNS name of 1-253 printable ASCII characters";
        let cases = [
            (format!("{TLS}{}", login("")), bad_name.to_owned()),
            (format!("{TLS}{}", login(&"a".repeat(254))), bad_name.to_owned()),
            (format!("{TLS}{}", login("till 1.example")), bad_name.to_owned()),
            (format!("{TLS}{}", login("tïll1.example")), bad_name.to_owned()),
            (
                login("till1.example"),
                "national.soap.logins[0].certificate: needs national.tls.client_ca".to_owned(),
            ),
            (
                format!("[national.tls]\ncert = \"n.pem\"\nkey = \"n.key\"\n{}", login("till1.example")),
                "national.soap.logins[0].certificate: needs national.tls.client_ca".to_owned(),
            ),
            (
                "[national.soap]\nrequire_certificate = true\n".to_owned(),
                "national.soap.require_certificate: needs national.tls.client_ca".to_owned(),
            ),
        ];
        for (rest, needle) in cases {
            let text = format!("[national]\nmarket = \"DE\"\n{rest}");
            let e = format!("{:#}", load(&text, &[]).unwrap_err());
            assert!(e.contains(&needle), "{text}: {e}");
        }
        let e = format!(
            "{:#}",
            load(&format!("[national]\nmarket = \"DE\"\n{TLS}{}", login("")), &[]).unwrap_err()
        );
        assert!(e.contains("national.soap.logins[0].certificate: '' must be"), "{e}");
    }

    #[test]
    fn postgres_storage_takes_its_url_and_a_schema_per_market() {
        let s = load(
            "[national]\nmarket = \"DE\"\nstorage = \"postgres\"\n",
            &[("OPENMVS__NATIONAL__POSTGRES__URL", "postgres://app:s3cret@db:5432/mvs")],
        )
        .unwrap();
        assert_eq!(
            s.storage,
            Storage::Postgres {
                url: "postgres://app:s3cret@db:5432/mvs".into(),
                schema: "openmvs_de".into(),
                pool: 4,
                commit_timeout: Duration::from_millis(DEFAULT_COMMIT_TIMEOUT_MS),
            }
        );
        let text = render(&s);
        assert!(text.contains("postgres://app:***@db:5432/mvs") && !text.contains("s3cret"), "{text}");
    }

    #[test]
    fn environment_variables_override_the_file() {
        let s = load(
            "[national]\nmarket = \"DE\"\n[national.policy]\nwholesaler_supply = false\n",
            &[
                ("OPENMVS__NATIONAL__POLICY__WHOLESALER_SUPPLY", "true"),
                ("OPENMVS__NATIONAL__LISTEN", "0.0.0.0:9000"),
            ],
        )
        .unwrap();
        assert!(s.policy.wholesaler_supply);
        assert_eq!(s.listen.to_string(), "0.0.0.0:9000");
    }

    #[test]
    fn mistakes_name_the_key_and_the_rule() {
        let cases = [
            ("[national]\n", "national.market is required"),
            ("[national]\nmarket = \"XX\"\n", "national.market"),
            ("[national]\nmarket = \"DE\"\nlisten = \"nowhere\"\n", "national.listen"),
            ("[national]\nmarket = \"DE\"\nstorage = \"redis\"\n", "national.storage"),
            ("[national]\nmarket = \"DE\"\nstorage = \"postgres\"\n", "national.postgres.url is required"),
            (
                "[national]\nmarket = \"DE\"\nstorage = \"postgres\"\n[national.postgres]\nurl = \"mysql://x\"\n",
                "national.postgres.url",
            ),
            (
                "[national]\nmarket = \"DE\"\nstorage = \"postgres\"\n[national.postgres]\nurl = \"postgres://h/d\"\nschema = \"De-1\"\n",
                "national.postgres.schema",
            ),
            (
                "[national]\nmarket = \"DE\"\n[national.postgres]\nurl = \"postgres://h/d\"\n",
                "only used with",
            ),
            (
                "[national]\nmarket = \"DE\"\nstorage = \"postgres\"\n[national.postgres]\nurl = \"postgres://h/d\"\ncommit_timeout_ms = 5\n",
                "national.postgres.commit_timeout_ms: 5 must be 100-600000",
            ),
            ("[national]\nmarket = \"DE\"\nmarkte = \"DE\"\n", "unknown field `markte`"),
            ("[national]\nmarket = \"DE\"\n[national.health]\nprobe_ms = 5\n", "national.health.probe_ms"),
            (
                "[national]\nmarket = \"DE\"\n[national.guessing]\nmin_share_percent = 150\n",
                "national.guessing.min_share_percent: 150 must be 0-100",
            ),
            (
                "[national]\nmarket = \"DE\"\n[national.guessing]\nmin_failures = 50\nmax_failures = 10\n",
                "national.guessing.max_failures",
            ),
            (
                "[national]\nmarket = \"DE\"\n[national.hub]\nurl = \"http://x\"\nca = \"c\"\n",
                "must be https",
            ),
            (
                "[national]\nmarket = \"DE\"\n[national.hub]\nurl = \"https://x\"\nca = \"c\"\nintermarket_timeout_ms = 900\n",
                "1-300",
            ),
        ];
        for (text, needle) in cases {
            let e = format!("{:#}", load(text, &[]).unwrap_err());
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn the_rendered_configuration_reads_back_the_same() {
        let s =
            load("[national]\nmarket = \"FR\"\n[national.policy]\nundo_window_hours = 48\n[national.guessing]\nmin_failures = 7\n\
                  [national.tls]\ncert = \"n.pem\"\nkey = \"n.key\"\nclient_ca = \"ca.pem\"\n\
                  [national.soap]\nenabled = true\nrequire_certificate = true\n[[national.soap.logins]]\nclient_login_id = \"FR-PH-1\"\nuser_id = \"till1\"\nclient_id = \"cl_x\"\n\
                  certificate = \"till1.fr-ph-1.example\"\n[[national.soap.logins]]\nclient_login_id = \"FR-PH-2\"\nuser_id = \"till1\"\nclient_id = \"cl_y\"\n", &[]).unwrap();
        let dir = std::env::temp_dir().join(format!("openmvs-config-rt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        std::fs::write(&f, render(&s)).unwrap();
        let again = national(&load_raw(Some(&f), std::iter::empty()).unwrap(), &dir).unwrap();
        assert_eq!(again, s);
    }
}
