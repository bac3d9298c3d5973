//! Generated market workloads with their ground truth, for measuring OpenMVS against what really
//! happened: `openmvs-bench alerts` runs one against the real systems and counts false alerts and
//! missed falsifications; a deterministic simulation can run the same steps.
//!
//! A workload is the market (products, batches and serials for one OBP to upload, some batches
//! to recall, pharmacies, hospitals and wholesalers in two or more markets) and the steps its
//! terminals take: everyday work on genuine packs; the same packs with their codes corrupted as
//! real scanners corrupt them (Caps Lock, a keyboard-layout mismatch, a lost group separator),
//! each followed by the clean rescan; double scans; retries after a timeout with the same
//! `client_trx_id`; replays of work queued during an outage (verify first, keep the
//! `client_trx_id`, fmd-rules §6); and a known set of true falsifications (codes cloned into a
//! second market, unknown serials and batches, batch and expiry mismatches) and packs of recalled
//! batches. Every request carries its [`Truth`].
//!
//! [`generate`] is pure: no IO, no clock, no randomness but its own seeded generator
//! (SplitMix64, written in this crate so that it never changes under a dependency's update). The same [`Config`] gives the same workload, byte for byte
//! ([`Workload::fingerprint`]). Counts are exact, not drawn: each kind of step occurs as often as
//! [`Mix`] says for the number of transactions asked, at least [`Mix::minimum`] times, and
//! everyday work fills the rest.
//!
//! [`tally`] counts what the systems answered against the ground truth (false alerts, detected
//! falsifications), as purely: whoever runs the steps, over HTTPS or in a simulation, gets the
//! same figures from the same answers.

mod generate;
mod model;
mod rng;
mod scanner;
pub mod tally;

use openmvs_core::ids::MarketCode;

pub use generate::generate;
pub use model::{
    Batch, Conduct, Corruption, Delivery, Event, Falsification, Fields, Input, InputForm, Operation, Product,
    Request, Scanner, Step, Terminal, Truth, Workload,
};
pub use rng::Rng;

/// A pharmacy's normal rate: single-pack operations (verifies, dispenses, undos) an hour at its
/// counter, about 300 in a day of trading. What an outage of its national system leaves it to
/// record: `openmvs-bench burst` gives each pharmacy this many operations per hour of outage.
pub const PHARMACY_OPERATIONS_PER_HOUR: u32 = 40;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The seed: the same configuration with the same seed gives the same workload.
    pub seed: u64,
    /// Transactions wanted (distinct `client_trx_id`s): everyday work fills up to at least this
    /// many; the last step may go a few over.
    pub transactions: u64,
    /// The markets, at least two (a cloned code is dispensed in two markets). The first
    /// [`Mix::outage_markets`] of them have an outage.
    pub markets: Vec<MarketCode>,
    /// Pharmacies per market (at least one).
    pub pharmacies: u32,
    /// Hospital pharmacies per market.
    pub hospitals: u32,
    /// Wholesalers per market.
    pub wholesalers: u32,
    /// Products sold in one market only, per market (at least one): each has three batches and
    /// one that is recalled.
    pub products_per_market: u32,
    /// Products sold in every market (at least one): each has two batches.
    pub multi_market_products: u32,
    /// The share of packs delivered to terminals that are of a product sold in every market, in
    /// percent.
    pub multi_market_percent: u64,
    /// The first year batches may expire in: the packs must not have expired when the workload
    /// runs, and the generator reads no clock, so the caller says (the current year and two
    /// more is safe). Expiries fall in this year and the two after it.
    pub first_expiry_year: u16,
    /// How often each kind of step occurs.
    pub mix: Mix,
}

/// How often each kind of step occurs, in steps per million transactions, each at least
/// [`Mix::minimum`] times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    /// Scans with Caps Lock on.
    pub caps_lock: u64,
    /// Scans typed with a US layout into a German one.
    pub keyboard_layout: u64,
    /// Scans that lost their group separator.
    pub lost_group_separator: u64,
    /// Dispenses scanned twice (one in five of them three times).
    pub double_scan: u64,
    /// Requests retried after a timeout.
    pub timeout_retry: u64,
    /// Each kind of true falsification, and packs of recalled batches.
    pub falsification: u64,
    /// The markets (the first ones of [`Config::markets`]) with an outage: each of their
    /// pharmacies and hospitals queues [`Mix::outage_queue`] dispenses and replays them when
    /// phase 1 starts.
    pub outage_markets: u32,
    /// Dispenses each terminal queues during an outage.
    pub outage_queue: u32,
    /// The fewest steps of each kind above, whatever the number of transactions.
    pub minimum: u64,
}

impl Default for Mix {
    /// Corruptions at 0.05 % of transactions each (about 0.15 % in all: published false-alert
    /// rates are 0.21 % EU-wide in 2021, most of them scanning and software errors), a double
    /// scan in 100 transactions, a retry after a timeout in 200, each falsification kind at
    /// 0.01 % (far above real life, so that recall is measured on more than a handful), one
    /// market with an outage of 20 queued dispenses per terminal, and at least two of each.
    fn default() -> Mix {
        Mix {
            caps_lock: 500,
            keyboard_layout: 500,
            lost_group_separator: 500,
            double_scan: 10_000,
            timeout_retry: 5_000,
            falsification: 100,
            outage_markets: 1,
            outage_queue: 20,
            minimum: 2,
        }
    }
}

impl Config {
    /// A market of `transactions` in `markets`: 40 pharmacies, 6 hospitals and 4 wholesalers per
    /// market, 3 products sold in each market alone and 4 sold in all (one pack in ten), the
    /// default [`Mix`].
    pub fn new(seed: u64, transactions: u64, markets: Vec<MarketCode>, first_expiry_year: u16) -> Config {
        Config {
            seed,
            transactions,
            markets,
            pharmacies: 40,
            hospitals: 6,
            wholesalers: 4,
            products_per_market: 3,
            multi_market_products: 4,
            multi_market_percent: 10,
            first_expiry_year,
            mix: Mix::default(),
        }
    }

    /// A small market for a quick run that still has every kind of step: 3 pharmacies, one
    /// hospital and one wholesaler per market, 2 products of each market and 2 sold in all,
    /// outages of 10 dispenses.
    pub fn small(seed: u64, transactions: u64, markets: Vec<MarketCode>, first_expiry_year: u16) -> Config {
        let mut c = Config::new(seed, transactions, markets, first_expiry_year);
        c.pharmacies = 3;
        c.hospitals = 1;
        c.wholesalers = 1;
        c.products_per_market = 2;
        c.multi_market_products = 2;
        c.mix.outage_queue = 10;
        c
    }

    /// How many steps of a kind occurring `per_million` times per million transactions.
    pub fn count(&self, per_million: u64) -> u64 {
        let exact = (u128::from(self.transactions) * u128::from(per_million) + 500_000) / 1_000_000;
        u64::try_from(exact).unwrap_or(u64::MAX).max(self.mix.minimum)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let mut seen = Vec::new();
        for m in &self.markets {
            if seen.contains(m) {
                return Err(ConfigError::new("markets", format!("{m} is named twice")));
            }
            seen.push(*m);
        }
        if self.markets.len() < 2 {
            return Err(ConfigError::new(
                "markets",
                "at least two are needed: a cloned code is dispensed in two markets",
            ));
        }
        if self.pharmacies == 0 {
            return Err(ConfigError::new("pharmacies", "at least one per market"));
        }
        if self.products_per_market == 0 {
            return Err(ConfigError::new("products_per_market", "at least one"));
        }
        if self.multi_market_products == 0 {
            return Err(ConfigError::new(
                "multi_market_products",
                "at least one: a code is cloned into a second market where its product is sold",
            ));
        }
        if self.multi_market_percent > 100 {
            return Err(ConfigError::new("multi_market_percent", "at most 100"));
        }
        if self.transactions == 0 {
            return Err(ConfigError::new("transactions", "at least one"));
        }
        if self.transactions > MAX_TRANSACTIONS {
            return Err(ConfigError::new("transactions", format!("at most {MAX_TRANSACTIONS}")));
        }
        if !(2000..=2096).contains(&self.first_expiry_year) {
            return Err(ConfigError::new(
                "first_expiry_year",
                "must be 2000-2096 (two-digit years, and the two years after it)",
            ));
        }
        if self.mix.outage_markets as usize > self.markets.len() {
            return Err(ConfigError::new("mix.outage_markets", "at most the number of markets"));
        }
        if self.mix.minimum == 0 {
            return Err(ConfigError::new(
                "mix.minimum",
                "at least one: every kind of step must occur for its figure to mean anything",
            ));
        }
        Ok(())
    }
}

/// The most transactions a workload holds: 100 million, so that the serials fit the
/// catalogue's numbering and the workload fits in memory.
pub const MAX_TRANSACTIONS: u64 = 100_000_000;

/// A configuration that cannot be generated: the field and the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct ConfigError {
    /// The field at fault.
    pub field: &'static str,
    /// The rule it breaks.
    pub rule: String,
}

impl ConfigError {
    fn new(field: &'static str, rule: impl Into<String>) -> ConfigError {
        ConfigError { field, rule: rule.into() }
    }
}
