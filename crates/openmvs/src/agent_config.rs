//! The `[agent]` section of a configuration file, for `openmvs agent`: the offline agent a
//! pharmacy runs beside its software (DR Art 29). Read raw with the rest of the file (and
//! `OPENMVS__AGENT__...` environment variables on top), validated into typed settings with every
//! default filled in.
//!
//! ```toml
//! [agent]
//! listen = "127.0.0.1:8480"        # default 127.0.0.1:8480; a loopback address only
//! data_dir = "openmvs-agent"       # default ./openmvs-agent; relative to this file: the queue
//!                                  # (agent.db), which must survive restarts and power cuts
//! log = "info"                     # tracing filter, default "info"
//! national_url = "https://127.0.0.1:8401" # required: the pharmacy's national system
//! ca = "ca.pem"                    # the CA of its certificate (required for https://)
//! client_id = "cl_..."             # required: the pharmacy's client at the national system;
//! client_secret = "..."            # the pharmacy software logs in to the agent with the same
//!                                  # (OPENMVS__AGENT__CLIENT_SECRET keeps it out of the file)
//! timeout_ms = 3000                # a forwarded request without an answer this long is recorded
//! retry_seconds = 5                # first wait after the national system did not answer; it
//! retry_max_seconds = 300          # doubles at each further failure, up to this
//! rate_per_second = 5              # the replay's pace, on average ...
//! burst = 10                       # ... and at once after a pause
//! concurrency = 4                  # packs replayed at the same time (each pack in order)
//! token_ttl_seconds = 3600         # tokens the agent issues to the pharmacy software
//! ```
//!
//! The replay's pace is set for a market coming back from an outage: a pharmacy records a few
//! hundred operations in a day without its national system, so at 5 per second its backlog is
//! sent within minutes, while 10,000 pharmacies replaying at once ask for 50,000 requests a
//! second at most, and less as each is told to wait: every 429 or 503 stops the replay for its
//! `Retry-After`, and an unanswered attempt for the backoff, which doubles and carries a share of
//! `retry_seconds` fixed per client id, so that the pharmacies of a market do not retry in step.
//! A verify takes about a millisecond at a national system, so 3 seconds without an answer means
//! the system is down or overloaded, and the pharmacist is not kept waiting longer than that.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use openmvs_agent::AgentConfig;
use serde::{Deserialize, Serialize};

use crate::config::{RawFile, resolve};

/// `[agent]`, as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgentSection {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub log: Option<String>,
    pub national_url: Option<String>,
    pub ca: Option<PathBuf>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub timeout_ms: Option<u64>,
    pub retry_seconds: Option<u64>,
    pub retry_max_seconds: Option<u64>,
    pub rate_per_second: Option<f64>,
    pub burst: Option<u32>,
    pub concurrency: Option<usize>,
    pub token_ttl_seconds: Option<u64>,
}

/// The validated settings of an agent.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSettings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub log: String,
    pub ca: Option<PathBuf>,
    pub agent: AgentConfig,
}

fn within<T: PartialOrd + std::fmt::Display + Copy>(key: &str, v: T, lo: T, hi: T) -> anyhow::Result<T> {
    if v < lo || v > hi {
        bail!("agent.{key}: {v} must be {lo}-{hi}");
    }
    Ok(v)
}

/// Validates `[agent]`; relative paths are taken from `base` (the file's directory).
pub fn agent(raw: &RawFile, base: &Path) -> anyhow::Result<AgentSettings> {
    let a = raw.agent.clone().context("the configuration has no [agent] section")?;
    let listen = a.listen.unwrap_or_else(|| "127.0.0.1:8480".into());
    let listen: SocketAddr =
        listen.parse().with_context(|| format!("agent.listen: '{listen}' is not host:port"))?;
    if !listen.ip().is_loopback() {
        bail!(
            "agent.listen: {listen} is not a loopback address: the agent speaks plain HTTP and holds the pharmacy's credentials, so it listens on this machine only (127.0.0.1)"
        );
    }
    let url = a.national_url.context("agent.national_url is required (the pharmacy's national system)")?;
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        bail!(
            "agent.national_url: '{url}' must start with https:// (or http:// for a system on this machine)"
        );
    }
    let ca = a.ca.map(|p| resolve(base, p));
    if url.starts_with("https://") && ca.is_none() {
        bail!(
            "agent.ca is required with an https:// national_url: the CA of the national system's certificate"
        );
    }
    let client_id = a.client_id.filter(|s| !s.is_empty()).context("agent.client_id is required")?;
    let client_secret = a
        .client_secret
        .filter(|s| !s.is_empty())
        .context("agent.client_secret is required (or OPENMVS__AGENT__CLIENT_SECRET)")?;
    let mut config = AgentConfig::new(&url, &client_id, &client_secret);
    config.timeout = Duration::from_millis(within("timeout_ms", a.timeout_ms.unwrap_or(3000), 100, 60_000)?);
    config.retry = Duration::from_secs(within("retry_seconds", a.retry_seconds.unwrap_or(5), 1, 3600)?);
    let retry_max = within("retry_max_seconds", a.retry_max_seconds.unwrap_or(300), 1, 86_400)?;
    if retry_max < config.retry.as_secs() {
        bail!("agent.retry_max_seconds: {retry_max} is less than retry_seconds ({})", config.retry.as_secs());
    }
    config.retry_max = Duration::from_secs(retry_max);
    let rate = a.rate_per_second.unwrap_or(5.0);
    if !(rate.is_finite() && (0.01..=10_000.0).contains(&rate)) {
        bail!("agent.rate_per_second: {rate} must be 0.01-10000");
    }
    config.rate_per_second = rate;
    config.burst = within("burst", a.burst.unwrap_or(10), 1, 10_000)?;
    config.concurrency = within("concurrency", a.concurrency.unwrap_or(4), 1, 256)?;
    config.token_ttl =
        Duration::from_secs(within("token_ttl_seconds", a.token_ttl_seconds.unwrap_or(3600), 60, 86_400)?);
    Ok(AgentSettings {
        listen,
        data_dir: resolve(base, a.data_dir.unwrap_or_else(|| PathBuf::from("openmvs-agent"))),
        log: a.log.unwrap_or_else(|| "info".into()),
        ca,
        agent: config,
    })
}

/// The effective settings as TOML, for `openmvs config check`; the secret is not printed.
pub fn render(s: &AgentSettings) -> String {
    let c = &s.agent;
    let mut a = toml::Table::new();
    a.insert("listen".into(), s.listen.to_string().into());
    a.insert("data_dir".into(), s.data_dir.display().to_string().into());
    a.insert("log".into(), s.log.clone().into());
    a.insert("national_url".into(), c.national_url.clone().into());
    if let Some(ca) = &s.ca {
        a.insert("ca".into(), ca.display().to_string().into());
    }
    a.insert("client_id".into(), c.client_id.clone().into());
    a.insert("client_secret".into(), "<redacted>".into());
    a.insert("timeout_ms".into(), (c.timeout.as_millis() as i64).into());
    a.insert("retry_seconds".into(), (c.retry.as_secs() as i64).into());
    a.insert("retry_max_seconds".into(), (c.retry_max.as_secs() as i64).into());
    a.insert("rate_per_second".into(), c.rate_per_second.into());
    a.insert("burst".into(), i64::from(c.burst).into());
    a.insert("concurrency".into(), (c.concurrency as i64).into());
    a.insert("token_ttl_seconds".into(), (c.token_ttl.as_secs() as i64).into());
    let mut t = toml::Table::new();
    t.insert("agent".into(), a.into());
    toml::to_string(&t).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_raw;

    const MINIMAL: &str =
        "[agent]\nnational_url = \"https://127.0.0.1:8401\"\nca = \"ca.pem\"\nclient_id = \"cl_1\"\n";

    fn load(text: &str, env: &[(&str, &str)]) -> anyhow::Result<AgentSettings> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("openmvs-agent-config-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let file = dir.join("agent.toml");
        std::fs::write(&file, text)?;
        let raw = load_raw(Some(&file), env.iter().map(|(k, v)| (k.to_string(), v.to_string())))?;
        agent(&raw, &dir)
    }

    #[test]
    fn a_minimal_agent_file_gets_every_default_and_the_secret_from_the_environment() {
        let s = load(MINIMAL, &[("OPENMVS__AGENT__CLIENT_SECRET", "s3cret")]).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8480");
        assert!(s.data_dir.ends_with("openmvs-agent"));
        assert!(s.ca.as_ref().unwrap().ends_with("ca.pem"));
        assert_eq!(s.agent.client_secret, "s3cret");
        assert_eq!(s.agent.timeout, Duration::from_millis(3000));
        assert_eq!((s.agent.rate_per_second, s.agent.burst, s.agent.concurrency), (5.0, 10, 4));
        assert!(!render(&s).contains("s3cret"));
    }

    #[test]
    fn agent_mistakes_name_the_key_and_the_rule() {
        let with_secret = format!("{MINIMAL}client_secret = \"x\"\n");
        let cases = [
            ("[agent]\n", "agent.national_url is required"),
            (MINIMAL, "agent.client_secret is required"),
            (&with_secret.replace("ca = \"ca.pem\"\n", ""), "agent.ca is required"),
            (&format!("{with_secret}listen = \"0.0.0.0:8480\"\n"), "not a loopback address"),
            (&format!("{with_secret}rate_per_second = 0.0\n"), "agent.rate_per_second"),
            (&format!("{with_secret}timeout_ms = 5\n"), "agent.timeout_ms: 5 must be 100-60000"),
            (
                &format!("{with_secret}retry_seconds = 60\nretry_max_seconds = 10\n"),
                "less than retry_seconds",
            ),
            (&format!("{with_secret}colour = \"blue\"\n"), "unknown field"),
        ];
        for (text, needle) in cases {
            let e = format!("{:#}", load(text, &[]).unwrap_err());
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn the_rendered_agent_configuration_reads_back_the_same_but_for_the_secret() {
        let s = load(&format!("{MINIMAL}client_secret = \"x\"\nburst = 3\n"), &[]).unwrap();
        let dir = std::env::temp_dir().join(format!("openmvs-agent-config-rt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        std::fs::write(&f, render(&s)).unwrap();
        let mut again = agent(&load_raw(Some(&f), std::iter::empty()).unwrap(), &dir).unwrap();
        again.agent.client_secret = "x".into();
        assert_eq!(again, s);
    }
}
