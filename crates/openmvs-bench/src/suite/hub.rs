//! The hub and the national systems together, once per engine (neither depends on the national
//! data size): an OBP's streamed upload through the hub to DISTRIBUTED, and verifies of packs held
//! by another market, through the hub, next to local ones. The systems serve on the suite's server
//! runtime, the clients run on the load generator's.

use openmvs_core::ids::MarketCode;

use super::Options;
use crate::hub::{self as bench_hub, Deadlines, HubFigures};
use crate::intermarket::{self as bench_intermarket, Figures};
use crate::national::Setup;

/// The most verifies one inter-market leg sends; the leg ends earlier when its time is over.
const MAX_LEG_REQUESTS: u64 = 10_000_000;

/// What one engine measured with the hub.
pub struct System {
    /// The engine, labelled as the national runs are.
    pub engine: String,
    /// The streamed upload through the hub.
    pub upload: HubFigures,
    /// Local and inter-market verifies.
    pub intermarket: Figures,
}

/// Runs the upload, then the inter-market legs, each on systems of their own started for it on
/// `engine` (fresh PostgreSQL schemas, dropped afterwards).
pub async fn system(load: &tokio::runtime::Handle, opts: &Options, engine: &Setup) -> anyhow::Result<System> {
    let url = match engine {
        Setup::Sqlite => None,
        Setup::Postgres { url, .. } => Some(url.as_str()),
    };
    let dir = std::env::temp_dir().join(format!("openmvs-suite-hub-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let market = MarketCode::new("DE").map_err(|e| anyhow::anyhow!("{e}"))?;
    let upload = bench_hub::run(&dir.join("upload"), opts.upload_serials, &[market], load.clone(), url).await;
    let _ = std::fs::remove_dir_all(&dir);
    let upload = upload.map_err(|e| e.context("upload through the hub"))?;
    eprintln!(
        "  upload through the hub: {} serials, {:.0}/s to the 202, {:.0}/s to DISTRIBUTED",
        upload.serials,
        upload.rate(upload.accepted_s),
        upload.rate(upload.distributed_s)
    );
    // A smoke run checks the harness, not the machine: slow answers must not turn into refusals.
    let deadlines = if opts.smoke { Deadlines::generous() } else { Deadlines::law() };
    let im = bench_intermarket::run(
        &dir.join("intermarket"),
        MAX_LEG_REQUESTS,
        Some(opts.seconds),
        load.clone(),
        url,
        deadlines,
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    let intermarket = im.map_err(|e| e.context("inter-market verify"))?;
    // An answer that is not the expected one (refused, or not through the hub) is counted and
    // reported with the first of its kind, not fatal: a timeout inside the law's budget is a
    // finding of the run.
    for leg in [&intermarket.local, &intermarket.remote] {
        if let Some(e) = &leg.first_error {
            eprintln!("  {}: {} of {} not as expected, the first: {e}", leg.name, leg.errors, leg.requests);
        }
    }
    eprintln!(
        "  verify p99: local {:.2} ms, inter-market {:.2} ms ({:.1}x)",
        intermarket.local.ms(0.99),
        intermarket.remote.ms(0.99),
        intermarket.p99_ratio()
    );
    Ok(System { engine: engine.label(), upload, intermarket })
}
