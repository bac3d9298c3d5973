//! The OBP's pack query (api.md §3 `GET /v1/products/{product_code}/packs/{serial}`): where one
//! of its packs stands in each market. The hub keeps no pack states (nor serials, only keyed
//! digests), so it asks the national systems, each within the inter-market budget and all at
//! once, and answers with what came back: a market that did not answer is shown as such rather
//! than failing the whole answer.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use openmvs_core::ids::{MarketCode, Serial};
use openmvs_core::obp_states::{MarketPackState, PackAcrossMarkets};
use openmvs_wire::hub::{PackQuery, PackQueryAnswer};
use tokio::task::JoinSet;

use crate::{ApiError, Hub, serial_digest};

/// The state shown for a market that holds no answer: it did not answer, or does not hold the pack.
pub const UNKNOWN_STATE: &str = "UNKNOWN";
/// The reason of a market that did not answer within the budget.
pub const UNREACHABLE: &str = "UNREACHABLE";
/// The reason of a target market of the batch that does not hold the pack (yet): its serials are
/// still on their way.
pub const NOT_DISTRIBUTED: &str = "NOT_DISTRIBUTED";

/// A market that holds no answer: [`UNKNOWN_STATE`] for `reason`.
fn unknown(reason: &str) -> MarketPackState {
    MarketPackState { state: UNKNOWN_STATE.to_owned(), reasons: vec![reason.to_owned()] }
}

impl Hub {
    /// `GET /v1/products/{product_code}/packs/{serial}`: the pack's state in each target market.
    /// 404 when the product is not the OBP's (another OBP's product is not revealed to exist) or
    /// the serial was never uploaded for it (its digest is unknown); 400 when the serial is not
    /// one. Every market of any version of the product is asked, concurrently, each within
    /// [`HubConfig::intermarket_budget`](crate::HubConfig::intermarket_budget). Once a market
    /// names the batch, the answer lists the batch's target markets: a market that did not answer
    /// shows `UNKNOWN` with `UNREACHABLE`, one that answered without the pack `UNKNOWN` with
    /// `NOT_DISTRIBUTED`.
    pub async fn pack(
        &self,
        obp: &str,
        product_code: &str,
        serial: &str,
    ) -> Result<PackAcrossMarkets, ApiError> {
        self.caller(obp).await?;
        let not_found = || ApiError::not_found("product_code", format!("no product '{product_code}'"));
        let product = match self.find_product(product_code).await? {
            Some(p) if p.owner == obp => p,
            _ => return Err(not_found()),
        };
        let pc = product.product_code;
        let s = Serial::new(serial).map_err(|e| {
            ApiError::malformed(
                "serial",
                format!("'{}' {e}", serial.chars().take(crate::MAX_ECHO_CHARS).collect::<String>()),
            )
        })?;
        let digest = serial_digest(&self.config.serial_key, &pc, &s);
        if self.store.present(&pc, &[digest]).await?.is_empty() {
            return Err(ApiError::not_found("serial", format!("no serial '{s}' was uploaded for {pc}")));
        }
        let mut markets = BTreeSet::new();
        for v in 1..=product.current_version {
            if let Some(version) = self.store.product_version(&pc, v).await? {
                markets.extend(version.master.market_codes());
            }
        }
        let Some(queries) = self.queries.clone() else {
            return Err(openmvs_store::unavailable("no route to the national systems for pack queries"));
        };
        let query = PackQuery {
            scheme: pc.scheme().as_str().to_owned(),
            product_code: pc.as_str().to_owned(),
            serial: s.as_str().to_owned(),
        };
        let budget = self.config.intermarket_budget;
        let mut asked = JoinSet::new();
        for m in markets.iter().copied() {
            let (queries, query) = (Arc::clone(&queries), query.clone());
            asked.spawn(async move {
                let answer = match tokio::time::timeout(budget, queries.pack_state(m, query)).await {
                    Ok(a) => a,
                    Err(_) => Err(format!("no answer within {} ms", budget.as_millis())),
                };
                (m, answer)
            });
        }
        let mut answers: BTreeMap<MarketCode, Option<PackQueryAnswer>> = BTreeMap::new();
        while let Some(joined) = asked.join_next().await {
            let (m, answer) = joined.map_err(openmvs_store::unavailable)?;
            if let Err(e) = &answer {
                tracing::warn!(market = %m, error = %e, "pack query not answered");
            }
            answers.insert(m, answer.ok());
        }
        let batch = answers.values().flatten().find_map(|a| a.pack.as_ref().map(|p| p.batch.clone()));
        // The batch's own target markets, once a market named it: the product's other markets
        // never held this pack.
        let targets: BTreeSet<MarketCode> = match &batch {
            Some(b) => {
                let record = match openmvs_core::ids::Batch::new(b) {
                    Ok(b) => self.store.batch(&pc, &b).await?,
                    Err(_) => None,
                };
                match record {
                    Some(record) => record.markets.iter().copied().collect(),
                    None => markets.clone(),
                }
            }
            None => markets.clone(),
        };
        let markets = answers
            .into_iter()
            .filter(|(m, _)| targets.contains(m))
            .map(|(m, answer)| {
                let state = match answer {
                    None => unknown(UNREACHABLE),
                    Some(PackQueryAnswer { pack: None, .. }) => unknown(NOT_DISTRIBUTED),
                    Some(PackQueryAnswer { pack: Some(p), .. }) => {
                        MarketPackState { state: p.state, reasons: p.reasons }
                    }
                };
                (m, state)
            })
            .collect();
        Ok(PackAcrossMarkets { batch, markets })
    }
}
