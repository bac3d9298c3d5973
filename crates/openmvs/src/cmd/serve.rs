//! `openmvs serve national` and `openmvs config check`.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use openmvs_core::time::Clock;
use openmvs_http::hub_client::HttpHubLink;
use openmvs_http::incidents::RuleConfig;
use openmvs_http::limit::{Limiter, RateLimit};
use openmvs_http::upkeep::{Upkeep, node_label};
use openmvs_http::{NationalState, Observability, TlsConfig, national_router, serve_with};
use openmvs_national::clock::SystemClock;
use openmvs_national::{HubLink, National, NationalConfig};
use tokio::sync::watch;

use openmvs_node::{init_tracing, server_runtime};

use crate::config::{self, NationalSettings};
use crate::node;
use crate::out::outln;

/// Loads and validates the configuration file with the environment on top.
pub fn settings(path: &Path) -> anyhow::Result<NationalSettings> {
    let raw = config::load_raw(Some(path), std::env::vars())?;
    let base = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    config::national(&raw, base)
}

/// Prints the effective configuration of each section the file has: `[national]`, `[hub]`.
pub fn check(path: &Path) -> anyhow::Result<ExitCode> {
    let raw = config::load_raw(Some(path), std::env::vars())?;
    let base = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if raw.national.is_none() && raw.hub.is_none() && raw.agent.is_none() {
        anyhow::bail!("the configuration has no [national], [hub] or [agent] section");
    }
    if raw.national.is_some() {
        outln!("{}", config::render(&config::national(&raw, base)?).trim_end());
    }
    if raw.hub.is_some() {
        outln!("{}", crate::hub_config::render(&crate::hub_config::hub(&raw, base)?).trim_end());
    }
    if raw.agent.is_some() {
        outln!("{}", crate::agent_config::render(&crate::agent_config::agent(&raw, base)?).trim_end());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn national(path: &Path) -> anyhow::Result<ExitCode> {
    let s = settings(path)?;
    init_tracing(&s.log);
    let rt = server_runtime()?;
    rt.block_on(run_national(s))?;
    Ok(ExitCode::SUCCESS)
}

async fn run_national(s: NationalSettings) -> anyhow::Result<()> {
    node::claim_market(&s.data_dir, s.market)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut o = Observability::new(clock.clone());
    o.login = Arc::new(openmvs_http::login::LoginGuard::new(s.login));
    let obs = Arc::new(o);
    obs.load.set_max(s.max_in_flight);
    obs.disk.set_threshold(s.health.disk_free_warn);
    let group_sizes = obs
        .metrics
        .size_histogram("openmvs_group_commit_size", "Units of work per committed transaction.", &[])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let on_group: Arc<dyn Fn(usize) + Send + Sync> = Arc::new(move |n| group_sizes.observe(n as u64));
    let store = node::open(&s.data_dir, &s.storage, clock.clone(), Some(on_group))?;
    let hub: Option<Arc<dyn HubLink>> = match &s.hub {
        Some(h) => {
            let ca = std::fs::read(&h.ca).with_context(|| format!("reading {}", h.ca.display()))?;
            let identity = match (&h.cert, &h.key) {
                (Some(c), Some(k)) => {
                    let mut pem = std::fs::read(c).with_context(|| format!("reading {}", c.display()))?;
                    pem.extend(std::fs::read(k).with_context(|| format!("reading {}", k.display()))?);
                    Some(pem)
                }
                _ => None,
            };
            Some(Arc::new(
                HttpHubLink::new(&h.url, &ca, identity.as_deref(), h.intermarket_timeout)
                    .map_err(|e| anyhow::anyhow!(e))?,
            ))
        }
        None => None,
    };
    let mut cfg = NationalConfig::new(s.market);
    cfg.policy = s.policy.clone();
    cfg.max_bulk_rows = s.max_bulk_rows;
    cfg.bulk_chunk = s.bulk_chunk;
    cfg.guessing = s.guessing.clone();
    cfg.secret_logins = s.soap.clone();
    let national = Arc::new(
        National::new(store.store(), clock.clone(), cfg, hub).await.map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let limiter = Arc::new(Limiter::new(RateLimit {
        per_second: f64::from(s.client_rate),
        burst: f64::from(s.client_burst),
    }));
    let router = national_router(NationalState { national: national.clone(), obs: obs.clone(), limiter });
    let tls = s
        .tls
        .as_ref()
        .map(|t| TlsConfig::from_pem_files(&t.cert, &t.key, t.client_ca.as_deref()))
        .transpose()
        .map_err(|e| anyhow::anyhow!(e))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    obs.plain_http.store(tls.is_none(), std::sync::atomic::Ordering::Relaxed);
    let listener = openmvs_http::server::listen(s.listen).with_context(|| format!("binding {}", s.listen))?;
    let server = serve_with(listener, router, tls, s.connections.serve_options(obs.connections.clone()))
        .map_err(|e| anyhow::anyhow!(e))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut workers = vec![
        tokio::spawn(national.clone().run_bulk_worker(stop_rx.clone())),
        tokio::spawn(national.clone().run_relay(stop_rx.clone())),
        tokio::spawn(
            Upkeep::national(
                obs.clone(),
                national.clone(),
                &node_label(server.local_addr().port()),
                RuleConfig::default(),
            )
            .run(stop_rx.clone()),
        ),
        // Clients cut off, keys revoked or rotated by other nodes and commands: seen within a second or two.
        tokio::spawn(
            national.clone().run_security_refresh(openmvs_national::SECURITY_REFRESH, stop_rx.clone()),
        ),
        tokio::spawn(crate::health::run_probe(
            national.clone(),
            obs.clone(),
            s.data_dir.clone(),
            s.health.probe_every,
            stop_rx.clone(),
        )),
    ];
    if let (Some(_), Some(heads)) = (&s.hub, store.heads()) {
        workers.push(tokio::spawn(forward_heads(national.clone(), heads.subscribe(), stop_rx.clone())));
    }
    // Ready only once a probe write commits: a node on a read-only or full disk starts, says why
    // it is not ready, and becomes ready by itself when a later probe succeeds.
    crate::health::probe(national.as_ref(), &obs, &s.data_dir).await;
    if !national.store_ok() {
        tracing::error!(
            "the store cannot commit: serving with /health/ready false until a probe write succeeds"
        );
    }
    obs.set_ready(true);
    // One line on stdout that scripts and tests wait for.
    // A server keeps serving when nobody reads its standard output.
    let _ = crate::out::try_line(format_args!(
        "openmvs: national system {} listening on {scheme}://{}",
        s.market,
        server.local_addr()
    ));
    tracing::info!(market = %s.market, addr = %server.local_addr(), storage = store.engine_name(), node = national.node_id().as_str(), "national system ready");

    wait_for_signal().await;
    tracing::info!("shutting down: readiness off, draining in-flight requests");
    obs.set_ready(false);
    // Clients' keep-alive connections move to the other nodes during the grace time.
    server.part();
    tokio::time::sleep(s.ready_grace).await;
    server.shutdown(s.drain).await;
    let _ = stop_tx.send(true);
    stop_workers(workers, WORKERS_STOP_LIMIT).await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// How long the workers (relays, bulk worker, probes) have, once told to stop, to finish what
/// they are doing: a delivery in flight, a group of a bulk job.
pub(crate) const WORKERS_STOP_LIMIT: Duration = Duration::from_secs(5);

/// Waits up to `limit` for the workers told to stop, then ends those still running, so that a
/// shutdown is bounded whatever a worker waits for (a slow market, a lock). What an ended worker
/// was doing is durable and taken up again: a relay's claimed messages by the next relay, on this
/// node after its start or on another node once the claim's lease ends.
pub(crate) async fn stop_workers(mut workers: Vec<tokio::task::JoinHandle<()>>, limit: Duration) -> usize {
    let all = async {
        for w in workers.iter_mut() {
            let _ = w.await;
        }
    };
    let mut ended = 0;
    if tokio::time::timeout(limit, all).await.is_err() {
        for w in workers.iter().filter(|w| !w.is_finished()) {
            w.abort();
            ended += 1;
        }
    }
    if ended > 0 {
        tracing::warn!(
            workers = ended,
            limit_ms = limit.as_millis() as u64,
            "workers still busy at shutdown were ended; their work is taken up again after the start"
        );
    }
    ended
}

pub(crate) async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Sends the heads of the audit trail to the hub as the head file gets them: those it holds at
/// the start first (the checkpoints signed at the last stop were written after the relay had
/// stopped), then each new one, at most one per market per checkpoint interval. A head that
/// cannot be queued is tried again; a newer one replaces it.
pub(crate) async fn forward_heads(
    national: Arc<National>,
    mut heads: watch::Receiver<crate::heads::Heads>,
    mut stop: watch::Receiver<bool>,
) {
    let mut sent: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    loop {
        let latest = heads.borrow_and_update().clone();
        let mut failed = false;
        for cp in latest.values() {
            if sent.get(&cp.market).is_some_and(|s| *s >= cp.seq) {
                continue;
            }
            match national.send_audit_head(cp).await {
                Ok(_) => {
                    sent.insert(cp.market.clone(), cp.seq);
                }
                Err(e) => {
                    tracing::warn!(error = %e, market = %cp.market, seq = cp.seq, "queueing the audit head for the hub failed");
                    failed = true;
                }
            }
        }
        if !failed {
            tokio::select! {
                r = heads.changed() => if r.is_err() { return },
                _ = stop.changed() => return,
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(openmvs_store::CHECKPOINT_EVERY) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn workers_that_stop_are_awaited_and_one_that_does_not_is_ended_at_the_limit() {
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let finishes = tokio::spawn(async move {
            let _ = stop_rx.changed().await;
        });
        let stuck = tokio::spawn(std::future::pending::<()>());
        let watch_stuck = stuck.abort_handle();
        let _ = stop_tx.send(true);
        // The clock is paused: the limit passes as soon as nothing else can run.
        assert_eq!(stop_workers(vec![finishes, stuck], Duration::from_secs(5)).await, 1);
        tokio::task::yield_now().await;
        assert!(watch_stuck.is_finished(), "the stuck worker was ended");

        let quick = tokio::spawn(async {});
        assert_eq!(stop_workers(vec![quick], Duration::from_secs(5)).await, 0);
    }
}
