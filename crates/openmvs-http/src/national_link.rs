//! The hub's link to the national systems: each delivery is POSTed to the market's
//! `/internal/v1/messages` over mutual TLS, presenting the hub's client certificate
//! (`hub.openmvs`), which is the one identity the national systems accept on that route; and
//! [`HttpNationalQueries`], which asks a market's `/internal/v1/intermarket` (and its
//! `/internal/v1/pack-query`) the same way and waits for the answer within the inter-market budget.

use std::collections::BTreeMap;
use std::time::Duration;

use openmvs_core::ids::MarketCode;
use openmvs_hub::{NationalLink, NationalQueries};
use openmvs_store::BoxFuture;
use openmvs_wire::hub::{
    Delivery, DeliveryAck, IntermarketAnswer, IntermarketRequest, MarketIncident, PackQuery, PackQueryAnswer,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// How long one delivery may take before the relay retries it: long enough for a full delivery
/// of serial chunks to be committed, short enough that a hanging market holds up the relay only
/// this long.
pub const NATIONAL_DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// The national systems, reached over mutual TLS.
pub struct HttpNationalLink {
    client: reqwest::Client,
    /// The base URL of each market's national system, without a trailing `/`.
    markets: BTreeMap<MarketCode, String>,
    timeout: Duration,
}

impl HttpNationalLink {
    /// A link to the national systems at `markets` (e.g. `DE` → `https://127.0.0.1:8401`),
    /// trusting `ca_pem` for their server certificates and presenting `identity_pem` (the hub's
    /// client certificate then its PKCS#8 key, PEM). Each delivery gives up after `timeout`.
    pub fn new(
        markets: BTreeMap<MarketCode, String>,
        ca_pem: &[u8],
        identity_pem: &[u8],
        timeout: Duration,
    ) -> Result<HttpNationalLink, String> {
        let client = mtls_client(&markets, ca_pem, identity_pem)?;
        let markets = markets.into_iter().map(|(m, u)| (m, u.trim_end_matches('/').to_owned())).collect();
        Ok(HttpNationalLink { client, markets, timeout })
    }

    /// The markets this link reaches.
    pub fn markets(&self) -> impl Iterator<Item = MarketCode> + '_ {
        self.markets.keys().copied()
    }
}

impl NationalLink for HttpNationalLink {
    fn deliver(&self, market: MarketCode, delivery: Delivery) -> BoxFuture<'_, Result<DeliveryAck, String>> {
        Box::pin(async move {
            // A market without a URL is down as far as the relay knows: its messages wait and are
            // retried with backoff, so configuring the market later delivers them.
            let Some(base) = self.markets.get(&market) else {
                return Err(format!("no national system is configured for {market}"));
            };
            let url = format!("{base}/internal/v1/messages");
            let resp = self
                .client
                .post(&url)
                .json(&delivery)
                .timeout(self.timeout)
                .send()
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            let status = resp.status();
            if !status.is_success() {
                let text = resp.text().await.unwrap_or_default();
                return Err(format!("{url}: HTTP {status}: {}", text.chars().take(300).collect::<String>()));
            }
            resp.json().await.map_err(|e| format!("{url}: {e}"))
        })
    }

    fn markets(&self) -> Vec<MarketCode> {
        self.markets.keys().copied().collect()
    }

    fn open_incidents(&self, market: MarketCode) -> BoxFuture<'_, Result<Vec<MarketIncident>, String>> {
        Box::pin(async move {
            #[derive(serde::Deserialize)]
            struct Page {
                incidents: Vec<MarketIncident>,
            }
            let Some(base) = self.markets.get(&market) else {
                return Err(format!("no national system is configured for {market}"));
            };
            let url = format!("{base}/v1/incidents?open=true&limit=20");
            let resp = self
                .client
                .get(&url)
                .timeout(self.timeout)
                .send()
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            if !resp.status().is_success() {
                return Err(format!("{url}: HTTP {}", resp.status()));
            }
            Ok(resp.json::<Page>().await.map_err(|e| format!("{url}: {e}"))?.incidents)
        })
    }
}

/// Checks the markets' URLs and builds a client that trusts `ca_pem` only and presents
/// `identity_pem`.
fn mtls_client(
    markets: &BTreeMap<MarketCode, String>,
    ca_pem: &[u8],
    identity_pem: &[u8],
) -> Result<reqwest::Client, String> {
    for (m, url) in markets {
        if !url.starts_with("https://") {
            return Err(format!("the national system of {m} at '{url}' is not https://"));
        }
    }
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(ca_pem).map_err(|e| format!("national CA: {e}"))?,
        )
        .identity(reqwest::Identity::from_pem(identity_pem).map_err(|e| format!("hub identity: {e}"))?)
        .pool_idle_timeout(Duration::from_secs(90))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())
}

/// Inter-market requests to the national systems, over mutual TLS with the hub's client
/// certificate: `POST {market}/internal/v1/intermarket`.
pub struct HttpNationalQueries {
    client: reqwest::Client,
    /// The base URL of each market's national system, without a trailing `/`.
    markets: BTreeMap<MarketCode, String>,
    timeout: Duration,
}

impl HttpNationalQueries {
    /// Queries to the national systems at `markets`, trusting `ca_pem` and presenting
    /// `identity_pem` (the hub's certificate then its key, PEM). Each request gives up after
    /// `timeout`: the hub's inter-market budget ([`openmvs_hub::HubConfig::intermarket_budget`]).
    pub fn new(
        markets: BTreeMap<MarketCode, String>,
        ca_pem: &[u8],
        identity_pem: &[u8],
        timeout: Duration,
    ) -> Result<HttpNationalQueries, String> {
        let client = mtls_client(&markets, ca_pem, identity_pem)?;
        let markets = markets.into_iter().map(|(m, u)| (m, u.trim_end_matches('/').to_owned())).collect();
        Ok(HttpNationalQueries { client, markets, timeout })
    }
}

impl HttpNationalQueries {
    /// POSTs `body` to `path` of `market`'s national system and reads the JSON answer, within the
    /// timeout.
    async fn ask<B: Serialize, A: DeserializeOwned>(
        &self,
        market: MarketCode,
        path: &str,
        body: &B,
    ) -> Result<A, String> {
        let Some(base) = self.markets.get(&market) else {
            return Err(format!("no national system is configured for {market}"));
        };
        let url = format!("{base}{path}");
        let resp = self
            .client
            .post(&url)
            .json(body)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            return Err(format!("{url}: HTTP {status}: {}", text.chars().take(300).collect::<String>()));
        }
        resp.json().await.map_err(|e| format!("{url}: {e}"))
    }
}

impl NationalQueries for HttpNationalQueries {
    fn intermarket(
        &self,
        market: MarketCode,
        req: IntermarketRequest,
    ) -> BoxFuture<'_, Result<IntermarketAnswer, String>> {
        Box::pin(async move { self.ask(market, "/internal/v1/intermarket", &req).await })
    }

    fn pack_state(
        &self,
        market: MarketCode,
        query: PackQuery,
    ) -> BoxFuture<'_, Result<PackQueryAnswer, String>> {
        Box::pin(async move {
            let answer: PackQueryAnswer = self.ask(market, "/internal/v1/pack-query", &query).await?;
            if answer.market != market.as_str() {
                return Err(format!("asked {market}, answered by '{}'", answer.market));
            }
            Ok(answer)
        })
    }
}
