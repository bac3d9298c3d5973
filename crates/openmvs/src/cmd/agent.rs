//! `openmvs agent`: the offline agent a pharmacy runs beside its software, with its
//! configuration file (the `[agent]` section, see `agent_config.rs`).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use openmvs_agent::Agent;
use openmvs_agent::upstream::Upstream;
use openmvs_core::time::Clock;
use openmvs_http::agent_upstream::ClientUpstream;
use openmvs_http::{AgentState, Observability, ServeOptions, agent_router, serve_with};
use openmvs_national::clock::SystemClock;
use openmvs_node::{init_tracing, server_runtime};
use tokio::sync::watch;

use super::serve::wait_for_signal;
use crate::agent_config::{self, AgentSettings};
use crate::config;

/// How long requests in flight may finish at shutdown.
const DRAIN: Duration = Duration::from_secs(5);

/// Loads and validates the `[agent]` section with the environment on top.
pub fn settings(path: &Path) -> anyhow::Result<AgentSettings> {
    let raw = config::load_raw(Some(path), std::env::vars())?;
    let base = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    agent_config::agent(&raw, base)
}

pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let s = settings(path)?;
    init_tracing(&s.log);
    let rt = server_runtime()?;
    rt.block_on(serve(s))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(s: AgentSettings) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ca = match &s.ca {
        Some(p) => Some(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?),
        None => None,
    };
    let c = &s.agent;
    let upstream: Arc<dyn Upstream> = Arc::new(
        ClientUpstream::new(&c.national_url, ca.as_deref(), &c.client_id, &c.client_secret, c.timeout)
            .map_err(|e| anyhow::anyhow!("agent.national_url: {e}"))?,
    );
    let agent = Arc::new(
        Agent::open(s.agent.clone(), &s.data_dir, upstream, clock.clone())
            .with_context(|| format!("opening the queue in {}", s.data_dir.display()))?,
    );
    let obs = Arc::new(Observability::new(clock));
    let listener = openmvs_http::server::listen(s.listen).with_context(|| format!("binding {}", s.listen))?;
    let server = serve_with(
        listener,
        agent_router(AgentState { agent: agent.clone(), obs: obs.clone() }),
        None,
        ServeOptions::default(),
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let replay = tokio::spawn(agent.clone().run_drain(stop_rx));
    obs.set_ready(true);
    let pending = agent.figures().map(|f| f.queue_length).unwrap_or(0);
    // One line on stdout that scripts and tests wait for.
    let _ = crate::out::try_line(format_args!("openmvs: agent listening on http://{}", server.local_addr()));
    tracing::info!(addr = %server.local_addr(), national = %c.national_url, pending, "agent ready");

    wait_for_signal().await;
    tracing::info!("shutting down");
    obs.set_ready(false);
    server.shutdown(DRAIN).await;
    let _ = stop_tx.send(true);
    let _ = replay.await;
    tracing::info!("stopped");
    Ok(())
}
