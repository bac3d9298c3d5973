//! `openmvs serve hub`: the European Hub for production, with its configuration file.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use openmvs_core::time::Clock;
use openmvs_http::callback::{CALLBACK_TIMEOUT, HttpCallbackSender};
use openmvs_http::national_link::{HttpNationalLink, HttpNationalQueries};
use openmvs_http::{HubState, Observability, TlsConfig, hub_router, serve_with};
use openmvs_hub::{CallbackSender, Hub, HubConfig, NationalLink, NationalQueries};
use openmvs_national::clock::SystemClock;
use openmvs_store::hub::HubStore;
use tokio::sync::watch;

use openmvs_node::{init_tracing, server_runtime};

use super::serve::wait_for_signal;
use crate::hub_config::{self, HubSettings};
use crate::{config, hub_node};

/// Loads and validates the `[hub]` section with the environment on top.
pub fn settings(path: &Path) -> anyhow::Result<HubSettings> {
    let raw = config::load_raw(Some(path), std::env::vars())?;
    let base = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    hub_config::hub(&raw, base)
}

pub fn hub(path: &Path) -> anyhow::Result<ExitCode> {
    let s = settings(path)?;
    init_tracing(&s.log);
    let rt = server_runtime()?;
    rt.block_on(run_hub(s))?;
    Ok(ExitCode::SUCCESS)
}

fn read(p: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(p).with_context(|| format!("reading {}", p.display()))
}

async fn run_hub(s: HubSettings) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let obs = Arc::new(Observability::new(clock.clone()));
    obs.disk.set_threshold(s.health.disk_free_warn);
    let group_sizes = obs
        .metrics
        .size_histogram("openmvs_group_commit_size", "Units of work per committed transaction.", &[])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let on_group: Arc<dyn Fn(usize) + Send + Sync> = Arc::new(move |n| group_sizes.observe(n as u64));
    let key = hub_node::serial_key(&s.data_dir)?;
    let store = hub_node::open(&s.data_dir, &s.storage, clock.clone(), Some(on_group))?;
    let ca_pem_path = s.ca_dir.join(openmvs_pki::CA_CERT_FILE);
    let ca_pem = read(&ca_pem_path)?;
    let mut identity = read(&s.identity.cert)?;
    identity.extend(read(&s.identity.key)?);
    let link: Arc<dyn NationalLink> = Arc::new(
        HttpNationalLink::new(s.markets.clone(), &ca_pem, &identity, s.delivery_timeout)
            .map_err(|e| anyhow::anyhow!(e))?,
    );
    let config = HubConfig::new(key);
    let queries: Arc<dyn NationalQueries> = Arc::new(
        HttpNationalQueries::new(s.markets.clone(), &ca_pem, &identity, config.intermarket_budget)
            .map_err(|e| anyhow::anyhow!(e))?,
    );
    let callback_roots = read(&s.callback_ca)?;
    let callbacks: Arc<dyn CallbackSender> = Arc::new(
        HttpCallbackSender::new(&[&callback_roots], CALLBACK_TIMEOUT)
            .map_err(|e| anyhow::anyhow!("{}: {e}", s.callback_ca.display()))?,
    );
    let dyn_store: Arc<dyn HubStore> = store.store();
    let hub = Arc::new(
        Hub::new(dyn_store, clock.clone(), config, Some(link))
            .with_queries(queries)
            .with_callbacks(callbacks),
    );
    let crl_file = s.ca_dir.join(openmvs_pki::CRL_FILE);
    let mut tls = TlsConfig::from_pem_files(&s.tls.cert, &s.tls.key, Some(&ca_pem_path))
        .map_err(|e| anyhow::anyhow!(e))?;
    tls.crls = hub_node::read_crls(&crl_file)?;
    let listener = openmvs_http::server::listen(s.listen).with_context(|| format!("binding {}", s.listen))?;
    let server = serve_with(
        listener,
        hub_router(HubState { hub: hub.clone(), obs: obs.clone() }),
        Some(tls),
        s.connections.serve_options(obs.connections.clone()),
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let reloader = server.tls_reloader().context("the hub serves TLS")?;
    let workers = [
        tokio::spawn(hub.clone().run_relay(stop_rx.clone())),
        tokio::spawn(hub_node::watch_crl(crl_file, reloader, s.crl_reload, stop_rx.clone())),
        tokio::spawn(crate::health::run_probe(
            hub.clone(),
            obs.clone(),
            s.data_dir.clone(),
            s.health.probe_every,
            stop_rx.clone(),
        )),
        tokio::spawn(
            openmvs_http::upkeep::Upkeep::hub(
                obs.clone(),
                hub.clone(),
                &openmvs_http::upkeep::node_label(server.local_addr().port()),
                openmvs_http::incidents::RuleConfig::default(),
            )
            .run(stop_rx.clone()),
        ),
    ];
    // Ready only once a probe write commits; a hub that cannot write says so and becomes ready by
    // itself when a later probe succeeds.
    crate::health::probe(hub.as_ref(), &obs, &s.data_dir).await;
    if !hub.store_ok() {
        tracing::error!(
            "the store cannot commit: serving with /health/ready false until a probe write succeeds"
        );
    }
    obs.set_ready(true);
    // One line on stdout that scripts and tests wait for.
    // A server keeps serving when nobody reads its standard output.
    let _ = crate::out::try_line(format_args!("openmvs: hub listening on https://{}", server.local_addr()));
    tracing::info!(addr = %server.local_addr(), markets = s.markets.len(), "hub ready");

    wait_for_signal().await;
    tracing::info!("shutting down: readiness off, draining in-flight requests");
    obs.set_ready(false);
    // Clients' keep-alive connections move to the other nodes during the grace time.
    server.part();
    tokio::time::sleep(s.ready_grace).await;
    server.shutdown(s.drain).await;
    let _ = stop_tx.send(true);
    super::serve::stop_workers(workers.into(), super::serve::WORKERS_STOP_LIMIT).await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}
