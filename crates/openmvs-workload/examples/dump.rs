//! Prints a workload one fact a line, as its fingerprint reads it:
//! `cargo run -p openmvs-workload --example dump -- [SEED] [TRANSACTIONS]` (a small market in DE
//! and FR, batches expiring from 2030).

use openmvs_core::ids::MarketCode;
use openmvs_workload::{Config, generate};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let seed = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1);
    let transactions = args.next().map(|s| s.parse()).transpose()?.unwrap_or(300);
    let markets = vec![MarketCode::new("DE")?, MarketCode::new("FR")?];
    let w = generate(&Config::small(seed, transactions, markets, 2030))?;
    for line in w.lines() {
        println!("{line}");
    }
    Ok(())
}
