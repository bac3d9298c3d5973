//! `openmvs-bench agent`: how fast an offline agent replays its backlog against a real national
//! system (SQLite, in this process, over HTTP on 127.0.0.1). The system is stopped, the agent
//! records N supplies of distinct packs, the system is started again, and the replay runs
//! unthrottled (its rate set far above what the system can take) until the queue is empty. Each
//! supply is replayed as a verify, then the supply: two requests to the national system.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openmvs_agent::drain::Round;
use openmvs_agent::{Agent, AgentConfig, PackAnswer};
use openmvs_core::pack::{Command, Operation};
use openmvs_core::roles::Role;
use openmvs_core::time::Clock;
use openmvs_http::agent_upstream::ClientUpstream;
use openmvs_national::clock::SystemClock;
use openmvs_testkit::{LOCAL_GTIN, LocalNational, TempDir};
use openmvs_wire::api::PackRequest;
use serde_json::json;

use crate::out::outln;

/// Runs the measurement and prints the figures.
pub fn agent(packs: u64, concurrency: usize, json_out: bool) -> anyhow::Result<std::process::ExitCode> {
    let rt = openmvs_node::server_runtime()?;
    rt.block_on(run(packs, concurrency, json_out))?;
    Ok(std::process::ExitCode::SUCCESS)
}

async fn run(packs: u64, concurrency: usize, json_out: bool) -> anyhow::Result<()> {
    let dir = TempDir::new("bench-agent");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut national = LocalNational::start(&dir.path().join("national"), clock.clone()).await?;
    let serials: Vec<String> = (0..packs).map(|i| format!("A{i:010}")).collect();
    national.seed("BENCH1", "301231", &serials).await?;
    let pharmacy = national.client(Role::Pharmacy, "DE-PH-0001").await?;
    let upstream = Arc::new(
        ClientUpstream::new(
            &national.url(),
            None,
            &pharmacy.client_id,
            &pharmacy.client_secret,
            Duration::from_secs(30),
        )
        .map_err(|e| anyhow::anyhow!(e))?,
    );
    let mut config = AgentConfig::new(&national.url(), &pharmacy.client_id, &pharmacy.client_secret);
    config.rate_per_second = 1e9;
    config.burst = 1_000_000;
    config.concurrency = concurrency;
    config.retry = Duration::from_millis(10);
    let agent = Arc::new(Agent::open(config, &dir.path().join("agent"), upstream, clock.clone())?);

    national.stop().await;
    eprintln!("recording {packs} supplies with the national system stopped ...");
    let started = Instant::now();
    for (i, serial) in serials.iter().enumerate() {
        let body = PackRequest {
            client_trx_id: Some(format!("bench-{i}")),
            scheme: Some("GTIN".into()),
            product_code: Some(LOCAL_GTIN.into()),
            serial: Some(serial.clone()),
            batch: Some("BENCH1".into()),
            expiry: Some("301231".into()),
            ..PackRequest::default()
        };
        match agent.pack(Command::Set(Operation::Supply), body).await? {
            PackAnswer::Recorded(_) => {}
            other => anyhow::bail!("supply {i} was not recorded: {other:?}"),
        }
    }
    let recorded = started.elapsed();

    national.restart()?;
    let started = Instant::now();
    loop {
        match agent.drain_round().await? {
            Round::Idle => break,
            Round::Worked(_) => {}
            Round::Wait(until) => tokio::time::sleep(until.since(clock.now())).await,
        }
    }
    let replayed = started.elapsed();
    let status = agent.status()?;
    anyhow::ensure!(
        status.queue_length == 0 && status.replayed == packs,
        "the replay did not finish: {status:?}"
    );
    anyhow::ensure!(status.problems_open == 0, "{} problems on valid packs", status.problems_open);
    let rate = packs as f64 / replayed.as_secs_f64();
    let record_rate = packs as f64 / recorded.as_secs_f64();
    if json_out {
        outln!(
            "{}",
            json!({"packs": packs, "concurrency": concurrency, "record_seconds": recorded.as_secs_f64(),
                   "records_per_second": record_rate, "replay_seconds": replayed.as_secs_f64(),
                   "operations_per_second": rate, "national_requests_per_second": 2.0 * rate})
        );
    } else {
        outln!(
            "recorded {packs} supplies offline in {:.1} s: {record_rate:.0} per second (one durable commit each)",
            recorded.as_secs_f64()
        );
        outln!(
            "replayed {packs} supplies in {:.1} s with {concurrency} packs at a time: {rate:.0} operations per second ({:.0} requests per second to the national system: a verify, then the supply)",
            replayed.as_secs_f64(),
            2.0 * rate
        );
    }
    national.close().await;
    Ok(())
}
