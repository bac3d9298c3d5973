//! Inter-market requests (fmd-rules §4.10): a single-pack request for a product unknown in the
//! initiating market is routed to a market that holds the product, processed there as if made in
//! the initiating market, and its answer returned.

use std::collections::BTreeSet;

use openmvs_core::ids::{MarketCode, ProductCode, Scheme};
use openmvs_wire::hub::{IntermarketAnswer, IntermarketRequest};

use crate::{ApiError, Hub, NationalQueries};

impl Hub {
    /// `POST /internal/v1/intermarket`: asks the markets of the product's current version (other
    /// than the initiating one), in market order, each within
    /// [`HubConfig::intermarket_budget`](crate::HubConfig::intermarket_budget), and returns the
    /// first answer that knows the product. `market: null` when the hub knows no market that
    /// holds it. When a market that should hold it cannot be reached (down, or no answer in
    /// time) and no other answers, the hub says so: `market: null` with those markets in
    /// `unreachable`, rather than "unknown everywhere". The initiating market then tells its user
    /// that the market holding the product could not be reached, which is the truth, instead of
    /// a false "unknown product" or "the hub could not be reached" (the hub was).
    pub async fn intermarket(&self, req: IntermarketRequest) -> Result<IntermarketAnswer, ApiError> {
        let unknown = IntermarketAnswer { market: None, response: None, unreachable: Vec::new() };
        let initiating = MarketCode::new(&req.market)
            .map_err(|e| ApiError::malformed("market", format!("'{}' {e}", req.market)))?;
        let scheme = Scheme::parse(&req.scheme)
            .map_err(|e| ApiError::malformed("scheme", format!("'{}' {e}", req.scheme)))?;
        let pc = ProductCode::new(scheme, &req.product_code)
            .map_err(|e| ApiError::malformed("product_code", format!("'{}' {e}", req.product_code)))?;
        let Some(product) = self.store.product(&pc).await? else { return Ok(unknown) };
        let version = self.store.product_version(&pc, product.current_version).await?.ok_or_else(|| {
            openmvs_store::StoreError::Corrupt(format!("product {pc} lacks its current version"))
        })?;
        let mut candidates: BTreeSet<MarketCode> = version.master.market_codes();
        candidates.remove(&initiating);
        if candidates.is_empty() {
            return Ok(unknown);
        }
        let Some(queries) = self.queries.clone() else {
            return Err(openmvs_store::unavailable(
                "no route to the national systems for inter-market requests",
            ));
        };
        let mut failures = Vec::new();
        for market in candidates {
            match self.ask(queries.as_ref(), market, req.clone()).await {
                Ok(IntermarketAnswer { response: Some(response), .. }) => {
                    // The hub names the market it asked; the answer's own claim is not needed.
                    return Ok(IntermarketAnswer {
                        market: Some(market.to_string()),
                        response: Some(response),
                        unreachable: Vec::new(),
                    });
                }
                // That market has not received the product (yet): another may have.
                Ok(_) => {}
                Err(e) => failures.push((market, e)),
            }
        }
        if !failures.is_empty() {
            let why: Vec<String> = failures.iter().map(|(m, e)| format!("{m}: {e}")).collect();
            tracing::warn!(product = %pc, initiating = %initiating, failures = %why.join("; "),
                "no market holding the product answered an inter-market request");
        }
        Ok(IntermarketAnswer {
            unreachable: failures.into_iter().map(|(m, _)| m.to_string()).collect(),
            ..unknown
        })
    }

    /// Asks one market within the budget.
    async fn ask(
        &self,
        queries: &dyn NationalQueries,
        market: MarketCode,
        req: IntermarketRequest,
    ) -> Result<IntermarketAnswer, String> {
        let budget = self.config.intermarket_budget;
        match tokio::time::timeout(budget, queries.intermarket(market, req)).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer within {} ms", budget.as_millis())),
        }
    }
}
