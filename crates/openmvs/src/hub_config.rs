//! The `[hub]` section of a configuration file, for `openmvs serve hub`: read raw with the rest
//! of the file (and `OPENMVS__HUB__...` environment variables on top), validated into typed
//! settings with every default filled in.
//!
//! ```toml
//! [hub]
//! listen = "127.0.0.1:8400"        # default 127.0.0.1:8400
//! data_dir = "openmvs-data/hub"    # default ./openmvs-data/hub; relative to this file
//! storage = "sqlite"               # the embedded store (default), or "postgres"
//! log = "info"                     # tracing filter, default "info"
//! ca_dir = "ca"                    # required: the hub's CA directory; its ca.pem is the CA of
//!                                  # OBP client certificates and national server certificates,
//!                                  # its crl.pem the revocations (re-read while running)
//! crl_reload_seconds = 5           # how often crl.pem is checked for a change
//! callback_ca = "obp-roots.pem"    # the CA certificates (PEM bundle) trusted for the OBPs'
//!                                  # callback endpoints; default: the hub's ca.pem. No public
//!                                  # web PKI roots are built in.
//!
//! [hub.postgres]                   # with storage = "postgres"
//! url = "postgres://openmvs@db.example:5432/openmvs"
//! schema = "openmvs_hub"           # the default; apply with `openmvs migrate --config`
//! pool = 4
//!
//! [hub.tls]                        # required: OBPs are identified by client certificates
//! cert = "hub-server.pem"          # the server's certificate chain, PEM
//! key = "hub-server.key"           # its PKCS#8 key, PEM
//!
//! [hub.identity]                   # required: the hub's client certificate (hub.openmvs) and key,
//! cert = "hub.pem"                 # presented to the national systems
//! key = "hub.key"
//!
//! [hub.markets]                    # the national system of each market
//! DE = "https://127.0.0.1:8401"
//! FR = "https://127.0.0.1:8402"
//!
//! [hub.limits]
//! delivery_timeout_seconds = 30    # one delivery to a market, before it is retried
//! drain_seconds = 10               # how long in-flight requests may finish at shutdown
//! ready_grace_ms = 500             # readiness is false this long before the listener stops
//! max_connections = 10000          # connection limits, as for a national system
//! max_connections_per_address = 1000
//! header_read_timeout_ms = 10000   # (see crates/openmvs/src/config.rs)
//! idle_timeout_seconds = 60
//! body_min_bytes_per_second = 1024
//! body_grace_ms = 10000
//!
//! [hub.health]
//! probe_ms = 1000                  # a probe write through the store this often: /health/ready is
//!                                  # false while the store cannot commit, true again once it can
//! disk_free_warn_mb = 1024         # below this much free space in data_dir: a warning in the log
//!                                  # (once per crossing) and openmvs_disk_low 1 in /metrics
//! ```
//!
//! The hub keeps the key of its serial digests in `data_dir/serial.key` (created at the first
//! start, mode 0600). It must never change once serials are uploaded: keep it with the database.
//! Overrides: `OPENMVS__HUB__LISTEN=0.0.0.0:8400`, `OPENMVS__HUB__MARKETS__DE=https://...`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use openmvs_core::ids::MarketCode;
use serde::{Deserialize, Serialize};

use crate::config::{RawFile, Storage, resolve, storage};

/// `[hub]`, as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawHubSection {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub storage: Option<String>,
    pub postgres: Option<crate::config::RawPostgres>,
    pub log: Option<String>,
    pub ca_dir: Option<PathBuf>,
    pub crl_reload_seconds: Option<u64>,
    pub callback_ca: Option<PathBuf>,
    pub tls: Option<RawPair>,
    pub identity: Option<RawPair>,
    pub markets: Option<BTreeMap<String, String>>,
    pub limits: Option<RawHubLimits>,
    pub health: Option<crate::config::RawHealth>,
}

/// A certificate and its key, as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPair {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// `[hub.limits]`, as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawHubLimits {
    pub delivery_timeout_seconds: Option<u64>,
    pub drain_seconds: Option<u64>,
    pub ready_grace_ms: Option<u64>,
    pub max_connections: Option<usize>,
    pub max_connections_per_address: Option<usize>,
    pub header_read_timeout_ms: Option<u64>,
    pub idle_timeout_seconds: Option<u64>,
    pub body_min_bytes_per_second: Option<u64>,
    pub body_grace_ms: Option<u64>,
}

/// A certificate and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The validated settings of the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubSettings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub storage: Storage,
    pub log: String,
    pub ca_dir: PathBuf,
    pub crl_reload: Duration,
    pub callback_ca: PathBuf,
    pub tls: Pair,
    pub identity: Pair,
    pub markets: BTreeMap<MarketCode, String>,
    pub delivery_timeout: Duration,
    pub drain: Duration,
    pub ready_grace: Duration,
    pub connections: crate::config::ConnSettings,
    pub health: crate::config::HealthSettings,
}

fn pair(section: &str, raw: Option<RawPair>, base: &Path) -> anyhow::Result<Pair> {
    let p = raw.with_context(|| format!("[hub.{section}] is required (cert and key)"))?;
    Ok(Pair {
        cert: resolve(base, p.cert.with_context(|| format!("hub.{section}.cert is required"))?),
        key: resolve(base, p.key.with_context(|| format!("hub.{section}.key is required"))?),
    })
}

/// Validates `[hub]`; relative paths are taken from `base` (the file's directory).
pub fn hub(raw: &RawFile, base: &Path) -> anyhow::Result<HubSettings> {
    let h = raw.hub.clone().context("the configuration has no [hub] section")?;
    let listen = h.listen.unwrap_or_else(|| "127.0.0.1:8400".into());
    let listen: SocketAddr =
        listen.parse().with_context(|| format!("hub.listen: '{listen}' is not host:port"))?;
    let storage = storage("hub", h.storage.as_deref(), h.postgres.clone(), "openmvs_hub")?;
    let mut markets = BTreeMap::new();
    for (k, url) in h.markets.unwrap_or_default() {
        // Environment overrides arrive with lower-case keys; market codes are upper case.
        let m =
            MarketCode::new(&k.to_ascii_uppercase()).map_err(|e| anyhow::anyhow!("hub.markets.{k}: {e}"))?;
        if !url.starts_with("https://") {
            bail!("hub.markets.{k}: '{url}' must be https://");
        }
        markets.insert(m, url);
    }
    let l = h.limits.unwrap_or_default();
    let delivery = l.delivery_timeout_seconds.unwrap_or(30);
    if delivery == 0 || delivery > 600 {
        bail!("hub.limits.delivery_timeout_seconds: {delivery} must be 1-600");
    }
    let crl = h.crl_reload_seconds.unwrap_or(5);
    if crl == 0 || crl > 3600 {
        bail!("hub.crl_reload_seconds: {crl} must be 1-3600");
    }
    let ca_dir = resolve(base, h.ca_dir.context("hub.ca_dir is required (the hub's CA directory)")?);
    let callback_ca = match h.callback_ca {
        Some(p) => resolve(base, p),
        None => ca_dir.join(openmvs_pki::CA_CERT_FILE),
    };
    Ok(HubSettings {
        listen,
        data_dir: resolve(base, h.data_dir.unwrap_or_else(|| PathBuf::from("openmvs-data").join("hub"))),
        storage,
        log: h.log.unwrap_or_else(|| "info".into()),
        ca_dir,
        crl_reload: Duration::from_secs(crl),
        callback_ca,
        tls: pair("tls", h.tls, base)?,
        identity: pair("identity", h.identity, base)?,
        markets,
        delivery_timeout: Duration::from_secs(delivery),
        drain: Duration::from_secs(l.drain_seconds.unwrap_or(10)),
        ready_grace: Duration::from_millis(l.ready_grace_ms.unwrap_or(500)),
        connections: crate::config::ConnSettings::new(
            "hub.limits",
            l.max_connections,
            l.max_connections_per_address,
            l.header_read_timeout_ms,
            l.idle_timeout_seconds,
            l.body_min_bytes_per_second,
            l.body_grace_ms,
        )?,
        health: crate::config::health("hub", h.health)?,
    })
}

/// The effective settings as TOML, for `openmvs config check`. Keys are named by path only.
pub fn render(s: &HubSettings) -> String {
    let path = |p: &Path| toml::Value::from(p.display().to_string());
    let pair = |p: &Pair| {
        let mut t = toml::Table::new();
        t.insert("cert".into(), path(&p.cert));
        t.insert("key".into(), path(&p.key));
        toml::Value::from(t)
    };
    let mut h = toml::Table::new();
    h.insert("listen".into(), s.listen.to_string().into());
    h.insert("data_dir".into(), path(&s.data_dir));
    crate::config::render_storage(&mut h, &s.storage);
    h.insert("log".into(), s.log.clone().into());
    h.insert("ca_dir".into(), path(&s.ca_dir));
    h.insert("crl_reload_seconds".into(), (s.crl_reload.as_secs() as i64).into());
    h.insert("callback_ca".into(), path(&s.callback_ca));
    h.insert("tls".into(), pair(&s.tls));
    h.insert("identity".into(), pair(&s.identity));
    let markets: toml::Table =
        s.markets.iter().map(|(m, u)| (m.to_string(), toml::Value::from(u.clone()))).collect();
    h.insert("markets".into(), markets.into());
    let mut l = toml::Table::new();
    l.insert("delivery_timeout_seconds".into(), (s.delivery_timeout.as_secs() as i64).into());
    l.insert("drain_seconds".into(), (s.drain.as_secs() as i64).into());
    l.insert("ready_grace_ms".into(), (s.ready_grace.as_millis() as i64).into());
    s.connections.render(&mut l);
    h.insert("limits".into(), l.into());
    crate::config::render_health(&mut h, &s.health);
    let mut t = toml::Table::new();
    t.insert("hub".into(), h.into());
    toml::to_string(&t).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_raw;

    const MINIMAL: &str = "[hub]\nca_dir = \"ca\"\n[hub.tls]\ncert = \"s.pem\"\nkey = \"s.key\"\n\
                           [hub.identity]\ncert = \"h.pem\"\nkey = \"h.key\"\n[hub.markets]\nDE = \"https://127.0.0.1:8401\"\n";

    fn load(text: &str, env: &[(&str, &str)]) -> anyhow::Result<HubSettings> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("openmvs-hub-config-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let file = dir.join("hub.toml");
        std::fs::write(&file, text)?;
        let raw = load_raw(Some(&file), env.iter().map(|(k, v)| (k.to_string(), v.to_string())))?;
        hub(&raw, &dir)
    }

    #[test]
    fn a_minimal_hub_file_gets_every_default_and_env_adds_a_market() {
        let s = load(MINIMAL, &[("OPENMVS__HUB__MARKETS__FR", "https://127.0.0.1:8402")]).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8400");
        assert!(s.data_dir.ends_with("openmvs-data/hub"));
        let markets: Vec<&str> = s.markets.keys().map(MarketCode::as_str).collect();
        assert_eq!(markets, ["DE", "FR"]);
        assert_eq!(s.crl_reload, Duration::from_secs(5));
    }

    #[test]
    fn hub_mistakes_name_the_key_and_the_rule() {
        let cases = [
            ("[hub]\n", "hub.ca_dir is required"),
            ("[hub]\nca_dir = \"ca\"\n", "[hub.tls] is required"),
            (&MINIMAL.replace("https://127.0.0.1:8401", "http://x"), "must be https"),
            (&MINIMAL.replace("DE =", "XX ="), "hub.markets.XX"),
            (&format!("{MINIMAL}[hub.limits]\ndelivery_timeout_seconds = 0\n"), "1-600"),
        ];
        for (text, needle) in cases {
            let e = format!("{:#}", load(text, &[]).unwrap_err());
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn the_rendered_hub_configuration_reads_back_the_same() {
        let s = load(MINIMAL, &[]).unwrap();
        let dir = std::env::temp_dir().join(format!("openmvs-hub-config-rt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        std::fs::write(&f, render(&s)).unwrap();
        let again = hub(&load_raw(Some(&f), std::iter::empty()).unwrap(), &dir).unwrap();
        assert_eq!(again, s);
    }
}
